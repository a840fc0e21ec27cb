//! Gemini CLI: `mcpServers.bridge` in `~/.gemini/settings.json`, and the
//! AfterAgent hook that hands pending messages to the model at the end of
//! each turn (docs/gemini.md; the event is owned whole, as any entry). Gemini
//! strips comments before `JSON.parse` (0.61.0), so comments are kept and
//! trailing commas refused, as Gemini refuses them. `trust` is left to the
//! user: without it Gemini asks before each call, and `gemini -p` leaves
//! the tools out.

use std::path::PathBuf;

use serde_json::json;

use super::Install;
use super::edit::{Format, Piece};
use super::files::Places;

pub(super) fn default_config(places: &Places) -> PathBuf {
    places.home.join(".gemini/settings.json")
}

pub(super) fn install(exe: &str) -> Install {
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
        plugin: None,
    }
}
