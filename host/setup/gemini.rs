//! Gemini CLI: `mcpServers.bridge` in `~/.gemini/settings.json`, and the
//! AfterAgent hook that hands pending messages to the model at the end of
//! each turn (docs/gemini.md; the event is owned whole, as any entry). Gemini
//! strips comments before `JSON.parse` (0.61.0), so comments are kept and
//! trailing commas refused, as Gemini refuses them.
//!
//! Beside it, a policy file `policies/session-bridge.toml` (in the same
//! folder as the settings file: `~/.gemini/policies/` for the user's):
//! every bridge tool runs unasked but `away`, which a person confirms,
//! as in the Claude Code plugin and in Codex. `trust` on the server is not
//! used: it would pass `away` unasked too. Without either, an interactive
//! Gemini asks before each call and `gemini -p` leaves the tools out, so a
//! handed-over question could not be answered with nobody at the terminal.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::Install;
use super::claude_code::PluginFiles;
use super::edit::{Format, Piece};
use super::files::Places;

pub(super) fn default_config(places: &Places) -> PathBuf {
    places.home.join(".gemini/settings.json")
}

/// The folder of policy files beside a settings file.
pub(super) fn policies_dir(settings: &Path) -> PathBuf {
    settings
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("policies")
}

/// The policy: the bridge's tools run unasked, `away` asks. Gemini CLI
/// 0.61.0 needs `toolName` in every rule (one with only `mcpName` makes
/// it reject the whole file), and the higher priority wins.
fn policy() -> String {
    let mut text = String::from(
        "# Written by `bridge-host setup gemini`; `bridge-host setup gemini --remove`\n\
         # removes it. The bridge's tools run without asking, but `away`, which\n\
         # turns on answers that cost model calls: a person confirms it.\n\n\
         [[rule]]\nmcpName = \"bridge\"\ntoolName = \"*\"\ndecision = \"allow\"\npriority = 100\n",
    );
    for tool in crate::verbs::confirmed_tools() {
        text.push_str(&format!(
            "\n[[rule]]\nmcpName = \"bridge\"\ntoolName = \"{tool}\"\ndecision = \"ask_user\"\npriority = 900\n"
        ));
    }
    text
}

pub(super) fn install(exe: &str, policies: &Path) -> Install {
    Install {
        format: Format::Json {
            comments: true,
            trailing_commas: false,
        },
        pieces: vec![
            Piece::new(
                &["mcpServers", "bridge"],
                json!({"command": exe, "args": ["mcp"]}),
            ),
            Piece::new(
                &["hooks", "AfterAgent"],
                json!([{"hooks": [{
                    "name": "session-bridge",
                    "type": "command",
                    "command": format!("{} hook gemini-after-agent", shell_words::quote(exe)),
                    "timeout": 30000,
                }]}]),
            ),
        ],
        plugin: Some(PluginFiles {
            dir: policies.to_path_buf(),
            files: vec![(
                PathBuf::from("session-bridge.toml"),
                policy().into_bytes(),
                false,
            )],
            diff: true,
        }),
    }
}
