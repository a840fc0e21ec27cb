//! Which archive a project's messages go to: its key, recorded in each
//! session directory at `start`, and the project's members.

use std::path::Path;

use super::MAX_KEY_PROBES;
use crate::error::{BridgeError, Result, display_path};
use crate::files;
use crate::ids::SessionId;
use crate::layout::normalized_project;
use crate::wire::Manifest;
use crate::{Bridge, Layout, Platform};

/// How long an instance trusts that a session is not a project's member.
pub(super) const NOT_MEMBER_FRESH_MS: u64 = 1000;

/// The keys a project's archive may have, in the order tried: `base`,
/// then `base-2` and on, should other projects hold the earlier ones.
pub(super) fn candidate_keys(base: &str) -> impl Iterator<Item = String> + '_ {
    (0..MAX_KEY_PROBES).map(move |probe| match probe {
        0 => base.to_string(),
        n => format!("{base}-{}", n + 1),
    })
}

impl<P: Platform> Bridge<P> {
    /// The archive key of `project`, creating the archive if needed.
    pub(crate) fn archive_key_for_write(&self, project: &str) -> Result<String> {
        let project = normalized_project(project);
        let base = Layout::archive_key(project);
        for key in candidate_keys(&base) {
            match self.archive_owner(&key) {
                Some(owner) if owner == project => return Ok(key),
                Some(_) => continue,
                None => {
                    let dir = self.layout.archive(&key);
                    files::ensure_dir(&dir)?;
                    files::create(&dir, "project", project.as_bytes())?;
                    if self.archive_owner(&key).as_deref() == Some(project) {
                        return Ok(key);
                    }
                }
            }
        }
        Err(BridgeError::Io {
            path: display_path(&self.layout.archives().join(&base)),
            reason: format!("{MAX_KEY_PROBES} other projects hold this archive name"),
        })
    }

    /// The archive key of `project`, if it has an archive.
    pub(crate) fn archive_key_of(&self, project: &str) -> Option<String> {
        let project = normalized_project(project);
        let base = Layout::archive_key(project);
        for key in candidate_keys(&base) {
            match self.archive_owner(&key) {
                Some(owner) if owner == project => return Some(key),
                Some(_) => continue,
                None => return None,
            }
        }
        None
    }

    /// The project an archive belongs to.
    pub(super) fn archive_owner(&self, key: &str) -> Option<String> {
        let bytes = files::read_bounded(&self.layout.archive_project(key), 64 * 1024).ok()?;
        String::from_utf8(bytes).ok()
    }

    /// The archive key recorded in a session directory.
    pub(super) fn recorded_key(session_dir: &Path) -> Option<String> {
        let bytes = files::read_bounded(&session_dir.join("archive-key"), 128).ok()?;
        let key = String::from_utf8(bytes).ok()?;
        Layout::is_archive_key(&key).then_some(key)
    }

    /// Remembers `key` as session `id`'s archive key (see
    /// [`Caches::known_keys`](crate::memo::Caches)).
    pub(super) fn remember_key(&self, id: &SessionId, key: &str) {
        self.caches
            .known_keys
            .borrow_mut()
            .put(id.to_string(), key.to_string());
    }

    /// The archive key of session `id`'s project: the one recorded at
    /// `start`, else found from `project`.
    pub(super) fn session_key(&self, id: &SessionId, project: Option<&str>) -> Result<String> {
        let known = self.caches.known_keys.borrow().get(&id.to_string(), None);
        if let Some(key) = known {
            return Ok(key);
        }
        if let Some(key) = Self::recorded_key(&self.layout.session(id)) {
            self.remember_key(id, &key);
            return Ok(key);
        }
        let project = match project {
            Some(project) => project.to_string(),
            None => self.manifest(id)?.project_path,
        };
        self.archive_key_for_write(&project)
    }

    /// True when session `id` is registered in the archive `key`'s project.
    pub(super) fn is_member(&self, key: &str, id: &str) -> bool {
        let entry = (key.to_string(), id.to_string());
        let known = {
            let m = self.caches.members.borrow();
            m.get(&entry, None)
                .filter(|&member| member)
                .or_else(|| m.get(&entry, Some(NOT_MEMBER_FRESH_MS)))
        };
        if let Some(member) = known {
            return member;
        }
        let member = files::stat(&self.layout.archive_members(key).join(id)).is_ok();
        self.caches.members.borrow_mut().put(entry, member);
        member
    }

    /// Called by `start`: prepares the archive of the session's project,
    /// records its key in the session directory and the session among the
    /// project's members.
    pub(crate) fn archive_register(&self, manifest: &Manifest, warnings: &mut Vec<String>) {
        let registered = SessionId::parse(&manifest.session_id).and_then(|id| {
            let key = self.archive_key_for_write(&manifest.project_path)?;
            let members = self.layout.archive_members(&key);
            files::ensure_child_dir(&members)?;
            files::replace(&members, id.as_str(), b"")?;
            files::replace(&self.layout.session(&id), "archive-key", key.as_bytes())?;
            self.remember_key(&id, &key);
            Ok(())
        });
        if let Err(err) = registered {
            warnings.push(format!(
                "the project's archive could not be prepared ({err}); history will lack this \
                 session's messages"
            ));
        }
    }
}
