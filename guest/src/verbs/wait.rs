//! Waiting on an inbox until a message or a reply arrives, a claim
//! lapses or the deadline passes: change notifications where the
//! platform has them, short sleeps where not.
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::OLDEST_FIRST_LIMIT;
use crate::error::{BridgeError, Result};
use crate::ids::{MessageId, SessionId};
use crate::mailbox::{Loaded, Pending};
use crate::{Bridge, Delivery, Platform, Watcher, clock};

/// A uniformly drawn index below `len` (which must be positive).
pub(super) fn random_index(len: usize) -> usize {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the platform random source failed");
    (u64::from_le_bytes(bytes) % len as u64) as usize
}

/// The longest a waiter sleeps before looking again even without a change
/// notification; it also refreshes the heartbeat then.
pub(super) const MAX_WAIT_SLICE: Duration = Duration::from_secs(60);

/// How often an `ask` to an away session looks whether a limit held it.
pub(super) const HELD_LOOK: Duration = Duration::from_millis(500);

/// The sleep between looks when the platform cannot watch the inbox.
pub(super) const FALLBACK_POLL: Duration = Duration::from_millis(50);

/// What a waiter makes of one pending message.
pub(crate) enum Pick {
    /// Claim it.
    Take,
    /// Not for this waiter.
    Skip,
    /// Not for this waiter until this much time has passed.
    SkipFor(Duration),
}

impl<P: Platform> Bridge<P> {
    /// Waits for the reply to `query`. With `held_ends_wait`, a query to an
    /// away session that a limit held ends the wait at once, with why.
    pub(super) fn wait_for_reply(
        &self,
        me: &SessionId,
        query: &MessageId,
        timeout_seconds: u32,
        held_ends_wait: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Delivery> {
        let timeout = Duration::from_secs(timeout_seconds.into());
        let deadline_ms = clock::epoch_millis() + timeout.as_millis() as u64;
        self.await_reply(me, query, deadline_ms)?;
        let select = |p: &Pending, _: &HashMap<String, u64>| -> Pick {
            if p.message.in_reply_to.as_deref() == Some(query.as_str()) {
                Pick::Take
            } else {
                Pick::Skip
            }
        };
        let end = Instant::now() + timeout;
        // A held query is told in the asker's receipts, not its inbox, so
        // the wait looks there between short waits on the inbox.
        let away = held_ends_wait
            .then(|| self.sent_copy(me, query).and_then(|m| m.recipient()))
            .flatten()
            .filter(|to| self.may_hold(to));
        let found = loop {
            let slice_end = match &away {
                Some(_) => end.min(Instant::now() + HELD_LOOK),
                None => end,
            };
            match self.wait_on_inbox(me, Some(slice_end), warnings, select) {
                Ok(None) if Instant::now() < end => {
                    if let Some(to) = &away
                        && let Some(reason) = self.held_reason(me, query)
                    {
                        self.stop_awaiting(me, query);
                        return Err(BridgeError::Held(Box::new(crate::error::HeldQuery {
                            session_id: to.to_string(),
                            message_id: query.to_string(),
                            reason,
                        })));
                    }
                }
                other => break other,
            }
        };
        self.stop_awaiting(me, query);
        match found? {
            Some(delivery) => Ok(delivery),
            None => Err(match self.receipt(me, query, warnings) {
                Ok(receipt) => BridgeError::NotAnswered {
                    seconds: timeout_seconds,
                    receipt: Box::new(receipt),
                },
                Err(_) => BridgeError::TimedOut(timeout_seconds),
            }),
        }
    }

    /// Waits until `select` picks a pending message of `owner` that this
    /// process manages to claim, or until `deadline`. Sleeps on the host's
    /// change notifications, never on a fixed poll.
    pub(crate) fn wait_on_inbox(
        &self,
        owner: &SessionId,
        deadline: Option<Instant>,
        warnings: &mut Vec<String>,
        select: impl Fn(&Pending, &HashMap<String, u64>) -> Pick,
    ) -> Result<Option<Delivery>> {
        let mut watcher: Option<Box<dyn Watcher>> = None;
        let mut watch_tried = false;
        // Whether this wait moved aside the original's read messages.
        let mut swept = false;
        loop {
            let look = self.pending_names(owner)?;
            let awaited = self.awaited_replies(owner)?;
            let mut wake = look.next_expiry;
            let mut consider =
                |pending: Pending, warnings: &mut Vec<String>| -> Result<Option<Delivery>> {
                    match select(&pending, &awaited) {
                        Pick::Take => {}
                        Pick::Skip => return Ok(None),
                        Pick::SkipFor(left) => {
                            wake = Some(wake.map_or(left, |w| w.min(left)));
                            return Ok(None);
                        }
                    }
                    Ok(self
                        .claim(owner, &pending, warnings)?
                        .map(|(message, ticket)| Delivery {
                            message,
                            ticket,
                            answered_ping: None,
                            silent: false,
                            notices: Vec::new(),
                        }))
                };
            let names = &look.names;
            if names.len() <= OLDEST_FIRST_LIMIT {
                self.forget_unlisted(owner, names);
                let mut all = Vec::with_capacity(names.len());
                for name in names {
                    if let Loaded::Pending(pending) =
                        self.load_pending_cached(owner, name, warnings)?
                    {
                        all.push(pending);
                    }
                }
                crate::mailbox::sort_oldest_first(&mut all);
                for pending in all {
                    if let Some(delivery) = consider(pending, warnings)? {
                        return Ok(Some(delivery));
                    }
                }
            } else {
                let start = random_index(names.len());
                let rotated: Vec<&String> = names[start..].iter().chain(&names[..start]).collect();
                let mut met_taken_before = false;
                for (tried, name) in rotated.iter().enumerate() {
                    match self.load_pending(owner, name, warnings)? {
                        Loaded::Pending(pending) => {
                            if let Some(delivery) = consider(pending, warnings)? {
                                // The rest of this listing serves this
                                // instance's next looks, so a backlog is
                                // listed once per pass rather than once per
                                // message.
                                let rest =
                                    rotated[tried + 1..].iter().map(|n| (*n).clone()).collect();
                                self.keep_backlog(owner, rest);
                                return Ok(Some(delivery));
                            }
                        }
                        // The original leaves what it took in the inbox,
                        // marked read: where one is, thousands may be.
                        Loaded::TakenBefore if look.truncated && !swept => {
                            met_taken_before = true;
                            break;
                        }
                        Loaded::TakenBefore | Loaded::Gone => {}
                    }
                }
                if met_taken_before {
                    // Move them all aside in one pass, then look again at
                    // what is left, which is pending.
                    swept = true;
                    if self.archive_taken_before(owner, warnings)? > 0 {
                        continue;
                    }
                }
                if look.truncated {
                    // Nothing in this window could be taken, but the
                    // listing stopped at the window: look at the rest of
                    // the inbox before waiting, so that no pending message
                    // stays unseen behind a fixed number of others.
                    let tried: HashSet<&str> = names.iter().map(String::as_str).collect();
                    for name in self.all_pending_names(owner)? {
                        if tried.contains(name.as_str()) {
                            continue;
                        }
                        if let Loaded::Pending(pending) =
                            self.load_pending(owner, &name, warnings)?
                            && let Some(delivery) = consider(pending, warnings)?
                        {
                            return Ok(Some(delivery));
                        }
                    }
                }
            }
            if look.from_backlog {
                // Everything remembered was taken meanwhile: look afresh
                // before waiting.
                continue;
            }
            let mut slice = MAX_WAIT_SLICE;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                slice = slice.min(left);
            }
            if let Some(wake) = wake {
                slice = slice.min(wake + Duration::from_millis(5));
            }
            // Watch only once there is something to wait for: a message that
            // is already here is taken without setting up a watch. Anything
            // arriving between the look above and the watch is caught by the
            // second look.
            if !watch_tried {
                watch_tried = true;
                watcher = self.platform.watch(&self.layout.inbox(owner));
                if watcher.is_some() {
                    continue;
                }
            }
            match watcher.as_mut() {
                Some(watcher) => {
                    watcher.wait(slice);
                }
                None => std::thread::sleep(slice.min(FALLBACK_POLL)),
            }
            match self.manifest(owner) {
                Ok(manifest) => {
                    self.touch_if_due(manifest)?;
                }
                // Stopped while waiting: nothing can arrive any more.
                Err(gone @ BridgeError::NoSuchSession(_)) => return Err(gone),
                Err(_) => {}
            }
        }
    }
}
