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

/// The MCP server: one connection, one bridge session.
#[derive(Clone)]
pub(crate) struct BridgeServer {
    bridge: Arc<Bridge>,
    tool_router: ToolRouter<Self>,
    /// The guest's instructions, sent at `initialize`.
    instructions: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct ConnectArgs {
    pub peer: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct SendArgs {
    pub peer: String,
    #[serde(rename = "type")]
    pub kind: KindArg,
    pub content: String,
    #[serde(default)]
    pub in_reply_to: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct AskArgs {
    pub peer: String,
    pub question: String,
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
    #[serde(default)]
    pub in_reply_to: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct ReplyArgs {
    pub message_id: String,
    pub answer: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct ListenArgs {
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct MessageArgs {
    pub message_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct ReceiveArgs {
    pub message_id: String,
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct HistoryArgs {
    #[serde(default)]
    pub peer: Option<String>,
    #[serde(default)]
    pub grep: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub(crate) enum AwayActionArg {
    On,
    Off,
    Status,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(transform = plain_integers)]
pub(crate) struct AwayArgs {
    pub action: AwayActionArg,
    #[serde(default)]
    pub max_turns: Option<u32>,
    #[serde(default)]
    pub max_seconds: Option<u32>,
    #[serde(default)]
    pub per_hour: Option<u32>,
    #[serde(default)]
    pub per_day: Option<u32>,
    #[serde(default)]
    pub spend_per_day: Option<f64>,
    #[serde(default)]
    pub allow_other_machines: Option<bool>,
}

/// Drops the `format` schemars gives integers and numbers (`uint32`): it is no format
/// JSON Schema defines, and clients that validate with Ajv (Gemini CLI)
/// print `unknown format "uint32" ignored` on every call. `minimum: 0`
/// still says the number is not negative.
fn plain_integers(schema: &mut schemars::Schema) {
    schemars::transform::transform_subschemas(&mut plain_integers, schema);
    if let Some(object) = schema.as_object_mut() {
        // Numbers too: schemars gives an f64 `double`.
        let integer = |t: &serde_json::Value| t == "integer" || t == "number";
        let is_integer = object.get("type").is_some_and(|t| {
            integer(t) || t.as_array().is_some_and(|types| types.iter().any(integer))
        });
        if is_integer {
            object.remove("format");
        }
    }
}

/// Gives `tool` the guest's description, and each of its arguments the
/// guest's words for it.
fn word_tool(tool: &mut rmcp::model::Tool, text: &wit::ToolText) {
    tool.description = Some(text.description.clone().into());
    let mut schema = (*tool.input_schema).clone();
    if let Some(properties) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        for (name, words) in &text.arguments {
            if let Some(property) = properties
                .get_mut(name)
                .and_then(serde_json::Value::as_object_mut)
            {
                property.insert("description".into(), words.clone().into());
            }
        }
    }
    tool.input_schema = Arc::new(schema);
}

/// How long a waiting verb waits, for progress: None for no limit.
pub(crate) type Wait = Option<u32>;

#[tool_router]
impl BridgeServer {
    /// The server for `bridge`, its tools and instructions in the guest's
    /// `words`.
    pub(crate) fn new(bridge: Arc<Bridge>, words: wit::McpText) -> Self {
        BridgeServer {
            bridge,
            tool_router: Self::worded_router(&words),
            instructions: words.instructions,
        }
    }

    /// The tools, each in the guest's `words`.
    fn worded_router(words: &wit::McpText) -> ToolRouter<Self> {
        let mut tool_router = Self::tool_router();
        for route in tool_router.map.values_mut() {
            if let Some(text) = words.tools.iter().find(|t| t.name == route.attr.name) {
                word_tool(&mut route.attr, text);
            }
        }
        tool_router
    }

    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn peers(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        self.call(wit::Verb::Peers, ctx, None).await
    }

    #[tool(annotations(open_world_hint = false))]
    async fn connect(
        &self,
        Parameters(args): Parameters<ConnectArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(wit::Verb::Connect(args.peer), ctx, None).await
    }

    #[tool(annotations(open_world_hint = false))]
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

    #[tool(annotations(open_world_hint = false))]
    async fn ask(
        &self,
        Parameters(args): Parameters<AskArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.bridge.note_thread(&ctx.meta);
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

    #[tool(annotations(open_world_hint = false))]
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

    #[tool(annotations(open_world_hint = false))]
    async fn check_inbox(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(wit::Verb::CheckInbox, ctx, None).await
    }

    #[tool(annotations(open_world_hint = false))]
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

    #[tool(annotations(open_world_hint = false))]
    async fn receive(
        &self,
        Parameters(args): Parameters<ReceiveArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.bridge.note_thread(&ctx.meta);
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

    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn status(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        self.call(wit::Verb::Status, ctx, None).await
    }

    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn track(
        &self,
        Parameters(args): Parameters<MessageArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(wit::Verb::Track(args.message_id), ctx, None)
            .await
    }

    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn thread(
        &self,
        Parameters(args): Parameters<MessageArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(wit::Verb::Thread(args.message_id), ctx, None)
            .await
    }

    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
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

    #[tool(annotations(destructive_hint = true, open_world_hint = false))]
    async fn away(
        &self,
        Parameters(args): Parameters<AwayArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let request = match args.action {
            AwayActionArg::On => wit::AwayRequest::On(wit::AwaySettings {
                max_turns: args.max_turns,
                max_seconds: args.max_seconds,
                per_hour: args.per_hour,
                per_day: args.per_day,
                spend_per_day: args.spend_per_day,
                allow_other_machines: args.allow_other_machines,
            }),
            AwayActionArg::Off => wit::AwayRequest::Off,
            AwayActionArg::Status => wit::AwayRequest::Status,
        };
        self.call(wit::Verb::Away(request), ctx, None).await
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
        self.bridge.note_thread(&ctx.meta);
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
            .with_instructions(self.instructions.clone())
    }

    /// Registers the session as soon as the client is ready, so that peers
    /// see it before its first tool call. Inside Claude Code the plugin's
    /// SessionStart hook registers the session, and runs at the same time
    /// as this server starts; the server joins that session at its first
    /// tool call instead, so that the two never race to create it.
    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        if self.bridge.hooks_register() {
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
    use super::*;

    /// The embedded guest's words.
    fn embedded_words() -> wit::McpText {
        let component = crate::compile_cache::load_shipped().expect("the shipped guest");
        let scratch = crate::guests::ScratchDir::new().unwrap();
        crate::sandbox::Guest::instantiate(&component, scratch.path(), scratch.path())
            .and_then(|mut guest| guest.mcp_text())
            .unwrap()
            .expect("a 0.2.0 guest words the MCP server")
    }

    #[test]
    fn the_server_lists_exactly_the_tools_of_the_verb_table() {
        let mut listed: Vec<String> = BridgeServer::tool_router()
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
    fn the_guest_words_every_tool_and_every_argument_and_nothing_else() {
        let words = embedded_words();
        assert!(
            words.instructions.contains("`ask`"),
            "{}",
            words.instructions
        );
        let host_words: Vec<String> = BridgeServer::tool_router()
            .list_all()
            .iter()
            .filter(|t| t.description.is_some())
            .map(|t| t.name.to_string())
            .collect();
        assert!(host_words.is_empty(), "the host words {host_words:?}");
        let tools = BridgeServer::worded_router(&words).list_all();
        for tool in &tools {
            let description = tool.description.as_deref().unwrap_or_default();
            assert!(!description.is_empty(), "{} has no description", tool.name);
            let properties = tool
                .input_schema
                .get("properties")
                .and_then(|p| p.as_object());
            for (name, property) in properties.into_iter().flatten() {
                let said = property["description"].as_str().unwrap_or_default();
                assert!(!said.is_empty(), "{}.{name} has no description", tool.name);
            }
        }
        for text in &words.tools {
            let tool = tools.iter().find(|t| t.name == text.name);
            let tool = tool.unwrap_or_else(|| panic!("the guest words {}, no tool", text.name));
            for (name, _) in &text.arguments {
                assert!(
                    tool.input_schema["properties"].get(name).is_some(),
                    "the guest words {}.{name}, no argument",
                    text.name
                );
            }
        }
    }

    #[test]
    fn the_waiting_tools_give_the_guests_reply_wait() {
        let said = format!(
            "[default: {}]",
            crate::verbs::tests::guest_limits().reply_wait_seconds
        );
        for tool in BridgeServer::worded_router(&embedded_words()).list_all() {
            if !["ask", "receive"].contains(&tool.name.as_ref()) {
                continue;
            }
            let timeout = &tool.input_schema["properties"]["timeout_seconds"];
            let description = timeout["description"].as_str().unwrap_or_default();
            assert!(description.contains(&said), "{}: {timeout}", tool.name);
        }
    }
}
