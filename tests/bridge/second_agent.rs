//! A real second agent: the Codex CLI (pinned in `.ci/codex`) asks through
//! `bridge-host mcp`, and an idle Claude Code session (pinned in
//! `.ci/claude-code`), woken by the plugin's wake hook, answers with the
//! plugin's MCP `reply` tool. `tests/real_client/second_agent.py` runs both
//! against local stand-ins for their model APIs (127.0.0.1 only).
//!
//! It needs Codex (`npm ci --prefix .ci/codex`, or `CODEX_BIN`), Claude
//! Code, `tmux` and `python3`. Without them it fails under `CI=true` and is
//! skipped elsewhere, saying so.

use std::path::Path;
use std::process::Command;

use crate::util::BIN;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

fn missing() -> Option<String> {
    let repo = Path::new(REPO);
    let codex = std::env::var_os("CODEX_BIN").is_some()
        || repo.join(".ci/codex/node_modules/.bin/codex").exists();
    let claude = std::env::var_os("CLAUDE_CODE_BIN").is_some()
        || std::env::var_os("CLAUDE_CODE_VERSION").is_some()
        || repo.join(".ci/claude-code/node_modules/.bin/claude").exists();
    let absent: Vec<&str> = [
        ("the Codex CLI (npm ci --prefix .ci/codex)", codex),
        ("the Claude Code CLI (npm ci --prefix .ci/claude-code)", claude),
        ("tmux", on_path("tmux")),
        ("python3", on_path("python3")),
    ]
    .into_iter()
    .filter(|(_, present)| !present)
    .map(|(name, _)| name)
    .collect();
    (!absent.is_empty()).then(|| absent.join(", "))
}

#[test]
fn codex_asks_and_an_idle_claude_code_session_answers_with_the_mcp_reply_tool() {
    if let Some(absent) = missing() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the second-agent test cannot run under CI: missing {absent}"
        );
        eprintln!("skipped: the second-agent test needs {absent}");
        return;
    }
    let out = Command::new("python3")
        .arg(Path::new(REPO).join("tests/real_client/second_agent.py"))
        .env("BRIDGE_HOST_BIN", BIN)
        .env_remove("BRIDGE_DIR")
        .env_remove("BRIDGE_SESSION_ID")
        .env_remove("CLAUDE_CODE_SESSION_ID")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "the second-agent scenario failed:\n{stdout}{stderr}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("second agent: ") && last.ends_with(" passed, 0 failed"),
        "{last}"
    );
}
