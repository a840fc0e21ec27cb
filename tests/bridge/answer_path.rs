//! The answer path as a shell runs it: every answer a coding agent writes
//! (code, quotes, `$`, `!`, a line that reads `EOF`, CRLF, a 100 KB diff)
//! goes through the command the bridge's text shows, in a real bash,
//! approved by the plugin's hook, and arrives byte for byte; a peer's
//! control bytes never reach a terminal raw.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::util::{BIN, World, answer_script, parse_listen};

/// What real answers contain. Each must arrive exactly as written.
pub fn catalogue() -> Vec<(&'static str, String)> {
    let mut diff =
        String::from("diff --git a/src/lib.rs b/src/lib.rs\n--- a/src/lib.rs\n+++ b/src/lib.rs\n");
    let mut line = 0;
    while diff.len() < 100 * 1024 {
        line += 1;
        diff.push_str(&format!(
            "@@ -{line},3 +{line},3 @@\n-pub fn init(cfg: &Config) -> Result<(), Error> {{ \
             println!(\"{{}}\", cfg.name); }}\n+pub fn setup(cfg: &Config) -> Result<(), Error> \
             {{ let home = \"$HOME\"; `id`; }}\n \n"
        ));
    }
    vec![
        (
            "backticks and a fenced code block",
            "`init()` is now `setup()`:\n\n```rust\nlet app = setup(&cfg)?;\n```\n".into(),
        ),
        (
            "$HOME, $(…) and !",
            "Set $HOME, then run $(id) or `id`; !! and !-1 and !$ are history, ${X:-y} too!".into(),
        ),
        (
            "quotes and backslashes",
            "it's \"quoted\": 'single' and \"double\", it'\\''s, \\n \\\\ C:\\path\\to\\ \\".into(),
        ),
        (
            "a line that reads EOF",
            "first\nEOF\n'EOF'\nANSWER\nANSWER_\nlast".into(),
        ),
        ("CRLF", "line one\r\nline two\r\n".into()),
        (
            "non-ASCII text",
            "café, naïve, 日本語, Ελληνικά, עברית, emoji 🦀👍🏽, zero\u{200b}width".into(),
        ),
        ("a 100 KB diff", diff),
    ]
}

/// The plugin's approval hook's verdict on a Bash command.
fn approved(w: &World, command: &str) -> bool {
    let input = json!({
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": command},
    });
    let out = w
        .cmd(&w.project("hook"))
        .args(["hook", "approve"])
        .stdin(input.to_string())
        .ok();
    out.contains("\"permissionDecision\":\"allow\"")
}

/// `script` for bash from `project`, as Claude's Bash tool runs it, with
/// `bridge-host` found on PATH.
fn bash_command(w: &World, project: &std::path::Path, script: &str) -> Command {
    let bin_dir = w.root.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let link = bin_dir.join("bridge-host");
    if !link.exists() {
        std::os::unix::fs::symlink(BIN, &link).unwrap();
    }
    let mut command = Command::new("bash");
    command
        .args(["-c", script])
        .current_dir(project)
        .env_clear()
        .env("HOME", w.home())
        .env("BRIDGE_DIR", &w.bridge)
        .env(
            "BRIDGE_CACHE_DIR",
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compile-cache"),
        )
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
        .stdin(Stdio::null());
    command
}

/// Runs `script` (see [`bash_command`]) and expects it to succeed.
#[track_caller]
fn bash(w: &World, project: &std::path::Path, script: &str) {
    let ran = bash_command(w, project, script).output().unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
}

/// Two sessions, `lib` and `app`; `app` asks `lib` `question` (with `args`
/// after it) and `lib` listens, as the agent session `agent` runs it when
/// given: the world, both projects, the running ask and what `listen`
/// showed.
fn asked(
    question: &str,
    args: &[&str],
    agent: Option<&str>,
) -> (
    World,
    std::path::PathBuf,
    std::path::PathBuf,
    std::process::Child,
    String,
) {
    let w = World::new();
    let lib = w.project("lib");
    let app = w.project("app");
    let lib_id = w.start(&lib);
    w.start(&app);
    let asking = w
        .cmd(&app)
        .args(["run", "ask", &lib_id, question, "--timeout", "60"])
        .args(args)
        .spawn();
    let mut listen = w.cmd(&lib).env("BRIDGE_SESSION_ID", &lib_id);
    if let Some(agent) = agent {
        listen = listen.env("CLAUDE_CODE_SESSION_ID", agent);
    }
    let shown = listen.args(["run", "listen", "--timeout", "30"]).ok();
    (w, lib, app, asking, shown)
}

#[test]
fn every_answer_arrives_byte_for_byte_through_the_command_the_text_shows() {
    let (w, lib, app, asking, shown) = asked("catalogue", &["--json"], None);
    let lib_id = w.cmd(&lib).args(["run", "id"]).ok().trim().to_string();
    let mut first = Some((asking, shown));
    for (what, answer) in catalogue() {
        let (asking, shown) = first.take().unwrap_or_else(|| {
            let asking = w
                .cmd(&app)
                .args(["run", "ask", &lib_id, what, "--timeout", "60", "--json"])
                .spawn();
            let shown = w.cmd(&lib).args(["run", "listen", "--timeout", "30"]).ok();
            (asking, shown)
        });
        let (fields, _) = parse_listen(&shown);
        let script = answer_script(&shown, &answer);
        assert!(
            script.starts_with(&format!(
                "bridge-host run reply {} - <<'",
                fields["MESSAGE_ID"]
            )),
            "{script:.200}"
        );
        assert!(
            approved(&w, &script),
            "{what}: the hook does not approve it"
        );
        bash(&w, &lib, &script);
        let out = asking.wait_with_output().unwrap();
        assert!(out.status.success(), "{what}: {out:?}");
        let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            reply["message"]["content"].as_str(),
            Some(answer.as_str()),
            "{what}: not byte for byte"
        );
    }
}

#[test]
fn a_follow_up_through_the_shown_command_arrives_byte_for_byte_and_threads() {
    let (w, lib, app, asking, shown) = asked("how do I migrate?", &[], None);
    bash(&w, &lib, &answer_script(&shown, "From which `version`?"));
    let out = asking.wait_with_output().unwrap();
    let reply = String::from_utf8(out.stdout).unwrap();
    let (reply_fields, _) = parse_listen(&reply);
    let answer = "From `1.4`: $OLD_API & \"friends\"\r\nEOF";
    let script = answer_script(&reply, answer);
    assert!(approved(&w, &script));
    let mut follow_up = bash_command(&w, &app, &script).spawn().unwrap();
    let shown = w
        .cmd(&lib)
        .args(["run", "listen", "--timeout", "30", "--json"])
        .ok();
    let delivered: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(delivered["message"]["content"], answer);
    assert_eq!(
        delivered["message"]["inReplyTo"],
        reply_fields["MESSAGE_ID"].as_str(),
        "{delivered}"
    );
    let _ = follow_up.kill();
    let _ = follow_up.wait();
}

/// C0 and C1 controls a peer could use against the person watching.
const HOSTILE: &str = "osc52\u{1b}]52;c;cm0gLXJmIH4=\u{7} csi\u{1b}[2J\u{1b}[1;1H bel\u{7} \
                       cr\rhidden nul\u{0} c1\u{9b}31m del\u{7f} tab\tnewline\nend";

fn assert_no_raw_controls(what: &str, text: &str) {
    let raw: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
        .collect();
    assert!(raw.is_empty(), "{what} printed raw {raw:?}: {text:?}");
    for escaped in [
        "\\u{1b}]52",
        "\\u{1b}[2J",
        "\\u{7}",
        "cr\\rhidden",
        "\\u{0}",
        "\\u{9b}",
    ] {
        assert!(
            text.contains(escaped),
            "{what} does not show {escaped}: {text:?}"
        );
    }
}

#[test]
fn a_peers_control_bytes_are_shown_escaped_and_kept_exact_in_json() {
    let w = World::new();
    let lib = w.project("lib");
    let app = w.project("app");
    let lib_id = w.start(&lib);
    let app_id = w.start(&app);
    let send = || {
        w.cmd(&app)
            .args(["run", "send", &lib_id, "query", "-"])
            .stdin(HOSTILE)
            .ok()
            .trim()
            .to_string()
    };
    send();
    let listened = w.cmd(&lib).args(["run", "listen", "--timeout", "10"]).ok();
    assert_no_raw_controls("listen", &listened);
    send();
    let checked = w.cmd(&lib).args(["run", "check-inbox"]).ok();
    assert_no_raw_controls("check-inbox", &checked);
    let id = send();
    let json: Value =
        serde_json::from_str(&w.cmd(&lib).args(["run", "check-inbox", "--json"]).ok()).unwrap();
    assert_eq!(
        json["message"]["content"], HOSTILE,
        "--json keeps content exact"
    );
    assert_eq!(json["message"]["id"], id.as_str());

    // A reply as `ask` and `receive` print it.
    let asking = w
        .cmd(&app)
        .args(["run", "ask", &lib_id, "q", "--timeout", "30"])
        .spawn();
    let (query, _) = parse_listen(&w.cmd(&lib).args(["run", "listen", "--timeout", "10"]).ok());
    w.cmd(&lib)
        .args(["run", "reply", &query["MESSAGE_ID"], "-"])
        .stdin(HOSTILE)
        .ok();
    let asked = String::from_utf8(asking.wait_with_output().unwrap().stdout).unwrap();
    assert_no_raw_controls("ask", &asked);
    let sent = w
        .cmd(&app)
        .args(["run", "send", &lib_id, "query", "again"])
        .ok();
    let (query, _) = parse_listen(&w.cmd(&lib).args(["run", "listen", "--timeout", "10"]).ok());
    assert_eq!(query["MESSAGE_ID"], sent.trim());
    w.cmd(&lib)
        .args(["run", "reply", sent.trim(), "-"])
        .stdin(HOSTILE)
        .ok();
    let received = w
        .cmd(&app)
        .args(["run", "receive", sent.trim(), "--timeout", "10"])
        .ok();
    assert_no_raw_controls("receive", &received);
    let _ = app_id;
}

#[test]
fn history_and_thread_given_a_session_read_its_project_wherever_they_run() {
    let w = World::new();
    let lib = w.project("lib");
    let app = w.project("app");
    let elsewhere = w.project("elsewhere");
    let lib_id = w.start(&lib);
    let app_id = w.start(&app);
    let id = w
        .cmd(&app)
        .args(["run", "send", &lib_id, "query", "what changed?"])
        .ok();
    let id = id.trim();
    let as_app = |args: &[&str]| {
        w.cmd(&elsewhere)
            .env("BRIDGE_SESSION_ID", &app_id)
            .args(args)
            .ok()
    };
    let history = as_app(&["run", "history"]);
    assert!(history.contains("what changed?"), "{history}");
    let thread = as_app(&["run", "thread", id]);
    assert!(thread.contains("what changed?"), "{thread}");
    // Without a session, the working directory's project is read.
    let own = w.cmd(&elsewhere).args(["run", "history"]).ok();
    assert!(!own.contains("what changed?"), "{own}");
}

#[test]
fn track_names_an_agents_shell_as_the_taker_and_a_terminal_as_a_terminal() {
    let w = World::new();
    let lib = w.project("lib");
    let app = w.project("app");
    let lib_id = w.start(&lib);
    w.start(&app);
    for (agent, taker) in [
        (Some("7ec01970-aaaa-4bbb-8ccc-dddddddddddd"), "agent-shell"),
        (None, "terminal"),
    ] {
        let id = w
            .cmd(&app)
            .args(["run", "send", &lib_id, "query", "which version?"])
            .ok();
        let id = id.trim();
        let mut listen = w.cmd(&lib).env("BRIDGE_SESSION_ID", &lib_id).args([
            "run",
            "listen",
            "--timeout",
            "10",
        ]);
        let mut reply = w
            .cmd(&lib)
            .env("BRIDGE_SESSION_ID", &lib_id)
            .args(["run", "reply", id, "2.1"]);
        if let Some(agent) = agent {
            listen = listen.env("CLAUDE_CODE_SESSION_ID", agent);
            reply = reply.env("CLAUDE_CODE_SESSION_ID", agent);
        }
        listen.ok();
        reply.ok();
        let receipt: Value =
            serde_json::from_str(&w.cmd(&app).args(["run", "track", id, "--json"]).ok()).unwrap();
        let steps = receipt["events"].as_array().unwrap();
        for stage in ["taken", "answered"] {
            let step = steps
                .iter()
                .find(|e| e["stage"] == stage)
                .unwrap_or_else(|| panic!("no {stage} step: {receipt}"));
            assert_eq!(step["taker"], taker, "{stage}: {receipt}");
        }
        let text = w.cmd(&app).args(["run", "track", id]).ok();
        assert!(
            text.contains(&format!("answered by {lib_id} ({taker})")),
            "{text}"
        );
    }
}

/// Claude Code's Bash tool refuses a command with a control character
/// other than LF and TAB (a CR, ESC), so an agent is told to send such an
/// answer with `--escapes`: it arrives byte for byte, and a stray
/// backslash is refused rather than guessed at.
#[test]
fn an_agent_sends_control_characters_with_escapes_as_its_text_says() {
    let agent = "7ec01970-aaaa-4bbb-8ccc-eeeeeeeeeeee";
    let answer = "line one\r\nline two\r\n\u{1b}[1mbold\u{1b}[0m C:\\path \\n $HOME `id`";
    let written = "line one\\r\nline two\\r\n\\u{1b}[1mbold\\u{1b}[0m C:\\\\path \\\\n $HOME `id`";
    let (w, lib, app, asking, shown) = asked("q", &["--json"], Some(agent));
    let lib_id = w.cmd(&lib).args(["run", "id"]).ok().trim().to_string();
    assert!(
        shown.contains(
            "(A shell tool may refuse control characters, such as the CR of CRLF line endings: \
             then add --escapes after the - and write each as \\r or \\u{1b}, and each \
             backslash as \\\\.)"
        ),
        "{shown}"
    );
    let script = answer_script(&shown, written).replacen(" - <<'", " - --escapes <<'", 1);
    assert!(
        !script
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'),
        "the Bash tool would refuse it"
    );
    assert!(approved(&w, &script));
    bash(&w, &lib, &script);
    let reply: Value = serde_json::from_slice(&asking.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(reply["message"]["content"], answer);

    // A backslash that names no escape is refused, with what to write.
    let (_, stderr) = w
        .cmd(&app)
        .args(["run", "send", &lib_id, "query", "C:\\path", "--escapes"])
        .fails();
    assert!(
        stderr.contains("`\\p` at byte 2 is not an escape") && stderr.contains("`\\\\`"),
        "{stderr}"
    );
}
