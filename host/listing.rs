//! Directory listings for guests without a `stat` per entry.
//!
//! wasmtime-wasi's `descriptor.read-directory` stats every entry to report
//! its type before the guest sees the first one. A listener looking at an
//! inbox with a backlog of pending messages paid one `statx` per message on
//! every look, and each `bridge-host run listen` looks at least once. Linux
//! puts the type in the listing itself (`d_type`), so this module replaces
//! that one function, and the entry stream it returns, with versions that
//! take the type from the listing and stat only the entries whose type the
//! file system leaves unknown. Everything else in `wasi:filesystem` stays
//! wasmtime-wasi's, and the guest sees the same entries with the same types.

use std::io;

use cap_std::fs::{DirEntry, FileType, FileTypeExt};
use wasmtime::Result;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::filesystem::types::{DescriptorType, DirectoryEntry, ErrorCode};

/// The interface as wasmtime-wasi names it in the linker. Were this ever
/// out of step with wasmtime-wasi, every guest would fail to instantiate,
/// so the test suite would catch it at once.
const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// A listing taken whole when the guest asked for it, handed out one entry
/// at a time.
pub struct Listing(std::vec::IntoIter<Result<DirectoryEntry, ErrorCode>>);

/// Replaces `read-directory` and the `directory-entry-stream` resource in
/// `linker`, which must already hold wasmtime-wasi's `wasi:filesystem`.
pub fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) -> Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(FILESYSTEM_TYPES)?;
    types.resource(
        "directory-entry-stream",
        ResourceType::host::<Listing>(),
        |mut store, rep| {
            let listing = Resource::<Listing>::new_own(rep);
            store.data_mut().ctx().table.delete(listing)?;
            Ok(())
        },
    )?;
    types.func_wrap(
        "[method]descriptor.read-directory",
        |mut store, (descriptor,): (Resource<Descriptor>,)| {
            let table = store.data_mut().ctx().table;
            let listed = match table.get(&descriptor)? {
                Descriptor::Dir(dir) => list(&dir.dir).map_err(ErrorCode::from),
                Descriptor::File(_) => Err(ErrorCode::NotDirectory),
            };
            Ok((match listed {
                Ok(entries) => Ok(table.push(Listing(entries.into_iter()))?),
                Err(code) => Err(code),
            },))
        },
    )?;
    types.func_wrap(
        "[method]directory-entry-stream.read-directory-entry",
        |mut store, (listing,): (Resource<Listing>,)| {
            let listing = store.data_mut().ctx().table.get_mut(&listing)?;
            Ok((listing.0.next().transpose(),))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Every entry of `dir` but `.` and `..`, starting at a random one.
///
/// A directory's order is arbitrary anyway (on ext4 it follows name
/// hashes), but it is the same on every look. A guest facing a backlog
/// reads only the start of a listing and takes a message from there; a
/// fixed start would keep handing it the same messages first, and the
/// ones listed last could wait for as long as the backlog lasts.
fn list(dir: &std::fs::File) -> io::Result<Vec<Result<DirectoryEntry, ErrorCode>>> {
    let dir = cap_std::fs::Dir::from_std_file(dir.try_clone()?);
    let mut entries: Vec<_> = dir.entries()?.map(|entry| describe(entry?)).collect();
    if !entries.is_empty() {
        let start = random_u64() % entries.len() as u64;
        entries.rotate_left(start as usize);
    }
    Ok(entries)
}

/// A random number, seeded from the system's randomness once per process.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

fn describe(entry: DirEntry) -> Result<DirectoryEntry, ErrorCode> {
    let type_ = match descriptor_type(entry.file_type()?) {
        // The file system did not say (`DT_UNKNOWN`): ask, without
        // following a symbolic link.
        DescriptorType::Unknown => descriptor_type(entry.metadata()?.file_type()),
        listed => listed,
    };
    let name = entry
        .file_name()
        .into_string()
        .map_err(|_| ErrorCode::IllegalByteSequence)?;
    Ok(DirectoryEntry { type_, name })
}

fn descriptor_type(t: FileType) -> DescriptorType {
    if t.is_dir() {
        DescriptorType::Directory
    } else if t.is_file() {
        DescriptorType::RegularFile
    } else if t.is_symlink() {
        DescriptorType::SymbolicLink
    } else if t.is_block_device() {
        DescriptorType::BlockDevice
    } else if t.is_char_device() {
        DescriptorType::CharacterDevice
    } else if t.is_fifo() {
        DescriptorType::Fifo
    } else if t.is_socket() {
        DescriptorType::Socket
    } else {
        DescriptorType::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn entries_carry_the_types_a_stat_would_give() {
        let root = tempfile::tempdir().unwrap();
        let at = |name: &str| root.path().join(name);
        std::fs::write(at("message.json"), "{}").unwrap();
        std::fs::create_dir(at("claimed")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", at("planted")).unwrap();
        let fifo = std::ffi::CString::new(at("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid, NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let _socket = std::os::unix::net::UnixListener::bind(at("socket")).unwrap();
        let bad_name = std::ffi::OsStr::from_bytes(b"caf\xe9.json");
        std::fs::write(root.path().join(bad_name), "{}").unwrap();

        let dir = std::fs::File::open(root.path()).unwrap();
        let mut types = Vec::new();
        let mut refused = 0;
        for entry in list(&dir).unwrap() {
            match entry {
                Ok(entry) => types.push((entry.name, entry.type_)),
                Err(ErrorCode::IllegalByteSequence) => refused += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        types.sort_by(|a, b| a.0.cmp(&b.0));
        let expected = [
            ("claimed", DescriptorType::Directory),
            ("fifo", DescriptorType::Fifo),
            ("message.json", DescriptorType::RegularFile),
            ("planted", DescriptorType::SymbolicLink),
            ("socket", DescriptorType::Socket),
        ];
        let expected: Vec<(String, DescriptorType)> =
            expected.iter().map(|&(n, t)| (n.to_string(), t)).collect();
        assert_eq!(types, expected);
        assert_eq!(refused, 1, "a name that is not UTF-8 is an error entry");
    }

    #[test]
    fn each_listing_starts_somewhere_else_and_misses_nothing() {
        let root = tempfile::tempdir().unwrap();
        let mut expected: Vec<String> = (0..20).map(|i| format!("msg-{i:02}.json")).collect();
        for name in &expected {
            std::fs::write(root.path().join(name), "{}").unwrap();
        }
        expected.sort();
        let dir = std::fs::File::open(root.path()).unwrap();
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut names: Vec<String> = list(&dir)
                .unwrap()
                .into_iter()
                .map(|entry| entry.unwrap().name)
                .collect();
            firsts.insert(names[0].clone());
            names.sort();
            assert_eq!(names, expected);
        }
        assert!(firsts.len() > 1, "every listing started at {firsts:?}");
    }
}
