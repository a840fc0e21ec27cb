//! Away answers through the real `bridge-host`, with a stand-in for the
//! `claude` program (the real Claude Code CLI is driven in
//! `tests/real_client/away.py`, run by `real_client.rs`): what the fork is
//! run with, that an ask from a terminal gets its answer with its
//! provenance, that a killed answerer loses no query and leaves no fork,
//! and that a fork past its time is stopped and the asker told.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::World;

const AGENT: &str = "6a0f4c2e-1b3d-4e5f-8a9b-0c1d2e3f4a5b";

/// A `claude` that records its arguments, working directory and bridge
/// variables in `<dir>/calls/<pid>`, waits while `<dir>/stall` exists if
/// the question says SLOW,
/// and answers with the question's last line, as `claude -p
/// --output-format json` prints a result.
fn stand_in_claude(dir: &Path) -> PathBuf {
    let calls = dir.join("calls");
    std::fs::create_dir_all(&calls).unwrap();
    let program = dir.join("claude");
    let script = format!(
        r#"#!/usr/bin/env python3
import json, os, sys, time
prompt = sys.stdin.read()
with open(os.path.join({calls:?}, str(os.getpid())), "w") as f:
    f.write("\n".join(sys.argv[1:]))
    f.write("\ncwd=" + os.getcwd())
    f.write("\nagent=" + os.environ.get("CLAUDE_CODE_SESSION_ID", "none") + "\n")
if "SLOW" in prompt:
    while os.path.exists({stall:?}):
        time.sleep(0.2)
last = prompt.rstrip("\n").split("\n")[-1]
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False, "num_turns": 2,
                  "total_cost_usd": 0.02, "result": "ANSWER to " + last}}))
"#,
        calls = calls.display().to_string(),
        stall = dir.join("stall").display().to_string()
    );
    std::fs::write(&program, script).unwrap();
    let mut permissions = std::fs::metadata(&program).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&program, permissions).unwrap();
    program
}

struct Away {
    w: World,
    lib: PathBuf,
    app: PathBuf,
    claude: PathBuf,
    transcript: PathBuf,
    id: String,
    asker: String,
}

/// A library project opted in, whose Claude Code session registered and
/// ended (through the plugin's hooks), and an app session that asks it.
fn away_library(limits: &[&str]) -> Away {
    let w = World::new();
    let lib = w.project("lib");
    let app = w.project("app");
    let claude = stand_in_claude(w.root.path());
    let transcript = w
        .home()
        .join(format!(".claude/projects/-lib/{AGENT}.jsonl"));
    std::fs::create_dir_all(transcript.parent().unwrap()).unwrap();
    std::fs::write(&transcript, "{\"type\":\"user\"}\n").unwrap();
    w.cmd(&lib).args(["run", "away", "on"]).args(limits).ok();
    let hook = |event: &str| {
        json!({
            "session_id": AGENT,
            "transcript_path": transcript,
            "cwd": lib,
            "hook_event_name": event,
        })
        .to_string()
    };
    w.cmd(&lib)
        .args(["hook", "session-start"])
        .stdin(hook("SessionStart"))
        .ok();
    w.cmd(&lib)
        .args(["hook", "session-end"])
        .stdin(hook("SessionEnd"))
        .ok();
    let status = w.cmd(&lib).args(["--json", "run", "away", "status"]).json();
    let id = status["sessions"][0]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no away session after SessionEnd: {status}"))
        .to_string();
    let asker = w.start(&app);
    Away {
        w,
        lib,
        app,
        claude,
        transcript,
        id,
        asker,
    }
}

impl Away {
    /// `run ask` from the app's terminal, with the stand-in as `claude`.
    fn ask(&self, question: &str) -> crate::util::Cmd {
        self.ask_for(question, 60)
    }

    fn ask_for(&self, question: &str, seconds: u32) -> crate::util::Cmd {
        self.w
            .cmd(&self.app)
            .env("BRIDGE_CLAUDE_BIN", &self.claude)
            .env("CLAUDE_CODE_SESSION_ID", "the-askers-own-agent")
            .args(["run", "--session", &self.asker, "ask", &self.id, question])
            .args(["--timeout", &seconds.to_string()])
    }

    /// An ask whose fork stalls (the stand-in waits while the returned
    /// file exists), once that fork runs.
    fn stalled_ask(&self) -> (PathBuf, std::process::Child) {
        let stall = self.w.root.path().join("stall");
        std::fs::write(&stall, "").unwrap();
        let slow = self.ask("SLOW question").spawn();
        self.wait_until("the fork runs", Duration::from_secs(30), || {
            self.calls().len() == 1
        });
        (stall, slow)
    }

    fn calls(&self) -> Vec<String> {
        let dir = self.w.root.path().join("calls");
        let mut calls: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        calls.sort();
        calls
    }

    /// The processes whose command line contains `needle`, for this
    /// world only (its bridge directory or stand-in is on the line).
    fn processes(&self, needle: &str) -> Vec<u32> {
        let root = self.w.root.path().display().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(line) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let line = String::from_utf8_lossy(&line).replace('\0', " ");
            if line.contains(needle) && line.contains(&root) {
                found.push(pid);
            }
        }
        found
    }

    fn wait_until(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let end = Instant::now() + limit;
        while !done() {
            assert!(Instant::now() < end, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn an_ask_from_a_terminal_is_answered_by_a_read_only_fork_with_its_provenance() {
    let a = away_library(&[]);
    let peers = a.w.cmd(&a.app).args(["run", "peers"]).ok();
    assert!(
        peers
            .lines()
            .any(|l| l.contains(&a.id) && l.contains("away")),
        "{peers}"
    );
    let before = std::fs::read(&a.transcript).unwrap();
    let question = "What does `init()` return? Quote \"$HOME\" and 'x' verbatim";
    let out = a.ask(question).ok();
    // The answer's own first line, inside the fence the asker sees.
    let first = out
        .lines()
        .skip_while(|l| !l.starts_with("<peer-message "))
        .nth(1)
        .unwrap_or_default();
    assert!(
        first.contains(&format!("read-only copy of session {}", a.id))
            && first.contains("Last active 20"),
        "{out}"
    );
    assert!(out.contains(&format!("ANSWER to {question}")), "{out}");
    // What the fork was run with.
    let calls = a.calls();
    assert_eq!(calls.len(), 1, "one fork: {calls:?}");
    let args: Vec<&str> = calls[0].lines().collect();
    for expected in [
        "-p",
        "--fork-session",
        "--no-session-persistence",
        "Read,Grep,Glob",
        "--strict-mcp-config",
        r#"{"disableAllHooks": true}"#,
        AGENT,
    ] {
        assert!(args.contains(&expected), "{expected} missing from {args:?}");
    }
    let denied = args[args.iter().position(|a| *a == "--disallowedTools").unwrap() + 1];
    for tool in ["Bash", "Edit", "Write", "NotebookEdit", "Agent", "WebFetch"] {
        assert!(denied.split(',').any(|t| t == tool), "{denied}");
    }
    assert!(
        args.contains(&format!("cwd={}", a.lib.display()).as_str()),
        "{args:?}"
    );
    assert!(
        args.contains(&"agent=none"),
        "the asker's agent leaked into the fork: {args:?}"
    );
    assert_eq!(std::fs::read(&a.transcript).unwrap(), before);
    // track and history say who answered, and how.
    let history =
        a.w.cmd(&a.app)
            .args(["run", "--session", &a.asker, "history"])
            .ok();
    assert!(history.contains("read-only copy"), "{history}");
    a.wait_until("the answerer ends", Duration::from_secs(40), || {
        a.processes("away-answer").is_empty()
    });
}

#[test]
fn a_killed_answerer_leaves_no_fork_and_its_query_is_answered_after_the_lease() {
    let a = away_library(&[]);
    let (stall, slow) = a.stalled_ask();
    let answerers = a.processes("away-answer");
    assert_eq!(answerers.len(), 1, "one answerer: {answerers:?}");
    let claude = a.claude.display().to_string();
    assert_eq!(a.processes(&claude).len(), 1, "one fork");
    std::process::Command::new("kill")
        .args(["-KILL", &answerers[0].to_string()])
        .status()
        .unwrap();
    a.wait_until(
        "the fork ends with its answerer",
        Duration::from_secs(10),
        || a.processes(&claude).is_empty(),
    );
    std::fs::remove_file(&stall).unwrap();
    // The next question starts a new answerer; the killed one's query is
    // answered once its claim has lapsed, and its asker, still waiting,
    // gets the answer.
    let out = a.ask("quick question").ok();
    assert!(out.contains("ANSWER to quick question"), "{out}");
    let slow = slow.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&slow.stdout);
    assert!(
        slow.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&slow.stderr)
    );
    assert!(said.contains("ANSWER to SLOW question"), "{said}");
    assert_eq!(
        a.calls().len(),
        3,
        "the killed fork, then one fork per question"
    );
    a.wait_until(
        "no answerer or fork is left",
        Duration::from_secs(40),
        || a.processes("away-answer").is_empty() && a.processes(&claude).is_empty(),
    );
}

/// Every query to a busy away session started an answerer that blocked on
/// the first one's lock: a burst of askers left one process per query.
#[test]
fn a_burst_of_answerers_leaves_one_running_and_one_waiting() {
    let a = away_library(&[]);
    let (stall, slow) = a.stalled_ask();
    let by_hand: Vec<_> = (0..5)
        .map(|_| {
            a.w.cmd(&a.lib)
                .env("BRIDGE_CLAUDE_BIN", &a.claude)
                .args(["away-answer", "--session", &a.id])
                .spawn()
        })
        .collect();
    // Four of the five end on their own, successfully: one waits.
    let mut by_hand = by_hand;
    a.wait_until(
        "four of five answerers started by hand end",
        Duration::from_secs(30),
        || {
            by_hand
                .iter_mut()
                .map(|c| c.try_wait().unwrap().is_some())
                .filter(|&ended| ended)
                .count()
                == 4
        },
    );
    for child in &mut by_hand {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
        }
    }
    // The one answering (started by the ask) and one waiting for it.
    assert_eq!(a.processes("away-answer").len(), 1, "the one answering");
    let waiting = by_hand
        .iter_mut()
        .filter_map(|c| c.try_wait().unwrap().is_none().then_some(()))
        .count();
    assert_eq!(waiting, 1, "one started by hand waits");
    std::fs::remove_file(&stall).unwrap();
    let slow = slow.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&slow.stdout);
    assert!(said.contains("ANSWER to SLOW question"), "{said}");
    for child in by_hand {
        assert!(child.wait_with_output().unwrap().status.success());
    }
    assert_eq!(a.calls().len(), 1, "one fork for the one question");
    a.wait_until(
        "no answerer or fork is left",
        Duration::from_secs(40),
        || a.processes("away-answer").is_empty(),
    );
}

/// An MCP client's `ask` (here a bare JSON-RPC exchange over the server's
/// standard input and output, as any client makes it) is answered by the
/// away session's read-only fork, as a terminal's is.
#[test]
fn an_mcp_ask_is_answered_by_the_away_sessions_fork() {
    use std::io::{BufRead, BufReader, Write};
    let a = away_library(&[]);
    let mut server = std::process::Command::new(crate::util::BIN)
        .arg("mcp")
        .current_dir(&a.app)
        .env("HOME", a.w.home())
        .env("BRIDGE_DIR", &a.w.bridge)
        .env("BRIDGE_CLAUDE_BIN", &a.claude)
        .env_remove("BRIDGE_SESSION_ID")
        .env_remove("CLAUDE_CODE_SESSION_ID")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut to_server = server.stdin.take().unwrap();
    let mut from_server = BufReader::new(server.stdout.take().unwrap());
    // Owns the server's standard input: dropping it ends the server.
    let mut send = move |message: serde_json::Value| {
        writeln!(to_server, "{message}").unwrap();
        to_server.flush().unwrap();
    };
    let mut response = |id: u64| -> serde_json::Value {
        loop {
            let mut line = String::new();
            assert!(
                from_server.read_line(&mut line).unwrap() > 0,
                "the server ended"
            );
            let message: serde_json::Value = serde_json::from_str(&line).unwrap();
            if message["id"] == json!(id) {
                return message;
            }
        }
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "a-test-client", "version": "1"}}}),
    );
    response(1);
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "ask",
        "arguments": {"peer": a.id, "question": "what does `init()` take? $HOME", "timeout_seconds": 60}}}),
    );
    let answer = response(2);
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert_ne!(answer["result"]["isError"], json!(true), "{answer}");
    assert!(
        text.contains("read-only copy of session")
            && text.contains("ANSWER to what does `init()` take? $HOME"),
        "{answer}"
    );
    assert_eq!(a.calls().len(), 1, "one fork");
    drop(send);
    let _ = server.wait();
}

#[test]
fn a_fork_past_its_time_is_stopped_and_the_asker_told_the_question_waits() {
    let a = away_library(&["--max-seconds", "10"]);
    std::fs::write(a.w.root.path().join("stall"), "").unwrap();
    let (out, err) = a.ask("SLOW question").fails();
    let said = format!("{out}{err}");
    assert!(
        said.contains("ran past 10 s") && said.contains("stays queued"),
        "{said}"
    );
    let inbox = a.w.session_dir(&a.id).join("inbox");
    let waiting = std::fs::read_dir(inbox)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .count();
    assert_eq!(waiting, 1, "the query waits in the inbox");
    let claude = a.claude.display().to_string();
    assert!(a.processes(&claude).is_empty(), "the fork was stopped");
}

#[test]
fn a_transcript_that_is_gone_stops_the_away_session_and_the_asker_is_told() {
    let a = away_library(&[]);
    std::fs::remove_file(&a.transcript).unwrap();
    let (out, err) = a.ask_for("anyone there?", 15).fails();
    let said = format!("{out}{err}");
    assert!(said.contains(&a.id), "{said}");
    let peers = a.w.cmd(&a.app).args(["run", "peers"]).ok();
    assert!(!peers.contains(&a.id), "{peers}");
    assert!(a.calls().is_empty(), "no fork without a transcript");
}

#[test]
fn a_peer_of_another_machine_is_answered_by_the_away_machines_relay_once_allowed() {
    use crate::nats::{Machine, Server, introduce, server_bin};
    let Some(bin) = server_bin("away answers across machines") else {
        return;
    };
    let server = Server::start(&bin, "");
    let mut a = Machine::new("a");
    let mut b = Machine::new("b");
    let claude = stand_in_claude(b.world.root.path());
    b.env
        .push(("BRIDGE_CLAUDE_BIN".into(), claude.display().to_string()));
    introduce(&[&a, &b]);
    for m in [&mut a, &mut b] {
        m.start_relay(&server.url(), &[]);
    }
    a.wait_connected();
    b.wait_connected();
    // The library on machine b goes away.
    let lib = b.world.project("lib");
    let transcript = b
        .world
        .home()
        .join(format!(".claude/projects/-lib/{AGENT}.jsonl"));
    std::fs::create_dir_all(transcript.parent().unwrap()).unwrap();
    std::fs::write(&transcript, "{}\n").unwrap();
    b.world.cmd(&lib).args(["run", "away", "on"]).ok();
    for event in ["session-start", "session-end"] {
        let input = json!({"session_id": AGENT, "transcript_path": transcript, "cwd": lib});
        b.world
            .cmd(&lib)
            .args(["hook", event])
            .stdin(input.to_string())
            .ok();
    }
    let status = b
        .world
        .cmd(&lib)
        .args(["--json", "run", "away", "status"])
        .json();
    let lib_id = status["sessions"][0]["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let (app, _) = a.session("app");
    a.wait_for_peer(&app, &lib_id, "b");
    let ask = |question: &str| {
        a.world
            .cmd(&app)
            .args(["run", "ask", &lib_id, question, "--timeout", "60"])
            .output()
    };
    // By default only sessions of machine b may ask.
    let (out, _) = ask("from afar?");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success()
            && said.contains("is away: its agent stopped")
            && said.contains("asked from machine \"a\"")
            && said.contains("The question stays queued")
            // Told at once, as a local asker is, not when the wait ran out.
            && !said.contains("No response"),
        "{said}\nrelay of a:\n{}\nrelay of b:\n{}",
        a.relay_log(),
        b.relay_log()
    );
    b.world
        .cmd(&lib)
        .args(["run", "away", "on", "--allow-other-machines"])
        .ok();
    let (out, _) = ask("from afar, allowed?");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("read-only copy of session")
            && said.contains("ANSWER to from afar, allowed?"),
        "{said}"
    );
}

/// The defaults `run away on --help` names are the guest's own, as a
/// project that never opted in shows them: the host's help repeats them,
/// and must not drift.
#[test]
fn the_help_of_away_on_names_the_guests_default_limits() {
    let w = World::new();
    let project = w.project("p");
    let status = w
        .cmd(&project)
        .args(["--json", "run", "away", "status"])
        .json();
    let help = w.cmd(&project).args(["run", "away", "on", "--help"]).ok();
    let default_of = |flag: &str| -> String {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("no {flag} in:\n{help}"));
        line.split("[default: ")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .unwrap_or_else(|| panic!("{flag} names no default: {line}"))
            .to_string()
    };
    for (flag, key) in [
        ("--max-turns", "maxTurns"),
        ("--max-seconds", "maxSeconds"),
        ("--per-hour", "perHour"),
        ("--per-day", "perDay"),
    ] {
        assert_eq!(
            default_of(flag),
            status[key].to_string(),
            "{flag}: {status}"
        );
    }
    let spend: f64 = default_of("--spend-per-day").parse().unwrap();
    assert_eq!(spend, status["spendPerDay"].as_f64().unwrap(), "{status}");
    assert_eq!(status["allowOtherMachines"], false);
    assert_eq!(default_of("--allow-other-machines"), "this machine only");
}
