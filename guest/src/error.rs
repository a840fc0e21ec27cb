//! The failures a verb can end in. Each maps one-to-one onto the WIT
//! `bridge-error` variant; the host turns them into messages with a hint.

use std::fmt;
use std::io;
use std::path::Path;

/// Why a verb failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeError {
    /// A session ID that is not 6 characters of `[a-z0-9]`.
    InvalidSessionId(String),
    /// A message ID that is not `msg-` plus 12 characters of `[a-z0-9]`.
    InvalidMessageId(String),
    /// Another argument refused, with the reason.
    InvalidArgument(String),
    /// No session directory with this ID.
    NoSuchSession(String),
    /// No session could be resolved for this invocation.
    NoIdentity,
    /// No message with this ID where the verb looked.
    NoSuchMessage(String),
    /// Content over the limit.
    ContentTooLarge { size: u64, limit: u64 },
    /// Nothing arrived within this many seconds.
    TimedOut(u32),
    /// No reply to a query within this many seconds; where it stands.
    NotAnswered {
        seconds: u32,
        receipt: Box<crate::Receipt>,
    },
    /// A file exists but is malformed.
    Corrupt { path: String, reason: String },
    /// A file operation failed.
    Io { path: String, reason: String },
    /// The project pointer could not be read or written.
    Pointer(String),
    /// The session asked is away and a limit keeps its read-only copy from
    /// answering; the query stays queued for its next live session.
    Held(Box<HeldQuery>),
}

/// A query an away session's read-only copy will not answer, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldQuery {
    pub session_id: String,
    pub message_id: String,
    pub reason: String,
}

impl BridgeError {
    /// An I/O failure on `path` while doing `action`.
    pub fn io(action: &str, path: &Path, err: &io::Error) -> Self {
        BridgeError::Io {
            path: display_path(path),
            reason: format!("{action}: {}", describe_io(err)),
        }
    }

    /// A malformed file.
    pub fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        BridgeError::Corrupt {
            path: display_path(path),
            reason: reason.into(),
        }
    }
}

/// An I/O error in words, without the platform's error number noise.
pub fn describe_io(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::PermissionDenied => {
            "permission denied (outside the bridge directory, or not readable by you)".into()
        }
        io::ErrorKind::NotFound => "not found".into(),
        io::ErrorKind::AlreadyExists => "already exists".into(),
        io::ErrorKind::StorageFull => "no space left on the device".into(),
        io::ErrorKind::FileTooLarge => "file size limit exceeded".into(),
        _ => err.to_string(),
    }
}

/// A path as the user should read it: relative to the bridge directory.
pub fn display_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    text.strip_prefix("./").unwrap_or(&text).to_string()
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeError::InvalidSessionId(id) => write!(f, "invalid session ID {id:?}"),
            BridgeError::InvalidMessageId(id) => write!(f, "invalid message ID {id:?}"),
            BridgeError::InvalidArgument(why) => write!(f, "{why}"),
            BridgeError::NoSuchSession(id) => write!(f, "no session {id}"),
            BridgeError::NoIdentity => write!(f, "no session for this invocation"),
            BridgeError::NoSuchMessage(id) => write!(f, "no message {id}"),
            BridgeError::ContentTooLarge { size, limit } => {
                write!(f, "content is {size} bytes; the limit is {limit} bytes")
            }
            BridgeError::TimedOut(secs) => write!(f, "nothing arrived within {secs}s"),
            BridgeError::Held(held) => write!(
                f,
                "{} is away and did not answer {}: {}",
                held.session_id, held.message_id, held.reason
            ),
            BridgeError::NotAnswered { seconds, receipt } => write!(
                f,
                "no reply to {} within {seconds}s (it is {})",
                receipt.message.id,
                receipt.stage.as_str()
            ),
            BridgeError::Corrupt { path, reason } => write!(f, "{path} is malformed: {reason}"),
            BridgeError::Io { path, reason } => write!(f, "{path}: {reason}"),
            BridgeError::Pointer(why) => write!(f, "project pointer: {why}"),
        }
    }
}

impl std::error::Error for BridgeError {}

/// The result type of every verb.
pub type Result<T, E = BridgeError> = std::result::Result<T, E>;
