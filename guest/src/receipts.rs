//! Receipts: where a message this session sent stands, told truthfully.
//!
//! SKELETON (to be written): see the doc comment of each function.

use crate::error::Result;
use crate::ids::{MessageId, SessionId};
use crate::wire::Message;
use crate::{Bridge, Caller, Context, Liveness, Platform, Receipt};

impl<P: Platform> Bridge<P> {
    /// Called once a message addressed to `owner` was committed as taken
    /// (from `keep_as_read`, also when a killed committer's `.taken` file is
    /// finished later, with `caller` None then). Records a `taken` step in
    /// the sender's receipts, with when, by `owner`, and the taker kind.
    /// Never fails the delivery: problems are ignored or become warnings.
    pub(crate) fn receipt_taken(&self, message: &Message, owner: &SessionId, caller: Option<Caller>) {
        let _ = (message, owner, caller);
    }

    /// Called just before the file `path` in `owner`'s inbox (or its
    /// `claimed/`) is set aside as malformed, `reason` saying why. The file
    /// may name its sender even so; then the sender's receipt says
    /// `set-aside` with the reason.
    pub(crate) fn receipt_set_aside(&self, owner: &SessionId, path: &std::path::Path, reason: &str) {
        let _ = (owner, path, reason);
    }

    /// Called after `reply` (any message with `inReplyTo`) was delivered:
    /// records `answered` on the receipt of the message it answers.
    pub(crate) fn receipt_answered(&self, reply: &Message) {
        let _ = reply;
    }

    /// Called before session `owner` is removed (by `stop`, or by cleanup
    /// removing a ghost): every message still pending in its inbox gets a
    /// `recipient-gone` step on its sender's receipt.
    pub(crate) fn receipts_recipient_gone(&self, owner: &SessionId) {
        let _ = owner;
    }

    /// Whether the agent behind session `id` runs.
    pub(crate) fn liveness(&self, id: &SessionId) -> Liveness {
        let _ = id;
        Liveness::Unknown
    }

    /// Records `context.agent_process` for session `id` (start, session-start).
    pub(crate) fn record_agent_process(&self, id: &SessionId, context: &Context) -> Result<()> {
        let _ = (id, context);
        Ok(())
    }

    /// Where `id`, sent by `me`, stands.
    pub(crate) fn receipt(&self, me: &SessionId, id: &MessageId) -> Result<Receipt> {
        let _ = (me, id);
        Err(crate::BridgeError::NoSuchMessage(id.to_string()))
    }

    /// `track`.
    pub(crate) fn track(&self, context: &Context, id: &str) -> Result<Receipt> {
        let _ = (context, id);
        unimplemented!("receipts")
    }

    /// `seen`: which messages this session took through the wake hook
    /// appear in `transcript`; each is recorded as `seen` on its receipt.
    pub(crate) fn seen(&self, context: &Context, transcript: &str, warnings: &mut Vec<String>) -> Result<Vec<String>> {
        let _ = (context, transcript, warnings);
        unimplemented!("receipts")
    }
}

/// The text of a receipt.
pub(crate) fn receipt_text(receipt: &Receipt) -> String {
    let _ = receipt;
    unimplemented!("receipts")
}

/// The JSON of a receipt.
pub(crate) fn receipt_json(receipt: &Receipt) -> serde_json::Value {
    let _ = receipt;
    unimplemented!("receipts")
}
