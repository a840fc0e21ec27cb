//! The relay's run: the connection, what it uses on the server, the folder
//! watches, and its three loops.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use async_nats::jetstream::{self, consumer::pull, kv, stream};
use tokio::sync::Notify;

use crate::invoke::{Config, GuestSource, Invocation, Place, bridge_dir};
use crate::sandbox::wit;
use crate::signals::Termination;

use super::admin::{self, Layout};
use super::inbound::inbound;
use super::outbound::outbound;
use super::presence::presence;
use super::state::{INBOUND_WRITERS, Relay, lock_bridge};
use super::{RETRY, RunArgs, host_name, keys, log};

/// Connects to `server` with `creds`. A relay (`relay`) names its reply
/// subjects after its machine, so that the server can keep other machines
/// from reading them, and keeps trying until the server answers.
pub(super) async fn connect(
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

pub(super) async fn serve(global: Config, args: RunArgs) -> Result<ExitCode> {
    // Listening from the start, and to the end: a SIGTERM that lands while
    // the relay loads, connects or prepares, or between that and the wait
    // for it below, is seen, never lost.
    let mut stop_signal = Termination::listen();
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
        signal = stop_signal.recv() => {
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
    let signal = stop_signal.recv().await;
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
pub(super) struct Watching {
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
    pub(super) fn set(&mut self, dirs: &[String], sessions: &str) -> bool {
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
