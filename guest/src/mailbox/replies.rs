//! The replies a session awaits, and the messages it sent and received.
use std::collections::HashMap;
use std::path::Path;

use super::claim::ClaimName;
use crate::error::Result;
use crate::files::{self};
use crate::ids::{MessageId, SessionId};
use crate::wire::{MAX_MESSAGE_FILE_BYTES, Message};
use crate::{Bridge, Platform};

impl<P: Platform> Bridge<P> {
    /// Replies that an `ask` or `receive` of `owner` is waiting for, with
    /// the deadline of each wait (milliseconds since the epoch).
    pub(crate) fn awaited_replies(&self, owner: &SessionId) -> Result<HashMap<String, u64>> {
        let dir = self.layout.waiting(owner);
        let mut awaited = HashMap::new();
        for name in files::list(&dir)? {
            if MessageId::parse(&name).is_err() {
                continue;
            }
            let deadline = files::read_bounded(&dir.join(&name), 32)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(0);
            awaited.insert(name, deadline);
        }
        Ok(awaited)
    }

    /// Announces that this session waits for replies to `query` until
    /// `deadline_ms`, so that `listen` leaves them to the waiter.
    pub(crate) fn await_reply(
        &self,
        owner: &SessionId,
        query: &MessageId,
        deadline_ms: u64,
    ) -> Result<()> {
        let dir = self.layout.waiting(owner);
        files::ensure_child_dir(&dir)?;
        files::replace(&dir, query.as_str(), deadline_ms.to_string().as_bytes())
    }

    pub(crate) fn stop_awaiting(&self, owner: &SessionId, query: &MessageId) {
        let _ = files::remove_if_present(&self.layout.waiting_marker(owner, query));
    }

    /// Every message of `owner`'s inbox, pending, claimed or read, for the
    /// rare verbs that need history (`status`, `stop`, `reply`). Unreadable
    /// files are skipped.
    pub(crate) fn inbox_history(&self, owner: &SessionId) -> Result<Vec<Message>> {
        let mut all = Vec::new();
        for dir in [
            self.layout.inbox(owner),
            self.layout.claimed(owner),
            self.layout.read(owner),
        ] {
            all.extend(read_messages(&dir, Some(owner))?);
        }
        Ok(all)
    }

    /// Every message in `owner`'s outbox.
    /// Every message in `owner`'s outbox that `owner` sent; a planted copy
    /// claiming another sender is ignored.
    pub(crate) fn outbox_history(&self, owner: &SessionId) -> Result<Vec<Message>> {
        let mut sent = read_messages(&self.layout.outbox(owner), None)?;
        sent.retain(|m| m.from == owner.as_str());
        Ok(sent)
    }

    /// A message `owner` received, wherever it now is in the inbox.
    pub(crate) fn received(&self, owner: &SessionId, id: &MessageId) -> Result<Option<Message>> {
        let by_name = [
            self.layout.read(owner).join(id.file_name()),
            self.layout.inbox(owner).join(id.file_name()),
        ];
        if let Some(found) = by_name
            .iter()
            .find_map(|path| read_message(path, id.as_str(), Some(owner)))
        {
            return Ok(Some(found));
        }
        let claimed = self.layout.claimed(owner);
        Ok(files::list(&claimed)?
            .iter()
            .filter(|name| ClaimName::parse(name).is_some_and(|c| &c.message_id == id))
            .find_map(|name| read_message(&claimed.join(name), id.as_str(), Some(owner))))
    }

    /// True when `owner` sent `id` (its outbox holds a copy).
    pub(crate) fn sent_by(&self, owner: &SessionId, id: &MessageId) -> bool {
        files::stat(&self.layout.outbox(owner).join(id.file_name()))
            .is_ok_and(|m| m.kind == files::Kind::File)
    }
}

/// A valid message file, or None.
pub(super) fn read_message(path: &Path, stem: &str, owner: Option<&SessionId>) -> Option<Message> {
    let bytes = files::read_bounded(path, MAX_MESSAGE_FILE_BYTES).ok()?;
    Message::parse(&bytes, stem, owner).ok()
}

/// Every valid message in `dir`, including claims; unreadable files are
/// skipped.
pub(super) fn read_messages(dir: &Path, owner: Option<&SessionId>) -> Result<Vec<Message>> {
    Ok(files::list(dir)?
        .iter()
        .filter_map(|name| {
            let stem = match name.strip_suffix(".json") {
                Some(stem) => stem,
                None => ClaimName::parse(name)?.message_id_text(name),
            };
            read_message(&dir.join(name), stem, owner)
        })
        .collect())
}
