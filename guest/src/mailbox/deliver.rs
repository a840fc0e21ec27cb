//! Writing a message into its recipient's inbox, after the policy saw it
//! and with the sender's copy kept first.
use std::fs;

use crate::error::{BridgeError, Result, display_path};
use crate::files::{self};
use crate::ids::{MessageId, SessionId};
use crate::wire::{Kind, Message, Status};
use crate::{Bridge, Platform, clock};

impl<P: Platform> Bridge<P> {
    /// Puts `message` through the policy, keeps a `sent` copy in the
    /// sender's outbox, then writes it into the recipient's inbox (the copy
    /// is removed again when that write is refused). What the
    /// policy reports goes to the sender's `policy-audit.log` and into
    /// `warnings`.
    pub(crate) fn deliver(&self, message: &mut Message, warnings: &mut Vec<String>) -> Result<()> {
        let audit = self.policy.outgoing(message)?;
        if !audit.is_empty() {
            self.audit(message, &audit, warnings);
        }
        let id = MessageId::parse(&message.id)?;
        let to = SessionId::parse(&message.to)?;
        let from = SessionId::parse(&message.from)?;
        if !self.session_dir_usable(&to)? {
            return Err(BridgeError::NoSuchSession(to.to_string()));
        }
        // The sender's copy first: the moment the message is in the inbox, a
        // listener may take and answer it, and the `taken` and `answered`
        // steps are checked against that copy.
        let mut copy = message.clone();
        copy.status = Status::Sent;
        let outbox = self.layout.outbox(&from);
        files::ensure_child_dir(&outbox)?;
        files::replace(&outbox, &id.file_name(), &copy.to_bytes())?;
        let inbox = self.layout.inbox(&to);
        let delivered = files::ensure_child_dir(&inbox)
            .and_then(|()| files::create(&inbox, &id.file_name(), &message.to_bytes()));
        if !matches!(delivered, Ok(true)) {
            let _ = files::remove_if_present(&outbox.join(id.file_name()));
            delivered?;
            return Err(BridgeError::Io {
                path: display_path(&inbox.join(id.file_name())),
                reason: "a message with this ID already exists; send again".into(),
            });
        }
        if message.in_reply_to.is_some() && matches!(message.kind, Kind::Query | Kind::Response) {
            self.receipt_answered(message);
        }
        self.answer_if_away(message, &to, warnings);
        Ok(())
    }

    /// A query delivered to an away session starts its answerer.
    fn answer_if_away(&self, message: &Message, to: &SessionId, warnings: &mut Vec<String>) {
        if crate::away::answerable(message.kind) && self.is_away(to) {
            self.start_answerer(to, warnings);
        }
    }

    /// Writes a message received from another machine into its
    /// recipient's inbox, through the same policy as a local send. The
    /// sender's outbox is on its own machine, so no copy is kept here.
    /// Returns the new file, still open and not yet flushed to disk, or
    /// None when a message of this ID is in the inbox already.
    pub(crate) fn deliver_received(
        &self,
        message: &mut Message,
        warnings: &mut Vec<String>,
    ) -> Result<Option<files::Written>> {
        for note in self.policy.outgoing(message)? {
            warnings.push(format!(
                "policy: {} from {}: {note}",
                message.id, message.from
            ));
        }
        let id = MessageId::parse(&message.id)?;
        let to = SessionId::parse(&message.to)?;
        let inbox = self.layout.inbox(&to);
        files::ensure_child_dir(&inbox)?;
        let Some(written) = files::create_open(&inbox, &id.file_name(), &message.to_bytes())?
        else {
            return Ok(None);
        };
        if message.in_reply_to.is_some() && matches!(message.kind, Kind::Query | Kind::Response) {
            self.receipt_answered(message);
        }
        self.answer_if_away(message, &to, warnings);
        Ok(Some(written))
    }

    /// Appends the policy's notes on `message` to the sender's audit log.
    pub(super) fn audit(&self, message: &Message, notes: &[String], warnings: &mut Vec<String>) {
        let Some(from) = message.sender() else { return };
        let log = self.layout.policy_audit(&from);
        let mut lines = String::new();
        for note in notes {
            lines.push_str(&format!(
                "{} {} to {}: {note}\n",
                clock::now_stamp(),
                message.id,
                message.to
            ));
            warnings.push(format!("policy: {note}"));
        }
        let appended = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut file| std::io::Write::write_all(&mut file, lines.as_bytes()));
        if let Err(err) = appended {
            warnings.push(format!(
                "could not append to {}: {}",
                display_path(&log),
                crate::error::describe_io(&err)
            ));
        }
    }
}
