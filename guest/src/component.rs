//! The WebAssembly component layer: converts between the WIT types and the
//! library's, and adapts the host imports to [`Platform`]. No protocol rule
//! lives here.
//!
//! [`PolicyGuest`] turns any [`GuestPolicy`] into the guest's exports;
//! [`export_policy!`](crate::export_policy) exports it from a policy crate.
//! With the `default-guest` feature this crate exports [`DefaultPolicy`]
//! itself, which is how `bridge-host`'s embedded guest is built.

use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

use self::session_bridge::protocol::host as imports;
use crate::wire::{self, Kind, Status};
use crate::{Bridge, GuestPolicy, Layout, Platform, Watcher};

wit_bindgen::generate!({
    world: "bridge",
    path: "../wit/v0.2.0",
    pub_export_macro: true,
    export_macro_name: "export_bridge_guest",
    default_bindings_module: "session_bridge_guest::component",
    runtime_path: "session_bridge_guest::__wit_bindgen::rt",
});

/// Every type of the version's interfaces under one name, whichever
/// interface defines it (the whole vocabulary, whether this layer names a
/// type or only passes it through).
#[allow(unused_imports)]
mod wit {
    pub use super::session_bridge::protocol::about::{GuestInfo, Limits, McpText, ToolText};
    pub use super::session_bridge::protocol::context::{
        Caller, InvocationContext, OutputFormat, WithheldSession,
    };
    pub use super::session_bridge::protocol::errors::{
        BridgeError, Failure, FileProblem, HeldQuery, SizeLimit, Timeout,
    };
    pub use super::session_bridge::protocol::mail::{
        ClaimTicket, Delivery, HistoryEntry, Liveness, Manifest, Message, MessageId, MessageKind,
        MessageMetadata, MessageStatus, Peer, PeerEntry, Receipt, ReceiptEvent, SessionId, Stage,
        UnreadableSession,
    };
    pub use super::session_bridge::protocol::relay::{
        InboundMessage, InboundVerdict, MaterializeReport, PresenceEntry, RelayInboundRequest,
        RelayItem, RelayMaterializeRequest, RelayOutgoing, RelayRequest, RemoteEntry,
    };
    pub use super::session_bridge::protocol::reports::{
        AwayJob, AwaySession, AwayStatus, CleanupReport, Connection, Outcome, Report, SentReport,
        SessionStartReport, StatusReport, StopReport,
    };
    pub use super::session_bridge::protocol::verbs::{
        AskRequest, AwayFailure, AwayOutcome, AwayRequest, AwayResult, AwaySettings,
        CleanupRequest, HistoryRequest, ListenRequest, ReceiveRequest, ReplyRequest, SeenRequest,
        SendRequest, SessionEndRequest, Verb,
    };
}

struct HostPlatform;

struct HostWatcher(imports::Watcher);

impl Watcher for HostWatcher {
    fn wait(&mut self, timeout: Duration) -> bool {
        let ms = timeout.as_millis().min(u32::MAX as u128) as u32;
        self.0.wait(ms)
    }
}

impl Platform for HostPlatform {
    fn watch(&self, dir: &Path) -> Option<Box<dyn Watcher>> {
        let dir = dir.to_str()?;
        let watcher = imports::Watcher::watch(dir).ok()?;
        Some(Box::new(HostWatcher(watcher)))
    }

    fn read_pointer(&self) -> Option<String> {
        imports::read_project_pointer()
    }

    fn write_pointer(&self, id: &str) -> Result<(), crate::HostError> {
        imports::write_project_pointer(id).map_err(Into::into)
    }

    fn clear_pointer(&self, id: &str) -> Result<(), crate::HostError> {
        imports::clear_project_pointer(id).map_err(Into::into)
    }

    fn process_running(&self, process: &str) -> Option<bool> {
        imports::process_running(process)
    }

    fn flush_all(&self) -> Result<(), crate::HostError> {
        imports::flush_bridge_dir().map_err(Into::into)
    }

    fn answer_away(&self, session: &str) -> Result<(), crate::HostError> {
        imports::answer_away(session).map_err(Into::into)
    }
}

impl From<imports::HostError> for crate::HostError {
    fn from(error: imports::HostError) -> Self {
        use crate::HostError as E;
        match error {
            imports::HostError::OutsideBridgeDir(path) => E::OutsideBridgeDir(path),
            imports::HostError::Withheld(path) => E::Withheld(path),
            imports::HostError::Replaced(path) => E::Replaced(path),
            imports::HostError::TooManyWatchers(most) => E::TooManyWatchers(most),
            imports::HostError::NoProjectDir => E::NoProjectDir,
            imports::HostError::Unsupported => E::Unsupported,
            imports::HostError::Io(failure) => E::Io {
                path: failure.path,
                kind: match failure.kind {
                    imports::IoKind::NotFound => crate::IoKind::NotFound,
                    imports::IoKind::PermissionDenied => crate::IoKind::PermissionDenied,
                    imports::IoKind::NoSpace => crate::IoKind::NoSpace,
                    imports::IoKind::ReadOnly => crate::IoKind::ReadOnly,
                    imports::IoKind::Other => crate::IoKind::Other,
                },
                detail: failure.detail,
            },
        }
    }
}

/// The guest exports, for the policy `T`.
pub struct PolicyGuest<T>(PhantomData<T>);

impl<T: GuestPolicy> PolicyGuest<T> {
    /// The bridge directory is the guest's only preopened directory;
    /// relative paths resolve inside it.
    fn bridge(settings: &[(String, String)]) -> Result<Bridge<HostPlatform>, crate::BridgeError> {
        let policy = T::configure(settings)?;
        Ok(
            Bridge::with_policy(Layout::new(""), HostPlatform, Box::new(policy))
                .with_caches(crate::instance::caches()),
        )
    }
}

impl<T: GuestPolicy> Guest for PolicyGuest<T> {
    fn info() -> wit::GuestInfo {
        wit::GuestInfo {
            name: T::NAME.into(),
            version: T::VERSION.into(),
        }
    }

    fn limits() -> wit::Limits {
        wit::Limits {
            max_content_bytes: wire::MAX_CONTENT_BYTES as u64,
            max_message_file_bytes: wire::MAX_MESSAGE_FILE_BYTES,
            claim_lease_seconds: crate::mailbox::CLAIM_LEASE.as_secs() as u32,
            stale_after_seconds: wire::STALE_AFTER_SECS as u32,
            heartbeat_seconds: wire::HEARTBEAT_EVERY_SECS as u32,
            reply_wait_seconds: wire::REPLY_WAIT_SECS,
        }
    }

    fn mcp_text() -> wit::McpText {
        let text = crate::mcp_text();
        wit::McpText {
            instructions: text.instructions,
            tools: text
                .tools
                .into_iter()
                .map(|tool| wit::ToolText {
                    name: tool.name.into(),
                    description: tool.description,
                    arguments: tool
                        .arguments
                        .into_iter()
                        .map(|(name, text)| (name.into(), text))
                        .collect(),
                })
                .collect(),
        }
    }

    fn run(context: wit::InvocationContext, verb: wit::Verb) -> Result<wit::Report, wit::Failure> {
        let context: crate::Context = context.into();
        let verb: crate::Verb = verb.into();
        let failed = |failure: crate::Failure| wit::Failure {
            message: crate::failure_text::quoted(&failure.rendered),
            refused: crate::failure_text::refused_sessions(&failure.error, &context),
            error: failure.error.into(),
            warnings: failure.warnings,
            rendered: failure.rendered,
            to_stdout: failure.to_stdout,
        };
        let bridge = Self::bridge(&context.settings).map_err(|error| {
            let (rendered, to_stdout) = crate::failure_text::render(&error, verb.name(), &context);
            failed(crate::Failure {
                error,
                warnings: Vec::new(),
                rendered,
                to_stdout,
            })
        })?;
        let report = bridge.run(&context, verb).map_err(failed)?;
        Ok(wit::Report {
            outcome: report.outcome.into(),
            rendered: report.rendered,
            warnings: report.warnings,
            structured: report.structured,
        })
    }

    fn commit_delivery(
        context: wit::InvocationContext,
        ticket: wit::ClaimTicket,
    ) -> Result<(), wit::BridgeError> {
        let context: crate::Context = context.into();
        Self::bridge(&context.settings)?
            .commit_delivery_as(&context, &ticket.into())
            .map_err(wit::BridgeError::from)
    }
}

/// Exports a [`GuestPolicy`] as this component's guest. Use it once, in the
/// policy crate's `lib.rs`: `session_bridge_guest::export_policy!(MyPolicy);`
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        type __SessionBridgePolicyGuest = $crate::component::PolicyGuest<$policy>;
        $crate::component::export_bridge_guest!(__SessionBridgePolicyGuest with_types_in $crate::component);
    };
}

#[cfg(feature = "default-guest")]
type DefaultGuest = PolicyGuest<crate::DefaultPolicy>;
#[cfg(feature = "default-guest")]
export_bridge_guest!(DefaultGuest with_types_in crate::component);

impl From<wit::InvocationContext> for crate::Context {
    fn from(c: wit::InvocationContext) -> Self {
        crate::Context {
            session: c.session,
            agent_session: c.agent_session,
            project_dir: c.project_dir,
            working_dir: c.working_dir,
            format: match c.format {
                wit::OutputFormat::Text | wit::OutputFormat::TextAndJson => crate::Format::Text,
                wit::OutputFormat::Json => crate::Format::Json,
            },
            structured: matches!(c.format, wit::OutputFormat::TextAndJson),
            client: c.client,
            settings: c.settings,
            bridge_dir: c.bridge_dir,
            caller: match c.caller {
                wit::Caller::Terminal => crate::Caller::Terminal,
                wit::Caller::AgentShell => crate::Caller::AgentShell,
                wit::Caller::WakeHook => crate::Caller::WakeHook,
                wit::Caller::ToolWake => crate::Caller::ToolWake,
                wit::Caller::SessionHook => crate::Caller::SessionHook,
                wit::Caller::Mcp => crate::Caller::Mcp,
                wit::Caller::Relay => crate::Caller::Relay,
                wit::Caller::AwayAnswerer => crate::Caller::AwayAnswerer,
            },
            agent_process: c.agent_process,
            withheld: c
                .withheld
                .into_iter()
                .map(|w| (w.session_id, w.problem))
                .collect(),
            retention: c.retention,
        }
    }
}
impl From<wit::MessageKind> for Kind {
    fn from(kind: wit::MessageKind) -> Self {
        match kind {
            wit::MessageKind::Query => Kind::Query,
            wit::MessageKind::Response => Kind::Response,
            wit::MessageKind::Ping => Kind::Ping,
            wit::MessageKind::SessionEnded => Kind::SessionEnded,
        }
    }
}

impl From<Kind> for wit::MessageKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Query => wit::MessageKind::Query,
            Kind::Response => wit::MessageKind::Response,
            Kind::Ping => wit::MessageKind::Ping,
            Kind::SessionEnded => wit::MessageKind::SessionEnded,
        }
    }
}

impl From<wit::Verb> for crate::Verb {
    fn from(verb: wit::Verb) -> Self {
        use crate::Verb as V;
        match verb {
            wit::Verb::Start => V::Start,
            wit::Verb::Id => V::Id,
            wit::Verb::Connect(peer) => V::Connect(peer),
            wit::Verb::Send(r) => V::Send {
                to: r.to,
                kind: r.kind.into(),
                content: r.content,
                in_reply_to: r.in_reply_to,
            },
            wit::Verb::Listen(r) => V::Listen {
                timeout_seconds: r.timeout_seconds,
            },
            wit::Verb::Reply(r) => V::Reply {
                message_id: r.message_id,
                content: r.content,
            },
            wit::Verb::Ask(r) => V::Ask {
                to: r.to,
                content: r.content,
                timeout_seconds: r.timeout_seconds,
                in_reply_to: r.in_reply_to,
            },
            wit::Verb::Receive(r) => V::Receive {
                message_id: r.message_id,
                timeout_seconds: r.timeout_seconds,
            },
            wit::Verb::Peers => V::Peers,
            wit::Verb::Status => V::Status,
            wit::Verb::Heartbeat => V::Heartbeat,
            wit::Verb::Stop => V::Stop,
            wit::Verb::CheckInbox => V::CheckInbox,
            wit::Verb::Track(id) => V::Track(id),
            wit::Verb::Thread(id) => V::Thread(id),
            wit::Verb::History(r) => V::History(crate::HistoryQuery {
                peer: r.peer,
                grep: r.grep,
                limit: r.limit,
            }),
            wit::Verb::Cleanup(r) => V::Cleanup { dry_run: r.dry_run },
            wit::Verb::SessionStart => V::SessionStart,
            wit::Verb::Seen(r) => V::Seen {
                transcript: r.transcript,
            },
            wit::Verb::RelayOutbound(r) => V::RelayOutbound { machine: r.machine },
            wit::Verb::RelayInbound(r) => V::RelayInbound {
                machine: r.machine,
                messages: r
                    .messages
                    .into_iter()
                    .map(|m| crate::relay::InboundMail {
                        from_machine: m.from_machine,
                        payload: m.payload,
                        signer: m.signer,
                        signature: m.signature,
                    })
                    .collect(),
                last_offer: r.last_offer,
            },
            wit::Verb::RelayPresence(r) => V::RelayPresence { machine: r.machine },
            wit::Verb::RelayMaterialize(r) => V::RelayMaterialize(crate::MaterializeRequest {
                machine: r.machine,
                remote: r
                    .remote
                    .into_iter()
                    .map(|e| crate::RemoteEntry {
                        machine: e.machine,
                        session_id: e.session_id,
                        payload: e.payload,
                        signer: e.signer,
                        signature: e.signature,
                    })
                    .collect(),
                complete: r.complete,
                gone: r.gone,
            }),
            wit::Verb::Away(r) => V::Away(match r {
                wit::AwayRequest::On(s) => crate::AwayRequest::On(crate::AwaySettings {
                    max_turns: s.max_turns,
                    max_seconds: s.max_seconds,
                    per_hour: s.per_hour,
                    per_day: s.per_day,
                    spend_per_day: s.spend_per_day,
                    allow_other_machines: s.allow_other_machines,
                }),
                wit::AwayRequest::Off => crate::AwayRequest::Off,
                wit::AwayRequest::Status => crate::AwayRequest::Status,
            }),
            wit::Verb::SessionEnd(r) => V::SessionEnd {
                transcript: r.transcript,
            },
            wit::Verb::AwayTake(seconds) => V::AwayTake {
                timeout_seconds: seconds,
            },
            wit::Verb::AwayRenew(t) => V::AwayRenew(t.into()),
            wit::Verb::AwayFinish(r) => V::AwayFinish(crate::AwayResult {
                ticket: r.ticket.into(),
                outcome: match r.outcome {
                    wit::AwayOutcome::Answered(text) => crate::AwayOutcome::Answered(text),
                    wit::AwayOutcome::Failed(f) => crate::AwayOutcome::Failed(match f {
                        wit::AwayFailure::TimedOut(s) => crate::AwayFailure::TimedOut(s),
                        wit::AwayFailure::TurnLimit(t) => crate::AwayFailure::TurnLimit(t),
                        wit::AwayFailure::TranscriptMissing(p) => {
                            crate::AwayFailure::TranscriptMissing(p)
                        }
                        wit::AwayFailure::NotStarted(w) => crate::AwayFailure::NotStarted(w),
                        wit::AwayFailure::ClientError(w) => crate::AwayFailure::ClientError(w),
                    }),
                },
                turns: r.turns,
                cost_usd: r.cost_usd,
                elapsed_ms: r.elapsed_ms,
                last_written_ms: r.last_written_ms,
            }),
        }
    }
}

impl From<wit::ClaimTicket> for crate::ClaimTicket {
    fn from(t: wit::ClaimTicket) -> Self {
        crate::ClaimTicket {
            session_id: t.session_id,
            message_id: t.message_id,
            claim_name: t.claim_name,
        }
    }
}

impl From<crate::ClaimTicket> for wit::ClaimTicket {
    fn from(t: crate::ClaimTicket) -> Self {
        wit::ClaimTicket {
            session_id: t.session_id,
            message_id: t.message_id,
            claim_name: t.claim_name,
        }
    }
}

impl From<wire::Message> for wit::Message {
    fn from(m: wire::Message) -> Self {
        wit::Message {
            id: m.id,
            from: m.from,
            to: m.to,
            kind: m.kind.into(),
            timestamp: m.timestamp,
            status: match m.status {
                Status::Pending => wit::MessageStatus::Pending,
                Status::Read => wit::MessageStatus::Read,
                Status::Sent => wit::MessageStatus::Sent,
            },
            content: m.content,
            in_reply_to: m.in_reply_to,
            metadata: wit::MessageMetadata {
                urgency: m.metadata.urgency,
                from_project: m.metadata.from_project,
            },
        }
    }
}

impl From<wire::Manifest> for wit::Manifest {
    fn from(m: wire::Manifest) -> Self {
        wit::Manifest {
            session_id: m.session_id,
            project_name: m.project_name,
            project_path: m.project_path,
            started_at: m.started_at,
            last_heartbeat: m.last_heartbeat,
            status: m.status,
            capabilities: m.capabilities,
            client: m.client,
            machine: m.machine,
        }
    }
}

impl From<crate::Peer> for wit::Peer {
    fn from(p: crate::Peer) -> Self {
        wit::Peer {
            manifest: p.manifest.into(),
            stale: p.stale,
            this_session: p.this_session,
        }
    }
}

impl From<crate::Delivery> for wit::Delivery {
    fn from(d: crate::Delivery) -> Self {
        wit::Delivery {
            message: d.message.into(),
            ticket: d.ticket.into(),
            answered_ping: d.answered_ping.map(Into::into),
            notices: d.notices.into_iter().map(Into::into).collect(),
            silent: d.silent,
        }
    }
}

impl From<crate::Liveness> for wit::Liveness {
    fn from(l: crate::Liveness) -> Self {
        match l {
            crate::Liveness::Running => wit::Liveness::Running,
            crate::Liveness::NotRunning => wit::Liveness::NotRunning,
            crate::Liveness::Unknown => wit::Liveness::Unknown,
            crate::Liveness::Away => wit::Liveness::Away,
        }
    }
}

impl From<crate::Stage> for wit::Stage {
    fn from(s: crate::Stage) -> Self {
        match s {
            crate::Stage::Queued => wit::Stage::Queued,
            crate::Stage::Relayed => wit::Stage::Relayed,
            crate::Stage::Taken => wit::Stage::Taken,
            crate::Stage::Seen => wit::Stage::Seen,
            crate::Stage::Answered => wit::Stage::Answered,
            crate::Stage::SetAside => wit::Stage::SetAside,
            crate::Stage::RecipientGone => wit::Stage::RecipientGone,
            crate::Stage::Held => wit::Stage::Held,
        }
    }
}

impl From<crate::Receipt> for wit::Receipt {
    fn from(r: crate::Receipt) -> Self {
        wit::Receipt {
            message: r.message.into(),
            stage: r.stage.into(),
            events: r
                .events
                .into_iter()
                .map(|e| wit::ReceiptEvent {
                    stage: e.stage.into(),
                    at: e.at,
                    by: e.by,
                    taker: e.taker,
                    detail: e.detail,
                })
                .collect(),
            reply: r.reply,
        }
    }
}

impl From<crate::CleanupReport> for wit::CleanupReport {
    fn from(r: crate::CleanupReport) -> Self {
        wit::CleanupReport {
            dry_run: r.dry_run,
            sessions_removed: r.sessions_removed,
            messages_archived: r.messages_archived,
            files_removed: r.files_removed,
            kept: r.kept,
        }
    }
}

impl From<crate::Outcome> for wit::Outcome {
    fn from(outcome: crate::Outcome) -> Self {
        use crate::Outcome as O;
        match outcome {
            O::Session(m) => wit::Outcome::Session(m.into()),
            O::Connected { peer, stale, ping } => wit::Outcome::Connected(wit::Connection {
                peer: peer.into(),
                stale,
                ping: ping.into(),
            }),
            O::Sent(r) => wit::Outcome::Sent(wit::SentReport {
                message: r.message.into(),
                recipient: r.recipient.into(),
            }),
            O::NothingPending => wit::Outcome::NothingPending,
            O::Delivered(d) => wit::Outcome::Delivered(d.into()),
            O::Answered(d) => wit::Outcome::Answered(d.into()),
            O::Peers(entries) => wit::Outcome::Peers(
                entries
                    .into_iter()
                    .map(|e| match e {
                        crate::PeerEntry::Valid(p) => wit::PeerEntry::Valid(p.into()),
                        crate::PeerEntry::Unreadable { session_id, reason } => {
                            wit::PeerEntry::Unreadable(wit::UnreadableSession {
                                session_id,
                                reason,
                            })
                        }
                        crate::PeerEntry::Unsafe { session_id, reason } => {
                            wit::PeerEntry::Withheld(wit::UnreadableSession { session_id, reason })
                        }
                    })
                    .collect(),
            ),
            O::Status(r) => wit::Outcome::Status(wit::StatusReport {
                session: r.session.into(),
                connected: r.connected.into_iter().map(Into::into).collect(),
                pending: r.pending,
                sent: r.sent,
                ended: r.ended.into_iter().map(Into::into).collect(),
            }),
            O::Heartbeat(m) => wit::Outcome::Heartbeat(m.into()),
            O::Stopped(r) => wit::Outcome::Stopped(wit::StopReport {
                session_id: r.session_id,
                notified: r.notified,
                pruned: r.pruned,
            }),
            O::Tracked(r) => wit::Outcome::Tracked(r.into()),
            O::Thread(ms) => wit::Outcome::Thread(ms.into_iter().map(Into::into).collect()),
            O::History(es) => wit::Outcome::History(
                es.into_iter()
                    .map(|e| wit::HistoryEntry {
                        message: e.message.into(),
                        outgoing: e.outgoing,
                    })
                    .collect(),
            ),
            O::Cleaned(r) => wit::Outcome::Cleaned(r.into()),
            O::SessionStarted(r) => wit::Outcome::SessionStarted(wit::SessionStartReport {
                session: r.session.into(),
                live_peers: r.live_peers.into_iter().map(Into::into).collect(),
                cleanup: r.cleanup.into(),
            }),
            O::Seen(ids) => wit::Outcome::Seen(ids),
            O::RelayOutgoing(r) => wit::Outcome::RelayOutgoing(wit::RelayOutgoing {
                items: r
                    .items
                    .into_iter()
                    .map(|i| wit::RelayItem {
                        to_machine: i.to_machine,
                        message_id: i.message_id,
                        payload: i.payload,
                        ticket: i.ticket.into(),
                    })
                    .collect(),
                watch: r.watch,
                sessions: r.sessions,
            }),
            O::RelayReceived(vs) => wit::Outcome::RelayReceived(
                vs.into_iter()
                    .map(|v| match v {
                        crate::InboundVerdict::Delivered(id) => wit::InboundVerdict::Delivered(id),
                        crate::InboundVerdict::Duplicate(id) => wit::InboundVerdict::Duplicate(id),
                        crate::InboundVerdict::UnknownSender(id) => {
                            wit::InboundVerdict::UnknownSender(id)
                        }
                        crate::InboundVerdict::Held(id) => wit::InboundVerdict::Held(id),
                        crate::InboundVerdict::Refused(why) => wit::InboundVerdict::Refused(why),
                        crate::InboundVerdict::Untrusted(why) => {
                            wit::InboundVerdict::Untrusted(why)
                        }
                    })
                    .collect(),
            ),
            O::RelayPresence(es) => wit::Outcome::RelayPresence(
                es.into_iter()
                    .map(|e| wit::PresenceEntry {
                        session_id: e.session_id,
                        payload: e.payload,
                    })
                    .collect(),
            ),
            O::RelayMaterialized(r) => wit::Outcome::RelayMaterialized(wit::MaterializeReport {
                added: r.added,
                updated: r.updated,
                removed: r.removed,
                refused: r.refused,
            }),
            O::Away(s) => wit::Outcome::Away(wit::AwayStatus {
                project_dir: s.project_dir,
                enabled: s.enabled,
                max_turns: s.max_turns,
                max_seconds: s.max_seconds,
                per_hour: s.per_hour,
                per_day: s.per_day,
                spend_per_day: s.spend_per_day,
                allow_other_machines: s.allow_other_machines,
                answers_last_hour: s.answers_last_hour,
                answers_last_day: s.answers_last_day,
                spent_last_day: s.spent_last_day,
                sessions: s
                    .sessions
                    .into_iter()
                    .map(|a| wit::AwaySession {
                        session_id: a.session_id,
                        agent_session: a.agent_session,
                        working_dir: a.working_dir,
                        transcript: a.transcript,
                        since: a.since,
                        pending: a.pending,
                        held: a.held,
                    })
                    .collect(),
                stopped: s.stopped,
            }),
            O::WentAway(m) => wit::Outcome::WentAway(m.into()),
            O::AwayJob(job) => wit::Outcome::AwayJob(job.map(|j| wit::AwayJob {
                ticket: j.ticket.into(),
                query: j.query.into(),
                prompt: j.prompt,
                agent_session: j.agent_session,
                working_dir: j.working_dir,
                transcript: j.transcript,
                max_turns: j.max_turns,
                max_seconds: j.max_seconds,
            })),
            O::AwayRenewed(t) => wit::Outcome::AwayRenewed(t.into()),
            O::AwayFinished(m) => wit::Outcome::AwayFinished(m.map(Into::into)),
        }
    }
}

impl From<crate::BridgeError> for wit::BridgeError {
    fn from(e: crate::BridgeError) -> Self {
        use crate::BridgeError as E;
        match e {
            E::InvalidSessionId(s) => wit::BridgeError::InvalidSessionId(s),
            E::InvalidMessageId(s) => wit::BridgeError::InvalidMessageId(s),
            E::InvalidArgument(s) => wit::BridgeError::InvalidArgument(s),
            E::NoSuchSession(s) => wit::BridgeError::NoSuchSession(s),
            E::NoIdentity => wit::BridgeError::NoIdentity,
            E::NoSuchMessage(s) => wit::BridgeError::NoSuchMessage(s),
            E::ContentTooLarge { size, limit } => {
                wit::BridgeError::ContentTooLarge(wit::SizeLimit { size, limit })
            }
            E::TimedOut(seconds) => wit::BridgeError::TimedOut(wit::Timeout {
                seconds,
                receipt: None,
            }),
            E::NotAnswered { seconds, receipt } => wit::BridgeError::TimedOut(wit::Timeout {
                seconds,
                receipt: Some((*receipt).into()),
            }),
            E::Corrupt { path, reason } => {
                wit::BridgeError::Corrupt(wit::FileProblem { path, reason })
            }
            E::Io { path, reason } => wit::BridgeError::Io(wit::FileProblem { path, reason }),
            E::Pointer(s) => wit::BridgeError::Pointer(s),
            E::Held(held) => wit::BridgeError::Held(wit::HeldQuery {
                session_id: held.session_id,
                message_id: held.message_id,
                reason: held.reason,
            }),
        }
    }
}
