//! Where everything lives in the bridge directory. Paths are built only from
//! validated IDs.
//!
//! ```text
//! sessions/<id>/manifest.json        the session's manifest (reference)
//! sessions/<id>/inbox/<msg>.json     pending messages (reference)
//! sessions/<id>/inbox/claimed/       messages being handed out, one lease each
//! sessions/<id>/inbox/read/          messages taken, as they arrived but marked "read"
//! sessions/<id>/inbox/rejected/      malformed files set aside, with a reason
//! sessions/<id>/outbox/<msg>.json    copies of sent messages (reference)
//! sessions/<id>/waiting/<msg>        replies an `ask` or `receive` waits for
//! sessions/<id>/pings/<peer>         when this session last pinged or answered a ping of <peer>
//! sessions/<id>/threads/<peer>       left by earlier versions (implicit follow-ups); removed with the session
//! sessions/<id>/agent-session        the agent session that registered it
//! sessions/<id>/agent-process        the agent process behind it, as the host names it
//! sessions/<id>/receipts/<msg>.<stage>  a step a message this session sent reached
//! sessions/<id>/receipts/rejected/   receipt files set aside as corrupt
//! sessions/<id>/unseen/<msg>         taken by the wake hook, not yet seen in the transcript
//! sessions/<id>/incarnation          a token renewed by every `start`
//! sessions/<id>/policy-audit.log     what a policy changed in sent messages
//! sessions/<id>/archive-key          the key of the session's project archive
//! .trash/                            sessions being removed
//! archive/<key>/project              the project's absolute path, checked on every use
//! archive/<key>/log.jsonl            every message the project exchanged, one JSON line each
//! archive/<key>/large/<name>.json    a record too large for one atomic append
//! archive/<key>/members/<id>         the sessions registered in the project
//! archive/<key>/rejected.jsonl       unreadable log lines that cleanup set aside
//! ```
//!
//! The archive is keyed by project, not by session: the guest's only
//! capability is the bridge directory, so the archive has to live in it;
//! keyed by project it outlives `stop`, and a new session in the same
//! project finds the history of the one before. The key is the project's
//! name made safe for a file name, then a hash of its full path (see
//! [`Layout::archive_key`]); the `project` file guards against two paths
//! sharing a key. The original plugin never looks outside `sessions/`.

use std::path::{Path, PathBuf};

use crate::ids::{MessageId, SessionId};

/// The layout of one bridge directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn sessions(&self) -> PathBuf {
        self.root.join("sessions")
    }

    pub fn trash(&self) -> PathBuf {
        self.root.join(".trash")
    }

    pub fn session(&self, id: &SessionId) -> PathBuf {
        self.sessions().join(id.as_str())
    }

    pub fn manifest(&self, id: &SessionId) -> PathBuf {
        self.session(id).join("manifest.json")
    }

    pub fn agent_file(&self, id: &SessionId) -> PathBuf {
        self.session(id).join("agent-session")
    }

    pub fn agent_process(&self, id: &SessionId) -> PathBuf {
        self.session(id).join("agent-process")
    }

    pub fn policy_audit(&self, id: &SessionId) -> PathBuf {
        self.session(id).join("policy-audit.log")
    }

    pub fn incarnation(&self, id: &SessionId) -> PathBuf {
        self.session(id).join("incarnation")
    }

    pub fn inbox(&self, id: &SessionId) -> PathBuf {
        self.session(id).join("inbox")
    }

    pub fn claimed(&self, id: &SessionId) -> PathBuf {
        self.inbox(id).join("claimed")
    }

    pub fn read(&self, id: &SessionId) -> PathBuf {
        self.inbox(id).join("read")
    }

    pub fn rejected(&self, id: &SessionId) -> PathBuf {
        self.inbox(id).join("rejected")
    }

    pub fn outbox(&self, id: &SessionId) -> PathBuf {
        self.session(id).join("outbox")
    }

    pub fn waiting(&self, id: &SessionId) -> PathBuf {
        self.session(id).join("waiting")
    }

    pub fn threads(&self, id: &SessionId) -> PathBuf {
        self.session(id).join("threads")
    }

    pub fn waiting_marker(&self, id: &SessionId, message: &MessageId) -> PathBuf {
        self.waiting(id).join(message.as_str())
    }

    pub fn pings(&self, id: &SessionId) -> PathBuf {
        self.session(id).join("pings")
    }

    /// The steps reached by messages `id` sent (see `receipts/`).
    pub fn receipts(&self, id: &SessionId) -> PathBuf {
        self.session(id).join("receipts")
    }

    /// The file name of the step `stage` (as `Stage::as_str` spells it) of
    /// `message`, in [`Self::receipts`].
    pub fn receipt_name(message: &MessageId, stage: &str) -> String {
        format!("{message}.{stage}")
    }

    pub fn rejected_receipts(&self, id: &SessionId) -> PathBuf {
        self.receipts(id).join("rejected")
    }

    /// Messages `id` took through the wake hook that its agent's transcript
    /// has not shown yet.
    pub fn unseen(&self, id: &SessionId) -> PathBuf {
        self.session(id).join("unseen")
    }

    pub fn unseen_marker(&self, id: &SessionId, message: &MessageId) -> PathBuf {
        self.unseen(id).join(message.as_str())
    }

    /// The key file of a session: which project archive it writes to.
    pub fn archive_key_file(&self, id: &SessionId) -> PathBuf {
        self.session(id).join("archive-key")
    }

    /// Every project archive.
    pub fn archives(&self) -> PathBuf {
        self.root.join("archive")
    }

    /// One project's archive. `key` must pass [`Layout::is_archive_key`].
    pub fn archive(&self, key: &str) -> PathBuf {
        debug_assert!(Self::is_archive_key(key), "{key:?}");
        self.archives().join(key)
    }

    /// The file naming the project an archive belongs to.
    pub fn archive_project(&self, key: &str) -> PathBuf {
        self.archive(key).join("project")
    }

    /// The append-only log of an archive.
    pub fn archive_log(&self, key: &str) -> PathBuf {
        self.archive(key).join("log.jsonl")
    }

    /// Records too large for one atomic append.
    pub fn archive_large(&self, key: &str) -> PathBuf {
        self.archive(key).join("large")
    }

    /// The sessions registered in an archive's project.
    pub fn archive_members(&self, key: &str) -> PathBuf {
        self.archive(key).join("members")
    }

    /// Unreadable log lines set aside by cleanup.
    pub fn archive_rejected(&self, key: &str) -> PathBuf {
        self.archive(key).join("rejected.jsonl")
    }

    /// The first archive key tried for `project_path` (an absolute path):
    /// the project's name with every character but `[A-Za-z0-9._-]` made
    /// `_`, at most 40 characters, then `-` and the FNV-1a 64-bit hash of
    /// the path (trailing slashes removed) in 16 hex digits. Should another
    /// path already hold that key, `-2`, `-3` and so on are appended.
    pub fn archive_key(project_path: &str) -> String {
        let path = normalized_project(project_path);
        let mut name: String = crate::wire::project_name(path)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        if name.starts_with('.') || name.is_empty() {
            name.insert(0, '_');
        }
        format!("{name}-{:016x}", fnv1a64(path.as_bytes()))
    }

    /// True for a name [`Layout::archive_key`] can produce (with a probe
    /// suffix): a single safe path component.
    pub fn is_archive_key(key: &str) -> bool {
        !key.is_empty()
            && key.len() <= 64
            && !key.starts_with('.')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    }

    /// Every folder a registered session has.
    pub fn session_dirs(&self, id: &SessionId) -> [PathBuf; 6] {
        [
            self.inbox(id),
            self.claimed(id),
            self.read(id),
            self.rejected(id),
            self.outbox(id),
            self.waiting(id),
        ]
    }
}

/// A project path as archives compare it: without trailing slashes (`/`
/// stays `/`).
pub fn normalized_project(project_path: &str) -> &str {
    let trimmed = project_path.trim_end_matches('/');
    if trimmed.is_empty() && project_path.starts_with('/') {
        "/"
    } else {
        trimmed
    }
}

/// FNV-1a, 64 bits: short, stable across versions and platforms, and not
/// meant to resist anyone (the `project` file catches collisions).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_keys_are_readable_safe_and_path_specific() {
        // Known FNV-1a 64 values.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let key = Layout::archive_key("/home/me/my-app");
        assert!(key.starts_with("my-app-"), "{key}");
        assert_eq!(key, Layout::archive_key("/home/me/my-app/"));
        assert_ne!(key, Layout::archive_key("/home/you/my-app"));
        for odd in [
            "/x/../..",
            "/x/.hidden",
            "/x/we\"ird\nnamé",
            "/",
            "/x/a b/c:d",
        ] {
            let key = Layout::archive_key(odd);
            assert!(Layout::is_archive_key(&key), "{odd:?} gave {key:?}");
        }
        assert!(!Layout::is_archive_key("../x"));
        assert!(!Layout::is_archive_key(".trash"));
        assert!(!Layout::is_archive_key("a/b"));
    }
}
