//! Figures of `bridge-host relay`: two "machines" (each its own bridge
//! directory and relay) joined by a nats-server on 127.0.0.1, found on
//! PATH or through `NATS_SERVER_BIN`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::{Side, Sizes, World, bridge_host, first_output_instant, four_by_four, proc_status_kb};

/// Each machine (name, bridge directory) trusts every other's relay key,
/// as a team does: `bridge-host relay key` on each, one roster, `bridge-host
/// relay trust --roster` on each. Nothing is trusted on first sight.
fn introduce(machines: &[(String, &Path)], roster_dir: &Path) {
    let run = |bridge: &Path, args: &[&str]| {
        let out = Command::new(bridge_host())
            .env_clear()
            .env("BRIDGE_DIR", bridge)
            .args(args)
            .output()
            .expect("bridge-host runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let roster: String = machines
        .iter()
        .map(|(name, bridge)| format!("{name} {}\n", run(bridge, &["relay", "key"])))
        .collect();
    let file = roster_dir.join("roster");
    std::fs::write(&file, roster).unwrap();
    for (_, bridge) in machines {
        run(
            bridge,
            &["relay", "trust", "--roster", file.to_str().unwrap()],
        );
    }
}

/// The nats-server binary, if there is one.
pub fn server_bin() -> Option<PathBuf> {
    std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join("nats-server"))
                .find(|p| p.is_file())
        })
}

/// A server, two machines and their relays, ended on drop.
pub struct Pair {
    server: Child,
    relays: Vec<Child>,
    _dir: tempfile::TempDir,
    /// Machine `a`: its session `a_id` in `a` sends.
    pub a: Arc<World>,
    /// Machine `b`: its session `b_id` in `b` listens.
    pub b: Arc<World>,
}

impl Pair {
    pub fn start(bin: &Path, cache: &Path) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("server.conf");
        std::fs::write(
            &config,
            format!(
                "listen: \"127.0.0.1:{port}\"\nmax_payload: 8MB\njetstream {{ store_dir: \"{}\" }}\n",
                dir.path().join("store").display()
            ),
        )
        .unwrap();
        let server = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "nats-server did not start"
            );
            thread::sleep(Duration::from_millis(50));
        }
        thread::sleep(Duration::from_millis(300));
        let a = Arc::new(World::new(cache));
        let b = Arc::new(World::new(cache));
        introduce(
            &[
                ("a".into(), a.bridge.as_path()),
                ("b".into(), b.bridge.as_path()),
            ],
            dir.path(),
        );
        let url = format!("nats://127.0.0.1:{port}");
        let relays = [("a", &a), ("b", &b)]
            .into_iter()
            .map(|(name, w)| {
                Command::new(bridge_host())
                    .env_clear()
                    .env("BRIDGE_DIR", &w.bridge)
                    .env("BRIDGE_CACHE_DIR", &w.cache)
                    .args(["relay", "--server", &url, "--machine", name])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("bridge-host relay starts")
            })
            .collect();
        let pair = Pair {
            server,
            relays,
            _dir: dir,
            a,
            b,
        };
        // Until a lists b's session as a session of machine b.
        let manifest = pair
            .a
            .bridge
            .join("sessions")
            .join(&pair.b.b_id)
            .join("manifest.json");
        let started = Instant::now();
        while !std::fs::read_to_string(&manifest).is_ok_and(|m| m.contains("\"machine\": \"b\"")) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the relays did not meet"
            );
            thread::sleep(Duration::from_millis(50));
        }
        pair
    }

    /// The relay of machine `a`.
    pub fn relay_pid(&self) -> u32 {
        self.relays[0].id()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for relay in &mut self.relays {
            let _ = relay.kill();
            let _ = relay.wait();
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// send on machine a returned → listen on machine b printed.
pub fn latency(sizes: &Sizes, bin: &Path, cache: &Path) -> Vec<Duration> {
    let pair = Pair::start(bin, cache);
    let (a, b) = (&pair.a, &pair.b);
    (0..sizes.latency)
        .map(|i| {
            let listener = b.spawn(&b.b, &["listen", "--timeout", "30"]);
            let printed = first_output_instant(listener);
            thread::sleep(Duration::from_millis(40));
            a.run(&a.a, &["send", &b.b_id, "query", &format!("ping {i}")]);
            let sent = Instant::now();
            printed
                .join()
                .expect("listener")
                .saturating_duration_since(sent)
        })
        .collect()
}

/// Four senders on machine a, four listeners on machine b, each a reused
/// guest instance in this process, so that the relays are what is timed.
pub fn throughput(sizes: &Sizes, bin: &Path, cache: &Path) -> (f64, String) {
    let pair = Pair::start(bin, cache);
    let sender = Side {
        bridge: pair.a.bridge.clone(),
        project: pair.a.a.clone(),
        session: pair.a.a_id.clone(),
    };
    let listener = Side {
        bridge: pair.b.bridge.clone(),
        project: pair.b.b.clone(),
        session: pair.b.b_id.clone(),
    };
    four_by_four(cache, &sender, &listener, sizes.in_process_messages / 8, 5)
}

/// RSS of a connected relay with nothing to carry, after 3 s.
pub fn idle_rss(bin: &Path, cache: &Path) -> u64 {
    let mut samples: Vec<u64> = (0..3)
        .map(|_| {
            let pair = Pair::start(bin, cache);
            thread::sleep(Duration::from_secs(3));
            proc_status_kb(pair.relay_pid(), "VmRSS:")
        })
        .collect();
    samples.sort_unstable();
    samples[1]
}

/// Starts a nats-server on 127.0.0.1 in `dir`; returns it and its URL.
fn start_server(bin: &Path, dir: &Path) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("server.conf");
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:{port}\"\nmax_payload: 8MB\njetstream {{ store_dir: \"{}\" }}\n",
            dir.join("store").display()
        ),
    )
    .unwrap();
    let server = Command::new(bin)
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nats-server did not start"
        );
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(300));
    (server, format!("nats://127.0.0.1:{port}"))
}

/// What [`scale`] measured.
pub struct Scale {
    /// From starting every relay until every machine listed every other
    /// machine's sessions.
    pub all_listed: Duration,
    /// send on one machine returned → listen on another printed, for
    /// random pairs.
    pub pair_latency: Vec<Duration>,
    /// RSS of each idle relay, in KiB, sorted.
    pub relay_rss: Vec<u64>,
    /// RSS of the server, in KiB, with every relay connected and idle.
    pub server_rss: u64,
}

/// `machines` bridge directories (two sessions each), each with its own
/// relay, on one nats-server.
pub fn scale(bin: &Path, cache: &Path, machines: usize, pairs: usize) -> Scale {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = start_server(bin, dir.path());
    let worlds: Vec<World> = (0..machines).map(|_| World::new(cache)).collect();
    let names: Vec<(String, &Path)> = worlds
        .iter()
        .enumerate()
        .map(|(i, w)| (format!("m{i}"), w.bridge.as_path()))
        .collect();
    introduce(&names, dir.path());
    let started = Instant::now();
    let mut relays: Vec<Child> = worlds
        .iter()
        .enumerate()
        .map(|(i, w)| {
            Command::new(bridge_host())
                .env_clear()
                .env("BRIDGE_DIR", &w.bridge)
                .env("BRIDGE_CACHE_DIR", &w.cache)
                .args(["relay", "--server", &url, "--machine", &format!("m{i}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("bridge-host relay starts")
        })
        .collect();
    // Each machine shows its own 2 sessions and 2 of every other machine.
    let want = 2 * machines;
    let listed = |w: &World| {
        std::fs::read_dir(w.bridge.join("sessions"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().join("manifest.json").is_file())
                    .count()
            })
            .unwrap_or(0)
    };
    while !worlds.iter().all(|w| listed(w) >= want) {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the machines did not all list each other"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let all_listed = started.elapsed();
    let mut rng = fastrand::Rng::with_seed(25);
    let pair_latency = (0..pairs)
        .map(|i| {
            let from = rng.usize(..machines);
            let to = (from + 1 + rng.usize(..machines - 1)) % machines;
            let (a, b) = (&worlds[from], &worlds[to]);
            let listener = b.spawn(&b.b, &["listen", "--timeout", "30"]);
            let printed = first_output_instant(listener);
            thread::sleep(Duration::from_millis(40));
            a.run(&a.a, &["send", &b.b_id, "query", &format!("ping {i}")]);
            let sent = Instant::now();
            printed
                .join()
                .expect("listener")
                .saturating_duration_since(sent)
        })
        .collect();
    thread::sleep(Duration::from_secs(3));
    let mut relay_rss: Vec<u64> = relays
        .iter()
        .map(|r| proc_status_kb(r.id(), "VmRSS:"))
        .collect();
    relay_rss.sort_unstable();
    let server_rss = proc_status_kb(server.id(), "VmRSS:");
    for relay in &mut relays {
        let _ = relay.kill();
        let _ = relay.wait();
    }
    let _ = server.kill();
    let _ = server.wait();
    Scale {
        all_listed,
        pair_latency,
        relay_rss,
        server_rss,
    }
}
