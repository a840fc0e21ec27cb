//! Claiming a pending message, committing the claim once the host printed
//! it, and returning lapsed claims to the inbox (see the module
//! documentation of `mailbox`).
use std::fs;
use std::io;
use std::time::Duration;

use super::{CLAIM_LEASE, Pending, STALE_TEMP_AGE};
use crate::error::{BridgeError, Result, display_path};
use crate::files::{self, ReadFailure};
use crate::ids::{MessageId, SessionId, random_token};
use crate::wire::{MAX_MESSAGE_FILE_BYTES, Message, Status};
use crate::{Bridge, ClaimTicket, Platform, clock};

/// The most bytes of claimed messages an instance keeps for their commits.
pub(super) const CLAIMED_BYTES_LIMIT: usize = 8 << 20;

/// A claim file name: `<message-id>.<token>.<epoch-ms>.claim`, or `.taken`
/// once its commit has begun.
pub(super) struct ClaimName {
    pub(super) message_id: MessageId,
    pub(super) claimed_at_ms: u64,
    pub(super) taken: bool,
}

pub(super) const CLAIM_SUFFIX: &str = ".claim";

pub(super) const TAKEN_SUFFIX: &str = ".taken";

impl ClaimName {
    pub(super) fn new_name(message_id: &MessageId) -> String {
        format!(
            "{message_id}.{}.{}{CLAIM_SUFFIX}",
            random_token(8),
            clock::epoch_millis()
        )
    }

    /// The name a claim is renamed to when its commit begins.
    pub(super) fn taken_name(claim_name: &str) -> Option<String> {
        let stem = claim_name.strip_suffix(CLAIM_SUFFIX)?;
        Some(format!("{stem}{TAKEN_SUFFIX}"))
    }

    /// The message ID part of a valid claim `name`.
    pub(super) fn message_id_text(self, name: &str) -> &str {
        &name[..self.message_id.as_str().len()]
    }

    pub(super) fn parse(name: &str) -> Option<ClaimName> {
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

    /// Renews the claim `ticket` holds, for a holder that needs it longer
    /// than the lease (an away session's fork): the claim is renamed to
    /// the same name with the time now, which succeeds only while the
    /// claim is still the holder's. Returns the renewed ticket.
    ///
    /// # Errors
    /// `Io` when the claim lapsed (and went back to the inbox).
    pub(crate) fn renew_claim(&self, ticket: &ClaimTicket) -> Result<ClaimTicket> {
        let owner = SessionId::parse(&ticket.session_id)?;
        let id = MessageId::parse(&ticket.message_id)?;
        let dir = self.layout.claimed(&owner);
        let current = dir.join(&ticket.claim_name);
        let lapsed = || BridgeError::Io {
            path: display_path(&current),
            reason: format!("the claim on {id} lapsed and the message went back to the inbox"),
        };
        let parsed = ClaimName::parse(&ticket.claim_name)
            .filter(|c| c.message_id == id && !c.taken)
            .ok_or_else(lapsed)?;
        let token = ticket.claim_name[id.as_str().len() + 1..]
            .split('.')
            .next()
            .unwrap_or_default();
        let renewed = format!(
            "{id}.{token}.{}{CLAIM_SUFFIX}",
            clock::epoch_millis().max(parsed.claimed_at_ms + 1)
        );
        fs::rename(&current, dir.join(&renewed)).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => lapsed(),
            _ => BridgeError::io("cannot renew the claim", &current, &err),
        })?;
        Ok(ClaimTicket {
            claim_name: renewed,
            ..ticket.clone()
        })
    }

    /// Gives the claimed message back to the inbox at once, as a lapsed
    /// lease would. A claim that already lapsed is left as it is.
    pub(crate) fn release_claim(&self, ticket: &ClaimTicket) -> Result<()> {
        let owner = SessionId::parse(&ticket.session_id)?;
        let id = MessageId::parse(&ticket.message_id)?;
        if !ClaimName::parse(&ticket.claim_name).is_some_and(|c| c.message_id == id && !c.taken) {
            return Err(BridgeError::InvalidArgument(format!(
                "{:?} is not a claim on {id}",
                ticket.claim_name
            )));
        }
        let claimed = self.layout.claimed(&owner).join(&ticket.claim_name);
        match fs::rename(&claimed, self.layout.inbox(&owner).join(id.file_name())) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(BridgeError::io(
                "cannot give the claim back",
                &claimed,
                &err,
            )),
        }
    }

    /// Keeps the bytes of a claim this bridge handed out, for its commit
    /// (see [`Caches::claimed_bytes`](crate::memo::Caches)). A claim whose
    /// lease lapsed is forgotten: it was committed elsewhere (an MCP commit
    /// that ran on another pooled instance) or never, and a late commit
    /// reads the file, which holds the same bytes. Everything is forgotten
    /// once the bound is reached.
    pub(super) fn keep_claimed_bytes(&self, claim_name: &str, bytes: Vec<u8>) {
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
                matches!(
                    stage,
                    ".taken" | ".seen" | ".set-aside" | ".recipient-gone" | ".held"
                )
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
    pub(super) fn commit_relayed(
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
    pub(super) fn keep_as_read(
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
    pub(super) fn recover_expired_claims(&self, owner: &SessionId) -> Result<Option<Duration>> {
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
