//! The typed inputs and outputs of a verb, mirroring the WIT `types`
//! interface.

use crate::wire::{Kind, Manifest, Message};

/// How output is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Facts about an invocation that the sandbox cannot see.
#[derive(Debug, Clone)]
pub struct Context {
    /// `--session` or `BRIDGE_SESSION_ID`.
    pub session: Option<String>,
    /// `CLAUDE_CODE_SESSION_ID`.
    pub agent_session: Option<String>,
    /// The absolute project directory.
    pub project_dir: String,
    /// The absolute working directory.
    pub working_dir: String,
    pub format: Format,
    /// Policy settings (`--guest-setting KEY=VALUE`), in the order given.
    pub settings: Vec<(String, String)>,
}

/// One verb with its arguments, not yet validated.
#[derive(Debug, Clone)]
pub enum Verb {
    Start,
    Id,
    Connect(String),
    Send {
        to: String,
        kind: Kind,
        content: String,
        in_reply_to: Option<String>,
    },
    Listen {
        timeout_seconds: Option<u32>,
    },
    Reply {
        message_id: String,
        content: String,
    },
    Ask {
        to: String,
        content: String,
        timeout_seconds: u32,
    },
    Receive {
        message_id: String,
        timeout_seconds: u32,
    },
    Peers,
    Status,
    Heartbeat,
    Stop,
}

/// Proof of a claim on a delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimTicket {
    pub session_id: String,
    pub message_id: String,
    pub claim_name: String,
}

/// A message handed to this session.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Message,
    pub ticket: ClaimTicket,
    pub answered_ping: Option<Message>,
}

/// A session in the peers listing.
#[derive(Debug, Clone)]
pub struct Peer {
    pub manifest: Manifest,
    pub stale: bool,
    pub this_session: bool,
}

/// One row of the peers listing.
#[derive(Debug, Clone)]
pub enum PeerEntry {
    Valid(Peer),
    Unreadable {
        session_id: String,
        reason: String,
    },
    /// A session directory the host refused access to, because it is not
    /// private: listed, never used as a peer.
    Unsafe {
        session_id: String,
        reason: String,
    },
}

/// What `status` reports.
#[derive(Debug, Clone)]
pub struct StatusReport {
    pub session: Manifest,
    pub connected: Vec<Peer>,
    pub pending: u32,
    pub sent: u32,
}

/// What `stop` did.
#[derive(Debug, Clone)]
pub struct StopReport {
    pub session_id: String,
    pub notified: Vec<String>,
    pub pruned: Vec<String>,
}

/// The typed result of a verb.
#[derive(Debug, Clone)]
pub enum Outcome {
    Session(Manifest),
    Connected {
        peer: Manifest,
        stale: bool,
        ping: Message,
    },
    Sent(Message),
    Delivered(Delivery),
    Answered(Delivery),
    Peers(Vec<PeerEntry>),
    Status(StatusReport),
    Heartbeat(Manifest),
    Stopped(StopReport),
}

/// A verb's result as the host prints it.
#[derive(Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    pub rendered: String,
    pub warnings: Vec<String>,
}

/// A verb that failed, with the warnings met on the way.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: crate::BridgeError,
    pub warnings: Vec<String>,
}
