//! The relay's fault harness: two machines, each with its own bridge
//! directory and its own relay inside its own network namespace, joined to
//! one nats-server (JetStream, file storage) by veth links. While four
//! sessions send and four listen across the machines:
//!
//! - relays are killed with SIGKILL at random instants and started again
//!   (at least 100 times);
//! - the server is killed and started again on its store, once;
//! - machine `b`'s link is cut for 30 s, then healed.
//!
//! Every message is counted by its ID where it is taken: the harness
//! prints how many were sent, delivered, lost and duplicated, and exits 1
//! unless 0 were lost and 0 duplicated.
//!
//! ```sh
//! cargo test --test relay_faults            # 10,000 messages
//! cargo test --test relay_faults -- --quick # 1,000, 20 kills, 10 s cut
//! ```
//!
//! It needs root (for `ip netns`) and nats-server (on PATH or
//! `NATS_SERVER_BIN`). Without them it fails under `CI=true` and skips
//! elsewhere, saying so.

#[allow(dead_code)]
#[path = "../bridge/util.rs"]
mod util;

#[allow(dead_code)]
#[path = "../bridge/nats.rs"]
mod nats;

use std::collections::HashMap;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nats::{Machine, Server, wait_until};
use util::parse_listen;

struct Profile {
    messages: usize,
    kills: usize,
    partition: Duration,
}

/// One network namespace with a veth link to the root namespace.
struct Netns {
    name: String,
    host_side: String,
    /// The link's root-side address, where the server listens.
    root_address: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// A third octet for a 10.77.<n>.0/24 link that no interface here uses,
/// from `from` on: a run that was killed leaves its namespaces and links
/// behind, and a second link on the same subnet would take the first's
/// route, so that nothing could connect.
fn free_subnet(from: u8) -> Option<u8> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .ok()?;
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    (from..=250).find(|n| !used.contains(&format!(" 10.77.{n}.")))
}

impl Netns {
    /// Namespace `sbr-<tag>-<pid>`, linked 10.77.<n>.1 (root side) to
    /// 10.77.<n>.2 (inside).
    fn create(tag: &str, n: u8) -> Option<Netns> {
        let pid = std::process::id() % 10000;
        let name = format!("sbr-{tag}-{pid}");
        let host_side = format!("sbrh{tag}{pid}");
        let inside = format!("sbrn{tag}{pid}");
        let ok = ip(&["netns", "add", &name])
            && ip(&[
                "link", "add", &host_side, "type", "veth", "peer", "name", &inside,
            ])
            && ip(&["link", "set", &inside, "netns", &name])
            && ip(&["addr", "add", &format!("10.77.{n}.1/24"), "dev", &host_side])
            && ip(&["link", "set", &host_side, "up"])
            && ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("10.77.{n}.2/24"),
                "dev",
                &inside,
            ])
            && ip(&["-n", &name, "link", "set", &inside, "up"])
            && ip(&["-n", &name, "link", "set", "lo", "up"])
            && ip(&[
                "-n",
                &name,
                "route",
                "add",
                "default",
                "via",
                &format!("10.77.{n}.1"),
            ]);
        let netns = Netns {
            name,
            host_side,
            root_address: format!("10.77.{n}.1"),
        };
        ok.then_some(netns)
    }

    fn cut(&self) {
        assert!(ip(&["link", "set", &self.host_side, "down"]));
    }

    fn heal(&self) {
        assert!(ip(&["link", "set", &self.host_side, "up"]));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["link", "del", &self.host_side]);
        ip(&["netns", "del", &self.name]);
    }
}

fn main() -> ExitCode {
    let quick = std::env::args().any(|a| a == "--quick");
    let profile = if quick {
        Profile {
            messages: 1_000,
            kills: 20,
            partition: Duration::from_secs(10),
        }
    } else {
        Profile {
            messages: 10_000,
            kills: 100,
            partition: Duration::from_secs(30),
        }
    };
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let Some(bin) = nats::server_bin("relay faults") else {
        return ExitCode::SUCCESS;
    };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !util::on_path("ip") {
        assert!(!ci, "the relay fault harness needs root and `ip` under CI");
        eprintln!("skipped: the relay fault harness needs root and `ip` (network namespaces)");
        return ExitCode::SUCCESS;
    }
    let subnet_a = free_subnet(71);
    let ns_a = subnet_a.and_then(|n| Netns::create("a", n));
    let ns_b = subnet_a
        .and_then(|n| free_subnet(n + 1))
        .and_then(|n| Netns::create("b", n));
    let (Some(ns_a), Some(ns_b)) = (ns_a, ns_b) else {
        assert!(!ci, "cannot create network namespaces");
        eprintln!("skipped: cannot create network namespaces here");
        return ExitCode::SUCCESS;
    };
    match run(&bin, &profile, &ns_a, &ns_b) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("relay faults: FAILED: {why}");
            ExitCode::from(1)
        }
    }
}

fn run(bin: &std::path::Path, profile: &Profile, ns_a: &Netns, ns_b: &Netns) -> Result<(), String> {
    // The server listens on a's link's root-side address only; b reaches
    // it over its own link, which is the one cut.
    let mut server = Server::start_on(bin, &ns_a.root_address, "");
    let url_a = format!("nats://{}:{}", ns_a.root_address, server.port);
    let url_b = url_a.clone();
    let mut a = Machine::new("a");
    let mut b = Machine::new("b");
    nats::introduce(&[&a, &b]);
    a.wrapper = vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        ns_a.name.clone(),
    ];
    b.wrapper = vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        ns_b.name.clone(),
    ];
    a.start_relay(&url_a, &[]);
    b.start_relay(&url_b, &[]);
    a.wait_connected();
    b.wait_connected();
    let sessions_a = [a.session("app-1"), a.session("app-2")];
    let sessions_b = [b.session("lib-1"), b.session("lib-2")];
    for (project, _) in &sessions_a {
        for (_, id) in &sessions_b {
            a.wait_for_peer(project, id, "b");
        }
    }
    for (project, _) in &sessions_b {
        for (_, id) in &sessions_a {
            b.wait_for_peer(project, id, "a");
        }
    }
    let a = Arc::new(Mutex::new(a));
    let b = Arc::new(Mutex::new(b));
    let start = Instant::now();
    let sending = Arc::new(AtomicBool::new(true));
    let listening = Arc::new(AtomicBool::new(true));
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let taken: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let per_sender = profile.messages / 4;
    let mut threads = Vec::new();

    // Four senders: each session sends to one session of the other machine.
    let pairs = [
        (a.clone(), sessions_a[0].clone(), sessions_b[0].1.clone()),
        (a.clone(), sessions_a[1].clone(), sessions_b[1].1.clone()),
        (b.clone(), sessions_b[0].clone(), sessions_a[0].1.clone()),
        (b.clone(), sessions_b[1].clone(), sessions_a[1].1.clone()),
    ];
    for (machine, (project, _), to) in pairs.clone() {
        let sent = sent.clone();
        let world_cmd = move |n: usize| {
            let m = machine.lock().unwrap();
            m.world
                .cmd(&project)
                .args(["run", "send", &to, "query", &format!("n{n}")])
        };
        threads.push(thread::spawn(move || {
            for n in 0..per_sender {
                // `spawn`, not `output`: that one lists the bridge
                // directory for its failure message, every time.
                let out = world_cmd(n).spawn().wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "a send failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                sent.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&out.stdout).trim().to_string());
            }
        }));
    }
    // Four listeners, one per session, counting what each takes.
    let mut listeners = Vec::new();
    for (machine, (project, _)) in [
        (a.clone(), sessions_a[0].clone()),
        (a.clone(), sessions_a[1].clone()),
        (b.clone(), sessions_b[0].clone()),
        (b.clone(), sessions_b[1].clone()),
    ] {
        let (taken, listening) = (taken.clone(), listening.clone());
        listeners.push(thread::spawn(move || {
            while listening.load(Ordering::Acquire) {
                let cmd = {
                    let m = machine.lock().unwrap();
                    m.world
                        .cmd(&project)
                        .args(["run", "listen", "--timeout", "2"])
                };
                let out = cmd.spawn().wait_with_output().unwrap();
                if out.status.success() {
                    let (fields, _) = parse_listen(&String::from_utf8_lossy(&out.stdout));
                    *taken
                        .lock()
                        .unwrap()
                        .entry(fields["MESSAGE_ID"].clone())
                        .or_default() += 1;
                }
            }
        }));
    }
    // Faults: kills at random instants, one server restart, one cut.
    let kills = Arc::new(AtomicUsize::new(0));
    let faults = {
        let (a, b, kills, sending) = (a.clone(), b.clone(), kills.clone(), sending.clone());
        let (url_a, url_b) = (url_a.clone(), url_b.clone());
        let target = profile.kills;
        thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(17);
            while kills.load(Ordering::Acquire) < target || sending.load(Ordering::Acquire) {
                thread::sleep(Duration::from_millis(rng.u64(100..700)));
                if kills.load(Ordering::Acquire) >= target && !sending.load(Ordering::Acquire) {
                    break;
                }
                let (machine, url) = if rng.bool() {
                    (&a, &url_a)
                } else {
                    (&b, &url_b)
                };
                let mut m = machine.lock().unwrap();
                m.kill_relay();
                m.start_relay(url, &[]);
                kills.fetch_add(1, Ordering::AcqRel);
            }
        })
    };
    // The server restart and the partition, a third and two thirds in.
    let third = Duration::from_secs(8);
    thread::sleep(third);
    server.restart();
    eprintln!("relay faults: server restarted at {:?}", start.elapsed());
    thread::sleep(third);
    ns_b.cut();
    eprintln!("relay faults: b cut off at {:?}", start.elapsed());
    thread::sleep(profile.partition);
    ns_b.heal();
    eprintln!("relay faults: b healed at {:?}", start.elapsed());
    for thread in threads {
        thread.join().map_err(|_| "a sender panicked".to_string())?;
    }
    sending.store(false, Ordering::Release);
    faults
        .join()
        .map_err(|_| "the fault thread panicked".to_string())?;
    let total = sent.lock().unwrap().len();
    let all = wait_until(Duration::from_secs(300), || {
        taken.lock().unwrap().len() >= total
    });
    // A little longer, so that a late duplicate would be counted.
    thread::sleep(Duration::from_secs(5));
    listening.store(false, Ordering::Release);
    for listener in listeners {
        let _ = listener.join();
    }
    let taken = taken.lock().unwrap();
    let sent = sent.lock().unwrap();
    let lost = sent.iter().filter(|id| !taken.contains_key(*id)).count();
    let duplicated: usize = taken.values().map(|n| n.saturating_sub(1)).sum();
    let unknown = taken.keys().filter(|id| !sent.contains(id)).count();
    let elapsed = start.elapsed();
    println!(
        "relay faults: {total} sent, {} delivered, {lost} lost, {duplicated} duplicated, \
         {unknown} unknown; {} relay kills, 1 server restart, {} s partition; {:.0} s",
        taken.len(),
        kills.load(Ordering::Acquire),
        profile.partition.as_secs(),
        elapsed.as_secs_f64()
    );
    if !all {
        return Err(format!("{lost} of {total} messages never arrived"));
    }
    if lost != 0 || duplicated != 0 || unknown != 0 {
        return Err(format!(
            "{lost} lost, {duplicated} duplicated, {unknown} unknown"
        ));
    }
    if kills.load(Ordering::Acquire) < profile.kills {
        return Err("fewer kills than the profile asks".into());
    }
    Ok(())
}
