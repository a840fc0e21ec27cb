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

use crate::real_client::claude_code_present;
use crate::util::{absent, on_path, python_scenario};

#[test]
fn codex_asks_and_an_idle_claude_code_session_answers_with_the_mcp_reply_tool() {
    let codex = std::env::var_os("CODEX_BIN").is_some()
        || Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".ci/codex/node_modules/.bin/codex")
            .exists();
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
