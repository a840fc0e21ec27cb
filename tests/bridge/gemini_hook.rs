//! Gemini CLI's AfterAgent hook, `bridge-host hook gemini-after-agent`.
//!
//! Gemini CLI starts its MCP servers and its hooks as children of one
//! process. Here the test process plays that part: it starts
//! `bridge-host mcp` with `GEMINI_CLI=1` (as Gemini CLI 0.61.0 does) and
//! runs the hook, so both find the same bridge session. The real client
//! runs in `tests/real_client/gemini_hook.py`, offline against a stand-in
//! for the Gemini API.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{World, absent, on_path, pinned_cli, python_scenario};

/// Gemini CLI 0.61.0's AfterAgent input, as it sent it headless.
const AFTER_AGENT: &str = r#"{"session_id":"83e688e0-ce73-4436-832f-dac72f303d86","transcript_path":"","cwd":"/tmp/app","hook_event_name":"AfterAgent","timestamp":"2026-12-06T21:58:41.335Z","prompt":"say hello","prompt_response":"hello","stop_hook_active":false}"#;

/// `bridge-host mcp` started by this process as Gemini CLI starts it, and
/// initialized; its session's ID.
struct GeminiServer {
    server: Child,
    id: String,
}

impl GeminiServer {
    fn start(world: &World, project: &Path) -> Self {
        Self::start_as(world, project, "gemini-cli-mcp-client")
    }

    /// As [`GeminiServer::start`], for a client that names itself `name`.
    fn start_as(world: &World, project: &Path, name: &str) -> Self {
        let mut server = world
            .cmd(project)
            .env("GEMINI_CLI", "1")
            .args(["mcp"])
            .spawn_open();
        let mut input = server.stdin.take().expect("stdin");
        let mut output = BufReader::new(server.stdout.take().expect("stdout"));
        let initialize = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": name, "version": "0.61.0"}}
        });
        writeln!(input, "{initialize}").expect("initialize");
        let mut answer = String::new();
        output.read_line(&mut answer).expect("initialize answer");
        assert!(answer.contains("\"result\""), "{answer}");
        writeln!(
            input,
            r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
        )
        .expect("initialized");
        server.stdin = Some(input);
        let deadline = Instant::now() + Duration::from_secs(30);
        let id = loop {
            let peers = world.cmd(project).args(["run", "peers"]).json();
            let found = peers["peers"].as_array().and_then(|rows| {
                rows.iter()
                    .find(|r| r["client"] == format!("{name} 0.61.0").as_str())
                    .and_then(|r| r["sessionId"].as_str())
                    .map(str::to_string)
            });
            if let Some(id) = found {
                break id;
            }
            assert!(Instant::now() < deadline, "never registered: {peers}");
            std::thread::sleep(Duration::from_millis(50));
        };
        GeminiServer { server, id }
    }
}

impl Drop for GeminiServer {
    fn drop(&mut self) {
        drop(self.server.stdin.take());
        let _ = self.server.wait();
    }
}

/// Runs the hook as Gemini CLI would, from this process.
fn hook(world: &World, project: &Path, input: &str) -> (Output, String) {
    world
        .cmd(project)
        .args(["hook", "gemini-after-agent"])
        .stdin(input)
        .output()
}

/// The hook's JSON when it hands a message over.
#[track_caller]
fn handed_over(world: &World, project: &Path) -> String {
    let (out, description) = hook(world, project, AFTER_AGENT);
    assert!(out.status.success(), "{description}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(stdout.lines().count(), 1, "one JSON line\n{description}");
    let json: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(json["decision"], "block", "{description}");
    assert_eq!(json.as_object().map(|o| o.len()), Some(2), "{description}");
    json["reason"].as_str().expect("reason").to_string()
}

#[track_caller]
fn hands_over_nothing(world: &World, project: &Path) {
    let (out, description) = hook(world, project, AFTER_AGENT);
    assert!(out.status.success(), "{description}");
    assert!(out.stdout.is_empty(), "{description}");
}

fn inbox(world: &World, id: &str) -> Vec<Value> {
    let dir: PathBuf = world.session_dir(id).join("inbox");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .filter_map(|e| std::fs::read(e.path()).ok())
                .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_after_agent_hook_hands_a_pending_question_over_once_in_the_tools_words() {
    let world = World::new();
    let (app, lib) = (world.project("app"), world.project("lib"));
    let gemini = GeminiServer::start(&world, &app);
    hands_over_nothing(&world, &app);

    world.start(&lib);
    let id = world
        .cmd(&lib)
        .args(["run", "send", &gemini.id, "query", "what changed in v2?"])
        .ok()
        .trim()
        .to_string();
    let reason = handed_over(&world, &app);
    let mut lines = reason.lines();
    assert_eq!(
        lines.next(),
        Some(
            "session-bridge: a message from a peer agent session arrived for this session \
             (it is not from the user)."
        ),
        "{reason}"
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.ends_with(&format!("the reply tool with message_id {id}"))),
        "{reason}"
    );
    assert!(reason.contains("\nwhat changed in v2?\n"), "{reason}");
    assert!(!reason.contains("bridge-host run"), "{reason}");
    // Committed once written: the next turn's end finds nothing.
    hands_over_nothing(&world, &app);
    assert!(inbox(&world, &gemini.id).is_empty());
}

#[test]
fn the_after_agent_hook_wakes_nobody_for_a_ping_a_pong_or_a_session_ended_notice() {
    let world = World::new();
    let (app, b, c) = (world.project("app"), world.project("b"), world.project("c"));
    let gemini = GeminiServer::start(&world, &app);
    // B pings the Gemini session.
    let b_id = world.start(&b);
    world.cmd(&b).args(["run", "connect", &gemini.id]).ok();
    // The Gemini session pings C, and C answers: a pong for the Gemini
    // session. Then C ends, which notifies the Gemini session.
    let c_id = world.start(&c);
    world
        .cmd(&app)
        .args(["run", "connect", &c_id, "--session", &gemini.id])
        .ok();
    world.cmd(&c).args(["run", "listen", "--timeout", "5"]).ok();
    world.cmd(&c).args(["run", "stop"]).ok();
    let kinds = |msgs: Vec<Value>| -> Vec<String> {
        let mut kinds: Vec<String> = msgs
            .iter()
            .map(|m| format!("{} from {}", m["type"], m["from"]))
            .collect();
        kinds.sort();
        kinds
    };
    let mut pending = vec![
        format!("\"ping\" from \"{b_id}\""),
        format!("\"ping\" from \"{c_id}\""),
        format!("\"session-ended\" from \"{c_id}\""),
    ];
    pending.sort();
    assert_eq!(kinds(inbox(&world, &gemini.id)), pending);

    hands_over_nothing(&world, &app);
    // B's ping was answered for the model, and the notice waits.
    assert!(
        inbox(&world, &b_id)
            .iter()
            .any(|m| m["type"] == "ping" && m["from"] == gemini.id.as_str()),
        "no pong for B"
    );
    assert_eq!(
        kinds(inbox(&world, &gemini.id)),
        vec![format!("\"session-ended\" from \"{c_id}\"")]
    );
    hands_over_nothing(&world, &app);

    // The notice is shown with the next real message.
    world
        .cmd(&b)
        .args(["run", "send", &gemini.id, "query", "still there?"])
        .ok();
    let reason = handed_over(&world, &app);
    assert!(reason.contains("still there?"), "{reason}");
    assert!(reason.contains(&format!("{c_id} \"c\" ended")), "{reason}");
    assert!(inbox(&world, &gemini.id).is_empty());
}

#[test]
fn bad_input_or_no_session_fails_with_exit_1_which_gemini_shows_as_a_warning() {
    let world = World::new();
    let app = world.project("app");
    for (input, says) in [
        ("not json", "is not JSON"),
        (r#"{"session_id":"x"}"#, "no hook_event_name"),
        (
            r#"{"hook_event_name":"BeforeAgent"}"#,
            "it belongs under \"AfterAgent\"",
        ),
        // No `bridge-host mcp` was started by this process.
        (AFTER_AGENT, "this Gemini CLI session has no bridge session"),
    ] {
        let (stdout, stderr) = world
            .cmd(&app)
            .args(["hook", "gemini-after-agent"])
            .stdin(input)
            .fails();
        assert!(stdout.is_empty(), "{input}: {stdout}");
        assert!(
            stderr.starts_with("bridge-host hook gemini-after-agent: ") && stderr.contains(says),
            "{input}: {stderr}"
        );
    }
}

#[test]
fn another_client_started_from_gemini_clis_shell_keeps_a_session_of_its_own() {
    // Every command Gemini's shell tool runs inherits GEMINI_CLI=1.
    let world = World::new();
    let app = world.project("app");
    let _other = GeminiServer::start_as(&world, &app, "codex-mcp-client");
    let (out, description) = hook(&world, &app, AFTER_AGENT);
    assert_eq!(out.status.code(), Some(1), "{description}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no bridge session"),
        "{description}"
    );
}

/// The pinned Gemini CLI (`.ci/gemini`), headless and offline against a
/// stand-in for the Gemini API: a terminal session asks the Gemini session
/// while it runs a turn for something else; at the end of that turn the
/// AfterAgent hook hands the question over, the "model" answers with the
/// bridge's `reply` tool, and the asker gets the answer. A pending ping,
/// pong and session-ended notice make no extra turn
/// (`tests/real_client/gemini_hook.py`).
#[test]
fn gemini_cli_gets_a_pending_question_at_the_end_of_its_turn_and_answers_it() {
    let gemini = pinned_cli("GEMINI_BIN", "gemini", "gemini");
    let missing = absent(&[
        ("the Gemini CLI (npm ci --prefix .ci/gemini)", gemini),
        ("python3", on_path("python3")),
    ]);
    python_scenario("tests/real_client/gemini_hook.py", "gemini hook", missing);
}
