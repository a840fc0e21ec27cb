//! The real Codex TUI (pinned in `.ci/codex`) in tmux, with the bridge's
//! Codex hooks and MCP server in a throwaway CODEX_HOME, offline against a
//! local stand-in for the Responses API whose "model" acts only on what it
//! is sent (`tests/real_client/codex_tui.py`): an idle Codex is woken by a
//! terminal's `ask` and answers with the MCP `reply` tool, unprompted;
//! Codex asks an idle Claude Code session, and a prompt typed into that
//! Claude Code session asks the idle Codex; a ping or a peer's
//! session-ended notice wakes nobody. Three wake runs here; the script's
//! `--runs 20` gives the figures docs/codex.md reports.
//!
//! It needs Codex (`npm ci --prefix .ci/codex`, or `CODEX_BIN`), Claude
//! Code, `tmux` and `python3`. Without them it fails under `CI=true` and is
//! skipped elsewhere, saying so.

use crate::real_client::claude_code_present;
use crate::util::{absent, on_path, pinned_cli, python_scenario};

#[test]
fn codex_tui_idle_is_woken_by_a_peer_and_answers_with_the_mcp_reply_tool() {
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
    python_scenario("tests/real_client/codex_tui.py", "codex tui", missing);
}
