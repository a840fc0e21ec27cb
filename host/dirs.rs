//! The directories the host owns: the bridge directory it grants the guest,
//! and the project pointer it writes on the guest's behalf. Both are checked
//! the way ssh checks `~/.ssh`: ours, and not writable by anyone else.
//!
//! On Windows, permissions are ACLs, which this host does not read: there the
//! checks refuse links, non-directories and directories another user owns,
//! and say on standard error, once per process, that who else may write the
//! directory went unchecked.

use std::fs;
use std::io::{self, Write};
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::sandbox::{io_failure, wit::HostError};
use anyhow::{Context, Result, bail};
use cap_std::ambient_authority;

/// Creates `path` (mode 0700) if missing, then refuses it unless it is a
/// directory owned by this user and writable by nobody else.
pub fn prepare_private_dir(path: &Path, what: &str) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder
        .create(path)
        .with_context(|| format!("cannot create the {what} {}", path.display()))?;
    check_private_dir(path, what)
}

/// `options` for a new file with `mode` (on Unix; on Windows the file takes
/// its directory's ACL), never opened through a
/// symbolic link.
pub fn new_file_options(options: &mut fs::OpenOptions, mode: u32) -> &mut fs::OpenOptions {
    #[cfg(unix)]
    options
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    #[cfg(not(unix))]
    let _ = mode;
    #[cfg(windows)]
    no_follow_windows(options);
    options
}

/// `options` that open a symbolic link itself rather than what it points
/// to (so the caller, checking for a regular file, refuses it), and do not
/// wait on a FIFO.
pub fn no_follow_options(options: &mut fs::OpenOptions) -> &mut fs::OpenOptions {
    #[cfg(unix)]
    options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK);
    #[cfg(windows)]
    no_follow_windows(options);
    options
}

#[cfg(windows)]
fn no_follow_windows(options: &mut fs::OpenOptions) {
    // FILE_FLAG_OPEN_REPARSE_POINT: open a link (a reparse point) itself.
    const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
    std::os::windows::fs::OpenOptionsExt::custom_flags(options, FILE_FLAG_OPEN_REPARSE_POINT);
}

/// A session directory that is not private: another user owns it, or
/// group or others can write to it. The guest is kept out of it (see
/// `confine`); every other session keeps working.
#[derive(Debug, Clone)]
pub struct LooseSession {
    /// The directory's name under `sessions/`.
    pub name: String,
    pub path: PathBuf,
    /// What is wrong and the command that fixes it, for the user.
    pub problem: String,
}

impl LooseSession {
    /// Why the session is refused and how to fix it.
    pub fn explanation(&self) -> String {
        format!(
            "session {} is refused as unsafe: {}",
            self.name, self.problem
        )
    }
}

/// Refuses a bridge directory whose `sessions/` folder another user owns
/// or others can write to, and returns the session directories in it that
/// are not private: anyone who can write to one could plant or alter its
/// messages, so the guest is kept out of each (see `confine`). Symbolic
/// links are left to the guest, which never follows them.
pub fn check_session_dirs(bridge_dir: &Path) -> Result<Vec<LooseSession>> {
    check_layout_folders(bridge_dir)?;
    let sessions = bridge_dir.join("sessions");
    let entries = match fs::read_dir(&sessions) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot list {}", sessions.display()));
        }
    };
    check_private_dir(&sessions, "sessions directory")?;
    let mut loose = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", sessions.display()))?;
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if let Some(problem) = private_dir_problem(&path, "session directory")? {
            loose.push(LooseSession {
                name: entry.file_name().to_string_lossy().into_owned(),
                path,
                problem,
            });
        }
    }
    Ok(loose)
}

/// The folders the guest keeps in the bridge directory (see the guest's
/// `layout.rs`): sessions, the project archive, sessions being removed,
/// and the relay's pinned keys.
pub const LAYOUT_FOLDERS: [&str; 4] = ["sessions", "archive", ".trash", "relay-keys"];

/// Refuses a bridge directory in which a folder of the layout is a
/// symbolic link. Through a link, the messages would live in a folder that
/// is not the bridge directory's own, and the guest, which never leaves
/// the bridge directory, could not open it. Only the link itself is looked
/// at: nothing it leads to is opened.
///
/// # Errors
///
/// Which folder is a link, where it leads, and how to put a real folder in
/// its place.
pub fn check_layout_folders(bridge_dir: &Path) -> Result<()> {
    for name in LAYOUT_FOLDERS {
        let path = bridge_dir.join(name);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path)
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            bail!(
                "the {name} folder {} is a symlink{target}; bridge-host uses the folders of \
                 the bridge directory only as real directories inside it, and opens nothing \
                 through a link. Replace the link with the folder it points to (remove the \
                 link, then move that folder to {}), or choose another bridge directory \
                 with --bridge-dir",
                path.display(),
                path.display()
            );
        }
    }
    Ok(())
}

/// Refuses a directory another user owns, or that group or others can write.
///
/// # Errors
///
/// What is wrong, and the command that fixes it.
pub fn check_private_dir(path: &Path, what: &str) -> Result<()> {
    match private_dir_problem(path, what)? {
        Some(problem) => bail!("{problem}"),
        None => Ok(()),
    }
}

/// What makes `path` not a private directory of this user, with the fix;
/// None when it is one.
fn private_dir_problem(path: &Path, what: &str) -> Result<Option<String>> {
    let meta =
        fs::metadata(path).with_context(|| format!("cannot read the {what} {}", path.display()))?;
    if !meta.is_dir() {
        bail!("the {what} {} is not a directory", path.display());
    }
    check_owner_and_mode(path, what, &meta)
}

#[cfg(unix)]
fn check_owner_and_mode(path: &Path, what: &str, meta: &fs::Metadata) -> Result<Option<String>> {
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Ok(Some(format!(
            "the {what} {} belongs to user {} but you are user {me}; another user could read \
             or forge your sessions' messages. Use a directory of your own (--bridge-dir) or \
             fix its owner: chown {me} {}",
            path.display(),
            meta.uid(),
            shell_quote(path)
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Ok(Some(format!(
            "the {what} {} has mode {mode:03o}: group or others can write to it, so they could \
             plant or alter messages. Run: chmod 700 {}",
            path.display(),
            shell_quote(path)
        )));
    }
    Ok(None)
}

/// Windows keeps permissions in ACLs. The directory, opened itself rather
/// than what a link leads to, must be a directory whose owner is this user,
/// or Administrators or SYSTEM (an elevated process creates what
/// Administrators own; both can write anywhere already). Its ACL, and so
/// who else may write to it, is not read, and that is said once per run.
#[cfg(windows)]
fn check_owner_and_mode(path: &Path, what: &str, _: &fs::Metadata) -> Result<Option<String>> {
    let dir = windows_owner::open_itself(path)
        .with_context(|| format!("cannot open the {what} {}", path.display()))?;
    let meta = dir
        .metadata()
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    if meta.file_type().is_symlink() {
        bail!(
            "the {what} {} is a link; use a directory of its own",
            path.display()
        );
    }
    if !meta.is_dir() {
        bail!("the {what} {} is not a directory", path.display());
    }
    let owner = windows_owner::owner(&dir)
        .with_context(|| format!("cannot read who owns the {what} {}", path.display()))?;
    let me = windows_owner::current_user().context("cannot read this process's user")?;
    if owner != me && !windows_owner::ADMINS_AND_SYSTEM.contains(&owner.as_str()) {
        return Ok(Some(format!(
            "the {what} {} belongs to {owner} but you are {me}; another user could read or \
             forge your sessions' messages. Use a directory of your own (--bridge-dir) or take \
             it over: takeown /F \"{}\"",
            path.display(),
            path.display()
        )));
    }
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        eprintln!(
            "warning: bridge-host checks who owns the {what} {} but does not read Windows \
             ACLs: who else may write to it is unchecked. Keep it under your own profile, \
             where only you and administrators can",
            path.display()
        )
    });
    Ok(None)
}

/// Owners as security identifiers (SIDs), in their `S-1-…` text form.
#[cfg(windows)]
mod windows_owner {
    use std::fs;
    use std::io;
    use std::os::windows::fs::OpenOptionsExt;
    use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
    use std::path::Path;

    use windows_sys::Win32::Foundation::HANDLE;
    use windows_sys::Win32::Security::{
        GetKernelObjectSecurity, GetLengthSid, GetSecurityDescriptorOwner, GetTokenInformation,
        OWNER_SECURITY_INFORMATION, PSID, TOKEN_QUERY, TOKEN_USER, TokenUser,
    };
    use windows_sys::Win32::Storage::FileSystem::{
        FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT, FILE_READ_ATTRIBUTES,
        READ_CONTROL,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    /// BUILTIN\Administrators and NT AUTHORITY\SYSTEM.
    pub const ADMINS_AND_SYSTEM: [&str; 2] = ["S-1-5-32-544", "S-1-5-18"];

    /// `path` itself, a link not followed, opened to read its owner and
    /// attributes (a directory needs backup semantics to be opened at all).
    pub fn open_itself(path: &Path) -> io::Result<fs::File> {
        fs::OpenOptions::new()
            .access_mode(READ_CONTROL | FILE_READ_ATTRIBUTES)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
            .open(path)
    }

    /// Who owns the object `file` is open on.
    pub fn owner(file: &fs::File) -> io::Result<String> {
        let handle = file.as_raw_handle() as HANDLE;
        // SAFETY: `handle` is open for READ_CONTROL; each call writes at
        // most the length given into the buffer, 8-byte aligned as a
        // security descriptor needs.
        let descriptor = sized(|buffer, len, needed| unsafe {
            GetKernelObjectSecurity(handle, OWNER_SECURITY_INFORMATION, buffer, len, needed)
        })?;
        let mut owner: PSID = std::ptr::null_mut();
        let mut defaulted = 0;
        // SAFETY: `descriptor` holds the self-relative descriptor just read;
        // `owner` points into it and is used while it lives.
        let found = unsafe {
            GetSecurityDescriptorOwner(descriptor.as_ptr() as _, &mut owner, &mut defaulted)
        };
        if found == 0 {
            return Err(io::Error::last_os_error());
        }
        if owner.is_null() {
            return Err(io::Error::other("it has no owner"));
        }
        // SAFETY: a valid SID inside `descriptor`.
        Ok(unsafe { sid_text(owner) })
    }

    /// The user this process runs as.
    pub fn current_user() -> io::Result<String> {
        let mut raw: HANDLE = std::ptr::null_mut();
        // SAFETY: GetCurrentProcess returns a pseudo handle; OpenProcessToken
        // writes a new handle into `raw` on success, which `token` then owns.
        let token = unsafe {
            if OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut raw) == 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedHandle::from_raw_handle(raw)
        };
        let handle = token.as_raw_handle() as HANDLE;
        // SAFETY: as in `owner`: the call writes at most `len` bytes.
        let info = sized(|buffer, len, needed| unsafe {
            GetTokenInformation(handle, TokenUser, buffer, len, needed)
        })?;
        // SAFETY: the buffer starts with the TOKEN_USER the call wrote, whose
        // SID points into the same buffer.
        Ok(unsafe { sid_text((*(info.as_ptr() as *const TOKEN_USER)).User.Sid) })
    }

    /// Runs a Windows call that fills a buffer of a size it reports: first
    /// to learn the size, then with a buffer that large.
    fn sized(
        mut call: impl FnMut(*mut core::ffi::c_void, u32, *mut u32) -> i32,
    ) -> io::Result<Vec<u64>> {
        let mut buffer: Vec<u64> = Vec::new();
        let mut needed = 0u32;
        for _ in 0..3 {
            let len = u32::try_from(buffer.len() * 8).unwrap_or(u32::MAX);
            if call(buffer.as_mut_ptr().cast(), len, &mut needed) != 0 {
                return Ok(buffer);
            }
            let err = io::Error::last_os_error();
            // ERROR_INSUFFICIENT_BUFFER
            if err.raw_os_error() != Some(122) || needed as usize <= buffer.len() * 8 {
                return Err(err);
            }
            buffer = vec![0; (needed as usize).div_ceil(8)];
        }
        Err(io::Error::other("the size it needs keeps changing"))
    }

    /// `S-<revision>-<authority>-<sub-authority>…`, read from the SID's
    /// bytes: revision, sub-authority count, a 48-bit big-endian
    /// authority, then that many 32-bit little-endian sub-authorities.
    ///
    /// # Safety
    ///
    /// `sid` points to a valid SID.
    unsafe fn sid_text(sid: PSID) -> String {
        // SAFETY: the caller's promise; GetLengthSid gives its full length.
        let bytes =
            unsafe { std::slice::from_raw_parts(sid as *const u8, GetLengthSid(sid) as usize) };
        let authority = bytes[2..8]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let mut text = format!("S-{}-{authority}", bytes[0]);
        for sub in bytes[8..].chunks_exact(4).take(usize::from(bytes[1])) {
            text.push_str(&format!(
                "-{}",
                u32::from_le_bytes([sub[0], sub[1], sub[2], sub[3]])
            ));
        }
        text
    }
}

#[cfg(unix)]
fn shell_quote(path: &Path) -> String {
    let text = path.to_string_lossy();
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-~".contains(&b))
    {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// `path` as the guest is given it. The guest, like the original plugin's
/// manifests, writes paths with `/`; on Windows an absolute path is given
/// in the form Git Bash's `pwd` prints, which is what the original plugin
/// records there: `C:\Users\me\app` as `/c/Users/me/app`, and
/// `\\server\share\app` as `//server/share/app`. Any other path is given as
/// it is (a relative one is refused by the guest, as on Unix).
///
/// # Errors
///
/// A name that is not valid UTF-8, or a device path (`\\.\…`), which has
/// no such form.
#[cfg(windows)]
pub fn git_bash_form(path: &Path) -> Result<PathBuf> {
    use std::path::{Component, Prefix};
    if !path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let utf8 = |part: &std::ffi::OsStr| {
        part.to_str().map(str::to_string).with_context(|| {
            format!(
                "{} is not valid UTF-8; session-bridge stores paths as JSON text",
                path.display()
            )
        })
    };
    let mut text = String::new();
    for component in path.components() {
        match component {
            Component::Prefix(prefix) => match prefix.kind() {
                Prefix::Disk(letter) | Prefix::VerbatimDisk(letter) => {
                    text.push('/');
                    text.push(char::from(letter.to_ascii_lowercase()));
                }
                Prefix::UNC(server, share) | Prefix::VerbatimUNC(server, share) => {
                    text.push_str(&format!("//{}/{}", utf8(server)?, utf8(share)?));
                }
                Prefix::Verbatim(_) | Prefix::DeviceNS(_) => {
                    bail!(
                        "{} is a device path; use a path on a drive or a share",
                        path.display()
                    )
                }
            },
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => text.push_str("/.."),
            Component::Normal(name) => {
                text.push('/');
                text.push_str(&utf8(name)?);
            }
        }
    }
    Ok(PathBuf::from(text))
}

/// Opens the bridge directory as a capability: every path the host resolves
/// for the guest goes through it and cannot leave it.
pub fn open_bridge_dir(path: &Path) -> Result<cap_std::fs::Dir> {
    cap_std::fs::Dir::open_ambient_dir(path, ambient_authority())
        .with_context(|| format!("cannot open the bridge directory {}", path.display()))
}

/// The project pointer: `<project>/.claude/bridge-session`, holding the
/// session ID with no trailing newline. An invocation with no project
/// directory (an empty or relative path, as hooks use to find a session by
/// the agent's ID alone) has no pointer: reads find nothing and writes fail.
pub struct ProjectPointer {
    claude_dir: Option<PathBuf>,
}

const POINTER_NAME: &str = "bridge-session";
const POINTER_MAX: u64 = 64;

impl ProjectPointer {
    pub fn new(project_dir: &Path) -> Self {
        ProjectPointer {
            claude_dir: project_dir
                .is_absolute()
                .then(|| project_dir.join(".claude")),
        }
    }

    fn path(&self) -> Option<PathBuf> {
        Some(self.claude_dir.as_ref()?.join(POINTER_NAME))
    }

    pub fn read(&self) -> Option<String> {
        let file = no_follow_options(fs::OpenOptions::new().read(true))
            .open(self.path()?)
            .ok()?;
        if !file.metadata().ok()?.is_file() {
            return None;
        }
        let mut text = String::new();
        io::Read::read_to_string(&mut io::Read::take(file, POINTER_MAX), &mut text).ok()?;
        let text = text.trim().to_string();
        (!text.is_empty()).then_some(text)
    }

    /// Writes through a temporary file and a rename, so a symlink planted at
    /// the pointer's name is replaced, never followed.
    pub fn write(&self, id: &str) -> Result<(), HostError> {
        let (Some(claude_dir), Some(path)) = (&self.claude_dir, self.path()) else {
            return Err(HostError::NoProjectDir);
        };
        let describe = |e: io::Error| io_failure(&path, &e);
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        builder.mode(0o755);
        builder.create(claude_dir).map_err(describe)?;
        let temp = claude_dir.join(format!(".{POINTER_NAME}.{}.tmp", std::process::id()));
        let written = new_file_options(fs::OpenOptions::new().write(true).create_new(true), 0o644)
            .open(&temp)
            .and_then(|mut f| f.write_all(id.as_bytes()))
            .and_then(|()| fs::rename(&temp, &path));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written.map_err(describe)
    }

    /// Removes the pointer only when it still names `id`: another session of
    /// the project may have taken it over.
    pub fn clear(&self, id: &str) -> Result<(), HostError> {
        let Some(path) = self.path() else {
            return Ok(());
        };
        if self.read().as_deref() != Some(id) {
            return Ok(());
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_failure(&path, &e)),
        }
    }
}
