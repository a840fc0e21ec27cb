//! The on-disk JSON of the reference protocol, field for field. Parsing is
//! strict about types and duplicate keys and tolerant of extra fields, so a
//! newer peer's additions never make its messages unreadable.

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::ids::{MessageId, SessionId};

/// The largest message content accepted, in bytes.
pub const MAX_CONTENT_BYTES: usize = 1024 * 1024;
/// The largest message file read. Content at the limit can grow up to six
/// times when JSON escapes it, plus the envelope.
pub const MAX_MESSAGE_FILE_BYTES: u64 = 7 * 1024 * 1024;
/// The largest manifest read.
pub const MAX_MANIFEST_FILE_BYTES: u64 = 64 * 1024;

/// The wire field `type`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Query,
    Response,
    Ping,
    SessionEnded,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Query => "query",
            Kind::Response => "response",
            Kind::Ping => "ping",
            Kind::SessionEnded => "session-ended",
        }
    }
}

/// The wire field `status`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Read,
    Sent,
}

/// The wire field `metadata`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default = "normal_urgency")]
    pub urgency: String,
    #[serde(default)]
    pub from_project: String,
}

fn normal_urgency() -> String {
    "normal".to_string()
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            urgency: normal_urgency(),
            from_project: String::new(),
        }
    }
}

/// A message file (`sessions/<to>/inbox/<id>.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub from: String,
    pub to: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub timestamp: String,
    pub status: Status,
    pub content: String,
    #[serde(default)]
    pub in_reply_to: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
}

impl Message {
    /// A new pending message stamped now.
    pub fn new(
        from: &SessionId,
        to: &SessionId,
        kind: Kind,
        content: String,
        in_reply_to: Option<&MessageId>,
        from_project: &str,
    ) -> Self {
        Message {
            id: MessageId::random().as_str().to_string(),
            from: from.to_string(),
            to: to.to_string(),
            kind,
            timestamp: clock::now_stamp(),
            status: Status::Pending,
            content,
            in_reply_to: in_reply_to.map(|id| id.to_string()),
            metadata: Metadata {
                urgency: normal_urgency(),
                from_project: from_project.to_string(),
            },
        }
    }

    /// Parses a message file and checks it belongs where it was found: its
    /// ID matches `file_stem`, its IDs are well formed and, when given, it is
    /// addressed to `owner`. An `inReplyTo` that is not a message ID is
    /// dropped (see [`Self::parse_noting`]).
    pub fn parse(bytes: &[u8], file_stem: &str, owner: Option<&SessionId>) -> Result<Self, String> {
        Self::parse_noting(bytes, file_stem, owner).map(|(message, _)| message)
    }

    /// As [`Self::parse`], also returning the `inReplyTo` text that was
    /// dropped because it is not a message ID. The original plugin writes
    /// whatever string it is given there (its own tests use
    /// `msg-original-123`); the reference is only a link to an earlier
    /// message, so the message is still shown, without it. IDs that name a
    /// place (`id`, `from`, `to`) are never relaxed.
    pub fn parse_noting(
        bytes: &[u8],
        file_stem: &str,
        owner: Option<&SessionId>,
    ) -> Result<(Self, Option<String>), String> {
        let mut message: Message =
            serde_json::from_slice(bytes).map_err(|e| format!("not a valid message: {e}"))?;
        MessageId::parse(&message.id).map_err(|_| format!("bad message id {:?}", message.id))?;
        if message.id != file_stem {
            return Err(format!(
                "its id {:?} does not match its file name {file_stem:?}",
                message.id
            ));
        }
        SessionId::parse(&message.from).map_err(|_| format!("bad sender {:?}", message.from))?;
        SessionId::parse(&message.to).map_err(|_| format!("bad recipient {:?}", message.to))?;
        if let Some(owner) = owner
            && message.to != owner.as_str()
        {
            return Err(format!(
                "it is addressed to {:?}, not to this inbox's session {owner}",
                message.to
            ));
        }
        let dropped = match message.in_reply_to.take() {
            Some(reply_to) if MessageId::parse(&reply_to).is_ok() => {
                message.in_reply_to = Some(reply_to);
                None
            }
            // An empty string is how a shell script says "none".
            Some(reply_to) if reply_to.is_empty() => None,
            other => other,
        };
        Ok((message, dropped))
    }

    /// The file bytes, laid out as the original's `jq` writes them.
    pub fn to_bytes(&self) -> Vec<u8> {
        to_pretty_bytes(self)
    }

    /// The sender's validated ID.
    pub fn sender(&self) -> Option<SessionId> {
        SessionId::parse(&self.from).ok()
    }

    /// The recipient's validated ID.
    pub fn recipient(&self) -> Option<SessionId> {
        SessionId::parse(&self.to).ok()
    }
}

/// The bytes of a message file that [`Message::parse`] accepted, with its
/// top-level `status` value changed to `"read"` and every other byte kept
/// as it arrived: fields a newer peer added, and an `inReplyTo` that was
/// dropped for display, stay on disk. None when no top-level `status`
/// string is found as plain bytes (a key spelled with escapes, say).
pub fn marked_read(bytes: &[u8]) -> Option<Vec<u8>> {
    let (start, end) = status_value(bytes)?;
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..start]);
    out.extend_from_slice(b"\"read\"");
    out.extend_from_slice(&bytes[end..]);
    Some(out)
}

/// The top-level `status` value `"pending"` as plain bytes, to be
/// overwritten in place by [`READ_IN_PLACE`], which is as long.
pub const PENDING_VALUE: &[u8] = b"\"pending\"";

/// `"read"` followed by spaces, which JSON allows after a value: marking a
/// message read in place, without a new file (see [`pending_status_at`]).
pub const READ_IN_PLACE: &[u8] = b"\"read\"   ";

/// Where the top-level `status` value of a message file is
/// [`PENDING_VALUE`], spelled as plain bytes: writing [`READ_IN_PLACE`]
/// there gives the bytes [`marked_read`] gives, but for three spaces.
pub fn pending_status_at(bytes: &[u8]) -> Option<usize> {
    let (start, end) = status_value(bytes)?;
    (&bytes[start..end] == PENDING_VALUE).then_some(start)
}

/// The byte range of the top-level `status` string value, quotes included.
fn status_value(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    // True where a string at depth 1 is a key: after `{` or a `,` there.
    let mut at_key = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let end = string_end(bytes, i)?;
                if depth == 1 && at_key && &bytes[i + 1..end] == b"status" {
                    let mut j = skip_space(bytes, end + 1);
                    if bytes.get(j) != Some(&b':') {
                        return None;
                    }
                    j = skip_space(bytes, j + 1);
                    if bytes.get(j) != Some(&b'"') {
                        return None;
                    }
                    let value_end = string_end(bytes, j)?;
                    return Some((j, value_end + 1));
                }
                at_key = false;
                i = end + 1;
                continue;
            }
            b'{' => {
                depth += 1;
                at_key = depth == 1;
            }
            b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            b',' => at_key = depth == 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index of the quote that closes the JSON string opening at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// A manifest file (`sessions/<id>/manifest.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub session_id: String,
    pub project_name: String,
    pub project_path: String,
    pub started_at: String,
    pub last_heartbeat: String,
    pub status: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The agent client that registered the session, when it named itself
    /// (an MCP client's name and version). The original never writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The machine a session of another machine runs on, written by the
    /// relay that materialized it here; absent for a session of this
    /// machine. The original ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
}

/// What a registered session offers.
pub const CAPABILITIES: [&str; 3] = ["query", "context-dump", "conversation"];

/// Seconds without a heartbeat after which a session counts as stale.
pub const STALE_AFTER_SECS: u64 = 300;

/// How often a long-lived session (an MCP connection) refreshes its
/// heartbeat: five times within [`STALE_AFTER_SECS`].
pub const HEARTBEAT_EVERY_SECS: u64 = 60;

/// How long `ask` and `receive` wait for the reply when not told.
pub const REPLY_WAIT_SECS: u32 = 90;

impl Manifest {
    /// A manifest for a session registering now.
    pub fn new(id: &SessionId, project_path: &str) -> Self {
        let now = clock::now_stamp();
        Manifest {
            session_id: id.to_string(),
            project_name: project_name(project_path),
            project_path: project_path.to_string(),
            started_at: now.clone(),
            last_heartbeat: now,
            status: "active".to_string(),
            capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            client: None,
            machine: None,
        }
    }

    /// Parses a manifest and checks it belongs to the directory `dir_id`.
    pub fn parse(bytes: &[u8], dir_id: &SessionId) -> Result<Self, String> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("not a valid manifest: {e}"))?;
        if manifest.session_id != dir_id.as_str() {
            return Err(format!(
                "its sessionId {:?} does not match its directory {dir_id}",
                manifest.session_id
            ));
        }
        if !manifest.project_path.starts_with('/') {
            return Err(format!(
                "its projectPath {:?} is not absolute",
                manifest.project_path
            ));
        }
        Ok(manifest)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        to_pretty_bytes(self)
    }

    /// True when the heartbeat is more than 300 seconds old or unreadable.
    pub fn is_stale(&self) -> bool {
        self.heartbeat_older_than(STALE_AFTER_SECS)
    }

    /// True when the heartbeat is more than `secs` old or unreadable.
    pub fn heartbeat_older_than(&self, secs: u64) -> bool {
        clock::age(&self.last_heartbeat).is_none_or(|age| age.as_secs() > secs)
    }
}

/// The last component of a project path; the path itself for `/`.
pub fn project_name(project_path: &str) -> String {
    project_path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty())
        .unwrap_or(project_path)
        .to_string()
}

fn to_pretty_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("wire types always serialize");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL_MESSAGE: &str = r#"{
  "id": "msg-0dzhx0wgcik9",
  "from": "a1b2c3",
  "to": "d4e5f6",
  "type": "query",
  "timestamp": "2026-11-23T10:06:00Z",
  "status": "pending",
  "content": "What breaking changes did you make?",
  "inReplyTo": null,
  "metadata": {
    "urgency": "normal",
    "fromProject": "my-app"
  }
}
"#;

    #[test]
    fn an_original_message_round_trips_byte_for_byte() {
        let owner = SessionId::parse("d4e5f6").unwrap();
        let m = Message::parse(
            ORIGINAL_MESSAGE.as_bytes(),
            "msg-0dzhx0wgcik9",
            Some(&owner),
        )
        .unwrap();
        assert_eq!(m.kind, Kind::Query);
        assert_eq!(m.metadata.from_project, "my-app");
        assert_eq!(String::from_utf8(m.to_bytes()).unwrap(), ORIGINAL_MESSAGE);
    }

    #[test]
    fn misplaced_or_mistyped_messages_are_refused() {
        let owner = SessionId::parse("d4e5f6").unwrap();
        let other = SessionId::parse("zzzzzz").unwrap();
        let parse = |text: &str, stem: &str, owner: &SessionId| {
            Message::parse(text.as_bytes(), stem, Some(owner))
        };
        assert!(parse(ORIGINAL_MESSAGE, "msg-aaaaaaaaaaaa", &owner).is_err());
        assert!(parse(ORIGINAL_MESSAGE, "msg-0dzhx0wgcik9", &other).is_err());
        let wrong_type = ORIGINAL_MESSAGE.replace("\"query\"", "\"gossip\"");
        assert!(parse(&wrong_type, "msg-0dzhx0wgcik9", &owner).is_err());
        let dup = ORIGINAL_MESSAGE.replace("\"to\":", "\"to\": \"d4e5f6\", \"to\":");
        assert!(parse(&dup, "msg-0dzhx0wgcik9", &owner).is_err());
        let number = ORIGINAL_MESSAGE.replace("\"What breaking changes did you make?\"", "42");
        assert!(parse(&number, "msg-0dzhx0wgcik9", &owner).is_err());
        let evil_from = ORIGINAL_MESSAGE.replace("\"a1b2c3\"", "\"../../x\"");
        assert!(parse(&evil_from, "msg-0dzhx0wgcik9", &owner).is_err());
    }

    #[test]
    fn an_original_reference_that_is_no_message_id_is_dropped_not_refused() {
        let owner = SessionId::parse("d4e5f6").unwrap();
        let odd =
            ORIGINAL_MESSAGE.replace("\"inReplyTo\": null", "\"inReplyTo\": \"msg-original-123\"");
        let (m, dropped) =
            Message::parse_noting(odd.as_bytes(), "msg-0dzhx0wgcik9", Some(&owner)).unwrap();
        assert_eq!(m.in_reply_to, None);
        assert_eq!(m.content, "What breaking changes did you make?");
        assert_eq!(dropped.as_deref(), Some("msg-original-123"));
        let empty = ORIGINAL_MESSAGE.replace("\"inReplyTo\": null", "\"inReplyTo\": \"\"");
        let (m, dropped) =
            Message::parse_noting(empty.as_bytes(), "msg-0dzhx0wgcik9", Some(&owner)).unwrap();
        assert_eq!((m.in_reply_to, dropped), (None, None));
        let good =
            ORIGINAL_MESSAGE.replace("\"inReplyTo\": null", "\"inReplyTo\": \"msg-aaaaaaaaaaaa\"");
        let (m, dropped) =
            Message::parse_noting(good.as_bytes(), "msg-0dzhx0wgcik9", Some(&owner)).unwrap();
        assert_eq!(m.in_reply_to.as_deref(), Some("msg-aaaaaaaaaaaa"));
        assert_eq!(dropped, None);
    }

    #[test]
    fn marking_read_changes_the_top_level_status_and_nothing_else() {
        let marked = marked_read(ORIGINAL_MESSAGE.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(marked).unwrap(),
            ORIGINAL_MESSAGE.replace("\"status\": \"pending\"", "\"status\": \"read\"")
        );
        // A nested `status`, or one inside a string, is not the message's.
        let nested = r#"{"metadata":{"status":"pending"},"content":"\"status\": \"x\"","status" : "pending","z":[1,{"status":"q"}]}"#;
        assert_eq!(
            String::from_utf8(marked_read(nested.as_bytes()).unwrap()).unwrap(),
            r#"{"metadata":{"status":"pending"},"content":"\"status\": \"x\"","status" : "read","z":[1,{"status":"q"}]}"#
        );
        assert_eq!(marked_read(br#"{"content":"no status here"}"#), None);
        assert_eq!(marked_read(br#"{"status":"#), None);
    }

    #[test]
    fn a_pending_status_is_found_where_it_can_be_marked_read_in_place() {
        let original = ORIGINAL_MESSAGE.as_bytes();
        let at = pending_status_at(original).unwrap();
        let mut patched = original.to_vec();
        patched[at..at + READ_IN_PLACE.len()].copy_from_slice(READ_IN_PLACE);
        assert_eq!(
            String::from_utf8(patched).unwrap(),
            ORIGINAL_MESSAGE.replace("\"status\": \"pending\"", "\"status\": \"read\"   ")
        );
        assert_eq!(READ_IN_PLACE.len(), PENDING_VALUE.len());
        // Only a plain top-level "pending" is patched.
        let nested = br#"{"metadata":{"status":"pending"},"status":"read"}"#;
        assert_eq!(pending_status_at(nested), None);
        let escaped = br#"{"status":"p\u0065nding"}"#;
        assert_eq!(pending_status_at(escaped), None);
        assert_eq!(pending_status_at(br#"{"status":"pending"}"#), Some(10));
    }

    #[test]
    fn project_names_are_the_last_path_component() {
        assert_eq!(project_name("/home/me/my-lib"), "my-lib");
        assert_eq!(project_name("/home/me/my-lib/"), "my-lib");
        assert_eq!(project_name("/home/me/we\"ird\nnamé"), "we\"ird\nnamé");
        assert_eq!(project_name("/"), "/");
    }
}
