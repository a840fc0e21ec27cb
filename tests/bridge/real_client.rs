//! The plugin in the real Claude Code CLI: `tests/real_client/scenario.py`
//! starts two interactive sessions in tmux, each with a throwaway HOME, the
//! plugin loaded and a local stand-in for the model API (127.0.0.1 only),
//! types what README tells a user to type, and checks what happened:
//! connect wakes nobody, an idle session woken with nobody typing answers
//! an ask, a clarification loop completes, a peer's exit wakes nobody, and
//! nothing is left behind.
//!
//! It needs the Claude Code CLI (the version pinned in `.ci/claude-code`,
//! installed by `npm ci` there, or `CLAUDE_CODE_BIN` / `CLAUDE_CODE_VERSION`),
//! `tmux` and `python3`. Without them it fails under `CI=true` and is
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

/// What is missing to run the real client, if anything.
fn missing() -> Option<String> {
    let pinned = Path::new(REPO).join(".ci/claude-code/node_modules/.bin/claude");
    let claude = std::env::var_os("CLAUDE_CODE_BIN").is_some()
        || std::env::var_os("CLAUDE_CODE_VERSION").is_some()
        || pinned.exists();
    let absent: Vec<&str> = [
        (
            "the Claude Code CLI (npm ci --prefix .ci/claude-code)",
            claude,
        ),
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
fn the_plugin_works_in_the_real_claude_code() {
    if let Some(absent) = missing() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the real-client test cannot run under CI: missing {absent}"
        );
        eprintln!("skipped: the real-client test needs {absent}");
        return;
    }
    let out = Command::new("python3")
        .arg(Path::new(REPO).join("tests/real_client/scenario.py"))
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
        "the real-client scenario failed:\n{stdout}{stderr}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("real client: ") && last.ends_with(" passed, 0 failed"),
        "{last}"
    );
}

#[test]
fn the_model_stand_in_follows_only_the_commands_it_was_given() {
    if !on_path("python3") {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 is missing"
        );
        eprintln!("skipped: needs python3");
        return;
    }
    let out = Command::new("python3")
        .args(["-m", "unittest", "-q", "test_model_stub"])
        .current_dir(Path::new(REPO).join("tests/real_client"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
