//! Receipts: where a message this session sent stands, told truthfully.
//!
//! Every step a query or a response reaches after it was queued is one small
//! JSON file in its sender's session, `receipts/<msg-id>.<stage>`:
//! `{"at": "<UTC stamp>", "by": "<session>", "taker": "<caller kind>",
//! "detail": ...}`. Whichever session makes the step writes it: the taker
//! writes `taken`, the replier `answered` (the reply's ID as detail), the
//! recipient `set-aside` (the reason) and `recipient-gone` (when it stops
//! with the message still pending), and the recipient's Stop hook `seen`.
//! The original plugin never looks there, so interop is unchanged.
//!
//! `queued` is never written: it is the message's own timestamp. What no
//! file says is read off the recipient's mailbox when `track` asks: still in
//! its inbox or `claimed/` (queued), marked read or in `read/` (taken, by an
//! original-protocol reader or before receipts existed), or its session gone
//! (recipient-gone).
//!
//! A receipt never costs a delivery anything but the one small write of its
//! step: no listing, no read, and any failure is ignored. A step file that
//! is corrupt is reported and set aside when read, never trusted. An
//! `answered` step names its reply, and counts only when that reply is in
//! the sender's own inbox and really answers the message, so no third
//! session can forge it.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{BridgeError, Result, display_path};
use crate::files::{self, ReadFailure};
use crate::ids::{MessageId, SessionId, random_token};
use crate::render::one_line;
use crate::wire::{
    Kind, MAX_MANIFEST_FILE_BYTES, MAX_MESSAGE_FILE_BYTES, Manifest, Message, Status,
};
use crate::{
    Bridge, Caller, Context, Layout, Liveness, Platform, Receipt, ReceiptEvent, Stage, clock,
};

/// The largest step file read; a step is a few hundred bytes.
const MAX_STEP_FILE_BYTES: u64 = 4096;
/// The longest detail (a set-aside reason) kept on a step.
const MAX_DETAIL_CHARS: usize = 600;
/// The longest taker kind accepted on a step.
const MAX_TAKER_LEN: usize = 32;
/// The longest agent process name recorded.
const MAX_AGENT_PROCESS_BYTES: usize = 256;
/// The largest outbox copy a reply reads to check what it answers; a
/// larger one is only looked at.
const MAX_CHECKED_COPY_BYTES: u64 = 64 * 1024;
/// The largest unseen marker read (`<sender> <epoch-ms>`).
const MAX_MARKER_BYTES: u64 = 64;
/// An unseen marker older than this is dropped: the turn that would have
/// shown the message is long over.
pub(crate) const UNSEEN_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// The taker of a message whose commit was finished by a later look, after
/// the process that took it died.
pub(crate) const RECOVERED_TAKER: &str = "recovered";

/// The steps read from files, in the order they are looked for.
const RECORDED: [Stage; 6] = [
    Stage::Relayed,
    Stage::Taken,
    Stage::Seen,
    Stage::Answered,
    Stage::SetAside,
    Stage::RecipientGone,
];

/// Only queries and responses have receipts; pings and session-ended
/// notices are bookkeeping.
fn receipted(kind: Kind) -> bool {
    matches!(kind, Kind::Query | Kind::Response)
}

/// One step file.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct Step {
    at: String,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    taker: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

impl Step {
    /// Parses and checks a step file: a wire stamp, a session ID, a plain
    /// taker word and a bounded detail. Anything else is corrupt.
    fn parse(bytes: &[u8]) -> std::result::Result<Step, String> {
        let step: Step =
            serde_json::from_slice(bytes).map_err(|e| format!("not a valid receipt: {e}"))?;
        if clock::parse_stamp(&step.at).is_none() {
            return Err(format!("its time {:?} is not a UTC stamp", step.at));
        }
        if let Some(by) = &step.by {
            SessionId::parse(by).map_err(|_| format!("its session {by:?} is not a session ID"))?;
        }
        if let Some(taker) = &step.taker {
            let plain = !taker.is_empty()
                && taker.len() <= MAX_TAKER_LEN
                && taker
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !plain {
                return Err(format!("its taker {taker:?} is not a taker kind"));
            }
        }
        if let Some(detail) = &step.detail
            && detail.chars().count() > MAX_DETAIL_CHARS
        {
            return Err(format!("its detail is over {MAX_DETAIL_CHARS} characters"));
        }
        Ok(step)
    }

    fn event(self, stage: Stage) -> ReceiptEvent {
        ReceiptEvent {
            stage,
            at: self.at,
            by: self.by,
            taker: self.taker,
            detail: self.detail,
        }
    }
}

/// At most [`MAX_DETAIL_CHARS`] of `text`.
fn bounded_detail(text: &str) -> String {
    match text.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((end, _)) => text[..end].to_string(),
        None => text.to_string(),
    }
}

/// What the recipient's mailbox tells of a message no step file covers.
enum Trace {
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
        if caller == Some(Caller::WakeHook) && matches!(written, Ok(true)) {
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

    /// The steps written into `remote`, a session of another machine, by
    /// sessions of this one: each a (file name, message, stage, bytes) to
    /// carry back to `remote`'s machine, at most `limit` of them (the rest
    /// wait for the next batch, so a pile of steps is read once, not on
    /// every pass). `answered` stays: the reply itself travels, and its
    /// arrival records the step there.
    pub(crate) fn steps_to_carry(
        &self,
        remote: &SessionId,
        limit: usize,
    ) -> Vec<(String, MessageId, Stage, Vec<u8>)> {
        let dir = self.layout.receipts(remote);
        let Ok(names) = files::list(&dir) else {
            return Vec::new();
        };
        let mut steps = Vec::new();
        for name in names {
            if steps.len() >= limit {
                break;
            }
            let Some((id, stage)) = name.rsplit_once('.') else {
                continue;
            };
            let stage = match stage {
                "taken" => Stage::Taken,
                "seen" => Stage::Seen,
                "set-aside" => Stage::SetAside,
                "recipient-gone" => Stage::RecipientGone,
                _ => continue,
            };
            let Ok(id) = MessageId::parse(id) else {
                continue;
            };
            if let Ok(bytes) = files::read_bounded(&dir.join(&name), MAX_STEP_FILE_BYTES)
                && Step::parse(&bytes).is_ok()
            {
                steps.push((name, id, stage, bytes));
            }
        }
        steps
    }

    /// Removes a step carried to its session's machine.
    pub(crate) fn carried_step(&self, remote: &SessionId, name: &str) -> Result<()> {
        files::remove_if_present(&self.layout.receipts(remote).join(name))
    }

    /// A step made on machine `from_machine` for a message `sender`, a
    /// session of this machine, sent there. Written only when the step is
    /// well formed, names as its maker a session of that machine, and the
    /// sender's outbox shows the message went to that session.
    pub(crate) fn accept_carried_step(
        &self,
        from_machine: &str,
        sender: &SessionId,
        id: &MessageId,
        stage: &str,
        step: &[u8],
    ) -> std::result::Result<bool, String> {
        let stage = match stage {
            "taken" => Stage::Taken,
            "seen" => Stage::Seen,
            "set-aside" => Stage::SetAside,
            "recipient-gone" => Stage::RecipientGone,
            other => {
                return Err(format!(
                    "{id}: {:?} is not a stage carried between machines",
                    other.chars().take(40).collect::<String>()
                ));
            }
        };
        if step.len() as u64 > MAX_STEP_FILE_BYTES {
            return Err(format!(
                "the {} step of {id} is over {MAX_STEP_FILE_BYTES} bytes",
                stage.as_str()
            ));
        }
        let parsed = Step::parse(step)
            .map_err(|why| format!("the {} step of {id}: {why}", stage.as_str()))?;
        let by = parsed
            .by
            .as_deref()
            .and_then(|by| SessionId::parse(by).ok())
            .ok_or_else(|| format!("the {} step of {id} names no session", stage.as_str()))?;
        if self.remote_machine(&by).as_deref() != Some(from_machine) {
            return Err(format!(
                "the {} step of {id} names {by}, which is not a session of machine {from_machine:?}",
                stage.as_str()
            ));
        }
        match self.sent_copy(sender, id) {
            Some(message) if message.to == by.as_str() => {}
            _ => {
                return Err(format!(
                    "{sender} sent no message {id} to {by}, so its {} step is not taken",
                    stage.as_str()
                ));
            }
        }
        let dir = self.layout.receipts(sender);
        files::ensure_child_dir(&dir).map_err(|e| e.to_string())?;
        let name = Layout::receipt_name(id, stage.as_str());
        // A take in place, as one made here is (see `write_step`).
        if stage == Stage::Taken {
            return files::write_new_once(&dir.join(&name), step).map_err(|e| e.to_string());
        }
        if files::stat(&dir.join(&name)).is_ok() {
            return Ok(false);
        }
        files::replace(&dir, &name, step).map_err(|e| e.to_string())?;
        Ok(true)
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

    /// Whether the agent behind session `id` runs: its recorded agent
    /// process, as the host tells; otherwise its heartbeat.
    pub(crate) fn liveness(&self, id: &SessionId) -> Liveness {
        let key = self.layout.session(id).display().to_string();
        let cached = self
            .caches
            .liveness
            .borrow()
            .get(&key, Some(LIVENESS_FRESH_MS));
        if let Some(liveness) = cached {
            return liveness;
        }
        let liveness = self.liveness_now(id);
        self.caches.liveness.borrow_mut().put(key, liveness);
        liveness
    }

    /// [`Self::liveness`], looked up afresh.
    pub(crate) fn liveness_now(&self, id: &SessionId) -> Liveness {
        match self.agent_process_running(id) {
            Some(true) => return Liveness::Running,
            Some(false) => return Liveness::NotRunning,
            None => {}
        }
        let manifest = files::read_bounded(&self.layout.manifest(id), MAX_MANIFEST_FILE_BYTES)
            .ok()
            .and_then(|bytes| Manifest::parse(&bytes, id).ok());
        match manifest {
            Some(manifest) if manifest.is_stale() => Liveness::NotRunning,
            Some(_) => Liveness::Running,
            None => Liveness::Unknown,
        }
    }

    /// Whether the agent process recorded for session `id` runs: None when
    /// none is recorded or the host cannot tell. Unlike [`Self::liveness`]
    /// it never guesses from the heartbeat, so cleanup removes a session
    /// early only on this word.
    pub(crate) fn agent_process_running(&self, id: &SessionId) -> Option<bool> {
        let process = files::read_bounded(
            &self.layout.agent_process(id),
            MAX_AGENT_PROCESS_BYTES as u64,
        )
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|text| !text.is_empty())?;
        self.platform.process_running(&process)
    }

    /// Records `context.agent_process` for session `id` (start, session-start).
    /// Without one, a process recorded before stays.
    ///
    /// # Errors
    /// `InvalidArgument` for a name that is empty, too long or holds control
    /// characters; `Io` when it cannot be written.
    pub(crate) fn record_agent_process(&self, id: &SessionId, context: &Context) -> Result<()> {
        let Some(process) = context.agent_process.as_deref() else {
            return Ok(());
        };
        let key = self.layout.session(id).display().to_string();
        self.caches.liveness.borrow_mut().forget(&key);
        if process.is_empty()
            || process.len() > MAX_AGENT_PROCESS_BYTES
            || process.chars().any(char::is_control)
        {
            return Err(BridgeError::InvalidArgument(format!(
                "the agent process name {:?} is not 1 to {MAX_AGENT_PROCESS_BYTES} bytes of \
                 printable text",
                process.chars().take(80).collect::<String>()
            )));
        }
        files::replace(
            &self.layout.session(id),
            "agent-process",
            process.as_bytes(),
        )
    }

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

    /// Writes the step `stage` of `message` into `sender`'s receipts, made
    /// now by `by` as `taker`. Ok(false) when `sender`'s session directory
    /// is missing or refused. The common case costs one small write: the
    /// folder is looked at only when the write fails.
    fn write_step(
        &self,
        sender: &SessionId,
        message: &MessageId,
        stage: Stage,
        by: Option<&SessionId>,
        taker: &str,
        detail: Option<&str>,
    ) -> Result<bool> {
        let step = Step {
            at: clock::now_stamp(),
            by: by.map(SessionId::to_string),
            taker: Some(taker.to_string()),
            detail: detail.map(bounded_detail),
        };
        let bytes = serde_json::to_vec(&step).expect("steps serialize");
        let dir = self.layout.receipts(sender);
        let name = Layout::receipt_name(message, stage.as_str());
        // A take and a hand-over to the relay server are on the hot path
        // and each has one first time: the step is created in place,
        // exclusively, in one write (a reader that meets it half written
        // waits for it, see `read_step`). The other steps are rare and
        // replace what was there, through a temporary file.
        let write = |dir: &Path| -> std::io::Result<bool> {
            if matches!(stage, Stage::Taken | Stage::Relayed) {
                files::write_new_once(&dir.join(&name), &bytes)
            } else {
                files::replace(dir, &name, &bytes)
                    .map(|()| true)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            }
        };
        if let Ok(written) = write(&dir) {
            return Ok(written);
        }
        if !self.session_dir_usable(sender)? {
            return Ok(false);
        }
        files::ensure_child_dir(&dir)?;
        write(&dir)
            .map_err(|err| BridgeError::io("cannot write the receipt", &dir.join(&name), &err))
    }

    /// Leaves a marker that `owner` took `id` from `sender` through the wake
    /// hook, for `seen`.
    fn mark_unseen(&self, owner: &SessionId, id: &MessageId, sender: &SessionId) {
        let dir = self.layout.unseen(owner);
        let marker = format!("{sender} {}", clock::epoch_millis());
        if files::replace(&dir, id.as_str(), marker.as_bytes()).is_err()
            && files::ensure_child_dir(&dir).is_ok()
        {
            let _ = files::replace(&dir, id.as_str(), marker.as_bytes());
        }
    }

    /// The step `stage` of `id` in `me`'s receipts, if a sound one is there.
    /// A corrupt one is set aside with a warning.
    fn read_step(
        &self,
        me: &SessionId,
        id: &MessageId,
        stage: Stage,
        warnings: &mut Vec<String>,
    ) -> Option<Step> {
        let dir = self.layout.receipts(me);
        let name = Layout::receipt_name(id, stage.as_str());
        let path = dir.join(&name);
        let problem = match files::read_bounded_with_stat(&path, MAX_STEP_FILE_BYTES) {
            Ok((bytes, stat)) => match Step::parse(&bytes) {
                Ok(step) => return Some(step),
                // A take's and a hand-over's steps are written in place:
                // one still being written is left for the next look.
                Err(_)
                    if matches!(stage, Stage::Taken | Stage::Relayed)
                        && stat.modified.is_some()
                        && !clock::older_than(stat.modified, STEP_WRITE_GRACE) =>
                {
                    return None;
                }
                Err(reason) => reason,
            },
            Err(ReadFailure::Missing) => return None,
            Err(ReadFailure::Io(err)) => {
                warnings.push(format!(
                    "could not read the receipt {}: {}; it was left out",
                    display_path(&path),
                    crate::error::describe_io(&err)
                ));
                return None;
            }
            Err(failure) => failure.describe(MAX_STEP_FILE_BYTES),
        };
        self.set_aside_step(me, &name, &problem, warnings);
        None
    }

    /// Moves the corrupt step file `name` of `me` into `receipts/rejected/`
    /// beside a `.reason` file, and says so.
    fn set_aside_step(&self, me: &SessionId, name: &str, reason: &str, warnings: &mut Vec<String>) {
        let from = self.layout.receipts(me).join(name);
        let rejected = self.layout.rejected_receipts(me);
        let kept = format!("{}-{}-{name}", clock::epoch_millis(), random_token(6));
        let moved = files::ensure_child_dir(&rejected)
            .and_then(|()| {
                std::fs::rename(&from, rejected.join(&kept))
                    .map_err(|err| BridgeError::io("cannot set aside", &from, &err))
            })
            .and_then(|()| files::replace(&rejected, &format!("{kept}.reason"), reason.as_bytes()));
        let shown = display_path(&from);
        warnings.push(match moved {
            Ok(()) => format!(
                "set aside the corrupt receipt {shown}: {reason}; it is kept as {}, and the \
                 receipt goes by the mailboxes instead",
                display_path(&rejected.join(kept))
            ),
            Err(err) => format!(
                "ignored the corrupt receipt {shown}: {reason}; it could not be set aside ({err})"
            ),
        });
    }

    /// The copy of `id` in `sender`'s outbox, if `sender` sent it.
    fn sent_copy(&self, sender: &SessionId, id: &MessageId) -> Option<Message> {
        let path = self.layout.outbox(sender).join(id.file_name());
        let bytes = files::read_bounded(&path, MAX_MESSAGE_FILE_BYTES).ok()?;
        Message::parse(&bytes, id.as_str(), None)
            .ok()
            .filter(|m| m.from == sender.as_str())
    }

    /// The reply an `answered` step names, when it is in `me`'s inbox
    /// (pending, claimed or read), answers `message` and comes from its
    /// recipient.
    fn verified_reply(
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
    fn trace(&self, to: &SessionId, id: &MessageId) -> Trace {
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

/// How long a take's step may be seen half written before it counts as
/// corrupt.
const STEP_WRITE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long an instance that runs many verbs trusts a liveness it looked
/// up: a burst of sends to one peer asks once.
const LIVENESS_FRESH_MS: u64 = 1000;

/// `<sender> <epoch-ms>`.
fn parse_marker(bytes: &[u8]) -> Option<(SessionId, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (sender, at) = text.trim().split_once(' ')?;
    Some((SessionId::parse(sender).ok()?, at.parse().ok()?))
}

/// `HH:MM:SS` of a wire stamp, with its date when it is not `day`.
fn when(stamp: &str, day: &str) -> String {
    match stamp.split_once('T') {
        Some((date, time)) if date == day => time.trim_end_matches('Z').to_string(),
        Some((date, time)) => format!("{date} {}", time.trim_end_matches('Z')),
        None => one_line(stamp),
    }
}

/// The text of a receipt: the message, its recipient and stage, one line
/// per step, and what to run next.
pub(crate) fn receipt_text(receipt: &Receipt, caller: crate::Caller) -> String {
    let m = &receipt.message;
    let mut out = format!("{} to {}: {}\n", m.id, m.to, receipt.stage.as_str());
    let day = m.timestamp.split_once('T').map_or("", |(date, _)| date);
    for event in &receipt.events {
        out.push_str(&format!(
            "  {}  {}",
            when(&event.at, day),
            event.stage.as_str()
        ));
        if let Some(by) = &event.by {
            out.push_str(&format!(" by {}", one_line(by)));
        }
        if let Some(taker) = &event.taker {
            out.push_str(&format!(" ({})", one_line(taker)));
        }
        if let Some(detail) = &event.detail {
            out.push_str(&format!(": {}", one_line(detail)));
        }
        out.push('\n');
    }
    let next = match receipt.stage {
        Stage::Answered => Some(format!(
            "Answered by {}; {} shows the conversation",
            receipt.reply.as_deref().unwrap_or("a reply"),
            crate::commands::on_message(caller, "thread", &m.id)
        )),
        Stage::Queued | Stage::Relayed | Stage::Taken | Stage::Seen if m.kind == Kind::Query => {
            Some(format!(
                "Not answered yet; to wait for the reply: {}",
                crate::commands::on_message(caller, "receive", &m.id)
            ))
        }
        Stage::Queued | Stage::Relayed | Stage::Taken | Stage::Seen => None,
        Stage::SetAside | Stage::RecipientGone => Some(format!(
            "{} will not take it; {} shows who is there now",
            m.to,
            crate::commands::plain(caller, "peers")
        )),
    };
    if let Some(next) = next {
        out.push_str(&next);
        out.push('\n');
    }
    out
}

/// The JSON of a receipt.
pub(crate) fn receipt_json(receipt: &Receipt) -> serde_json::Value {
    json!({
        "messageId": receipt.message.id,
        "to": receipt.message.to,
        "stage": receipt.stage.as_str(),
        "events": receipt.events.iter().map(|e| json!({
            "stage": e.stage.as_str(),
            "at": e.at,
            "by": e.by,
            "taker": e.taker,
            "detail": e.detail,
        })).collect::<Vec<_>>(),
        "reply": receipt.reply,
    })
}

#[cfg(test)]
mod tests;
