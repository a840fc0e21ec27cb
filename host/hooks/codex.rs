//! Codex hooks, which `bridge-host setup codex` installs in
//! `$CODEX_HOME/hooks.json`.
//!
//! Codex runs its agent in a background daemon and fires SessionStart at a
//! thread's first turn, with the thread ID as `session_id`. That hook
//! registers the thread's bridge session and leaves a waker behind: a
//! detached `bridge-host hook codex-wake`, which waits for the next message
//! that should wake the thread (the guest decides, as for Claude Code's
//! wake hook: never a pong, a ping it answered or a peer's session-ended
//! notice) and queues the guest's text into the thread with
//! `codex queue --thread <id> --message <text>`. An idle Codex TUI starts
//! a turn with it at once; a busy one runs it as its next turn. The claim
//! is given up only once `codex queue` succeeded, so a message Codex did
//! not take returns to the inbox when its lease ends.
//!
//! Stop confirms which handed-over messages the thread's rollout shows;
//! SessionEnd (when the daemon unloads the thread) stops the session, and
//! the waker with it.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{HookInput, WakeLock, agent_only, confirm_seen, own_session};
use crate::invoke::{Config, Invocation};
use crate::sandbox::wit;

/// The program that queues into a Codex thread: `codex` on PATH, unless
/// this variable names another.
const CODEX_BIN_VAR: &str = "BRIDGE_CODEX_BIN";
/// How many hand-overs in a row may fail before the waker gives up; the
/// messages then wait in the inbox for `check_inbox`.
const MAX_FAILURES: u32 = 5;
/// How long the waker rests after a failed hand-over, so that the lease
/// returns the message before it is claimed again.
const FAILURE_PAUSE: Duration = Duration::from_secs(3);

/// SessionStart: registers the thread's session, prints the guest's note
/// (Codex gives a SessionStart hook's output to the model), and starts the
/// waker. Failures are said and the hook exits 0: a bridge problem must
/// not stop the turn.
pub(super) fn session_start(global: &Config, input: &HookInput) -> Result<ExitCode> {
    if super::auto_start_off() {
        return Ok(ExitCode::SUCCESS);
    }
    if let Err(err) = crate::relay::start_if_configured(global) {
        eprintln!("session-bridge: the relay was not started: {err:#}");
    }
    match super::register(global, input, wit::Caller::ToolWake, None) {
        Ok(note) => {
            print!("{note}");
            if let Err(err) = spawn_waker(global, input) {
                eprintln!(
                    "session-bridge: this thread will not be woken by peers' messages: {err:#}"
                );
            }
        }
        Err(err) => println!("session-bridge: this session could not be registered: {err:#}."),
    }
    Ok(ExitCode::SUCCESS)
}

/// Stop: confirms which handed-over messages the thread's rollout shows.
pub(super) fn stop(global: &Config, input: &HookInput) -> Result<ExitCode> {
    let mut invocation = Invocation::open(global, agent_only(input, wit::Caller::ToolWake))?;
    if let Some(id) = own_session(&mut invocation)? {
        invocation.context.session = Some(id);
        confirm_seen(&mut invocation, input.transcript.as_deref());
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts `bridge-host hook codex-wake` for this thread, detached: in its
/// own session, with no standard input, and its output appended to a
/// private log in the cache directory.
fn spawn_waker(global: &Config, input: &HookInput) -> Result<()> {
    // The same bridge directory, cache, guest, guest settings and
    // retention as the hook that starts it.
    let mut command = global.this_program()?;
    command.args(["hook", "codex-wake", "--thread", &input.session_id]);
    let log = super::state_file(global, input, "codex-wake.log")?;
    crate::process::spawn_detached(&mut command, log.as_deref(), "waker")?;
    Ok(())
}

/// The waker: one per thread (a second steps aside), until the session
/// ends or Codex refuses hand-overs [`MAX_FAILURES`] times in a row.
pub(super) fn wake(global: &Config, thread: &str) -> Result<ExitCode> {
    let input = HookInput::for_session(thread)?;
    let Some(_lock) = WakeLock::acquire(global, &input)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut invocation = Invocation::open(global, agent_only(&input, wit::Caller::ToolWake))?;
    let Some(id) = own_session(&mut invocation)? else {
        return Ok(ExitCode::SUCCESS);
    };
    invocation.context.session = Some(id);
    let codex = codex_program();
    let mut failures = 0;
    // Until the session is stopped: nothing left to wake for then.
    while let Some(report) = super::next_to_wake_for(&mut invocation)? {
        let queued =
            invocation.hand_over_with(&report, "listen", |text| queue(&codex, thread, text));
        match queued {
            Ok(()) => failures = 0,
            Err(err) => {
                failures += 1;
                eprintln!("session-bridge: the message was not handed to Codex: {err:#}");
                if failures >= MAX_FAILURES {
                    bail!(
                        "Codex refused {MAX_FAILURES} hand-overs in a row; the waker stops, and \
                         the messages wait for the check_inbox tool"
                    );
                }
                std::thread::sleep(FAILURE_PAUSE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The Codex program the waker runs: `BRIDGE_CODEX_BIN`, else `codex` (on
/// PATH). The doctor checks this one.
pub(crate) fn codex_program() -> PathBuf {
    std::env::var_os(CODEX_BIN_VAR)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("codex"), PathBuf::from)
}

/// `codex queue --thread <thread> --message <text>`; an error with what
/// Codex said when it did not queue the message.
fn queue(codex: &std::path::Path, thread: &str, text: &str) -> Result<()> {
    let output = Command::new(codex)
        .args(["queue", "--thread", thread, "--message", text])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", codex.display()))?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let said = said
        .lines()
        .take_while(|l| !l.starts_with("Stack backtrace"))
        .collect::<Vec<_>>()
        .join(" ");
    bail!(
        "{} queue exited with {}: {}",
        codex.display(),
        output.status,
        said.trim()
    )
}
