//! `bridge-host mcp`: the bridge as an MCP server over standard input and
//! output, so that any MCP client (Codex, Gemini CLI, Cursor, VS Code,
//! Claude Code) joins the same bridge as `bridge-host run`.
//!
//! The server is a broker like the rest of the host: each tool runs one
//! guest verb, in the same sandbox with the same one preopened directory,
//! and returns the guest's own text (and its JSON, as `structuredContent`).
//! What the server adds is the connection's lifetime:
//!
//! - One connection is one bridge session. It registers once the client
//!   has initialized (or at its first tool call), named after the client's
//!   `clientInfo`, for the project the client's first root names, else for
//!   the working directory; it heartbeats while connected, and stops, as
//!   `bridge-host run stop` does, when the connection closes.
//! - Waiting tools (`ask`, `listen`, `receive`) send progress notifications
//!   while they wait and end at once when the client cancels. A cancelled
//!   wait has claimed nothing; the query it waited on stays trackable.
//! - A delivered message is committed only once the response carrying it
//!   has been written ([`handover`]), as the CLI commits only after
//!   printing.

mod handover;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolResult, ContentBlock, ErrorCode, ErrorData, ProgressNotificationParam, RequestId,
};
use rmcp::service::{Peer, RoleServer};
use wasmtime::component::Component;

use crate::invoke::{Config, GuestSource, Invocation, Place, absolute, describe, print_warnings};
use crate::process::ProcessId;
use crate::sandbox::{Guest, Interrupt, wit};

/// How long registration waits for the client's `roots/list` answer.
const ROOTS_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle instances kept for the next tool calls (one serves them in turn;
/// more only while calls overlap, such as an `ask` that waits).
const POOL_SIZE: usize = 4;
/// Tool calls one connection may have running at once. Each holds a thread
/// and a guest instance while it runs, and a waiting call (`listen`, `ask`,
/// `receive`) holds them until it ends. Past the bound a call is refused at
/// once with a tool error that says so, and the threads left keep reading
/// the client's input: `ping`, `tools/list`, cancellations and the end of
/// the connection are always heard.
pub(crate) const MAX_CALLS_IN_FLIGHT: usize = 32;
/// Threads for blocking work: the calls in flight, plus registration,
/// heartbeats, deliveries being filed, and the reads of standard input.
const BLOCKING_THREADS: usize = MAX_CALLS_IN_FLIGHT + 16;

/// Runs the server until the client closes the connection or a signal
/// (SIGTERM, SIGINT) ends it; either way the session is stopped.
/// Options of `bridge-host mcp`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct McpArgs {
    /// The client's hooks register each session (Codex, as `bridge-host
    /// setup codex` sets it up): register none at `initialize`, and join the
    /// session of the thread that each tool call names (`_meta.threadId`).
    #[arg(long)]
    pub session_from_hooks: bool,
    /// Internal: wait until standard input closes (the server that started
    /// this process ended, however it ended), then stop SESSION unless it
    /// is stopped already.
    #[arg(long, value_name = "SESSION", hide = true)]
    pub reap: Option<String>,
}

pub fn run(global: &Config, args: &McpArgs) -> Result<ExitCode> {
    if let Some(session) = &args.reap {
        return reap(global, session);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
        .context("cannot start the MCP server's runtime")?;
    let ended = runtime.block_on(serve(global.clone(), args.clone()));
    // A read of standard input blocks a thread that shutdown would wait
    // for; after a signal the client may keep the pipe open, so leave it.
    runtime.shutdown_background();
    ended
}

async fn serve(global: Config, args: McpArgs) -> Result<ExitCode> {
    let bridge = Arc::new(Bridge::open(global, args)?);
    // The guest words the server's instructions and tools, so it loads
    // before `initialize` is answered. The embedded guest is shipped
    // compiled and loads in milliseconds; a `--guest` file not yet in the
    // compile cache is compiled first.
    let loading = bridge.clone();
    let words = tokio::task::spawn_blocking(move || loading.words())
        .await
        .context("the MCP server's words were not loaded")??;
    let server = tools::BridgeServer::new(bridge.clone(), words);
    let transport = handover::Handover::new(handover::stdio(), bridge.clone());
    let service = match server.serve(transport).await {
        Ok(service) => service,
        Err(err) => {
            // No session was registered: the client left (or spoke no
            // MCP) before initializing.
            eprintln!("bridge-host mcp: the connection ended before it was initialized: {err}");
            return Ok(ExitCode::from(1));
        }
    };
    let heartbeat = tokio::spawn(heartbeats(bridge.clone()));
    let cancel = service.cancellation_token();
    let ended = tokio::select! {
        done = service.waiting() => done.map(|_| ()).map_err(|e| anyhow!("{e}")),
        signal = crate::signals::termination() => {
            cancel.cancel();
            eprintln!("bridge-host mcp: {signal}; stopping the session");
            Ok(())
        }
    };
    heartbeat.abort();
    bridge.closing.store(true, Ordering::Release);
    let stopped = bridge.stop().await;
    if let Err(err) = ended {
        eprintln!("bridge-host mcp: the connection failed: {err}");
    }
    stopped.map(|()| ExitCode::SUCCESS)
}

/// The reaper: a process of its own session, started once the server has
/// registered its session, which outlives the server however it ends. A
/// client may kill its server outright: Codex 0.171.0 sends SIGTERM and,
/// milliseconds later, SIGKILL to the server's process group, before a
/// session can be stopped. When the server's end of the reaper's standard
/// input closes, the reaper stops the session; a server that stopped it
/// itself leaves it nothing to do.
fn reap(global: &Config, session: &str) -> Result<ExitCode> {
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    while std::io::Read::read(&mut stdin, &mut sink).is_ok_and(|n| n > 0) {}
    let mut invocation = Invocation::open(global, Place::of_process(global)?)?;
    invocation.context.session = Some(session.to_string());
    invocation.context.caller = wit::Caller::Mcp;
    match invocation.run(&wit::Verb::Stop)? {
        Ok(report) => {
            print_warnings(&report.warnings);
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => match failure.error {
            wit::BridgeError::NoSuchSession(_) | wit::BridgeError::NoIdentity => {
                Ok(ExitCode::SUCCESS)
            }
            _ => anyhow::bail!("{}", Invocation::failure_text(&failure)),
        },
    }
}

/// Starts the reaper of `session` (see [`reap`]), holding its standard
/// input open until this process ends.
fn start_reaper(global: &Config, session: &Session) -> Result<std::process::ChildStdin> {
    let mut command = global.this_program()?;
    command
        .arg("--project-dir")
        .arg(&session.project_dir)
        .args(["mcp", "--reap", &session.id])
        .current_dir(&session.project_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    crate::process::detach(&mut command);
    let mut child = command
        .spawn()
        .context("cannot start the session's reaper")?;
    child
        .stdin
        .take()
        .context("the reaper has no standard input")
}

/// Refreshes the session's heartbeat while connected, as often as the
/// guest's limits say, from its registration on.
async fn heartbeats(bridge: Arc<Bridge>) {
    bridge.registered.notified().await;
    let (Some(session), Some(limits)) = (bridge.session.get().cloned(), bridge.limits.get()) else {
        return;
    };
    let mut every = tokio::time::interval(Duration::from_secs(u64::from(
        limits.heartbeat_seconds.max(1),
    )));
    every.tick().await;
    loop {
        every.tick().await;
        let session = session.clone();
        let beat = bridge.clone();
        let done = tokio::task::spawn_blocking(move || {
            beat.run_verb(&session, &wit::Verb::Heartbeat, None)
        })
        .await;
        match done {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(failure))) => eprintln!(
                "bridge-host mcp: heartbeat: {}",
                Invocation::failure_text(&failure)
            ),
            Ok(Err(err)) => eprintln!("bridge-host mcp: heartbeat: {err:#}"),
            Err(err) => eprintln!("bridge-host mcp: heartbeat: {err}"),
        }
    }
}

/// The session a connection speaks for, once registered.
#[derive(Clone)]
struct Session {
    id: String,
    project_dir: PathBuf,
    agent_session: String,
    agent_process: Option<String>,
    client: Option<String>,
}

/// What the server keeps for its one connection.
pub(crate) struct Bridge {
    global: Config,
    /// The reaper's standard input, held open for this process's life.
    reaper: Mutex<Option<std::process::ChildStdin>>,
    args: McpArgs,
    /// The agent thread the client's tool calls name (`_meta.threadId`),
    /// with `--session-from-hooks`: the first one seen.
    thread: std::sync::OnceLock<String>,
    /// The guest, loaded on first use (see [`Bridge::component`]).
    component: Mutex<Option<Component>>,
    /// Tool calls running now, at most [`MAX_CALLS_IN_FLIGHT`].
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
    bridge_dir: PathBuf,
    working_dir: PathBuf,
    session: tokio::sync::OnceCell<Session>,
    /// Held while the session registers, so that stopping waits for a
    /// registration under way instead of leaving its session behind.
    registering: tokio::sync::Mutex<()>,
    /// Idle guest instances for `session`, reused by the next calls.
    pool: Mutex<Vec<Invocation>>,
    /// Set once the connection has closed: every wait ends.
    closing: Arc<AtomicBool>,
    /// Deliveries waiting for their response to be written.
    handovers: Mutex<Vec<(RequestId, wit::ClaimTicket)>>,
    /// The guest's limits, once an instance has given them.
    limits: std::sync::OnceLock<wit::Limits>,
    /// Told once the session is registered.
    registered: tokio::sync::Notify,
}

impl Bridge {
    fn open(global: Config, args: McpArgs) -> Result<Self> {
        let bridge_dir = crate::invoke::bridge_dir(&global)?;
        let working_dir = std::env::current_dir().context("cannot read the working directory")?;
        Ok(Bridge {
            global,
            reaper: Mutex::new(None),
            args,
            thread: std::sync::OnceLock::new(),
            component: Mutex::new(None),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_CALLS_IN_FLIGHT)),
            bridge_dir,
            working_dir,
            session: tokio::sync::OnceCell::new(),
            registering: tokio::sync::Mutex::new(()),
            pool: Mutex::new(Vec::new()),
            closing: Arc::new(AtomicBool::new(false)),
            handovers: Mutex::new(Vec::new()),
            limits: std::sync::OnceLock::new(),
            registered: tokio::sync::Notify::new(),
        })
    }

    /// This connection's session, registering it on first use.
    async fn session(self: &Arc<Self>, peer: &Peer<RoleServer>) -> Result<Session, String> {
        let mut registered_now = false;
        let session = self
            .session
            .get_or_try_init(|| {
                registered_now = true;
                self.register(peer)
            })
            .await
            .cloned();
        if registered_now && session.is_ok() {
            self.registered.notify_one();
        }
        session
    }

    /// How long `ask` and `receive` wait for the reply when not told: the
    /// guest's limit, known once the session is registered.
    pub(crate) async fn reply_wait(
        self: &Arc<Self>,
        peer: &Peer<RoleServer>,
    ) -> Result<u32, String> {
        self.session(peer).await?;
        self.limits
            .get()
            .map(|limits| limits.reply_wait_seconds)
            .ok_or_else(|| "the guest's limits are not known".to_string())
    }

    /// Registers the connection's session with the guest's `start`.
    async fn register(self: &Arc<Self>, peer: &Peer<RoleServer>) -> Result<Session, String> {
        let _registering = self.registering.lock().await;
        if self.closing.load(Ordering::Acquire) {
            return Err("the connection is closing; no session was registered".into());
        }
        let info = peer.peer_info();
        let client = info.as_ref().map(|i| {
            format!("{} {}", i.client_info.name, i.client_info.version)
                .trim()
                .to_string()
        });
        let offers_roots = info
            .as_ref()
            .is_some_and(|i| i.capabilities.roots.is_some());
        let project_dir = match &self.global.project_dir {
            Some(dir) => absolute(dir).map_err(|e| format!("{e:#}"))?,
            None if offers_roots => self
                .root_dir(peer)
                .await
                .unwrap_or_else(|| self.working_dir.clone()),
            None => self.working_dir.clone(),
        };
        // Inside Claude Code, the session Claude Code registered through the
        // plugin's hooks; with --session-from-hooks (Codex), the session the
        // client's hooks registered for the thread, which records no process
        // of its own; under Gemini CLI, a session named after the Gemini
        // process, which its AfterAgent hook names the same way; any other
        // client is a new agent of its own.
        let in_claude_code = self.in_claude_code();
        let thread = self.thread.get().filter(|_| self.args.session_from_hooks);
        let agent_session = match (&self.global.agent_session, thread) {
            (Some(agent), _) => agent.clone(),
            (None, Some(thread)) => thread.clone(),
            (None, None) => match gemini_cli(info.as_ref().map(|i| i.client_info.name.as_str())) {
                Some(gemini) => gemini.gemini_agent_session(),
                None => format!("mcp-{}-{}", std::process::id(), unique_suffix()),
            },
        };
        let agent_process = if in_claude_code {
            ProcessId::claude()
        } else if thread.is_some() {
            None
        } else {
            ProcessId::of(std::process::id())
        }
        .map(|p| p.to_text());
        let session = Session {
            id: String::new(),
            project_dir,
            agent_session,
            agent_process,
            client,
        };
        let start = session.clone();
        let bridge = self.clone();
        let registered = tokio::task::spawn_blocking(move || {
            let mut invocation = bridge.instance(&start, None)?;
            let result = invocation.run(&wit::Verb::Start);
            Ok::<_, anyhow::Error>((invocation, result?))
        })
        .await
        .map_err(|e| format!("registration failed: {e}"))?
        .map_err(|e| format!("{e:#}"))?;
        let (invocation, result) = registered;
        match result {
            Ok(report) => {
                print_warnings(&report.warnings);
                let wit::Outcome::Session(manifest) = report.outcome else {
                    return Err(
                        "the guest answered start with something other than a session".into(),
                    );
                };
                let session = Session {
                    id: manifest.session_id,
                    ..session
                };
                self.checkin(invocation);
                match start_reaper(&self.global, &session) {
                    Ok(stdin) => {
                        *self.reaper.lock().unwrap_or_else(|e| e.into_inner()) = Some(stdin);
                    }
                    Err(err) => eprintln!(
                        "bridge-host mcp: {err:#}; if this server is killed, its session stays \
                         until a cleanup"
                    ),
                }
                Ok(session)
            }
            Err(failure) => Err(format!(
                "this connection could not register a bridge session: {}",
                Invocation::failure_text(&failure)
            )),
        }
    }

    /// True when Claude Code started this server: it passes its own
    /// session ID (`CLAUDE_CODE_SESSION_ID`, the one its hooks get), so the
    /// MCP tools speak for the same bridge session as the plugin's hooks
    /// and its Bash commands.
    fn in_claude_code(&self) -> bool {
        self.global.agent_session.is_some()
    }

    /// True when the client's hooks register its sessions: the server
    /// registers none at `initialize`.
    pub(crate) fn hooks_register(&self) -> bool {
        self.in_claude_code() || self.args.session_from_hooks
    }

    /// Notes the thread a tool call names (`_meta.threadId`), with
    /// `--session-from-hooks`; the first one seen is this connection's.
    pub(crate) fn note_thread(&self, meta: &rmcp::model::RequestMetaObject) {
        if !self.args.session_from_hooks || self.thread.get().is_some() {
            return;
        }
        let named = meta.get("threadId").and_then(|v| v.as_str());
        if let Some(thread) = named.filter(|t| crate::hooks::is_agent_session(t)) {
            let _ = self.thread.set(thread.to_string());
        }
    }

    /// The project directory the client's roots name: the first `file:`
    /// root that is an absolute directory. (SEP-2577 deprecates roots in
    /// the newest protocol revision; the clients in use still send them.)
    #[allow(deprecated)]
    async fn root_dir(&self, peer: &Peer<RoleServer>) -> Option<PathBuf> {
        let roots = match tokio::time::timeout(ROOTS_TIMEOUT, peer.list_roots()).await {
            Ok(Ok(result)) => result.roots,
            Ok(Err(err)) => {
                eprintln!(
                    "bridge-host mcp: the client's roots/list failed ({err}); using the working directory"
                );
                return None;
            }
            Err(_) => {
                eprintln!(
                    "bridge-host mcp: the client did not answer roots/list within {}s; using the working directory",
                    ROOTS_TIMEOUT.as_secs()
                );
                return None;
            }
        };
        roots.iter().find_map(|root| file_uri_dir(&root.uri))
    }
}

impl Bridge {
    /// The guest, loaded (or compiled, for a `--guest` not yet in the
    /// compile cache) by the first caller; the others wait for it. A guest
    /// that fails to load is tried again by the next call, which reports
    /// why.
    fn component(&self) -> Result<Component> {
        let mut loaded = self.component.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(component) = &*loaded {
            return Ok(component.clone());
        }
        let (component, _) = GuestSource::from_global(&self.global)?.load(&self.global)?;
        *loaded = Some(component.clone());
        Ok(component)
    }

    /// The server's instructions and tool descriptions, in the words of the
    /// guest that runs the verbs; in the embedded guest's when that one
    /// words none (a 0.1.0 guest) or cannot load, whose failure each tool
    /// call then reports.
    fn words(&self) -> Result<wit::McpText> {
        let from = |component: &Component| -> Result<Option<wit::McpText>> {
            Guest::instantiate(component, &self.bridge_dir, &self.working_dir)?.mcp_text()
        };
        let chosen = self.component().and_then(|component| from(&component));
        if let Ok(Some(text)) = chosen {
            return Ok(text);
        }
        let (component, _) = GuestSource::embedded().load(&self.global)?;
        from(&component)?.context("the embedded guest gave no words for the MCP server")
    }

    /// A guest instance ready for `session`: an idle one from the pool, or a
    /// new one.
    fn instance(&self, session: &Session, interrupt: Option<Interrupt>) -> Result<Invocation> {
        let idle = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut invocation = match idle {
            Some(invocation) => invocation,
            None => {
                let place = Place {
                    working_dir: session.project_dir.clone(),
                    project_dir: session.project_dir.clone(),
                    agent_session: Some(session.agent_session.clone()),
                    caller: wit::Caller::Mcp,
                    agent_process: session.agent_process.clone(),
                    client: session.client.clone(),
                };
                let mut invocation = Invocation::with_component(
                    &self.global,
                    place,
                    &self.component()?,
                    &self.bridge_dir,
                )?;
                invocation.context.format = wit::OutputFormat::TextAndJson;
                let _ = self.limits.set(invocation.limits);
                invocation
            }
        };
        invocation.context.session = (!session.id.is_empty()).then(|| session.id.clone());
        invocation.withhold_loose()?;
        invocation.guest.interrupt(interrupt);
        Ok(invocation)
    }

    /// Returns an instance whose call ended normally to the pool.
    fn checkin(&self, mut invocation: Invocation) {
        invocation.guest.interrupt(None);
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_SIZE {
            pool.push(invocation);
        }
    }

    /// Runs one verb for `session` on a pooled instance. An instance whose
    /// call trapped (a cancelled wait among them) is dropped.
    fn run_verb(
        &self,
        session: &Session,
        verb: &wit::Verb,
        interrupt: Option<Interrupt>,
    ) -> Result<Result<wit::Report, wit::Failure>> {
        let mut invocation = self.instance(session, interrupt)?;
        let result = invocation.run(verb)?;
        self.checkin(invocation);
        Ok(result)
    }

    /// Commits a delivery whose response has been written.
    fn commit(&self, ticket: &wit::ClaimTicket) {
        let Some(session) = self.session.get() else {
            return;
        };
        let committed = self.instance(session, None).and_then(|mut invocation| {
            let done = invocation
                .guest
                .commit_delivery(&invocation.context, ticket)?;
            self.checkin(invocation);
            Ok(done)
        });
        match committed {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!(
                "bridge-host mcp: warning: {} was handed over, but not filed as taken: {}",
                ticket.message_id,
                describe(&err)
            ),
            Err(err) => eprintln!(
                "bridge-host mcp: warning: {} was handed over, but not filed as taken: {err:#}",
                ticket.message_id
            ),
        }
    }

    /// Stops the session, as `bridge-host run stop` does, once the
    /// connection has closed.
    async fn stop(self: &Arc<Self>) -> Result<()> {
        // `closing` is set: a registration under way finishes, and none
        // starts after this.
        let _registered = self.registering.lock().await;
        let Some(session) = self.session.get().cloned() else {
            return Ok(());
        };
        let bridge = self.clone();
        let stopped =
            tokio::task::spawn_blocking(move || bridge.run_verb(&session, &wit::Verb::Stop, None))
                .await
                .map_err(|e| anyhow!("{e}"))??;
        match stopped {
            Ok(report) => {
                print_warnings(&report.warnings);
                Ok(())
            }
            // Claude Code's SessionEnd hook may have stopped it first.
            Err(failure)
                if matches!(
                    failure.error,
                    wit::BridgeError::NoSuchSession(_) | wit::BridgeError::NoIdentity
                ) =>
            {
                Ok(())
            }
            Err(failure) => Err(anyhow!(
                "the session was not stopped: {}",
                Invocation::failure_text(&failure)
            )),
        }
    }
}

/// A directory from a `file:` URI (`file:///home/me/app`), with its
/// percent-escapes decoded; None for anything else.
fn file_uri_dir(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    // `file://localhost/path` names the same file as `file:///path`.
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    let mut bytes = Vec::with_capacity(path.len());
    let mut raw = path.bytes();
    while let Some(b) = raw.next() {
        if b == b'%' {
            let hex = [raw.next()?, raw.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    let text = String::from_utf8(bytes).ok()?;
    // Windows clients send `file:///C:/work/app`.
    let text = match text.strip_prefix('/') {
        Some(drive) if cfg!(windows) && drive.get(1..2) == Some(":") => drive.to_string(),
        _ => text,
    };
    let dir = PathBuf::from(text);
    (dir.is_absolute() && dir.is_dir()).then_some(dir)
}

/// The Gemini CLI process that started this server, when the client is
/// Gemini CLI: it marks the servers it starts with `GEMINI_CLI=1` and names
/// itself `gemini-cli-mcp-client` (0.61.0). The variable alone is not
/// enough: every command Gemini's shell tool runs inherits it, and so
/// would a test suite, or another client, started from there. The
/// process (this server's parent, past a shell) names the connection's
/// agent session, so that its AfterAgent hook (`bridge-host hook
/// gemini-after-agent`), another child of the same process, finds the same
/// bridge session.
fn gemini_cli(client_name: Option<&str>) -> Option<ProcessId> {
    let marked = std::env::var_os("GEMINI_CLI").is_some_and(|v| v == "1");
    let named = client_name.is_some_and(|n| n.starts_with("gemini-cli"));
    (marked && named).then(ProcessId::claude).flatten()
}

/// A suffix that tells this connection's agent session apart from an
/// earlier process's with the same PID.
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}")
}

/// Text content for a tool result.
fn text(text: impl Into<String>) -> ContentBlock {
    ContentBlock::text(text.into())
}

/// The JSON-RPC error a cancelled call ends with, for clients that still
/// read one.
fn cancelled_error() -> ErrorData {
    ErrorData::new(
        ErrorCode(-32800),
        "the call was cancelled; nothing was taken from the inbox",
        None,
    )
}

/// Progress for a waiting call, when the client asked for it.
fn progress(
    token: rmcp::model::ProgressToken,
    waited: u32,
    total: Option<u32>,
) -> ProgressNotificationParam {
    let progress = ProgressNotificationParam::new(token, f64::from(waited));
    match total {
        Some(total) => progress.with_total(f64::from(total)),
        None => progress,
    }
}

/// Turns a verb's result into a tool result: the guest's text, its
/// warnings, and its JSON as `structuredContent`; a failure is a tool
/// error in the guest's words.
fn tool_result(result: Result<Result<wit::Report, wit::Failure>>) -> CallToolResult {
    let warnings = |list: &[String]| -> Option<ContentBlock> {
        (!list.is_empty()).then(|| {
            text(
                list.iter()
                    .map(|w| format!("warning: {w}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })
    };
    match result {
        Ok(Ok(report)) => {
            let structured = report
                .structured
                .as_deref()
                .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
                .map(|mut json| {
                    // Claude Code and Codex show a model only the structured
                    // content when there is some, so it carries the text as
                    // well: the fenced peer words and what to do next.
                    if let Some(object) = json.as_object_mut() {
                        object.insert("text".into(), report.rendered.clone().into());
                        if !report.warnings.is_empty() {
                            object.insert("warnings".into(), report.warnings.clone().into());
                        }
                    }
                    json
                });
            let mut content = vec![text(report.rendered)];
            content.extend(warnings(&report.warnings));
            let mut result = CallToolResult::success(content);
            result.structured_content = structured;
            result
        }
        Ok(Err(failure)) => {
            let mut content = vec![text(Invocation::failure_text(&failure))];
            content.extend(warnings(&failure.warnings));
            CallToolResult::error(content)
        }
        Err(err) => CallToolResult::error(vec![text(format!("bridge-host: {err:#}"))]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_uri_names_its_directory_and_anything_else_names_none() {
        let dir = tempfile_dir();
        let uri = format!("file://{}", dir.display()).replace(' ', "%20");
        assert_eq!(file_uri_dir(&uri), Some(dir.clone()));
        assert_eq!(file_uri_dir("https://example.com/x"), None);
        assert_eq!(file_uri_dir("file:///no/such/dir/anywhere"), None);
        assert_eq!(file_uri_dir("file:///bad%zz"), None);
        let _ = std::fs::remove_dir(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bridge mcp {}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
