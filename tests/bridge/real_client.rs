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

use crate::util::{absent, on_path, python_scenario};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Whether the pinned Claude Code CLI, or another one named, is there.
pub fn claude_code_present() -> bool {
    std::env::var_os("CLAUDE_CODE_BIN").is_some()
        || std::env::var_os("CLAUDE_CODE_VERSION").is_some()
        || Path::new(REPO)
            .join(".ci/claude-code/node_modules/.bin/claude")
            .exists()
}

/// What a test on both pinned Claude Code versions needs (2.1.197 in
/// `.ci/claude-code`, 2.1.332 in `.ci/claude-code-next`, and python3), with
/// `more`, each with whether it is there.
fn both_pinned_versions_and(more: &[(&'static str, bool)]) -> Vec<(&'static str, bool)> {
    let installed = |dir: &str| {
        Path::new(REPO)
            .join(dir)
            .join("node_modules/.bin/claude")
            .exists()
    };
    let mut needs = vec![
        (
            "Claude Code 2.1.197 (npm ci --prefix .ci/claude-code)",
            installed(".ci/claude-code"),
        ),
        (
            "Claude Code 2.1.332 (npm ci --prefix .ci/claude-code-next)",
            installed(".ci/claude-code-next"),
        ),
        ("python3", on_path("python3")),
    ];
    needs.extend_from_slice(more);
    needs
}

#[test]
fn the_plugin_works_in_the_real_claude_code() {
    let missing = absent(&[
        (
            "the Claude Code CLI (npm ci --prefix .ci/claude-code)",
            claude_code_present(),
        ),
        ("tmux", on_path("tmux")),
        ("python3", on_path("python3")),
    ]);
    python_scenario("tests/real_client/scenario.py", "real client", missing);
}

/// The plugin on a machine without Rust (`tests/real_client/install.py`):
/// in throwaway HOMEs with no cargo or rustup on PATH, the plugin installed
/// with `claude plugin marketplace add` and `claude plugin install`, and a
/// release archive of this build served on 127.0.0.1, the launcher refuses
/// a tampered archive (nothing installed or run, the session goes on, the
/// model is told why), tells the model what to do when offline, downloads
/// the archive once at the first start, installs it under the plugin's data
/// folder and registers; then, with the server stopped, a second session
/// registers and gets an answer to its ask.
#[test]
fn a_home_without_rust_gets_the_binary_from_a_release_archive_and_answers() {
    let missing = absent(&[
        (
            "the Claude Code CLI (npm ci --prefix .ci/claude-code)",
            claude_code_present(),
        ),
        ("tmux", on_path("tmux")),
        ("python3", on_path("python3")),
    ]);
    python_scenario("tests/real_client/install.py", "real client", missing);
}

/// The answer catalogue (`tests/real_client/catalogue.py`): an idle session,
/// never prompted and with no allow rule, answers a terminal's ask with
/// backticks and a fenced block, `$HOME`, `$(…)` and `!`, quotes and
/// backslashes, lines reading `EOF` and `ANSWER`, CRLF, non-ASCII text and a
/// 100 KB diff, each reaching the asker byte for byte with no permission
/// prompt: once through the bridge's MCP reply tool and once through the
/// Bash command the text shows, on both pinned Claude Code versions
/// (2.1.197 in `.ci/claude-code`, 2.1.332 in `.ci/claude-code-next`).
#[test]
fn every_answer_in_the_catalogue_arrives_byte_for_byte_by_both_paths_on_both_versions() {
    let missing = absent(&both_pinned_versions_and(&[("tmux", on_path("tmux"))]));
    python_scenario("tests/real_client/catalogue.py", "catalogue", missing);
}

/// Away answers in the real CLI (`tests/real_client/away.py`, issue 32), on
/// both pinned Claude Code versions, against the model stand-in
/// (`away_stub.py`): a session with the plugin builds context in two turns
/// and ends; a terminal's ask is answered from that context by a read-only
/// fork (the stand-in sees the earlier turns; the asker prints the answer
/// with its provenance line); the transcript stays byte-identical; Bash,
/// Write and Edit do nothing despite an approving PreToolUse hook and allow
/// rules; past the limit the query stays queued; two askers at once get one
/// fork each; a SIGKILLed answerer's query is answered later, with nothing
/// left running.
#[test]
fn away_answers_in_the_real_claude_code_on_both_versions() {
    let missing = absent(&both_pinned_versions_and(&[]));
    python_scenario("tests/real_client/away.py", "away answers", missing);
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
