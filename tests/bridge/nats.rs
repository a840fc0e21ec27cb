//! A real `nats-server` with JetStream for the relay tests, and "machines":
//! each its own bridge directory with its own `bridge-host relay`.
//!
//! The server is found through `NATS_SERVER_BIN` or on PATH. When it is
//! missing, [`server_bin`] fails the test under `CI=true` and otherwise
//! skips it with a printed notice.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{BIN, World};

/// The nats-server binary, or None after printing why the test is skipped.
pub fn server_bin(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("nats-server"))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the relay test {test} cannot run under CI: nats-server is missing \
             (apt-get install nats-server, or set NATS_SERVER_BIN)"
        );
        eprintln!("skipped: the relay test {test} needs nats-server (or NATS_SERVER_BIN)");
    }
    found
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until `check` holds, up to `limit`; returns whether it did.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running nats-server with JetStream on file storage.
pub struct Server {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The server configuration, beyond `listen` and `jetstream`.
    extra: String,
    /// The address it listens on.
    pub host: String,
    child: Option<Child>,
    restarts: usize,
}

impl Server {
    pub fn start(bin: &Path, extra: &str) -> Server {
        Self::start_on(bin, "127.0.0.1", extra)
    }

    pub fn start_on(bin: &Path, host: &str, extra: &str) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("nats-test")
            .tempdir()
            .unwrap();
        let mut server = Server {
            bin: bin.to_path_buf(),
            dir,
            port: free_port(),
            extra: extra.to_string(),
            host: host.to_string(),
            child: None,
            restarts: 0,
        };
        server.launch();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.host, self.port)
    }

    fn launch(&mut self) {
        let config = self.dir.path().join("server.conf");
        let store = self.dir.path().join("store");
        std::fs::write(
            &config,
            format!(
                "listen: \"{}:{}\"\nmax_payload: 8MB\njetstream {{ store_dir: \"{}\" }}\n{}\n",
                self.host,
                self.port,
                store.display(),
                self.extra
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let addr = format!("{}:{}", self.host, self.port);
        let up = wait_until(Duration::from_secs(20), || {
            TcpStream::connect(&addr).is_ok()
                && std::fs::read_to_string(self.dir.path().join("server.log"))
                    .is_ok_and(|l| l.matches("Server is ready").count() >= self.launches())
        });
        assert!(up, "nats-server did not start:\n{}", self.log());
    }

    /// How many times this server was started.
    fn launches(&self) -> usize {
        self.restarts + 1
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Kills the server and starts it again on the same port and store.
    #[allow(dead_code)]
    pub fn restart(&mut self) {
        self.kill();
        self.restarts += 1;
        self.launch();
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One machine: a bridge directory and, while started, its relay.
pub struct Machine {
    pub world: World,
    pub name: String,
    relay: Option<Child>,
    /// Runs the relay through this command first (`ip netns exec NS`).
    pub wrapper: Vec<String>,
    /// More environment for the relay (`BRIDGE_CLAUDE_BIN` for away answers).
    pub env: Vec<(String, String)>,
}

impl Machine {
    pub fn new(name: &str) -> Machine {
        let world = World::new();
        std::fs::create_dir_all(&world.bridge).unwrap();
        Machine {
            world,
            name: name.to_string(),
            relay: None,
            wrapper: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn relay_log_path(&self) -> PathBuf {
        self.world.root.path().join("relay.log")
    }

    /// What the relay printed so far.
    pub fn relay_log(&self) -> String {
        std::fs::read_to_string(self.relay_log_path()).unwrap_or_default()
    }

    /// Starts `bridge-host relay --server URL --machine NAME ARGS...`.
    pub fn start_relay(&mut self, url: &str, args: &[&str]) {
        assert!(
            self.relay.is_none(),
            "the relay of {} runs already",
            self.name
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.relay_log_path())
            .unwrap();
        let mut command = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        command
            .env_clear()
            .env("HOME", self.world.home())
            .env("BRIDGE_DIR", &self.world.bridge)
            .env(
                "BRIDGE_CACHE_DIR",
                PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compile-cache"),
            )
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .envs(self.env.iter().cloned())
            .args(["relay", "--server", url, "--machine", &self.name])
            .args(args)
            .current_dir(self.world.root.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.relay = Some(command.spawn().expect("bridge-host relay starts"));
    }

    /// The public key this machine's relay signs with: `bridge-host relay
    /// key`, with `args` (`--creds FILE` when the relay is given one).
    pub fn relay_key(&self, args: &[&str]) -> String {
        let out = self
            .world
            .cmd(self.world.root.path())
            .args(["relay", "key"])
            .args(args)
            .ok();
        let key = out.trim().to_string();
        assert!(
            key.starts_with('U') && key.len() == 56,
            "not a key: {out:?}"
        );
        key
    }

    /// `bridge-host relay trust --roster FILE` here, for `roster`'s lines.
    pub fn trust_roster(&self, roster: &[(&str, String)]) {
        let file = self.world.root.path().join("roster");
        let text: String = roster
            .iter()
            .map(|(machine, key)| format!("{machine} {key}\n"))
            .collect();
        std::fs::write(&file, format!("# the team's relay keys\n{text}")).unwrap();
        self.world
            .cmd(self.world.root.path())
            .args(["relay", "trust", "--roster", file.to_str().unwrap()])
            .ok();
    }

    /// Waits until the relay says it is connected and set up.
    pub fn wait_connected(&self) {
        let ok = wait_until(Duration::from_secs(30), || {
            self.relay_log().contains("connected to the relay server")
        });
        assert!(
            ok,
            "the relay of {} did not connect:\n{}",
            self.name,
            self.relay_log()
        );
    }

    /// SIGKILL, as a crash.
    pub fn kill_relay(&mut self) {
        if let Some(mut child) = self.relay.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and the exit status.
    pub fn stop_relay(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.relay.take()?;
        // SAFETY: signalling a child this process started and still owns.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Whether the relay process still runs.
    pub fn relay_running(&mut self) -> bool {
        self.relay
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Registers a session for project `name` on this machine.
    pub fn session(&self, name: &str) -> (PathBuf, String) {
        let project = self.world.project(name);
        let id = self.world.start(&project);
        (project, id)
    }

    /// This machine's `peers --json` rows.
    pub fn peers(&self, project: &Path) -> Vec<Value> {
        let out = self
            .world
            .cmd(project)
            .args(["run", "peers", "--json"])
            .output()
            .0;
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["peers"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Waits until `id` is listed here as a session of machine `on`.
    pub fn wait_for_peer(&self, project: &Path, id: &str, on: &str) {
        let ok = wait_until(Duration::from_secs(30), || {
            self.peers(project)
                .iter()
                .any(|p| p["sessionId"] == id && p["machine"] == on)
        });
        assert!(
            ok,
            "{} never listed {id} of machine {on}; peers: {:?}\nrelay log:\n{}",
            self.name,
            self.peers(project),
            self.relay_log()
        );
    }
}

/// Each machine trusts every other's relay key, as a team does: each
/// machine's key from `bridge-host relay key` (with that machine's
/// arguments, `--creds FILE` when its relay has one), gathered in one
/// roster that every machine trusts with `bridge-host relay trust
/// --roster`. Nothing is trusted on first sight, so mail flows only after.
pub fn introduce_with(machines: &[(&Machine, &[&str])]) {
    let roster: Vec<(&str, String)> = machines
        .iter()
        .map(|(m, args)| (m.name.as_str(), m.relay_key(args)))
        .collect();
    for (machine, _) in machines {
        machine.trust_roster(&roster);
    }
}

/// [`introduce_with`] for relays without `--creds`.
pub fn introduce(machines: &[&Machine]) {
    let with: Vec<(&Machine, &[&str])> = machines.iter().map(|m| (*m, &[][..])).collect();
    introduce_with(&with);
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kill_relay();
    }
}

/// A cluster of nats-servers with JetStream, each on its own store, named
/// `n1`, `n2`, ... (their `server_name`, which stream info gives as a
/// stream's leader).
pub struct Cluster {
    pub nodes: Vec<Server>,
}

impl Cluster {
    pub fn start(bin: &Path, size: usize) -> Cluster {
        let routes: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let nodes = (0..size)
            .map(|i| {
                let others: Vec<String> = routes
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, port)| format!("nats://127.0.0.1:{port}"))
                    .collect();
                let extra = format!(
                    "server_name: n{}\ncluster {{\n  name: bridge\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
                    i + 1,
                    routes[i],
                    others.join(", ")
                );
                Server::start(bin, &extra)
            })
            .collect();
        Cluster { nodes }
    }

    /// Every node's URL, separated by commas, as `--server` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(Server::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}
