//! The archive: every message a project exchanged, kept past `stop`, and
//! what `history`, `thread` and `cleanup` read and do.
//!
//! # Where and in what form
//!
//! Each project has one archive, `archive/<key>/` (see [`Layout::archive_key`]
//! for the key and why the archive is keyed by project). Its `log.jsonl`
//! holds one line per message: the message's wire JSON, compact, plus
//!
//! - `"direction"`: `"out"` when a session of the project sent it, `"in"`
//!   when one took it;
//! - `"session"`: that session;
//! - `"neverTaken": true` on a message that was still pending when its
//!   recipient's session was removed;
//! - `"large"`: on a record too large for one atomic append, the name of
//!   the file under `large/` that holds it whole (the line itself then has
//!   empty content).
//!
//! Every line starts with `{"id":"msg-`: ids are read without parsing, and
//! since a quote inside a JSON string is always escaped, those bytes mark
//! the start of a record and nothing else. A line torn by a full disk, to
//! which the next append was glued, is split there again.
//!
//! # Appends from several processes
//!
//! A listener, an `ask` of the same session and the sessions of one project
//! append to the same log at once. Each line is written by one `write`
//! on a file opened for appending. Natively that is one `write(2)` with
//! `O_APPEND`; inside the sandbox it is one `blocking-write-and-flush` on
//! the stream of `append-via-stream`, which wasmtime-wasi 48 runs on the
//! calling thread as one `pwritev2(RWF_APPEND)` (Linux) or one `write` on a
//! descriptor switched to append mode (elsewhere): the kernel places and
//! writes it whole, on the local file systems the bridge directory lives
//! on. That call takes at most 4096 bytes, so a record over [`INLINE_MAX`]
//! bytes goes to a file of its own, created atomically, with a short line
//! in the log pointing at it. (A plain stream `write` takes 64 KiB but is
//! run on a thread started for it, which cost a `send` a tenth of its time.)
//!
//! # Reading it
//!
//! `history` reads the log backwards in chunks and stops once it has as
//! many messages as asked for. With `--peer` or `--grep` it first looks for
//! the needle in the raw line, escaped as the log escapes it, and parses
//! only the lines that contain it. A line that does not parse is skipped
//! with a warning; `cleanup` copies it to `rejected.jsonl` and blanks it in
//! place (appends are never disturbed: the log is never rewritten).

use std::time::Duration;

/// How long taken messages stay in a live mailbox (`inbox/read/`) before
/// cleanup moves them into the archive, unless `--retention` or
/// `BRIDGE_RETENTION` says otherwise: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Set-aside files (`inbox/rejected/`) older than this are removed: 30 days.
pub const REJECTED_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How many messages `history` lists without `--limit`.
pub const DEFAULT_HISTORY_LIMIT: u32 = 20;
/// The most messages one `history` lists.
pub const MAX_HISTORY_LIMIT: u32 = 1000;
/// The longest line appended to the log; larger records get a file of
/// their own. It is what one `blocking-write-and-flush` takes (4096 bytes):
/// wasmtime-wasi runs that call on the calling thread, in one append,
/// where a plain `write` is handed to a thread of its own, which cost a
/// `send` about a tenth of its time.
pub const INLINE_MAX: usize = 4096;

/// How much of the log one backward read takes.
const CHUNK: u64 = 256 * 1024;
/// The bytes every record starts with.
const MARKER: &[u8] = b"{\"id\":\"msg-";
/// The length of a message ID (`msg-` and 12 characters).
const ID_LEN: usize = 16;
/// The key of a large record's file, as it appears raw in its stub line.
const LARGE_KEY: &[u8] = b",\"large\":\"";
/// The key of a reference to an earlier message, as it appears raw.
const REPLY_KEY: &[u8] = b",\"inReplyTo\":\"";
/// How many keys are tried for one project before giving up.
const MAX_KEY_PROBES: usize = 8;
/// The most unreadable-line warnings one verb gives; the rest are counted.
const MAX_LINE_WARNINGS: usize = 3;

mod append;
mod cleanup;
mod history;
mod keys;
mod record;
mod scan;
mod thread;

#[cfg(target_os = "wasi")]
pub(crate) use append::OpenLogs;

#[cfg(test)]
mod tests;
