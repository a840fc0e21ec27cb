//! `listen` and `check-inbox`: taking the next message for this session,
//! answering pings, and how it is handed to the listener.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::PING_CONTENT;
use super::wait::Pick;
use crate::error::{BridgeError, Result};
use crate::ids::{MessageId, SessionId};
use crate::mailbox::Pending;
use crate::wire::{Kind, Manifest, Message};
use crate::{Bridge, Context, Delivery, Platform, clock};

impl<P: Platform> Bridge<P> {
    pub(super) fn listen(
        &self,
        context: &Context,
        timeout_seconds: Option<u32>,
        warnings: &mut Vec<String>,
    ) -> Result<Delivery> {
        let (me, mine) = match self.me(context) {
            // The answering session often listens first: register it then.
            Err(BridgeError::NoIdentity) => {
                let manifest = self.start(context, warnings)?;
                warnings.push(format!(
                    "registered this session as {id} ({name}); peers reach it with: {connect}",
                    id = manifest.session_id,
                    name = manifest.project_name,
                    connect = crate::commands::connect(self.caller.get(), &manifest.session_id)
                ));
                (SessionId::parse(&manifest.session_id)?, manifest)
            }
            other => other?,
        };
        let deadline = timeout_seconds.map(|s| Instant::now() + Duration::from_secs(s.into()));
        // Notices the looks passed over, to be taken with the message that
        // is delivered: the look already read them, so no second scan.
        let held: std::cell::RefCell<Vec<Pending>> = std::cell::RefCell::new(Vec::new());
        let notices_alone = std::cell::Cell::new(false);
        let select = |p: &Pending, awaited: &HashMap<String, u64>| -> Pick {
            if p.message.from == me.as_str() {
                return Pick::Skip;
            }
            // A peer's session-ended notice gives the agent nothing to do: it
            // waits for a real message and is shown with it (or alone, to a
            // watched listener that found nothing else pending).
            if p.message.kind == Kind::SessionEnded && !notices_alone.get() {
                let mut held = held.borrow_mut();
                if !held.iter().any(|h| h.message.id == p.message.id) {
                    held.push(p.clone());
                }
                return Pick::Skip;
            }
            // A reply that an `ask` is waiting for belongs to the asker until
            // its wait ends.
            let now = clock::epoch_millis();
            let reserved_until = p
                .message
                .in_reply_to
                .as_ref()
                .filter(|_| p.message.kind == Kind::Response)
                .and_then(|q| awaited.get(q))
                .copied()
                .filter(|&until| until > now);
            match reserved_until {
                Some(until) => Pick::SkipFor(Duration::from_millis(until - now)),
                None => Pick::Take,
            }
        };
        // The wake hook holds a peer's session-ended notice back, so that it
        // never wakes an agent for nothing. A listener someone watches (a
        // terminal, an agent's `listen` loop, an MCP client) is told that a
        // peer left when nothing else is pending, instead of waiting on.
        if !self.caller.get().wakes() {
            while let Some(claimed) =
                self.wait_on_inbox(&me, Some(Instant::now()), warnings, select)?
            {
                if let Some(delivery) =
                    self.deliver_to_listener(&me, &mine, claimed, &held, warnings)?
                {
                    return Ok(delivery);
                }
            }
            if let Some(delivery) = self.notice_alone(&me, held.take(), warnings)? {
                return Ok(delivery);
            }
            notices_alone.set(true);
        }
        loop {
            let Some(claimed) = self.wait_on_inbox(&me, deadline, warnings, select)? else {
                return Err(BridgeError::TimedOut(timeout_seconds.unwrap_or(0)));
            };
            if let Some(delivery) =
                self.deliver_to_listener(&me, &mine, claimed, &held, warnings)?
            {
                return Ok(delivery);
            }
        }
    }

    /// The oldest of `waiting`, the session-ended notices a look passed
    /// over, as a delivery of its own, with the rest shown after it; None
    /// when another listener took them all.
    pub(super) fn notice_alone(
        &self,
        me: &SessionId,
        mut waiting: Vec<Pending>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Delivery>> {
        crate::notices::oldest_first(&mut waiting);
        for at in 0..waiting.len() {
            if let Some((message, ticket)) = self.claim(me, &waiting[at], warnings)? {
                let rest = waiting.split_off(at + 1);
                return Ok(Some(Delivery {
                    message,
                    ticket,
                    answered_ping: None,
                    silent: false,
                    notices: self.take_notices(me, rest, warnings),
                }));
            }
        }
        Ok(None)
    }

    /// Finishes a delivery `listen` claimed: a ping is answered, and the
    /// notices the looks passed over (`held`) are taken with it. None for
    /// the answer to this session's own ping, which is filed silently and
    /// never shown: the listener waits on.
    pub(super) fn deliver_to_listener(
        &self,
        me: &SessionId,
        mine: &Manifest,
        mut delivery: Delivery,
        held: &std::cell::RefCell<Vec<Pending>>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Delivery>> {
        let message = &delivery.message;
        if message.kind == Kind::Ping {
            if self.is_pong(me, message) {
                if let Err(err) = self.commit(&delivery.ticket) {
                    warnings.push(format!("could not file the ping {}: {err}", message.id));
                }
                return Ok(None);
            }
            if let Some(peer) = message.sender().filter(|p| self.session_exists(p)) {
                let id = MessageId::parse(&message.id)?;
                let mut pong = Message::new(
                    me,
                    &peer,
                    Kind::Ping,
                    PING_CONTENT.into(),
                    Some(&id),
                    &mine.project_name,
                );
                match self.deliver(&mut pong, warnings) {
                    Ok(()) => {
                        self.record_ping_exchange(me, &peer, warnings);
                        delivery.answered_ping = Some(pong);
                        delivery.silent = true;
                    }
                    Err(err) => warnings.push(format!("could not answer the ping: {err}")),
                }
            }
        }
        delivery.notices = self.take_notices(me, held.take(), warnings);
        Ok(Some(delivery))
    }
}
