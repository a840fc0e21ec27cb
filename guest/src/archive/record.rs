//! The record format of the log: one line per message, its wire JSON
//! plus where it went (see the module documentation of `archive`), and
//! the raw reads that find ids and references without parsing.

use serde::{Deserialize, Serialize};

use super::{ID_LEN, LARGE_KEY, MARKER, REPLY_KEY};
use crate::ids::{MessageId, SessionId};
use crate::wire::{Message, Status};

/// Whether a session of the project sent or took a message.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum Direction {
    Out,
    In,
}

/// A log line as written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RecordOut<'a> {
    #[serde(flatten)]
    pub(super) message: &'a Message,
    pub(super) direction: Direction,
    pub(super) session: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) never_taken: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) large: Option<&'a str>,
}

/// A log line as read.
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(super) struct Record {
    #[serde(flatten)]
    pub(super) message: Message,
    pub(super) direction: Direction,
    pub(super) session: String,
    // `neverTaken` is also told by the status (`pending`), which is kept.
    #[serde(default)]
    pub(super) large: Option<String>,
}

/// The bytes of one log line, ending in a line break.
pub(super) fn encode(
    message: &Message,
    direction: Direction,
    session: &str,
    never_taken: bool,
) -> Vec<u8> {
    encode_with(message, direction, session, never_taken, None)
}

pub(super) fn encode_with(
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
pub(super) fn parse_record(bytes: &[u8]) -> std::result::Result<Record, String> {
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
pub(super) fn record_part(line: &[u8]) -> (&[u8], usize) {
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
pub(super) fn raw_id(record: &[u8]) -> Option<&str> {
    let id = record.get(MARKER.len() - 4..MARKER.len() - 4 + ID_LEN)?;
    let id = std::str::from_utf8(id).ok()?;
    MessageId::parse(id).ok()?;
    (record.get(MARKER.len() - 4 + ID_LEN) == Some(&b'"')).then_some(id)
}

/// The message a record answers, read without parsing.
pub(super) fn raw_reply_to(record: &[u8]) -> Option<&str> {
    let at = find(record, REPLY_KEY)? + REPLY_KEY.len();
    let id = std::str::from_utf8(record.get(at..at + ID_LEN)?).ok()?;
    MessageId::parse(id).ok().map(|_| id)
}

/// The first position of `needle` in `haystack`.
pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
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
pub(super) fn is_stub(line: &[u8]) -> bool {
    const NAME_LEN: usize = ID_LEN + 1 + 6 + ".json".len();
    let tail = LARGE_KEY.len() + NAME_LEN + 2;
    line.len() >= tail && line[line.len() - tail..].starts_with(LARGE_KEY) && line.ends_with(b"\"}")
}

/// True when a record may be from or to `peer`. The log writes sender and
/// recipient at fixed places (`{"id":"msg-…","from":"…","to":"…",`); a
/// line of another shape is searched whole.
pub(super) fn raw_names_peer(line: &[u8], peer: &str, raw: Option<&[String; 2]>) -> bool {
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

/// `text` as it appears inside a JSON string the log wrote.
pub(super) fn json_escaped(text: &str) -> String {
    let quoted = serde_json::to_string(text).expect("strings serialize");
    quoted[1..quoted.len() - 1].to_string()
}
