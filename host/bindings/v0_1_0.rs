//! `session-bridge:protocol@0.1.0`, frozen, bound from `wit/v0.1.0/`. A
//! guest built against it runs unchanged: the host's requests, in the
//! newest version's types, are turned into 0.1.0's, and its answers back.
//! 0.1.0 guests render no failures, so this module words them as the host
//! did when 0.1.0 was current; verbs 0.1.0 lacks are refused with a
//! message naming the version that has them.

use anyhow::Result;
use wasmtime::Store;

use super::current::wit as new;
use crate::sandbox::HostState;

wasmtime::component::bindgen!({
    world: "bridge",
    path: "wit/v0.1.0",
    imports: { default: trappable },
    with: {
        "session-bridge:protocol/host.watcher": crate::watch::DirWatcher,
    },
});

use self::session_bridge::protocol::types as old;

impl old::Host for HostState {}

host_interface!(session_bridge::protocol::host, String, host_error_text, {});

/// A host failure as 0.1.0's imports return it: text, worded here as the
/// host worded it when 0.1.0 was current (0.2.0 guests word it themselves).
fn host_error_text(error: new::HostError) -> String {
    match error {
        new::HostError::OutsideBridgeDir(path) => {
            format!("{path} is not a relative path inside the bridge directory")
        }
        new::HostError::Withheld(path) => {
            format!("{path}: bridge-host withholds this session directory (it is not private)")
        }
        new::HostError::Replaced(path) => {
            format!("{path} is no longer the folder that was opened; not watching it")
        }
        new::HostError::TooManyWatchers(most) => format!("at most {most} watchers at once"),
        new::HostError::NoProjectDir => "this invocation has no project directory".into(),
        new::HostError::Unsupported => "this platform flushes one file at a time".into(),
        new::HostError::Io(failure) => format!("{}: {}", failure.path, failure.detail),
    }
}

/// An instantiated 0.1.0 guest.
pub struct Instance(Bridge);

impl Instance {
    instantiate!("0.1.0");

    pub fn info(&self, store: &mut Store<HostState>) -> wasmtime::Result<new::GuestInfo> {
        let info = self.0.call_info(store)?;
        Ok(new::GuestInfo {
            name: info.name,
            version: info.version,
        })
    }

    pub fn limits(&self, store: &mut Store<HostState>) -> wasmtime::Result<new::Limits> {
        let limits = self.0.call_limits(store)?;
        // 0.1.0 gave only its content limit; the rest are 0.1.0's rules,
        // which it did not report.
        Ok(new::Limits {
            max_content_bytes: limits.max_content_bytes,
            max_message_file_bytes: 7 << 20,
            claim_lease_seconds: 10,
            stale_after_seconds: 300,
            heartbeat_seconds: 60,
            reply_wait_seconds: 90,
        })
    }

    /// 0.1.0 guests word no MCP text.
    pub fn mcp_text(
        &self,
        _store: &mut Store<HostState>,
    ) -> wasmtime::Result<Option<new::McpText>> {
        Ok(None)
    }

    /// Runs `verb`, as one or more 0.1.0 calls.
    pub fn run(
        &self,
        store: &mut Store<HostState>,
        context: &new::InvocationContext,
        verb: &new::Verb,
    ) -> wasmtime::Result<Result<new::Report, new::Failure>> {
        let old_context = old_context(context);
        let (old_verb, name) = match old_verb(verb) {
            Ok(found) => found,
            Err(missing) => return Ok(Err(refusal(missing, context))),
        };
        let result = self.0.call_run(&mut *store, &old_context, &old_verb)?;
        let report = match result {
            Ok(report) => report,
            Err(failure) => {
                // check-inbox is listen that does not wait; nothing waiting
                // is its answer, not a failure.
                if matches!(verb, new::Verb::CheckInbox)
                    && matches!(failure.error, old::BridgeError::TimedOut(_))
                {
                    let text = !matches!(context.format, new::OutputFormat::Json);
                    return Ok(Ok(new::Report {
                        outcome: new::Outcome::NothingPending,
                        rendered: if text {
                            "No new messages.\n".into()
                        } else {
                            "{\"message\":null,\"nothingPending\":true}\n".into()
                        },
                        warnings: failure.warnings,
                        structured: None,
                    }));
                }
                return Ok(Err(new_failure(failure, name, context)));
            }
        };
        let outcome = new_outcome(report.outcome);
        let outcome = match (verb, outcome) {
            (new::Verb::SessionStart, new::Outcome::Session(session)) => {
                return Ok(Ok(new::Report {
                    rendered: format!(
                        "session-bridge: this session is bridge session {id}; another session \
                         reaches it with /session-bridge:connect {id}.\n",
                        id = session.session_id
                    ),
                    outcome: new::Outcome::SessionStarted(new::SessionStartReport {
                        session,
                        live_peers: Vec::new(),
                        cleanup: new::CleanupReport {
                            dry_run: false,
                            sessions_removed: Vec::new(),
                            messages_archived: 0,
                            files_removed: 0,
                            kept: Vec::new(),
                        },
                    }),
                    warnings: report.warnings,
                    structured: None,
                }));
            }
            (_, outcome) => outcome,
        };
        Ok(Ok(new::Report {
            outcome,
            rendered: report.rendered,
            warnings: report.warnings,
            // 0.1.0 renders one format only: an MCP result from it carries
            // its text alone.
            structured: None,
        }))
    }

    pub fn commit_delivery(
        &self,
        store: &mut Store<HostState>,
        context: &new::InvocationContext,
        ticket: &new::ClaimTicket,
    ) -> wasmtime::Result<Result<(), new::BridgeError>> {
        let ticket = old::ClaimTicket {
            session_id: ticket.session_id.clone(),
            message_id: ticket.message_id.clone(),
            claim_name: ticket.claim_name.clone(),
        };
        let done = self
            .0
            .call_commit_delivery(store, &old_context(context), &ticket)?;
        Ok(done.map_err(new_error))
    }
}

fn old_context(c: &new::InvocationContext) -> old::InvocationContext {
    old::InvocationContext {
        session: c.session.clone(),
        agent_session: c.agent_session.clone(),
        project_dir: c.project_dir.clone(),
        working_dir: c.working_dir.clone(),
        format: match c.format {
            new::OutputFormat::Text | new::OutputFormat::TextAndJson => old::OutputFormat::Text,
            new::OutputFormat::Json => old::OutputFormat::Json,
        },
        settings: c.settings.clone(),
    }
}

/// A verb 0.1.0 lacks, refused as a failure of the verb.
fn refusal(why: String, context: &new::InvocationContext) -> new::Failure {
    let json = matches!(context.format, new::OutputFormat::Json);
    let rendered = if json {
        format!(
            "{}\n",
            serde_json::json!({ "error": { "kind": "invalid-argument", "message": why } })
        )
    } else {
        format!("bridge-host: {why}\n")
    };
    new::Failure {
        message: if json {
            rendered.trim_end().to_string()
        } else {
            why.trim_end().to_string()
        },
        refused: Vec::new(),
        error: new::BridgeError::InvalidArgument(why),
        warnings: Vec::new(),
        rendered,
        to_stdout: json,
    }
}

/// The 0.1.0 verb for `verb`, and the verb's name for messages; what is
/// wrong when 0.1.0 has no such verb.
fn old_verb(verb: &new::Verb) -> Result<(old::Verb, &'static str), String> {
    let missing = |name: &str| {
        format!(
            "`{name}` needs a guest for session-bridge:protocol@0.2.0; this guest implements \
             0.1.0 (drop --guest to use the embedded one, or rebuild the guest against \
             wit/v0.2.0)"
        )
    };
    Ok(match verb {
        new::Verb::Start | new::Verb::SessionStart => (old::Verb::Start, "start"),
        new::Verb::Id => (old::Verb::Id, "id"),
        new::Verb::Connect(peer) => (old::Verb::Connect(peer.clone()), "connect"),
        new::Verb::Send(r) => (
            old::Verb::Send(old::SendRequest {
                to: r.to.clone(),
                kind: old_kind(r.kind),
                content: r.content.clone(),
                in_reply_to: r.in_reply_to.clone(),
            }),
            "send",
        ),
        new::Verb::Listen(r) => (
            old::Verb::Listen(old::ListenRequest {
                timeout_seconds: r.timeout_seconds,
            }),
            "listen",
        ),
        new::Verb::CheckInbox => (
            old::Verb::Listen(old::ListenRequest {
                timeout_seconds: Some(0),
            }),
            "check-inbox",
        ),
        new::Verb::Reply(r) => (
            old::Verb::Reply(old::ReplyRequest {
                message_id: r.message_id.clone(),
                content: r.content.clone(),
            }),
            "reply",
        ),
        new::Verb::Ask(r) => {
            if r.in_reply_to.is_some() {
                return Err(missing("ask --in-reply-to"));
            }
            (
                old::Verb::Ask(old::AskRequest {
                    to: r.to.clone(),
                    content: r.content.clone(),
                    timeout_seconds: r.timeout_seconds,
                }),
                "ask",
            )
        }
        new::Verb::Receive(r) => (
            old::Verb::Receive(old::ReceiveRequest {
                message_id: r.message_id.clone(),
                timeout_seconds: r.timeout_seconds,
            }),
            "receive",
        ),
        new::Verb::Peers => (old::Verb::Peers, "peers"),
        new::Verb::Status => (old::Verb::Status, "status"),
        new::Verb::Heartbeat => (old::Verb::Heartbeat, "heartbeat"),
        // 0.1.0 has no away answers: a session that ends stops.
        new::Verb::Stop | new::Verb::SessionEnd(_) => (old::Verb::Stop, "stop"),
        new::Verb::Away(_)
        | new::Verb::AwayTake(_)
        | new::Verb::AwayRenew(_)
        | new::Verb::AwayFinish(_) => return Err(missing("away answers")),
        new::Verb::Track(_) => return Err(missing("track")),
        new::Verb::Thread(_) => return Err(missing("thread")),
        new::Verb::History(_) => return Err(missing("history")),
        new::Verb::Cleanup(_) => return Err(missing("cleanup")),
        new::Verb::Seen(_) => return Err(missing("seen")),
        new::Verb::RelayOutbound(_)
        | new::Verb::RelayInbound(_)
        | new::Verb::RelayPresence(_)
        | new::Verb::RelayMaterialize(_) => return Err(missing("relay")),
    })
}

fn old_kind(kind: new::MessageKind) -> old::MessageKind {
    match kind {
        new::MessageKind::Query => old::MessageKind::Query,
        new::MessageKind::Response => old::MessageKind::Response,
        new::MessageKind::Ping => old::MessageKind::Ping,
        new::MessageKind::SessionEnded => old::MessageKind::SessionEnded,
    }
}

fn new_message(m: old::Message) -> new::Message {
    new::Message {
        id: m.id,
        from: m.from,
        to: m.to,
        kind: match m.kind {
            old::MessageKind::Query => new::MessageKind::Query,
            old::MessageKind::Response => new::MessageKind::Response,
            old::MessageKind::Ping => new::MessageKind::Ping,
            old::MessageKind::SessionEnded => new::MessageKind::SessionEnded,
        },
        timestamp: m.timestamp,
        status: match m.status {
            old::MessageStatus::Pending => new::MessageStatus::Pending,
            old::MessageStatus::Read => new::MessageStatus::Read,
            old::MessageStatus::Sent => new::MessageStatus::Sent,
        },
        content: m.content,
        in_reply_to: m.in_reply_to,
        metadata: new::MessageMetadata {
            urgency: m.metadata.urgency,
            from_project: m.metadata.from_project,
        },
    }
}

fn new_manifest(m: old::Manifest) -> new::Manifest {
    new::Manifest {
        session_id: m.session_id,
        project_name: m.project_name,
        project_path: m.project_path,
        started_at: m.started_at,
        last_heartbeat: m.last_heartbeat,
        status: m.status,
        capabilities: m.capabilities,
        client: None,
        machine: None,
    }
}

fn new_peer(p: old::Peer) -> new::Peer {
    new::Peer {
        manifest: new_manifest(p.manifest),
        stale: p.stale,
        this_session: p.this_session,
    }
}

fn new_delivery(d: old::Delivery) -> new::Delivery {
    new::Delivery {
        message: new_message(d.message),
        ticket: new::ClaimTicket {
            session_id: d.ticket.session_id,
            message_id: d.ticket.message_id,
            claim_name: d.ticket.claim_name,
        },
        silent: d.answered_ping.is_some(),
        answered_ping: d.answered_ping.map(new_message),
        notices: Vec::new(),
    }
}

fn new_outcome(outcome: old::Outcome) -> new::Outcome {
    match outcome {
        old::Outcome::Session(m) => new::Outcome::Session(new_manifest(m)),
        old::Outcome::Connected(c) => new::Outcome::Connected(new::Connection {
            peer: new_manifest(c.peer),
            stale: c.stale,
            ping: new_message(c.ping),
        }),
        old::Outcome::Sent(m) => new::Outcome::Sent(new::SentReport {
            message: new_message(m),
            recipient: new::Liveness::Unknown,
        }),
        old::Outcome::Delivered(d) => new::Outcome::Delivered(new_delivery(d)),
        old::Outcome::Answered(d) => new::Outcome::Answered(new_delivery(d)),
        old::Outcome::Peers(entries) => new::Outcome::Peers(
            entries
                .into_iter()
                .map(|entry| match entry {
                    old::PeerEntry::Valid(p) => new::PeerEntry::Valid(new_peer(p)),
                    old::PeerEntry::Unreadable(u) => {
                        new::PeerEntry::Unreadable(new::UnreadableSession {
                            session_id: u.session_id,
                            reason: u.reason,
                        })
                    }
                })
                .collect(),
        ),
        old::Outcome::Status(r) => new::Outcome::Status(new::StatusReport {
            session: new_manifest(r.session),
            connected: r.connected.into_iter().map(new_peer).collect(),
            pending: r.pending,
            sent: r.sent,
            ended: Vec::new(),
        }),
        old::Outcome::Heartbeat(m) => new::Outcome::Heartbeat(new_manifest(m)),
        old::Outcome::Stopped(r) => new::Outcome::Stopped(new::StopReport {
            session_id: r.session_id,
            notified: r.notified,
            pruned: r.pruned,
        }),
    }
}

fn new_error(e: old::BridgeError) -> new::BridgeError {
    let problem = |p: old::FileProblem| new::FileProblem {
        path: p.path,
        reason: p.reason,
    };
    match e {
        old::BridgeError::InvalidSessionId(s) => new::BridgeError::InvalidSessionId(s),
        old::BridgeError::InvalidMessageId(s) => new::BridgeError::InvalidMessageId(s),
        old::BridgeError::InvalidArgument(s) => new::BridgeError::InvalidArgument(s),
        old::BridgeError::NoSuchSession(s) => new::BridgeError::NoSuchSession(s),
        old::BridgeError::NoIdentity => new::BridgeError::NoIdentity,
        old::BridgeError::NoSuchMessage(s) => new::BridgeError::NoSuchMessage(s),
        old::BridgeError::ContentTooLarge(l) => new::BridgeError::ContentTooLarge(new::SizeLimit {
            size: l.size,
            limit: l.limit,
        }),
        old::BridgeError::TimedOut(seconds) => new::BridgeError::TimedOut(new::Timeout {
            seconds,
            receipt: None,
        }),
        old::BridgeError::Corrupt(p) => new::BridgeError::Corrupt(problem(p)),
        old::BridgeError::Io(p) => new::BridgeError::Io(problem(p)),
        old::BridgeError::Pointer(s) => new::BridgeError::Pointer(s),
    }
}

/// A 0.1.0 failure, worded as the host worded it for 0.1.0.
fn new_failure(
    failure: old::Failure,
    verb: &str,
    context: &new::InvocationContext,
) -> new::Failure {
    let error = new_error(failure.error);
    let (message, to_stdout) = legacy_message(&error, verb, context);
    let json = matches!(context.format, new::OutputFormat::Json);
    let rendered = if json {
        let kind = legacy_kind(&error);
        format!(
            "{}\n",
            serde_json::json!({ "error": { "kind": kind, "message": message } })
        )
    } else if message.is_empty() {
        String::new()
    } else if to_stdout {
        format!("{message}\n")
    } else {
        format!("bridge-host: {message}\n")
    };
    let refused = match &error {
        new::BridgeError::Corrupt(p) | new::BridgeError::Io(p) => {
            withheld_session(&p.path, context)
                .map(|w| w.session_id.clone())
                .into_iter()
                .collect()
        }
        _ => Vec::new(),
    };
    new::Failure {
        message: if json {
            rendered.trim_end().to_string()
        } else {
            message.trim_end().to_string()
        },
        refused,
        error,
        warnings: failure.warnings,
        rendered,
        to_stdout: json || to_stdout,
    }
}

fn legacy_kind(error: &new::BridgeError) -> &'static str {
    match error {
        new::BridgeError::InvalidSessionId(_) => "invalid-session-id",
        new::BridgeError::InvalidMessageId(_) => "invalid-message-id",
        new::BridgeError::InvalidArgument(_) => "invalid-argument",
        new::BridgeError::NoSuchSession(_) => "no-such-session",
        new::BridgeError::NoIdentity => "no-identity",
        new::BridgeError::NoSuchMessage(_) => "no-such-message",
        new::BridgeError::ContentTooLarge(_) => "content-too-large",
        new::BridgeError::TimedOut(_) => "timed-out",
        new::BridgeError::Corrupt(_) => "corrupt",
        new::BridgeError::Io(_) => "io",
        new::BridgeError::Pointer(_) => "pointer",
        new::BridgeError::Held(_) => "held",
    }
}

/// The withheld session a 0.1.0 file error is about.
fn withheld_session<'a>(
    path: &str,
    context: &'a new::InvocationContext,
) -> Option<&'a new::WithheldSession> {
    let mut parts = path.split('/');
    (parts.next() == Some("sessions"))
        .then(|| parts.next())
        .flatten()
        .and_then(|name| context.withheld.iter().find(|w| w.session_id == name))
}

/// The words the host gave 0.1.0's errors, and whether the line went to
/// standard output (a timeout, as the reference prints it).
fn legacy_message(
    error: &new::BridgeError,
    verb: &str,
    context: &new::InvocationContext,
) -> (String, bool) {
    let bridge = &context.bridge_dir;
    let withheld = |path: &str| {
        withheld_session(path, context).map(|w| {
            format!(
                "session {} is refused as unsafe: {}",
                w.session_id, w.problem
            )
        })
    };
    let message = match error {
        new::BridgeError::InvalidSessionId(id) => format!(
            "invalid session ID {id:?}: a session ID is 6 characters of [a-z0-9]; \
             bridge-host run peers lists them"
        ),
        new::BridgeError::InvalidMessageId(id) => format!(
            "invalid message ID {id:?}: a message ID is msg- followed by 12 characters of \
             [a-z0-9], as printed by send, ask and listen"
        ),
        new::BridgeError::InvalidArgument(why) => why.clone(),
        new::BridgeError::NoSuchSession(id) => {
            format!("no session {id} under {bridge}; bridge-host run peers lists them")
        }
        new::BridgeError::NoIdentity => format!(
            "no bridge session for this project ({}): none given by --session or \
             BRIDGE_SESSION_ID, none registered for this agent session, no \
             .claude/bridge-session pointer, no session whose project contains the working \
             directory. Run: bridge-host run start",
            context.project_dir
        ),
        new::BridgeError::NoSuchMessage(id) if verb == "receive" => format!(
            "no message {id} in this session's outbox; receive waits for replies to messages \
             this session sent (bridge-host run status shows the session)"
        ),
        new::BridgeError::NoSuchMessage(id) => format!(
            "no message {id} in this session's inbox; reply answers messages this session \
             received, by the message ID that listen printed"
        ),
        new::BridgeError::ContentTooLarge(l) => format!(
            "content is {} bytes, over the limit of {} bytes; send a summary or split it into \
             several messages",
            l.size, l.limit
        ),
        new::BridgeError::TimedOut(_) if verb == "listen" => String::new(),
        new::BridgeError::TimedOut(t) => {
            let line = format!(
                "No response received after {}s. The peer may be inactive.",
                t.seconds
            );
            return (line, true);
        }
        new::BridgeError::Corrupt(p) => withheld(&p.path).unwrap_or_else(|| {
            format!(
                "{bridge}/{} is malformed: {}; if it is this session's manifest, bridge-host \
                 run start rewrites it",
                p.path, p.reason
            )
        }),
        new::BridgeError::Io(p) => {
            withheld(&p.path).unwrap_or_else(|| format!("{bridge}/{}: {}", p.path, p.reason))
        }
        new::BridgeError::Pointer(why) => format!("project pointer: {why}"),
        // A 0.1.0 guest never holds a query.
        new::BridgeError::Held(h) => format!("{} is away: {}", h.session_id, h.reason),
    };
    (message, false)
}
