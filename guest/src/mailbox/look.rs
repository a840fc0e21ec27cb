//! Looking into an inbox: the pending names, reading (and remembering)
//! pending files, and setting aside the malformed ones.
use std::fs;
use std::path::Path;

use super::{Loaded, Look, PENDING_WINDOW, Pending, STALE_TEMP_AGE};
use crate::error::{BridgeError, Result, display_path};
use crate::files::{self, ReadFailure};
use crate::ids::{SessionId, random_token};
use crate::wire::{MAX_MESSAGE_FILE_BYTES, Message, Status};
use crate::{Bridge, Platform, clock};

impl<P: Platform> Bridge<P> {
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

    /// Moves a file the original marked read into `read/`, which a session
    /// the original registered does not have yet.
    pub(super) fn archive_taken(&self, owner: &SessionId, name: &str) {
        let read = self.layout.read(owner);
        if files::ensure_child_dir(&read).is_ok() {
            let _ = fs::rename(self.layout.inbox(owner).join(name), read.join(name));
        }
    }

    /// Moves a bad inbox entry into `rejected/`, next to a note saying why.
    pub(super) fn set_aside(
        &self,
        owner: &SessionId,
        name: &str,
        reason: &str,
        warnings: &mut Vec<String>,
    ) {
        self.set_aside_from(&self.layout.inbox(owner), name, owner, reason, warnings);
    }

    pub(super) fn set_aside_from(
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
}
