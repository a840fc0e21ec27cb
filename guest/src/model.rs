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
    /// The bridge directory's real path, for messages only.
    pub bridge_dir: String,
    /// Who runs the verb.
    pub caller: Caller,
    /// The agent process behind this session, as the host names it.
    pub agent_process: Option<String>,
    /// Session directories the host withholds: (name, what is wrong).
    pub withheld: Vec<(String, String)>,
    /// How long taken messages stay in a live mailbox before cleanup
    /// archives them (`--retention`, `BRIDGE_RETENTION`), unparsed.
    pub retention: Option<String>,
    /// The agent client behind this invocation, when it names itself (an
    /// MCP client); `start` records it in the manifest.
    pub client: Option<String>,
    /// Render the result a second time, as JSON, into
    /// [`Report::structured`] (the MCP server's tool results).
    pub structured: bool,
}

impl Context {
    /// A context for `project_dir` with nothing else set (tests, tools).
    pub fn for_project(project_dir: &str) -> Self {
        Context {
            session: None,
            agent_session: None,
            project_dir: project_dir.to_string(),
            working_dir: project_dir.to_string(),
            format: Format::Text,
            settings: Vec::new(),
            bridge_dir: String::new(),
            caller: Caller::Terminal,
            agent_process: None,
            withheld: Vec::new(),
            retention: None,
            client: None,
            structured: false,
        }
    }
}

/// Who runs a verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Terminal,
    AgentShell,
    WakeHook,
    /// A hook that hands a message to an agent that answers with the MCP
    /// tools (Codex's waker, Gemini CLI's AfterAgent hook).
    ToolWake,
    SessionHook,
    Mcp,
    Relay,
    /// The away answerer, which answers an away session's queries with
    /// read-only forks of its transcript.
    AwayAnswerer,
}

impl Caller {
    /// Whether this caller hands a message to an agent that nobody asked to
    /// look: it is never woken for nothing, and what it hands over is
    /// confirmed as seen only once the agent's transcript shows it.
    pub fn wakes(self) -> bool {
        matches!(self, Caller::WakeHook | Caller::ToolWake)
    }

    /// Whether the agent that reads this caller's text answers with the
    /// bridge's MCP tools rather than a command.
    pub fn uses_tools(self) -> bool {
        matches!(self, Caller::Mcp | Caller::ToolWake)
    }

    /// The taker kind recorded on a receipt.
    pub fn as_str(self) -> &'static str {
        match self {
            Caller::Terminal => "terminal",
            Caller::AgentShell => "agent-shell",
            Caller::WakeHook => "wake-hook",
            Caller::ToolWake => "tool-wake",
            Caller::SessionHook => "session-hook",
            Caller::Mcp => "mcp",
            Caller::Relay => "relay",
            Caller::AwayAnswerer => "away",
        }
    }
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
        in_reply_to: Option<String>,
    },
    Receive {
        message_id: String,
        timeout_seconds: u32,
    },
    Peers,
    Status,
    Heartbeat,
    Stop,
    CheckInbox,
    Track(String),
    Thread(String),
    History(HistoryQuery),
    Cleanup {
        dry_run: bool,
    },
    SessionStart,
    Seen {
        transcript: String,
    },
    RelayOutbound {
        machine: String,
    },
    RelayInbound {
        machine: String,
        /// The messages, as received.
        messages: Vec<crate::relay::InboundMail>,
        /// Whether an unknown sender is refused rather than reported.
        last_offer: bool,
    },
    RelayPresence {
        machine: String,
    },
    RelayMaterialize(MaterializeRequest),
    Away(AwayRequest),
    SessionEnd {
        transcript: Option<String>,
    },
    AwayTake {
        timeout_seconds: u32,
    },
    AwayRenew(ClaimTicket),
    AwayFinish(AwayResult),
}

/// Limits of away answers as `away on` sets them; None keeps the current
/// value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AwaySettings {
    pub max_turns: Option<u32>,
    pub max_seconds: Option<u32>,
    pub per_hour: Option<u32>,
    pub per_day: Option<u32>,
    pub spend_per_day: Option<f64>,
    pub allow_other_machines: Option<bool>,
}

/// What `away` does.
#[derive(Debug, Clone, PartialEq)]
pub enum AwayRequest {
    On(AwaySettings),
    Off,
    Status,
}

/// Why a read-only fork gave no answer, as the host classes it.
#[derive(Debug, Clone, PartialEq)]
pub enum AwayFailure {
    TimedOut(u32),
    TurnLimit(u32),
    TranscriptMissing(String),
    NotStarted(String),
    ClientError(String),
}

/// How a read-only fork ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AwayOutcome {
    Answered(String),
    Failed(AwayFailure),
}

/// What the fork of an away job did.
#[derive(Debug, Clone, PartialEq)]
pub struct AwayResult {
    pub ticket: ClaimTicket,
    pub outcome: AwayOutcome,
    pub turns: u32,
    pub cost_usd: f64,
    pub elapsed_ms: u64,
    /// When the transcript was last written (ms since the Unix epoch).
    pub last_written_ms: Option<u64>,
}

/// An away session, as `away status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AwaySession {
    pub session_id: String,
    pub agent_session: String,
    pub working_dir: String,
    pub transcript: Option<String>,
    pub since: String,
    pub pending: u32,
    pub held: u32,
}

/// What `away` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct AwayStatus {
    pub project_dir: String,
    pub enabled: bool,
    pub max_turns: u32,
    pub max_seconds: u32,
    pub per_hour: u32,
    pub per_day: u32,
    pub spend_per_day: f64,
    pub allow_other_machines: bool,
    pub answers_last_hour: u32,
    pub answers_last_day: u32,
    pub spent_last_day: f64,
    pub sessions: Vec<AwaySession>,
    pub stopped: Vec<String>,
}

/// A query claimed for a read-only fork.
#[derive(Debug, Clone)]
pub struct AwayJob {
    pub ticket: ClaimTicket,
    pub query: Message,
    pub prompt: String,
    pub agent_session: String,
    pub working_dir: String,
    pub transcript: Option<String>,
    pub max_turns: u32,
    pub max_seconds: u32,
}

/// A session of another machine, as the presence bucket holds it.
#[derive(Debug, Clone)]
pub struct RemoteEntry {
    pub machine: String,
    pub session_id: String,
    pub payload: Vec<u8>,
    pub signer: String,
    pub signature: String,
}

/// Arguments of `relay-materialize`, not yet validated.
#[derive(Debug, Clone, Default)]
pub struct MaterializeRequest {
    pub machine: String,
    pub remote: Vec<RemoteEntry>,
    pub complete: bool,
    pub gone: Vec<(String, String)>,
}

/// A message claimed for another machine.
#[derive(Debug, Clone)]
pub struct RelayItem {
    pub to_machine: String,
    pub message_id: String,
    pub payload: Vec<u8>,
    pub ticket: ClaimTicket,
}

/// What `relay-outbound` found.
#[derive(Debug, Clone, Default)]
pub struct RelayOutgoing {
    pub items: Vec<RelayItem>,
    pub watch: Vec<String>,
    pub sessions: String,
}

/// A session of this machine as the relay publishes it.
#[derive(Debug, Clone)]
pub struct PresenceEntry {
    pub session_id: String,
    pub payload: Vec<u8>,
}

/// What `relay-materialize` did.
#[derive(Debug, Clone, Default)]
pub struct MaterializeReport {
    pub added: Vec<String>,
    pub updated: u32,
    pub removed: Vec<String>,
    pub refused: Vec<String>,
}

/// What became of a message received from another machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundVerdict {
    Delivered(String),
    Duplicate(String),
    UnknownSender(String),
    Held(String),
    Refused(String),
    Untrusted(String),
}

impl Verb {
    /// The verb's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Id => "id",
            Verb::Connect(_) => "connect",
            Verb::Send { .. } => "send",
            Verb::Listen { .. } => "listen",
            Verb::Reply { .. } => "reply",
            Verb::Ask { .. } => "ask",
            Verb::Receive { .. } => "receive",
            Verb::Peers => "peers",
            Verb::Status => "status",
            Verb::Heartbeat => "heartbeat",
            Verb::Stop => "stop",
            Verb::CheckInbox => "check-inbox",
            Verb::Track(_) => "track",
            Verb::Thread(_) => "thread",
            Verb::History(_) => "history",
            Verb::Cleanup { .. } => "cleanup",
            Verb::SessionStart => "session-start",
            Verb::Seen { .. } => "seen",
            Verb::RelayOutbound { .. } => "relay-outbound",
            Verb::RelayInbound { .. } => "relay-inbound",
            Verb::RelayPresence { .. } => "relay-presence",
            Verb::RelayMaterialize(_) => "relay-materialize",
            Verb::Away(_) => "away",
            Verb::SessionEnd { .. } => "session-end",
            Verb::AwayTake { .. } => "away-take",
            Verb::AwayRenew(_) => "away-renew",
            Verb::AwayFinish(_) => "away-finish",
        }
    }
}

/// Arguments of `history`, not yet validated.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub peer: Option<String>,
    pub grep: Option<String>,
    pub limit: Option<u32>,
}

/// Whether the agent behind a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Running,
    NotRunning,
    Unknown,
    /// Its agent stopped; a read-only copy of its transcript answers.
    Away,
}

/// What `send`, `reply` and `ask` wrote.
#[derive(Debug, Clone)]
pub struct SentReport {
    pub message: Message,
    pub recipient: Liveness,
}

/// How far a sent message has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Queued,
    Relayed,
    /// The recipient is away and a limit held the message for its next
    /// live session; a later take supersedes it.
    Held,
    Taken,
    Seen,
    Answered,
    SetAside,
    RecipientGone,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Relayed => "relayed",
            Stage::Taken => "taken",
            Stage::Seen => "seen",
            Stage::Answered => "answered",
            Stage::SetAside => "set-aside",
            Stage::RecipientGone => "recipient-gone",
            Stage::Held => "held",
        }
    }
}

/// One step of a message's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptEvent {
    pub stage: Stage,
    /// UTC, second precision.
    pub at: String,
    pub by: Option<String>,
    pub taker: Option<String>,
    /// The reply's ID for `answered`, the reason for `set-aside`.
    pub detail: Option<String>,
}

/// Where a message this session sent stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub message: Message,
    pub stage: Stage,
    pub events: Vec<ReceiptEvent>,
    pub reply: Option<String>,
}

/// One message of a project's history.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub message: Message,
    pub outgoing: bool,
}

/// What `cleanup` did, or would do.
#[derive(Debug, Clone, Default)]
pub struct CleanupReport {
    pub dry_run: bool,
    pub sessions_removed: Vec<String>,
    pub messages_archived: u32,
    pub files_removed: u32,
    pub kept: Vec<String>,
}

/// What `session-start` did.
#[derive(Debug, Clone)]
pub struct SessionStartReport {
    pub session: Manifest,
    pub live_peers: Vec<Peer>,
    pub cleanup: CleanupReport,
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
    /// True when the agent has nothing to do with it.
    pub silent: bool,
    /// Peers' `session-ended` notices taken with this message; they never
    /// wake an agent on their own.
    pub notices: Vec<Message>,
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
    /// The latest `session-ended` notice of each peer that is gone, newest
    /// first.
    pub ended: Vec<Message>,
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
    Sent(SentReport),
    Delivered(Delivery),
    NothingPending,
    Answered(Delivery),
    Peers(Vec<PeerEntry>),
    Status(StatusReport),
    Heartbeat(Manifest),
    Stopped(StopReport),
    Tracked(Receipt),
    Thread(Vec<Message>),
    History(Vec<HistoryEntry>),
    Cleaned(CleanupReport),
    SessionStarted(SessionStartReport),
    Seen(Vec<String>),
    RelayOutgoing(RelayOutgoing),
    RelayReceived(Vec<InboundVerdict>),
    RelayPresence(Vec<PresenceEntry>),
    RelayMaterialized(MaterializeReport),
    Away(AwayStatus),
    WentAway(Manifest),
    AwayJob(Option<AwayJob>),
    AwayRenewed(ClaimTicket),
    AwayFinished(Option<Message>),
}

/// A verb's result as the host prints it.
#[derive(Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    pub rendered: String,
    pub warnings: Vec<String>,
    /// The result rendered as JSON as well, when [`Context::structured`].
    pub structured: Option<String>,
}

/// A verb that failed, with the warnings met on the way.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: crate::BridgeError,
    pub warnings: Vec<String>,
    /// What to print, in the context's format.
    pub rendered: String,
    /// Print `rendered` on standard output rather than standard error.
    pub to_stdout: bool,
}
