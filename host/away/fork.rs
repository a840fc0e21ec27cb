//! Running one read-only fork of an away session's transcript: Claude
//! Code's print mode, resumed from the session into a fork that is never
//! saved, with every tool that writes or runs anything removed and hooks
//! off (the measured facts are in tests/real_client/NOTES-away.md).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Result;
use serde_json::Value;

use super::RENEW_EVERY;
use crate::invoke::{Invocation, print_warnings};
use crate::sandbox::wit;

/// The program run: `claude` on PATH, unless this variable names another.
const CLAUDE_BIN_VAR: &str = "BRIDGE_CLAUDE_BIN";
/// The most of the fork's standard output read (its one JSON result).
const MAX_OUTPUT: u64 = 8 << 20;
/// The most of its standard error kept, for the failure's words.
const MAX_ERROR: u64 = 64 << 10;
/// How long a fork past its time has after SIGTERM before SIGKILL (Unix;
/// Windows has no SIGTERM, and the fork is killed at once).
#[cfg(unix)]
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How often the fork is looked at while it runs.
const POLL: Duration = Duration::from_millis(50);

/// The tools the fork keeps: reading only.
const READ_TOOLS: &str = "Read,Grep,Glob";
/// The tools taken away by name as well (a resumed session may list them).
const DENIED_TOOLS: &str = "Bash,Edit,Write,MultiEdit,NotebookEdit,Agent,Task,WebFetch,WebSearch";
/// Hooks off: the fork must not run the session's hooks (this plugin's
/// SessionStart would register the stopped session again), nor an
/// installed hook that approves tools.
const NO_HOOKS: &str = r#"{"disableAllHooks": true}"#;

/// The environment of the process that started the answerer (an agent's
/// shell, an MCP server) names that agent; the fork is not it.
const NOT_INHERITED: [&str; 9] = [
    "CLAUDECODE",
    "CLAUDE_CODE_ENTRYPOINT",
    "CLAUDE_CODE_SESSION_ID",
    "CLAUDE_PROJECT_DIR",
    "CLAUDE_ENV_FILE",
    "CLAUDE_PLUGIN_ROOT",
    "CLAUDE_PLUGIN_DATA",
    "BRIDGE_SESSION_ID",
    "PROJECT_DIR",
];

/// Runs the fork for `job`, renewing its claim meanwhile, and says how it
/// ended.
pub(super) fn answer(invocation: &mut Invocation, job: &wit::AwayJob) -> Result<wit::AwayResult> {
    let started = Instant::now();
    let mut ticket = job.ticket.clone();
    let result = |ticket: wit::ClaimTicket,
                  outcome: wit::AwayOutcome,
                  turns: u32,
                  cost_usd: f64,
                  last_written_ms: Option<u64>| wit::AwayResult {
        ticket,
        outcome,
        turns,
        cost_usd,
        elapsed_ms: started.elapsed().as_millis() as u64,
        last_written_ms,
    };
    let failed = |f| wit::AwayOutcome::Failed(f);
    let Some(transcript) = find_transcript(job) else {
        let named = job
            .transcript
            .clone()
            .unwrap_or_else(|| format!("~/.claude/projects/*/{}.jsonl", job.agent_session));
        return Ok(result(
            ticket,
            failed(wit::AwayFailure::TranscriptMissing(named)),
            0,
            0.0,
            None,
        ));
    };
    let last_written_ms = std::fs::metadata(&transcript)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    if !Path::new(&job.working_dir).is_dir() {
        let why = format!("its working directory {} is gone", job.working_dir);
        return Ok(result(
            ticket,
            failed(wit::AwayFailure::NotStarted(why)),
            0,
            0.0,
            last_written_ms,
        ));
    }
    let mut child = match command(job).spawn() {
        Ok(child) => child,
        Err(err) => {
            let why = format!(
                "cannot run {}: {err} (install Claude Code, or name it with {CLAUDE_BIN_VAR})",
                claude_bin().display()
            );
            return Ok(result(
                ticket,
                failed(wit::AwayFailure::NotStarted(why)),
                0,
                0.0,
                last_written_ms,
            ));
        }
    };
    let prompt = job.prompt.clone();
    let mut stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(stdin) = stdin.as_mut() {
            let _ = stdin.write_all(prompt.as_bytes());
        }
    });
    let out = reader(child.stdout.take(), MAX_OUTPUT);
    let err = reader(child.stderr.take(), MAX_ERROR);
    let deadline = started + Duration::from_secs(job.max_seconds.into());
    let mut renewed = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            stop(&mut child);
            break None;
        }
        if renewed.elapsed() >= RENEW_EVERY {
            match invocation.run(&wit::Verb::AwayRenew(ticket.clone()))? {
                Ok(report) => {
                    print_warnings(&report.warnings);
                    if let wit::Outcome::AwayRenewed(next) = report.outcome {
                        ticket = next;
                    }
                    renewed = Instant::now();
                }
                Err(failure) => {
                    // The claim lapsed: the query is another's to answer.
                    stop(&mut child);
                    let _ = writer.join();
                    anyhow::bail!("{}", Invocation::failure_text(&failure));
                }
            }
        }
        std::thread::sleep(POLL);
    };
    let _ = writer.join();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let Some(status) = status else {
        return Ok(result(
            ticket,
            failed(wit::AwayFailure::TimedOut(job.max_seconds)),
            0,
            0.0,
            last_written_ms,
        ));
    };
    let parsed = last_json(&stdout);
    let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name).cloned());
    let turns = field("num_turns").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
    let cost = field("total_cost_usd")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let subtype = field("subtype").and_then(|v| v.as_str().map(str::to_string));
    let is_error = field("is_error").and_then(|v| v.as_bool()).unwrap_or(true);
    let answer = field("result").and_then(|v| v.as_str().map(str::to_string));
    let outcome = match (status.success(), subtype.as_deref(), answer) {
        (true, Some("success"), Some(text)) if !is_error => wit::AwayOutcome::Answered(text),
        (_, Some("error_max_turns"), _) => failed(wit::AwayFailure::TurnLimit(job.max_turns)),
        _ => {
            let said = String::from_utf8_lossy(&stderr);
            let said = said.trim();
            let mut why = format!("it exited with {status}");
            if let Some(subtype) = subtype {
                why.push_str(&format!(", result {subtype}"));
            }
            if !said.is_empty() {
                let tail: String = said
                    .chars()
                    .rev()
                    .take(400)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                why.push_str(&format!(": {tail}"));
            }
            failed(wit::AwayFailure::ClientError(why))
        }
    };
    Ok(result(ticket, outcome, turns, cost, last_written_ms))
}

fn claude_bin() -> PathBuf {
    std::env::var_os(CLAUDE_BIN_VAR)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("claude"), PathBuf::from)
}

/// The fork's command: the question goes on standard input, so a question
/// that starts with `-` is never taken for an option.
fn command(job: &wit::AwayJob) -> Command {
    let mut command = Command::new(claude_bin());
    command
        .args(["-p", "--resume", &job.agent_session])
        .args(["--fork-session", "--no-session-persistence"])
        .args(["--output-format", "json"])
        .args(["--max-turns", &job.max_turns.to_string()])
        .args(["--permission-mode", "dontAsk"])
        .args(["--tools", READ_TOOLS])
        .args(["--disallowedTools", DENIED_TOOLS])
        .args(["--settings", NO_HOOKS])
        .arg("--strict-mcp-config")
        .current_dir(&job.working_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in NOT_INHERITED {
        command.env_remove(name);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Its own process group, so that the fork and whatever it starts
        // are stopped together.
        command.process_group(0);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec the closure makes one
        // async-signal-safe system call (prctl) and allocates nothing.
        unsafe {
            command.pre_exec(|| {
                // The fork ends with the answerer, however the answerer
                // ends: a killed answerer leaves no fork behind. SIGTERM,
                // not SIGKILL, so that Claude Code removes its own files
                // (a KILLed 2.1.332 leaves its /tmp/cc-socks/<pid>.sock).
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::TERM,
                ))
                .map_err(std::io::Error::from)
            });
        }
    }
    command
}

/// The transcript: where the hook said, or where Claude Code keeps it.
fn find_transcript(job: &wit::AwayJob) -> Option<PathBuf> {
    if let Some(path) = &job.transcript {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let config = std::env::var_os("CLAUDE_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".claude")))?;
    let name = format!("{}.jsonl", job.agent_session);
    std::fs::read_dir(config.join("projects"))
        .ok()?
        .flatten()
        .map(|entry| entry.path().join(&name))
        .find(|path| path.is_file())
}

/// Stops the fork's process group: SIGTERM, then SIGKILL after
/// [`TERM_GRACE`].
fn stop(child: &mut Child) {
    #[cfg(unix)]
    {
        use rustix::process::{Pid, Signal, kill_process_group};
        if let Some(pid) = Pid::from_raw(child.id() as i32) {
            let _ = kill_process_group(pid, Signal::TERM);
            let until = Instant::now() + TERM_GRACE;
            while Instant::now() < until {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    let _ = kill_process_group(pid, Signal::KILL);
                    return;
                }
                std::thread::sleep(POLL);
            }
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn reader(
    pipe: Option<impl Read + Send + 'static>,
    limit: u64,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(pipe) = pipe {
            let mut pipe = pipe.take(limit);
            let _ = pipe.read_to_end(&mut bytes);
            // Drain the rest, so the fork never blocks on a full pipe.
            let _ = std::io::copy(&mut pipe.into_inner(), &mut std::io::sink());
        }
        bytes
    })
}

/// The last line of `output` that is a JSON object: the result.
fn last_json(output: &[u8]) -> Option<Value> {
    String::from_utf8_lossy(output)
        .lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
}
