//! Keeps guests out of session directories that are not private.
//!
//! A session directory that another user owns, or that group or others can
//! write to, could hold messages someone else planted; the original plugin,
//! run under umask 002, makes every session directory mode 775. The host
//! refused the whole bridge directory when it met one, so one such session
//! took every verb of every session down with it. Now the host withholds
//! only that directory: each `wasi:filesystem` call that names a path
//! inside it fails with `not-permitted`, the guest reports the session as
//! unsafe, and the host says how to fix it (see [`LooseSession`]).
//!
//! Paths are checked as written, relative to the descriptor they are
//! resolved from. Only the bridge directory itself and its `sessions/`
//! folder can name a session directory: a descriptor opened anywhere
//! deeper is confined below it by `cap-std`. A symbolic link could lead
//! into a withheld directory without naming it; the bridge's own
//! directories are private, so only a guest could make one, and while a
//! directory is withheld no guest may make a link at all. Nothing is
//! checked, and nothing costs more, while no session directory is loose.

use std::collections::BTreeSet;
use std::path::{Component, Path};

use wasmtime::Result;
use wasmtime::component::{Linker, LinkerInstance, Resource};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView, WasiFilesystemView};
use wasmtime_wasi::p2::FsResult;
use wasmtime_wasi::p2::bindings::sync::filesystem::types::{
    DescriptorFlags, ErrorCode, Host, HostDescriptor, NewTimestamp, OpenFlags, PathFlags,
};

use crate::dirs::LooseSession;

/// The interface as wasmtime-wasi names it in the linker (see listing.rs).
const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Which session directories a guest may not enter, and which of them it
/// tried to.
#[derive(Default)]
pub struct Confinement {
    /// The bridge directory and its `sessions/` folder (device, inode).
    root: Option<(u64, u64)>,
    sessions: Option<(u64, u64)>,
    loose: Vec<LooseSession>,
    touched: BTreeSet<String>,
}

impl Confinement {
    /// Withholds `loose`, the session directories under `bridge_dir`.
    pub fn new(bridge_dir: &Path, loose: Vec<LooseSession>) -> Self {
        Confinement {
            root: path_identity(bridge_dir),
            sessions: path_identity(&bridge_dir.join("sessions")),
            loose,
            touched: BTreeSet::new(),
        }
    }

    /// The withheld session directories the guest tried to reach.
    pub fn touched(&self) -> Vec<&LooseSession> {
        self.loose
            .iter()
            .filter(|l| self.touched.contains(&l.name))
            .collect()
    }

    /// True, and recorded, when `path`, relative to the bridge directory,
    /// lies in a withheld session directory (for host imports that take a
    /// path, such as the watcher).
    pub fn refuses(&mut self, path: &str) -> bool {
        let Some(root) = self.root else {
            return false;
        };
        match self.withheld(root, path) {
            Some(name) => {
                self.touched.insert(name);
                true
            }
            None => false,
        }
    }

    /// The withheld session a `path` resolved from the directory `here`
    /// (device, inode) lies in, if any.
    fn withheld(&self, here: (u64, u64), path: &str) -> Option<String> {
        let here = Some(here);
        let parts = plain_components(path)?;
        let name = if here == self.root {
            match parts.first().map(String::as_str) {
                Some("sessions") => parts.get(1)?,
                _ => return None,
            }
        } else if here == self.sessions {
            parts.first()?
        } else {
            return None;
        };
        self.loose
            .iter()
            .any(|l| &l.name == name)
            .then(|| name.clone())
    }
}

/// A directory's device and inode.
#[cfg(unix)]
fn identity(stat: &rustix::fs::Stat) -> (u64, u64) {
    // The fields' integer types differ between targets.
    #[allow(clippy::unnecessary_cast)]
    (stat.st_dev as u64, stat.st_ino as u64)
}

#[cfg(unix)]
fn path_identity(path: &Path) -> Option<(u64, u64)> {
    rustix::fs::stat(path).ok().map(|s| identity(&s))
}

#[cfg(unix)]
fn dir_identity(dir: &std::fs::File) -> Option<(u64, u64)> {
    rustix::fs::fstat(dir).ok().map(|s| identity(&s))
}

/// A directory's volume serial number and file index.
#[cfg(windows)]
fn path_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::windows::fs::OpenOptionsExt;
    use windows_sys::Win32::Storage::FileSystem::{
        FILE_FLAG_BACKUP_SEMANTICS, FILE_READ_ATTRIBUTES,
    };
    let dir = std::fs::OpenOptions::new()
        .access_mode(FILE_READ_ATTRIBUTES)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)
        .ok()?;
    dir_identity(&dir)
}

#[cfg(windows)]
fn dir_identity(dir: &std::fs::File) -> Option<(u64, u64)> {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Storage::FileSystem::{
        BY_HANDLE_FILE_INFORMATION, GetFileInformationByHandle,
    };
    // SAFETY: a zeroed record is a valid one for the call to fill in.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is an open handle; the call writes only `info`.
    if unsafe { GetFileInformationByHandle(dir.as_raw_handle(), &mut info) } == 0 {
        return None;
    }
    Some((
        u64::from(info.dwVolumeSerialNumber),
        (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
    ))
}

/// `path` as plain names, `.` dropped and `..` applied; None when `..`
/// climbs above its start, which `cap-std` refuses anyway.
fn plain_components(path: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    for part in Path::new(path).components() {
        match part {
            Component::Normal(name) => parts.push(name.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts)
}

/// What a host state that confines its guest gives this module.
pub trait Confined: WasiView {
    fn confinement(&mut self) -> &mut Confinement;
}

/// Refuses, and records, a path into a withheld session directory.
fn refuse<T: Confined>(state: &mut T, dir: &Resource<Descriptor>, path: &str) -> Result<bool> {
    if state.confinement().loose.is_empty() {
        return Ok(false);
    }
    let here = match state.ctx().table.get(dir)? {
        Descriptor::Dir(dir) => dir_identity(&dir.dir),
        Descriptor::File(_) => None,
    };
    let confinement = state.confinement();
    let Some(name) = here.and_then(|here| confinement.withheld(here, path)) else {
        return Ok(false);
    };
    confinement.touched.insert(name);
    Ok(true)
}

type Answer<R> = Result<(Result<R, ErrorCode>,)>;

/// Runs wasmtime-wasi's own implementation, turning its error into the
/// guest's error code.
fn pass<T: Confined, R>(
    state: &mut T,
    call: impl FnOnce(&mut WasiFilesystemCtxView<'_>) -> FsResult<R>,
) -> Answer<R> {
    let mut view = state.filesystem();
    match call(&mut view) {
        Ok(value) => Ok((Ok(value),)),
        Err(err) => Ok((Err(Host::convert_error_code(&mut view, err)?),)),
    }
}

/// Replaces every `wasi:filesystem` descriptor method that takes a path
/// with one that first refuses paths into withheld session directories.
/// `linker` must already hold wasmtime-wasi's `wasi:filesystem`.
pub fn add_to_linker<T: Confined + 'static>(linker: &mut Linker<T>) -> Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(FILESYSTEM_TYPES)?;
    types.func_wrap(
        "[method]descriptor.open-at",
        |mut store,
         (fd, path_flags, path, open_flags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            let state = store.data_mut();
            if refuse(state, &fd, &path)? {
                return Ok((Err(ErrorCode::NotPermitted),));
            }
            pass(state, |v| {
                HostDescriptor::open_at(v, fd, path_flags, path, open_flags, flags)
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.stat-at",
        |mut store, (fd, path_flags, path): (Resource<Descriptor>, PathFlags, String)| {
            let state = store.data_mut();
            if refuse(state, &fd, &path)? {
                return Ok((Err(ErrorCode::NotPermitted),));
            }
            pass(state, |v| HostDescriptor::stat_at(v, fd, path_flags, path))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.metadata-hash-at",
        |mut store, (fd, path_flags, path): (Resource<Descriptor>, PathFlags, String)| {
            let state = store.data_mut();
            if refuse(state, &fd, &path)? {
                return Ok((Err(ErrorCode::NotPermitted),));
            }
            pass(state, |v| {
                HostDescriptor::metadata_hash_at(v, fd, path_flags, path)
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.set-times-at",
        |mut store,
         (fd, path_flags, path, atim, mtim): (
            Resource<Descriptor>,
            PathFlags,
            String,
            NewTimestamp,
            NewTimestamp,
        )| {
            let state = store.data_mut();
            if refuse(state, &fd, &path)? {
                return Ok((Err(ErrorCode::NotPermitted),));
            }
            pass(state, |v| {
                HostDescriptor::set_times_at(v, fd, path_flags, path, atim, mtim)
            })
        },
    )?;
    path_only(
        &mut types,
        "[method]descriptor.create-directory-at",
        |v, fd, path| v.create_directory_at(fd, path),
    )?;
    path_only(
        &mut types,
        "[method]descriptor.remove-directory-at",
        |v, fd, path| v.remove_directory_at(fd, path),
    )?;
    path_only(
        &mut types,
        "[method]descriptor.unlink-file-at",
        |v, fd, path| v.unlink_file_at(fd, path),
    )?;
    types.func_wrap(
        "[method]descriptor.readlink-at",
        |mut store, (fd, path): (Resource<Descriptor>, String)| {
            let state = store.data_mut();
            if refuse(state, &fd, &path)? {
                return Ok((Err(ErrorCode::NotPermitted),));
            }
            pass(state, |v| HostDescriptor::readlink_at(v, fd, path))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.symlink-at",
        |mut store, (fd, target, path): (Resource<Descriptor>, String, String)| {
            let state = store.data_mut();
            // A link could lead a later path into a withheld directory
            // without naming it. The bridge makes no links, so while a
            // directory is withheld no guest makes any.
            if !state.confinement().loose.is_empty() {
                return Ok((Err(ErrorCode::NotPermitted),));
            }
            pass(state, |v| HostDescriptor::symlink_at(v, fd, target, path))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.link-at",
        |mut store,
         (fd, path_flags, old_path, new_fd, new_path): (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )| {
            let state = store.data_mut();
            if refuse(state, &fd, &old_path)? || refuse(state, &new_fd, &new_path)? {
                return Ok((Err(ErrorCode::NotPermitted),));
            }
            pass(state, |v| {
                HostDescriptor::link_at(v, fd, path_flags, old_path, new_fd, new_path)
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.rename-at",
        |mut store,
         (fd, old_path, new_fd, new_path): (
            Resource<Descriptor>,
            String,
            Resource<Descriptor>,
            String,
        )| {
            let state = store.data_mut();
            if refuse(state, &fd, &old_path)? || refuse(state, &new_fd, &new_path)? {
                return Ok((Err(ErrorCode::NotPermitted),));
            }
            pass(state, |v| {
                HostDescriptor::rename_at(v, fd, old_path, new_fd, new_path)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A method that takes one path and returns nothing.
type PathOnly = fn(&mut WasiFilesystemCtxView<'_>, Resource<Descriptor>, String) -> FsResult<()>;

fn path_only<T: Confined + 'static>(
    types: &mut LinkerInstance<'_, T>,
    name: &str,
    call: PathOnly,
) -> Result<()> {
    types.func_wrap(
        name,
        move |mut store, (fd, path): (Resource<Descriptor>, String)| {
            let state = store.data_mut();
            if refuse(state, &fd, &path)? {
                return Ok((Err(ErrorCode::NotPermitted),));
            }
            pass(state, |v| call(v, fd, path))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_as_written() {
        let parts = |p: &str| plain_components(p);
        assert_eq!(
            parts("sessions/abc123/inbox").unwrap(),
            ["sessions", "abc123", "inbox"]
        );
        assert_eq!(
            parts("./sessions//abc123/").unwrap(),
            ["sessions", "abc123"]
        );
        assert_eq!(
            parts("sessions/good01/../abc123/x").unwrap(),
            ["sessions", "abc123", "x"]
        );
        assert_eq!(parts("../sessions"), None);
        assert_eq!(parts("/etc"), None);
    }
}
