//! Claude Code hooks. The plugin's `hooks/hooks.json` runs
//! `bridge-host hook <event>` with the hook's JSON on standard input; this
//! module turns that JSON into an invocation and runs the guest's verbs.
//! Claude Code's session ID comes from the JSON, never from the hook's
//! working directory, so a hook behaves the same wherever it is started.
//! Gemini CLI's AfterAgent hook is in [`gemini`].

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::Value;

use crate::invoke::{Config, Invocation, Place, absolute, print_warnings};
use crate::process::ProcessId;
use crate::sandbox::wit;
use crate::{compile_cache, dirs};

pub mod approve;
mod codex;
pub(crate) use codex::codex_program;
mod gemini;

/// The hook events the plugin handles.
#[derive(Subcommand, Clone)]
pub enum Event {
    /// SessionStart: register this Claude session's bridge session and tell
    /// Claude its ID (printed on standard output, which Claude reads).
    SessionStart,
    /// SessionEnd: stop the bridge session of this Claude session, and no
    /// other.
    SessionEnd,
    /// PreToolUse: approve a Bash call that is exactly one
    /// `bridge-host run <verb> …` with literal arguments, so a woken session
    /// answers with nobody at the terminal; say nothing about any other.
    Approve,
    /// For an `asyncRewake` hook: wait for the next message for this Claude
    /// session, then print it on standard error and exit 2, which wakes
    /// Claude with it. Exits 0 at once when another wake hook of the same
    /// session is already waiting.
    Wake {
        /// Wait up to this many seconds for the session to be registered
        /// (SessionStart hooks run side by side, so the one that registers
        /// may not have finished yet).
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        registration_grace: u64,
    },
    /// Codex's SessionStart: register this Codex thread's bridge session,
    /// print who it is, and start its waker.
    CodexSessionStart,
    /// Codex's Stop: confirm which handed-over messages the thread's
    /// rollout shows.
    CodexStop,
    /// Codex's SessionEnd: stop the thread's bridge session. Unlike
    /// Claude Code's, it never stays away: away answers resume a Claude
    /// Code transcript, which a Codex thread does not have.
    CodexSessionEnd,
    /// The waker CodexSessionStart leaves behind: queue each message that
    /// should wake the thread into it with `codex queue`, until the session
    /// ends. Takes no standard input.
    #[command(hide = true)]
    CodexWake {
        /// The Codex thread ID.
        #[arg(long)]
        thread: String,
    },
    /// Gemini CLI's AfterAgent hook: at the end of a turn, hand the next
    /// message for this Gemini session's bridge session (the one its
    /// `bridge-host mcp` server registered) to the model as its next
    /// prompt; print nothing when none is pending.
    GeminiAfterAgent,
}

/// The largest hook input read; Claude Code's hook JSON is a few hundred bytes.
const MAX_INPUT_BYTES: u64 = 1 << 20;
/// The most of the transcript's end that the Stop hook hands the guest to
/// confirm which delivered messages the agent saw.
const MAX_TRANSCRIPT_TAIL: u64 = 256 << 10;
/// Setting `BRIDGE_AUTO_START=0` keeps SessionStart from registering.
const AUTO_START_VAR: &str = "BRIDGE_AUTO_START";

/// What the hooks use of Claude Code's hook input.
struct HookInput {
    /// Claude Code's session ID (`session_id`).
    session_id: String,
    /// The session's working directory (`cwd`).
    cwd: Option<PathBuf>,
    /// The session's transcript (`transcript_path`).
    transcript: Option<PathBuf>,
}

impl HookInput {
    fn read(stdin: impl Read) -> Result<Self> {
        let mut bytes = Vec::new();
        stdin
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes)
            .context("cannot read the hook input from standard input")?;
        if bytes.len() as u64 > MAX_INPUT_BYTES {
            bail!(
                "the hook input is over {MAX_INPUT_BYTES} bytes; Claude Code sends a small JSON object"
            );
        }
        let value: Value = serde_json::from_slice(&bytes).context(
            "the hook input on standard input is not JSON; Claude Code passes the hook's JSON \
             there (run this only from the plugin's hooks)",
        )?;
        let session_id = match value.get("session_id") {
            Some(Value::String(id)) if is_agent_session(id) => id.clone(),
            Some(other) => bail!(
                "the hook input's session_id {other} is not 1 to 128 letters, digits, '-' or '_'"
            ),
            None => bail!("the hook input has no session_id; is this a Claude Code hook?"),
        };
        let cwd = value
            .get("cwd")
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        let transcript = value
            .get("transcript_path")
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        Ok(HookInput {
            session_id,
            cwd,
            transcript,
        })
    }

    /// The input of a hook that runs for the agent session `id` alone (the
    /// Codex waker, which has no hook input of its own).
    fn for_session(id: &str) -> Result<Self> {
        if !is_agent_session(id) {
            bail!("the session ID {id:?} is not 1 to 128 letters, digits, '-' or '_'");
        }
        Ok(HookInput {
            session_id: id.to_string(),
            cwd: None,
            transcript: None,
        })
    }

    /// The session's own directory: `cwd` from the input, else
    /// `CLAUDE_PROJECT_DIR`, which Claude Code sets for hooks.
    fn project_dir(&self, global: &Config) -> Result<PathBuf> {
        if let Some(dir) = &global.project_dir {
            return absolute(dir);
        }
        self.cwd
            .clone()
            .or_else(|| {
                std::env::var_os("CLAUDE_PROJECT_DIR")
                    .map(PathBuf::from)
                    .filter(|p| p.is_absolute())
            })
            .context("the hook input has no absolute cwd and CLAUDE_PROJECT_DIR is not set")
    }
}

/// Claude Code session IDs are UUIDs; anything outside this set is refused
/// before it reaches a file or a shell line.
pub(crate) fn is_agent_session(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn run(global: &Config, event: Event) -> Result<ExitCode> {
    if let Event::Approve = event {
        return approve::run();
    }
    if let Event::CodexWake { thread } = &event {
        return codex::wake(global, thread);
    }
    if let Event::GeminiAfterAgent = event {
        return Ok(gemini::after_agent(global));
    }
    let input = HookInput::read(io::stdin().lock())?;
    match event {
        Event::SessionStart => session_start(global, &input),
        Event::SessionEnd => session_end(global, &input, wit::Caller::SessionHook),
        Event::Wake { registration_grace } => {
            wake(global, &input, Duration::from_secs(registration_grace))
        }
        Event::CodexSessionStart => codex::session_start(global, &input),
        Event::CodexStop => codex::stop(global, &input),
        // The guest keeps a session away only when a session hook (Claude
        // Code's) ends it; for Codex's waker-side caller it stops.
        Event::CodexSessionEnd => session_end(global, &input, wit::Caller::ToolWake),
        Event::Approve | Event::CodexWake { .. } | Event::GeminiAfterAgent => {
            unreachable!("handled above")
        }
    }
}

/// `BRIDGE_AUTO_START=0`: SessionStart registers nothing.
fn auto_start_off() -> bool {
    std::env::var(AUTO_START_VAR).is_ok_and(|v| v == "0")
}

/// The text Claude sees at session start. Failures are said there too, and
/// the hook still exits 0: a bridge problem must not stop the session.
fn session_start(global: &Config, input: &HookInput) -> Result<ExitCode> {
    if auto_start_off() {
        return Ok(ExitCode::SUCCESS);
    }
    export_session_for_old_claude(input);
    if let Err(err) = crate::relay::start_if_configured(global) {
        eprintln!("session-bridge: the relay was not started: {err:#}");
    }
    let claude = ProcessId::claude().map(|p| p.to_text());
    let registered = register(global, input, wit::Caller::SessionHook, claude);
    if registered.is_ok() {
        // Without the record, only the restart-race protection is lost.
        let recorded =
            Owner::of(global, input).and_then(|owner| match (owner, ProcessId::claude()) {
                (Some(owner), Some(me)) => owner.record(&me),
                (Some(_), None) => bail!(
                    "cannot tell which Claude Code process runs this session ({}); if the \
                     session is resumed in another process, the old one's end will stop \
                     its bridge",
                    ProcessId::unsupported().unwrap_or("its parent process could not be read")
                ),
                (None, _) => Ok(()),
            });
        if let Err(err) = recorded {
            eprintln!("session-bridge: {err:#}");
        }
    }
    match registered {
        Ok(note) => print!("{note}"),
        Err(err) => println!(
            "session-bridge: this session could not be registered: {err:#}. \
             `/session-bridge:start` retries and shows the error."
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Registers the agent session `input` names with the guest's
/// `session-start`, for the agent process `agent_process` when the hook
/// knows it; returns the guest's note, worded for `caller`.
fn register(
    global: &Config,
    input: &HookInput,
    caller: wit::Caller,
    agent_process: Option<String>,
) -> Result<String> {
    let project_dir = input.project_dir(global)?;
    let place = Place {
        working_dir: project_dir.clone(),
        project_dir,
        agent_session: Some(input.session_id.clone()),
        caller,
        agent_process,
        client: None,
    };
    let mut invocation = Invocation::open(global, place)?;
    match invocation.run(&wit::Verb::SessionStart)? {
        Ok(report) => {
            print_warnings(&report.warnings);
            Ok(report.rendered)
        }
        Err(failure) => bail!("{}", Invocation::failure_text(&failure)),
    }
}

/// Claude Code sets `CLAUDE_CODE_SESSION_ID` for Bash tool commands; builds
/// that did not can be given it through `CLAUDE_ENV_FILE`, which
/// SessionStart hooks may append `export` lines to.
fn export_session_for_old_claude(input: &HookInput) {
    if std::env::var_os("CLAUDE_CODE_SESSION_ID").is_some() {
        return;
    }
    let Some(env_file) = std::env::var_os("CLAUDE_ENV_FILE") else {
        return;
    };
    // `is_agent_session` already limited the ID to characters a shell
    // reads literally.
    let line = format!("export CLAUDE_CODE_SESSION_ID={}\n", input.session_id);
    let mut options = fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let appended = options
        .open(&env_file)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(err) = appended {
        eprintln!(
            "session-bridge: cannot append to CLAUDE_ENV_FILE {}: {err}",
            Path::new(&env_file).display()
        );
    }
}

/// A place that names no directory: the session is found by Claude Code's
/// session ID alone, never by a project pointer or a working directory, so
/// a hook acts only on the session this Claude session registered.
fn agent_only(input: &HookInput, caller: wit::Caller) -> Place {
    Place {
        working_dir: PathBuf::new(),
        project_dir: PathBuf::new(),
        agent_session: Some(input.session_id.clone()),
        caller,
        agent_process: None,
        client: None,
    }
}

/// Resolves the bridge session this Claude session registered; None when
/// it has none (never registered, or already stopped).
fn own_session(invocation: &mut Invocation) -> Result<Option<String>> {
    match invocation.run(&wit::Verb::Id)? {
        Ok(wit::Report {
            outcome: wit::Outcome::Session(manifest),
            ..
        }) => Ok(Some(manifest.session_id)),
        Ok(_) => bail!("the guest answered id with something other than a session"),
        Err(failure) => match failure.error {
            wit::BridgeError::NoIdentity | wit::BridgeError::NoSuchSession(_) => Ok(None),
            _ => bail!("{}", Invocation::failure_text(&failure)),
        },
    }
}

fn session_end(global: &Config, input: &HookInput, caller: wit::Caller) -> Result<ExitCode> {
    let owner = Owner::of(global, input)?;
    if let Some(newer) = owner
        .as_ref()
        .and_then(|o| o.taken_over_from(ProcessId::claude()))
    {
        eprintln!(
            "session-bridge: not stopping: Claude Code process {} registered this session again \
             and still runs",
            newer.pid
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut invocation = Invocation::open(global, agent_only(input, caller))?;
    let Some(id) = own_session(&mut invocation)? else {
        return Ok(ExitCode::SUCCESS);
    };
    invocation.context.session = Some(id);
    // The session was found with no project; its stop clears the pointer
    // of the project this hook runs for, if it still names the session.
    if let Ok(project_dir) = input.project_dir(global) {
        invocation.guest.use_project_pointer(&project_dir);
    }
    // In a project that opted in to away answers, the guest keeps the
    // session as away, answered from this transcript in this directory.
    if let Some(cwd) = input.cwd.as_deref().and_then(Path::to_str) {
        invocation.context.working_dir = cwd.to_string();
    }
    let end = wit::Verb::SessionEnd(wit::SessionEndRequest {
        transcript: input
            .transcript
            .as_deref()
            .and_then(Path::to_str)
            .map(str::to_string),
    });
    let stopped = invocation.run(&end)?;
    if let Some(owner) = owner {
        owner.forget();
    }
    match stopped {
        Ok(report) => {
            print_warnings(&report.warnings);
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => match failure.error {
            wit::BridgeError::NoSuchSession(_) => Ok(ExitCode::SUCCESS),
            _ => bail!("{}", Invocation::failure_text(&failure)),
        },
    }
}

/// Exit status that makes Claude Code wake the session with our stderr.
const WAKE_CLAUDE: u8 = 2;
/// How often a wake hook looks for its session while it may still be
/// being registered.
const REGISTRATION_POLL: Duration = Duration::from_millis(100);

/// Claude Code's `CLAUDE_CODE_ENTRYPOINT` in `claude -p` (an interactive
/// session has `cli`). A print-mode run waits for its `asyncRewake` hooks
/// before it ends, so a wake hook that waited there would keep it from ever
/// ending. (The Agent SDKs' `sdk-ts` and `sdk-py` are left to wake: a
/// streaming SDK session lives on like a terminal one.)
const PRINT_MODE_ENTRYPOINT: &str = "sdk-cli";

fn print_mode() -> bool {
    std::env::var("CLAUDE_CODE_ENTRYPOINT").is_ok_and(|entry| entry == PRINT_MODE_ENTRYPOINT)
}

fn wake(global: &Config, input: &HookInput, registration_grace: Duration) -> Result<ExitCode> {
    if print_mode() {
        // Nothing will be woken: confirm what the turn saw and leave any
        // message queued for the next session's listen or wake.
        if let Ok(mut invocation) =
            Invocation::open(global, agent_only(input, wit::Caller::WakeHook))
            && let Ok(Some(id)) = own_session(&mut invocation)
        {
            invocation.context.session = Some(id);
            confirm_seen(&mut invocation, input.transcript.as_deref());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(_lock) = WakeLock::acquire(global, input)? else {
        // Another wake hook of this session is waiting already.
        return Ok(ExitCode::SUCCESS);
    };
    let mut invocation = Invocation::open(global, agent_only(input, wit::Caller::WakeHook))?;
    let grace_ends = Instant::now() + registration_grace;
    let id = loop {
        match own_session(&mut invocation)? {
            Some(id) => break id,
            None if Instant::now() < grace_ends => std::thread::sleep(REGISTRATION_POLL),
            // Never registered, or stopped: nothing to wake for.
            None => return Ok(ExitCode::SUCCESS),
        }
    };
    invocation.context.session = Some(id);
    confirm_seen(&mut invocation, input.transcript.as_deref());
    let Some(report) = next_to_wake_for(&mut invocation)? else {
        return Ok(ExitCode::SUCCESS);
    };
    invocation.hand_over(&report, "listen", &mut io::stderr().lock())?;
    Ok(ExitCode::from(WAKE_CLAUDE))
}

/// Waits for the next message the agent should be woken for, filing the
/// ones the guest says the agent has nothing to do with (a pong, a ping it
/// answered); None once the session is stopped. The claim of the message
/// returned is the caller's to hand over.
fn next_to_wake_for(invocation: &mut Invocation) -> Result<Option<wit::Report>> {
    let listen = wit::Verb::Listen(wit::ListenRequest {
        timeout_seconds: None,
    });
    loop {
        let report = match invocation.run(&listen)? {
            Ok(report) => report,
            Err(failure) => match failure.error {
                // Stopped while waiting: nothing left to wake for.
                wit::BridgeError::NoSuchSession(_) | wit::BridgeError::NoIdentity => {
                    return Ok(None);
                }
                _ => bail!("{}", Invocation::failure_text(&failure)),
            },
        };
        print_warnings(&report.warnings);
        let silent = matches!(&report.outcome, wit::Outcome::Delivered(d) if d.silent);
        if !silent {
            return Ok(Some(report));
        }
        invocation.hand_over(&report, "listen", &mut io::sink())?;
    }
}

/// After a turn (the Stop hook runs the wake hook), tells the guest what
/// the end of the transcript says, so that it can confirm which messages
/// the agent was handed and saw. A transcript that cannot be read only
/// loses that confirmation.
fn confirm_seen(invocation: &mut Invocation, transcript: Option<&Path>) {
    if !invocation.guest_has_tool_wakes_and_away() {
        return;
    }
    let Some(path) = transcript else {
        return;
    };
    let Some(transcript) = transcript_tail(path) else {
        return;
    };
    match invocation.run(&wit::Verb::Seen(wit::SeenRequest { transcript })) {
        Ok(Ok(report)) => print_warnings(&report.warnings),
        Ok(Err(failure)) => print_warnings(&failure.warnings),
        Err(err) => eprintln!("session-bridge: cannot confirm what was seen: {err:#}"),
    }
}

/// The last [`MAX_TRANSCRIPT_TAIL`] bytes of a transcript, as text.
fn transcript_tail(path: &Path) -> Option<String> {
    use std::io::{Seek, SeekFrom};
    let mut file = fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let start = meta.len().saturating_sub(MAX_TRANSCRIPT_TAIL);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_TRANSCRIPT_TAIL)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Where the hooks keep what they must remember about one Claude session
/// between calls: `<cache>/hooks/<key>.<kind>`, private like the compile
/// cache. The key covers the bridge directory and Claude's session ID.
fn state_file(global: &Config, input: &HookInput, kind: &str) -> Result<Option<PathBuf>> {
    let Some(dir) = compile_cache::private_subdir(
        global.cache_dir.as_deref(),
        "hooks",
        "hook state directory",
    )?
    else {
        return Ok(None);
    };
    let bridge = global.bridge_dir.clone().unwrap_or_default();
    let mut key = blake3::Hasher::new();
    key.update(bridge.as_os_str().as_encoded_bytes());
    key.update(b"\0");
    key.update(input.session_id.as_bytes());
    Ok(Some(dir.join(format!(
        "{}.{kind}",
        &key.finalize().to_hex()[..32]
    ))))
}

/// One waiting wake hook per Claude session and bridge directory: Claude
/// Code starts one at every turn's end, and all but the first step aside.
/// The lock is an `flock` (Unix) or `LockFileEx` (Windows) on a private
/// file, so it is released whenever the holder exits, however it exits.
struct WakeLock {
    _file: Option<fs::File>,
}

impl WakeLock {
    fn acquire(global: &Config, input: &HookInput) -> Result<Option<Self>> {
        // Without a cache directory (no HOME) there is nowhere private to
        // lock; the hook then waits unlocked.
        let Some(path) = state_file(global, input, "wake-lock")? else {
            return Ok(Some(WakeLock { _file: None }));
        };
        let file = dirs::new_file_options(
            fs::OpenOptions::new().read(true).write(true).create(true),
            0o600,
        )
        .open(&path)
        .with_context(|| format!("cannot open the wake lock {}", path.display()))?;
        // `flock` on Unix, `LockFileEx` on Windows.
        match file.try_lock() {
            Ok(()) => Ok(Some(WakeLock { _file: Some(file) })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(err)) => {
                Err(err).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// Which Claude Code process registered a Claude session last. A resumed
/// session registers the same ID from a new process; when the old process
/// ends after that, its SessionEnd must not stop the bridge the new one
/// uses.
struct Owner {
    path: PathBuf,
}

impl Owner {
    fn of(global: &Config, input: &HookInput) -> Result<Option<Self>> {
        Ok(state_file(global, input, "owner")?.map(|path| Owner { path }))
    }

    fn record(&self, process: &ProcessId) -> Result<()> {
        let temp = self
            .path
            .with_extension(format!("owner.{}.tmp", std::process::id()));
        dirs::new_file_options(fs::OpenOptions::new().write(true).create_new(true), 0o600)
            .open(&temp)
            .and_then(|mut f| writeln!(f, "{}", process.to_text()))
            .and_then(|()| fs::rename(&temp, &self.path))
            .inspect_err(|_| {
                let _ = fs::remove_file(&temp);
            })
            .with_context(|| {
                format!(
                    "cannot record the session's owner in {}",
                    self.path.display()
                )
            })
    }

    /// Another Claude Code process, still running, registered the session
    /// after this one did.
    fn taken_over_from(&self, me: Option<ProcessId>) -> Option<ProcessId> {
        let text = fs::read_to_string(&self.path).ok()?;
        let owner = ProcessId::parse(&text)?;
        (Some(&owner) != me.as_ref() && owner.is_running()).then_some(owner)
    }

    fn forget(&self) {
        let _ = fs::remove_file(&self.path);
    }
}
