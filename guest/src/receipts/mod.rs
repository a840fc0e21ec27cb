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

use std::time::Duration;

use crate::Stage;
use crate::wire::Kind;

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
const RECORDED: [Stage; 7] = [
    Stage::Relayed,
    Stage::Taken,
    Stage::Seen,
    Stage::Answered,
    Stage::SetAside,
    Stage::RecipientGone,
    Stage::Held,
];

/// Only queries and responses have receipts; pings and session-ended
/// notices are bookkeeping.
fn receipted(kind: Kind) -> bool {
    matches!(kind, Kind::Query | Kind::Response)
}

mod carry;
mod liveness;
mod stages;
mod steps;
mod track;

#[cfg(test)]
mod tests;
