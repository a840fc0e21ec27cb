//! Claude Code: the bridge is the repository's plugin. Setup writes the
//! plugin, embedded in this binary, to setup's data folder as a directory
//! marketplace, and names it in `~/.claude/settings.json` (or
//! `$CLAUDE_CONFIG_DIR/settings.json`): `extraKnownMarketplaces` says where
//! the marketplace is, `enabledPlugins` turns the plugin on. Claude Code
//! 2.1.197 registers such a marketplace at its next start and loads the
//! plugin in place, from that folder (measured; see docs/setup.md).
//!
//! Claude Code reads settings.json as plain JSON: a comment makes it ignore
//! the whole file, so setup refuses one too.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::Install;
use super::edit::{Format, Piece};
use super::files::{Places, env_path};

/// The marketplace's and the plugin's name (`.claude-plugin/marketplace.json`).
const MARKETPLACE: &str = "session-bridge";
const PLUGIN: &str = "session-bridge@session-bridge";

/// The file beside the plugin's launcher that names the binary setup ran
/// from (`plugin/bin/bridge-host` reads it).
pub const LAUNCHER_TARGET: &str = "plugin/bin/installed-by-setup";

macro_rules! embedded {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path)) as &[u8])),*]
    };
}

/// The marketplace and every file of the plugin, as the repository has
/// them. A test fails when a file of `plugin/` is missing here.
pub const PLUGIN_FILES: &[(&str, &[u8])] = embedded![
    ".claude-plugin/marketplace.json",
    "plugin/.claude-plugin/plugin.json",
    "plugin/.mcp.json",
    "plugin/bin/bridge-host",
    "plugin/commands/ask.md",
    "plugin/commands/away.md",
    "plugin/commands/connect.md",
    "plugin/commands/listen.md",
    "plugin/commands/peers.md",
    "plugin/commands/start.md",
    "plugin/commands/status.md",
    "plugin/commands/stop.md",
    "plugin/hooks/hooks.json",
    "plugin/skills/bridge-awareness/SKILL.md",
];

/// The plugin's files to write under `dir`: (relative path, bytes, whether
/// it is executable).
pub struct PluginFiles {
    pub dir: PathBuf,
    pub files: Vec<(PathBuf, Vec<u8>, bool)>,
    /// Whether `--dry-run` shows each file's diff (a short text file), or
    /// only how many would be written.
    pub diff: bool,
}

pub(super) fn default_config(places: &Places) -> PathBuf {
    env_path("CLAUDE_CONFIG_DIR")
        .unwrap_or_else(|| places.home.join(".claude"))
        .join("settings.json")
}

pub(super) fn plugin_dir(places: &Places) -> PathBuf {
    places.data.join("claude-code")
}

pub(super) fn install(exe: &str, dir: &Path) -> Install {
    let mut files: Vec<(PathBuf, Vec<u8>, bool)> = PLUGIN_FILES
        .iter()
        .map(|(path, bytes)| {
            (
                PathBuf::from(path),
                bytes.to_vec(),
                path.starts_with("plugin/bin/"),
            )
        })
        .collect();
    // The launcher runs under Git Bash on Windows, which names C:\x as /c/x.
    #[cfg(windows)]
    let exe = crate::dirs::git_bash_form(Path::new(exe))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| exe.to_string());
    files.push((
        PathBuf::from(LAUNCHER_TARGET),
        format!("{exe}\n").into_bytes(),
        false,
    ));
    Install {
        format: Format::Json {
            comments: false,
            trailing_commas: false,
        },
        pieces: vec![
            Piece::new(
                &["extraKnownMarketplaces", MARKETPLACE],
                json!({"source": {"source": "directory", "path": dir.to_string_lossy()}}),
            ),
            Piece::new(&["enabledPlugins", PLUGIN], json!(true)),
        ],
        plugin: Some(PluginFiles {
            dir: dir.to_path_buf(),
            files,
            diff: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn every_plugin_file_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut on_disk = vec![".claude-plugin/marketplace.json".to_string()];
        let mut stack = vec![root.join("plugin")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let relative = path.strip_prefix(root).unwrap();
                    let relative = relative.to_string_lossy().replace('\\', "/");
                    // Not embedded: the release archives' sums (an archive
                    // holds this binary, so the binary cannot hold their
                    // sums; the plugin setup writes names its binary in
                    // installed-by-setup and needs no download), and the
                    // files the launcher writes beside itself.
                    if !relative.starts_with("plugin/release/")
                        && !relative.starts_with("plugin/bin/installed-by-")
                    {
                        on_disk.push(relative);
                    }
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = super::PLUGIN_FILES
            .iter()
            .map(|(p, _)| p.to_string())
            .collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "host/setup/claude_code.rs must embed exactly the files of plugin/: add or remove the path in PLUGIN_FILES"
        );
    }
}
