//! What `bridge-host doctor` says of the relay: whether one is configured
//! (`BRIDGE_RELAY_*`), whether a relay holds this bridge directory now, and
//! whether the server accepts this machine's credentials.

use std::path::Path;
use std::time::Duration;

use clap::Parser;

use super::{RunArgs, connect, keys};

/// How long the doctor waits for the server.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// The relay's settings as the SessionStart hook would start it: from the
/// environment only.
#[derive(Parser)]
#[command(no_binary_name = true)]
struct FromEnv {
    #[command(flatten)]
    run: RunArgs,
}

/// The relay as the doctor sees it.
pub enum RelayHealth {
    /// No `BRIDGE_RELAY_SERVER`: this machine talks to no other.
    Off,
    /// Configured; `running` tells whether a relay holds the bridge
    /// directory, and `reached` whether the server took the credentials
    /// (with what it said, or why not).
    Configured {
        server: String,
        running: bool,
        reached: Result<String, String>,
    },
}

/// Checks the relay of `bridge_dir`.
pub fn health(bridge_dir: &Path) -> RelayHealth {
    let Ok(args) = FromEnv::try_parse_from(std::iter::empty::<String>()) else {
        return RelayHealth::Configured {
            server: String::new(),
            running: false,
            reached: Err(
                "the BRIDGE_RELAY_* settings do not parse; run bridge-host relay to see why".into(),
            ),
        };
    };
    let Some(server) = args.run.server.clone().filter(|s| !s.trim().is_empty()) else {
        return RelayHealth::Off;
    };
    let running = std::fs::File::open(bridge_dir.join("relay.lock")).is_ok_and(|file| {
        matches!(
            file.try_lock_shared(),
            Err(std::fs::TryLockError::WouldBlock)
        )
    });
    let reached = reach(&args.run, &server);
    RelayHealth::Configured {
        server,
        running,
        reached,
    }
}

/// Connects as this machine's relay would, and says which server answered.
fn reach(args: &RunArgs, server: &str) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let creds = args
            .creds
            .as_deref()
            .map(keys::read_creds)
            .transpose()
            .map_err(|e| format!("{e:#}"))?;
        let connecting = connect(
            server,
            creds.as_ref(),
            args.tls_ca.as_deref(),
            "doctor",
            false,
        );
        let client = tokio::time::timeout(CONNECT_WAIT, connecting)
            .await
            .map_err(|_| format!("no answer from {server} within {}s", CONNECT_WAIT.as_secs()))?
            .map_err(|e| format!("{e:#}"))?;
        let info = client.server_info();
        let said = format!(
            "{} (nats-server {}, JetStream {})",
            info.server_name,
            info.version,
            if info.jetstream { "on" } else { "off" }
        );
        drop(client);
        Ok(said)
    })
}
