//! Messages that leave an agent nothing to do: the answers to this
//! session's own pings, and peers' `session-ended` notices. A listener takes
//! the first silently, and holds the second back until there is a real
//! message to show it with, so neither wakes or interrupts an agent.

use std::time::Duration;

use crate::files;
use crate::ids::SessionId;
use crate::mailbox::Pending;
use crate::wire::{Kind, MAX_MESSAGE_FILE_BYTES, Message};
use crate::{Bridge, Platform, clock};

/// A ping from a peer that this session pinged, or whose ping it answered,
/// within this long counts as the answer to that exchange. The original
/// plugin's agent answers every ping with a fresh ping (no `inReplyTo`), so
/// without this window two listeners would ping each other forever.
pub(crate) const PING_EXCHANGE_WINDOW: Duration = Duration::from_secs(60);

/// The most session-ended notices shown with one delivery.
const MAX_NOTICES: usize = 16;

/// Sorts notices oldest first, by their timestamp, then ID.
pub(crate) fn oldest_first(waiting: &mut [Pending]) {
    waiting.sort_by(|a, b| {
        (&a.message.timestamp, &a.message.id).cmp(&(&b.message.timestamp, &b.message.id))
    });
}

impl<P: Platform> Bridge<P> {
    /// Remembers that `me` pinged `peer`, or answered its ping, now.
    /// Failing to remember costs at most one extra answer, so it is a
    /// warning, not an error.
    pub(crate) fn record_ping_exchange(
        &self,
        me: &SessionId,
        peer: &SessionId,
        warnings: &mut Vec<String>,
    ) {
        let dir = self.layout.pings(me);
        let recorded = files::ensure_child_dir(&dir).and_then(|()| {
            files::replace(
                &dir,
                peer.as_str(),
                clock::epoch_millis().to_string().as_bytes(),
            )
        });
        if let Err(err) = recorded {
            warnings.push(format!(
                "could not record the ping exchange with {peer}: {err}"
            ));
        }
    }

    /// True when `me` pinged `peer`, or answered one of its pings, within
    /// [`PING_EXCHANGE_WINDOW`].
    fn exchanged_ping_recently(&self, me: &SessionId, peer: &SessionId) -> bool {
        let path = self.layout.pings(me).join(peer.as_str());
        let Ok(bytes) = files::read_bounded(&path, 32) else {
            return false;
        };
        let Some(at) = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
        else {
            return false;
        };
        let now = clock::epoch_millis();
        // A record from the future (a clock step) counts as recent.
        now.saturating_sub(at) <= PING_EXCHANGE_WINDOW.as_millis() as u64
    }

    /// True when the ping `message`, delivered to `me`, answers an exchange
    /// rather than opening one: it names the ping it answers, or it comes
    /// from a peer `me` pinged or answered moments ago. Such a ping is
    /// taken silently and never answered.
    pub(crate) fn is_pong(&self, me: &SessionId, message: &Message) -> bool {
        debug_assert_eq!(message.kind, Kind::Ping);
        if message.in_reply_to.is_some() {
            return true;
        }
        message
            .sender()
            .is_some_and(|peer| self.exchanged_ping_recently(me, &peer))
    }

    /// Takes `waiting`, the `session-ended` notices a listener's looks at
    /// `me`'s inbox passed over, oldest first, so they can be shown with a
    /// real message. A notice that cannot be taken is left for the next
    /// time.
    pub(crate) fn take_notices(
        &self,
        me: &SessionId,
        mut waiting: Vec<Pending>,
        warnings: &mut Vec<String>,
    ) -> Vec<Message> {
        oldest_first(&mut waiting);
        let mut taken = Vec::new();
        for pending in waiting.into_iter().take(MAX_NOTICES) {
            match self.claim(me, &pending, warnings) {
                Ok(Some((message, ticket))) => {
                    if let Err(err) = self.commit(&ticket) {
                        warnings.push(format!("could not file the notice {}: {err}", message.id));
                    }
                    taken.push(message);
                }
                // Another listener took it.
                Ok(None) => {}
                Err(err) => warnings.push(format!("could not take a notice: {err}")),
            }
        }
        taken
    }

    /// How many `session-ended` notices wait in `me`'s inbox.
    pub(crate) fn pending_notices(&self, me: &SessionId) -> u32 {
        let inbox = self.layout.inbox(me);
        let Ok(names) = files::list(&inbox) else {
            return 0;
        };
        names
            .iter()
            .filter_map(|name| {
                let stem = name.strip_suffix(".json")?;
                let bytes = files::read_bounded(&inbox.join(name), MAX_MESSAGE_FILE_BYTES).ok()?;
                Message::parse(&bytes, stem, Some(me)).ok()
            })
            .filter(|m| m.kind == Kind::SessionEnded && m.status == crate::wire::Status::Pending)
            .count() as u32
    }

    /// The `session-ended` notices of `me`, shown or not, from sessions
    /// that no longer exist: what `status` lists as ended peers.
    pub(crate) fn ended_peers(&self, history: &[Message]) -> Vec<Message> {
        let mut ended: Vec<Message> = history
            .iter()
            .filter(|m| m.kind == Kind::SessionEnded)
            .filter(|m| m.sender().is_some_and(|peer| !self.session_exists(&peer)))
            .cloned()
            .collect();
        ended.sort_by(|a, b| (&b.timestamp, &b.id).cmp(&(&a.timestamp, &a.id)));
        ended.dedup_by(|a, b| a.from == b.from);
        ended
    }
}
