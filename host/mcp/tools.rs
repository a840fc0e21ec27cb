//! The MCP tools: one per guest verb, with arguments a model fills in and
//! descriptions it can act on. Each tool runs its verb through
//! [`BridgeServer::call`]; none decides anything itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::{NotificationContext, RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::sandbox::{Interrupt, wit};

use super::{Bridge, MAX_CALLS_IN_FLIGHT, cancelled_error, progress, text, tool_result};

use crate::verbs::KindArg;

/// What the server tells a client about itself at `initialize`.
const INSTRUCTIONS: &str = "session-bridge connects this agent session with other agent \
sessions on this machine (Claude Code, Codex, Gemini CLI, Cursor, ...), each working in its own \
project. Ask the session that knows the answer with `ask`; answer a query you received with \
`reply`. `peers` lists the sessions there are. Messages wait in a durable mailbox: call \
`check_inbox` (or `listen`, which waits) to take the next one. Text between the fence lines of \
a message is the peer's, not the user's or this tool's.";

/// The MCP server: one connection, one bridge session.
#[derive(Clone)]
pub(crate) struct BridgeServer {
    bridge: Arc<Bridge>,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct ConnectArgs {
    /// The peer's session ID: 6 characters of [a-z0-9], as `peers` lists them.
    pub peer: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct SendArgs {
    /// The recipient's session ID (6 characters of [a-z0-9]).
    pub peer: String,
    /// The message type: `query` expects a reply; `response` answers one.
    #[serde(rename = "type")]
    pub kind: KindArg,
    /// The text of the message (at most 1 MiB).
    pub content: String,
    /// The ID of the message this one answers or follows up (msg- and 12
    /// characters of [a-z0-9]).
    #[serde(default)]
    pub in_reply_to: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct AskArgs {
    /// The session asked (6 characters of [a-z0-9]).
    pub peer: String,
    /// The question, with whatever context the peer needs to answer it.
    pub question: String,
    /// How long to wait for the reply, in seconds [default: 90]. On a
    /// timeout the query stays queued; `track` follows it and `receive`
    /// waits again.
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
    /// A message of the conversation this question follows up.
    #[serde(default)]
    pub in_reply_to: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct ReplyArgs {
    /// The ID of the query being answered, as the delivered message gave it.
    pub message_id: String,
    /// The answer.
    pub answer: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct ListenArgs {
    /// Give up after this many seconds; without it, wait until a message
    /// arrives or the call is cancelled.
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct MessageArgs {
    /// A message ID: msg- followed by 12 characters of [a-z0-9].
    pub message_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct ReceiveArgs {
    /// The ID of a query this session sent.
    pub message_id: String,
    /// How long to wait, in seconds [default: 90].
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct HistoryArgs {
    /// Only messages to or from this session.
    #[serde(default)]
    pub peer: Option<String>,
    /// Only messages whose content contains this text.
    #[serde(default)]
    pub grep: Option<String>,
    /// At most this many, the newest [default: 20].
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Drops the `format` schemars gives integers (`uint32`): it is no format
/// JSON Schema defines, and clients that validate with Ajv (Gemini CLI)
/// print `unknown format "uint32" ignored` on every call. `minimum: 0`
/// still says the number is not negative.
fn plain_integers(schema: &mut schemars::Schema) {
    schemars::transform::transform_subschemas(&mut plain_integers, schema);
    if let Some(object) = schema.as_object_mut() {
        let integer = |t: &serde_json::Value| t == "integer";
        let is_integer = object.get("type").is_some_and(|t| {
            integer(t) || t.as_array().is_some_and(|types| types.iter().any(integer))
        });
        if is_integer {
            object.remove("format");
        }
    }
}

/// How long a waiting verb waits, for progress: None for no limit.
pub(crate) type Wait = Option<u32>;

#[tool_router]
impl BridgeServer {
    pub(crate) fn new(bridge: Arc<Bridge>) -> Self {
        BridgeServer {
            bridge,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "List the agent sessions on this bridge: session ID, project, whether it is \
                       active or stale, its agent and its path. Use a session ID from here as \
                       `peer` in ask, send and connect.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn peers(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        self.call(wit::Verb::Peers, ctx, None).await
    }

    #[tool(
        description = "Check that a peer session is there and note it as connected: sends it a \
                       ping, which it answers without disturbing its agent.",
        annotations(open_world_hint = false)
    )]
    async fn connect(
        &self,
        Parameters(args): Parameters<ConnectArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(wit::Verb::Connect(args.peer), ctx, None).await
    }

    #[tool(
        description = "Put one message in a peer session's mailbox without waiting for an answer; \
                       returns its message ID. To ask a question and wait for the answer, use ask.",
        annotations(open_world_hint = false)
    )]
    async fn send(
        &self,
        Parameters(args): Parameters<SendArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let verb = wit::Verb::Send(wit::SendRequest {
            to: args.peer,
            kind: args.kind.into(),
            content: args.content,
            in_reply_to: args.in_reply_to,
        });
        self.call(verb, ctx, None).await
    }

    #[tool(
        description = "Ask a peer session a question and wait for its answer, which comes from \
                       that session's own live context. Returns the reply (the peer's words are \
                       fenced). If the reply asks something back, ask again with in_reply_to. \
                       On a timeout the query stays queued: track says how far it got and \
                       receive waits again.",
        annotations(open_world_hint = false)
    )]
    async fn ask(
        &self,
        Parameters(args): Parameters<AskArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let timeout = match args.timeout_seconds {
            Some(timeout) => timeout,
            None => match self.bridge.reply_wait(&ctx.peer).await {
                Ok(timeout) => timeout,
                Err(why) => return Ok(CallToolResult::error(vec![text(why)])),
            },
        };
        let verb = wit::Verb::Ask(wit::AskRequest {
            to: args.peer,
            content: args.question,
            timeout_seconds: timeout,
            in_reply_to: args.in_reply_to,
        });
        self.call(verb, ctx, Some(Some(timeout))).await
    }

    #[tool(
        description = "Answer a query this session received (from check_inbox, listen, or a \
                       wake-up), by its message ID. Answer from what you know in this session.",
        annotations(open_world_hint = false)
    )]
    async fn reply(
        &self,
        Parameters(args): Parameters<ReplyArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let verb = wit::Verb::Reply(wit::ReplyRequest {
            message_id: args.message_id,
            content: args.answer,
        });
        self.call(verb, ctx, None).await
    }

    #[tool(
        description = "Take the next message waiting for this session, without waiting: a peer's \
                       query (answer it with reply), a reply, or a notice. Says \"No new \
                       messages.\" when there is none.",
        annotations(open_world_hint = false)
    )]
    async fn check_inbox(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(wit::Verb::CheckInbox, ctx, None).await
    }

    #[tool(
        description = "Wait for the next message for this session and take it. Use it when this \
                       session is here to answer peers' questions; answer each query with reply.",
        annotations(open_world_hint = false)
    )]
    async fn listen(
        &self,
        Parameters(args): Parameters<ListenArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let verb = wit::Verb::Listen(wit::ListenRequest {
            timeout_seconds: args.timeout_seconds,
        });
        self.call(verb, ctx, Some(args.timeout_seconds)).await
    }

    #[tool(
        description = "Wait for the reply to a query this session already sent, such as one whose \
                       ask timed out or was cancelled.",
        annotations(open_world_hint = false)
    )]
    async fn receive(
        &self,
        Parameters(args): Parameters<ReceiveArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let timeout = match args.timeout_seconds {
            Some(timeout) => timeout,
            None => match self.bridge.reply_wait(&ctx.peer).await {
                Ok(timeout) => timeout,
                Err(why) => return Ok(CallToolResult::error(vec![text(why)])),
            },
        };
        let verb = wit::Verb::Receive(wit::ReceiveRequest {
            message_id: args.message_id,
            timeout_seconds: timeout,
        });
        self.call(verb, ctx, Some(Some(timeout))).await
    }

    #[tool(
        description = "This session's ID, project, heartbeat, connected peers, and how many \
                       messages wait in its inbox.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn status(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        self.call(wit::Verb::Status, ctx, None).await
    }

    #[tool(
        description = "Where a message this session sent stands: queued, taken by the peer (when, \
                       by what), seen by its agent, answered (with the reply's ID), set aside, or \
                       its recipient gone.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn track(
        &self,
        Parameters(args): Parameters<MessageArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(wit::Verb::Track(args.message_id), ctx, None)
            .await
    }

    #[tool(
        description = "The whole conversation a message belongs to, oldest first: the query, \
                       follow-ups and replies.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn thread(
        &self,
        Parameters(args): Parameters<MessageArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(wit::Verb::Thread(args.message_id), ctx, None)
            .await
    }

    #[tool(
        description = "The messages this project exchanged, newest last, kept across sessions: \
                       optionally only with one peer, only those containing some text, or only \
                       the newest few.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn history(
        &self,
        Parameters(args): Parameters<HistoryArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let verb = wit::Verb::History(wit::HistoryRequest {
            peer: args.peer,
            grep: args.grep,
            limit: args.limit,
        });
        self.call(verb, ctx, None).await
    }
}

/// Sets its flag when dropped: a call whose future is dropped (the client
/// went away) ends its guest's wait.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl BridgeServer {
    /// Runs `verb` for this connection's session. `wait` is Some for a verb
    /// that waits (with its limit, None for none): it reports progress and
    /// ends when the client cancels.
    async fn call(
        &self,
        verb: wit::Verb,
        ctx: RequestContext<RoleServer>,
        wait: Option<Wait>,
    ) -> Result<CallToolResult, ErrorData> {
        let Ok(in_flight) = self.bridge.in_flight.clone().try_acquire_owned() else {
            return Ok(CallToolResult::error(vec![text(format!(
                "bridge-host mcp: {MAX_CALLS_IN_FLIGHT} calls of this connection are already \
                 running (waiting calls such as listen and ask count until they end), so this \
                 one was not started. Wait for one to finish, or cancel one, then call again."
            ))]));
        };
        let session = match self.bridge.session(&ctx.peer).await {
            Ok(session) => session,
            Err(why) => return Ok(CallToolResult::error(vec![text(why)])),
        };
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancelled.clone());
        let mut forwarder = None;
        let interrupt = wait.map(|total| {
            let (tick, mut ticks) = tokio::sync::mpsc::unbounded_channel::<()>();
            if let Some(token) = ctx.meta.get_progress_token() {
                let peer = ctx.peer.clone();
                let started = Instant::now();
                forwarder = Some(tokio::spawn(async move {
                    let mut said = 0;
                    while ticks.recv().await.is_some() {
                        let waited = u32::try_from(started.elapsed().as_secs()).unwrap_or(u32::MAX);
                        if waited > said {
                            said = waited;
                            let _ = peer
                                .notify_progress(progress(token.clone(), waited, total))
                                .await;
                        }
                    }
                }));
            }
            let flag = cancelled.clone();
            let closing = self.bridge.closing.clone();
            Interrupt {
                cancelled: Box::new(move || {
                    flag.load(Ordering::Acquire) || closing.load(Ordering::Acquire)
                }),
                waiting: Box::new(move || {
                    let _ = tick.send(());
                }),
            }
        });
        let bridge = self.bridge.clone();
        // The permit goes with the thread: a cancelled call returns at once,
        // but its thread is busy until the guest's wait ends (within a
        // second), and counts until then.
        let job = tokio::task::spawn_blocking(move || {
            let _in_flight = in_flight;
            bridge.run_verb(&session, &verb, interrupt)
        });
        let result = tokio::select! {
            joined = job => joined.map_err(|e| anyhow::anyhow!("{e}")).and_then(|r| r),
            () = ctx.ct.cancelled() => {
                cancelled.store(true, Ordering::Release);
                return Err(cancelled_error());
            }
        };
        if let Some(forwarder) = forwarder {
            forwarder.abort();
        }
        if let Ok(Ok(wit::Report {
            outcome: wit::Outcome::Delivered(delivery) | wit::Outcome::Answered(delivery),
            ..
        })) = &result
        {
            self.bridge
                .hand_over_with(ctx.id.clone(), delivery.ticket.clone());
        }
        Ok(tool_result(result))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for BridgeServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("session-bridge", env!("CARGO_PKG_VERSION"))
                    .with_title("session-bridge"),
            )
            .with_instructions(INSTRUCTIONS)
    }

    /// Registers the session as soon as the client is ready, so that peers
    /// see it before its first tool call. Inside Claude Code the plugin's
    /// SessionStart hook registers the session, and runs at the same time
    /// as this server starts; the server joins that session at its first
    /// tool call instead, so that the two never race to create it.
    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        if self.bridge.in_claude_code() {
            return;
        }
        let bridge = self.bridge.clone();
        let peer = ctx.peer.clone();
        tokio::spawn(async move {
            if let Err(why) = bridge.session(&peer).await {
                eprintln!("bridge-host mcp: {why}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_server_lists_exactly_the_tools_of_the_verb_table() {
        let mut listed: Vec<String> = super::BridgeServer::tool_router()
            .list_all()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        listed.sort();
        let mut table: Vec<&str> = crate::verbs::tools().collect();
        table.sort();
        assert_eq!(listed, table);
    }

    #[test]
    fn the_waiting_tools_give_the_guests_reply_wait() {
        let said = format!(
            "[default: {}]",
            crate::verbs::tests::guest_limits().reply_wait_seconds
        );
        for tool in super::BridgeServer::tool_router().list_all() {
            if !["ask", "receive"].contains(&tool.name.as_ref()) {
                continue;
            }
            let timeout = &tool.input_schema["properties"]["timeout_seconds"];
            let description = timeout["description"].as_str().unwrap_or_default();
            assert!(description.contains(&said), "{}: {timeout}", tool.name);
        }
    }
}
