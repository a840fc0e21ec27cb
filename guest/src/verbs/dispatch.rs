//! Runs one verb: from the [`Verb`](crate::Verb) the host passed to the
//! methods below, and what each returns as an [`Outcome`](crate::Outcome).

use crate::error::{BridgeError, Result};
use crate::ids::MessageId;
use crate::wire::Kind;
use crate::{Bridge, Context, Outcome, Platform, Verb};

impl<P: Platform> Bridge<P> {
    pub(crate) fn dispatch(
        &self,
        context: &Context,
        verb: Verb,
        warnings: &mut Vec<String>,
    ) -> Result<Outcome> {
        match verb {
            Verb::Start => self.start(context, warnings).map(Outcome::Session),
            Verb::Id => self.me(context).map(|(_, m)| Outcome::Session(m)),
            Verb::Connect(peer) => self.connect(context, &peer, warnings),
            Verb::Send {
                to,
                kind,
                content,
                in_reply_to,
            } => {
                let sender = self.me(context)?;
                self.send(
                    &sender,
                    &to,
                    kind,
                    content,
                    in_reply_to.as_deref(),
                    warnings,
                )
                .map(|m| self.sent_report(m, warnings))
            }
            Verb::Listen { timeout_seconds } => self
                .listen(context, timeout_seconds, warnings)
                .map(Outcome::Delivered),
            Verb::CheckInbox => match self.listen(context, Some(0), warnings) {
                Ok(delivery) => Ok(Outcome::Delivered(delivery)),
                Err(BridgeError::TimedOut(_)) => Ok(Outcome::NothingPending),
                Err(err) => Err(err),
            },
            Verb::Reply {
                message_id,
                content,
            } => self
                .reply(context, &message_id, content, warnings)
                .map(|m| self.sent_report(m, warnings)),
            Verb::Ask {
                to,
                content,
                timeout_seconds,
                in_reply_to,
            } => {
                let sender = self.me(context)?;
                // A question follows up on a message only when the asker
                // says so: a new question about something else, asked soon
                // after a reply, is not labelled a follow-up.
                let follows = in_reply_to
                    .map(|id| self.known_message(&sender.0, &id))
                    .transpose()?;
                let query = self.send(
                    &sender,
                    &to,
                    Kind::Query,
                    content,
                    follows.as_ref().map(MessageId::as_str),
                    warnings,
                )?;
                self.recipient_liveness(&query, warnings);
                let query = MessageId::parse(&query.id)?;
                self.wait_for_reply(&sender.0, &query, timeout_seconds, true, warnings)
                    .map(Outcome::Answered)
            }
            Verb::Receive {
                message_id,
                timeout_seconds,
            } => {
                let (me, _) = self.me(context)?;
                let query = MessageId::parse(&message_id)?;
                if !self.sent_by(&me, &query) {
                    return Err(BridgeError::NoSuchMessage(query.to_string()));
                }
                self.wait_for_reply(&me, &query, timeout_seconds, false, warnings)
                    .map(Outcome::Answered)
            }
            Verb::Peers => self.peers(context).map(Outcome::Peers),
            Verb::Status => self.status(context).map(Outcome::Status),
            Verb::Heartbeat => {
                let (_, manifest) = self.me(context)?;
                self.touch(&manifest).map(Outcome::Heartbeat)
            }
            Verb::Stop => self.stop(context, warnings).map(Outcome::Stopped),
            Verb::Track(id) => self.track(context, &id, warnings).map(Outcome::Tracked),
            Verb::Thread(id) => self.thread(context, &id, warnings).map(Outcome::Thread),
            Verb::History(query) => self
                .history(context, &query, warnings)
                .map(Outcome::History),
            Verb::Cleanup { dry_run } => self
                .cleanup(context, dry_run, warnings)
                .map(Outcome::Cleaned),
            Verb::SessionStart => self.session_start(context, warnings),
            Verb::Seen { transcript } => {
                self.seen(context, &transcript, warnings).map(Outcome::Seen)
            }
            Verb::RelayOutbound { machine } => self
                .relay_outbound(&machine, warnings)
                .map(Outcome::RelayOutgoing),
            Verb::RelayInbound {
                machine,
                messages,
                last_offer,
            } => self
                .relay_inbound(&machine, &messages, last_offer, warnings)
                .map(Outcome::RelayReceived),
            Verb::RelayPresence { machine } => {
                self.relay_presence(&machine).map(Outcome::RelayPresence)
            }
            Verb::RelayMaterialize(request) => self
                .relay_materialize(&request, warnings)
                .map(Outcome::RelayMaterialized),
            Verb::Away(request) => self.away(context, &request, warnings),
            Verb::SessionEnd { transcript } => self.session_end(context, transcript, warnings),
            Verb::AwayTake { timeout_seconds } => {
                self.away_take(context, timeout_seconds, warnings)
            }
            Verb::AwayRenew(ticket) => self.away_renew(context, &ticket),
            Verb::AwayFinish(result) => self.away_finish(context, &result, warnings),
        }
    }
}
