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

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{BridgeError, Result, display_path};
use crate::files;
use crate::ids::{MessageId, SessionId, random_token};
use crate::layout::normalized_project;
use crate::registry::{PRUNE_AFTER_SECS, read_moved_manifest, remove_tree, validate_project_dir};
use crate::render::one_line;
use crate::wire::{Kind, MAX_MESSAGE_FILE_BYTES, Manifest, Message, STALE_AFTER_SECS, Status};
use crate::{Bridge, CleanupReport, Context, HistoryEntry, HistoryQuery, Layout, Platform, clock};

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
/// How many characters of content a history line shows.
const SUMMARY_CHARS: usize = 72;

/// Whether a session of the project sent or took a message.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Direction {
    Out,
    In,
}

/// A log line as written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordOut<'a> {
    #[serde(flatten)]
    message: &'a Message,
    direction: Direction,
    session: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    never_taken: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    large: Option<&'a str>,
}

/// A log line as read.
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
struct Record {
    #[serde(flatten)]
    message: Message,
    direction: Direction,
    session: String,
    // `neverTaken` is also told by the status (`pending`), which is kept.
    #[serde(default)]
    large: Option<String>,
}

/// The bytes of one log line, ending in a line break.
fn encode(message: &Message, direction: Direction, session: &str, never_taken: bool) -> Vec<u8> {
    encode_with(message, direction, session, never_taken, None)
}

fn encode_with(
    message: &Message,
    direction: Direction,
    session: &str,
    never_taken: bool,
    large: Option<&str>,
) -> Vec<u8> {
    let mut message = message.clone();
    // The status says what became of it, as the mailbox copies do.
    message.status = match (direction, never_taken) {
        (Direction::Out, _) => Status::Sent,
        (Direction::In, false) => Status::Read,
        (Direction::In, true) => Status::Pending,
    };
    let record = RecordOut {
        message: &message,
        direction,
        session,
        never_taken,
        large,
    };
    let mut bytes = serde_json::to_vec(&record).expect("records serialize");
    debug_assert!(bytes.starts_with(MARKER));
    bytes.push(b'\n');
    bytes
}

/// Parses one record and checks its IDs.
fn parse_record(bytes: &[u8]) -> std::result::Result<Record, String> {
    let mut record: Record =
        serde_json::from_slice(bytes).map_err(|e| format!("not an archived message: {e}"))?;
    let m = &mut record.message;
    MessageId::parse(&m.id).map_err(|_| format!("bad message id {:?}", m.id))?;
    SessionId::parse(&m.from).map_err(|_| format!("bad sender {:?}", m.from))?;
    SessionId::parse(&m.to).map_err(|_| format!("bad recipient {:?}", m.to))?;
    SessionId::parse(&record.session).map_err(|_| format!("bad session {:?}", record.session))?;
    if m.in_reply_to
        .as_deref()
        .is_some_and(|r| MessageId::parse(r).is_err())
    {
        m.in_reply_to = None;
    }
    Ok(record)
}

/// Where the record in a log line starts: after a torn line glued in front
/// of it, if any. Returns the record and the length of what precedes it.
fn record_part(line: &[u8]) -> (&[u8], usize) {
    let mut end = line.len();
    while let Some(at) = line[..end].iter().rposition(|&b| b == b'{') {
        if line[at..].starts_with(MARKER) {
            return (&line[at..], at);
        }
        end = at;
    }
    (line, 0)
}

/// The message ID a record starts with, read without parsing.
fn raw_id(record: &[u8]) -> Option<&str> {
    let id = record.get(MARKER.len() - 4..MARKER.len() - 4 + ID_LEN)?;
    let id = std::str::from_utf8(id).ok()?;
    MessageId::parse(id).ok()?;
    (record.get(MARKER.len() - 4 + ID_LEN) == Some(&b'"')).then_some(id)
}

/// The message a record answers, read without parsing.
fn raw_reply_to(record: &[u8]) -> Option<&str> {
    let at = find(record, REPLY_KEY)? + REPLY_KEY.len();
    let id = std::str::from_utf8(record.get(at..at + ID_LEN)?).ok()?;
    MessageId::parse(id).ok().map(|_| id)
}

/// The first position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if let (Ok(text), Ok(pattern)) = (std::str::from_utf8(haystack), std::str::from_utf8(needle)) {
        return text.find(pattern);
    }
    if needle.is_empty() {
        return Some(0);
    }
    let first = needle[0];
    let mut from = 0;
    while from + needle.len() <= haystack.len() {
        let at = from
            + haystack[from..=haystack.len() - needle.len()]
                .iter()
                .position(|&b| b == first)?;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// True for the stub line of a large record: it ends with
/// `,"large":"<id>-<6 characters>.json"}`.
fn is_stub(line: &[u8]) -> bool {
    const NAME_LEN: usize = ID_LEN + 1 + 6 + ".json".len();
    let tail = LARGE_KEY.len() + NAME_LEN + 2;
    line.len() >= tail && line[line.len() - tail..].starts_with(LARGE_KEY) && line.ends_with(b"\"}")
}

/// True when a record may be from or to `peer`. The log writes sender and
/// recipient at fixed places (`{"id":"msg-…","from":"…","to":"…",`); a
/// line of another shape is searched whole.
fn raw_names_peer(line: &[u8], peer: &str, raw: Option<&[String; 2]>) -> bool {
    const FROM: std::ops::Range<usize> = 33..39;
    const TO: std::ops::Range<usize> = 47..53;
    let shaped = line.get(ID_LEN + 7..FROM.start) == Some(&b"\",\"from\":\""[..])
        && line.get(FROM.end..TO.start) == Some(&b"\",\"to\":\""[..]);
    if shaped {
        return line.get(FROM) == Some(peer.as_bytes()) || line.get(TO) == Some(peer.as_bytes());
    }
    raw.is_some_and(|[from, to]| {
        find(line, from.as_bytes()).is_some() || find(line, to.as_bytes()).is_some()
    })
}

/// The last line break in `bytes`, eight bytes at a time.
fn last_newline(bytes: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let mut end = bytes.len();
    while end >= 8 {
        let word = u64::from_le_bytes(bytes[end - 8..end].try_into().expect("8 bytes"));
        let x = word ^ NL;
        // Nonzero exactly when one of the eight bytes is a line break.
        if (x.wrapping_sub(LO) & !x & HI) != 0
            && let Some(i) = bytes[end - 8..end].iter().rposition(|&b| b == b'\n')
        {
            return Some(end - 8 + i);
        }
        end -= 8;
    }
    bytes[..end].iter().rposition(|&b| b == b'\n')
}

/// How long an instance trusts that a session is not a project's member.
const NOT_MEMBER_FRESH_MS: u64 = 1000;

/// `text` as it appears inside a JSON string the log wrote.
fn json_escaped(text: &str) -> String {
    let quoted = serde_json::to_string(text).expect("strings serialize");
    quoted[1..quoted.len() - 1].to_string()
}

impl<P: Platform> Bridge<P> {
    /// Appends one line to `path`, whole or not at all as far as other
    /// appenders go (see the module documentation).
    fn append_line(&self, path: &Path, line: &[u8]) -> io::Result<()> {
        #[cfg(target_os = "wasi")]
        if let Some(appended) = wasi::append(&self.caches.open_logs, path, line) {
            return appended;
        }
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .write_all(line)
    }
}

/// The archive logs an instance keeps open for appending, by path.
#[cfg(target_os = "wasi")]
pub(crate) type OpenLogs = HashMap<String, wasi::Appender>;

/// One `blocking-write-and-flush` per line inside the sandbox: the standard
/// library would write through `write`, which wasmtime-wasi hands to a
/// thread of its own.
#[cfg(target_os = "wasi")]
pub(crate) mod wasi {
    use std::cell::RefCell;
    use std::io;
    use std::path::Path;

    use wasip2::filesystem::types::{Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags};
    use wasip2::io::streams::{OutputStream, StreamError};

    /// None for a path outside the preopened bridge directory.
    pub fn append(
        open: &RefCell<super::OpenLogs>,
        path: &Path,
        line: &[u8],
    ) -> Option<io::Result<()>> {
        crate::files::wasi::at(path, |dir, relative| append_at(open, dir, relative, line))
    }

    /// A log kept open for appending: an instance that runs many verbs
    /// (the benchmarks' reused guests, a long-lived server) opens each log
    /// once. The stream is declared first so that it is dropped before the
    /// descriptor it belongs to.
    pub(crate) struct Appender {
        stream: OutputStream,
        _file: Descriptor,
    }

    /// The most logs kept open at once.
    const MAX_OPEN: usize = 8;

    fn append_at(
        open: &RefCell<super::OpenLogs>,
        dir: &Descriptor,
        relative: &str,
        line: &[u8],
    ) -> io::Result<()> {
        if line.len() > super::INLINE_MAX {
            return Err(io::Error::other(format!(
                "a line of {} bytes is over the {} one append takes",
                line.len(),
                super::INLINE_MAX
            )));
        }
        {
            let mut open = open.borrow_mut();
            // One write on this thread: the host appends it whole. A stream
            // that fails (its file replaced, say) is opened afresh once.
            if let Some(kept) = open.get(relative) {
                if kept.stream.blocking_write_and_flush(line).is_ok() {
                    return Ok(());
                }
                open.remove(relative);
            }
            let file = dir
                .open_at(
                    PathFlags::empty(),
                    relative,
                    OpenFlags::CREATE,
                    DescriptorFlags::WRITE,
                )
                .map_err(code_to_io)?;
            let stream = file.append_via_stream().map_err(code_to_io)?;
            stream
                .blocking_write_and_flush(line)
                .map_err(stream_to_io)?;
            if open.len() >= MAX_OPEN {
                open.clear();
            }
            open.insert(
                relative.to_string(),
                Appender {
                    stream,
                    _file: file,
                },
            );
            Ok(())
        }
    }

    fn code_to_io(code: ErrorCode) -> io::Error {
        let kind = match code {
            ErrorCode::NoEntry => io::ErrorKind::NotFound,
            ErrorCode::Access | ErrorCode::NotPermitted => io::ErrorKind::PermissionDenied,
            ErrorCode::InsufficientSpace => io::ErrorKind::StorageFull,
            ErrorCode::FileTooLarge => io::ErrorKind::FileTooLarge,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, format!("{code:?}"))
    }

    fn stream_to_io(err: StreamError) -> io::Error {
        match err {
            StreamError::LastOperationFailed(e) => io::Error::other(e.to_debug_string()),
            StreamError::Closed => io::Error::other("the stream closed"),
        }
    }
}

/// Calls `visit` with every complete line of `path` and its byte offset,
/// the last line first, until `visit` returns false. A last line without a
/// line break is being written (or was torn) and is not visited. Blank
/// lines are skipped. A missing file has no lines.
fn scan_back(path: &Path, mut visit: impl FnMut(u64, &[u8]) -> bool) -> io::Result<()> {
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    let mut pos = file.seek(SeekFrom::End(0))?;
    // The start of a line whose beginning lies in an earlier chunk, with
    // its line break.
    let mut tail: Vec<u8> = Vec::new();
    let mut first = true;
    let mut buf = Vec::new();
    while pos > 0 {
        let start = pos.saturating_sub(CHUNK);
        buf.clear();
        buf.resize((pos - start) as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        buf.extend_from_slice(&tail);
        tail.clear();
        pos = start;
        let mut end = buf.len();
        if first {
            match last_newline(&buf) {
                Some(nl) => {
                    end = nl + 1;
                    first = false;
                }
                None if start == 0 => return Ok(()),
                // No line break yet: all of it is the unfinished last line.
                None => continue,
            }
        }
        // `buf[..end]` ends with a line break.
        loop {
            let body_end = end - 1;
            match last_newline(&buf[..body_end]) {
                Some(nl) => {
                    let line = &buf[nl + 1..body_end];
                    if !is_blank(line) && !visit(start + nl as u64 + 1, line) {
                        return Ok(());
                    }
                    end = nl + 1;
                }
                None if start == 0 => {
                    let line = &buf[..body_end];
                    if !is_blank(line) {
                        visit(0, line);
                    }
                    return Ok(());
                }
                None => {
                    tail.extend_from_slice(&buf[..end]);
                    break;
                }
            }
        }
    }
    Ok(())
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

/// Unreadable log lines met by one verb, reported as warnings.
struct LineTrouble<'a> {
    log: &'a Path,
    shown: usize,
    more: usize,
}

impl<'a> LineTrouble<'a> {
    fn new(log: &'a Path) -> Self {
        LineTrouble {
            log,
            shown: 0,
            more: 0,
        }
    }

    fn note(&mut self, offset: u64, reason: &str, warnings: &mut Vec<String>) {
        if self.shown < MAX_LINE_WARNINGS {
            self.shown += 1;
            warnings.push(format!(
                "skipped an unreadable line of {} at byte {offset} ({}); \
                 bridge-host run cleanup sets it aside",
                display_path(self.log),
                one_line(reason)
            ));
        } else {
            self.more += 1;
        }
    }

    fn finish(self, warnings: &mut Vec<String>) {
        if self.more > 0 {
            warnings.push(format!(
                "skipped {} more unreadable lines of {}",
                self.more,
                display_path(self.log)
            ));
        }
    }
}

/// What `history` keeps of one line.
struct Filter<'a> {
    peer: Option<&'a str>,
    grep: Option<&'a str>,
    raw_peer: Option<[String; 2]>,
    raw_grep: Option<String>,
    /// Searches a raw line for `raw_grep`, built once.
    grep_finder: Option<memchr::memmem::Finder<'static>>,
}

impl<'a> Filter<'a> {
    fn new(peer: Option<&'a str>, grep: Option<&'a str>) -> Self {
        Filter {
            peer,
            grep,
            raw_peer: peer.map(|p| [format!(",\"from\":\"{p}\""), format!(",\"to\":\"{p}\"")]),
            raw_grep: grep.map(json_escaped),
            grep_finder: grep
                .map(|g| memchr::memmem::Finder::new(json_escaped(g).as_bytes()).into_owned()),
        }
    }

    /// False when the raw line cannot hold a match: cheap, and never wrong
    /// that way. A large record's stub always may.
    fn may_match(&self, line: &[u8]) -> bool {
        if self.raw_peer.is_none() && self.raw_grep.is_none() {
            return true;
        }
        if is_stub(line) {
            return true;
        }
        if let Some(peer) = self.peer
            && !raw_names_peer(line, peer, self.raw_peer.as_ref())
        {
            return false;
        }
        match &self.grep_finder {
            Some(finder) => finder.find(line).is_some(),
            None => true,
        }
    }

    /// Conversations only: a ping or a session-ended notice kept from a
    /// removed session's inbox says nothing worth listing.
    fn matches(&self, message: &Message) -> bool {
        matches!(message.kind, Kind::Query | Kind::Response)
            && self
                .peer
                .is_none_or(|p| message.from == p || message.to == p)
            && self.grep.is_none_or(|g| message.content.contains(g))
    }
}

/// How far a record's status says it got, for merging the two records of
/// a message sent and taken within one project.
fn status_rank(status: Status) -> u8 {
    match status {
        Status::Sent => 0,
        Status::Pending => 1,
        Status::Read => 2,
    }
}

/// A short human age: `40 s ago`, `12 min ago`, `3 h ago`, `9 d ago`.
fn ago(age: Option<Duration>) -> String {
    let Some(age) = age else {
        return "unreadable".to_string();
    };
    let secs = age.as_secs();
    match secs {
        0..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86400),
    }
}

/// Parses `--retention`.
///
/// # Errors
/// `InvalidArgument` naming the accepted form.
pub(crate) fn parse_retention(text: Option<&str>) -> Result<Duration> {
    let Some(text) = text else {
        return Ok(DEFAULT_RETENTION);
    };
    humantime::parse_duration(text.trim()).map_err(|err| {
        BridgeError::InvalidArgument(format!(
            "retention {text:?} is not a duration ({err}): give a number and a unit, such as \
             7d, 36h or 90min (--retention or BRIDGE_RETENTION; the default is 7d)"
        ))
    })
}

/// One message file of a mailbox being archived.
struct MailboxMessage {
    path: PathBuf,
    message: Message,
    /// False for one still pending (or claimed but not committed).
    taken: bool,
    modified: Option<SystemTime>,
}

/// The message files under `session_dir` (a session directory, live or
/// moved aside) owned by `owner`: the inbox (pending, or marked read by the
/// original), claims, and `read/` (only when `read_only`, just those).
fn mailbox_messages(session_dir: &Path, owner: &SessionId, read_only: bool) -> Vec<MailboxMessage> {
    let inbox = session_dir.join("inbox");
    let mut dirs = vec![inbox.join("read")];
    if !read_only {
        dirs.push(inbox.clone());
        dirs.push(inbox.join("claimed"));
    }
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(names) = files::list(&dir) else {
            continue;
        };
        for name in names {
            let (stem, claim) = match name.strip_suffix(".json") {
                Some(stem) => (stem, None),
                None if name.ends_with(".claim") => {
                    (name.split('.').next().unwrap_or(""), Some(false))
                }
                None if name.ends_with(".taken") => {
                    (name.split('.').next().unwrap_or(""), Some(true))
                }
                None => continue,
            };
            let path = dir.join(&name);
            let Ok((bytes, stat)) = files::read_bounded_with_stat(&path, MAX_MESSAGE_FILE_BYTES)
            else {
                continue;
            };
            let Ok(message) = Message::parse(&bytes, stem, Some(owner)) else {
                continue;
            };
            let taken = match claim {
                Some(taken) => taken,
                None => message.status != Status::Pending,
            };
            found.push(MailboxMessage {
                path,
                message,
                taken,
                modified: stat.modified,
            });
        }
    }
    found
}

/// What cleanup decided about one session.
enum Fate {
    /// Stale and its agent gone: removed, messages archived.
    Remove { stale_after: u64 },
    /// Kept; `tidy` when its old read messages and files may be cleaned.
    Keep { reason: String, tidy: bool },
}

/// The keys a project's archive may have, in the order tried: `base`,
/// then `base-2` and on, should other projects hold the earlier ones.
fn candidate_keys(base: &str) -> impl Iterator<Item = String> + '_ {
    (0..MAX_KEY_PROBES).map(move |probe| match probe {
        0 => base.to_string(),
        n => format!("{base}-{}", n + 1),
    })
}

impl<P: Platform> Bridge<P> {
    /// The archive key of `project`, creating the archive if needed.
    fn archive_key_for_write(&self, project: &str) -> Result<String> {
        let project = normalized_project(project);
        let base = Layout::archive_key(project);
        for key in candidate_keys(&base) {
            match self.archive_owner(&key) {
                Some(owner) if owner == project => return Ok(key),
                Some(_) => continue,
                None => {
                    let dir = self.layout.archive(&key);
                    files::ensure_dir(&dir)?;
                    files::create(&dir, "project", project.as_bytes())?;
                    if self.archive_owner(&key).as_deref() == Some(project) {
                        return Ok(key);
                    }
                }
            }
        }
        Err(BridgeError::Io {
            path: display_path(&self.layout.archives().join(&base)),
            reason: format!("{MAX_KEY_PROBES} other projects hold this archive name"),
        })
    }

    /// The archive key of `project`, if it has an archive.
    fn archive_key_of(&self, project: &str) -> Option<String> {
        let project = normalized_project(project);
        let base = Layout::archive_key(project);
        for key in candidate_keys(&base) {
            match self.archive_owner(&key) {
                Some(owner) if owner == project => return Some(key),
                Some(_) => continue,
                None => return None,
            }
        }
        None
    }

    /// The project an archive belongs to.
    fn archive_owner(&self, key: &str) -> Option<String> {
        let bytes = files::read_bounded(&self.layout.archive_project(key), 64 * 1024).ok()?;
        String::from_utf8(bytes).ok()
    }

    /// The archive key recorded in a session directory.
    fn recorded_key(session_dir: &Path) -> Option<String> {
        let bytes = files::read_bounded(&session_dir.join("archive-key"), 128).ok()?;
        let key = String::from_utf8(bytes).ok()?;
        Layout::is_archive_key(&key).then_some(key)
    }

    /// Remembers `key` as session `id`'s archive key (see
    /// [`Caches::known_keys`](crate::memo::Caches)).
    fn remember_key(&self, id: &SessionId, key: &str) {
        self.caches
            .known_keys
            .borrow_mut()
            .put(id.to_string(), key.to_string());
    }

    /// The archive key of session `id`'s project: the one recorded at
    /// `start`, else found from `project`.
    fn session_key(&self, id: &SessionId, project: Option<&str>) -> Result<String> {
        let known = self.caches.known_keys.borrow().get(&id.to_string(), None);
        if let Some(key) = known {
            return Ok(key);
        }
        if let Some(key) = Self::recorded_key(&self.layout.session(id)) {
            self.remember_key(id, &key);
            return Ok(key);
        }
        let project = match project {
            Some(project) => project.to_string(),
            None => self.manifest(id)?.project_path,
        };
        self.archive_key_for_write(&project)
    }

    /// True when session `id` is registered in the archive `key`'s project.
    fn is_member(&self, key: &str, id: &str) -> bool {
        let entry = (key.to_string(), id.to_string());
        let known = {
            let m = self.caches.members.borrow();
            m.get(&entry, None)
                .filter(|&member| member)
                .or_else(|| m.get(&entry, Some(NOT_MEMBER_FRESH_MS)))
        };
        if let Some(member) = known {
            return member;
        }
        let member = files::stat(&self.layout.archive_members(key).join(id)).is_ok();
        self.caches.members.borrow_mut().put(entry, member);
        member
    }

    /// Called by `start`: prepares the archive of the session's project,
    /// records its key in the session directory and the session among the
    /// project's members.
    pub(crate) fn archive_register(&self, manifest: &Manifest, warnings: &mut Vec<String>) {
        let registered = SessionId::parse(&manifest.session_id).and_then(|id| {
            let key = self.archive_key_for_write(&manifest.project_path)?;
            let members = self.layout.archive_members(&key);
            files::ensure_child_dir(&members)?;
            files::replace(&members, id.as_str(), b"")?;
            files::replace(&self.layout.session(&id), "archive-key", key.as_bytes())?;
            self.remember_key(&id, &key);
            Ok(())
        });
        if let Err(err) = registered {
            warnings.push(format!(
                "the project's archive could not be prepared ({err}); history will lack this \
                 session's messages"
            ));
        }
    }

    /// Appends one record to the archive `key`, a large one through a file
    /// of its own.
    fn append_record(
        &self,
        key: &str,
        message: &Message,
        direction: Direction,
        session: &str,
        never_taken: bool,
    ) -> Result<()> {
        let log = self.layout.archive_log(key);
        let line = encode(message, direction, session, never_taken);
        let appended = if line.len() <= INLINE_MAX {
            self.append_line(&log, &line)
        } else {
            Err(io::Error::other("large"))
        };
        match appended {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                // The archive was removed since `start`: make it again.
                files::ensure_dir(&self.layout.archive(key))?;
                self.append_line(&log, &line)
                    .map_err(|err| BridgeError::io("cannot append", &log, &err))
            }
            Err(_) => {
                let large = self.layout.archive_large(key);
                files::ensure_child_dir(&large)?;
                let name = format!("{}-{}.json", message.id, random_token(6));
                files::replace(&large, &name, &line)?;
                let mut stub = message.clone();
                stub.content = String::new();
                let line = encode_with(&stub, direction, session, never_taken, Some(&name));
                self.append_line(&log, &line)
                    .map_err(|err| BridgeError::io("cannot append", &log, &err))
            }
        }
    }

    /// Called after `message` was delivered by `sender` (whose manifest is
    /// `mine`): keeps it in the sender project's archive. Never fails the send.
    pub(crate) fn archive_sent(
        &self,
        message: &Message,
        mine: &Manifest,
        warnings: &mut Vec<String>,
    ) {
        let kept = SessionId::parse(&mine.session_id).and_then(|me| {
            let key = self.session_key(&me, Some(&mine.project_path))?;
            self.append_record(&key, message, Direction::Out, me.as_str(), false)
        });
        if let Err(err) = kept {
            warnings.push(format!(
                "{} was sent, but not kept in this project's history: {err}",
                message.id
            ));
        }
    }

    /// Called once `message` was taken by `owner`: keeps it in the
    /// receiving project's archive. Never fails the delivery.
    pub(crate) fn archive_received(&self, message: &Message, owner: &SessionId) {
        if !matches!(message.kind, Kind::Query | Kind::Response) {
            return;
        }
        let Ok(key) = self.session_key(owner, None) else {
            return;
        };
        // Sent by a session of the same project: its sender kept it.
        if self.is_member(&key, &message.from) {
            return;
        }
        let _ = self.append_record(&key, message, Direction::In, owner.as_str(), false);
    }

    /// Archives the messages of a session directory about to be deleted
    /// (`dir`, live or moved into `.trash/`): pending ones marked as never
    /// taken, taken ones unless the archive has them. With `dry_run`, only
    /// counts. Returns how many messages it archived.
    ///
    /// # Errors
    /// When one could not be archived: the directory must then be kept.
    pub(crate) fn archive_removed_session(
        &self,
        dir: &Path,
        id: &SessionId,
        project: Option<&str>,
        dry_run: bool,
        warnings: &mut Vec<String>,
    ) -> Result<u32> {
        let messages = mailbox_messages(dir, id, false);
        if messages.is_empty() {
            return Ok(0);
        }
        let key = match Self::recorded_key(dir) {
            Some(key) => key,
            None => {
                let project = project.ok_or_else(|| {
                    BridgeError::corrupt(&dir.join("manifest.json"), "no project to archive into")
                })?;
                match (dry_run, self.archive_key_of(project)) {
                    (_, Some(key)) => key,
                    (true, None) => return Ok(messages.len() as u32),
                    (false, None) => self.archive_key_for_write(project)?,
                }
            }
        };
        let present = self.logged_ids(&key, warnings);
        let mut archived = 0;
        for found in &messages {
            if !(dry_run || found.taken && present.contains(&found.message.id)) {
                self.append_record(
                    &key,
                    &found.message,
                    Direction::In,
                    id.as_str(),
                    !found.taken,
                )?;
            }
            archived += 1;
        }
        Ok(archived)
    }

    /// Every message ID in the archive `key`, read without parsing.
    fn logged_ids(&self, key: &str, warnings: &mut Vec<String>) -> HashSet<String> {
        let log = self.layout.archive_log(key);
        let mut ids = HashSet::new();
        let scanned = scan_back(&log, |_, line| {
            if let Some(id) = raw_id(record_part(line).0) {
                ids.insert(id.to_string());
            }
            true
        });
        if let Err(err) = scanned {
            warnings.push(format!("could not read {}: {}", display_path(&log), err));
        }
        ids
    }

    /// A record read from the log, with a large one's file read in.
    fn complete(&self, key: &str, record: Record) -> std::result::Result<Record, String> {
        let Some(name) = &record.large else {
            return Ok(record);
        };
        let safe = name.starts_with("msg-")
            && name.ends_with(".json")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !safe {
            return Err(format!("bad large-record name {name:?}"));
        }
        let path = self.layout.archive_large(key).join(name);
        let bytes = files::read_bounded(&path, 2 * MAX_MESSAGE_FILE_BYTES).map_err(|f| {
            format!(
                "its record {}: {}",
                display_path(&path),
                f.describe(2 * MAX_MESSAGE_FILE_BYTES)
            )
        })?;
        let full = parse_record(bytes.strip_suffix(b"\n").unwrap_or(&bytes))?;
        if full.message.id != record.message.id {
            return Err(format!("{} holds another message", display_path(&path)));
        }
        Ok(full)
    }

    /// The project whose history `history` and `thread` read: the acting
    /// session's when a session is given (`--session`, or the agent's own),
    /// whatever the working directory; else the working directory's.
    fn acting_project(&self, context: &Context) -> String {
        if context.session.is_none() && context.agent_session.is_none() {
            return context.project_dir.clone();
        }
        let acting = match self.identify(context) {
            Ok(Some((_, Some(manifest)))) => Some(manifest),
            Ok(Some((id, None))) => self.manifest(&id).ok(),
            _ => None,
        };
        acting.map_or_else(|| context.project_dir.clone(), |m| m.project_path)
    }

    /// `history`.
    pub(crate) fn history(
        &self,
        context: &Context,
        query: &HistoryQuery,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<HistoryEntry>> {
        let project = self.acting_project(context);
        validate_project_dir(&project)?;
        let peer = query.peer.as_deref().map(SessionId::parse).transpose()?;
        let limit = match query.limit {
            None => DEFAULT_HISTORY_LIMIT,
            Some(0) => {
                return Err(BridgeError::InvalidArgument(format!(
                    "--limit 0 lists nothing; give 1 to {MAX_HISTORY_LIMIT} (the default is \
                     {DEFAULT_HISTORY_LIMIT})"
                )));
            }
            Some(n) if n > MAX_HISTORY_LIMIT => {
                warnings.push(format!(
                    "--limit {n} is over the most history lists at once; showing the newest \
                     {MAX_HISTORY_LIMIT}"
                ));
                MAX_HISTORY_LIMIT
            }
            Some(n) => n,
        };
        let Some(key) = self.archive_key_of(&project) else {
            return Ok(Vec::new());
        };
        let filter = Filter::new(peer.as_ref().map(SessionId::as_str), query.grep.as_deref());
        Ok(self.search(&key, &filter, limit as usize, warnings))
    }

    /// The newest `limit` messages of archive `key` that `filter` keeps,
    /// newest last.
    fn search(
        &self,
        key: &str,
        filter: &Filter,
        limit: usize,
        warnings: &mut Vec<String>,
    ) -> Vec<HistoryEntry> {
        let log = self.layout.archive_log(key);
        let mut trouble = LineTrouble::new(&log);
        // Newest first while reading; (entry, order read).
        let mut found: Vec<HistoryEntry> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let scanned = scan_back(&log, |offset, line| {
            if !filter.may_match(line) {
                return true;
            }
            let record = match parse_record(line) {
                Ok(record) => Ok(record),
                Err(reason) => match record_part(line) {
                    (part, at) if at > 0 => parse_record(part).map_err(|_| reason),
                    _ => Err(reason),
                },
            }
            .and_then(|record| self.complete(key, record));
            let record = match record {
                Ok(record) => record,
                Err(reason) => {
                    trouble.note(offset, &reason, warnings);
                    return true;
                }
            };
            if !filter.matches(&record.message) {
                return true;
            }
            let outgoing = record.direction == Direction::Out;
            match index.get(&record.message.id) {
                Some(&at) => {
                    let entry = &mut found[at];
                    entry.outgoing |= outgoing;
                    if status_rank(record.message.status) > status_rank(entry.message.status) {
                        entry.message.status = record.message.status;
                    }
                }
                None => {
                    index.insert(record.message.id.clone(), found.len());
                    found.push(HistoryEntry {
                        message: record.message,
                        outgoing,
                    });
                }
            }
            found.len() < limit
        });
        if let Err(err) = scanned {
            warnings.push(format!("could not read {}: {err}", display_path(&log)));
        }
        trouble.finish(warnings);
        found.reverse();
        // Oldest first by the time each was sent; the log's order breaks ties.
        found.sort_by(|a, b| a.message.timestamp.cmp(&b.message.timestamp));
        found
    }

    /// `thread`: the conversation `id` belongs to, oldest first.
    pub(crate) fn thread(
        &self,
        context: &Context,
        id: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Message>> {
        let id = MessageId::parse(id)?;
        let project = self.acting_project(context);
        validate_project_dir(&project)?;
        // Every message known here: id -> (message or where its line is, parent).
        let mut known: HashMap<String, Known> = HashMap::new();
        let key = self.archive_key_of(&project);
        if let Some(key) = &key {
            let log = self.layout.archive_log(key);
            let mut order = 0u64;
            let scanned = scan_back(&log, |offset, line| {
                let (part, at) = record_part(line);
                if let Some(found) = raw_id(part) {
                    order += 1;
                    known.entry(found.to_string()).or_insert(Known {
                        parent: raw_reply_to(part).map(str::to_string),
                        message: None,
                        line: Some(offset + at as u64),
                        order,
                    });
                }
                true
            });
            if let Err(err) = scanned {
                warnings.push(format!("could not read {}: {err}", display_path(&log)));
            }
        }
        // This session's live mailbox: what the archive does not have yet.
        if let Some(me) = self.resolve(context)? {
            let mut live = self.inbox_history(&me)?;
            live.extend(self.outbox_history(&me)?);
            for message in live {
                let order = u64::MAX - known.len() as u64;
                known.entry(message.id.clone()).or_insert(Known {
                    parent: message.in_reply_to.clone(),
                    message: Some(message),
                    line: None,
                    order,
                });
            }
        }
        if !known.contains_key(id.as_str()) {
            return Err(BridgeError::NoSuchMessage(id.to_string()));
        }
        let root_of = |start: &str| -> String {
            let mut at = start.to_string();
            let mut seen = HashSet::new();
            while let Some(parent) = known.get(&at).and_then(|k| k.parent.clone()) {
                if !known.contains_key(&parent) || !seen.insert(at.clone()) {
                    break;
                }
                at = parent;
            }
            at
        };
        let root = root_of(id.as_str());
        let members: Vec<String> = known
            .keys()
            .filter(|k| root_of(k) == root)
            .cloned()
            .collect();
        let mut messages = Vec::new();
        let log = key.as_ref().map(|k| self.layout.archive_log(k));
        let mut trouble = log.as_deref().map(LineTrouble::new);
        for member in members {
            let entry = &known[&member];
            let message = match (&entry.message, entry.line, &key, &log) {
                (Some(message), _, _, _) => message.clone(),
                (None, Some(offset), Some(key), Some(log)) => {
                    match read_line_at(log, offset)
                        .and_then(|line| parse_record(&line))
                        .and_then(|record| self.complete(key, record))
                    {
                        Ok(record) => record.message,
                        Err(reason) => {
                            if let Some(trouble) = trouble.as_mut() {
                                trouble.note(offset, &reason, warnings);
                            }
                            continue;
                        }
                    }
                }
                _ => continue,
            };
            let depth = depth_of(&known, &member);
            messages.push((message, depth, std::cmp::Reverse(entry.order)));
        }
        if let Some(trouble) = trouble {
            trouble.finish(warnings);
        }
        messages.sort_by(|a, b| (&a.0.timestamp, a.1, a.2).cmp(&(&b.0.timestamp, b.1, b.2)));
        Ok(messages.into_iter().map(|(m, _, _)| m).collect())
    }

    /// `cleanup`.
    pub(crate) fn cleanup(
        &self,
        context: &Context,
        dry_run: bool,
        warnings: &mut Vec<String>,
    ) -> Result<CleanupReport> {
        let retention = parse_retention(context.retention.as_deref())?;
        let me = self.resolve(context)?;
        let mut report = CleanupReport {
            dry_run,
            ..CleanupReport::default()
        };
        for id in self.session_ids()? {
            self.clean_session(&id, me.as_ref(), retention, true, &mut report, warnings);
        }
        self.clean_trash(dry_run, &mut report, warnings);
        if validate_project_dir(&context.project_dir).is_ok()
            && let Some(key) = self.archive_key_of(&context.project_dir)
        {
            self.set_aside_lines(&key, dry_run, warnings);
        }
        Ok(report)
    }

    /// The cheap part of cleanup, run by `stop` and `session-start`: ghost
    /// sessions, and this session's own taken messages past the retention.
    /// Nothing it reads reaches an agent; only the counts are reported.
    pub(crate) fn cleanup_cheap(
        &self,
        context: &Context,
        me: &SessionId,
        warnings: &mut Vec<String>,
    ) -> CleanupReport {
        let retention = parse_retention(context.retention.as_deref()).unwrap_or_else(|err| {
            warnings.push(format!("{err}; cleanup used the default"));
            DEFAULT_RETENTION
        });
        let mut report = CleanupReport::default();
        let Ok(ids) = self.session_ids() else {
            return report;
        };
        for id in ids {
            self.clean_session(&id, Some(me), retention, false, &mut report, warnings);
        }
        report
    }

    /// What cleanup makes of session `id`.
    fn fate(&self, id: &SessionId, manifest: &Manifest, me: Option<&SessionId>) -> Fate {
        let age = clock::age(&manifest.last_heartbeat);
        if me == Some(id) {
            return Fate::Keep {
                reason: format!("{id}: this session"),
                tidy: true,
            };
        }
        if !manifest.heartbeat_older_than(STALE_AFTER_SECS) {
            return Fate::Keep {
                reason: format!("{id}: heartbeat {}", ago(age)),
                tidy: false,
            };
        }
        // Early removal only on word that its agent process ended; a stale
        // heartbeat alone (a terminal session nobody is typing in) waits for
        // the abandonment age.
        match self.agent_process_running(id) {
            Some(true) => Fate::Keep {
                reason: format!("{id}: its agent is running (heartbeat {})", ago(age)),
                tidy: true,
            },
            Some(false) => Fate::Remove {
                stale_after: STALE_AFTER_SECS,
            },
            None if manifest.heartbeat_older_than(PRUNE_AFTER_SECS) => Fate::Remove {
                stale_after: PRUNE_AFTER_SECS,
            },
            None => Fate::Keep {
                reason: format!(
                    "{id}: heartbeat {}; without word of its agent it is removed after {} min",
                    ago(age),
                    PRUNE_AFTER_SECS / 60
                ),
                tidy: true,
            },
        }
    }

    /// Removes session `id` when it is a ghost, or archives its taken
    /// messages past `retention` and (when `thorough`) its old files.
    /// Only this session (`me`) is tidied when `thorough` is false.
    fn clean_session(
        &self,
        id: &SessionId,
        me: Option<&SessionId>,
        retention: Duration,
        thorough: bool,
        report: &mut CleanupReport,
        warnings: &mut Vec<String>,
    ) {
        let manifest = match self.manifest(id) {
            Ok(manifest) => manifest,
            Err(err) if crate::registry::is_refused(&err) => {
                report
                    .kept
                    .push(format!("{id}: refused as unsafe; left alone"));
                return;
            }
            Err(BridgeError::NoSuchSession(_)) => return,
            Err(err) => {
                report.kept.push(format!("{id}: {err}; left alone"));
                return;
            }
        };
        match self.fate(id, &manifest, me) {
            Fate::Remove { stale_after } => {
                let abandoned = |m: &Manifest| m.heartbeat_older_than(stale_after);
                if report.dry_run {
                    match self.archive_removed_session(
                        &self.layout.session(id),
                        id,
                        Some(&manifest.project_path),
                        true,
                        warnings,
                    ) {
                        Ok(count) => {
                            report.messages_archived += count;
                            report.sessions_removed.push(id.to_string());
                        }
                        Err(err) => report.kept.push(format!("{id}: {err}")),
                    }
                    return;
                }
                match self.remove_session_if(id, abandoned, warnings) {
                    Ok(Some(count)) => {
                        report.messages_archived += count;
                        report.sessions_removed.push(id.to_string());
                    }
                    Ok(None) => report
                        .kept
                        .push(format!("{id}: it came back while being removed")),
                    Err(err) => warnings.push(format!("could not remove session {id}: {err}")),
                }
            }
            Fate::Keep { reason, tidy } => {
                let mine = me == Some(id);
                if tidy && (thorough || mine) {
                    self.archive_old_read(id, &manifest, retention, report, warnings);
                    if thorough {
                        self.remove_old_files(id, report);
                    }
                }
                if !mine || thorough {
                    report.kept.push(reason);
                }
            }
        }
    }

    /// Moves `id`'s taken messages older than `retention` out of `read/`
    /// into its project's archive (those the archive has are only removed).
    fn archive_old_read(
        &self,
        id: &SessionId,
        manifest: &Manifest,
        retention: Duration,
        report: &mut CleanupReport,
        warnings: &mut Vec<String>,
    ) {
        let old: Vec<MailboxMessage> = mailbox_messages(&self.layout.session(id), id, true)
            .into_iter()
            .filter(|m| clock::older_than(m.modified, retention))
            .collect();
        if old.is_empty() {
            return;
        }
        if report.dry_run {
            report.messages_archived += old.len() as u32;
            return;
        }
        let key = match self.session_key(id, Some(&manifest.project_path)) {
            Ok(key) => key,
            Err(err) => {
                warnings.push(format!(
                    "could not archive the read messages of {id}: {err}"
                ));
                return;
            }
        };
        let present = self.logged_ids(&key, warnings);
        for found in old {
            let kept = if present.contains(&found.message.id) {
                Ok(())
            } else {
                self.append_record(&key, &found.message, Direction::In, id.as_str(), false)
            };
            match kept.and_then(|()| files::remove_if_present(&found.path)) {
                Ok(()) => report.messages_archived += 1,
                Err(err) => {
                    warnings.push(format!("could not archive {}: {err}", found.message.id));
                    return;
                }
            }
        }
    }

    /// Removes `id`'s set-aside files past [`REJECTED_MAX_AGE`] and
    /// temporary files past [`crate::mailbox::STALE_TEMP_AGE`].
    fn remove_old_files(&self, id: &SessionId, report: &mut CleanupReport) {
        let rejected = self.layout.rejected(id);
        let mut old = Vec::new();
        if let Ok(names) = files::list(&rejected) {
            for name in names {
                let path = rejected.join(&name);
                if files::stat(&path).is_ok_and(|m| {
                    m.kind == files::Kind::File && clock::older_than(m.modified, REJECTED_MAX_AGE)
                }) {
                    old.push(path);
                }
            }
        }
        let session = self.layout.session(id);
        let mut dirs = vec![session.clone()];
        dirs.extend(self.layout.session_dirs(id));
        dirs.extend([self.layout.threads(id), self.layout.pings(id)]);
        for dir in dirs {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !name.to_string_lossy().starts_with(".tmp-") {
                    continue;
                }
                let path = dir.join(&name);
                if files::stat(&path).is_ok_and(|m| {
                    m.kind == files::Kind::File
                        && clock::older_than(m.modified, crate::mailbox::STALE_TEMP_AGE)
                }) {
                    old.push(path);
                }
            }
        }
        for path in old {
            if report.dry_run || files::remove_if_present(&path).is_ok() {
                report.files_removed += 1;
            }
        }
    }

    /// Deletes what `.trash/` holds past [`crate::mailbox::STALE_TEMP_AGE`]
    /// (a removal that was interrupted, or a session that could not be put
    /// back), after archiving its messages.
    fn clean_trash(&self, dry_run: bool, report: &mut CleanupReport, warnings: &mut Vec<String>) {
        let trash = self.layout.trash();
        let Ok(names) = files::list(&trash) else {
            return;
        };
        for name in names {
            let dir = trash.join(&name);
            let Ok(meta) = files::stat(&dir) else {
                continue;
            };
            let id = name.get(..6).and_then(|id| SessionId::parse(id).ok());
            let manifest = id.as_ref().and_then(|id| read_moved_manifest(&dir, id));
            let newest = [
                meta.modified,
                manifest
                    .as_ref()
                    .and_then(|m| clock::parse_stamp(&m.last_heartbeat)),
            ]
            .into_iter()
            .flatten()
            .max();
            if !clock::older_than(newest, crate::mailbox::STALE_TEMP_AGE) {
                report
                    .kept
                    .push(format!(".trash/{name}: being removed right now"));
                continue;
            }
            if meta.kind == files::Kind::Dir {
                let archived = match &id {
                    Some(id) => self.archive_removed_session(
                        &dir,
                        id,
                        manifest.as_ref().map(|m| m.project_path.as_str()),
                        dry_run,
                        warnings,
                    ),
                    None => Ok(0),
                };
                match archived {
                    Ok(count) => report.messages_archived += count,
                    Err(err) => {
                        report
                            .kept
                            .push(format!(".trash/{name}: {err}; its messages stay there"));
                        continue;
                    }
                }
            }
            report.files_removed += 1;
            if !dry_run {
                let removed = match meta.kind {
                    files::Kind::Dir => remove_tree(&dir),
                    _ => files::remove_if_present(&dir),
                };
                if let Err(err) = removed {
                    warnings.push(format!("could not remove .trash/{name}: {err}"));
                }
            }
        }
    }

    /// Copies the unreadable lines of archive `key` to `rejected.jsonl`,
    /// each after a line naming its offset, then blanks them in place.
    /// The log is never rewritten, so appends running meanwhile are safe.
    fn set_aside_lines(&self, key: &str, dry_run: bool, warnings: &mut Vec<String>) {
        let log = self.layout.archive_log(key);
        let mut bad: Vec<(u64, Vec<u8>, String)> = Vec::new();
        let _ = scan_back(&log, |offset, line| {
            let (part, at) = record_part(line);
            match parse_record(part) {
                Ok(_) if at == 0 || is_blank(&line[..at]) => {}
                Ok(_) => bad.push((offset, line[..at].to_vec(), "a torn line".to_string())),
                Err(reason) => bad.push((offset, line.to_vec(), reason)),
            }
            true
        });
        if bad.is_empty() {
            return;
        }
        let rejected = self.layout.archive_rejected(key);
        if dry_run {
            warnings.push(format!(
                "would set aside {} unreadable lines of {} into {}",
                bad.len(),
                display_path(&log),
                display_path(&rejected)
            ));
            return;
        }
        let mut copy = Vec::new();
        for (offset, bytes, reason) in &bad {
            let note =
                json!({ "setAside": clock::now_stamp(), "offset": offset, "reason": reason });
            copy.extend_from_slice(note.to_string().as_bytes());
            copy.push(b'\n');
            copy.extend_from_slice(bytes);
            copy.push(b'\n');
        }
        let blanked = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&rejected)
            .and_then(|mut file| file.write_all(&copy))
            .and_then(|()| fs::OpenOptions::new().write(true).open(&log))
            .and_then(|mut file| {
                for (offset, bytes, _) in &bad {
                    file.seek(SeekFrom::Start(*offset))?;
                    file.write_all(&vec![b' '; bytes.len()])?;
                }
                Ok(())
            });
        match blanked {
            Ok(()) => warnings.push(format!(
                "set aside {} unreadable lines of {} into {}",
                bad.len(),
                display_path(&log),
                display_path(&rejected)
            )),
            Err(err) => warnings.push(format!(
                "could not set aside the unreadable lines of {}: {err}",
                display_path(&log)
            )),
        }
    }
}

/// A message `thread` knows of.
struct Known {
    parent: Option<String>,
    message: Option<Message>,
    /// Where its record starts in the log.
    line: Option<u64>,
    /// Its place in the log, newest first (mailbox messages last).
    order: u64,
}

/// How many known ancestors `id` has.
fn depth_of(known: &HashMap<String, Known>, id: &str) -> usize {
    let mut depth = 0;
    let mut at = id;
    while let Some(parent) = known.get(at).and_then(|k| k.parent.as_deref()) {
        if !known.contains_key(parent) || depth > known.len() {
            break;
        }
        depth += 1;
        at = parent;
    }
    depth
}

/// The line of `log` that starts at `offset`, without its line break.
fn read_line_at(log: &Path, offset: u64) -> std::result::Result<Vec<u8>, String> {
    let mut file = fs::File::open(log).map_err(|e| e.to_string())?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| e.to_string())?;
    let mut line = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = file.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(line);
        }
        if let Some(nl) = buf[..n].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&buf[..nl]);
            return Ok(line);
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() as u64 > 2 * MAX_MESSAGE_FILE_BYTES {
            return Err("the line is too long".into());
        }
    }
}

/// The first line of `content`, at most [`SUMMARY_CHARS`] characters,
/// with `…` when something was left out.
fn summary(content: &str) -> String {
    let first = content.split('\n').next().unwrap_or("");
    let mut short: String = first.chars().take(SUMMARY_CHARS).collect();
    if short.len() < content.trim_end().len() {
        short.push('…');
    }
    one_line(&short)
}

/// `2026-11-23 10:06:00` from a wire stamp; anything else escaped.
fn when(stamp: &str) -> String {
    if clock::parse_stamp(stamp).is_some() {
        stamp
            .replacen('T', " ", 1)
            .trim_end_matches('Z')
            .to_string()
    } else {
        one_line(stamp)
    }
}

pub(crate) fn history_text(entries: &[HistoryEntry]) -> String {
    if entries.is_empty() {
        return "No messages in this project's history.\n".to_string();
    }
    let mut out = String::new();
    for entry in entries {
        let m = &entry.message;
        let (arrow, peer) = if entry.outgoing {
            ("→", &m.to)
        } else {
            ("←", &m.from)
        };
        let never = if m.status == Status::Pending {
            " (never taken: its session ended first)"
        } else {
            ""
        };
        out.push_str(&format!(
            "{}  {arrow} {}  {:<8}  {}  {}{never}\n",
            when(&m.timestamp),
            one_line(peer),
            m.kind.as_str(),
            one_line(&m.id),
            summary(&m.content),
        ));
    }
    out.push_str("The whole conversation of one: bridge-host run thread <message-id>\n");
    out
}

pub(crate) fn history_json(entries: &[HistoryEntry]) -> serde_json::Value {
    json!({
        "messages": entries.iter().map(|entry| {
            let mut value = crate::render::message_json(&entry.message);
            value["direction"] = json!(if entry.outgoing { "out" } else { "in" });
            value
        }).collect::<Vec<Value>>(),
    })
}

/// Each message: a header line, then its content with every line behind
/// `  | `, so nothing a peer wrote can pass for a header.
pub(crate) fn thread_text(messages: &[Message]) -> String {
    let mut out = String::new();
    for m in messages {
        let answers = m
            .in_reply_to
            .as_deref()
            .map_or(String::new(), |r| format!(", answering {}", one_line(r)));
        out.push_str(&format!(
            "{}  {} → {}  {} {}{answers}\n",
            when(&m.timestamp),
            one_line(&m.from),
            one_line(&m.to),
            m.kind.as_str(),
            one_line(&m.id),
        ));
        for line in m.content.split('\n') {
            out.push_str(&format!("  | {}\n", one_line(line)));
        }
    }
    out
}

pub(crate) fn thread_json(messages: &[Message]) -> serde_json::Value {
    json!({ "messages": messages.iter().map(crate::render::message_json).collect::<Vec<Value>>() })
}

pub(crate) fn cleanup_text(report: &CleanupReport) -> String {
    let would = |done: &str, planned: &str| {
        if report.dry_run {
            planned.to_string()
        } else {
            done.to_string()
        }
    };
    let mut out = String::new();
    if !report.sessions_removed.is_empty() {
        out.push_str(&format!(
            "{} {} abandoned session(s): {}\n",
            would("Removed", "Would remove"),
            report.sessions_removed.len(),
            report.sessions_removed.join(", ")
        ));
    }
    if report.messages_archived > 0 {
        out.push_str(&format!(
            "{} {} message(s) from live mailboxes into the archive (bridge-host run history lists them)\n",
            would("Archived", "Would archive"),
            report.messages_archived
        ));
    }
    if report.files_removed > 0 {
        out.push_str(&format!(
            "{} {} old set-aside or temporary file(s)\n",
            would("Removed", "Would remove"),
            report.files_removed
        ));
    }
    if out.is_empty() {
        out.push_str(if report.dry_run {
            "Nothing to clean; nothing would change.\n"
        } else {
            "Nothing to clean.\n"
        });
    }
    if !report.kept.is_empty() {
        out.push_str("Left alone:\n");
        for kept in &report.kept {
            out.push_str(&format!("  {}\n", one_line(kept)));
        }
    }
    out
}

pub(crate) fn cleanup_json(report: &CleanupReport) -> serde_json::Value {
    json!({
        "dryRun": report.dry_run,
        "sessionsRemoved": report.sessions_removed,
        "messagesArchived": report.messages_archived,
        "filesRemoved": report.files_removed,
        "kept": report.kept,
    })
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
