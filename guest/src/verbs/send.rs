//! Sending: `connect` (a ping), `send` and `reply`, and the checks a
//! message passes before it leaves.

use super::{PING_CONTENT, check_content};
use crate::error::{BridgeError, Result};
use crate::ids::{MessageId, SessionId};
use crate::wire::{Kind, Manifest, Message};
use crate::{Bridge, Context, Outcome, Platform};

impl<P: Platform> Bridge<P> {
    /// What a sent message's report says, with whether its recipient runs.
    pub(super) fn sent_report(&self, message: Message, warnings: &mut Vec<String>) -> Outcome {
        let recipient = self.recipient_liveness(&message, warnings);
        Outcome::Sent(crate::SentReport { message, recipient })
    }

    /// Whether `message`'s recipient runs; one that does not is said in a
    /// warning too, so nobody takes "sent" for "delivered".
    pub(super) fn recipient_liveness(
        &self,
        message: &Message,
        warnings: &mut Vec<String>,
    ) -> crate::Liveness {
        let recipient = message
            .recipient()
            .map_or(crate::Liveness::Unknown, |to| self.liveness(&to));
        if recipient == crate::Liveness::NotRunning {
            warnings.push(format!(
                "queued for a session that is not running: {to} takes it when it runs again; \
                 {track} shows where it stands",
                to = message.to,
                track = crate::commands::on_message(self.caller.get(), "track", &message.id)
            ));
        }
        recipient
    }

    /// `id` as a message this session sent or received, for a follow-up.
    ///
    /// # Errors
    /// `InvalidMessageId`, or `NoSuchMessage` naming what lists them.
    pub(super) fn known_message(&self, me: &SessionId, id: &str) -> Result<MessageId> {
        let id = MessageId::parse(id)?;
        if self.sent_by(me, &id) || self.received(me, &id)?.is_some() {
            Ok(id)
        } else {
            Err(BridgeError::NoSuchMessage(id.to_string()))
        }
    }

    pub(super) fn connect(
        &self,
        context: &Context,
        peer: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Outcome> {
        let (me, mine) = self.me(context)?;
        let peer = SessionId::parse(peer)?;
        if peer == me {
            return Err(BridgeError::InvalidArgument(format!(
                "{peer} is this session's own ID; connect to another session"
            )));
        }
        let theirs = self.manifest(&peer)?;
        let mut ping = Message::new(
            &me,
            &peer,
            Kind::Ping,
            PING_CONTENT.into(),
            None,
            &mine.project_name,
        );
        self.deliver(&mut ping, warnings)?;
        self.record_ping_exchange(&me, &peer, warnings);
        let stale = theirs.is_stale();
        if stale {
            warnings.push(format!(
                "session {peer} has not sent a heartbeat since {} (over {} s ago); it may not answer",
                theirs.last_heartbeat,
                crate::wire::STALE_AFTER_SECS
            ));
        }
        Ok(Outcome::Connected {
            peer: theirs,
            stale,
            ping,
        })
    }

    /// Sends one message from `sender` (this session and its manifest).
    pub(super) fn send(
        &self,
        (me, mine): &(SessionId, Manifest),
        to: &str,
        kind: Kind,
        content: String,
        in_reply_to: Option<&str>,
        warnings: &mut Vec<String>,
    ) -> Result<Message> {
        let to = SessionId::parse(to)?;
        let in_reply_to = in_reply_to.map(MessageId::parse).transpose()?;
        check_content(&content)?;
        let mut message = Message::new(
            me,
            &to,
            kind,
            content,
            in_reply_to.as_ref(),
            &mine.project_name,
        );
        self.deliver(&mut message, warnings)?;
        if matches!(message.kind, Kind::Query | Kind::Response) {
            self.archive_sent(&message, mine, warnings);
        }
        Ok(message)
    }

    pub(super) fn reply(
        &self,
        context: &Context,
        message_id: &str,
        content: String,
        warnings: &mut Vec<String>,
    ) -> Result<Message> {
        let (me, mine) = self.me(context)?;
        let id = MessageId::parse(message_id)?;
        check_content(&content)?;
        let original = self
            .received(&me, &id)?
            .ok_or_else(|| BridgeError::NoSuchMessage(id.to_string()))?;
        let to = original
            .sender()
            .ok_or_else(|| BridgeError::NoSuchMessage(id.to_string()))?;
        let mut answer = Message::new(
            &me,
            &to,
            Kind::Response,
            content,
            Some(&id),
            &mine.project_name,
        );
        self.deliver(&mut answer, warnings)?;
        self.archive_sent(&answer, &mine, warnings);
        Ok(answer)
    }
}
