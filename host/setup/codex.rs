//! Codex CLI: everything in `$CODEX_HOME/config.toml`, else
//! `~/.codex/config.toml` (TOML):
//! - `[mcp_servers.bridge]`, the MCP server. It joins the session Codex's
//!   hooks registered for each thread (`--session-from-hooks`); Codex
//!   starts a server with a filtered environment, so `env_vars` passes
//!   the bridge's own variables on when they are set ([`PASSED_ON`]); and
//!   its tools, and only its tools,
//!   run without asking (`default_tools_approval_mode = "approve"`), but
//!   `away`, which a person confirms (`[mcp_servers.bridge.tools.away]
//!   approval_mode = "prompt"`).
//! - `[hooks]`: SessionStart registers the thread and starts its waker,
//!   Stop confirms what was seen, SessionEnd stops the session.
//! - `[hooks.state."<file>:<event>:0:0"]`: each of those hooks trusted.
//!   Codex runs no hook it has not been told to trust; it trusts a hook
//!   whose `trusted_hash` is its own hash of the hook's definition, which
//!   is computed here ([`trusted_hash`]) and which `bridge-host doctor`
//!   checks against Codex's own list.
//!
//! The three hook events are owned whole: a configuration that already
//! has its own SessionStart, Stop or SessionEnd hooks in config.toml is
//! refused with both shown, as any entry setup did not write.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Install;
use super::edit::{Format, Piece};
use super::files::{Places, env_path};

pub(super) fn default_config(places: &Places) -> PathBuf {
    env_path("CODEX_HOME")
        .unwrap_or_else(|| places.home.join(".codex"))
        .join("config.toml")
}

/// The hooks, as (event in the file, event in trust keys, `hook <event>`,
/// timeout in seconds). Codex caps a SessionEnd hook at 3 s.
const HOOKS: [(&str, &str, &str, u64); 3] = [
    ("SessionStart", "session_start", "codex-session-start", 30),
    ("Stop", "stop", "codex-stop", 30),
    ("SessionEnd", "session_end", "codex-session-end", 3),
];

/// The variables Codex passes on to the MCP server when they are set
/// (it starts servers with a filtered environment): the ones that choose
/// the bridge directory, the cache, the guest and its settings, and the
/// retention, so that the server runs the same guest, with the same
/// policy, as the hooks and the waker, which get Codex's whole environment.
const PASSED_ON: [&str; 5] = [
    "BRIDGE_DIR",
    "BRIDGE_CACHE_DIR",
    "BRIDGE_GUEST",
    "BRIDGE_GUEST_SETTINGS",
    "BRIDGE_RETENTION",
];

pub(super) fn install(exe: &str, file: &Path) -> Install {
    let mut pieces = vec![Piece::new(
        &["mcp_servers", "bridge"],
        json!({
            "command": exe,
            "args": ["mcp", "--session-from-hooks"],
            "env_vars": PASSED_ON,
            "default_tools_approval_mode": "approve",
            "tools": crate::verbs::confirmed_tools()
                .map(|tool| (tool.to_string(), json!({"approval_mode": "prompt"})))
                .collect::<serde_json::Map<_, _>>(),
        }),
    )];
    let quoted = shell_words::quote(exe).into_owned();
    for (event, snake, verb, timeout) in HOOKS {
        let handler = json!({
            "type": "command",
            "command": format!("{quoted} hook {verb}"),
            "timeout": timeout,
        });
        pieces.push(Piece::new(
            &["hooks", event],
            json!([{ "hooks": [handler.clone()] }]),
        ));
        let key = format!("{}:{snake}:0:0", file.display());
        pieces.push(Piece::new(
            &["hooks", "state", &key],
            json!({ "trusted_hash": trusted_hash(snake, &handler) }),
        ));
    }
    Install {
        format: Format::Toml,
        pieces,
        plugin: None,
    }
}

/// The hash Codex keeps as a hook's trust (`trusted_hash`): SHA-256 of the
/// hook's identity (its event, and the handler with `async` and its
/// timeout filled in) as JSON with sorted keys and no spaces. Checked
/// against Codex 0.171.0's `hooks/list` (`currentHash`), here and in
/// `bridge-host doctor`.
fn trusted_hash(event: &str, handler: &Value) -> String {
    let mut handler = handler.clone();
    handler["async"] = json!(false);
    let identity = json!({ "event_name": event, "hooks": [handler] });
    let mut text = String::new();
    canonical(&identity, &mut text);
    format!("sha256:{:x}", Sha256::digest(text.as_bytes()))
}

/// `value` as JSON with every object's keys sorted and no spaces.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push(':');
                canonical(&map[*key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes Codex 0.171.0 listed (`hooks/list`, `currentHash`) for these
    /// hooks in a config.toml.
    #[test]
    fn the_trust_hash_is_the_one_codex_computes() {
        let hook = |command: &str, timeout: u64| json!({"type": "command", "command": command, "timeout": timeout});
        assert_eq!(
            trusted_hash(
                "session_start",
                &hook("/usr/bin/true codex-session-start", 30)
            ),
            "sha256:88ac8df7d2fd543fb7d7cf56c7f1fe6030a553a6765348869ecad9b0c426da5d"
        );
        assert_eq!(
            trusted_hash("session_end", &hook("/usr/bin/true session-end", 3)),
            "sha256:414aa37b47fe05d2e918bd0dbdb7cfbc673812537b4207d423834c6bd9299b51"
        );
        assert_eq!(
            trusted_hash("stop", &hook("/usr/bin/true codex-stop", 600)),
            "sha256:b1056702f325cb00c0f33099637e57b2fb6e721af1361fc4cdbe903728e4e119"
        );
    }
}
