//! Reading a receipt: `track`, and how far a message got by its step
//! files and, where they say nothing, its recipient's mailbox.

use super::RECORDED;
use crate::error::{BridgeError, Result};
use crate::files::{self};
use crate::ids::{MessageId, SessionId};
use crate::wire::{MAX_MESSAGE_FILE_BYTES, Message, Status};
use crate::{Bridge, Context, Platform, Receipt, ReceiptEvent, Stage, clock};

/// What the recipient's mailbox tells of a message no step file covers.
pub(super) enum Trace {
    /// Still pending, or claimed and being handed out.
    Pending,
    /// Taken without a receipt: marked read in place, or kept in `read/`;
    /// with when the file last changed.
    TakenUnrecorded(Option<String>, &'static str),
    /// The recipient's session directory no longer exists.
    Gone,
    /// Nothing found (archived, or set aside before receipts existed).
    Unknown,
}

impl<P: Platform> Bridge<P> {
    /// Where `id`, sent by `me`, stands. Corrupt step files met are set
    /// aside, each with a warning.
    ///
    /// # Errors
    /// `NoSuchMessage` when `me`'s outbox holds no copy of `id` sent by `me`.
    pub(crate) fn receipt(
        &self,
        me: &SessionId,
        id: &MessageId,
        warnings: &mut Vec<String>,
    ) -> Result<Receipt> {
        let message = self
            .sent_copy(me, id)
            .ok_or_else(|| BridgeError::NoSuchMessage(id.to_string()))?;
        let to = message
            .recipient()
            .ok_or_else(|| BridgeError::NoSuchMessage(id.to_string()))?;
        let mut later = Vec::new();
        let mut reply = None;
        for stage in RECORDED {
            let Some(step) = self.read_step(me, id, stage, warnings) else {
                continue;
            };
            if stage == Stage::Answered {
                match self.verified_reply(me, &message, step.detail.as_deref()) {
                    Some(answer) => reply = Some(answer),
                    None => continue,
                }
            }
            later.push(step.event(stage));
        }
        let progressed = |events: &[ReceiptEvent]| {
            events
                .iter()
                .any(|e| matches!(e.stage, Stage::Taken | Stage::Seen | Stage::Answered))
        };
        // What no step says of the take, the recipient's mailbox may.
        let relayed = later.iter().any(|e| e.stage == Stage::Relayed);
        if !relayed && !later.iter().any(|e| e.stage == Stage::Taken) {
            match self.trace(&to, id) {
                Trace::TakenUnrecorded(at, how) => later.push(ReceiptEvent {
                    stage: Stage::Taken,
                    at: at.unwrap_or_else(|| message.timestamp.clone()),
                    by: Some(to.to_string()),
                    taker: None,
                    detail: Some(how.to_string()),
                }),
                Trace::Gone
                    if !progressed(&later) && !later.iter().any(|e| e.stage >= Stage::SetAside) =>
                {
                    later.push(ReceiptEvent {
                        stage: Stage::RecipientGone,
                        at: clock::now_stamp(),
                        by: None,
                        taker: None,
                        detail: Some("its session directory no longer exists".into()),
                    });
                }
                Trace::Pending | Trace::Gone | Trace::Unknown => {}
            }
        }
        let stage = if progressed(&later) {
            // A message taken was never set aside or left behind: such
            // steps beside it are leftovers, not news.
            later.retain(|e| e.stage < Stage::SetAside);
            later.iter().map(|e| e.stage).max().unwrap_or(Stage::Taken)
        } else if later.iter().any(|e| e.stage == Stage::SetAside) {
            later.retain(|e| e.stage == Stage::SetAside);
            Stage::SetAside
        } else if later.iter().any(|e| e.stage == Stage::RecipientGone) {
            Stage::RecipientGone
        } else if later.iter().any(|e| e.stage == Stage::Held) {
            Stage::Held
        } else if relayed {
            Stage::Relayed
        } else {
            Stage::Queued
        };
        later.sort_by(|a, b| (&a.at, a.stage).cmp(&(&b.at, b.stage)));
        // A message for a session of another machine waits here for this
        // machine's relay.
        let queued_for = self
            .remote_machine(&to)
            .map(|machine| format!("for machine {machine}, carried there by this machine's relay"));
        let mut events = vec![ReceiptEvent {
            stage: Stage::Queued,
            at: message.timestamp.clone(),
            by: None,
            taker: None,
            detail: queued_for,
        }];
        events.extend(later);
        Ok(Receipt {
            message,
            stage,
            events,
            reply,
        })
    }

    /// `track`: where a message this session sent stands.
    ///
    /// # Errors
    /// `InvalidMessageId`; `NoSuchMessage` for a message this session did
    /// not send.
    pub(crate) fn track(
        &self,
        context: &Context,
        id: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Receipt> {
        let (me, _) = self.me(context)?;
        let id = MessageId::parse(id)?;
        if !self.sent_by(&me, &id) {
            return Err(BridgeError::NoSuchMessage(id.to_string()));
        }
        self.receipt(&me, &id, warnings)
    }

    /// The copy of `id` in `sender`'s outbox, if `sender` sent it.
    pub(crate) fn sent_copy(&self, sender: &SessionId, id: &MessageId) -> Option<Message> {
        let path = self.layout.outbox(sender).join(id.file_name());
        let bytes = files::read_bounded(&path, MAX_MESSAGE_FILE_BYTES).ok()?;
        Message::parse(&bytes, id.as_str(), None)
            .ok()
            .filter(|m| m.from == sender.as_str())
    }

    /// The reply an `answered` step names, when it is in `me`'s inbox
    /// (pending, claimed or read), answers `message` and comes from its
    /// recipient.
    pub(super) fn verified_reply(
        &self,
        me: &SessionId,
        message: &Message,
        named: Option<&str>,
    ) -> Option<String> {
        let reply_id = MessageId::parse(named?).ok()?;
        let reply = self.received(me, &reply_id).ok()??;
        let answers =
            reply.in_reply_to.as_deref() == Some(message.id.as_str()) && reply.from == message.to;
        answers.then(|| reply_id.to_string())
    }

    /// What `to`'s mailbox tells of `id`.
    pub(super) fn trace(&self, to: &SessionId, id: &MessageId) -> Trace {
        match self.session_dir_usable(to) {
            Ok(true) => {}
            Ok(false) => return Trace::Gone,
            Err(_) => return Trace::Unknown,
        }
        let modified = |stat: files::Stat| stat.modified.map(clock::stamp);
        let pending = self.layout.inbox(to).join(id.file_name());
        if let Ok((bytes, stat)) = files::read_bounded_with_stat(&pending, MAX_MESSAGE_FILE_BYTES) {
            return match Message::parse(&bytes, id.as_str(), Some(to)) {
                Ok(m) if m.status == Status::Read => {
                    Trace::TakenUnrecorded(modified(stat), "marked read in its inbox")
                }
                _ => Trace::Pending,
            };
        }
        if let Ok(stat) = files::stat(&self.layout.read(to).join(id.file_name()))
            && stat.kind == files::Kind::File
        {
            return Trace::TakenUnrecorded(modified(stat), "found among its read messages");
        }
        let prefix = format!("{id}.");
        let claimed = files::list(&self.layout.claimed(to)).unwrap_or_default();
        if claimed.iter().any(|name| name.starts_with(&prefix)) {
            return Trace::Pending;
        }
        Trace::Unknown
    }
}
