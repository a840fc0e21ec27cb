//! A real second agent: the Codex CLI (pinned in `.ci/codex`), from a fresh
//! HOME and an empty compile cache, asks through `bridge-host mcp`, and an
//! idle Claude Code session (pinned in `.ci/claude-code`), woken by the
//! plugin's wake hook, answers with the plugin's MCP `reply` tool.
//! `tests/real_client/second_agent.py` runs both against local stand-ins
//! for their model APIs (127.0.0.1 only). Gemini CLI (pinned in
//! `.ci/gemini`) asks a terminal session the same way.
//!
//! It needs Codex (`npm ci --prefix .ci/codex`, or `CODEX_BIN`), Claude
//! Code, `tmux` and `python3`. Without them it fails under `CI=true` and is
//! skipped elsewhere, saying so.

use crate::real_client::claude_code_present;
use crate::util::{absent, on_path, pinned_cli, python_scenario};

#[test]
fn codex_asks_and_an_idle_claude_code_session_answers_with_the_mcp_reply_tool() {
    let codex = pinned_cli("CODEX_BIN", "codex", "codex");
    let missing = absent(&[
        ("the Codex CLI (npm ci --prefix .ci/codex)", codex),
        (
            "the Claude Code CLI (npm ci --prefix .ci/claude-code)",
            claude_code_present(),
        ),
        ("tmux", on_path("tmux")),
        ("python3", on_path("python3")),
    ]);
    python_scenario("tests/real_client/second_agent.py", "second agent", missing);
}

/// Gemini CLI (pinned in `.ci/gemini`), from a fresh HOME and an empty
/// compile cache, connects to a terminal session and asks it with
/// `wait_for_previous` set, as its system prompt has a model do, and prints
/// the answer (`tests/real_client/gemini_client.py`, offline against a
/// local stand-in for the Gemini API).
#[test]
fn gemini_cli_on_a_cold_start_connects_asks_with_wait_for_previous_and_prints_the_answer() {
    let gemini = pinned_cli("GEMINI_BIN", "gemini", "gemini");
    let missing = absent(&[
        ("the Gemini CLI (npm ci --prefix .ci/gemini)", gemini),
        ("python3", on_path("python3")),
    ]);
    python_scenario(
        "tests/real_client/gemini_client.py",
        "gemini client",
        missing,
    );
}

/// After `bridge-host setup codex`, the pinned Codex CLI runs the bridge's
/// tools unasked but not `away`, which turns on answers that cost model
/// calls: in `codex exec` its call is refused for approval and the
/// project's away settings stay off, while `send` in the same turn reaches
/// the peer (`tests/real_client/codex_approval.py`, offline against the
/// Responses stand-in).
#[test]
fn codex_runs_the_bridge_tools_unasked_but_not_away() {
    let codex = pinned_cli("CODEX_BIN", "codex", "codex");
    let missing = absent(&[
        ("the Codex CLI (npm ci --prefix .ci/codex)", codex),
        ("python3", on_path("python3")),
    ]);
    python_scenario(
        "tests/real_client/codex_approval.py",
        "codex approval",
        missing,
    );
}
