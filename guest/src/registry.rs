//! Sessions: registering, reading manifests, listing and removing.

use std::fs;
use std::io;
use std::path::Path;

use crate::error::{BridgeError, Result};
use crate::files::{self, ReadFailure};
use crate::ids::{SessionId, random_token};
use crate::wire::{MAX_MANIFEST_FILE_BYTES, Manifest};
use crate::{Bridge, Platform, clock};

/// A heartbeat older than this is refreshed by any verb the session runs.
pub const HEARTBEAT_REFRESH_SECS: u64 = 60;
/// Sessions whose heartbeat is older than this are pruned by `stop`.
pub const PRUNE_AFTER_SECS: u64 = 30 * 60;

/// The longest agent session ID accepted.
const MAX_AGENT_SESSION_LEN: usize = 128;

/// Checks an agent session ID (`CLAUDE_CODE_SESSION_ID`) before it is stored.
pub fn validate_agent_session(text: &str) -> Result<()> {
    let ok = !text.is_empty()
        && text.len() <= MAX_AGENT_SESSION_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(BridgeError::InvalidArgument(format!(
            "agent session ID {text:?} is not 1 to {MAX_AGENT_SESSION_LEN} characters of \
             [A-Za-z0-9._-]; unset CLAUDE_CODE_SESSION_ID or fix it"
        )))
    }
}

/// The longest client name a manifest keeps, in bytes.
pub const MAX_CLIENT_NAME_BYTES: usize = 100;

/// A client's name as a manifest keeps it: control characters become
/// spaces, runs of spaces one, and it is cut at
/// [`MAX_CLIENT_NAME_BYTES`]; None when nothing is left. The name comes
/// from whatever client connected, so it is only ever shown, never trusted.
pub fn client_name(given: Option<&str>) -> Option<String> {
    let mut name = String::new();
    for word in given?
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        let extra = usize::from(!name.is_empty()) + word.len();
        if name.len() + extra > MAX_CLIENT_NAME_BYTES {
            let room = MAX_CLIENT_NAME_BYTES.saturating_sub(name.len() + 1);
            let cut = (0..=room.min(word.len()))
                .rev()
                .find(|&i| word.is_char_boundary(i))
                .unwrap_or(0);
            if cut > 0 {
                if !name.is_empty() {
                    name.push(' ');
                }
                name.push_str(&word[..cut]);
            }
            break;
        }
        if !name.is_empty() {
            name.push(' ');
        }
        name.push_str(word);
    }
    (!name.is_empty()).then_some(name)
}

/// Checks a project directory before it goes into a manifest.
pub fn validate_project_dir(text: &str) -> Result<()> {
    if !text.starts_with('/') {
        return Err(BridgeError::InvalidArgument(format!(
            "project directory {text:?} is not an absolute path; pass --project-dir /absolute/path"
        )));
    }
    if text.contains('\0') {
        return Err(BridgeError::InvalidArgument(
            "project directory contains a NUL byte".into(),
        ));
    }
    Ok(())
}

/// Why a session directory cannot be used, when the host refused the guest
/// access to it. The host refuses a session directory that another user
/// owns or that group or others can write to (the original plugin, run
/// under umask 002, makes them mode 775): anyone who can write there could
/// plant or alter its messages. The host names the fix.
pub const REFUSED_SESSION: &str = "unsafe: bridge-host refuses to use this session directory \
     because it is not private to you (another user owns it, or group or others can write to it)";

/// True when `err` is the host's refusal of a session directory.
pub(crate) fn is_refused(err: &BridgeError) -> bool {
    matches!(err, BridgeError::Io { reason, .. } if reason == REFUSED_SESSION)
}

impl<P: Platform> Bridge<P> {
    /// True when a usable directory exists for `id`.
    pub(crate) fn session_exists(&self, id: &SessionId) -> bool {
        self.session_dir_usable(id).unwrap_or(false)
    }

    /// True when a directory exists for `id`, false when none does.
    ///
    /// # Errors
    /// `Io` ([`REFUSED_SESSION`]) when the host refused access to it.
    pub(crate) fn session_dir_usable(&self, id: &SessionId) -> Result<bool> {
        let dir = self.layout.session(id);
        match files::stat(&dir) {
            Ok(meta) => Ok(meta.kind == files::Kind::Dir),
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => Err(BridgeError::Io {
                path: crate::error::display_path(&dir),
                reason: REFUSED_SESSION.into(),
            }),
            Err(_) => Ok(false),
        }
    }

    /// Reads the manifest of `id`.
    ///
    /// # Errors
    /// `NoSuchSession` when the session directory is missing, `Corrupt` when
    /// the manifest is missing or malformed, `Io` when the host refused
    /// access to the session directory.
    pub(crate) fn manifest(&self, id: &SessionId) -> Result<Manifest> {
        if !self.session_dir_usable(id)? {
            return Err(BridgeError::NoSuchSession(id.to_string()));
        }
        let path = self.layout.manifest(id);
        match files::read_bounded(&path, MAX_MANIFEST_FILE_BYTES) {
            Ok(bytes) => {
                Manifest::parse(&bytes, id).map_err(|reason| BridgeError::corrupt(&path, reason))
            }
            Err(ReadFailure::Missing) => {
                Err(BridgeError::corrupt(&path, "the manifest is missing"))
            }
            Err(failure) => Err(BridgeError::corrupt(
                &path,
                failure.describe(MAX_MANIFEST_FILE_BYTES),
            )),
        }
    }

    pub(crate) fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let id = SessionId::parse(&manifest.session_id)?;
        files::replace(
            &self.layout.session(&id),
            "manifest.json",
            &manifest.to_bytes(),
        )
    }

    /// Every directory under `sessions/` named like a session ID.
    pub(crate) fn session_ids(&self) -> Result<Vec<SessionId>> {
        let mut ids: Vec<SessionId> = files::list(&self.layout.sessions())?
            .iter()
            .filter_map(|name| SessionId::parse(name).ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The agent session that registered `id`, if any.
    pub(crate) fn agent_of(&self, id: &SessionId) -> Option<String> {
        let bytes = files::read_bounded(&self.layout.agent_file(id), 256).ok()?;
        String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
    }

    /// Creates the folders of `id`, writes its manifest and records its agent.
    pub(crate) fn register(
        &self,
        id: &SessionId,
        project_dir: &str,
        agent: Option<&str>,
        client: Option<String>,
    ) -> Result<Manifest> {
        for dir in self.layout.session_dirs(id) {
            files::ensure_dir(&dir)?;
        }
        let manifest = Manifest {
            client,
            ..Manifest::new(id, project_dir)
        };
        self.write_manifest(&manifest)?;
        self.record_agent(id, agent)?;
        self.new_incarnation(id)?;
        Ok(manifest)
    }

    /// Creates a session with a fresh random ID; the directory is created
    /// exclusively, so two registrations never share an ID.
    pub(crate) fn register_new(
        &self,
        project_dir: &str,
        agent: Option<&str>,
        client: Option<String>,
    ) -> Result<Manifest> {
        files::ensure_dir(&self.layout.sessions())?;
        loop {
            let id = SessionId::random();
            match fs::create_dir(self.layout.session(&id)) {
                Ok(()) => return self.register(&id, project_dir, agent, client),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => {
                    return Err(BridgeError::io(
                        "cannot create session directory",
                        &self.layout.session(&id),
                        &err,
                    ));
                }
            }
        }
    }

    pub(crate) fn record_agent(&self, id: &SessionId, agent: Option<&str>) -> Result<()> {
        match agent {
            Some(agent) => {
                files::replace(&self.layout.session(id), "agent-session", agent.as_bytes())
            }
            None => Ok(()),
        }
    }

    /// Refreshes the heartbeat of a live session, keeping everything else.
    pub(crate) fn touch(&self, manifest: &Manifest) -> Result<Manifest> {
        let mut fresh = manifest.clone();
        fresh.last_heartbeat = clock::now_stamp();
        // An away session stays away until its agent registers it again
        // (`start`, which ends the away state first).
        if !self.is_away(&crate::ids::SessionId::parse(&manifest.session_id)?) {
            fresh.status = "active".into();
        }
        self.write_manifest(&fresh)?;
        Ok(fresh)
    }

    /// Refreshes the heartbeat only when it is older than a minute, so busy
    /// sessions do not rewrite their manifest on every message.
    pub(crate) fn touch_if_due(&self, manifest: Manifest) -> Result<Manifest> {
        if manifest.heartbeat_older_than(HEARTBEAT_REFRESH_SECS) {
            self.touch(&manifest)
        } else {
            Ok(manifest)
        }
    }

    /// A fresh token marking one registration of `id`; `start` writes a new
    /// one every time, so a registration made while a `stop` runs can be
    /// told apart from the one being stopped.
    pub(crate) fn new_incarnation(&self, id: &SessionId) -> Result<()> {
        files::replace(
            &self.layout.session(id),
            "incarnation",
            random_token(16).as_bytes(),
        )
    }

    /// The current registration token of `id`, if any.
    pub(crate) fn incarnation(&self, id: &SessionId) -> Option<Vec<u8>> {
        files::read_bounded(&self.layout.incarnation(id), 64).ok()
    }

    /// Removes this session's directory in one rename, so peers see it
    /// either whole or gone. If the session registered again since the
    /// `seen` token was read, it is put back and false is returned.
    pub(crate) fn remove_own_session(&self, id: &SessionId, seen: Option<&[u8]>) -> Result<bool> {
        let Some(moved) = self.move_to_trash(id)? else {
            return Ok(true);
        };
        let now = files::read_bounded(&moved.join("incarnation"), 64).ok();
        let reregistered = now.as_deref() != seen;
        if reregistered && fs::rename(&moved, self.layout.session(id)).is_ok() {
            return Ok(false);
        }
        // Listeners still waiting on the moved inbox are woken by a new entry
        // in it; they then find the session gone and end. Listing skips
        // dot-files, so nothing mistakes it for a message.
        let _ = fs::write(moved.join("inbox").join(".stopped"), b"");
        // What is still pending, and what was taken but not archived yet,
        // goes into the project's archive first. Should that fail, the
        // directory stays in `.trash/`, where cleanup tries again: a
        // message is never deleted unarchived.
        let manifest = read_moved_manifest(&moved, id);
        let project = manifest.as_ref().map(|m| m.project_path.as_str());
        if self
            .archive_removed_session(&moved, id, project, false, &mut Vec::new())
            .is_ok()
        {
            remove_tree(&moved)?;
        }
        Ok(true)
    }

    fn move_to_trash(&self, id: &SessionId) -> Result<Option<std::path::PathBuf>> {
        let trash = self.layout.trash();
        files::ensure_dir(&trash)?;
        let moved = trash.join(format!("{id}-{}", random_token(8)));
        match fs::rename(self.layout.session(id), &moved) {
            Ok(()) => Ok(Some(moved)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(BridgeError::io(
                "cannot remove session",
                &self.layout.session(id),
                &err,
            )),
        }
    }

    /// Removes `id` if its heartbeat is more than 30 minutes old (see
    /// [`Self::remove_session_if`]).
    pub(crate) fn prune_if_abandoned(&self, id: &SessionId) -> Result<bool> {
        // An away session's heartbeat stops with its agent; only `away
        // off`, `cleanup` or its transcript's end remove it.
        let abandoned = |m: &Manifest| {
            m.heartbeat_older_than(PRUNE_AFTER_SECS) && m.status != crate::away::AWAY_STATUS
        };
        Ok(self
            .remove_session_if(id, abandoned, &mut Vec::new())?
            .is_some())
    }

    /// Removes `id` if `abandoned` holds for its manifest. The check is
    /// repeated after the directory has been moved aside: a session that
    /// re-registered in between is moved back, never deleted. Before the
    /// directory is deleted, the senders of its pending messages are told
    /// (receipts) and every message in it is kept in its project's archive,
    /// pending ones marked as never taken; when that fails the session is
    /// put back and kept. Returns how many messages were archived, None
    /// when the session was kept.
    pub(crate) fn remove_session_if(
        &self,
        id: &SessionId,
        abandoned: impl Fn(&Manifest) -> bool,
        warnings: &mut Vec<String>,
    ) -> Result<Option<u32>> {
        match self.manifest(id) {
            Ok(manifest) if abandoned(&manifest) => {}
            _ => return Ok(None),
        }
        // Told while the inbox is still in place, where receipts look.
        self.receipts_recipient_gone(id);
        let Some(moved) = self.move_to_trash(id)? else {
            return Ok(None);
        };
        let still_abandoned = read_moved_manifest(&moved, id).filter(|m| abandoned(m));
        if let Some(manifest) = still_abandoned {
            match self.archive_removed_session(
                &moved,
                id,
                Some(&manifest.project_path),
                false,
                warnings,
            ) {
                Ok(archived) => {
                    remove_tree(&moved)?;
                    return Ok(Some(archived));
                }
                Err(err) => warnings.push(format!(
                    "session {id} was kept: its messages could not be archived ({err})"
                )),
            }
        }
        // Revived while being pruned, or not archived: put it back. Should
        // a new directory already stand in its place, the moved one stays
        // in `.trash/` rather than being deleted.
        let _ = fs::rename(&moved, self.layout.session(id));
        Ok(None)
    }
}

/// The manifest of a session directory moved into `.trash/`.
pub(crate) fn read_moved_manifest(moved: &Path, id: &SessionId) -> Option<Manifest> {
    let bytes = files::read_bounded(&moved.join("manifest.json"), MAX_MANIFEST_FILE_BYTES).ok()?;
    Manifest::parse(&bytes, id).ok()
}

pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(BridgeError::io("cannot delete", path, &err)),
    }
}
