//! The steps as sessions make them: taken, relayed, set aside, answered,
//! recipient gone, and seen (the Stop hook's `seen` verb).
use std::path::Path;

use super::steps::parse_marker;
use super::{MAX_CHECKED_COPY_BYTES, MAX_MARKER_BYTES, RECOVERED_TAKER, UNSEEN_MAX_AGE, receipted};
use crate::error::Result;
use crate::files::{self, ReadFailure};
use crate::ids::{MessageId, SessionId};
use crate::wire::{MAX_MESSAGE_FILE_BYTES, Message, Status};
use crate::{Bridge, Caller, Context, Platform, Stage, clock};

impl<P: Platform> Bridge<P> {
    /// Called once a message addressed to `owner` was committed as taken
    /// (from `keep_as_read`, also when a killed committer's `.taken` file is
    /// finished later, with `caller` None then). Records a `taken` step in
    /// the sender's receipts, with when, by `owner`, and the taker kind.
    /// Never fails the delivery: problems are ignored or become warnings.
    pub(crate) fn receipt_taken(
        &self,
        message: &Message,
        owner: &SessionId,
        caller: Option<Caller>,
    ) {
        if !receipted(message.kind) {
            return;
        }
        let (Some(sender), Ok(id)) = (message.sender(), MessageId::parse(&message.id)) else {
            return;
        };
        let taker = caller.map_or(RECOVERED_TAKER, Caller::as_str);
        let written = self.write_step(&sender, &id, Stage::Taken, Some(owner), taker, None);
        if caller.is_some_and(Caller::wakes) && matches!(written, Ok(true)) {
            self.mark_unseen(owner, &id, &sender);
        }
    }

    /// Called once the relay has handed `message` to the relay server for
    /// `machine`: records a `relayed` step in the sender's receipts.
    pub(crate) fn receipt_relayed(&self, message: &Message, machine: &str) {
        if !receipted(message.kind) {
            return;
        }
        let (Some(sender), Ok(id)) = (message.sender(), MessageId::parse(&message.id)) else {
            return;
        };
        let detail = format!("held by the relay server for machine {machine}");
        let _ = self.write_step(&sender, &id, Stage::Relayed, None, "relay", Some(&detail));
    }

    /// Called when a limit holds `message`, a query to the away session
    /// `owner`, for its next live session: the sender's receipt says
    /// `held`, with `reason`.
    pub(crate) fn receipt_held(&self, message: &Message, owner: &SessionId, reason: &str) {
        let (Some(sender), Ok(id)) = (message.sender(), MessageId::parse(&message.id)) else {
            return;
        };
        let _ = self.write_step(&sender, &id, Stage::Held, Some(owner), "away", Some(reason));
    }

    /// Whether the query `id` that `sender` sent was held by an away
    /// session's limit, and why.
    pub(crate) fn held_reason(&self, sender: &SessionId, id: &MessageId) -> Option<String> {
        self.read_step(sender, id, Stage::Held, &mut Vec::new())
            .map(|step| step.detail.unwrap_or_default())
    }

    /// Called just before the file `path` in `owner`'s inbox (or its
    /// `claimed/`) is set aside as malformed, `reason` saying why. The file
    /// may name its sender even so; then the sender's receipt says
    /// `set-aside` with the reason.
    ///
    /// The step is written only for a message the named sender really sent
    /// to `owner` (its outbox copy says so), so a planted file cannot mark
    /// another session's message as set aside.
    pub(crate) fn receipt_set_aside(&self, owner: &SessionId, path: &Path, reason: &str) {
        let Ok(bytes) = files::read_bounded(path, MAX_MESSAGE_FILE_BYTES) else {
            return;
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return;
        };
        let text = |key: &str| value.get(key).and_then(serde_json::Value::as_str);
        let Some(sender) = text("from").and_then(|s| SessionId::parse(s).ok()) else {
            return;
        };
        let named = text("id").and_then(|s| MessageId::parse(s).ok());
        let by_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('.').next())
            .and_then(|stem| MessageId::parse(stem).ok());
        let mut candidates = vec![named, by_name];
        candidates.dedup();
        for id in candidates.into_iter().flatten() {
            let genuine = self
                .sent_copy(&sender, &id)
                .is_some_and(|sent| sent.to == owner.as_str() && receipted(sent.kind));
            if genuine {
                let caller = self.caller.get().as_str();
                let _ = self.write_step(
                    &sender,
                    &id,
                    Stage::SetAside,
                    Some(owner),
                    caller,
                    Some(reason),
                );
                return;
            }
        }
    }

    /// Called after `reply` (any message with `inReplyTo`) was delivered:
    /// records `answered` on the receipt of the message it answers.
    pub(crate) fn receipt_answered(&self, reply: &Message) {
        let (Some(asker), Some(replier)) = (reply.recipient(), reply.sender()) else {
            return;
        };
        let Some(original) = reply
            .in_reply_to
            .as_deref()
            .and_then(|id| MessageId::parse(id).ok())
        else {
            return;
        };
        // Only the message's recipient answers it: a follow-up on a message
        // the asker did not send (its own earlier question, say) answers
        // nothing of the asker's, and a third session's "reply" must not
        // replace the true answer's step.
        let copy = self.layout.outbox(&asker).join(original.file_name());
        let answers = match files::read_bounded(&copy, MAX_CHECKED_COPY_BYTES) {
            Ok(bytes) => Message::parse(&bytes, original.as_str(), None).is_ok_and(|sent| {
                sent.from == asker.as_str() && sent.to == replier.as_str() && receipted(sent.kind)
            }),
            // A copy too large to read on a delivery's path: that it exists
            // is enough here, and `receipt` checks the reply itself.
            Err(ReadFailure::TooLarge(_)) => true,
            Err(_) => false,
        };
        if !answers {
            return;
        }
        let caller = self.caller.get().as_str();
        let _ = self.write_step(
            &asker,
            &original,
            Stage::Answered,
            Some(&replier),
            caller,
            Some(&reply.id),
        );
    }

    /// Called before session `owner` is removed (by `stop`, or by cleanup
    /// removing a ghost): every message still pending in its inbox gets a
    /// `recipient-gone` step on its sender's receipt.
    pub(crate) fn receipts_recipient_gone(&self, owner: &SessionId) {
        let inbox = self.layout.inbox(owner);
        let claimed = self.layout.claimed(owner);
        let mut pending: Vec<(std::path::PathBuf, String)> = Vec::new();
        for name in files::list(&inbox).unwrap_or_default() {
            if let Some(stem) = name.strip_suffix(".json") {
                pending.push((inbox.join(&name), stem.to_string()));
            }
        }
        // A claim not yet committed is still pending: its listener may
        // never print it.
        for name in files::list(&claimed).unwrap_or_default() {
            if name.ends_with(".claim")
                && let Some(stem) = name.split('.').next()
            {
                pending.push((claimed.join(&name), stem.to_string()));
            }
        }
        let caller = self.caller.get().as_str();
        for (path, stem) in pending {
            let Ok(bytes) = files::read_bounded(&path, MAX_MESSAGE_FILE_BYTES) else {
                continue;
            };
            let Ok(message) = Message::parse(&bytes, &stem, Some(owner)) else {
                continue;
            };
            // The original plugin marks what it took as read, in place.
            if !receipted(message.kind) || message.status == Status::Read {
                continue;
            }
            let (Some(sender), Ok(id)) = (message.sender(), MessageId::parse(&message.id)) else {
                continue;
            };
            if &sender == owner || !self.sent_by(&sender, &id) {
                continue;
            }
            let _ = self.write_step(
                &sender,
                &id,
                Stage::RecipientGone,
                Some(owner),
                caller,
                None,
            );
        }
    }

    /// `seen`: which messages this session took through the wake hook
    /// appear in `transcript`; each is recorded as `seen` on its receipt.
    /// Markers older than [`UNSEEN_MAX_AGE`] are dropped unconfirmed.
    /// Returns the IDs newly confirmed, sorted.
    ///
    /// # Errors
    /// `NoIdentity` or `NoSuchSession` for this session; `Io` when its
    /// markers cannot be listed.
    pub(crate) fn seen(
        &self,
        context: &Context,
        transcript: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<String>> {
        let (me, _) = self.me(context)?;
        let dir = self.layout.unseen(&me);
        let now = clock::epoch_millis();
        let caller = self.caller.get().as_str();
        let mut confirmed = Vec::new();
        for name in files::list(&dir)? {
            let path = dir.join(&name);
            let marker = MessageId::parse(&name).ok().and_then(|id| {
                let bytes = files::read_bounded(&path, MAX_MARKER_BYTES).ok()?;
                let (sender, at) = parse_marker(&bytes)?;
                Some((id, sender, at))
            });
            let Some((id, sender, at)) = marker else {
                // Not a marker this guest wrote: nothing to confirm.
                let _ = files::remove_if_present(&path);
                continue;
            };
            if transcript.contains(id.as_str()) {
                match self.write_step(&sender, &id, Stage::Seen, Some(&me), caller, None) {
                    Ok(recorded) => {
                        if recorded {
                            confirmed.push(id.to_string());
                        }
                        let _ = files::remove_if_present(&path);
                    }
                    // The marker stays for the next Stop hook to retry.
                    Err(err) => warnings.push(format!(
                        "could not record that {id} was seen on {sender}'s receipt: {err}"
                    )),
                }
            } else if now.saturating_sub(at) > UNSEEN_MAX_AGE.as_millis() as u64 {
                let _ = files::remove_if_present(&path);
            }
        }
        confirmed.sort();
        Ok(confirmed)
    }
}
