//! Cursor: `mcpServers.bridge` in `~/.cursor/mcp.json` (JSON with comments).
//! Cursor is reported to start servers in `/` without offering roots, so
//! the server is told the workspace through `PROJECT_DIR`.

use std::path::PathBuf;

use serde_json::json;

use super::Install;
use super::edit::{Format, Piece};
use super::files::Places;

pub(super) fn default_config(places: &Places) -> PathBuf {
    places.home.join(".cursor/mcp.json")
}

pub(super) fn install(exe: &str) -> Install {
    Install {
        format: Format::Json {
            comments: true,
            trailing_commas: true,
        },
        pieces: vec![Piece::new(
            &["mcpServers", "bridge"],
            json!({
                "command": exe,
                "args": ["mcp"],
                "env": {"PROJECT_DIR": "${workspaceFolder}"}
            }),
        )],
        plugin: None,
    }
}
