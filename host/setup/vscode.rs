//! VS Code: `servers.bridge` (`"type": "stdio"`) in the user profile's
//! `mcp.json` (JSON with comments and trailing commas): on Linux
//! `$XDG_CONFIG_HOME/Code/User/mcp.json` (else `~/.config/…`), on macOS
//! `~/Library/Application Support/Code/User/mcp.json`, on Windows
//! `%APPDATA%\Code\User\mcp.json`.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use serde_json::json;

use super::Install;
use super::edit::{Format, Piece};
use super::files::{Places, env_path};
use super::words;

pub(super) fn default_config(places: &Places) -> Result<PathBuf> {
    let base = if cfg!(windows) {
        env_path("APPDATA").ok_or_else(|| anyhow!(words::no_appdata()))?
    } else if cfg!(target_os = "macos") {
        places.home.join("Library/Application Support")
    } else {
        env_path("XDG_CONFIG_HOME")
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| places.home.join(".config"))
    };
    Ok(base.join("Code").join("User").join("mcp.json"))
}

pub(super) fn install(exe: &str) -> Install {
    Install {
        format: Format::Json {
            comments: true,
            trailing_commas: true,
        },
        pieces: vec![Piece::new(
            &["servers", "bridge"],
            json!({"type": "stdio", "command": exe, "args": ["mcp"]}),
        )],
        plugin: None,
    }
}
