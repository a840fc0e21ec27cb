//! The verbs of `bridge-host run`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::error::{BridgeError, Result};
use crate::files;
use crate::ids::{MessageId, SessionId};
use crate::mailbox::{Loaded, Pending};
use crate::registry::{validate_agent_session, validate_project_dir};
use crate::wire::{Kind, MAX_CONTENT_BYTES, Manifest, Message};
use crate::{
    Bridge, Context, Delivery, Outcome, Peer, PeerEntry, Platform, StatusReport, StopReport, Verb,
    Watcher, clock,
};

/// A uniformly drawn index below `len` (which must be positive).
fn random_index(len: usize) -> usize {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the platform random source failed");
    (u64::from_le_bytes(bytes) % len as u64) as usize
}

/// The longest a waiter sleeps before looking again even without a change
/// notification; it also refreshes the heartbeat then.
const MAX_WAIT_SLICE: Duration = Duration::from_secs(60);
/// The sleep between looks when the platform cannot watch the inbox.
const FALLBACK_POLL: Duration = Duration::from_millis(50);
/// What `connect` sends, and a listener answers with.
const PING_CONTENT: &str = "connected";
/// What `stop` sends to peers.
const SESSION_ENDED_CONTENT: &str = "Session ended";

/// A session of another machine is only ever acted as on its own machine.
///
/// # Errors
/// `InvalidArgument` naming the machine.
fn refuse_remote(manifest: &Manifest) -> Result<()> {
    match &manifest.machine {
        Some(machine) => Err(BridgeError::InvalidArgument(format!(
            "session {} runs on machine {machine}; it is shown here by the relay and can be \
             sent to, but only that machine can act as it",
            manifest.session_id
        ))),
        None => Ok(()),
    }
}

/// Refuses content over [`MAX_CONTENT_BYTES`].
pub fn check_content(content: &str) -> Result<()> {
    if content.len() > MAX_CONTENT_BYTES {
        return Err(BridgeError::ContentTooLarge {
            size: content.len() as u64,
            limit: MAX_CONTENT_BYTES as u64,
        });
    }
    Ok(())
}

/// Up to this many pending messages are read in full and handed out oldest
/// first. Past it (a backlog), messages are tried in arbitrary order, each
/// read only when reached, so that taking one costs little however many
/// wait and concurrent listeners do not all contend for the same one.
pub(crate) const OLDEST_FIRST_LIMIT: usize = 64;
// A look must read past the limit to know that a backlog is there.
const _: () = assert!(crate::mailbox::PENDING_WINDOW > OLDEST_FIRST_LIMIT);

/// What a waiter makes of one pending message.
enum Pick {
    /// Claim it.
    Take,
    /// Not for this waiter.
    Skip,
    /// Not for this waiter until this much time has passed.
    SkipFor(Duration),
}

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
                self.wait_for_reply(&sender.0, &query, timeout_seconds, warnings)
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
                self.wait_for_reply(&me, &query, timeout_seconds, warnings)
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
        }
    }

    /// What a sent message's report says, with whether its recipient runs.
    fn sent_report(&self, message: Message, warnings: &mut Vec<String>) -> Outcome {
        let recipient = self.recipient_liveness(&message, warnings);
        Outcome::Sent(crate::SentReport { message, recipient })
    }

    /// Whether `message`'s recipient runs; one that does not is said in a
    /// warning too, so nobody takes "sent" for "delivered".
    fn recipient_liveness(&self, message: &Message, warnings: &mut Vec<String>) -> crate::Liveness {
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
    fn known_message(&self, me: &SessionId, id: &str) -> Result<MessageId> {
        let id = MessageId::parse(id)?;
        if self.sent_by(me, &id) || self.received(me, &id)?.is_some() {
            Ok(id)
        } else {
            Err(BridgeError::NoSuchMessage(id.to_string()))
        }
    }

    /// `session-start`: registers (as `start`), records the agent process,
    /// runs the cheap part of cleanup and names the live peers.
    fn session_start(&self, context: &Context, warnings: &mut Vec<String>) -> Result<Outcome> {
        let session = self.start(context, warnings)?;
        let me = SessionId::parse(&session.session_id)?;
        let cleanup = self.cleanup_cheap(context, &me, warnings);
        let live_peers = self
            .peers(context)?
            .into_iter()
            .filter_map(|entry| match entry {
                PeerEntry::Valid(peer) if !peer.this_session && !peer.stale => Some(peer),
                _ => None,
            })
            .collect();
        Ok(Outcome::SessionStarted(crate::SessionStartReport {
            session,
            live_peers,
            cleanup,
        }))
    }

    /// This session and its manifest, with the heartbeat refreshed if due.
    ///
    /// # Errors
    /// `NoIdentity` when no session resolves, `NoSuchSession` when the
    /// resolved one is gone.
    pub(crate) fn me(&self, context: &Context) -> Result<(SessionId, Manifest)> {
        let (id, known) = self.identify(context)?.ok_or(BridgeError::NoIdentity)?;
        let manifest = match known {
            Some(manifest) => manifest,
            None => self.manifest(&id)?,
        };
        refuse_remote(&manifest)?;
        let manifest = self.touch_if_due(manifest)?;
        Ok((id, manifest))
    }

    fn start(&self, context: &Context, warnings: &mut Vec<String>) -> Result<Manifest> {
        validate_project_dir(&context.project_dir)?;
        let agent = context.agent_session.as_deref();
        if let Some(agent) = agent {
            validate_agent_session(agent)?;
        }
        let reuse = match &context.session {
            Some(explicit) => Some(SessionId::parse(explicit)?),
            None => match self.registered_for_agent(context)? {
                Some(id) => Some(id),
                // A new agent session gets its own bridge, even in a project
                // that already has one.
                None if agent.is_some() => None,
                None => self.pointed_session(context)?,
            },
        };
        // The client is in the manifest's first write, so that nobody
        // reading it meanwhile sees the session without it.
        let client = crate::registry::client_name(context.client.as_deref());
        let manifest = match reuse {
            Some(id) => match self.manifest(&id) {
                Ok(mut manifest) => {
                    refuse_remote(&manifest)?;
                    for dir in self.layout.session_dirs(&id) {
                        files::ensure_dir(&dir)?;
                    }
                    self.record_agent(&id, agent)?;
                    self.new_incarnation(&id)?;
                    manifest.project_path = context.project_dir.clone();
                    manifest.project_name = crate::wire::project_name(&context.project_dir);
                    if client.is_some() {
                        manifest.client = client;
                    }
                    self.touch(&manifest)?
                }
                Err(BridgeError::NoSuchSession(_) | BridgeError::Corrupt { .. }) => {
                    files::ensure_dir(&self.layout.session(&id))?;
                    self.register(&id, &context.project_dir, agent, client)?
                }
                Err(err) => return Err(err),
            },
            None => self.register_new(&context.project_dir, agent, client)?,
        };
        self.archive_register(&manifest, warnings);
        if let Ok(id) = SessionId::parse(&manifest.session_id)
            && let Err(err) = self.record_agent_process(&id, context)
        {
            warnings.push(format!(
                "the agent process was not recorded ({err}); receipts will go by the heartbeat"
            ));
        }
        if let Err(why) = self.platform.write_pointer(&manifest.session_id) {
            warnings.push(format!(
                "the project pointer was not written ({why}); commands run in this project \
                 need --session {} or BRIDGE_SESSION_ID",
                manifest.session_id
            ));
        }
        Ok(manifest)
    }

    fn connect(
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
    fn send(
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

    fn reply(
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

    fn listen(
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
        if self.caller.get() != crate::Caller::WakeHook {
            while let Some(claimed) =
                self.wait_on_inbox(&me, Some(Instant::now()), warnings, &select)?
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
            let Some(claimed) = self.wait_on_inbox(&me, deadline, warnings, &select)? else {
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
    fn notice_alone(
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
    fn deliver_to_listener(
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

    fn wait_for_reply(
        &self,
        me: &SessionId,
        query: &MessageId,
        timeout_seconds: u32,
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
        let found = self.wait_on_inbox(me, Some(Instant::now() + timeout), warnings, select);
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
    fn wait_on_inbox(
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

    fn peers(&self, context: &Context) -> Result<Vec<PeerEntry>> {
        // This session's own directory may be the unsafe one: it is listed
        // as such, like any other.
        let me = match self.resolve(context) {
            Err(refused) if crate::registry::is_refused(&refused) => None,
            other => other?,
        };
        let mut entries = Vec::new();
        for id in self.session_ids()? {
            let entry = match self.manifest(&id) {
                Ok(manifest) => PeerEntry::Valid(Peer {
                    stale: manifest.is_stale(),
                    this_session: me.as_ref() == Some(&id),
                    manifest,
                }),
                Err(err) if crate::registry::is_refused(&err) => PeerEntry::Unsafe {
                    session_id: id.to_string(),
                    reason: crate::registry::REFUSED_SESSION.to_string(),
                },
                Err(err) => PeerEntry::Unreadable {
                    session_id: id.to_string(),
                    reason: err.to_string(),
                },
            };
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Sessions `me` exchanged messages with (of `kind`, or any kind), that
    /// still exist.
    fn correspondents(&self, me: &SessionId, kind: Option<Kind>) -> Result<BTreeSet<SessionId>> {
        let wanted = |m: &Message| kind.is_none_or(|k| m.kind == k);
        let senders = self
            .inbox_history(me)?
            .into_iter()
            .filter(wanted)
            .filter_map(|m| m.sender());
        let recipients = self
            .outbox_history(me)?
            .into_iter()
            .filter(wanted)
            .filter_map(|m| m.recipient());
        Ok(senders
            .chain(recipients)
            .filter(|id| id != me && self.session_exists(id))
            .collect())
    }

    fn status(&self, context: &Context) -> Result<StatusReport> {
        let (me, session) = self.me(context)?;
        let connected = self
            .correspondents(&me, Some(Kind::Ping))?
            .into_iter()
            .filter_map(|id| self.manifest(&id).ok())
            .map(|manifest| Peer {
                stale: manifest.is_stale(),
                this_session: false,
                manifest,
            })
            .collect();
        let count_json = |dir: std::path::PathBuf| -> Result<u32> {
            Ok(files::list(&dir)?
                .iter()
                .filter(|n| n.ends_with(".json"))
                .count() as u32)
        };
        let history = self.inbox_history(&me)?;
        let notices = self.pending_notices(&me);
        Ok(StatusReport {
            session,
            connected,
            // Notices held back for the next real message are not pending work.
            pending: count_json(self.layout.inbox(&me))?.saturating_sub(notices),
            sent: count_json(self.layout.outbox(&me))?,
            ended: self.ended_peers(&history),
        })
    }

    fn stop(&self, context: &Context, warnings: &mut Vec<String>) -> Result<StopReport> {
        let (me, mine) = self.me(context)?;
        if !self.project_owns(context, &me, &mine) {
            return Err(BridgeError::InvalidArgument(format!(
                "session {me} belongs to the project {:?}, not to {:?}; stop it from there \
                 (--project-dir {:?}) or name it with --session {me}",
                mine.project_path, context.project_dir, mine.project_path
            )));
        }
        let incarnation = self.incarnation(&me);
        let mut notified = Vec::new();
        for peer in self.correspondents(&me, None)? {
            let mut ended = Message::new(
                &me,
                &peer,
                Kind::SessionEnded,
                SESSION_ENDED_CONTENT.into(),
                None,
                &mine.project_name,
            );
            match self.deliver(&mut ended, warnings) {
                Ok(()) => notified.push(peer.to_string()),
                Err(err) => warnings.push(format!("could not notify {peer}: {err}")),
            }
        }
        self.receipts_recipient_gone(&me);
        if self.remove_own_session(&me, incarnation.as_deref())? {
            if let Err(why) = self.platform.clear_pointer(me.as_str()) {
                warnings.push(format!("the project pointer was not removed: {why}"));
            }
        } else {
            warnings.push(format!(
                "session {me} registered again while stopping; the new registration was left in place"
            ));
        }
        let mut pruned = Vec::new();
        for id in self.session_ids()? {
            if self.prune_if_abandoned(&id)? {
                pruned.push(id.to_string());
            }
        }
        let cheap = self.cleanup_cheap(context, &me, warnings);
        pruned.extend(cheap.sessions_removed);
        Ok(StopReport {
            session_id: me.to_string(),
            notified,
            pruned,
        })
    }
}
