//! `bridge-host mcp` driven by an independent MCP client:
//! `tests/mcp/client.py` starts the server through the official Python MCP
//! SDK's stdio client (and, for malformed lines and vanishing clients,
//! through a raw JSON-lines pipe) in a throwaway bridge directory, and
//! checks the handshake and tool list, registration (client name, project
//! from roots or the working directory), asking and answering between MCP
//! sessions and terminals, progress, cancellation, disconnection, bad input
//! and when a delivery is committed.
//!
//! It needs `python3` with the SDK: `pip install mcp==2.3.0` (`.ci/run`
//! installs it). Without them it fails under `CI=true` and is skipped
//! elsewhere, saying so.

use std::path::Path;
use std::process::Command;

use crate::util::BIN;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// What is missing to run the client, if anything.
fn missing() -> Option<&'static str> {
    let python = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !python {
        return Some("python3");
    }
    let sdk = Command::new("python3")
        .args(["-c", "import mcp.client.stdio"])
        .output()
        .is_ok_and(|o| o.status.success());
    (!sdk).then_some("the Python MCP SDK (pip install mcp==2.3.0)")
}

#[test]
fn an_independent_mcp_client_sees_what_the_server_promises() {
    if let Some(absent) = missing() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the MCP client test cannot run under CI: missing {absent}"
        );
        eprintln!("skipped: the MCP client test needs {absent}");
        return;
    }
    let out = Command::new("python3")
        .arg(Path::new(REPO).join("tests/mcp/client.py"))
        .current_dir(REPO)
        .env("BRIDGE_HOST_BIN", BIN)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("BRIDGE_DIR")
        .env_remove("BRIDGE_SESSION_ID")
        .env_remove("BRIDGE_CACHE_DIR")
        .env_remove("BRIDGE_GUEST")
        .env_remove("BRIDGE_GUEST_SETTINGS")
        .env_remove("PROJECT_DIR")
        .env_remove("CLAUDE_CODE_SESSION_ID")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "the MCP client found failures:\n{stdout}{stderr}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("mcp client: ") && last.ends_with(" passed, 0 failed"),
        "{last}"
    );
}
