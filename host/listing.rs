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
//!
//! A listing starts at a random entry (see [`list`] for why). On ext4,
//! whose directories list in name-hash order, it starts at a random hash
//! and is read as the guest asks for it, so a guest that stops after a
//! window of names pays for that window, not for the whole directory: a
//! listener facing a backlog of 650 messages spent a quarter of its run
//! listing them. Elsewhere (and on an ext4 without hashed directories)
//! the listing is read whole and rotated.
//!
//! Off Linux (and on Linux with the `portable` feature) the listing comes
//! from cap-std, as in wasmtime-wasi, with each entry's type as the system
//! gives it without following links, and is always read whole and rotated.

#[cfg(native_linux)]
use std::collections::VecDeque;
use std::io;
#[cfg(native_linux)]
use std::os::fd::{AsFd, OwnedFd};

#[cfg(native_linux)]
use rustix::fs::{AtFlags, FileType, OFlags, RawDirEntry, SeekFrom};
use wasmtime::Result;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::filesystem::types::{DescriptorType, DirectoryEntry, ErrorCode};

/// The interface as wasmtime-wasi names it in the linker. Were this ever
/// out of step with wasmtime-wasi, every guest would fail to instantiate,
/// so the test suite would catch it at once.
const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

type Entry = Result<DirectoryEntry, ErrorCode>;

/// A listing the guest reads one entry at a time.
pub enum Listing {
    /// Taken whole when the guest asked for it, and rotated.
    Whole(std::vec::IntoIter<Entry>),
    /// Read in batches from a random position in hash order (ext4).
    #[cfg(native_linux)]
    Hashed(Reader),
}

impl Iterator for Listing {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        match self {
            Listing::Whole(entries) => entries.next(),
            #[cfg(native_linux)]
            Listing::Hashed(hashed) => hashed.next(),
        }
    }
}

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
                Ok(listing) => Ok(table.push(listing)?),
                Err(code) => Err(code),
            },))
        },
    )?;
    types.func_wrap(
        "[method]directory-entry-stream.read-directory-entry",
        |mut store, (listing,): (Resource<Listing>,)| {
            let listing = store.data_mut().ctx().table.get_mut(&listing)?;
            Ok((listing.next().transpose(),))
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
#[cfg(native_linux)]
fn list(dir: &impl AsFd) -> io::Result<Listing> {
    // A descriptor of its own: seeking must not move the guest's.
    let own = rustix::fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let own = if is_ext4(&own) {
        let mut hashed = Reader::new(own, random_u64() >> 1)?;
        // Nothing from a random position to the end: an ext4 made without
        // hashed directories (`dir_index`) counts positions in bytes, so a
        // random one lands past the end (and once in a while one does
        // past the last hash).
        while hashed.batch.is_empty() && !hashed.wrapped {
            hashed.refill()?;
        }
        if !hashed.batch.is_empty() {
            return Ok(Listing::Hashed(hashed));
        }
        hashed.dir
    } else {
        own
    };
    let entries: Vec<Entry> = Reader::new(own, 0)?.collect();
    Ok(rotated(entries))
}

/// Every entry of `dir` but `.` and `..`, starting at a random one (see the
/// Linux version for why), read whole through cap-std.
#[cfg(not(native_linux))]
fn list(dir: &std::fs::File) -> io::Result<Listing> {
    let dir = cap_std::fs::Dir::from_std_file(dir.try_clone()?);
    let entries: Vec<Entry> = dir.entries()?.map(|entry| describe(&entry?)).collect();
    Ok(rotated(entries))
}

fn rotated(mut entries: Vec<Entry>) -> Listing {
    if !entries.is_empty() {
        let start = random_u64() % entries.len() as u64;
        entries.rotate_left(start as usize);
    }
    Listing::Whole(entries.into_iter())
}

/// An entry's name and type; the type is the link's own for a symbolic
/// link.
#[cfg(not(native_linux))]
fn describe(entry: &cap_std::fs::DirEntry) -> Entry {
    let kind = entry.file_type().map_err(ErrorCode::from)?;
    let type_ = if kind.is_dir() {
        DescriptorType::Directory
    } else if kind.is_file() {
        DescriptorType::RegularFile
    } else if kind.is_symlink() {
        DescriptorType::SymbolicLink
    } else {
        special_type(kind)
    };
    let name = entry
        .file_name()
        .into_string()
        .map_err(|_| ErrorCode::IllegalByteSequence)?;
    Ok(DirectoryEntry { type_, name })
}

#[cfg(all(not(native_linux), unix))]
fn special_type(kind: cap_std::fs::FileType) -> DescriptorType {
    use cap_std::fs::FileTypeExt;
    if kind.is_fifo() {
        DescriptorType::Fifo
    } else if kind.is_socket() {
        DescriptorType::Socket
    } else if kind.is_block_device() {
        DescriptorType::BlockDevice
    } else if kind.is_char_device() {
        DescriptorType::CharacterDevice
    } else {
        DescriptorType::Unknown
    }
}

#[cfg(all(not(native_linux), not(unix)))]
fn special_type(_: cap_std::fs::FileType) -> DescriptorType {
    DescriptorType::Unknown
}

/// ext4 (and ext2/3 through its driver): `statfs` says `EXT4_SUPER_MAGIC`.
#[cfg(native_linux)]
fn is_ext4(dir: &OwnedFd) -> bool {
    const EXT4_SUPER_MAGIC: i64 = 0xEF53;
    // `f_type`'s integer type differs between targets.
    #[allow(clippy::unnecessary_cast)]
    let is = |fs: rustix::fs::StatFs| fs.f_type as i64 == EXT4_SUPER_MAGIC;
    rustix::fs::fstatfs(dir).is_ok_and(is)
}

/// A random number, seeded from the system's randomness once per process.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Reads a directory in batches from a position to the end, then from the
/// beginning up to that position. Positions (`telldir` cookies) rise
/// through a listing: on a hashed ext4 directory they are the names'
/// hashes, elsewhere offsets or counts. So each entry comes up exactly
/// once, as in a plain listing; from position 0 it is a plain listing.
#[cfg(native_linux)]
pub struct Reader {
    dir: OwnedFd,
    /// Where the listing started; the second pass stops there.
    start: u64,
    /// The position of the next entry the directory will give. A batch
    /// gives the position after each of its entries, so the first entry
    /// of a pass has none: it starts at the position sought.
    position: u64,
    /// The name of the first pass's first entry. The second pass's first
    /// entry, whose position is unknown, is that same entry when the start
    /// fell below every entry's position; then the listing is complete.
    first_name: Option<Vec<u8>>,
    /// The next entry is the first of its pass.
    first_of_pass: bool,
    wrapped: bool,
    done: bool,
    batch: VecDeque<Entry>,
}

/// Bytes of directory entries read per `getdents` call.
#[cfg(native_linux)]
const BATCH_BYTES: usize = 8 << 10;

#[cfg(native_linux)]
impl Reader {
    fn new(dir: OwnedFd, start: u64) -> io::Result<Self> {
        rustix::fs::seek(&dir, SeekFrom::Start(start))?;
        Ok(Reader {
            dir,
            start,
            position: start,
            first_name: None,
            first_of_pass: true,
            // From the beginning, one pass is the whole listing.
            wrapped: start == 0,
            done: false,
            batch: VecDeque::new(),
        })
    }

    /// Reads the next batch of entries, turning to the beginning at the end.
    fn refill(&mut self) -> io::Result<()> {
        let mut buffer = Vec::with_capacity(BATCH_BYTES);
        let mut raw = rustix::fs::RawDir::new(&self.dir, buffer.spare_capacity_mut());
        loop {
            let Some(entry) = raw.next() else {
                if self.wrapped {
                    self.done = true;
                } else {
                    self.wrapped = true;
                    self.position = 0;
                    self.first_of_pass = true;
                    rustix::fs::seek(&self.dir, SeekFrom::Start(0))?;
                }
                return Ok(());
            };
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            let here = std::mem::replace(&mut self.position, entry.next_entry_cookie());
            let first = std::mem::replace(&mut self.first_of_pass, false);
            if self.start != 0 {
                let seen = match (self.wrapped, first) {
                    (false, true) => {
                        self.first_name = Some(name.to_vec());
                        false
                    }
                    (false, false) => false,
                    (true, true) => self.first_name.as_deref() == Some(name),
                    (true, false) => here >= self.start,
                };
                if seen {
                    self.done = true;
                    return Ok(());
                }
            }
            if name != b"." && name != b".." {
                self.batch.push_back(describe(&self.dir, &entry));
            }
            if raw.is_buffer_empty() {
                return Ok(());
            }
        }
    }
}

#[cfg(native_linux)]
impl Iterator for Reader {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            if let Some(entry) = self.batch.pop_front() {
                return Some(entry);
            }
            if self.done {
                return None;
            }
            if let Err(err) = self.refill() {
                self.done = true;
                return Some(Err(ErrorCode::from(err)));
            }
        }
    }
}

#[cfg(native_linux)]
fn describe(dir: &OwnedFd, entry: &RawDirEntry<'_>) -> Entry {
    let name = entry.file_name();
    let mut kind = entry.file_type();
    if kind == FileType::Unknown {
        // The file system did not say (`DT_UNKNOWN`): ask, without
        // following a symbolic link.
        let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|err| ErrorCode::from(io::Error::from(err)))?;
        kind = FileType::from_raw_mode(stat.st_mode);
    }
    let type_ = match kind {
        FileType::Directory => DescriptorType::Directory,
        FileType::RegularFile => DescriptorType::RegularFile,
        FileType::Symlink => DescriptorType::SymbolicLink,
        FileType::BlockDevice => DescriptorType::BlockDevice,
        FileType::CharacterDevice => DescriptorType::CharacterDevice,
        FileType::Fifo => DescriptorType::Fifo,
        FileType::Socket => DescriptorType::Socket,
        FileType::Unknown => DescriptorType::Unknown,
    };
    let name = name
        .to_str()
        .map_err(|_| ErrorCode::IllegalByteSequence)?
        .to_string();
    Ok(DirectoryEntry { type_, name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn open(path: &std::path::Path) -> std::fs::File {
        std::fs::File::open(path).unwrap()
    }

    fn is_hashed(listing: &Listing) -> bool {
        #[cfg(native_linux)]
        return matches!(listing, Listing::Hashed(_));
        #[cfg(not(native_linux))]
        {
            let _ = listing;
            false
        }
    }

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

        let dir = open(root.path());
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
        let dir = open(root.path());
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut names: Vec<String> = list(&dir)
                .unwrap()
                .map(|entry| entry.unwrap().name)
                .collect();
            firsts.insert(names[0].clone());
            names.sort();
            assert_eq!(names, expected);
        }
        assert!(firsts.len() > 1, "every listing started at {firsts:?}");
    }

    #[cfg(native_linux)]
    /// Says, past the test harness's capture, that part of a test did not
    /// run here: libtest cannot mark a test ignored once it has started.
    fn skipped(why: &str) {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "skipped: {why}");
    }

    #[cfg(native_linux)]
    /// A temporary directory on ext4 (the system's temporary directory, or
    /// `BRIDGE_TEST_EXT4_DIR`), or None with a skipped notice.
    fn ext4_root(test: &str) -> Option<tempfile::TempDir> {
        let base = std::env::var_os("BRIDGE_TEST_EXT4_DIR")
            .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
        let root = tempfile::tempdir_in(&base).ok()?;
        let dir = std::fs::File::open(root.path()).ok()?;
        if is_ext4(&OwnedFd::from(dir)) {
            Some(root)
        } else {
            skipped(&format!(
                "{test}: {} is not on ext4 (set BRIDGE_TEST_EXT4_DIR to a directory on one)",
                base.display()
            ));
            None
        }
    }

    #[cfg(native_linux)]
    /// A temporary directory on a file system other than ext4 (a tmpfs at
    /// /dev/shm, or `BRIDGE_TEST_OTHER_FS_DIR`), or None with a skipped
    /// notice.
    fn other_fs_root(test: &str) -> Option<tempfile::TempDir> {
        let base = std::env::var_os("BRIDGE_TEST_OTHER_FS_DIR").map_or_else(
            || std::path::PathBuf::from("/dev/shm"),
            std::path::PathBuf::from,
        );
        let root = tempfile::tempdir_in(&base).ok();
        let off_ext4 = root
            .as_ref()
            .and_then(|r| std::fs::File::open(r.path()).ok())
            .is_some_and(|dir| !is_ext4(&OwnedFd::from(dir)));
        match root {
            Some(root) if off_ext4 => Some(root),
            _ => {
                skipped(&format!(
                    "{test}: no directory off ext4 at {} (set BRIDGE_TEST_OTHER_FS_DIR)",
                    base.display()
                ));
                None
            }
        }
    }

    #[cfg(native_linux)]
    /// An ext4 made without hashed directories lists in byte offsets,
    /// where a random start almost always lands past the end.
    fn no_dir_index(test: &str) {
        skipped(&format!(
            "{test}: this ext4 never listed by hash (made without dir_index?)"
        ));
    }

    #[cfg(native_linux)]
    #[test]
    fn a_large_listing_on_ext4_starts_at_a_random_hash_and_gives_each_entry_once() {
        let Some(root) = ext4_root("a large listing on ext4") else {
            return;
        };
        let hashed = large_listing_starts_anywhere_and_gives_each_entry_once(&root);
        if hashed == 0 {
            return no_dir_index("a large listing on ext4");
        }
        // A random start past the last hash falls back to a whole listing:
        // about one in 3,000.
        assert!(hashed >= 18, "{hashed} of 20 listings read by hash");
    }

    #[cfg(native_linux)]
    #[test]
    fn a_large_listing_elsewhere_is_read_whole_rotated_and_gives_each_entry_once() {
        let Some(root) = other_fs_root("a large listing off ext4") else {
            return;
        };
        let hashed = large_listing_starts_anywhere_and_gives_each_entry_once(&root);
        assert_eq!(hashed, 0, "listings read by hash off ext4");
    }

    /// The portable path reads every listing whole and rotates it, on any
    /// file system.
    #[cfg(not(native_linux))]
    #[test]
    fn a_large_portable_listing_is_read_whole_rotated_and_gives_each_entry_once() {
        let root = tempfile::tempdir().unwrap();
        let hashed = large_listing_starts_anywhere_and_gives_each_entry_once(&root);
        assert_eq!(hashed, 0, "portable listings read by hash");
    }

    /// Lists a directory of 3,000 entries 20 times; returns how many of the
    /// listings were read by hash.
    fn large_listing_starts_anywhere_and_gives_each_entry_once(root: &tempfile::TempDir) -> usize {
        let mut expected: Vec<String> = (0..3000).map(|i| format!("msg-{i:05}.json")).collect();
        for name in &expected {
            std::fs::write(root.path().join(name), "{}").unwrap();
        }
        expected.sort();
        let dir = open(root.path());
        let mut firsts = std::collections::HashSet::new();
        let mut hashed = 0;
        for _ in 0..20 {
            let listing = list(&dir).unwrap();
            hashed += usize::from(is_hashed(&listing));
            let mut names: Vec<String> = listing.map(|entry| entry.unwrap().name).collect();
            firsts.insert(names[0].clone());
            names.sort();
            assert_eq!(names.len(), expected.len());
            assert_eq!(names, expected);
        }
        assert!(firsts.len() > 10, "listings started at only {firsts:?}");
        hashed
    }

    #[test]
    #[cfg(native_linux)]
    fn a_hashed_listing_reads_only_what_is_asked_for() {
        let Some(root) = ext4_root("a hashed listing reads only what is asked for") else {
            return;
        };
        for i in 0..3000 {
            std::fs::write(root.path().join(format!("msg-{i:05}.json")), "{}").unwrap();
        }
        let dir = std::fs::File::open(root.path()).unwrap();
        // A start past the last hash (about one in 3,000) gives a whole
        // listing; the next one will not.
        let Some(mut reader) = (0..10).find_map(|_| match list(&dir).unwrap() {
            Listing::Hashed(reader) => Some(reader),
            Listing::Whole(_) => None,
        }) else {
            return no_dir_index("a hashed listing reads only what is asked for");
        };
        let taken: Vec<_> = reader.by_ref().take(128).collect();
        assert_eq!(taken.len(), 128);
        assert!(
            !reader.done && reader.batch.len() < 3000 - 128,
            "the listing read ahead {} entries",
            reader.batch.len()
        );
    }
}
