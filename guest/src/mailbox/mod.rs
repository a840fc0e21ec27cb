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

use std::time::{Duration, SystemTime};

use crate::wire::Message;

/// A temporary file in an inbox older than this was left by a writer that
/// died mid-write; `listen` removes it.
pub(crate) const STALE_TEMP_AGE: Duration = Duration::from_secs(300);

/// The most pending names one look reads. Up to `OLDEST_FIRST_LIMIT` (see
/// verbs/mod.rs), a look sees every pending message and hands out the oldest;
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

mod claim;
mod deliver;
mod look;
mod replies;
