//! File primitives on the bridge directory. Every write goes to a temporary
//! name first and is then renamed or linked into place, so a reader never
//! sees a partial file; every read is bounded.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{BridgeError, Result};
use crate::ids::random_token;

/// Temporary files start with this; readers skip names starting with `.`.
const TEMP_PREFIX: &str = ".tmp-";

fn temp_path(dir: &Path) -> PathBuf {
    dir.join(format!("{TEMP_PREFIX}{}", random_token(12)))
}

/// Creates `path`, which must not exist, holding `bytes`.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_new_open(path, bytes).map(drop)
}

/// As [`write_new`], for a file written once: false, and nothing written,
/// when `path` exists already.
pub fn write_new_once(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    match write_new(path, bytes) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(err),
    }
}

/// A file just written and still open, to be flushed to disk later
/// through its handle: whatever its name has become by then (a listener
/// may have claimed it, renaming it away), its contents are flushed.
pub struct Written(Handle);

enum Handle {
    Std(File),
    #[cfg(target_os = "wasi")]
    Wasi(wasip2::filesystem::types::Descriptor),
}

impl Written {
    /// Flushes the file's contents to stable storage.
    ///
    /// # Errors
    /// `Io` naming `path` (the name it was written under) when the flush
    /// fails.
    pub fn flush(&self, path: &Path) -> Result<()> {
        let flushed = match &self.0 {
            Handle::Std(file) => file.sync_data(),
            #[cfg(target_os = "wasi")]
            Handle::Wasi(descriptor) => descriptor.sync_data().map_err(wasi::to_io),
        };
        flushed.map_err(|err| BridgeError::io("cannot flush to disk", path, &err))
    }
}

/// As [`write_new`], keeping the file open for a later [`Written::flush`].
fn write_new_open(path: &Path, bytes: &[u8]) -> io::Result<Written> {
    #[cfg(target_os = "wasi")]
    if let Some(written) = wasi::write_new(path, bytes) {
        return written.map(|descriptor| Written(Handle::Wasi(descriptor)));
    }
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    Ok(Written(Handle::Std(file)))
}

fn write_temp(dir: &Path, bytes: &[u8]) -> Result<PathBuf> {
    write_temp_open(dir, bytes).map(|(temp, _)| temp)
}

fn write_temp_open(dir: &Path, bytes: &[u8]) -> Result<(PathBuf, Written)> {
    let temp = temp_path(dir);
    let written = write_new_open(&temp, bytes);
    match written {
        Ok(file) => Ok((temp, file)),
        Err(err) => {
            let _ = fs::remove_file(&temp);
            // Inside WASI a failed stream write arrives as a bare I/O error;
            // the usual cause is a full disk or a file size limit.
            Err(BridgeError::io(
                "cannot write (the disk may be full, or a file size limit reached)",
                &temp,
                &err,
            ))
        }
    }
}

/// Overwrites `expect`, found at `offset` of the existing file `path`, with
/// `with`, which is as long, in one positioned write within one 512-byte
/// disk sector, so that a crash leaves the old bytes or the new. False, and
/// nothing written, when the bytes would cross a sector boundary, when the
/// bytes there are not `expect`, when `path` is not a regular file, or when
/// it has other names (a hard link), whose contents must not change with it.
pub fn patch_in_place(path: &Path, offset: u64, expect: &[u8], with: &[u8]) -> io::Result<bool> {
    debug_assert_eq!(expect.len(), with.len());
    const SECTOR: u64 = 512;
    if with.is_empty() || offset / SECTOR != (offset + with.len() as u64 - 1) / SECTOR {
        return Ok(false);
    }
    #[cfg(target_os = "wasi")]
    if let Some(patched) = wasi::patch_in_place(path, offset, expect, with) {
        return patched;
    }
    // Natively (the guest's own tests) the checks come before the open.
    #[cfg(unix)]
    {
        use std::os::unix::fs::{FileExt, MetadataExt};
        let meta = fs::symlink_metadata(path)?;
        if !meta.is_file() || meta.nlink() != 1 {
            return Ok(false);
        }
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut found = vec![0; expect.len()];
        file.read_exact_at(&mut found, offset)?;
        if found != expect {
            return Ok(false);
        }
        file.write_all_at(with, offset)?;
        Ok(true)
    }
    #[cfg(not(unix))]
    {
        let _ = (path, offset, with);
        Ok(false)
    }
}

/// Writes `bytes` to `dir/name`, replacing any file there, atomically.
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let temp = write_temp(dir, bytes)?;
    let target = dir.join(name);
    fs::rename(&temp, &target).map_err(|err| {
        let _ = fs::remove_file(&temp);
        BridgeError::io("cannot move into place", &target, &err)
    })
}

/// As [`replace`], with the temporary file written in `temp_dir` (on the
/// same file system) rather than beside the target: for a folder that no
/// one lists, so that a writer killed midway leaves its temporary file
/// where it will be cleared away.
pub fn replace_via(temp_dir: &Path, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let temp = write_temp(temp_dir, bytes)?;
    let target = dir.join(name);
    fs::rename(&temp, &target).map_err(|err| {
        let _ = fs::remove_file(&temp);
        BridgeError::io("cannot move into place", &target, &err)
    })
}

/// Writes `bytes` to `dir/name` atomically unless a file of that name
/// exists. Returns false, and leaves the existing file alone, when it does.
pub fn create(dir: &Path, name: &str, bytes: &[u8]) -> Result<bool> {
    create_open(dir, name, bytes).map(|created| created.is_some())
}

/// As [`create`], returning the new file still open, for a later
/// [`Written::flush`]; None when a file of that name exists.
pub fn create_open(dir: &Path, name: &str, bytes: &[u8]) -> Result<Option<Written>> {
    let (temp, file) = write_temp_open(dir, bytes)?;
    let target = dir.join(name);
    let linked = fs::hard_link(&temp, &target);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(Some(file)),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(err) => Err(BridgeError::io("cannot create", &target, &err)),
    }
}

/// Flushes a folder's entries to stable storage (the names of files just
/// created in it). A folder that cannot be flushed (some platforms refuse
/// to open one for it) is not an error.
pub fn sync_dir(dir: &Path) {
    let _ = File::open(dir).and_then(|dir| dir.sync_all());
}

/// Why a file could not be read.
#[derive(Debug)]
pub enum ReadFailure {
    /// It vanished (taken by someone else, or never there).
    Missing,
    /// Not a regular file: a directory, FIFO, socket or device.
    NotRegular(&'static str),
    /// Larger than the limit.
    TooLarge(u64),
    /// Another I/O error.
    Io(io::Error),
}

impl ReadFailure {
    pub fn describe(&self, limit: u64) -> String {
        match self {
            ReadFailure::Missing => "it disappeared".into(),
            ReadFailure::NotRegular(kind) => format!("it is a {kind}, not a regular file"),
            ReadFailure::TooLarge(size) => {
                format!("it is {size} bytes, over the {limit}-byte limit")
            }
            ReadFailure::Io(err) => crate::error::describe_io(err),
        }
    }
}

/// What a path is, without following a final symbolic link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device.
    Special,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::File => "regular file",
            Kind::Dir => "directory",
            Kind::Symlink => "symbolic link",
            Kind::Special => "special file (FIFO, socket or device)",
        }
    }
}

/// What the bridge reads of a path's metadata.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub kind: Kind,
    pub len: u64,
    pub modified: Option<std::time::SystemTime>,
}

/// The metadata of `path` itself (a symbolic link is not followed).
pub fn stat(path: &Path) -> io::Result<Stat> {
    #[cfg(target_os = "wasi")]
    if let Some(answer) = wasi::stat(path) {
        return answer;
    }
    let meta = fs::symlink_metadata(path)?;
    let file_type = meta.file_type();
    let kind = if file_type.is_file() {
        Kind::File
    } else if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Special
    };
    Ok(Stat {
        kind,
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

/// Inside the sandbox, `stat` asks WASI directly. The standard library's
/// metadata call also asks for a metadata hash (to invent an inode number),
/// which wasmtime answers on a separate thread: a thread hand-off on every
/// call, for a number the bridge never uses.
#[cfg(target_os = "wasi")]
pub(crate) mod wasi {
    use super::{Kind, Stat};
    use std::io;
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use wasip2::filesystem::types::{
        Descriptor, DescriptorFlags, DescriptorType, ErrorCode, OpenFlags, PathFlags,
    };

    /// Runs `op` on the preopened bridge directory (see `crate::instance`)
    /// and `path` relative to it; None for a path outside it.
    pub(crate) fn at<R>(path: &Path, op: impl FnOnce(&Descriptor, &str) -> R) -> Option<R> {
        let text = path.to_str()?;
        let relative = text.strip_prefix("./").unwrap_or(text);
        if relative.starts_with('/') {
            return None;
        }
        let relative = if relative.is_empty() { "." } else { relative };
        crate::instance::with_bridge_dir(|dir| op(dir, relative))
    }

    /// Creates the file with positioned writes. The standard library writes
    /// through a stream, which wasmtime serves on a separate thread.
    pub fn write_new(path: &Path, bytes: &[u8]) -> Option<io::Result<Descriptor>> {
        at(path, |dir, relative| {
            let file = dir
                .open_at(
                    PathFlags::empty(),
                    relative,
                    OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                    DescriptorFlags::WRITE,
                )
                .map_err(to_io)?;
            let mut done = 0;
            while done < bytes.len() {
                let n = file.write(&bytes[done..], done as u64).map_err(to_io)? as usize;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote nothing"));
                }
                done += n;
            }
            Ok(file)
        })
    }

    /// As [`super::patch_in_place`]; None for a path outside the preopened
    /// directory.
    pub fn patch_in_place(
        path: &Path,
        offset: u64,
        expect: &[u8],
        with: &[u8],
    ) -> Option<io::Result<bool>> {
        at(path, |dir, relative| {
            let file = dir
                .open_at(
                    PathFlags::empty(),
                    relative,
                    OpenFlags::empty(),
                    DescriptorFlags::READ | DescriptorFlags::WRITE,
                )
                .map_err(to_io)?;
            let stat = file.stat().map_err(to_io)?;
            if stat.type_ != DescriptorType::RegularFile || stat.link_count != 1 {
                return Ok(false);
            }
            let (found, _) = file.read(expect.len() as u64, offset).map_err(to_io)?;
            if found != expect {
                return Ok(false);
            }
            let n = file.write(with, offset).map_err(to_io)? as usize;
            if n != with.len() {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote part"));
            }
            Ok(true)
        })
    }

    /// None for paths outside the preopened directory.
    pub fn stat(path: &Path) -> Option<io::Result<Stat>> {
        let answer = at(path, |dir, relative| {
            dir.stat_at(PathFlags::empty(), relative)
        })?;
        Some(answer.map_err(to_io).map(|stat| {
            Stat {
                kind: match stat.type_ {
                    DescriptorType::RegularFile => Kind::File,
                    DescriptorType::Directory => Kind::Dir,
                    DescriptorType::SymbolicLink => Kind::Symlink,
                    _ => Kind::Special,
                },
                len: stat.size,
                modified: stat
                    .data_modification_timestamp
                    .map(|t| SystemTime::UNIX_EPOCH + Duration::new(t.seconds, t.nanoseconds)),
            }
        }))
    }

    /// The names in `path`, listed through the directory stream alone, until
    /// `enough` says so. The standard library also asks for a metadata hash
    /// of every entry (its inode number), which costs the host a path lookup
    /// and a stat each.
    pub fn list(
        path: &Path,
        mut enough: impl FnMut(&str) -> bool,
    ) -> Option<io::Result<Vec<String>>> {
        at(path, |dir, relative| {
            let listed = dir
                .open_at(
                    PathFlags::SYMLINK_FOLLOW,
                    relative,
                    OpenFlags::DIRECTORY,
                    DescriptorFlags::READ,
                )
                .and_then(|opened| opened.read_directory());
            let stream = listed.map_err(to_io)?;
            let mut names = Vec::new();
            loop {
                match stream.read_directory_entry() {
                    Ok(Some(entry)) => {
                        let done = enough(&entry.name);
                        names.push(entry.name);
                        if done {
                            return Ok(names);
                        }
                    }
                    Ok(None) => return Ok(names),
                    // Renamed away while listing: another process took it.
                    Err(ErrorCode::NoEntry) => continue,
                    Err(code) => return Err(to_io(code)),
                }
            }
        })
    }

    pub(crate) fn to_io(code: ErrorCode) -> io::Error {
        let kind = match code {
            ErrorCode::NoEntry => io::ErrorKind::NotFound,
            ErrorCode::Access | ErrorCode::NotPermitted => io::ErrorKind::PermissionDenied,
            ErrorCode::NotDirectory => io::ErrorKind::NotADirectory,
            ErrorCode::Exist => io::ErrorKind::AlreadyExists,
            ErrorCode::InsufficientSpace => io::ErrorKind::StorageFull,
            ErrorCode::FileTooLarge => io::ErrorKind::FileTooLarge,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, format!("{code:?}"))
    }
}

/// Reads a regular file of at most `limit` bytes. Symbolic links, FIFOs and
/// directories are refused before anything is opened, so a planted FIFO
/// cannot block the reader.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadFailure> {
    read_bounded_with_stat(path, limit).map(|(bytes, _)| bytes)
}

/// As [`read_bounded`], also returning the metadata it checked.
pub fn read_bounded_with_stat(path: &Path, limit: u64) -> Result<(Vec<u8>, Stat), ReadFailure> {
    let meta = stat(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => ReadFailure::Missing,
        _ => ReadFailure::Io(err),
    })?;
    if meta.kind != Kind::File {
        return Err(ReadFailure::NotRegular(meta.kind.name()));
    }
    if meta.len > limit {
        return Err(ReadFailure::TooLarge(meta.len));
    }
    let file = File::open(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => ReadFailure::Missing,
        _ => ReadFailure::Io(err),
    })?;
    let mut bytes = Vec::with_capacity(meta.len as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadFailure::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadFailure::TooLarge(bytes.len() as u64));
    }
    Ok((bytes, meta))
}

/// The names in `dir` that do not start with `.`. A missing directory has
/// no names.
pub fn list(dir: &Path) -> Result<Vec<String>> {
    let names = read_names(dir, &mut |_| false)?;
    Ok(visible_names(dir, names, None))
}

/// As [`list`], also removing temporary files older than `stale_after`.
pub fn list_clearing(dir: &Path, stale_after: std::time::Duration) -> Result<Vec<String>> {
    let names = read_names(dir, &mut |_| false)?;
    Ok(visible_names(dir, names, Some(stale_after)))
}

/// As [`list`], but only the names ending in `suffix`, and no more than
/// `enough` of them: the listing stops there. Stale temporary files among
/// the names read are removed (see [`visible_names`]).
///
/// Which names come back when there are more than `enough` depends on the
/// listing's order; the host starts each listing at a random entry, so
/// every name has the same chance.
pub fn list_some(
    dir: &Path,
    suffix: &str,
    enough: usize,
    stale_after: Option<std::time::Duration>,
) -> Result<Vec<String>> {
    let mut found = 0;
    let mut enough = |name: &str| {
        if !name.starts_with('.') && name.ends_with(suffix) {
            found += 1;
        }
        found >= enough
    };
    let mut names = read_names(dir, &mut enough)?;
    names = visible_names(dir, names, stale_after);
    names.retain(|name| name.ends_with(suffix));
    Ok(names)
}

/// Every name in `dir` (a missing directory has none), or fewer if
/// `enough` says to stop.
fn read_names(dir: &Path, enough: &mut impl FnMut(&str) -> bool) -> Result<Vec<String>> {
    #[cfg(target_os = "wasi")]
    if let Some(listed) = wasi::list(dir, &mut *enough) {
        return match listed {
            Ok(names) => Ok(names),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(err) => Err(BridgeError::io("cannot list", dir, &err)),
        };
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(BridgeError::io("cannot list", dir, &err)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            // Renamed away while listing: another process took it.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(BridgeError::io("cannot list", dir, &err)),
        };
        if let Some(name) = entry.file_name().to_str() {
            let done = enough(name);
            names.push(name.to_string());
            if done {
                break;
            }
        }
    }
    Ok(names)
}

/// The `names` listed in `dir` that do not start with `.`, after removing
/// temporary files older than `stale_after` among the others.
fn visible_names(
    dir: &Path,
    mut names: Vec<String>,
    stale_after: Option<std::time::Duration>,
) -> Vec<String> {
    names.retain(|name| {
        if !name.starts_with('.') {
            return true;
        }
        if let Some(age) = stale_after
            && name.starts_with(TEMP_PREFIX)
        {
            let path = dir.join(name);
            let stale = stat(&path)
                .ok()
                .and_then(|m| m.modified)
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|elapsed| elapsed > age);
            if stale {
                let _ = fs::remove_file(path);
            }
        }
        false
    });
    names
}

/// Creates `dir` and its parents when missing. Something else standing at
/// `dir`, a symbolic link included, is refused: the bridge follows no links.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    match stat(dir) {
        Ok(meta) if meta.kind == Kind::Dir => Ok(()),
        Ok(meta) => Err(BridgeError::Io {
            path: crate::error::display_path(dir),
            reason: format!(
                "it is a {}, not a directory; the bridge follows no links",
                meta.kind.name()
            ),
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => fs::create_dir_all(dir)
            .map_err(|err| BridgeError::io("cannot create directory", dir, &err)),
        Err(err) => Err(BridgeError::io("cannot inspect", dir, &err)),
    }
}

/// Creates the folder `dir` inside an existing parent, unless it exists.
/// Unlike [`ensure_dir`] it never creates parents, so a session that was
/// removed meanwhile is not brought back as an empty shell.
pub fn ensure_child_dir(dir: &Path) -> Result<()> {
    // Looking first is cheaper than a `mkdir` that fails: that takes the
    // parent directory's lock, which every busy writer of the session wants.
    if stat(dir).is_ok_and(|m| m.kind == Kind::Dir) {
        return Ok(());
    }
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => ensure_dir(dir),
        Err(err) => Err(BridgeError::io("cannot create directory", dir, &err)),
    }
}

/// Removes a file; a missing file is not an error.
pub fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(BridgeError::io("cannot remove", path, &err)),
    }
}
