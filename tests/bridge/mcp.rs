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

use std::process::Command;

use crate::util::python_scenario;

/// What is missing to run the client, if anything.
fn missing() -> Option<String> {
    let runs = |args: &[&str]| {
        Command::new("python3")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !runs(&["--version"]) {
        return Some("python3".into());
    }
    (!runs(&["-c", "import mcp.client.stdio"]))
        .then(|| "the Python MCP SDK (pip install -r tests/mcp/requirements.txt)".into())
}

#[test]
fn an_independent_mcp_client_sees_what_the_server_promises() {
    python_scenario("tests/mcp/client.py", "mcp client", missing());
}
