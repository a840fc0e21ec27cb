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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use async_nats::jetstream::{self, consumer::pull, kv, stream};
use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::invoke::{Config, GuestSource, Invocation, Place, bridge_dir, describe};
use crate::sandbox::wit;
use crate::signals::termination;

mod admin;
mod keys;

use admin::{Layout, MAX_MESSAGE_BYTES};

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
    // Its own session: the hook's process group ends with the hook.
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe and touches nothing else.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
    }
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
    let name = {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname writes at
        // most that many bytes.
        let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if ok {
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            String::new()
        }
    };
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

/// How many batches of received mail are written at once, each by its own
/// guest instance. While one batch waits for its flush to disk, the next is
/// written, and the two flushes are one for the disk.
const INBOUND_WRITERS: usize = 2;

/// The guest instances: one carries mail out and keeps presence, the
/// others write mail in, so none waits for another.
struct Relay {
    machine: String,
    prefix: String,
    layout: Layout,
    /// Signs what this relay publishes.
    key: nkeys::KeyPair,
    out: Mutex<Invocation>,
    inbound: Vec<Mutex<Invocation>>,
    turns: Arc<Turns>,
    /// When each line logged once per [`SAY_AGAIN`] was last logged.
    said: Mutex<HashMap<String, Instant>>,
    /// The stream sequences of the messages waiting for a trusted key,
    /// each with when it was last offered.
    waiting: Mutex<HashMap<u64, Instant>>,
    stopping: AtomicBool,
    stop: Notify,
}

impl Relay {
    fn mail_stream(&self) -> String {
        self.layout.mail_stream(&self.machine)
    }

    fn bucket(&self) -> String {
        self.layout.bucket()
    }

    /// Runs `verb` on one instance, off the async threads.
    async fn call(self: &Arc<Self>, inbound: bool, verb: wit::Verb) -> Result<wit::Report> {
        self.call_in_turn(inbound, verb, None).await
    }

    /// Runs `verb` on one instance, off the async threads; with a `turn`,
    /// only once it is that turn, which the verb passes on when it asks
    /// for its writes to be flushed.
    async fn call_in_turn(
        self: &Arc<Self>,
        inbound: bool,
        verb: wit::Verb,
        turn: Option<Arc<Turn>>,
    ) -> Result<wit::Report> {
        let relay = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(turn) = &turn {
                turn.wait();
            }
            let mut invocation = if inbound {
                // A free writer, else the first.
                relay
                    .inbound
                    .iter()
                    .find_map(|lock| match lock.try_lock() {
                        Ok(guard) => Some(guard),
                        Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
                        Err(std::sync::TryLockError::WouldBlock) => None,
                    })
                    .unwrap_or_else(|| relay.inbound[0].lock().unwrap_or_else(|e| e.into_inner()))
            } else {
                relay.out.lock().unwrap_or_else(|e| e.into_inner())
            };
            invocation.withhold_loose()?;
            invocation.guest.before_flush(turn.map(|turn| {
                let hook: bridge_host::sandbox::BeforeFlush = Box::new(move || turn.pass());
                hook
            }));
            let ran = invocation.run(&verb);
            invocation.guest.before_flush(None);
            match ran? {
                Ok(report) => {
                    for warning in &report.warnings {
                        log(format!("warning: {warning}"));
                    }
                    Ok(report)
                }
                Err(failure) => Err(anyhow!("{}", Invocation::failure_text(&failure))),
            }
        })
        .await
        .map_err(|e| anyhow!("the guest call failed: {e}"))?
    }

    /// Commits the claims on messages the server acknowledged.
    async fn commit(self: &Arc<Self>, tickets: Vec<wit::ClaimTicket>) {
        let relay = self.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut invocation = relay.out.lock().unwrap_or_else(|e| e.into_inner());
            let invocation = &mut *invocation;
            for ticket in tickets {
                match invocation
                    .guest
                    .commit_delivery(&invocation.context, &ticket)
                {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => log(format!(
                        "{} was relayed, but its claim here could not be committed: {}",
                        ticket.message_id,
                        describe(&err)
                    )),
                    Err(err) => log(format!(
                        "{} was relayed, but its claim here could not be committed: {err:#}",
                        ticket.message_id
                    )),
                }
            }
        })
        .await;
        if let Err(err) = done {
            log(format!("committing relayed messages failed: {err}"));
        }
    }

    /// Logs `line` unless it was logged less than [`SAY_AGAIN`] ago: for
    /// what comes back each time a waiting message is offered again.
    fn log_now_and_then(&self, line: String) {
        let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        said.retain(|_, at| now.duration_since(*at) < SAY_AGAIN);
        if let std::collections::hash_map::Entry::Vacant(slot) = said.entry(line) {
            log(slot.key());
            slot.insert(now);
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Sleeps for `wait`, or less when the relay is stopping.
    async fn pause(&self, wait: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.stop.notified() => {}
        }
    }
}

/// The order in which batches of received mail are written: each batch
/// waits for its turn before its first write, and passes the turn on once
/// all its messages are written (when it asks for the flush, or when it
/// ends), so that the next is written while this one's flush goes on, and
/// a listener never sees a later message before an earlier one.
#[derive(Default)]
struct Turns {
    state: Mutex<TurnState>,
    changed: Condvar,
}

#[derive(Default)]
struct TurnState {
    /// The turn that may write now.
    next: u64,
    /// Turns passed ahead of `next` (a batch dropped unwritten).
    passed: BTreeSet<u64>,
}

impl Turns {
    fn lock(&self) -> std::sync::MutexGuard<'_, TurnState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pass(&self, turn: u64) {
        let mut state = self.lock();
        if turn < state.next {
            return;
        }
        state.passed.insert(turn);
        loop {
            let next = state.next;
            if !state.passed.remove(&next) {
                break;
            }
            state.next += 1;
        }
        self.changed.notify_all();
    }
}

/// One batch's turn; passed on at the latest when dropped.
struct Turn {
    turns: Arc<Turns>,
    number: u64,
}

impl Turn {
    /// Blocks until every earlier turn has passed.
    fn wait(&self) {
        let mut state = self.turns.lock();
        while state.next < self.number {
            state = self
                .turns
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn pass(&self) {
        self.turns.pass(self.number);
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.pass();
    }
}

/// Holds the one relay of a bridge directory: a lock on `relay.lock`,
/// released when the process ends however it ends.
fn lock_bridge(bridge_dir: &std::path::Path, machine: &str) -> Result<std::fs::File> {
    use std::io::Write;
    let path = bridge_dir.join("relay.lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "another relay already serves {} ({}); one relay per bridge directory",
                bridge_dir.display(),
                holder.trim()
            );
        }
        Err(std::fs::TryLockError::Error(err)) => {
            return Err(err).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    file.set_len(0)?;
    write!(file, "pid {} machine {machine}", std::process::id())?;
    Ok(file)
}

/// Connects to `server` with `creds`. A relay (`relay`) names its reply
/// subjects after its machine, so that the server can keep other machines
/// from reading them, and keeps trying until the server answers.
async fn connect(
    server: &str,
    creds: Option<&keys::Creds>,
    tls_ca: Option<&std::path::Path>,
    name: &str,
    relay: bool,
) -> Result<async_nats::Client> {
    // The client reports a refused certificate as a bare I/O error.
    let hint = if tls_ca.is_some() {
        " (with --tls-ca: check that the server's certificate is signed by that CA and \
         names the host given in --server)"
    } else {
        ""
    };
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("bridge-host relay {name}"))
        .connection_timeout(Duration::from_secs(5));
    if relay {
        options = options
            // Replies to this machine's requests come on its own inbox
            // subjects, which the server can keep other machines from reading.
            .custom_inbox_prefix(format!("_INBOX_{name}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis((250 * attempt.min(8) as u64).max(100))
            })
            .event_callback(move |event| async move {
                match event {
                    async_nats::Event::Connected => log("connected to the relay server"),
                    async_nats::Event::Disconnected => log(
                        "disconnected from the relay server; messages wait here and are sent \
                         when it is back",
                    ),
                    async_nats::Event::ServerError(err) => {
                        let text = err.to_string();
                        let why = if text.to_lowercase().contains("authorization") {
                            " (the server does not accept this machine's key: check that its \
                             public key is in the server's configuration, with this machine's \
                             name)"
                        } else {
                            ""
                        };
                        log(format!("the server says: {text}{why}"))
                    }
                    async_nats::Event::ClientError(err) => {
                        log(format!("client error: {err}{hint}"))
                    }
                    other => log(format!("{other}")),
                }
            });
    }
    match creds {
        Some(keys::Creds::Jwt { text, .. }) => {
            options = options
                .credentials(text)
                .context("the .creds file's JWT is not valid")?;
        }
        Some(keys::Creds::Seed(seed)) => options = options.nkey(seed.clone()),
        None => {}
    }
    if let Some(ca) = tls_ca {
        if !ca.is_file() {
            bail!("the CA certificate {} does not exist", ca.display());
        }
        options = options
            .add_root_certificates(ca.to_path_buf())
            .require_tls(true);
    }
    let servers: Vec<async_nats::ServerAddr> = server
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| anyhow!("--server {server:?}: {e}"))?;
    options
        .connect(servers)
        .await
        .map_err(|e| anyhow!("cannot connect to {server}: {e}{hint}"))
}

async fn serve(global: Config, args: RunArgs) -> Result<ExitCode> {
    let Some(server) = args.server.clone() else {
        bail!(
            "no relay server given: pass --server URL (or set BRIDGE_RELAY_SERVER), for example \
             --server tls://relay.example:4222"
        );
    };
    let layout = args.team.layout()?;
    let creds = args.creds.as_deref().map(keys::read_creds).transpose()?;
    let machine = args.machine.clone().unwrap_or_else(host_name);
    let bridge_dir = bridge_dir(&global)?;
    let (component, _) = GuestSource::from_global(&global)?.load(&global)?;
    let open = || -> Result<Invocation> {
        let mut place = Place::of_process(&global)?;
        place.caller = wit::Caller::Relay;
        Invocation::with_component(&global, place, &component, &bridge_dir)
    };
    let key = keys::signing_key(creds.as_ref(), &bridge_dir)?;
    let relay = Arc::new(Relay {
        machine: machine.clone(),
        prefix: args.team.prefix.clone(),
        layout: layout.clone(),
        key,
        out: Mutex::new(open()?),
        inbound: (0..INBOUND_WRITERS)
            .map(|_| open().map(Mutex::new))
            .collect::<Result<_>>()?,
        turns: Arc::default(),
        said: Mutex::default(),
        waiting: Mutex::default(),
        stopping: AtomicBool::new(false),
        stop: Notify::new(),
    });
    // The guest checks the machine name before anything is connected.
    relay
        .call(
            false,
            wit::Verb::RelayPresence(wit::RelayRequest {
                machine: machine.clone(),
            }),
        )
        .await?;
    let _lock = lock_bridge(&bridge_dir, &machine)?;
    let client = connect(
        &server,
        creds.as_ref(),
        args.tls_ca.as_deref(),
        &machine,
        true,
    )
    .await?;
    log(format!(
        "machine {machine}, bridge directory {}, server {}; signs as {}",
        bridge_dir.display(),
        server,
        relay.key.public_key()
    ));
    let js = jetstream::new(client.clone());
    let wake = Arc::new(Notify::new());
    let setup = tokio::select! {
        setup = prepare(&relay, &js, &client, &layout, args.team.replicas) => Some(setup),
        signal = termination() => {
            log(format!("{signal}; stopping"));
            None
        }
    };
    let Some((consumer, bucket, presence_feed)) = setup else {
        return Ok(ExitCode::SUCCESS);
    };
    let sessions_changed = Arc::new(Notify::new());
    let watch = Watching::new(&bridge_dir, wake.clone(), sessions_changed.clone())?;
    let tasks = vec![
        tokio::spawn(outbound(
            relay.clone(),
            js.clone(),
            client.clone(),
            wake.clone(),
            watch,
        )),
        tokio::spawn(inbound(relay.clone(), consumer, bucket.clone())),
        tokio::spawn(presence(
            relay.clone(),
            js.clone(),
            bucket,
            presence_feed,
            sessions_changed.clone(),
            layout.presence_ttl,
        )),
    ];
    let signal = termination().await;
    log(format!("{signal}; stopping"));
    relay.stopping.store(true, Ordering::Release);
    relay.stop.notify_waiters();
    wake.notify_waiters();
    sessions_changed.notify_waiters();
    // One deadline for all three: each waited up to 8 s in turn before, so
    // a relay whose tasks were all busy took 24 s to stop, past the 10 to
    // 15 s a service manager or a test waits before it kills.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    for task in tasks {
        let _ = tokio::time::timeout_at(deadline, task).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    Ok(ExitCode::SUCCESS)
}

/// What the relay uses on the server: its mail stream's consumer, the
/// presence bucket, and its own consumer on the bucket.
type Setup = (
    jetstream::consumer::Consumer<pull::Config>,
    kv::Store,
    (stream::Stream, jetstream::consumer::Consumer<pull::Config>),
);

/// Opens this machine's mail stream and consumer, the presence bucket and
/// this machine's consumer on it, retrying until the server answers. The
/// team's admin makes them (`bridge-host relay admin`); on a server that
/// lets machines make streams, the relay makes what is missing itself.
async fn prepare(
    relay: &Arc<Relay>,
    js: &jetstream::Context,
    client: &async_nats::Client,
    layout: &Layout,
    replicas: Option<u8>,
) -> Setup {
    let mut layout = layout.clone();
    loop {
        // The server's first INFO says whether it is a cluster.
        if client.connection_state() != async_nats::connection::State::Connected {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        layout.replicas = replicas.map_or_else(|| admin::default_replicas(client), usize::from);
        match try_prepare(relay, js, &layout, replicas.is_some()).await {
            Ok(done) => return done,
            Err(err) => {
                log(format!(
                    "cannot set up on the server yet: {err:#}; trying again"
                ));
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn try_prepare(
    relay: &Arc<Relay>,
    js: &jetstream::Context,
    layout: &Layout,
    update: bool,
) -> Result<Setup> {
    let machine = &relay.machine;
    let admin_hint = |what: &str| {
        format!(
            "{what} does not exist, and this machine may not create it: the team's admin \
             creates it with `bridge-host relay admin --machine {machine}` (see docs/relay.md)"
        )
    };
    let ensure = async |config: stream::Config| -> Result<stream::Stream> {
        let name = config.name.clone();
        let exists = js.get_stream(&name).await;
        match exists {
            Ok(stream) if !update => Ok(stream),
            Ok(stream) => {
                // --replicas given: bring the stream to it, when allowed.
                if let Err(err) = admin::ensure_stream(js, config).await {
                    log(format!(
                        "the stream {name} keeps its settings: {err:#} (the team's admin \
                         changes them with `bridge-host relay admin`)"
                    ));
                }
                Ok(stream)
            }
            Err(_) => match admin::ensure_stream(js, config).await {
                Ok(_) => Ok(js.get_stream(&name).await?),
                Err(err) => Err(anyhow!(
                    "{} ({err:#})",
                    admin_hint(&format!("the stream {name}"))
                )),
            },
        }
    };
    let name = relay.mail_stream();
    let mail = ensure(layout.mail_config(machine)).await?;
    let consumer = match mail.get_consumer(admin::MAIL_CONSUMER).await {
        Ok(consumer) => consumer,
        Err(_) => mail
            .create_consumer(Layout::mail_consumer_config())
            .await
            .map_err(|err| {
                anyhow!(
                    "{} ({err})",
                    admin_hint(&format!("the consumer {} on {name}", admin::MAIL_CONSUMER))
                )
            })?,
    };
    let bucket_stream = ensure(layout.bucket_config()).await?;
    let bucket_name = relay.bucket();
    let bucket = js
        .get_key_value(&bucket_name)
        .await
        .with_context(|| format!("cannot open the bucket {bucket_name}"))?;
    let feed_name = layout.presence_consumer(machine);
    let feed = match bucket_stream.get_consumer(&feed_name).await {
        Ok(consumer) => consumer,
        Err(_) => bucket_stream
            .create_consumer(layout.presence_consumer_config(machine))
            .await
            .map_err(|err| {
                anyhow!(
                    "{} ({err})",
                    admin_hint(&format!(
                        "the consumer {feed_name} on {}",
                        layout.bucket_stream()
                    ))
                )
            })?,
    };
    Ok((consumer, bucket, (bucket_stream, feed)))
}

/// Threads that wait on the folders the guest names and wake the outbound
/// loop when one changes.
struct Watching {
    root: Arc<cap_std::fs::Dir>,
    bridge_dir: PathBuf,
    wake: Arc<Notify>,
    /// Woken as well by a change in the sessions folder.
    sessions_changed: Arc<Notify>,
    threads: HashMap<String, Arc<AtomicBool>>,
}

impl Watching {
    fn new(
        bridge_dir: &std::path::Path,
        wake: Arc<Notify>,
        sessions_changed: Arc<Notify>,
    ) -> Result<Self> {
        let root = cap_std::fs::Dir::open_ambient_dir(bridge_dir, cap_std::ambient_authority())
            .with_context(|| format!("cannot open {}", bridge_dir.display()))?;
        Ok(Watching {
            root: Arc::new(root),
            bridge_dir: bridge_dir.to_path_buf(),
            wake,
            sessions_changed,
            threads: HashMap::new(),
        })
    }

    /// Watches exactly `dirs` from now on; `sessions` among them wakes the
    /// presence loop too.
    /// Returns whether it started watching a folder it did not watch
    /// before: a change there may have come before the watch.
    fn set(&mut self, dirs: &[String], sessions: &str) -> bool {
        let mut added = false;
        let wanted: HashSet<&String> = dirs.iter().collect();
        self.threads.retain(|dir, stop| {
            let keep = wanted.contains(dir);
            if !keep {
                stop.store(true, Ordering::Release);
            }
            keep
        });
        for dir in dirs {
            if self.threads.contains_key(dir) {
                continue;
            }
            // The folder itself, opened through the bridge directory's
            // handle, with its path for the platforms that watch by path.
            let Ok(folder) = self.root.open_dir(dir) else {
                continue;
            };
            let Ok(mut watcher) =
                bridge_host::watch::DirWatcher::new(&folder, &self.bridge_dir.join(dir))
            else {
                continue;
            };
            let stop = Arc::new(AtomicBool::new(false));
            let (stopped, wake) = (stop.clone(), self.wake.clone());
            let also = (dir == sessions).then(|| self.sessions_changed.clone());
            let spawned = std::thread::Builder::new()
                .name("relay-watch".into())
                .spawn(move || {
                    while !stopped.load(Ordering::Acquire) {
                        if watcher.wait(Duration::from_millis(500)) {
                            wake.notify_one();
                            if let Some(also) = &also {
                                also.notify_one();
                            }
                        }
                    }
                });
            if spawned.is_ok() {
                self.threads.insert(dir.clone(), stop);
                added = true;
            }
        }
        added
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        for stop in self.threads.values() {
            stop.store(true, Ordering::Release);
        }
    }
}

/// Carries what waits for other machines: claims it through the guest,
/// publishes it with its message ID for deduplication, and commits each
/// claim once the server acknowledged it.
async fn outbound(
    relay: Arc<Relay>,
    js: jetstream::Context,
    client: async_nats::Client,
    wake: Arc<Notify>,
    mut watch: Watching,
) {
    let mut refused_machines: HashMap<String, Instant> = HashMap::new();
    while !relay.stopping() {
        if client.connection_state() != async_nats::connection::State::Connected {
            tokio::select! {
                _ = wake.notified() => {}
                _ = relay.pause(Duration::from_millis(250)) => {}
            }
            continue;
        }
        let verb = wit::Verb::RelayOutbound(wit::RelayRequest {
            machine: relay.machine.clone(),
        });
        let outgoing = match relay.call(false, verb).await {
            Ok(report) => match report.outcome {
                wit::Outcome::RelayOutgoing(outgoing) => outgoing,
                _ => {
                    log("the guest answered relay-outbound with another outcome");
                    relay.pause(RETRY).await;
                    continue;
                }
            },
            Err(err) => {
                log(format!("cannot look for messages to carry: {err:#}"));
                relay.pause(RETRY).await;
                continue;
            }
        };
        let watching_more = watch.set(&outgoing.watch, &outgoing.sessions);
        if outgoing.items.is_empty() {
            // A folder watched from now on (a sender's outbox, for its
            // sent copy): what changed there before the watch is seen by
            // looking again at once.
            if watching_more {
                continue;
            }
            // Lapsed claims (a publish that failed) return to an inbox
            // without a change to wake on: look again now and then.
            tokio::select! {
                _ = wake.notified() => {}
                _ = relay.pause(Duration::from_secs(3)) => {}
            }
            continue;
        }
        let n = outgoing.items.len();
        let mut pending = Vec::new();
        for item in outgoing.items {
            let subject = format!(
                "{}.mail.{}.{}",
                relay.prefix, item.to_machine, relay.machine
            );
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", item.message_id.as_str());
            match keys::sign(&relay.key, &item.to_machine, &relay.machine, &item.payload) {
                Ok((signer, signature)) => {
                    headers.insert("Bridge-Signer", signer.as_str());
                    headers.insert("Bridge-Signature", signature.as_str());
                }
                Err(err) => {
                    log(format!("cannot sign {}: {err:#}", item.message_id));
                    continue;
                }
            }
            match js
                .publish_with_headers(subject, headers, item.payload.clone().into())
                .await
            {
                Ok(ack) => pending.push((item, ack)),
                Err(err) => log(format!("cannot publish {}: {err}", item.message_id)),
            }
        }
        let mut acked = Vec::new();
        let mut failed = 0;
        for (item, ack) in pending {
            match tokio::time::timeout(PUBLISH_ACK_WAIT, ack).await {
                Ok(Ok(_)) => acked.push(item.ticket),
                Ok(Err(err)) => {
                    failed += 1;
                    let last = refused_machines.get(&item.to_machine);
                    if last.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                        refused_machines.insert(item.to_machine.clone(), Instant::now());
                        // No stream answered: it was never made, or the
                        // server holding it is down.
                        let why = match err.kind() {
                            jetstream::context::PublishErrorKind::StreamNotFound => format!(
                                "it waits here and is sent again. No stream for machine {} \
                                 answered: either the server that holds it is down (with more \
                                 replicas, another takes over), or it was never made (the \
                                 team's admin makes it with `bridge-host relay admin --machine \
                                 {}`)",
                                item.to_machine, item.to_machine
                            ),
                            _ => "it waits here and is sent again".to_string(),
                        };
                        log(format!(
                            "the server did not take {} for machine {}: {err}; {why}",
                            item.message_id, item.to_machine
                        ));
                    }
                }
                Err(_) => failed += 1,
            }
        }
        relay.commit(acked).await;
        // More may be waiting past what one look lists: look again at once
        // (an empty look waits for a change, above).
        if failed > 0 {
            relay.pause(Duration::from_millis(500)).await;
        } else if n < GATHER_BELOW {
            // A small batch under steady traffic: let a little more gather
            // first, since each pass costs the same however little it
            // carries. A message after a quiet spell goes at once (the
            // empty look above waits for it).
            relay.pause(GATHER).await;
        }
    }
}

/// Takes this machine's mail from the server in batches, has the guest
/// check and write it, and acknowledges each message only once the guest
/// has written it to disk (or refused it, or found it written before).
/// Batches are written in the order received (see [`Turns`]).
async fn inbound(
    relay: Arc<Relay>,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    bucket: kv::Store,
) {
    use futures_util::FutureExt;
    let mut writing = tokio::task::JoinSet::new();
    let mut turns = 0;
    // A message that did not fit the last batch: the next one starts with it.
    let mut carried: Option<jetstream::Message> = None;
    while !relay.stopping() {
        // A continuous pull: messages come as they are published.
        let stream = consumer
            .stream()
            .max_messages_per_batch(INBOUND_BATCH)
            .max_bytes_per_batch(INBOUND_BYTES)
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await;
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(err) => {
                log(format!("cannot fetch mail: {err}"));
                relay.pause(RETRY).await;
                continue;
            }
        };
        while !relay.stopping() {
            let first = match carried.take() {
                Some(message) => message,
                None => {
                    let next = tokio::select! {
                        next = stream.next() => next,
                        _ = relay.stop.notified() => None,
                    };
                    match next {
                        Some(Ok(message)) => message,
                        // Missed heartbeats and the like: the stream goes on.
                        Some(Err(err)) => {
                            log(format!("fetching mail: {err}"));
                            continue;
                        }
                        None => break,
                    }
                }
            };
            // With it, whatever else has already arrived, as one batch.
            let mut bytes = first.payload.len();
            let mut messages = vec![first];
            while messages.len() < INBOUND_BATCH && bytes < INBOUND_BYTES {
                match stream.next().now_or_never() {
                    Some(Some(Ok(message))) => {
                        bytes += message.payload.len();
                        if bytes > INBOUND_BYTES {
                            carried = Some(message);
                            break;
                        }
                        messages.push(message);
                    }
                    _ => break,
                }
            }
            // At most INBOUND_WRITERS batches at once: one must end before
            // another starts.
            while writing.len() >= INBOUND_WRITERS {
                writing.join_next().await;
            }
            let turn = Turn {
                turns: relay.turns.clone(),
                number: turns,
            };
            turns += 1;
            let (relay, bucket) = (relay.clone(), bucket.clone());
            writing.spawn(async move { deliver(&relay, &bucket, messages, turn).await });
        }
    }
    // What is being written is acknowledged before the relay stops.
    while writing.join_next().await.is_some() {}
}

/// The publishing machine, from a mail subject `P.mail.<to>.<from>`.
fn publisher(subject: &str) -> String {
    subject.rsplit('.').next().unwrap_or("").to_string()
}

/// Has the guest write one batch, in its turn, and settles each message.
/// A batch with a sender not known here yet is written by its second
/// offer, after that sender's presence is read from the bucket.
async fn deliver(
    relay: &Arc<Relay>,
    bucket: &kv::Store,
    messages: Vec<jetstream::Message>,
    turn: Turn,
) {
    let turn = Arc::new(turn);
    let offer = |messages: &[&jetstream::Message], last_offer: bool| {
        let verb = wit::Verb::RelayInbound(wit::RelayInboundRequest {
            machine: relay.machine.clone(),
            messages: messages
                .iter()
                .map(|m| {
                    let header = |name: &str| {
                        m.headers
                            .as_ref()
                            .and_then(|h| h.get(name))
                            .map(|v| v.as_str().to_string())
                            .unwrap_or_default()
                    };
                    wit::InboundMessage {
                        from_machine: publisher(m.subject.as_str()),
                        payload: m.payload.to_vec(),
                        signer: header("Bridge-Signer"),
                        signature: header("Bridge-Signature"),
                    }
                })
                .collect(),
            last_offer,
        });
        relay.call_in_turn(true, verb, Some(turn.clone()))
    };
    let all: Vec<&jetstream::Message> = messages.iter().collect();
    let Some(verdicts) = received(offer(&all, false).await, &all).await else {
        return;
    };
    let mut again = Vec::new();
    let mut unknown = Vec::new();
    for (message, verdict) in all.iter().zip(verdicts) {
        match verdict {
            wit::InboundVerdict::UnknownSender(sender) => {
                unknown.push((*message, sender));
                again.push(*message);
            }
            wit::InboundVerdict::Held(_) => again.push(*message),
            other => settle(relay, message, &other).await,
        }
    }
    if again.is_empty() {
        return;
    }
    // A sender this machine has not seen yet: its presence may not have
    // arrived. Read it from the bucket, show it, and offer the rest of the
    // batch once more.
    let mut remote = Vec::new();
    for (message, sender) in &unknown {
        let machine = publisher(message.subject.as_str());
        let prefix = format!("$KV.{}.", relay.bucket());
        let key = format!("{machine}.{sender}");
        if let Ok(Some(entry)) = last_entry(&bucket.stream, &prefix, &key).await {
            remote.push(remote_entry(
                machine,
                sender.clone(),
                Some(&entry.headers),
                &entry.payload,
            ));
        }
    }
    if !remote.is_empty() {
        materialize(relay, true, remote, false, Vec::new()).await;
    }
    let Some(verdicts) = received(offer(&again, true).await, &again).await else {
        return;
    };
    for (message, verdict) in again.iter().zip(verdicts) {
        settle(relay, message, &verdict).await;
    }
}

/// The guest's verdicts on `messages`, one each; None when it could not
/// write them yet, and then each will be delivered again.
async fn received(
    report: Result<wit::Report>,
    messages: &[&jetstream::Message],
) -> Option<Vec<wit::InboundVerdict>> {
    let problem = match report {
        Ok(wit::Report {
            outcome: wit::Outcome::RelayReceived(verdicts),
            ..
        }) if verdicts.len() == messages.len() => return Some(verdicts),
        Ok(_) => "the guest did not answer with one verdict per message".to_string(),
        Err(err) => format!("{err:#}"),
    };
    log(format!(
        "cannot write {} received messages yet: {problem}",
        messages.len()
    ));
    for message in messages {
        let _ = message.ack_with(jetstream::AckKind::Nak(Some(RETRY))).await;
    }
    None
}

/// `text` with its control characters escaped, for one log line: what a
/// refusal quotes may have come from the network.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// Acknowledges a message the guest dealt with, logging what is not a
/// plain delivery (never the content).
async fn settle(relay: &Relay, message: &jetstream::Message, verdict: &wit::InboundVerdict) {
    let from = publisher(message.subject.as_str());
    let sequence = message.info().ok().map(|info| info.stream_sequence);
    if !matches!(verdict, wit::InboundVerdict::Untrusted(_))
        && let Some(seq) = sequence
    {
        relay
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&seq);
    }
    match verdict {
        wit::InboundVerdict::Delivered(_) => {}
        wit::InboundVerdict::Duplicate(id) => log(format!(
            "{id} from machine {from} was received before; dropped"
        )),
        wit::InboundVerdict::Refused(why) => log(format!(
            "refused a message from machine {from} ({} bytes): {}",
            message.payload.len(),
            printable(why)
        )),
        wit::InboundVerdict::UnknownSender(sender) => log(format!(
            "refused a message from machine {from}: unknown sender {sender}"
        )),
        // Signed by a key not trusted here yet: it stays on the server,
        // unacknowledged, and is offered again until the key is trusted
        // (or the stream's hold time passes).
        wit::InboundVerdict::Untrusted(why) => {
            let waits = {
                let mut waiting = relay.waiting.lock().unwrap_or_else(|e| e.into_inner());
                // One not offered again for a while is gone from the
                // stream (its hold time passed), or was taken elsewhere.
                let now = Instant::now();
                waiting.retain(|_, at| now.duration_since(*at) < UNTRUSTED_RETRY * 20);
                sequence.is_some_and(|seq| {
                    let room = waiting.contains_key(&seq) || waiting.len() < MAX_WAITING;
                    if room {
                        waiting.insert(seq, now);
                    }
                    room
                })
            };
            if waits {
                relay.log_now_and_then(printable(why));
                let _ = message
                    .ack_with(jetstream::AckKind::Nak(Some(UNTRUSTED_RETRY)))
                    .await;
                return;
            }
            log(format!(
                "dropped a message from machine {from} ({} bytes): {MAX_WAITING} messages from \
                 machines with no trusted key wait already. {}",
                message.payload.len(),
                printable(why)
            ));
            let _ = message.ack_with(jetstream::AckKind::Term).await;
            return;
        }
        // Held back on its last offer, which a guest should not do: it is
        // not acknowledged, so the server delivers it again.
        wit::InboundVerdict::Held(id) => {
            log(format!(
                "{id} from machine {from} was held back on its last offer; it comes again"
            ));
            let _ = message.ack_with(jetstream::AckKind::Nak(Some(RETRY))).await;
            return;
        }
    }
    if let Err(err) = message.ack().await {
        log(format!("cannot acknowledge a message from {from}: {err}"));
    }
}

async fn materialize(
    relay: &Arc<Relay>,
    inbound: bool,
    remote: Vec<wit::RemoteEntry>,
    complete: bool,
    gone: Vec<(String, String)>,
) {
    let verb = wit::Verb::RelayMaterialize(wit::RelayMaterializeRequest {
        machine: relay.machine.clone(),
        remote,
        complete,
        gone,
    });
    match relay.call(inbound, verb).await {
        Ok(report) => {
            for line in report.rendered.lines() {
                log(line);
            }
            // What is refused comes again with each pass over the bucket.
            if let wit::Outcome::RelayMaterialized(done) = &report.outcome {
                for why in &done.refused {
                    relay.log_now_and_then(printable(why));
                }
            }
        }
        Err(err) => log(format!(
            "cannot show the sessions of other machines: {err:#}"
        )),
    }
}

/// Publishes this machine's sessions to the presence bucket when they
/// change and at a third of the TTL, and shows other machines' sessions
/// here: each change as it comes (through this machine's consumer on the
/// bucket), and a full pass at the same pace, which is also what removes
/// the sessions of a machine whose entries expired.
async fn presence(
    relay: Arc<Relay>,
    js: jetstream::Context,
    bucket: kv::Store,
    (bucket_stream, feed): (stream::Stream, jetstream::consumer::Consumer<pull::Config>),
    wake: Arc<Notify>,
    ttl: u64,
) {
    let refresh = Duration::from_secs((ttl / 3).clamp(3, 60));
    let mut published: HashMap<String, Vec<u8>> = HashMap::new();
    let mut last_full = Instant::now() - refresh * 2;
    let mut changes = None;
    while !relay.stopping() {
        // The feed starts before the full pass reads the bucket, so that
        // nothing put in between is missed until the next pass.
        if changes.is_none() {
            changes = feed
                .stream()
                .heartbeat(Duration::from_secs(5))
                .messages()
                .await
                .ok();
            last_full = Instant::now() - refresh * 2;
        }
        let full = last_full.elapsed() >= refresh;
        publish_own(&relay, &js, &bucket, &mut published, full).await;
        if full {
            resync(&relay, &bucket_stream).await;
            last_full = Instant::now();
        }
        let change = async {
            match changes.as_mut() {
                Some(c) => c.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            entry = change => match entry {
                Some(Ok(message)) => {
                    apply(&relay, &message).await;
                    let _ = message.ack().await;
                }
                // Missed heartbeats and the like: the feed goes on.
                Some(Err(_)) => {}
                None => changes = None,
            },
            // A session started or stopped here (the outbound loop's
            // watch on `sessions/`), or a periodic pass.
            _ = wake.notified() => {
                // A new session's manifest is written just after its folder.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ = relay.pause(refresh.min(Duration::from_secs(5))) => {}
        }
    }
}

/// Puts the presence entry `manifest` of this machine's session `session`
/// under `key`, signed as mail is (`Bridge-Signer`, `Bridge-Signature`): a
/// put of the key-value bucket with two headers more, so that no machine
/// can show sessions under another's name.
async fn put_signed(
    relay: &Arc<Relay>,
    js: &jetstream::Context,
    key: &str,
    session: &str,
    manifest: &[u8],
) -> Result<()> {
    let (signer, signature) = keys::sign_presence(&relay.key, &relay.machine, session, manifest)?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Bridge-Signer", signer.as_str());
    headers.insert("Bridge-Signature", signature.as_str());
    let subject = format!("$KV.{}.{key}", relay.bucket());
    let ack = js
        .publish_with_headers(subject, headers, manifest.to_vec().into())
        .await?;
    tokio::time::timeout(PUBLISH_ACK_WAIT, ack)
        .await
        .map_err(|_| anyhow!("the server did not confirm it within {PUBLISH_ACK_WAIT:?}"))??;
    Ok(())
}

/// A presence entry read from the bucket, with its signature headers.
fn remote_entry(
    machine: String,
    session_id: String,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> wit::RemoteEntry {
    let header = |name: &str| {
        headers
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
            .unwrap_or_default()
    };
    wit::RemoteEntry {
        machine,
        session_id,
        payload: payload.to_vec(),
        signer: header("Bridge-Signer"),
        signature: header("Bridge-Signature"),
    }
}

async fn publish_own(
    relay: &Arc<Relay>,
    js: &jetstream::Context,
    bucket: &kv::Store,
    published: &mut HashMap<String, Vec<u8>>,
    refresh: bool,
) {
    let verb = wit::Verb::RelayPresence(wit::RelayRequest {
        machine: relay.machine.clone(),
    });
    let entries = match relay.call(false, verb).await {
        Ok(wit::Report {
            outcome: wit::Outcome::RelayPresence(entries),
            ..
        }) => entries,
        Ok(_) => return,
        Err(err) => {
            log(format!("cannot read this machine's sessions: {err:#}"));
            return;
        }
    };
    let mut now: HashSet<String> = HashSet::new();
    for entry in entries {
        now.insert(entry.session_id.clone());
        let same = published.get(&entry.session_id) == Some(&entry.payload);
        if same && !refresh {
            continue;
        }
        let key = format!("{}.{}", relay.machine, entry.session_id);
        match put_signed(relay, js, &key, &entry.session_id, &entry.payload).await {
            Ok(()) => {
                published.insert(entry.session_id, entry.payload);
            }
            Err(err) => log(format!("cannot publish the presence of {key}: {err:#}")),
        }
    }
    let ended: Vec<String> = published
        .keys()
        .filter(|id| !now.contains(*id))
        .cloned()
        .collect();
    for id in ended {
        let key = format!("{}.{id}", relay.machine);
        match bucket.delete(&key).await {
            Ok(()) => {
                published.remove(&id);
            }
            Err(err) => log(format!("cannot withdraw the presence of {key}: {err}")),
        }
    }
}

/// Splits a presence key `<machine>.<session>`.
fn split_key(key: &str) -> Option<(String, String)> {
    let (machine, session) = key.split_once('.')?;
    Some((machine.to_string(), session.to_string()))
}

/// One change read from the bucket: a put, or a delete or purge marker.
async fn apply(relay: &Arc<Relay>, message: &jetstream::Message) {
    let prefix = format!("$KV.{}.", relay.bucket());
    let Some(key) = message.subject.as_str().strip_prefix(&prefix) else {
        return;
    };
    let Some((machine, session)) = split_key(key) else {
        return;
    };
    if machine == relay.machine {
        return;
    }
    let removed = message
        .headers
        .as_ref()
        .and_then(|h| h.get("KV-Operation"))
        .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
    if removed {
        materialize(relay, false, Vec::new(), false, vec![(machine, session)]).await;
    } else {
        let remote = vec![remote_entry(
            machine,
            session,
            message.headers.as_ref(),
            &message.payload,
        )];
        materialize(relay, false, remote, false, Vec::new()).await;
    }
}

/// The last entry of presence key `key`, with its headers, when it is a
/// put (not a delete or purge marker); read by direct get, which a machine
/// may do.
async fn last_entry(
    bucket_stream: &stream::Stream,
    prefix: &str,
    key: &str,
) -> Result<Option<jetstream::message::StreamMessage>> {
    use async_nats::jetstream::stream::DirectGetErrorKind;
    match bucket_stream
        .direct_get_last_for_subject(format!("{prefix}{key}"))
        .await
    {
        Ok(message) => {
            let removed = message
                .headers
                .get("KV-Operation")
                .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
            Ok((!removed).then_some(message))
        }
        Err(err) if matches!(err.kind(), DirectGetErrorKind::NotFound) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Reads the whole bucket and shows exactly what it holds. The keys come
/// from the bucket stream's subjects (a stream info, which a machine may
/// ask for), not from a consumer, which a machine may not create.
async fn resync(relay: &Arc<Relay>, bucket_stream: &stream::Stream) {
    let prefix = format!("$KV.{}.", relay.bucket());
    let mut subjects = match bucket_stream.info_with_subjects(format!("{prefix}>")).await {
        Ok(subjects) => subjects,
        Err(err) => {
            log(format!("cannot list the presence bucket: {err}"));
            return;
        }
    };
    let mut keys = Vec::new();
    while let Some(next) = subjects.next().await {
        match next {
            Ok((subject, _)) => {
                if let Some(key) = subject.strip_prefix(&prefix) {
                    keys.push(key.to_string());
                }
            }
            Err(err) => {
                log(format!("cannot list the presence bucket: {err}"));
                return;
            }
        }
    }
    let mut remote = Vec::new();
    for key in keys {
        let Some((machine, session)) = split_key(&key) else {
            continue;
        };
        if machine == relay.machine {
            continue;
        }
        match last_entry(bucket_stream, &prefix, &key).await {
            Ok(Some(entry)) => remote.push(remote_entry(
                machine,
                session,
                Some(&entry.headers),
                &entry.payload,
            )),
            Ok(None) => {}
            // Unreadable now: a full pass must not remove what it could
            // not read, so this one stops here.
            Err(err) => {
                log(format!("cannot read the presence of {key}: {err}"));
                return;
            }
        }
    }
    materialize(relay, false, remote, true, Vec::new()).await;
}
