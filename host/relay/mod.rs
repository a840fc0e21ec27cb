//! `bridge-host relay`: connects this machine's bridge directory to a NATS
//! JetStream server, so that sessions on other machines look local.
//!
//! The relay is a capability of the host, never of the protocol guest: it
//! holds the network connection, moves bytes and waits. What may cross and
//! where it lands is decided by the guest's relay verbs (guest/src/relay.rs).
//!
//! On the server (subject prefix `P`, machine `M`):
//! - `P.mail.<to>.<from>`: mail, stored in the stream `P-mail-<to>`, which
//!   the relay of `<to>` creates and reads through its durable consumer
//!   `relay`. A publish carries the message ID as `Nats-Msg-Id`, so the
//!   stream keeps one copy however often it is published.
//! - the key-value bucket `P-presence`: key `<machine>.<session>`, value the
//!   session's manifest, kept alive by refreshes and expiring after the TTL.
//!
//! Only `<from>` may publish on `P.mail.*.<from>` and put `<from>.*`, and
//! only `<to>` may read `P-mail-<to>`: docs/relay.md gives the server
//! configuration that makes it so.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::invoke::{Config, bridge_dir};

mod admin;
mod inbound;
mod keys;
mod outbound;
mod presence;
mod serve;
mod state;
mod status;
mod turns;

pub use status::{RelayHealth, health};

use admin::{Layout, MAX_MESSAGE_BYTES};
use serve::{connect, serve};

/// The most messages taken from the server in one batch.
const INBOUND_BATCH: usize = 128;
/// The most payload bytes in one batch of received mail, past its first
/// message, and in one pull from the server: a batch of the largest
/// messages must fit the guest's memory, and a pull must be read before
/// the server gives up on a slow client. It holds the largest message the
/// stream stores, or a pull could never carry it.
const INBOUND_BYTES: usize = 16 << 20;
const _: () = assert!(INBOUND_BYTES >= MAX_MESSAGE_BYTES as usize);
/// How long a publish may wait for the server's acknowledgement. It is
/// below the claim lease (10 s), so a claim is committed before it lapses.
const PUBLISH_ACK_WAIT: Duration = Duration::from_secs(5);
/// A pass that carried fewer items than this waits [`GATHER`] before the
/// next look.
const GATHER_BELOW: usize = 64;
/// How long a small batch lets more gather behind it.
const GATHER: Duration = Duration::from_millis(5);
/// How long a relay waits before it tries again after a failure.
const RETRY: Duration = Duration::from_secs(2);
/// How long mail signed by a key not trusted here waits on the server
/// before it is offered again: at most this long after `bridge-host relay
/// trust` it is delivered.
const UNTRUSTED_RETRY: Duration = Duration::from_secs(15);
/// How many times a batch whose sender is not known here yet is offered
/// before its messages are refused, the sender's presence read from the
/// bucket before each offer, [`UNKNOWN_SENDER_PAUSE`] apart. A session that
/// sends at once after it starts can reach the other machine before its
/// presence does (its relay publishes both, each as it notices them).
const UNKNOWN_SENDER_OFFERS: u32 = 8;
const UNKNOWN_SENDER_PAUSE: Duration = Duration::from_millis(500);
/// How often the same line about waiting mail is logged again.
const SAY_AGAIN: Duration = Duration::from_secs(600);
/// The most messages left waiting on the server for a trusted key at once.
/// Each stays pending on the consumer, and the server stops delivering
/// when a consumer has 1,000 pending (its default): past this bound, mail
/// from machines with no trusted key is dropped instead, so that it can
/// never hold up mail from trusted ones.
const MAX_WAITING: usize = 256;

#[derive(clap::Args, Clone)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RelayArgs {
    #[command(subcommand)]
    command: Option<RelayCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand, Clone)]
enum RelayCommand {
    /// With the team admin's credentials: create, or bring up to date, what
    /// each named machine's relay uses on the server (its mail stream and
    /// consumer, its consumer on the presence bucket, and the bucket). Run
    /// it once per machine added, and again to change --replicas.
    Admin {
        /// The NATS server, as for the relay.
        #[arg(long, env = "BRIDGE_RELAY_SERVER", value_name = "URL")]
        server: String,
        /// The admin's credentials (an nkey seed file or a .creds file);
        /// never a machine's, which may not create streams.
        #[arg(long, value_name = "FILE")]
        creds: Option<PathBuf>,
        /// Trust this CA certificate (PEM) for the server's certificate.
        #[arg(long, env = "BRIDGE_RELAY_TLS_CA", value_name = "FILE")]
        tls_ca: Option<PathBuf>,
        /// A machine to set up (repeat for several).
        #[arg(long = "machine", value_name = "NAME", required = true)]
        machines: Vec<String>,
        #[command(flatten)]
        team: TeamArgs,
    },
    /// Make a machine key: its seed goes into FILE (for --creds), its public
    /// key is printed (for the server's configuration).
    Keygen {
        /// The new seed file; it must not exist.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Accept mail and sessions from MACHINE only when KEY signed them.
    /// Nothing is trusted on first sight: until a machine's key is trusted
    /// here, its mail waits on the server and its sessions are not shown.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["machine", "roster"])))]
    Trust {
        /// The machine's name.
        #[arg(requires = "key")]
        machine: Option<String>,
        /// Its public key (U...): `bridge-host relay key` prints it on that
        /// machine, and its relay logs it when it starts.
        key: Option<String>,
        /// Trust every machine of the team's roster: a file of lines
        /// `MACHINE KEY`.
        #[arg(long, value_name = "FILE", conflicts_with = "machine")]
        roster: Option<PathBuf>,
    },
    /// Print the public key this machine's relay signs with (the seed of
    /// --creds, or the key kept next to the bridge directory, made now if
    /// there is none yet), for the team's roster.
    Key {
        /// The machine's credentials, when the relay is given --creds.
        #[arg(long, env = "BRIDGE_RELAY_CREDS", value_name = "FILE")]
        creds: Option<PathBuf>,
    },
}

/// Settings that every relay of a team, and the admin, must agree on.
#[derive(clap::Args, Clone)]
struct TeamArgs {
    /// The team's subject prefix: the machines of one team share it.
    #[arg(
        long,
        env = "BRIDGE_RELAY_PREFIX",
        default_value = "bridge",
        value_name = "PREFIX"
    )]
    prefix: String,
    /// Seconds a machine's sessions stay listed elsewhere after its relay
    /// last refreshed them. Over 300, so that they show as stale first.
    #[arg(
        long,
        env = "BRIDGE_RELAY_PRESENCE_TTL",
        default_value_t = 600,
        value_name = "SECONDS"
    )]
    presence_ttl: u64,
    /// Hours the server holds messages for a machine whose relay is not
    /// connected; older ones are dropped by the server.
    #[arg(
        long,
        env = "BRIDGE_RELAY_HOLD_HOURS",
        default_value_t = 168,
        value_name = "HOURS"
    )]
    hold_hours: u64,
    /// How many servers of a cluster keep each stream and the bucket
    /// [default: 3 on a cluster, else 1].
    #[arg(long, env = "BRIDGE_RELAY_REPLICAS", value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..=5))]
    replicas: Option<u8>,
}

impl TeamArgs {
    fn layout(&self) -> Result<Layout> {
        check_prefix(&self.prefix)?;
        if self.presence_ttl < 10 {
            bail!("--presence-ttl must be at least 10 seconds");
        }
        Ok(Layout {
            prefix: self.prefix.clone(),
            hold_hours: self.hold_hours,
            presence_ttl: self.presence_ttl,
            replicas: self.replicas.map_or(1, usize::from),
        })
    }
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// The NATS server, for example nats://relay.example:4222 or
    /// tls://relay.example:4222 (several separated by commas). Required.
    #[arg(long, env = "BRIDGE_RELAY_SERVER", value_name = "URL")]
    server: Option<String>,
    /// This machine's name on the relay: 1 to 32 characters of a-z, 0-9
    /// and `-` [default: the host name, lowercased].
    #[arg(long, env = "BRIDGE_RELAY_MACHINE", value_name = "NAME")]
    machine: Option<String>,
    /// The machine's credentials: a `.creds` file (a user JWT and its seed)
    /// or a file holding an nkey seed (`SU...`).
    #[arg(long, env = "BRIDGE_RELAY_CREDS", value_name = "FILE")]
    creds: Option<PathBuf>,
    /// Trust this CA certificate (PEM) for the server's certificate, and
    /// require TLS.
    #[arg(long, env = "BRIDGE_RELAY_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    #[command(flatten)]
    team: TeamArgs,
}

/// For the SessionStart hook: when `BRIDGE_RELAY_SERVER` is set, starts
/// `bridge-host relay` in the background for this bridge directory, unless
/// one already holds it. The relay takes its settings from the same
/// `BRIDGE_RELAY_*` variables, outlives the session, and logs to
/// `relay.log` in the bridge directory. Two hooks starting at once start
/// two processes, of which the lock keeps one.
pub fn start_if_configured(global: &Config) -> Result<()> {
    match std::env::var("BRIDGE_RELAY_SERVER") {
        Ok(server) if !server.trim().is_empty() => {}
        _ => return Ok(()),
    }
    let bridge_dir = bridge_dir(global)?;
    std::fs::create_dir_all(&bridge_dir)
        .with_context(|| format!("cannot create {}", bridge_dir.display()))?;
    if let Ok(file) = std::fs::File::open(bridge_dir.join("relay.lock"))
        && matches!(
            file.try_lock_shared(),
            Err(std::fs::TryLockError::WouldBlock)
        )
    {
        return Ok(());
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(bridge_dir.join("relay.log"))
        .context("cannot open relay.log")?;
    let exe = std::env::current_exe().context("cannot find bridge-host itself")?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("--bridge-dir")
        .arg(&bridge_dir)
        .arg("relay")
        .current_dir(&bridge_dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    crate::process::detach(&mut command);
    command.spawn().context("cannot start bridge-host relay")?;
    Ok(())
}

/// Runs the relay until SIGTERM or SIGINT, or one of its subcommands.
pub fn run(global: &Config, args: RelayArgs) -> Result<ExitCode> {
    let args = match args.command {
        None => args.run,
        Some(RelayCommand::Keygen { out }) => {
            keys::keygen(&out)?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(RelayCommand::Trust {
            machine,
            key,
            roster,
        }) => {
            let bridge_dir = bridge_dir(global)?;
            match (roster, machine, key) {
                (Some(roster), _, _) => keys::trust_roster(&bridge_dir, &roster)?,
                (None, Some(machine), Some(key)) => keys::trust(&bridge_dir, &machine, key.trim())?,
                _ => bail!("name a machine and its key, or --roster FILE"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some(RelayCommand::Key { creds }) => {
            keys::show(creds.as_deref(), &bridge_dir(global)?)?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(RelayCommand::Admin {
            server,
            creds,
            tls_ca,
            machines,
            team,
        }) => {
            let layout = team.layout()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the admin's runtime")?;
            runtime.block_on(async {
                let creds = creds.as_deref().map(keys::read_creds).transpose()?;
                let client =
                    connect(&server, creds.as_ref(), tls_ca.as_deref(), "admin", false).await?;
                admin::run(client, layout, team.replicas.map(usize::from), &machines).await
            })?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the relay's runtime")?;
    let ended = runtime.block_on(serve(global.clone(), args));
    runtime.shutdown_timeout(Duration::from_secs(2));
    ended
}

/// Prints one line of the relay's log on standard error.
fn log(line: impl AsRef<str>) {
    eprintln!("bridge-host relay: {}", line.as_ref());
}

/// The default machine name: the host name, lowercased, with anything but
/// a-z, 0-9 and `-` turned into `-` (the guest checks the result).
fn host_name() -> String {
    #[cfg(unix)]
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    #[cfg(not(unix))]
    let name = std::env::var("COMPUTERNAME").unwrap_or_default();
    let name: String = name
        .split('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(32)
        .collect();
    name.trim_matches('-').to_string()
}

/// A subject prefix: one or more tokens of a-z, 0-9 and `-`.
fn check_prefix(prefix: &str) -> Result<()> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        bail!(
            "the prefix {prefix:?} is not 1 to 64 characters of a-z, 0-9 and `-`; pass one with \
             --prefix, for example --prefix team-a"
        );
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::Duration;

    use crate::verbs::tests::guest_limits;

    #[test]
    fn the_default_machine_name_is_the_kernels_host_name_up_to_the_first_dot() {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let first = kernel
            .trim()
            .split('.')
            .next()
            .unwrap()
            .to_ascii_lowercase();
        let name = super::host_name();
        assert!(!name.is_empty());
        if first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && first.len() <= 32
        {
            assert_eq!(name, first.trim_matches('-'));
        } else {
            assert!(
                name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                "{name}"
            );
        }
    }

    /// The relay's own sizes and waits, checked against the guest's limits
    /// rather than copied from them.
    #[test]
    fn the_stream_holds_the_guests_largest_message_and_a_publish_ends_within_a_lease() {
        let limits = guest_limits();
        assert!(
            super::admin::MAX_MESSAGE_BYTES as u64 >= limits.max_message_file_bytes,
            "the stream's largest message ({} bytes) is smaller than the guest's ({} bytes)",
            super::admin::MAX_MESSAGE_BYTES,
            limits.max_message_file_bytes
        );
        assert!(
            super::PUBLISH_ACK_WAIT < Duration::from_secs(limits.claim_lease_seconds.into()),
            "a publish may wait past the guest's claim lease"
        );
    }
}
