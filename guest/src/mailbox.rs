//! Delivering, scanning, claiming and committing messages.
//!
//! Pending messages are the `*.json` files directly in an inbox. A listener
//! takes one by renaming it into `claimed/` under a name that carries a
//! random token and the claim time: the rename succeeds for exactly one
//! listener. Once the host has printed the message, `commit` renames the
//! claim to a `.taken` name (the one rename that decides it was delivered),
//! writes the message into `read/` marked `"status": "read"`, and removes
//! the `.taken` file. A claim whose holder died is renamed back into the
//! inbox after the lease, so a killed listener loses nothing; a `.taken`
//! file whose committer died is finished by the next look. Taken messages
//! leave the scanned folder, so the cost of a scan depends on what is
//! pending, not on history.
//!
//! The original plugin leaves the messages it took in `inbox/`, rewritten
//! `"status": "read"`. The first look that meets such a file in a listing
//! too large to read whole moves every one of them into `read/` in one pass.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::{BridgeError, Result, display_path};
use crate::files::{self, ReadFailure};
use crate::ids::{MessageId, SessionId, random_token};
use crate::wire::{Kind, MAX_MESSAGE_FILE_BYTES, Message, Status};

/// A temporary file in an inbox older than this was left by a writer that
/// died mid-write; `listen` removes it.
pub(crate) const STALE_TEMP_AGE: Duration = Duration::from_secs(300);
use crate::{Bridge, ClaimTicket, Platform, clock};

/// The most pending names one look reads. Up to `OLDEST_FIRST_LIMIT` (see
/// verbs.rs), a look sees every pending message and hands out the oldest;
/// past that, the backlog is taken in arbitrary order, and reading all of a
/// large inbox to pick one would cost a host call per message.
pub(crate) const PENDING_WINDOW: usize = 128;

/// How long a claim may stay uncommitted before its message returns to the
/// inbox.
pub const CLAIM_LEASE: Duration = Duration::from_secs(10);

/// A pending message found in an inbox.
#[derive(Debug, Clone)]
pub struct Pending {
    pub message: Message,
    pub modified: Option<SystemTime>,
}

/// The most bytes of claimed messages an instance keeps for their commits.
const CLAIMED_BYTES_LIMIT: usize = 8 << 20;

/// The pending names one look found (see [`Bridge::pending_names`]).
pub(crate) struct Look {
    pub names: Vec<String>,
    /// When the next live claim lapses.
    pub next_expiry: Option<Duration>,
    /// The names are what this instance's last listing left untried.
    pub from_backlog: bool,
    /// The listing stopped at [`PENDING_WINDOW`] names: there may be more.
    pub truncated: bool,
}

/// What a look made of one pending file.
// Returned once per file and matched at once, never stored in bulk: boxing
// the pending message would only add an allocation per file.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Loaded {
    /// A pending message.
    Pending(Pending),
    /// Already taken: marked read by an original-protocol reader, and now
    /// moved into `read/`.
    TakenBefore,
    /// Gone (taken by another listener) or set aside as malformed.
    Gone,
}

/// Sorts pending messages oldest first: by their timestamp, then by when
/// their file was written, then by ID.
pub(crate) fn sort_oldest_first(all: &mut [Pending]) {
    all.sort_by(|a, b| {
        (&a.message.timestamp, a.modified, &a.message.id).cmp(&(
            &b.message.timestamp,
            b.modified,
            &b.message.id,
        ))
    });
}

/// A claim file name: `<message-id>.<token>.<epoch-ms>.claim`, or `.taken`
/// once its commit has begun.
struct ClaimName {
    message_id: MessageId,
    claimed_at_ms: u64,
    taken: bool,
}

const CLAIM_SUFFIX: &str = ".claim";
const TAKEN_SUFFIX: &str = ".taken";

impl ClaimName {
    fn new_name(message_id: &MessageId) -> String {
        format!(
            "{message_id}.{}.{}{CLAIM_SUFFIX}",
            random_token(8),
            clock::epoch_millis()
        )
    }

    /// The name a claim is renamed to when its commit begins.
    fn taken_name(claim_name: &str) -> Option<String> {
        let stem = claim_name.strip_suffix(CLAIM_SUFFIX)?;
        Some(format!("{stem}{TAKEN_SUFFIX}"))
    }

    /// The message ID part of a valid claim `name`.
    fn message_id_text(self, name: &str) -> &str {
        &name[..self.message_id.as_str().len()]
    }

    fn parse(name: &str) -> Option<ClaimName> {
        let (stem, taken) = match name.strip_suffix(CLAIM_SUFFIX) {
            Some(stem) => (stem, false),
            None => (name.strip_suffix(TAKEN_SUFFIX)?, true),
        };
        let mut parts = stem.split('.');
        let message_id = MessageId::parse(parts.next()?).ok()?;
        let token = parts.next()?;
        let claimed_at_ms = parts.next()?.parse().ok()?;
        let token_ok = token.len() == 8 && token.bytes().all(|b| b.is_ascii_alphanumeric());
        (token_ok && parts.next().is_none()).then_some(ClaimName {
            message_id,
            claimed_at_ms,
            taken,
        })
    }
}

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
        Ok(())
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
        Ok(Some(written))
    }

    /// The names of the pending message files in `owner`'s inbox, after
    /// returning lapsed claims to it, at most [`PENDING_WINDOW`] of them.
    /// Also says when the next live claim lapses, so a waiter can wake for
    /// it.
    ///
    /// Under a backlog, the names left from this instance's last listing
    /// are returned instead of a new listing (`from_backlog`): listing
    /// costs a host call per entry.
    pub(crate) fn pending_names(&self, owner: &SessionId) -> Result<Look> {
        let next_expiry = self.recover_expired_claims(owner)?;
        let inbox = self.layout.inbox(owner);
        let kept = self.caches.backlog.borrow_mut().remove(&inbox);
        if let Some(names) = kept.filter(|names| !names.is_empty()) {
            return Ok(Look {
                names,
                next_expiry,
                from_backlog: true,
                truncated: false,
            });
        }
        let names = files::list_some(&inbox, ".json", PENDING_WINDOW, Some(STALE_TEMP_AGE))?;
        Ok(Look {
            truncated: names.len() >= PENDING_WINDOW,
            names,
            next_expiry,
            from_backlog: false,
        })
    }

    /// Every `*.json` name in `owner`'s inbox, for a look that must see all
    /// of it.
    pub(crate) fn all_pending_names(&self, owner: &SessionId) -> Result<Vec<String>> {
        let mut names = files::list(&self.layout.inbox(owner))?;
        names.retain(|name| name.ends_with(".json"));
        Ok(names)
    }

    /// The one pass over an inbox that holds messages the original plugin
    /// marked read in place: every such file moves into `read/`, so later
    /// looks list only what is pending. Malformed files met on the way are
    /// set aside as any look would. Returns how many files it moved.
    pub(crate) fn archive_taken_before(
        &self,
        owner: &SessionId,
        warnings: &mut Vec<String>,
    ) -> Result<usize> {
        let mut moved = 0;
        for name in self.all_pending_names(owner)? {
            if let Loaded::TakenBefore = self.load_pending(owner, &name, warnings)? {
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Remembers names of `owner`'s inbox not yet tried (see
    /// [`Self::pending_names`]).
    pub(crate) fn keep_backlog(&self, owner: &SessionId, names: Vec<String>) {
        let inbox = self.layout.inbox(owner);
        let mut kept = self.caches.backlog.borrow_mut();
        kept.clear();
        kept.insert(inbox, names);
    }

    /// As [`Self::load_pending`], remembering what it read for the rest of
    /// this guest instance's life. A listener that loops (or a reused
    /// instance) then reads each pending file once, not on every look: the
    /// look only needs who sent it, its type, what it answers and its time,
    /// and `claim` reads the file again anyway. Message files never change
    /// under one name, so nothing remembered goes stale; names no longer
    /// listed are forgotten by [`Self::forget_unlisted`].
    pub(crate) fn load_pending_cached(
        &self,
        owner: &SessionId,
        name: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Loaded> {
        let key = self.layout.inbox(owner).join(name);
        let seen = self.caches.scanned.borrow().get(&key).cloned();
        if let Some(seen) = seen {
            return Ok(Loaded::Pending(seen));
        }
        let loaded = self.load_pending(owner, name, warnings)?;
        if let Loaded::Pending(pending) = &loaded {
            let mut summary = pending.clone();
            summary.message.content = String::new();
            self.caches.scanned.borrow_mut().insert(key, summary);
        }
        Ok(loaded)
    }

    /// How many pending files this bridge remembers (for tests).
    #[cfg(test)]
    pub(crate) fn remembered_count(&self) -> usize {
        self.caches.scanned.borrow().len()
    }

    /// Forgets every remembered file but those of `owner`'s inbox listed
    /// in `names`, so what is remembered never outgrows one listing.
    pub(crate) fn forget_unlisted(&self, owner: &SessionId, names: &[String]) {
        let inbox = self.layout.inbox(owner);
        let listed: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        self.caches.scanned.borrow_mut().retain(|path, _| {
            path.parent() == Some(inbox.as_path())
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| listed.contains(n))
        });
    }

    /// Reads one pending message. Malformed files are set aside into
    /// `rejected/` with a warning; files already marked read move into
    /// `read/`.
    pub(crate) fn load_pending(
        &self,
        owner: &SessionId,
        name: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Loaded> {
        let Some(stem) = name.strip_suffix(".json") else {
            return Ok(Loaded::Gone);
        };
        let path = self.layout.inbox(owner).join(name);
        match files::read_bounded_with_stat(&path, MAX_MESSAGE_FILE_BYTES) {
            Ok((bytes, stat)) => match Message::parse(&bytes, stem, Some(owner)) {
                Ok(message) if message.status == Status::Pending => {
                    return Ok(Loaded::Pending(Pending {
                        message,
                        modified: stat.modified,
                    }));
                }
                // Marked read by an original-protocol reader: already taken.
                Ok(_) => {
                    self.archive_taken(owner, name);
                    return Ok(Loaded::TakenBefore);
                }
                Err(reason) => self.set_aside(owner, name, &reason, warnings),
            },
            Err(ReadFailure::Missing) => {}
            Err(ReadFailure::Io(err)) => return Err(BridgeError::io("cannot read", &path, &err)),
            Err(failure) => {
                let reason = failure.describe(MAX_MESSAGE_FILE_BYTES);
                self.set_aside(owner, name, &reason, warnings);
            }
        }
        Ok(Loaded::Gone)
    }

    /// Appends the policy's notes on `message` to the sender's audit log.
    fn audit(&self, message: &Message, notes: &[String], warnings: &mut Vec<String>) {
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

    /// Moves a file the original marked read into `read/`, which a session
    /// the original registered does not have yet.
    fn archive_taken(&self, owner: &SessionId, name: &str) {
        let read = self.layout.read(owner);
        if files::ensure_child_dir(&read).is_ok() {
            let _ = fs::rename(self.layout.inbox(owner).join(name), read.join(name));
        }
    }

    /// Moves a bad inbox entry into `rejected/`, next to a note saying why.
    fn set_aside(&self, owner: &SessionId, name: &str, reason: &str, warnings: &mut Vec<String>) {
        self.set_aside_from(&self.layout.inbox(owner), name, owner, reason, warnings);
    }

    fn set_aside_from(
        &self,
        dir: &Path,
        name: &str,
        owner: &SessionId,
        reason: &str,
        warnings: &mut Vec<String>,
    ) {
        let rejected = self.layout.rejected(owner);
        let from = dir.join(name);
        self.receipt_set_aside(owner, &from, reason);
        // Unique, and short enough that the `.reason` beside it still fits
        // the 255-byte name limit however long the original name was.
        let mut short = name.len().min(160);
        while !name.is_char_boundary(short) {
            short -= 1;
        }
        let kept = format!(
            "{}-{}-{}",
            clock::epoch_millis(),
            random_token(6),
            &name[..short]
        );
        let moved = files::ensure_child_dir(&rejected)
            .and_then(|()| {
                fs::rename(&from, rejected.join(&kept))
                    .map_err(|err| BridgeError::io("cannot set aside", &from, &err))
            })
            .and_then(|()| files::replace(&rejected, &format!("{kept}.reason"), reason.as_bytes()));
        let shown = display_path(&from);
        match moved {
            Ok(()) => warnings.push(format!(
                "set aside {shown}: {reason}; it is kept as {}",
                display_path(&rejected.join(kept))
            )),
            Err(err) => warnings.push(format!(
                "skipped {shown}: {reason}; it could not be set aside ({err})"
            )),
        }
    }

    /// Claims `pending` for this process. None when another listener took
    /// it first. The claimed file is read again, so what is returned is
    /// exactly what was claimed.
    pub(crate) fn claim(
        &self,
        owner: &SessionId,
        pending: &Pending,
        warnings: &mut Vec<String>,
    ) -> Result<Option<(Message, ClaimTicket)>> {
        let id = MessageId::parse(&pending.message.id)?;
        let claimed_dir = self.layout.claimed(owner);
        files::ensure_child_dir(&claimed_dir)?;
        let claim_name = ClaimName::new_name(&id);
        let source = self.layout.inbox(owner).join(id.file_name());
        let claimed = claimed_dir.join(&claim_name);
        match fs::rename(&source, &claimed) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(BridgeError::io("cannot claim", &source, &err)),
        }
        // The file was checked when scanned, but it may have been replaced
        // since; what is handed out is what was claimed, checked again.
        let parsed = files::read_bounded(&claimed, MAX_MESSAGE_FILE_BYTES)
            .map_err(|failure| failure.describe(MAX_MESSAGE_FILE_BYTES))
            .and_then(|bytes| {
                Message::parse_noting(&bytes, id.as_str(), Some(owner)).map(|p| (p, bytes))
            });
        let (mut message, bytes) = match parsed {
            Ok(((message, dropped), bytes)) => {
                if let Some(reference) = dropped {
                    warnings.push(format!(
                        "message {id} from {} names {reference:?} as the message it answers, \
                         which is not a message ID; it is shown without that reference",
                        message.from
                    ));
                }
                (message, bytes)
            }
            Err(reason) => {
                self.set_aside_from(&claimed_dir, &claim_name, owner, &reason, warnings);
                return Ok(None);
            }
        };
        self.keep_claimed_bytes(&claim_name, bytes);
        message.status = Status::Read;
        let ticket = ClaimTicket {
            session_id: owner.to_string(),
            message_id: id.to_string(),
            claim_name,
        };
        Ok(Some((message, ticket)))
    }

    /// Keeps the bytes of a claim this bridge handed out, for its commit
    /// (see [`Caches::claimed_bytes`](crate::memo::Caches)). A claim whose
    /// lease lapsed is forgotten: it was committed elsewhere (an MCP commit
    /// that ran on another pooled instance) or never, and a late commit
    /// reads the file, which holds the same bytes. Everything is forgotten
    /// once the bound is reached.
    fn keep_claimed_bytes(&self, claim_name: &str, bytes: Vec<u8>) {
        let mut kept = self.caches.claimed_bytes.borrow_mut();
        let now = clock::epoch_millis();
        let lease = CLAIM_LEASE.as_millis() as u64;
        kept.retain(|name, _| {
            ClaimName::parse(name).is_some_and(|c| now.saturating_sub(c.claimed_at_ms) < lease)
        });
        let held: usize = kept.values().map(Vec::len).sum();
        if held + bytes.len() > CLAIMED_BYTES_LIMIT {
            kept.clear();
        }
        if bytes.len() <= CLAIMED_BYTES_LIMIT {
            kept.insert(claim_name.to_string(), bytes);
        }
    }

    /// Completes a delivery: the claim is renamed to its `.taken` name,
    /// which decides that the message was delivered, then the message is
    /// kept in `read/` marked read (see [`Self::keep_as_read`]).
    ///
    /// # Errors
    /// `Io` when the claim lapsed (its message went back to the inbox and
    /// will be delivered again) or a move fails; after the decision, a
    /// failure to write the read copy leaves the `.taken` file for the next
    /// look to finish, and the message is not delivered again.
    pub(crate) fn commit(&self, ticket: &ClaimTicket) -> Result<()> {
        let owner = SessionId::parse(&ticket.session_id)?;
        let id = MessageId::parse(&ticket.message_id)?;
        // A receipt step the relay carried to its session's machine.
        let carried = ticket
            .claim_name
            .strip_prefix(id.as_str())
            .is_some_and(|stage| {
                matches!(stage, ".taken" | ".seen" | ".set-aside" | ".recipient-gone")
            });
        // Read once: every path below depends on it.
        let remote = self.remote_machine(&owner);
        if carried && remote.is_some() {
            return self.carried_step(&owner, &ticket.claim_name);
        }
        let valid =
            ClaimName::parse(&ticket.claim_name).is_some_and(|c| c.message_id == id && !c.taken);
        if !valid {
            return Err(BridgeError::InvalidArgument(format!(
                "{:?} is not a claim on {id}",
                ticket.claim_name
            )));
        }
        let claimed = self.layout.claimed(&owner).join(&ticket.claim_name);
        let lapsed = || BridgeError::Io {
            path: display_path(&claimed),
            reason: format!(
                "the claim lapsed after {}s and {id} went back to the inbox; \
                 it will be delivered again",
                CLAIM_LEASE.as_secs()
            ),
        };
        if let Some(machine) = &remote {
            return self.commit_relayed(&owner, &id, &ticket.claim_name, machine, lapsed);
        }
        // Nothing is created for a claim that does not exist (a forged
        // ticket, or a session stopped since).
        if files::stat(&claimed).is_err() {
            return Err(lapsed());
        }
        files::ensure_child_dir(&self.layout.read(&owner))?;
        let claimed_dir = self.layout.claimed(&owner);
        let taken_name = ClaimName::taken_name(&ticket.claim_name).ok_or_else(lapsed)?;
        let taken = claimed_dir.join(&taken_name);
        // The one rename that decides: it succeeds only while the claim is
        // this listener's. A recovery after the lease renames the same name
        // back into the inbox, and exactly one of the two wins.
        fs::rename(&claimed, &taken).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => lapsed(),
            _ => BridgeError::io("cannot commit", &claimed, &err),
        })?;
        let shown = self
            .caches
            .claimed_bytes
            .borrow_mut()
            .remove(&ticket.claim_name);
        self.keep_as_read(
            &owner,
            None,
            &id,
            &taken_name,
            shown,
            Some(self.caller.get()),
        )
    }

    /// Commits a claim on a message for `owner`, a session of `machine`,
    /// that the relay server has acknowledged. Removing the claim is the one
    /// step that decides: a recovery after the lease renames the same name
    /// back into the inbox, and exactly one of the two wins. Nothing is kept
    /// as read here; the sender's receipt says the message was relayed.
    /// `lapsed` is the error for a claim that is no longer this one's.
    fn commit_relayed(
        &self,
        owner: &SessionId,
        id: &MessageId,
        claim_name: &str,
        machine: &str,
        lapsed: impl Fn() -> BridgeError,
    ) -> Result<()> {
        let claimed = &self.layout.claimed(owner).join(claim_name);
        let kept = self.caches.claimed_bytes.borrow_mut().remove(claim_name);
        let shown = match kept {
            Some(bytes) => bytes,
            None => files::read_bounded(claimed, MAX_MESSAGE_FILE_BYTES).map_err(|_| lapsed())?,
        };
        fs::remove_file(claimed).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => lapsed(),
            _ => BridgeError::io("cannot commit", claimed, &err),
        })?;
        if let Ok(message) = Message::parse(&shown, id.as_str(), Some(owner)) {
            self.receipt_relayed(&message, machine);
        }
        Ok(())
    }

    /// Finishes a commit whose `.taken` file is `taken_name` in `owner`'s
    /// `claimed/`: keeps it as `read/<id>.json`, as the message arrived but
    /// marked `"status": "read"` (so a recursive count of pending files, as
    /// the original's instructions make, is right). Where the file says
    /// `"status": "pending"` in plain bytes, those bytes are overwritten in
    /// place and the file is moved into `read/`: no file is created or
    /// removed, which on a busy disk is most of a commit's cost. Otherwise
    /// a marked copy is written and the `.taken` file removed. Safe to
    /// repeat: a second run finds the file marked, or gone. `remote` is
    /// the machine `owner` runs on,
    /// when it is a session of another machine.
    fn keep_as_read(
        &self,
        owner: &SessionId,
        remote: Option<&str>,
        id: &MessageId,
        taken_name: &str,
        shown: Option<Vec<u8>>,
        caller: Option<crate::Caller>,
    ) -> Result<()> {
        let claimed_dir = self.layout.claimed(owner);
        let taken = claimed_dir.join(taken_name);
        let bytes = match shown {
            Some(bytes) => bytes,
            None => match files::read_bounded(&taken, MAX_MESSAGE_FILE_BYTES) {
                Ok(bytes) => bytes,
                // Finished meanwhile by another look.
                Err(ReadFailure::Missing) => return Ok(()),
                Err(failure) => {
                    return Err(BridgeError::Io {
                        path: display_path(&taken),
                        reason: failure.describe(MAX_MESSAGE_FILE_BYTES),
                    });
                }
            },
        };
        let message = Message::parse(&bytes, id.as_str(), Some(owner)).ok();
        // A message for a session of another machine was carried there by
        // the relay: its receipt says so, and nothing is kept as read here.
        if let Some(machine) = remote {
            files::remove_if_present(&taken)?;
            if let Some(message) = &message {
                self.receipt_relayed(message, machine);
            }
            return Ok(());
        }
        // Most files say `"status": "pending"` in plain bytes: marked read
        // where they are and moved into `read/`, no new file is written.
        let in_place = crate::wire::pending_status_at(&bytes).is_some_and(|at| {
            files::patch_in_place(
                &taken,
                at as u64,
                crate::wire::PENDING_VALUE,
                crate::wire::READ_IN_PLACE,
            )
            .unwrap_or(false)
        });
        if in_place {
            match fs::rename(&taken, self.layout.read(owner).join(id.file_name())) {
                Ok(()) => {}
                // Finished meanwhile by another look.
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(err) => return Err(BridgeError::io("cannot keep as read", &taken, &err)),
            }
        } else {
            let read_copy = crate::wire::marked_read(&bytes)
                .or_else(|| {
                    let mut message = message.clone()?;
                    message.status = Status::Read;
                    Some(message.to_bytes())
                })
                .unwrap_or(bytes);
            // The temporary file sits in `claimed/`, where looks clear away
            // what a killed writer leaves.
            files::replace_via(
                &claimed_dir,
                &self.layout.read(owner),
                &id.file_name(),
                &read_copy,
            )?;
            files::remove_if_present(&taken)?;
        }
        if let Some(message) = &message {
            self.receipt_taken(message, owner, caller);
            self.archive_received(message, owner);
        }
        Ok(())
    }

    /// Returns lapsed claims to the inbox. Each claim name is unique, so of
    /// several listeners recovering at once exactly one rename succeeds.
    /// Returns the time until the next live claim lapses.
    ///
    /// A `.taken` file past the lease belongs to a commit whose process
    /// died after deciding: it is finished here, never returned.
    fn recover_expired_claims(&self, owner: &SessionId) -> Result<Option<Duration>> {
        let claimed_dir = self.layout.claimed(owner);
        let now = clock::epoch_millis();
        let lease = CLAIM_LEASE.as_millis() as u64;
        let mut next: Option<Duration> = None;
        for name in files::list_clearing(&claimed_dir, STALE_TEMP_AGE)? {
            let Some(claim) = ClaimName::parse(&name) else {
                continue;
            };
            let age = now.saturating_sub(claim.claimed_at_ms);
            if claim.taken {
                if age >= lease {
                    let id = claim.message_id.clone();
                    // A failure is retried by the next look.
                    let remote = self.remote_machine(owner);
                    let _ = self.keep_as_read(owner, remote.as_deref(), &id, &name, None, None);
                }
                continue;
            }
            if age < lease {
                let left = Duration::from_millis(lease - age);
                next = Some(next.map_or(left, |n| n.min(left)));
                continue;
            }
            let back = self.layout.inbox(owner).join(claim.message_id.file_name());
            // A lost race (NotFound) means another listener recovered it.
            let _ = fs::rename(claimed_dir.join(&name), back);
        }
        Ok(next)
    }

    /// Replies that an `ask` or `receive` of `owner` is waiting for, with
    /// the deadline of each wait (milliseconds since the epoch).
    pub(crate) fn awaited_replies(&self, owner: &SessionId) -> Result<HashMap<String, u64>> {
        let dir = self.layout.waiting(owner);
        let mut awaited = HashMap::new();
        for name in files::list(&dir)? {
            if MessageId::parse(&name).is_err() {
                continue;
            }
            let deadline = files::read_bounded(&dir.join(&name), 32)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(0);
            awaited.insert(name, deadline);
        }
        Ok(awaited)
    }

    /// Announces that this session waits for replies to `query` until
    /// `deadline_ms`, so that `listen` leaves them to the waiter.
    pub(crate) fn await_reply(
        &self,
        owner: &SessionId,
        query: &MessageId,
        deadline_ms: u64,
    ) -> Result<()> {
        let dir = self.layout.waiting(owner);
        files::ensure_child_dir(&dir)?;
        files::replace(&dir, query.as_str(), deadline_ms.to_string().as_bytes())
    }

    pub(crate) fn stop_awaiting(&self, owner: &SessionId, query: &MessageId) {
        let _ = files::remove_if_present(&self.layout.waiting_marker(owner, query));
    }

    /// Every message of `owner`'s inbox, pending, claimed or read, for the
    /// rare verbs that need history (`status`, `stop`, `reply`). Unreadable
    /// files are skipped.
    pub(crate) fn inbox_history(&self, owner: &SessionId) -> Result<Vec<Message>> {
        let mut all = Vec::new();
        for dir in [
            self.layout.inbox(owner),
            self.layout.claimed(owner),
            self.layout.read(owner),
        ] {
            all.extend(read_messages(&dir, Some(owner))?);
        }
        Ok(all)
    }

    /// Every message in `owner`'s outbox.
    /// Every message in `owner`'s outbox that `owner` sent; a planted copy
    /// claiming another sender is ignored.
    pub(crate) fn outbox_history(&self, owner: &SessionId) -> Result<Vec<Message>> {
        let mut sent = read_messages(&self.layout.outbox(owner), None)?;
        sent.retain(|m| m.from == owner.as_str());
        Ok(sent)
    }

    /// A message `owner` received, wherever it now is in the inbox.
    pub(crate) fn received(&self, owner: &SessionId, id: &MessageId) -> Result<Option<Message>> {
        let by_name = [
            self.layout.read(owner).join(id.file_name()),
            self.layout.inbox(owner).join(id.file_name()),
        ];
        if let Some(found) = by_name
            .iter()
            .find_map(|path| read_message(path, id.as_str(), Some(owner)))
        {
            return Ok(Some(found));
        }
        let claimed = self.layout.claimed(owner);
        Ok(files::list(&claimed)?
            .iter()
            .filter(|name| ClaimName::parse(name).is_some_and(|c| &c.message_id == id))
            .find_map(|name| read_message(&claimed.join(name), id.as_str(), Some(owner))))
    }

    /// True when `owner` sent `id` (its outbox holds a copy).
    pub(crate) fn sent_by(&self, owner: &SessionId, id: &MessageId) -> bool {
        files::stat(&self.layout.outbox(owner).join(id.file_name()))
            .is_ok_and(|m| m.kind == files::Kind::File)
    }
}

/// A valid message file, or None.
fn read_message(path: &Path, stem: &str, owner: Option<&SessionId>) -> Option<Message> {
    let bytes = files::read_bounded(path, MAX_MESSAGE_FILE_BYTES).ok()?;
    Message::parse(&bytes, stem, owner).ok()
}

/// Every valid message in `dir`, including claims; unreadable files are
/// skipped.
fn read_messages(dir: &Path, owner: Option<&SessionId>) -> Result<Vec<Message>> {
    Ok(files::list(dir)?
        .iter()
        .filter_map(|name| {
            let stem = match name.strip_suffix(".json") {
                Some(stem) => stem,
                None => ClaimName::parse(name)?.message_id_text(name),
            };
            read_message(&dir.join(name), stem, owner)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names_carry_id_and_time() {
        let id = MessageId::parse("msg-0dzhx0wgcik9").unwrap();
        let name = ClaimName::new_name(&id);
        let parsed = ClaimName::parse(&name).unwrap();
        assert_eq!(parsed.message_id, id);
        assert!(clock::epoch_millis() >= parsed.claimed_at_ms);
        assert!(!parsed.taken);
        let taken = ClaimName::taken_name(&name).unwrap();
        let parsed = ClaimName::parse(&taken).unwrap();
        assert_eq!(parsed.message_id, id);
        assert!(parsed.taken);
        assert_eq!(ClaimName::taken_name(&taken), None);
        for bad in [
            "msg-0dzhx0wgcik9.claim",
            "msg-0dzhx0wgcik9.abcdefgh.1.done",
            "msg-0dzhx0wgcik9.abc.1.claim",
            "../x.abcdefgh.1.claim",
            "msg-0dzhx0wgcik9.abcdefgh.1.2.claim",
            "msg-0dzhx0wgcik9.abcdefgh.x.claim",
        ] {
            assert!(ClaimName::parse(bad).is_none(), "{bad}");
        }
    }
}
