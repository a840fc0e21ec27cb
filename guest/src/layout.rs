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
//! sessions/<id>/threads/<peer>       the last reply taken from that peer
//! sessions/<id>/agent-session        the agent session that registered it
//! sessions/<id>/agent-process        the agent process behind it, as the host names it
//! sessions/<id>/receipts/<msg>.<stage>  a step a message this session sent reached
//! sessions/<id>/receipts/rejected/   receipt files set aside as corrupt
//! sessions/<id>/unseen/<msg>         taken by the wake hook, not yet seen in the transcript
//! sessions/<id>/incarnation          a token renewed by every `start`
//! sessions/<id>/policy-audit.log     what a policy changed in sent messages
//! .trash/                            sessions being removed
//! ```

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

    /// The steps reached by messages `id` sent (see `receipts.rs`).
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
