//! The relay's verbs: what `bridge-host relay` asks of the protocol when it
//! carries messages between machines. The host holds the network
//! connection and moves bytes; every rule about what may cross, and where
//! it lands, is here.
//!
//! A session of another machine is *materialized* here in the original's
//! layout: `sessions/<id>/manifest.json` (with a `machine` field naming
//! where it runs) and `sessions/<id>/inbox/`. Anything that sends to it,
//! the original's scripts included, writes into that inbox as for a local
//! session; `relay-outbound` claims what waits there, and the host publishes
//! it and commits the claim only once the relay server acknowledged it.
//! Messages from other machines pass `relay-inbound`, which checks them as
//! a local send is checked and writes each into its recipient's inbox once.

use crate::error::{BridgeError, Result};
use crate::files;
use crate::ids::{MessageId, SessionId};
use crate::mailbox::Loaded;
use crate::wire::{
    Kind, MAX_MANIFEST_FILE_BYTES, MAX_MESSAGE_FILE_BYTES, Manifest, Message, Status,
};
use crate::{
    Bridge, InboundVerdict, MaterializeReport, MaterializeRequest, Platform, PresenceEntry,
    RelayItem, RelayOutgoing, clock,
};

/// How long [`Bridge::remote_machine`] trusts what it read.
const REMOTE_FRESH_MS: u64 = 1_000;

/// The longest machine name.
pub const MAX_MACHINE_LEN: usize = 32;

/// The most messages one `relay-outbound` claims: the host publishes them
/// together, and asks again at once when the batch was full.
pub const OUTBOUND_BATCH: usize = 256;

/// The most payload bytes one `relay-outbound` returns, past the first
/// message: a batch of the largest messages (up to 7 MiB each) must fit
/// the guest's memory, and the server's acknowledgements must come within
/// the claim lease.
pub const OUTBOUND_BYTES: usize = 16 << 20;

/// How long a message waits for its sender's sent copy before it is
/// carried without one (see `sent_copy_missing`).
const OUTBOX_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest refusal reason: it quotes what came from the network.
const MAX_REFUSAL_CHARS: usize = 300;

/// The most sessions one machine may show here.
pub const MAX_REMOTE_SESSIONS: usize = 1024;

/// Checks a machine name: 1 to 32 characters of `[a-z0-9-]`, starting with
/// a letter or digit. It is one token of a subject and part of a stream
/// name on the relay server, so nothing else may appear in it.
///
/// # Errors
/// `InvalidArgument` saying what is wrong and what would do.
pub fn validate_machine(name: &str) -> Result<&str> {
    let plain = !name.is_empty()
        && name.len() <= MAX_MACHINE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if plain {
        Ok(name)
    } else {
        Err(BridgeError::InvalidArgument(format!(
            "the machine name {:?} is not 1 to {MAX_MACHINE_LEN} characters of a-z, 0-9 and `-` \
             (starting with a letter or digit); pass one with --machine, for example \
             --machine laptop",
            name.chars().take(64).collect::<String>()
        )))
    }
}

/// One message as the relay received it from the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMail {
    /// The machine that published it, as the subject names it.
    pub from_machine: String,
    /// The message, unvalidated.
    pub payload: Vec<u8>,
    /// The publishing relay's key, as its `Bridge-Signer` header gave it
    /// (empty when it had none).
    pub signer: String,
    /// Its signature, as its `Bridge-Signature` header gave it.
    pub signature: String,
}

/// The sessions one batch of received messages named: each one's machine
/// (None for this one), or Err when it is no session here.
type Known = std::collections::HashMap<SessionId, std::result::Result<Option<String>, ()>>;

/// One message from the network, checked.
enum Inbound {
    /// Fit to be written into the inbox of `to`.
    Ready {
        id: MessageId,
        to: SessionId,
        message: Message,
    },
    /// Anything else: refused, or from a sender not known yet.
    Verdict(InboundVerdict),
}

impl<P: Platform> Bridge<P> {
    /// The machine session `id` runs on, when it is a session of another
    /// machine materialized here. Remembered for a second: a relay asks it
    /// for every message of a batch, and a session shown for one machine
    /// is never shown for another (`materialize_one`). What is not a remote
    /// session is read each time, so that one shown just now counts.
    pub(crate) fn remote_machine(&self, id: &SessionId) -> Option<String> {
        if let Some(machine) = self.caches.remote.borrow().get(id, Some(REMOTE_FRESH_MS)) {
            return Some(machine);
        }
        let bytes = files::read_bounded(&self.layout.manifest(id), MAX_MANIFEST_FILE_BYTES).ok()?;
        let machine = Manifest::parse(&bytes, id).ok()?.machine?;
        self.caches
            .remote
            .borrow_mut()
            .put(id.clone(), machine.clone());
        Some(machine)
    }

    /// `relay-outbound`: claims what waits in the inboxes of sessions of
    /// other machines, and names the folders to watch for more.
    pub(crate) fn relay_outbound(
        &self,
        machine: &str,
        warnings: &mut Vec<String>,
    ) -> Result<RelayOutgoing> {
        let machine = validate_machine(machine)?;
        let sessions = self.layout.sessions().display().to_string();
        let mut out = RelayOutgoing {
            items: Vec::new(),
            watch: vec![sessions.clone()],
            sessions,
        };
        let mut bytes = 0;
        let full = |items: &[RelayItem], bytes: usize| {
            items.len() >= OUTBOUND_BATCH || bytes >= OUTBOUND_BYTES
        };
        for id in self.session_ids()? {
            let Ok(manifest) = self.manifest(&id) else {
                continue;
            };
            let Some(to_machine) = manifest.machine.filter(|m| m.as_str() != machine) else {
                continue;
            };
            if validate_machine(&to_machine).is_err() {
                continue;
            }
            let inbox = self.layout.inbox(&id);
            if files::ensure_child_dir(&inbox).is_err() {
                continue;
            }
            out.watch.push(inbox.display().to_string());
            let receipts = self.layout.receipts(&id);
            if files::ensure_child_dir(&receipts).is_ok() {
                out.watch.push(receipts.display().to_string());
            }
            if full(&out.items, bytes) {
                continue;
            }
            // Steps sessions of this machine made on messages from `id`
            // (taken, seen, set aside, recipient gone) go back to its
            // machine, where its receipts are.
            let room = OUTBOUND_BATCH - out.items.len();
            for (name, message, stage, step) in self.steps_to_carry(&id, room) {
                let step: serde_json::Value = serde_json::from_slice(&step).unwrap_or_default();
                let payload = serde_json::json!({
                    "receipt": {
                        "session": id.as_str(),
                        "message": message.as_str(),
                        "stage": stage.as_str(),
                        "step": step,
                    }
                });
                let payload = serde_json::to_vec(&payload).expect("JSON values serialize");
                bytes += payload.len();
                out.items.push(RelayItem {
                    to_machine: to_machine.clone(),
                    message_id: name.clone(),
                    payload,
                    ticket: crate::ClaimTicket {
                        session_id: id.to_string(),
                        message_id: message.to_string(),
                        claim_name: name,
                    },
                });
            }
            // In the order a listener here would take them, so that they
            // reach the other machine in that order: oldest first while
            // few are pending (each file read once per instance), else as
            // listed.
            let look = self.pending_names(&id)?;
            if look.names.len() <= crate::verbs::OLDEST_FIRST_LIMIT {
                let mut pending = Vec::with_capacity(look.names.len());
                self.forget_unlisted(&id, &look.names);
                for name in &look.names {
                    if let Loaded::Pending(mut one) =
                        self.load_pending_cached(&id, name, warnings)?
                    {
                        one.message.content = String::new();
                        pending.push(one);
                    }
                }
                crate::mailbox::sort_oldest_first(&mut pending);
                for one in pending {
                    if full(&out.items, bytes) {
                        break;
                    }
                    bytes += self.carry_pending(&id, &to_machine, &one, &mut out, warnings)?;
                }
            } else {
                for name in look.names {
                    if full(&out.items, bytes) {
                        break;
                    }
                    if let Loaded::Pending(one) = self.load_pending(&id, &name, warnings)? {
                        bytes += self.carry_pending(&id, &to_machine, &one, &mut out, warnings)?;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Claims one pending message of `id` to carry it to `to_machine`;
    /// returns the size of what it added to `out`.
    fn carry_pending(
        &self,
        id: &SessionId,
        to_machine: &str,
        pending: &crate::mailbox::Pending,
        out: &mut RelayOutgoing,
        warnings: &mut Vec<String>,
    ) -> Result<usize> {
        if self.sent_copy_missing(pending, out) {
            return Ok(0);
        }
        let Some((mut message, ticket)) = self.claim(id, pending, warnings)? else {
            return Ok(0);
        };
        message.status = Status::Pending;
        let payload = message.to_bytes();
        let size = payload.len();
        out.items.push(RelayItem {
            to_machine: to_machine.to_string(),
            message_id: message.id.clone(),
            payload,
            ticket,
        });
        Ok(size)
    }

    /// Whether `pending` is from a session of this machine whose sent copy
    /// is not in its outbox yet: a send writes the recipient's inbox first
    /// and its outbox then, and a step carried back from the other machine
    /// (`taken`) is accepted only for a message the outbox shows. Such a
    /// message waits, and its sender's outbox is watched, for at most
    /// [`OUTBOX_GRACE`] (the original's scripts keep no sent copy).
    fn sent_copy_missing(
        &self,
        pending: &crate::mailbox::Pending,
        out: &mut RelayOutgoing,
    ) -> bool {
        let (Ok(from), Ok(id)) = (
            SessionId::parse(&pending.message.from),
            MessageId::parse(&pending.message.id),
        ) else {
            return false;
        };
        let outbox = self.layout.outbox(&from);
        if files::stat(&outbox.join(id.file_name())).is_ok() {
            return false;
        }
        let young = pending
            .modified
            .is_some_and(|t| t.elapsed().map_or(true, |age| age < OUTBOX_GRACE));
        if !young || !self.manifest(&from).is_ok_and(|m| m.machine.is_none()) {
            return false;
        }
        if files::ensure_child_dir(&outbox).is_ok() {
            out.watch.push(outbox.display().to_string());
        }
        true
    }

    /// `relay-inbound`: a message published by `from_machine` for this
    /// machine is checked as a local send is checked, and its sender must
    /// be a session of the machine that published it; then it is written
    /// into the inbox once, durably, as a local send writes it.
    ///
    /// The batch is checked whole before anything is written, and written
    /// in its order. When a sender is not known here yet and this is not
    /// the `last_offer`, nothing is written: its messages are
    /// `UnknownSender`, the others `Held`, and the host offers the batch
    /// again once it has refreshed that sender's presence. So no later
    /// message of the same sender can land before an earlier one.
    ///
    /// # Errors
    /// Only when a file operation fails: the host does not acknowledge the
    /// message, and the server delivers it again.
    pub(crate) fn relay_inbound(
        &self,
        machine: &str,
        messages: &[InboundMail],
        last_offer: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<InboundVerdict>> {
        let machine = validate_machine(machine)?;
        let mut known = Known::new();
        let mut checked = Vec::with_capacity(messages.len());
        for mail in messages {
            checked.push(self.check_inbound(machine, mail, last_offer, &mut known, warnings)?);
        }
        let hold = checked
            .iter()
            .any(|c| matches!(c, Inbound::Verdict(InboundVerdict::UnknownSender(_))));
        let mut verdicts = Vec::with_capacity(checked.len());
        let mut written = Vec::new();
        for checked in checked {
            let verdict = match checked {
                Inbound::Verdict(verdict) => verdict,
                Inbound::Ready { id, .. } if hold => InboundVerdict::Held(id.to_string()),
                Inbound::Ready {
                    id,
                    to,
                    mut message,
                } => {
                    if self.received(&to, &id)?.is_some() {
                        InboundVerdict::Duplicate(id.to_string())
                    } else {
                        match self.deliver_received(&mut message, warnings) {
                            Ok(Some(file)) => {
                                let delivered = InboundVerdict::Delivered(id.to_string());
                                written.push((to, id, file));
                                delivered
                            }
                            Ok(None) => InboundVerdict::Duplicate(id.to_string()),
                            Err(err @ BridgeError::Io { .. }) => return Err(err),
                            Err(err) => InboundVerdict::Refused(format!("{id}: {err}")),
                        }
                    }
                }
            };
            // Bounded: what a refusal quotes came from the network.
            let verdict = match verdict {
                InboundVerdict::Refused(why) if why.chars().count() > MAX_REFUSAL_CHARS => {
                    let cut: String = why.chars().take(MAX_REFUSAL_CHARS).collect();
                    InboundVerdict::Refused(format!("{cut}..."))
                }
                verdict => verdict,
            };
            verdicts.push(verdict);
        }
        if written.is_empty() {
            return Ok(verdicts);
        }
        // Flushed together, before the host acknowledges anything: the
        // whole bridge directory in one operation where the platform has
        // one, else each file's contents through the handle it was written
        // with (a listener may have claimed it meanwhile, moving it out of
        // the inbox), then the folders it can be in, each once.
        if self.platform.flush_all().is_ok() {
            return Ok(verdicts);
        }
        let mut folders = std::collections::BTreeSet::new();
        for (to, id, file) in &written {
            let inbox = self.layout.inbox(to);
            file.flush(&inbox.join(id.file_name()))?;
            folders.insert(inbox);
            folders.insert(self.layout.claimed(to));
        }
        for folder in folders {
            files::sync_dir(&folder);
        }
        Ok(verdicts)
    }

    /// One message of [`Self::relay_inbound`], checked but not written. A
    /// receipt step is applied at once: it lands in a receipt, not an inbox.
    fn check_inbound(
        &self,
        machine: &str,
        mail: &InboundMail,
        last_offer: bool,
        known: &mut Known,
        warnings: &mut Vec<String>,
    ) -> Result<Inbound> {
        let refused = |why: String| Ok(Inbound::Verdict(InboundVerdict::Refused(why)));
        let payload = mail.payload.as_slice();
        let Ok(from_machine) = validate_machine(&mail.from_machine) else {
            return refused("the publishing machine's name is not a machine name".into());
        };
        if from_machine == machine {
            return refused(format!(
                "it was published under this machine's own name {machine:?}"
            ));
        }
        match self.check_signature(
            machine,
            from_machine,
            &mail.signer,
            &mail.signature,
            payload,
        ) {
            Ok(()) => {}
            Err(crate::relay_keys::Unsigned::Missing(why)) => return refused(why),
            Err(crate::relay_keys::Unsigned::Untrusted(why)) => {
                return Ok(Inbound::Verdict(InboundVerdict::Untrusted(why)));
            }
            Err(crate::relay_keys::Unsigned::Forged(why)) => {
                warnings.push(format!(
                    "SECURITY: refused a message from the network that machine \
                     {from_machine:?} did not sign: {why}"
                ));
                return refused(why);
            }
        }
        if payload.len() as u64 > MAX_MESSAGE_FILE_BYTES {
            return refused(format!(
                "it is {} bytes, over the {MAX_MESSAGE_FILE_BYTES}-byte limit of a message file",
                payload.len()
            ));
        }
        let value = serde_json::from_slice::<serde_json::Value>(payload).ok();
        if let Some(receipt) = value.as_ref().and_then(|v| v.get("receipt")) {
            return self
                .inbound_step(from_machine, receipt)
                .map(Inbound::Verdict);
        }
        let id = match value.and_then(|v| v.get("id")?.as_str().map(str::to_string)) {
            Some(id) if MessageId::parse(&id).is_ok() => id,
            _ => return refused("it is not a message with a valid message ID".into()),
        };
        let message = match Message::parse(payload, &id, None) {
            Ok(message) => message,
            Err(reason) => return refused(format!("{id} is malformed: {reason}")),
        };
        if message.status != Status::Pending {
            return refused(format!("{id} is not pending"));
        }
        if let Err(err) = crate::verbs::check_content(&message.content) {
            return refused(format!("{id}: {err}"));
        }
        let to = SessionId::parse(&message.to)?;
        let from = SessionId::parse(&message.from)?;
        match self.machine_of(&to, known) {
            Ok(None) => {}
            Ok(Some(other)) => {
                return refused(format!(
                    "{id} is addressed to {to}, a session of machine {other:?}, not of this one"
                ));
            }
            Err(_) => {
                return refused(format!(
                    "{id} is addressed to {to}, which is not a session of this machine"
                ));
            }
        }
        match self.machine_of(&from, known) {
            Ok(Some(machine)) if machine == from_machine => {}
            Ok(machine) => {
                let owner =
                    machine.map_or("this machine".to_string(), |m| format!("machine {m:?}"));
                return refused(format!(
                    "{id} names {from} as its sender, a session of {owner}, but machine \
                     {from_machine:?} published it"
                ));
            }
            // A session that ended: its presence may be withdrawn before
            // its last notices arrive. Saying that a session nobody here
            // knows has ended misleads no one.
            Err(_) if message.kind == Kind::SessionEnded => {}
            Err(_) if last_offer => {
                return refused(format!(
                    "{id} names {from} as its sender, which is not a session of machine \
                     {from_machine:?}"
                ));
            }
            Err(_) => {
                return Ok(Inbound::Verdict(InboundVerdict::UnknownSender(
                    from.to_string(),
                )));
            }
        }
        Ok(Inbound::Ready {
            id: MessageId::parse(&id)?,
            to,
            message,
        })
    }

    /// The machine of session `id` (None for this one), or Err when it is
    /// no session here; remembered in `known` for the rest of one batch.
    fn machine_of(
        &self,
        id: &SessionId,
        known: &mut Known,
    ) -> std::result::Result<Option<String>, ()> {
        known
            .entry(id.clone())
            .or_insert_with(|| self.manifest(id).map(|m| m.machine).map_err(drop))
            .clone()
    }

    /// A receipt step made on `from_machine` for a message a session of
    /// this machine sent there.
    fn inbound_step(
        &self,
        from_machine: &str,
        receipt: &serde_json::Value,
    ) -> Result<InboundVerdict> {
        let text = |key: &str| receipt.get(key).and_then(serde_json::Value::as_str);
        let (Some(session), Some(message), Some(stage)) =
            (text("session"), text("message"), text("stage"))
        else {
            return Ok(InboundVerdict::Refused(
                "a receipt without its session, message and stage".into(),
            ));
        };
        let (Ok(sender), Ok(id)) = (SessionId::parse(session), MessageId::parse(message)) else {
            return Ok(InboundVerdict::Refused(
                "a receipt naming no valid session or message".into(),
            ));
        };
        match self.manifest(&sender) {
            Ok(manifest) if manifest.machine.is_none() => {}
            _ => {
                return Ok(InboundVerdict::Refused(format!(
                    "a receipt for {sender}, which is not a session of this machine"
                )));
            }
        }
        let step = serde_json::to_vec(receipt.get("step").unwrap_or(&serde_json::Value::Null))
            .expect("JSON values serialize");
        let name = format!("{id}.{stage}");
        Ok(
            match self.accept_carried_step(from_machine, &sender, &id, stage, &step) {
                Ok(true) => InboundVerdict::Delivered(name),
                Ok(false) => InboundVerdict::Duplicate(name),
                Err(why) => InboundVerdict::Refused(why),
            },
        )
    }

    /// `relay-presence`: the sessions of this machine, each manifest marked
    /// with this machine's name. A session whose agent process is known to
    /// run is published with a heartbeat of now: the process is the better
    /// word, and other machines cannot ask for it.
    pub(crate) fn relay_presence(&self, machine: &str) -> Result<Vec<PresenceEntry>> {
        let machine = validate_machine(machine)?;
        let mut entries = Vec::new();
        for id in self.session_ids()? {
            let Ok(mut manifest) = self.manifest(&id) else {
                continue;
            };
            if manifest.machine.is_some() {
                continue;
            }
            if self.agent_process_running(&id) == Some(true) {
                manifest.last_heartbeat = clock::now_stamp();
            }
            manifest.machine = Some(machine.to_string());
            entries.push(PresenceEntry {
                session_id: id.to_string(),
                payload: manifest.to_bytes(),
            });
        }
        Ok(entries)
    }

    /// `relay-materialize`: shows sessions of other machines here, and
    /// removes those that are gone.
    pub(crate) fn relay_materialize(
        &self,
        request: &MaterializeRequest,
        warnings: &mut Vec<String>,
    ) -> Result<MaterializeReport> {
        let machine = validate_machine(&request.machine)?;
        let mut report = MaterializeReport::default();
        let mut shown: Vec<(String, SessionId)> = Vec::new();
        let mut per_machine: std::collections::HashMap<&str, usize> = Default::default();
        let mut untrusted: Vec<&str> = Vec::new();
        for entry in &request.remote {
            let refuse = |why: String| {
                format!(
                    "refused presence {}.{}: {why}",
                    entry.machine.chars().take(40).collect::<String>(),
                    entry.session_id.chars().take(40).collect::<String>()
                )
            };
            let Ok(remote) = validate_machine(&entry.machine) else {
                report
                    .refused
                    .push(refuse("the key does not name a machine".into()));
                continue;
            };
            if remote == machine {
                continue;
            }
            let Ok(id) = SessionId::parse(&entry.session_id) else {
                report
                    .refused
                    .push(refuse("the key does not name a session ID".into()));
                continue;
            };
            match self.check_presence_signature(
                remote,
                &entry.session_id,
                &entry.signer,
                &entry.signature,
                &entry.payload,
            ) {
                Ok(()) => {}
                Err(crate::relay_keys::Unsigned::Missing(why)) => {
                    report.refused.push(refuse(why));
                    continue;
                }
                Err(crate::relay_keys::Unsigned::Forged(why)) => {
                    warnings.push(format!(
                        "SECURITY: refused a presence entry from the network that machine \
                         {remote:?} did not sign: {why}"
                    ));
                    report.refused.push(refuse(why));
                    continue;
                }
                // Said once per machine and pass, not per session.
                Err(crate::relay_keys::Unsigned::Untrusted(why)) => {
                    if !untrusted.contains(&remote) {
                        untrusted.push(remote);
                        report.refused.push(why);
                    }
                    continue;
                }
            }
            let count = per_machine.entry(remote).or_default();
            *count += 1;
            if *count > MAX_REMOTE_SESSIONS {
                report.refused.push(refuse(format!(
                    "machine {remote} shows more than {MAX_REMOTE_SESSIONS} sessions"
                )));
                continue;
            }
            match self.materialize_one(remote, &id, &entry.payload) {
                Ok(Some(true)) => report.added.push(id.to_string()),
                Ok(Some(false)) => report.updated += 1,
                Ok(None) => {}
                Err(why) => {
                    report.refused.push(refuse(why));
                    continue;
                }
            }
            shown.push((remote.to_string(), id));
        }
        for (remote, id) in &request.gone {
            if let Ok(id) = SessionId::parse(id)
                && self.remove_remote(&id, |m| m == remote, warnings)?
            {
                report.removed.push(id.to_string());
            }
        }
        if request.complete {
            for id in self.session_ids()? {
                if shown.iter().any(|(_, shown)| shown == &id) {
                    continue;
                }
                if self.remove_remote(&id, |m| m != machine, warnings)? {
                    report.removed.push(id.to_string());
                }
            }
        }
        Ok(report)
    }

    /// Writes one materialized session. Some(true) when it is new here,
    /// Some(false) when its manifest changed, None when nothing changed.
    fn materialize_one(
        &self,
        remote: &str,
        id: &SessionId,
        payload: &[u8],
    ) -> std::result::Result<Option<bool>, String> {
        if payload.len() as u64 > MAX_MANIFEST_FILE_BYTES {
            return Err(format!(
                "its manifest is {} bytes, over the {MAX_MANIFEST_FILE_BYTES}-byte limit",
                payload.len()
            ));
        }
        let mut manifest = Manifest::parse(payload, id)?;
        if clock::parse_stamp(&manifest.last_heartbeat).is_none()
            || clock::parse_stamp(&manifest.started_at).is_none()
        {
            return Err("its times are not UTC stamps".into());
        }
        if manifest.machine.as_deref() != Some(remote) {
            return Err(format!(
                "its manifest names machine {:?}, not the machine of its key",
                manifest.machine.as_deref().unwrap_or("")
            ));
        }
        crate::registry::validate_project_dir(&manifest.project_path)
            .map_err(|err| err.to_string())?;
        if manifest.project_path.len() > 4096 || manifest.project_path.chars().any(char::is_control)
        {
            return Err("its projectPath is over 4096 bytes or holds control characters".into());
        }
        manifest.project_name = crate::wire::project_name(&manifest.project_path);
        manifest.client = crate::registry::client_name(manifest.client.as_deref());
        manifest.capabilities.truncate(16);
        manifest.capabilities.retain(|c| {
            c.len() <= 32
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        let existing = match self.manifest(id) {
            Ok(existing) => Some(existing),
            Err(BridgeError::NoSuchSession(_)) => None,
            // A directory without a readable manifest: only a remote
            // session's directory is ever rewritten.
            Err(_) => return Err(format!("session {id} here is unreadable; it is left alone")),
        };
        let new = match &existing {
            None => true,
            Some(existing) if existing.machine.as_deref() == Some(remote) => false,
            Some(existing) => {
                return Err(match &existing.machine {
                    None => format!("session {id} is a session of this machine"),
                    Some(other) => format!("session {id} is already shown for machine {other}"),
                });
            }
        };
        if new {
            files::ensure_dir(&self.layout.sessions()).map_err(|e| e.to_string())?;
            for dir in [self.layout.session(id), self.layout.inbox(id)] {
                files::ensure_dir(&dir).map_err(|e| e.to_string())?;
            }
        } else if existing.as_ref() == Some(&manifest) {
            return Ok(None);
        }
        self.write_manifest(&manifest).map_err(|e| e.to_string())?;
        Ok(Some(new))
    }

    /// Removes `id` when it is a session of another machine for which
    /// `which` holds. Its pending messages' senders are told (receipts) and
    /// its messages archived, as for any session removed.
    fn remove_remote(
        &self,
        id: &SessionId,
        which: impl Fn(&str) -> bool,
        warnings: &mut Vec<String>,
    ) -> Result<bool> {
        let gone = |m: &Manifest| m.machine.as_deref().is_some_and(&which);
        let removed = self.remove_session_if(id, gone, warnings)?.is_some();
        if removed {
            self.caches.remote.borrow_mut().forget(id);
        }
        Ok(removed)
    }
}
