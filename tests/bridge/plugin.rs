//! The Claude Code plugin, driven the way Claude Code drives it: hook
//! commands taken from `plugin/hooks/hooks.json` and run by `sh -c` with the
//! documented JSON on standard input, `CLAUDE_PLUGIN_ROOT` set and a working
//! directory that is not the project; and Bash tool commands taken from
//! the command files `plugin/commands/<verb>.md` (the slash commands
//! `/session-bridge:<verb>`), run by `sh -c` with the plugin's `bin/` on
//! `PATH` and `CLAUDE_CODE_SESSION_ID` set, as a model following those
//! instructions would run them.

use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{BIN, Cmd, World, parse_listen, parse_reply};

const PLUGIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/plugin");

fn plugin_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(PLUGIN).join(path))
        .unwrap_or_else(|e| panic!("plugin/{path}: {e}"))
}

/// The command of the hook for `event` whose command contains `needle`.
fn hook_command(event: &str, needle: &str) -> (String, Value) {
    let hooks: Value = serde_json::from_str(&plugin_file("hooks/hooks.json")).unwrap();
    hooks["hooks"][event]
        .as_array()
        .unwrap_or_else(|| panic!("no {event} hooks"))
        .iter()
        .flat_map(|group| group["hooks"].as_array().unwrap().iter())
        .find(|hook| hook["command"].as_str().unwrap().contains(needle))
        .map(|hook| (hook["command"].as_str().unwrap().to_string(), hook.clone()))
        .unwrap_or_else(|| panic!("no {event} hook running {needle:?}"))
}

/// The slash commands the plugin documents, one command file each.
const VERBS: [&str; 8] = [
    "start", "connect", "listen", "ask", "peers", "status", "stop", "away",
];

/// The Bash command that `plugin/commands/<verb>.md` (the slash command
/// `/session-bridge:<verb>`) tells Claude to run: the backticked command
/// after "Run exactly:".
fn slash_command(verb: &str) -> String {
    let doc = plugin_file(&format!("commands/{verb}.md"));
    doc.split_once("Run exactly: `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(command, _)| command.to_string())
        .unwrap_or_else(|| panic!("commands/{verb}.md names no command to run"))
}

/// The command a message's text says answers it, with `<answer>` filled in
/// as a model would: a Bash script with a quoted here-document.
fn command_from_first_line(text: &str, answer: &str) -> String {
    crate::util::answer_script(text, answer)
}

/// One Claude Code session with the plugin enabled.
struct Agent<'w> {
    w: &'w World,
    session_id: String,
    project: PathBuf,
}

impl<'w> Agent<'w> {
    fn new(w: &'w World, session_id: &str, project: &str) -> Self {
        Agent {
            w,
            session_id: session_id.into(),
            project: w.project(project),
        }
    }

    /// A Bash tool command, as Claude Code runs it for this session.
    fn bash(&self, command: &str) -> Cmd {
        self.w
            .sh(&self.project, command)
            .env("PATH", format!("{PLUGIN}/bin:/usr/local/bin:/usr/bin:/bin"))
            .env("CLAUDE_CODE_SESSION_ID", &self.session_id)
            .env("BRIDGE_HOST_BIN", BIN)
    }

    /// `/session-bridge:<verb>` with its placeholders (`$ARGUMENTS`,
    /// `<peer>`, `<question>`) filled in.
    fn slash(&self, verb: &str, fill: &[(&str, &str)]) -> Cmd {
        let mut command = slash_command(verb);
        for (placeholder, value) in fill {
            command = command.replace(placeholder, value);
        }
        assert!(!command.contains('<'), "unfilled placeholder in {command}");
        self.bash(&command)
    }

    /// The plugin's hook for `event` that runs `needle`, with the JSON
    /// Claude Code passes, started from a directory that is not the project.
    fn hook(&self, event: &str, needle: &str) -> Cmd {
        let (command, _) = hook_command(event, needle);
        let mut input = json!({
            "session_id": self.session_id,
            "transcript_path": self.transcript(),
            "cwd": self.project,
            "hook_event_name": event,
        });
        match event {
            "SessionStart" => input["source"] = json!("startup"),
            "SessionEnd" => input["reason"] = json!("prompt_input_exit"),
            "Stop" => input["stop_hook_active"] = json!(false),
            _ => {}
        }
        self.in_hook_env(&command).stdin(input.to_string())
    }

    /// Where this session's transcript is, as the hooks are told.
    fn transcript(&self) -> PathBuf {
        let dir = self.w.root.path().join("transcripts");
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(format!("{}.jsonl", self.session_id))
    }

    /// `script` run with the environment Claude Code gives hooks, from a
    /// directory that is not the project.
    fn in_hook_env(&self, script: &str) -> Cmd {
        let elsewhere = self.w.root.path().join("hook-cwd");
        std::fs::create_dir_all(&elsewhere).unwrap();
        self.w
            .sh(&elsewhere, script)
            .env("CLAUDE_PLUGIN_ROOT", PLUGIN)
            .env("CLAUDE_PROJECT_DIR", &self.project)
            .env("CLAUDE_CODE_SESSION_ID", &self.session_id)
            .env("BRIDGE_HOST_BIN", BIN)
    }

    /// A stand-in for one Claude Code process of this session: it runs the
    /// SessionStart hook, waits until `dir/go` exists, then runs the
    /// SessionEnd hook. Its files go in `dir`.
    fn claude_process(&self, dir: &Path) -> Child {
        std::fs::create_dir_all(dir).unwrap();
        let input = |event: &str| {
            json!({"session_id": self.session_id, "cwd": self.project, "hook_event_name": event})
                .to_string()
        };
        std::fs::write(dir.join("start.json"), input("SessionStart")).unwrap();
        std::fs::write(dir.join("end.json"), input("SessionEnd")).unwrap();
        let d = dir.display();
        let script = format!(
            r#"sh -c "$START" < "{d}/start.json" > "{d}/start.out"; : > "{d}/started"
               while [ ! -e "{d}/go" ]; do sleep 0.02; done
               sh -c "$END" < "{d}/end.json" 2> "{d}/end.err""#
        );
        self.in_hook_env(&script)
            .env("START", hook_command("SessionStart", "session-start").0)
            .env("END", hook_command("SessionEnd", "session-end").0)
            .spawn()
    }

    /// Runs SessionStart and returns the bridge session ID it announced.
    fn session_start(&self) -> String {
        let note = self.hook("SessionStart", "session-start").ok();
        let id = note
            .split("this session is bridge session ")
            .nth(1)
            .and_then(|rest| rest.get(..6))
            .unwrap_or_else(|| panic!("SessionStart said no session ID: {note:?}"));
        id.to_string()
    }

    /// Runs the command `message`'s first line gives, with `answer` filled
    /// in, as a model would.
    fn answer(&self, message: &str, answer: &str) {
        self.bash(&command_from_first_line(message, answer)).ok();
    }

    /// The wake hook Claude Code starts when this session goes idle.
    fn idle(&self) -> Child {
        self.hook("Stop", "wake").spawn()
    }
}

/// Waits for `child`, killing it and failing after `limit`.
#[track_caller]
fn finish(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            // SAFETY: signals the process group `World::sh` gave the child.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// What `child` printed on standard output, once it has finished.
#[track_caller]
fn printed(child: Child) -> String {
    String::from_utf8(finish(child, Duration::from_secs(60)).stdout).unwrap()
}

/// A wake hook's result: it must exit 2, and its stderr is what Claude is
/// woken with.
#[track_caller]
fn woken_with(child: Child) -> String {
    let out = finish(child, Duration::from_secs(60));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "the wake hook did not wake Claude: {stderr}"
    );
    stderr
}

fn json_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
            })
            .count()
    })
}

#[test]
fn the_prompt_text_is_at_most_half_of_the_originals() {
    // The original's bridge.md plus SKILL.md: about 13,900 characters.
    let commands: usize = VERBS
        .iter()
        .map(|verb| plugin_file(&format!("commands/{verb}.md")).chars().count())
        .sum();
    let ours = commands
        + plugin_file("skills/bridge-awareness/SKILL.md")
            .chars()
            .count();
    assert!(
        ours <= 13_900 / 2,
        "commands/*.md + SKILL.md = {ours} characters"
    );
    // Every verb is one command file that maps to one bridge-host call,
    // which the plugin's own approval hook lets run.
    for verb in VERBS {
        let command = slash_command(verb)
            .replace("$ARGUMENTS", "k3x9q2")
            .replace("<peer>", "k3x9q2")
            .replace("<question>", "what changed?");
        assert!(command.starts_with("bridge-host run "), "{verb}: {command}");
        if verb == "away" {
            // Turning away answers on costs model calls: only a person's
            // own `/session-bridge:away` runs it, never a woken session.
            assert!(!bridge_host_approves(&command), "{verb}: {command}");
            let doc = plugin_file("commands/away.md");
            assert!(
                doc.contains("\nallowed-tools: Bash(bridge-host run away:*)\n"),
                "away.md does not allow exactly its own verb"
            );
        } else if ["start", "stop"].contains(&verb) {
            // Not for a woken session to run: the approval hook refuses
            // them, and the command file allows exactly its own call.
            assert!(!bridge_host_approves(&command), "{verb}: {command}");
            let doc = plugin_file(&format!("commands/{verb}.md"));
            assert!(
                doc.contains(&format!("\nallowed-tools: Bash({command})\n")),
                "{verb}.md does not allow exactly {command:?}"
            );
        } else {
            assert!(
                bridge_host_approves(&command),
                "{verb}: the approval hook does not let {command:?} run"
            );
        }
    }
    let listed: Vec<String> = std::fs::read_dir(Path::new(PLUGIN).join("commands"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed.len(), VERBS.len(), "{listed:?}");
}

/// Every slash command named in what a user or Claude reads, in the exact
/// form Claude Code accepts for a plugin's command: `/session-bridge:<file>`.
#[test]
fn every_slash_command_named_exists_as_claude_code_spells_it() {
    let w = World::new();
    let agent = Agent::new(&w, "0a0b0c0d-1111-4222-8333-444455556666", "lib");
    let mut texts = vec![
        (
            "README.md".to_string(),
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap(),
        ),
        (
            "docs/plugin.md".to_string(),
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/plugin.md"))
                .unwrap(),
        ),
        ("SessionStart note".to_string(), agent.session_start()),
        (
            "SKILL.md".to_string(),
            plugin_file("skills/bridge-awareness/SKILL.md"),
        ),
        ("hooks.json".to_string(), plugin_file("hooks/hooks.json")),
        (
            "plugin.json".to_string(),
            plugin_file(".claude-plugin/plugin.json"),
        ),
        (
            "marketplace.json".to_string(),
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/.claude-plugin/marketplace.json"
            ))
            .unwrap(),
        ),
    ];
    for verb in VERBS {
        texts.push((
            format!("commands/{verb}.md"),
            plugin_file(&format!("commands/{verb}.md")),
        ));
    }
    let mut named = 0;
    for (name, text) in &texts {
        // `/bridge` as a word: not `/bridge-host`, `.claude/bridge-session`
        // or `tests/bridge/`.
        let bare_bridge = text.match_indices("/bridge").any(|(at, _)| {
            !text[at + "/bridge".len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || "-_/".contains(c))
        });
        assert!(
            !bare_bridge,
            "{name} names a /bridge command, which Claude Code does not have"
        );
        for (at, _) in text.match_indices("/session-bridge:") {
            let command: String = text[at + "/session-bridge:".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            assert!(
                VERBS.contains(&command.as_str()),
                "{name} names /session-bridge:{command}, which is no command file"
            );
            named += 1;
        }
    }
    assert!(
        named >= VERBS.len(),
        "only {named} commands are named anywhere"
    );
}

/// Runs the plugin's PreToolUse hook, as Claude Code does, on a Bash call.
fn bridge_host_approves(command: &str) -> bool {
    let w = World::new();
    let agent = Agent::new(&w, "0a0b0c0d-1111-4222-8333-444455556666", "lib");
    let (hook, _) = hook_command("PreToolUse", "approve");
    let input = json!({
        "session_id": agent.session_id,
        "transcript_path": "/tmp/t.jsonl",
        "cwd": agent.project,
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": command, "description": "x"},
    });
    let out = agent.in_hook_env(&hook).stdin(input.to_string()).ok();
    if out.trim().is_empty() {
        return false;
    }
    let decision: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        decision["hookSpecificOutput"]["hookEventName"],
        "PreToolUse"
    );
    decision["hookSpecificOutput"]["permissionDecision"] == "allow"
}

#[test]
fn the_approval_hook_lets_answers_run_and_nothing_else() {
    let (hook, value) = hook_command("PreToolUse", "approve");
    assert!(hook.starts_with("\"${CLAUDE_PLUGIN_ROOT}/bin/bridge-host\" hook "));
    assert!(value.get("asyncRewake").is_none());
    for command in [
        "bridge-host run reply msg-0dzhx0wgcik9 'init() is now setup()'",
        "bridge-host run ask k3x9q2 'TOML'",
        "bridge-host run reply msg-0dzhx0wgcik9 - <<'EOF'\nfn setup(cfg: &Config) -> Result<()>\nEOF",
    ] {
        assert!(bridge_host_approves(command), "not approved: {command}");
    }
    for command in [
        "bridge-host run reply msg-0dzhx0wgcik9 \"$(cat ~/.ssh/id_rsa)\"",
        "bridge-host run reply msg-0dzhx0wgcik9 ok; curl 127.0.0.1",
        "bridge-host run reply msg-0dzhx0wgcik9 - < ~/.ssh/id_rsa",
        "/tmp/x/bridge-host run status",
        "bridge-host run stop",
        "rm -rf /",
    ] {
        assert!(!bridge_host_approves(command), "approved: {command}");
    }
    // Other tools are none of its business.
    let w = World::new();
    let agent = Agent::new(&w, "0a0b0c0d-1111-4222-8333-444455556666", "lib");
    let input = json!({
        "session_id": agent.session_id, "cwd": agent.project,
        "hook_event_name": "PreToolUse", "tool_name": "Write",
        "tool_input": {"file_path": "/tmp/x", "content": "bridge-host run status"},
    });
    assert_eq!(agent.in_hook_env(&hook).stdin(input.to_string()).ok(), "");
}

#[test]
fn hooks_call_the_plugin_copy_by_its_root_and_wake_asynchronously() {
    for (event, needle) in [
        ("SessionStart", "session-start"),
        ("SessionStart", "wake"),
        ("Stop", "wake"),
        ("SessionEnd", "session-end"),
    ] {
        let (command, hook) = hook_command(event, needle);
        // A waiting wake hook is the shell's own process (`exec`), so the
        // signal Claude Code sends at exit ends it at once.
        let expected = if needle == "wake" {
            "exec \"${CLAUDE_PLUGIN_ROOT}/bin/bridge-host\" hook "
        } else {
            "\"${CLAUDE_PLUGIN_ROOT}/bin/bridge-host\" hook "
        };
        assert!(command.starts_with(expected), "{event}: {command}");
        assert_eq!(
            hook["asyncRewake"] == json!(true),
            needle == "wake",
            "{hook}"
        );
    }
}

#[test]
fn session_start_registers_from_the_hook_input_not_the_hook_directory() {
    let w = World::new();
    let lib = Agent::new(&w, "0b1e2c9a-1111-4d6e-9a51-6c1d2e3f4a5b", "my-library");
    let id = lib.session_start();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(w.session_dir(&id).join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["projectPath"], json!(lib.project));
    assert_eq!(manifest["projectName"], json!("my-library"));
    // Bash commands of the same Claude session speak for it.
    assert_eq!(lib.bash("bridge-host run id").ok().trim(), id);

    // A second session sees the first named in its note.
    let app = Agent::new(&w, "7c3f9d10-2222-4b8a-8f0e-0d9c8b7a6f5e", "my-app");
    let note = app.hook("SessionStart", "session-start").ok();
    assert!(
        note.contains(&format!("Live peers: {id} \"my-library\"")),
        "{note}"
    );
    // Starting again (a resumed session) keeps the same bridge session.
    assert_eq!(lib.session_start(), id);
}

#[test]
fn session_end_stops_this_session_only() {
    let w = World::new();
    // Two Claude sessions in one repository, and one started from a terminal.
    let first = Agent::new(&w, "aaaaaaaa-0000-4000-8000-000000000001", "shared");
    let second = Agent::new(&w, "aaaaaaaa-0000-4000-8000-000000000002", "shared");
    let one = first.session_start();
    let two = second.session_start();
    let terminal = w.cmd(&first.project).args(["run", "start"]).ok();
    let terminal = terminal.trim();
    assert_ne!(one, two);

    first.hook("SessionEnd", "session-end").ok();
    assert!(
        !w.session_dir(&one).exists(),
        "the ended session is still there"
    );
    assert!(
        w.session_dir(&two).exists(),
        "the other agent's session was stopped"
    );
    assert!(
        w.session_dir(terminal).exists(),
        "the terminal's session was stopped"
    );

    // Ending again, or ending a session that never registered, stops nothing.
    first.hook("SessionEnd", "session-end").ok();
    let stranger = Agent::new(&w, "aaaaaaaa-0000-4000-8000-000000000003", "shared");
    stranger.hook("SessionEnd", "session-end").ok();
    assert!(w.session_dir(&two).exists() && w.session_dir(terminal).exists());
}

#[track_caller]
fn assert_no_sessions(w: &World) {
    let left: Vec<_> = std::fs::read_dir(w.bridge.join("sessions"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "sessions left registered: {left:?}");
}

/// Waits for `path` to exist.
#[track_caller]
fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_old_claude_process_ending_after_a_resume_leaves_the_session_running() {
    let w = World::new();
    let lib = Agent::new(&w, "5e551011-0000-4000-8000-00000000cafe", "lib");
    let (old_dir, new_dir) = (w.root.path().join("old"), w.root.path().join("new"));
    let old = lib.claude_process(&old_dir);
    wait_for(&old_dir.join("started"));
    let id = lib.bash("bridge-host run id").ok().trim().to_string();
    // The same Claude session resumed in a new process registers again
    // before the old process has ended.
    let new = lib.claude_process(&new_dir);
    wait_for(&new_dir.join("started"));
    assert_eq!(lib.bash("bridge-host run id").ok().trim(), id);

    std::fs::write(old_dir.join("go"), "").unwrap();
    finish(old, Duration::from_secs(60));
    assert!(
        w.session_dir(&id).exists(),
        "the old process's end stopped the resumed session"
    );
    let said = std::fs::read_to_string(old_dir.join("end.err")).unwrap();
    assert!(said.contains("not stopping"), "{said}");

    std::fs::write(new_dir.join("go"), "").unwrap();
    finish(new, Duration::from_secs(60));
    assert!(
        !w.session_dir(&id).exists(),
        "the last process's end left the session"
    );
}

/// `claude -p` waits for its `asyncRewake` hooks before it ends; a wake hook
/// that waited for a message there kept every print-mode run of a session
/// with the plugin from ending.
#[test]
fn in_print_mode_the_wake_hooks_end_at_once_and_leave_the_message_queued() {
    let w = World::new();
    let lib = Agent::new(&w, "11111111-2222-4333-8444-555555555555", "lib");
    let app = Agent::new(&w, "66666666-7777-4888-8999-000000000000", "app");
    let lib_id = lib.session_start();
    let _app_id = app.session_start();
    let print_mode = |event| {
        lib.hook(event, "wake")
            .env("CLAUDE_CODE_ENTRYPOINT", "sdk-cli")
            .spawn()
    };

    // Nothing pending: both end without waiting for one.
    for event in ["SessionStart", "Stop"] {
        let out = finish(print_mode(event), Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(0), "{event}");
        assert!(out.stderr.is_empty(), "{event}: {:?}", out.stderr);
    }

    // A message pending: not handed over, still in the inbox for later.
    app.bash(&format!(
        "\"$BRIDGE_HOST_BIN\" run send {lib_id} query 'ping $HOME `x`'"
    ))
    .ok();
    assert_eq!(json_files(&w.session_dir(&lib_id).join("inbox")), 1);
    let out = finish(print_mode("Stop"), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty());
    assert_eq!(json_files(&w.session_dir(&lib_id).join("inbox")), 1);

    // An interactive session's wake hook still wakes with it.
    let woken = woken_with(
        lib.hook("Stop", "wake")
            .env("CLAUDE_CODE_ENTRYPOINT", "cli")
            .spawn(),
    );
    assert!(woken.contains("ping $HOME `x`"), "{woken}");
}

#[test]
fn the_wake_hook_ignores_pings_and_wakes_claude_with_a_query() {
    let w = World::new();
    let lib = Agent::new(&w, "11111111-2222-4333-8444-555555555555", "lib");
    let app = Agent::new(&w, "66666666-7777-4888-8999-000000000000", "app");
    // SessionStart runs its hooks side by side: the wake hook may look
    // before the session is registered, and waits for it.
    let waiting = lib.hook("SessionStart", "wake").spawn();
    let lib_id = lib.session_start();
    let app_id = app.session_start();

    // A connect's ping is answered without waking Claude; the answer landing
    // in the app's inbox shows the wake hook is up and holding its lock.
    // The app's own wake hook takes the answer (the pong) silently.
    let app_waiting = app.idle();
    app.slash("connect", &[("$ARGUMENTS", &lib_id)]).ok();
    let app_read = w.session_dir(&app_id).join("inbox/read");
    let deadline = Instant::now() + Duration::from_secs(60);
    while json_files(&app_read) == 0 {
        assert!(
            Instant::now() < deadline,
            "the ping was never answered, or its answer never filed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut waiting = waiting;
    assert!(waiting.try_wait().unwrap().is_none(), "a ping woke Claude");
    let mut app_waiting = app_waiting;
    assert!(
        app_waiting.try_wait().unwrap().is_none(),
        "the answer to a ping woke Claude"
    );
    assert_eq!(json_files(&w.session_dir(&app_id).join("inbox")), 0);

    // The next turn's end starts another wake hook; it steps aside at once.
    let second = finish(lib.idle(), Duration::from_secs(30));
    assert_eq!(second.status.code(), Some(0));
    assert!(second.stderr.is_empty());

    let asking = app
        .slash(
            "ask",
            &[("<peer>", &lib_id), ("<question>", "What changed in v2?")],
        )
        .spawn();
    let wake = woken_with(waiting);
    let (fields, content) = parse_listen(&wake);
    assert_eq!(
        fields["FIRST_LINE"],
        format!(
            "Query from {app_id} \"app\". Answer with the reply tool of the bridge's MCP server \
             (message_id {}), or with this command, your answer in place of <answer>:",
            fields["MESSAGE_ID"]
        )
    );
    assert_eq!(content, "What changed in v2?");
    // Handed over once: it is no longer waiting in the inbox.
    assert_eq!(json_files(&w.session_dir(&lib_id).join("inbox")), 0);

    lib.answer(&wake, "init() is now setup()");
    let answer = finish(asking, Duration::from_secs(60));
    assert!(answer.status.success());
    assert_eq!(
        parse_reply(&String::from_utf8(answer.stdout).unwrap()),
        ("lib".to_string(), "init() is now setup()".to_string())
    );
    // The reply went to the ask, not to the app's wake hook.
    assert!(
        app_waiting.try_wait().unwrap().is_none(),
        "the reply woke the app"
    );
    let _ = app_waiting.kill();
}

/// A peer's exit is nothing to do: it never wakes an idle session, and is
/// told with the next real message.
#[test]
fn a_peers_exit_wakes_nobody_and_is_told_with_the_next_message() {
    let w = World::new();
    let lib = Agent::new(&w, "12121212-3434-4565-8787-909090909090", "lib");
    let app = Agent::new(&w, "abababab-cdcd-4efe-8f0f-121212121212", "app");
    let other = Agent::new(&w, "34343434-5656-4787-8989-a0a0a0a0a0a0", "other");
    let lib_id = lib.session_start();
    app.session_start();
    other.session_start();
    app.slash("connect", &[("$ARGUMENTS", &lib_id)]).ok();
    let idle = lib.idle();
    // The library's wake hook answers the ping silently; then the app ends.
    let lib_read = w.session_dir(&lib_id).join("inbox/read");
    let deadline = Instant::now() + Duration::from_secs(60);
    while json_files(&lib_read) == 0 {
        assert!(
            Instant::now() < deadline,
            "the connect ping was never taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    app.hook("SessionEnd", "session-end").ok();
    let lib_inbox = w.session_dir(&lib_id).join("inbox");
    assert_eq!(json_files(&lib_inbox), 1, "the app's stop sent no notice");
    // Give the wake hook every chance to take it: it must stay asleep.
    std::thread::sleep(Duration::from_secs(2));
    let mut idle = idle;
    assert!(
        idle.try_wait().unwrap().is_none(),
        "a peer's exit woke Claude"
    );
    let status = lib.bash("bridge-host run status").ok();
    assert!(status.contains("\"app\" ended its session at "), "{status}");
    // The next real message wakes it, with the notice after it.
    let asking = other
        .bash(&format!(
            "bridge-host run ask {lib_id} 'still there?' --timeout 60"
        ))
        .spawn();
    let wake = woken_with(idle);
    assert!(wake.starts_with("Query from "), "{wake}");
    assert!(wake.contains("Also: "), "{wake}");
    assert!(wake.contains("\"app\" ended its session at "), "{wake}");
    lib.answer(&wake, "yes");
    assert_eq!(parse_reply(&printed(asking)).1, "yes");
}

#[test]
fn the_wake_hook_ends_quietly_when_the_session_stops() {
    let w = World::new();
    let lib = Agent::new(&w, "99999999-8888-4777-8666-555555555555", "lib");
    lib.session_start();
    let pointer = lib.project.join(".claude/bridge-session");
    assert!(pointer.exists(), "SessionStart wrote no project pointer");
    let waiting = lib.idle();
    std::thread::sleep(Duration::from_millis(300));
    lib.hook("SessionEnd", "session-end").ok();
    assert!(!pointer.exists(), "SessionEnd left the project pointer");
    let out = finish(waiting, Duration::from_secs(90));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // After a stop, a later turn's wake hook does not register it again.
    let out = finish(lib.idle(), Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0));
    assert_no_sessions(&w);
}

/// Two agents follow the plugin's own instructions: connect, an ask
/// answered by a dedicated listener, then a clarification loop answered
/// through the background wake hook.
#[test]
fn two_agents_talk_by_following_the_command_files() {
    let w = World::new();
    let lib = Agent::new(&w, "3f2a1b0c-aaaa-4bbb-8ccc-ddddeeeeffff", "my-library");
    let app = Agent::new(&w, "4e5d6c7b-1234-4567-89ab-cdef01234567", "my-app");
    lib.session_start();
    app.session_start();

    // The library's user: `/session-bridge:start`, then passes the ID on.
    let lib_id = lib.slash("start", &[]).ok().trim().to_string();
    // The app's user: `/session-bridge:connect <id>`.
    let connected = app.slash("connect", &[("$ARGUMENTS", &lib_id)]).ok();
    assert!(connected.contains(&lib_id), "{connected}");

    // Round 1: the library session listens (`/session-bridge:listen`).
    let listening = lib.slash("listen", &[]).spawn();
    let asking = app
        .slash(
            "ask",
            &[
                ("<peer>", &lib_id),
                ("<question>", "What breaking changes are in v2?"),
            ],
        )
        .spawn();
    // The connect's ping arrives first; a listener is told there is nothing
    // to do, and runs listen again as listen.md says.
    let mut heard = printed(listening);
    if heard.starts_with("Ping from") {
        assert!(heard.contains("Nothing to do"), "{heard}");
        heard = lib.slash("listen", &[]).ok();
    }
    let (fields, question) = parse_listen(&heard);
    assert_eq!(question, "What breaking changes are in v2?");
    assert_eq!(fields["FROM_PROJECT"], "my-app");
    lib.answer(&heard, "init() was renamed to setup().");
    let reply = printed(asking);
    assert_eq!(
        parse_reply(&reply),
        ("my-library".into(), "init() was renamed to setup().".into())
    );

    // Round 2: the library session is idle; its wake hook answers.
    let idle = lib.idle();
    let asking = app
        .slash(
            "ask",
            &[
                ("<peer>", &lib_id),
                ("<question>", "How do I migrate the config?"),
            ],
        )
        .spawn();
    let wake = woken_with(idle);
    assert!(wake.starts_with("Query from "), "{wake}");
    // Woken, the library agent asks back; its turn ends, a new wake hook starts.
    lib.answer(&wake, "Which config format: TOML or YAML?");
    let idle = lib.idle();
    let reply = printed(asking);
    let (_, clarification) = parse_reply(&reply);
    assert_eq!(clarification, "Which config format: TOML or YAML?");
    // The app answers with the command the reply's first line gives.
    let asking = app.bash(&command_from_first_line(&reply, "TOML")).spawn();
    let wake = woken_with(idle);
    let (fields, follow_up) = parse_listen(&wake);
    assert_eq!(follow_up, "TOML");
    assert_eq!(fields["FROM_PROJECT"], "my-app");
    lib.answer(&wake, "Rename [core] to [engine] in config.toml.");
    let reply = printed(asking);
    assert_eq!(
        parse_reply(&reply).1,
        "Rename [core] to [engine] in config.toml."
    );

    // Both sessions end; nothing is left registered.
    lib.hook("SessionEnd", "session-end").ok();
    app.hook("SessionEnd", "session-end").ok();
    assert_no_sessions(&w);
}

#[test]
fn the_bin_shim_finds_an_installed_bridge_host_or_says_how_to_install_it() {
    let w = World::new();
    // A plugin copy outside any checkout, as Claude Code installs it.
    let installed = w.root.path().join("plugins-cache/session-bridge/0.2.0");
    std::fs::create_dir_all(installed.join("bin")).unwrap();
    std::fs::copy(
        Path::new(PLUGIN).join("bin/bridge-host"),
        installed.join("bin/bridge-host"),
    )
    .unwrap();
    let shim_path = format!("{}/bin:/usr/bin:/bin", installed.display());
    let project = w.project("p");

    let install_hint = |path_env: &str| {
        let (out, description) = w
            .sh(&project, "bridge-host run peers")
            .env("PATH", path_env)
            .output();
        assert_eq!(out.status.code(), Some(127), "{description}");
        String::from_utf8(out.stderr).unwrap()
    };
    // Nothing installed, the marketplace added from a local directory: the
    // exact install command names that directory.
    let plugins = w.home().join(".claude/plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .unwrap();
    std::fs::write(
        plugins.join("known_marketplaces.json"),
        json!({"session-bridge": {
            "source": {"source": "directory", "path": repo},
            "installLocation": repo,
        }})
        .to_string(),
    )
    .unwrap();
    let hint = install_hint(&shim_path);
    assert!(
        hint.contains(&format!(
            "cargo install --locked --path '{}'",
            repo.display()
        )),
        "{hint}"
    );
    std::fs::remove_file(plugins.join("known_marketplaces.json")).unwrap();

    // Added from git: the clone Claude Code keeps.
    let clone = w.home().join(".claude/plugins/marketplaces/session-bridge");
    std::fs::create_dir_all(&clone).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        clone.join("Cargo.toml"),
    )
    .unwrap();
    let stderr = install_hint(&shim_path);
    assert!(
        stderr.contains(&format!(
            "cargo install --locked --path '{}'",
            clone.canonicalize().unwrap().display()
        )),
        "{stderr}"
    );
    // A hook does not fail the session: SessionStart tells Claude, and the
    // wake hook stays quiet.
    let hook = |event: &str| {
        w.sh(
            &project,
            &format!("\"{}/bin/bridge-host\" hook {event}", installed.display()),
        )
        .env("PATH", "/usr/bin:/bin")
        .stdin("{\"session_id\":\"x\"}")
        .output()
        .0
    };
    let start = hook("session-start");
    assert!(start.status.success());
    assert!(String::from_utf8_lossy(&start.stdout).contains("cargo install --locked"));
    let wake = hook("wake");
    assert!(wake.status.success() && wake.stdout.is_empty() && wake.stderr.is_empty());

    // Installed on PATH after the shim (as `cargo install` leaves it): the
    // shim runs it and does not run itself again.
    let cargo_bin = w.root.path().join("cargo/bin");
    std::fs::create_dir_all(&cargo_bin).unwrap();
    std::os::unix::fs::symlink(BIN, cargo_bin.join("bridge-host")).unwrap();
    let path = format!(
        "{}/bin:{}:/usr/bin:/bin",
        installed.display(),
        cargo_bin.display()
    );
    let version = w
        .sh(&project, "bridge-host --version")
        .env("PATH", &path)
        .ok();
    assert!(version.starts_with("bridge-host "), "{version}");
    // Or where cargo installs by default, with nothing on PATH.
    let version = w
        .sh(&project, "bridge-host --version")
        .env("PATH", &shim_path)
        .env("CARGO_HOME", w.root.path().join("cargo"))
        .ok();
    assert!(version.starts_with("bridge-host "), "{version}");
    // On Windows `cargo install` leaves bridge-host.exe; Git Bash runs the
    // shim, which finds it by that name too, on PATH and in cargo's bin.
    let exe_bin = w.root.path().join("windows-cargo/bin");
    std::fs::create_dir_all(&exe_bin).unwrap();
    std::os::unix::fs::symlink(BIN, exe_bin.join("bridge-host.exe")).unwrap();
    for (path_env, cargo_home) in [
        (
            format!(
                "{}/bin:{}:/usr/bin:/bin",
                installed.display(),
                exe_bin.display()
            ),
            None,
        ),
        (shim_path.clone(), Some(w.root.path().join("windows-cargo"))),
    ] {
        let mut command = w
            .sh(&project, "bridge-host --version")
            .env("PATH", &path_env);
        if let Some(home) = &cargo_home {
            command = command.env("CARGO_HOME", home);
        }
        let version = command.ok();
        assert!(version.starts_with("bridge-host "), "{version}");
    }
}

/// The release archive `name`, holding `program` as its bridge-host, in the
/// layout .ci/release-archives gives it.
fn release_archive(w: &World, folder: &str, program: &str) -> Vec<u8> {
    let stage = tempfile::tempdir_in(w.root.path()).unwrap();
    let dir = stage.path().join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bridge-host"), program).unwrap();
    std::fs::set_permissions(
        dir.join("bridge-host"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let archive = stage.path().join("archive.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(stage.path())
        .arg(folder)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(archive).unwrap()
}

/// A local HTTP server on 127.0.0.1 that serves `body` at `path` (and 404
/// elsewhere) for the rest of the test; its URL, and how many times it
/// served the file.
fn serve(path: String, body: Vec<u8>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            if request.split_whitespace().nth(1) == Some(path.as_str()) {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            } else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        }
    });
    (url, served)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// With no bridge-host anywhere, the launcher downloads the release archive
/// its `release/SHA256SUMS` names, from `BRIDGE_HOST_DOWNLOAD_URL`: a
/// tampered archive is refused (both sums named, nothing unpacked or run,
/// and the wake hooks do not fetch it again), the right one is installed
/// under `CLAUDE_PLUGIN_DATA` once and needs no network after, and with no
/// network and nothing installed, SessionStart says what to do and exits 0.
/// (`tests/real_client/install.py` runs the same in the real Claude Code.)
#[test]
fn the_bin_shim_installs_a_checked_release_archive_and_refuses_a_tampered_one() {
    let w = World::new();
    let project = w.project("p");
    let arch = w.sh(&project, "uname -m").ok();
    let target = match arch.trim() {
        "x86_64" => "x86_64-unknown-linux-musl",
        "aarch64" => "aarch64-unknown-linux-musl",
        other => panic!("no release target for {other}"),
    };
    let folder = format!("bridge-host-v{}-{target}", env!("CARGO_PKG_VERSION"));
    let name = format!("{folder}.tar.gz");
    let good = release_archive(
        &w,
        &folder,
        "#!/bin/sh\necho \"downloaded bridge-host: $*\"\n",
    );
    let ran = w.root.path().join("tampered-program-ran");
    let bad = release_archive(
        &w,
        &folder,
        &format!("#!/bin/sh\ntouch '{}'\n", ran.display()),
    );
    let (good_sum, bad_sum) = (sha256_hex(&good), sha256_hex(&bad));
    let plugin_copy = |at: &str| {
        let dir = w.root.path().join(at);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("release")).unwrap();
        std::fs::copy(
            Path::new(PLUGIN).join("bin/bridge-host"),
            dir.join("bin/bridge-host"),
        )
        .unwrap();
        std::fs::write(
            dir.join("release/SHA256SUMS"),
            format!("{good_sum}  {name}\n"),
        )
        .unwrap();
        dir
    };
    let plugin = plugin_copy("plugins-cache/session-bridge/0.2.0");
    let data = w.root.path().join("plugin-data");
    let (tampered_url, tampered_served) = serve(format!("/{name}"), bad);
    let (url, served) = serve(format!("/{name}"), good);
    let offline = "http://127.0.0.1:9/nothing-listens-here";
    // As Claude Code runs it: in a session (its CLAUDE_CODE_SESSION_ID),
    // or, with "", outside one.
    let in_session = |session: &str, plugin: &Path, url: &str, script: &str| {
        w.sh(&project, script)
            .env("PATH", format!("{}/bin:/usr/bin:/bin", plugin.display()))
            .env("BRIDGE_HOST_DOWNLOAD_URL", url)
            .env("CLAUDE_PLUGIN_DATA", &data)
            .env("CLAUDE_CODE_SESSION_ID", session)
            .stdin("{\"session_id\":\"x\"}")
            .output()
    };
    let command = |plugin: &Path, url: &str, script: &str| in_session("", plugin, url, script);
    let count = |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::SeqCst);

    // A tampered archive: refused, nothing unpacked or run.
    let (out, description) = command(&plugin, &tampered_url, "bridge-host run peers");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{description}");
    assert!(
        stderr.contains("refused") && stderr.contains(&bad_sum) && stderr.contains(&good_sum),
        "{stderr}"
    );
    assert!(!ran.exists(), "the tampered archive's program ran");
    assert!(!data.join(&folder).exists(), "{stderr}");
    // The wake hook, which runs after every turn, does not fetch it again.
    let (out, description) = command(&plugin, &tampered_url, "bridge-host hook wake");
    assert!(out.status.success(), "{description}");
    assert_eq!(count(&tampered_served), 1);
    // A session's two start-up hooks start together and either may end
    // before the other begins: here the wake hook fetches and fails first
    // (ten minutes on, or in a fresh data folder), and then the session's
    // SessionStart hook tells Claude why without fetching it again. Once,
    // the second fetched it again (seen in the real Claude Code, in CI).
    let hook_of = |session: &str, script: &str| in_session(session, &plugin, &tampered_url, script);
    std::fs::remove_file(data.join(".failed")).unwrap();
    let (out, description) = hook_of("session-1", "bridge-host hook wake");
    assert!(out.status.success(), "{description}");
    assert_eq!(count(&tampered_served), 2);
    let (out, description) = hook_of("session-1", "bridge-host hook session-start");
    let told = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{description}");
    assert!(
        told.contains("refused") && told.contains(&bad_sum) && told.contains("To fix it"),
        "{told}"
    );
    assert_eq!(count(&tampered_served), 2, "{told}");
    // Claude Code starts the plugin's MCP server beside those hooks, with
    // the session's ID: it does not fetch again either, and says why.
    let (out, description) = hook_of("session-1", "bridge-host mcp </dev/null");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{description}");
    assert!(
        said.contains("refused") && said.contains(&bad_sum),
        "{said}"
    );
    assert_eq!(count(&tampered_served), 2, "{said}");
    // A new session tries again.
    let (out, description) = hook_of("session-2", "bridge-host hook session-start");
    assert!(out.status.success(), "{description}");
    assert_eq!(count(&tampered_served), 3);
    assert!(!ran.exists() && !data.join(&folder).exists());

    // The right archive: installed once, and run.
    let (out, description) = command(&plugin, &url, "bridge-host run peers");
    assert!(out.status.success(), "{description}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "downloaded bridge-host: run peers\n"
    );
    assert!(data.join(&folder).join("bridge-host").is_file());
    // After that, no network: the installed copy runs.
    let (out, description) = command(&plugin, offline, "bridge-host --version");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "downloaded bridge-host: --version\n",
        "{description}"
    );
    assert_eq!(count(&served), 1);
    assert!(!ran.exists());

    // No network and nothing installed: SessionStart tells Claude what to
    // do and lets the session go on.
    let fresh = plugin_copy("plugins-cache/session-bridge/fresh");
    std::fs::remove_dir_all(&data).unwrap();
    let (out, description) = command(
        &fresh,
        offline,
        &format!("\"{}/bin/bridge-host\" hook session-start", fresh.display()),
    );
    let told = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{description}");
    assert!(
        told.contains(&format!("downloading {offline}/{name} failed"))
            && told.contains("To fix it")
            && told.contains("cargo install --locked"),
        "{told}"
    );
}

/// With a relative entry such as `bin` on PATH, a repository's own
/// `bin/bridge-host` must never run from the plugin's hooks or its approved
/// commands: the shim takes only absolute PATH entries.
#[test]
fn the_bin_shim_never_runs_a_bridge_host_found_through_a_relative_path_entry() {
    let w = World::new();
    let project = w.project("p");
    let planted = project.join("bin/bridge-host");
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    let marker = w.root.path().join("planted-ran");
    std::fs::write(
        &planted,
        format!("#!/bin/sh\necho ran > '{}'\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &planted,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cargo_bin = w.root.path().join("cargo/bin");
    std::fs::create_dir_all(&cargo_bin).unwrap();
    std::os::unix::fs::symlink(BIN, cargo_bin.join("bridge-host")).unwrap();
    for relative in ["bin", "./bin", "", "bin/../bin"] {
        let path = format!(
            "{PLUGIN}/bin:{relative}:{}:/usr/bin:/bin",
            cargo_bin.display()
        );
        let version = w
            .sh(&project, "bridge-host --version")
            .env("PATH", &path)
            .ok();
        assert!(
            version.starts_with("bridge-host "),
            "PATH={path}: {version}"
        );
        assert!(
            !marker.exists(),
            "PATH={path} ran the repository's bin/bridge-host"
        );
    }
}

/// `track <id> --json` as `agent` runs it, polled until its stage is
/// `stage` or a minute has passed; the last receipt either way.
fn tracked_until(agent: &Agent, id: &str, stage: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = agent
            .bash(&format!("bridge-host run track {id} --json"))
            .ok();
        let receipt: Value = serde_json::from_str(&out).unwrap();
        if receipt["stage"] == stage || Instant::now() > deadline {
            return receipt;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The wake hook hands a peer's question to Claude on standard error, where
/// Claude Code shows it too: a peer's control bytes are shown escaped, and
/// the answer, whatever it holds, goes back through the shown command.
#[test]
fn a_wake_up_shows_control_bytes_escaped_and_any_answer_goes_back_exactly() {
    let w = World::new();
    let lib = Agent::new(&w, "7ec01970-9999-4aaa-8bbb-cccccccccccc", "lib");
    let app = Agent::new(&w, "7ec01970-dddd-4eee-8fff-000000000000", "app");
    let lib_id = lib.session_start();
    app.session_start();
    let hostile = "osc52\u{1b}]52;c;cm0gLXJmIH4=\u{7} csi\u{1b}[2J bel\u{7} cr\rhidden nul\u{0}";
    let asking = app
        .bash(&format!(
            "bridge-host run ask {lib_id} - --timeout 60 --json"
        ))
        .stdin(hostile)
        .spawn();
    let wake = woken_with(lib.idle());
    let raw: Vec<char> = wake
        .chars()
        .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
        .collect();
    assert!(raw.is_empty(), "the wake-up printed raw {raw:?}: {wake:?}");
    assert!(
        wake.contains("osc52\\u{1b}]52;c;cm0gLXJmIH4=\\u{7}"),
        "{wake}"
    );
    assert!(wake.contains("cr\\rhidden nul\\u{0}"), "{wake}");
    let answer =
        "`setup()` replaces `init()`: $HOME, $(id), !!, 'single' \"double\" \\\nEOF\r\n日本語";
    lib.answer(&wake, answer);
    let out = finish(asking, Duration::from_secs(60));
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["message"]["content"], answer);
}

/// Receipts through the real hooks: a query is queued, taken by the wake
/// hook, seen once the woken turn's transcript shows it, and answered.
#[test]
fn receipts_follow_a_query_through_the_wake_hook_and_the_transcript() {
    let w = World::new();
    let lib = Agent::new(&w, "7ec01970-1111-4222-8333-444444444444", "lib");
    let app = Agent::new(&w, "7ec01970-5555-4666-8777-888888888888", "app");
    let lib_id = lib.session_start();
    app.session_start();
    let id = app
        .bash(&format!(
            "bridge-host run send {lib_id} query 'is setup() stable?'"
        ))
        .ok()
        .trim()
        .to_string();
    let receipt = tracked_until(&app, &id, "queued");
    assert_eq!(receipt["stage"], "queued", "{receipt}");

    let wake = woken_with(lib.idle());
    let (fields, _) = parse_listen(&wake);
    assert_eq!(fields["MESSAGE_ID"], id);
    let receipt = tracked_until(&app, &id, "taken");
    assert_eq!(receipt["stage"], "taken", "{receipt}");
    let taken = receipt["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["stage"] == "taken")
        .cloned()
        .unwrap_or_default();
    assert_eq!(taken["by"], lib_id.as_str(), "{receipt}");
    assert_eq!(taken["taker"], "wake-hook", "{receipt}");

    // The turn's end: a transcript without the ID confirms nothing; once
    // Claude Code has written the wake-up into it, the next Stop hook does.
    std::fs::write(
        lib.transcript(),
        "{\"type\":\"user\",\"message\":\"hello\"}\n",
    )
    .unwrap();
    let mut idle = lib.idle();
    std::thread::sleep(Duration::from_millis(500));
    let receipt = tracked_until(&app, &id, "taken");
    assert_eq!(
        receipt["stage"], "taken",
        "seen without the transcript saying so: {receipt}"
    );
    let _ = idle.kill();
    let _ = idle.wait();
    let line = json!({"type": "attachment", "content": wake}).to_string();
    std::fs::write(lib.transcript(), format!("{line}\n")).unwrap();
    let mut idle = lib.idle();
    let receipt = tracked_until(&app, &id, "seen");
    assert_eq!(receipt["stage"], "seen", "{receipt}");
    let _ = idle.kill();
    let _ = idle.wait();

    lib.answer(&wake, "yes, since 2.0");
    let receipt = tracked_until(&app, &id, "answered");
    assert_eq!(receipt["stage"], "answered", "{receipt}");
}

/// A send to a session whose Claude Code process has gone says so, and the
/// session is not cleaned away while its heartbeat is recent.
#[test]
fn a_send_to_a_session_whose_claude_is_gone_says_it_is_only_queued() {
    let w = World::new();
    let lib = Agent::new(&w, "dead0001-1111-4222-8333-444444444444", "lib");
    let app = Agent::new(&w, "dead0001-5555-4666-8777-888888888888", "app");
    let dir = w.root.path().join("lib-claude");
    let claude = lib.claude_process(&dir);
    wait_for(&dir.join("started"));
    let lib_id = lib.bash("bridge-host run id").ok().trim().to_string();
    // Claude Code is killed: no SessionEnd runs.
    // SAFETY: signals the process group `World::sh` gave the child.
    unsafe { libc::kill(-(claude.id() as i32), libc::SIGKILL) };
    let _ = finish(claude, Duration::from_secs(10));
    app.session_start();

    let (out, _) = app
        .bash(&format!("bridge-host run send {lib_id} query 'anyone?'"))
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("queued for a session that is not running"),
        "{stderr}"
    );
    let sent: Value = serde_json::from_str(
        &app.bash(&format!(
            "bridge-host run send {lib_id} query 'still there?' --json"
        ))
        .ok(),
    )
    .unwrap();
    assert_eq!(sent["recipient"], "not-running", "{sent}");
    let cleanup: Value =
        serde_json::from_str(&app.bash("bridge-host run cleanup --json").ok()).unwrap();
    assert!(
        w.session_dir(&lib_id).join("manifest.json").exists(),
        "{cleanup}"
    );
    assert_eq!(
        json_files(&w.session_dir(&lib_id).join("inbox")),
        2,
        "{cleanup}"
    );
}
