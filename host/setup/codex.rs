//! Codex CLI: `[mcp_servers.bridge]` in `$CODEX_HOME/config.toml`, else
//! `~/.codex/config.toml` (TOML). Codex starts a server with a filtered
//! environment, so `env_vars` passes `BRIDGE_DIR` on when it is set.

use std::path::PathBuf;

use serde_json::json;

use super::Install;
use super::edit::{Format, Piece};
use super::files::{Places, env_path};

pub(super) fn default_config(places: &Places) -> PathBuf {
    env_path("CODEX_HOME")
        .unwrap_or_else(|| places.home.join(".codex"))
        .join("config.toml")
}

pub(super) fn install(exe: &str) -> Install {
    Install {
        format: Format::Toml,
        pieces: vec![Piece::new(
            &["mcp_servers", "bridge"],
            json!({"command": exe, "args": ["mcp"], "env_vars": ["BRIDGE_DIR"]}),
        )],
        plugin: None,
    }
}
