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

fn write_temp(dir: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let temp = temp_path(dir);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut file| file.write_all(bytes));
    match written {
        Ok(()) => Ok(temp),
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

/// Writes `bytes` to `dir/name`, replacing any file there, atomically.
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let temp = write_temp(dir, bytes)?;
    let target = dir.join(name);
    fs::rename(&temp, &target).map_err(|err| {
        let _ = fs::remove_file(&temp);
        BridgeError::io("cannot move into place", &target, &err)
    })
}

/// Writes `bytes` to `dir/name` atomically unless a file of that name
/// exists. Returns false, and leaves the existing file alone, when it does.
pub fn create(dir: &Path, name: &str, bytes: &[u8]) -> Result<bool> {
    let temp = write_temp(dir, bytes)?;
    let target = dir.join(name);
    let linked = fs::hard_link(&temp, &target);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(BridgeError::io("cannot create", &target, &err)),
    }
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

fn kind_name(file_type: &fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_symlink() {
        "symbolic link"
    } else {
        "special file (FIFO, socket or device)"
    }
}

/// Reads a regular file of at most `limit` bytes. Symbolic links, FIFOs and
/// directories are refused before anything is opened, so a planted FIFO
/// cannot block the reader.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadFailure> {
    let meta = fs::symlink_metadata(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => ReadFailure::Missing,
        _ => ReadFailure::Io(err),
    })?;
    if !meta.file_type().is_file() {
        return Err(ReadFailure::NotRegular(kind_name(&meta.file_type())));
    }
    if meta.len() > limit {
        return Err(ReadFailure::TooLarge(meta.len()));
    }
    let file = File::open(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => ReadFailure::Missing,
        _ => ReadFailure::Io(err),
    })?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadFailure::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadFailure::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The names in `dir` that do not start with `.`. A missing directory has
/// no names.
pub fn list(dir: &Path) -> Result<Vec<String>> {
    list_sweeping(dir, None)
}

/// As [`list`], also removing temporary files older than `stale_after`:
/// those a writer left when it was killed mid-write. No write takes that
/// long, so a temporary file still being written is never removed.
pub fn list_sweeping(dir: &Path, stale_after: Option<std::time::Duration>) -> Result<Vec<String>> {
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
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !name.starts_with('.') {
            names.push(name);
        } else if let Some(age) = stale_after
            && name.starts_with(TEMP_PREFIX)
        {
            let stale = fs::symlink_metadata(entry.path())
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|elapsed| elapsed > age);
            if stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    Ok(names)
}

/// Creates `dir` and its parents when missing. Something else standing at
/// `dir`, a symbolic link included, is refused: the bridge follows no links.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(meta) => Err(BridgeError::Io {
            path: crate::error::display_path(dir),
            reason: format!(
                "it is a {}, not a directory; the bridge follows no links",
                kind_name(&meta.file_type())
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
