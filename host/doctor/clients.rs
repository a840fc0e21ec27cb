//! The agent clients, as the doctor sees them: installed or not, their
//! version, whether `bridge-host setup` set them up, and their wake path.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Check, Status, check, first_line_of, on_path, output_of};
use crate::setup::{Client, SetUp};

/// How long Codex's app server may take to list its hooks.
const APP_SERVER_WAIT: Duration = Duration::from_secs(20);
/// A thread ID no Codex thread has: queueing a no-op to it proves the
/// queue path without waking anything.
const NO_THREAD: &str = "00000000-0000-0000-0000-000000000000";

/// The program each client is run as.
fn program(client: Client) -> &'static str {
    match client {
        Client::ClaudeCode => "claude",
        Client::Codex => "codex",
        Client::Gemini => "gemini",
        Client::Cursor => "cursor",
        Client::Vscode => "code",
    }
}

/// The client's program: a name looked up on PATH, or for Codex a path
/// when `BRIDGE_CODEX_BIN` gives one, as the waker runs it.
fn wanted(client: Client) -> std::path::PathBuf {
    match client {
        Client::Codex => crate::hooks::codex_program(),
        _ => program(client).into(),
    }
}

/// Where the client's program is, if it is there.
fn find(client: Client) -> Option<std::path::PathBuf> {
    let wanted = wanted(client);
    if wanted.components().count() > 1 {
        wanted.is_file().then_some(wanted)
    } else {
        on_path(&wanted.to_string_lossy())
    }
}

fn not_found(client: Client) -> String {
    let wanted = wanted(client);
    if wanted.components().count() > 1 {
        format!("not installed (no {})", wanted.display())
    } else {
        format!("not installed (no `{}` on PATH)", wanted.display())
    }
}

pub(super) fn checks() -> Vec<Check> {
    Client::ALL.iter().map(|&client| one(client)).collect()
}

fn one(client: Client) -> Check {
    let name = client.name();
    let installed = find(client);
    let version = installed
        .as_deref()
        .map(|path| first_line_of(path, &["--version"]));
    let set_up = crate::setup::installed(client);
    let mut lines = Vec::new();
    match (&installed, &version) {
        (Some(path), Some(Ok(version))) => {
            lines.push(format!("{version} ({})", path.display()));
        }
        (Some(path), Some(Err(why))) => {
            return check(
                name,
                Status::Fail,
                format!("{} is installed but {why}", path.display()),
            );
        }
        _ => lines.push(not_found(client)),
    }
    let set_up = match set_up {
        Ok(set_up) => set_up,
        Err(err) => return check(name, Status::Fail, format!("{}\n{err:#}", lines.join("\n"))),
    };
    let mut status = if installed.is_some() {
        Status::Ok
    } else {
        Status::Off
    };
    match set_up {
        SetUp::Yes => lines.push(format!("set up (bridge-host setup {name})")),
        SetUp::Partly => {
            lines.push(format!(
                "set up in part, or by another bridge-host, or edited since: bridge-host setup \
                 {name} brings it up to date"
            ));
            status = Status::Warn;
        }
        SetUp::No => {
            lines.push(format!(
                "not set up: bridge-host setup {name} adds the bridge to its configuration"
            ));
            if installed.is_some() {
                status = Status::Warn;
            }
        }
    }
    if let (Some(path), SetUp::Yes | SetUp::Partly) = (&installed, set_up) {
        let (wake_status, wake) = wake_path(client, path);
        if wake_status == Status::Fail || (wake_status == Status::Warn && status == Status::Ok) {
            status = wake_status;
        }
        lines.push(wake);
    }
    check(name, status, lines.join("\n"))
}

/// Whether the client's wake path works, checked live where that needs no
/// model call.
fn wake_path(client: Client, program: &Path) -> (Status, String) {
    match client {
        Client::ClaudeCode => claude_wake(program),
        Client::Codex => codex_wake(program),
        Client::Gemini => (
            Status::Ok,
            "wake: none for an idle session (Gemini CLI has no way to start a turn); pending \
             messages are handed over at the end of each turn"
                .into(),
        ),
        Client::Cursor | Client::Vscode => (
            Status::Ok,
            "wake: none; the agent takes messages with the check_inbox or listen tool".into(),
        ),
    }
}

/// The plugin as Claude Code itself lists it.
const PLUGIN_ID: &str = "session-bridge@session-bridge";

/// Claude Code: its own list of plugins says whether the session-bridge
/// plugin is installed and enabled, and the installed copy's hooks file
/// whether it has the wake hooks. The wake itself takes a model turn, so
/// it is not run.
fn claude_wake(program: &Path) -> (Status, String) {
    let listed = match output_of(program, &["plugin", "list", "--json"]) {
        Ok(listed) => listed,
        Err(why) => {
            return (
                Status::Warn,
                format!("wake: cannot list Claude Code's plugins: {why}"),
            );
        }
    };
    let plugins: Vec<Value> = match serde_json::from_str(&listed) {
        Ok(plugins) => plugins,
        Err(err) => {
            return (
                Status::Warn,
                format!("wake: claude plugin list --json printed no list this doctor reads: {err}"),
            );
        }
    };
    let Some(plugin) = plugins.iter().find(|p| p["id"] == PLUGIN_ID) else {
        return (
            Status::Ok,
            format!(
                "wake: Claude Code does not list {PLUGIN_ID} yet; it installs the plugin at its \
                 next start, and its sessions are woken from then on"
            ),
        );
    };
    let version = plugin["version"].as_str().unwrap_or("of unknown version");
    if plugin["enabled"] != true {
        return (
            Status::Warn,
            format!(
                "wake: the plugin ({version}) is installed but disabled, so nothing wakes a \
                 session: claude plugin enable {PLUGIN_ID}"
            ),
        );
    }
    let hooks = plugin["installPath"]
        .as_str()
        .map(|dir| Path::new(dir).join("hooks/hooks.json"));
    let wake_hooks = hooks
        .as_deref()
        .and_then(|file| std::fs::read(file).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .map_or(0, |value| count_wake_hooks(&value));
    if wake_hooks == 0 {
        let file = hooks.map_or_else(|| "its hooks file".into(), |f| f.display().to_string());
        return (
            Status::Fail,
            format!(
                "wake: the plugin ({version}) is enabled, but {file} has no wake hook; \
                 claude plugin update {PLUGIN_ID}, or bridge-host setup claude-code again"
            ),
        );
    }
    (
        Status::Ok,
        format!(
            "wake: the plugin ({version}) is enabled in Claude Code with its {wake_hooks} wake \
             hooks (not run here: a wake takes a model turn)"
        ),
    )
}

/// The hooks of a Claude Code hooks file that wake an idle session: an
/// `asyncRewake` command running `bridge-host hook wake`.
fn count_wake_hooks(file: &Value) -> usize {
    let Some(events) = file["hooks"].as_object() else {
        return 0;
    };
    events
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|matcher| matcher["hooks"].as_array())
        .flatten()
        .filter(|hook| {
            hook["asyncRewake"] == true
                && hook["command"]
                    .as_str()
                    .is_some_and(|c| c.contains("bridge-host") && c.contains(" hook wake"))
        })
        .count()
}

/// Codex: its own list of hooks says whether the bridge's are trusted (an
/// untrusted hook silently does not run), and a no-op queued to a thread
/// that does not exist proves that `codex queue` reaches Codex.
fn codex_wake(program: &Path) -> (Status, String) {
    let trust = match codex_hooks(program) {
        Ok(hooks) => hooks,
        Err(why) => {
            return (
                Status::Fail,
                format!("wake: cannot list Codex's hooks: {why}"),
            );
        }
    };
    let bridge: Vec<&(String, String)> = trust
        .iter()
        .filter(|(command, _)| command.contains("bridge-host") && command.contains(" hook "))
        .collect();
    if bridge.is_empty() {
        return (
            Status::Fail,
            "wake: Codex lists none of the bridge's hooks; run bridge-host setup codex again"
                .into(),
        );
    }
    let untrusted: Vec<String> = bridge
        .iter()
        .filter(|(_, status)| status != "trusted")
        .map(|(command, status)| format!("{command} ({status})"))
        .collect();
    if !untrusted.is_empty() {
        return (
            Status::Fail,
            format!(
                "wake: Codex does not run these hooks until they are trusted: {}; run \
                 bridge-host setup codex again, or trust them in Codex's /hooks",
                untrusted.join(", ")
            ),
        );
    }
    let queued = Command::new(program)
        .args([
            "queue",
            "--thread",
            NO_THREAD,
            "--message",
            "session-bridge doctor: no-op",
        ])
        .stdin(Stdio::null())
        .output();
    match queued {
        Ok(output) if !output.status.success() => {
            let said = String::from_utf8_lossy(&output.stderr);
            if said.contains("no rollout found") {
                (
                    Status::Ok,
                    format!(
                        "wake: the bridge's {} hooks are trusted, and codex queue reaches Codex \
                         (a no-op for a thread that does not exist was refused, as it should be)",
                        bridge.len()
                    ),
                )
            } else {
                let first = said.lines().next().unwrap_or("").trim().to_string();
                (Status::Fail, format!("wake: codex queue fails: {first}"))
            }
        }
        Ok(_) => (
            Status::Warn,
            format!(
                "wake: the bridge's {} hooks are trusted; codex queue accepted a no-op for a \
                 thread that does not exist, so it could not be told whether it reaches Codex",
                bridge.len()
            ),
        ),
        Err(err) => (Status::Fail, format!("wake: cannot run codex queue: {err}")),
    }
}

/// Every hook Codex lists for the current directory, as (command, trust
/// status), through its app server's `hooks/list`.
fn codex_hooks(program: &Path) -> Result<Vec<(String, String)>, String> {
    let mut child = Command::new(program)
        .arg("app-server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {} app-server: {e}", program.display()))?;
    let stdout = child.stdout.take().ok_or("no output from the app server")?;
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let cwd = std::env::current_dir().map_err(|e| format!("{e}"))?;
    let listed = (|| {
        let mut stdin = child.stdin.take().ok_or("no input to the app server")?;
        let mut send = |message: Value| {
            writeln!(stdin, "{message}").map_err(|e| format!("cannot talk to the app server: {e}"))
        };
        send(json!({"id": 0, "method": "initialize",
                    "params": {"clientInfo": {"name": "bridge-host-doctor", "version": env!("CARGO_PKG_VERSION")}}}))?;
        answer(&received, 0)?;
        send(json!({"method": "initialized"}))?;
        send(json!({"id": 1, "method": "hooks/list", "params": {"cwds": [cwd]}}))?;
        answer(&received, 1)
    })();
    let _ = child.kill();
    let _ = child.wait();
    let listed = listed?;
    let mut hooks = Vec::new();
    for entry in listed["result"]["data"].as_array().into_iter().flatten() {
        for hook in entry["hooks"].as_array().into_iter().flatten() {
            let command = hook["command"].as_str().unwrap_or_default().to_string();
            let status = hook["trustStatus"]
                .as_str()
                .unwrap_or("unknown")
                .to_string();
            hooks.push((command, status));
        }
    }
    Ok(hooks)
}

/// The app server's answer to request `id`.
fn answer(received: &mpsc::Receiver<String>, id: u64) -> Result<Value, String> {
    let deadline = std::time::Instant::now() + APP_SERVER_WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = received.recv_timeout(left).map_err(|_| {
            format!(
                "Codex's app server did not answer within {}s",
                APP_SERVER_WAIT.as_secs()
            )
        })?;
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if message["id"] == id {
            if let Some(error) = message.get("error") {
                return Err(format!("Codex's app server refused: {error}"));
            }
            return Ok(message);
        }
    }
}
