//! Every published figure in one run: `cargo bench` (or
//! `cargo bench -- --quick` for a shorter, noisier pass, and
//! `cargo bench -- --only TEXT` for the figures whose name contains TEXT).
//!
//! Whole-process figures spawn the real `bridge-host` binary built with the
//! bench profile; in-process figures use the host library with reused guest
//! instances. Each figure prints median, p90, p99 and max.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bridge_host::compile_cache;
use bridge_host::sandbox::{Guest, wit};

#[path = "bridge/first_run.rs"]
mod first_run;
#[path = "bridge/mcp.rs"]
mod mcp;
#[path = "bridge/relay.rs"]
mod relay;

const BIN: &str = env!("CARGO_BIN_EXE_bridge-host");

/// The `bridge-host` the whole-process figures run: `BENCH_BRIDGE_HOST`
/// names another build to compare with this one.
fn bridge_host() -> PathBuf {
    std::env::var_os("BENCH_BRIDGE_HOST").map_or_else(|| PathBuf::from(BIN), PathBuf::from)
}

/// Sample counts: (full, quick).
struct Sizes {
    send: usize,
    latency: usize,
    ask: usize,
    scan: usize,
    in_process_messages: usize,
    process_messages: usize,
    cold: usize,
    throughput_rounds: usize,
    idle_secs: u64,
    scaling: &'static [usize],
    one_pass: usize,
    left_by_original: &'static [usize],
    archived: usize,
}

const FULL: Sizes = Sizes {
    send: 300,
    latency: 200,
    ask: 150,
    scan: 40,
    in_process_messages: 8000,
    process_messages: 2000,
    cold: 15,
    throughput_rounds: 3,
    idle_secs: 10,
    scaling: &[0, 1_000, 10_000, 100_000],
    one_pass: 5,
    left_by_original: &[10_000, 100_000],
    archived: 100_000,
};

const QUICK: Sizes = Sizes {
    send: 40,
    latency: 30,
    ask: 20,
    scan: 10,
    in_process_messages: 2000,
    process_messages: 400,
    cold: 5,
    throughput_rounds: 1,
    idle_secs: 3,
    scaling: &[0, 1_000, 10_000],
    one_pass: 3,
    left_by_original: &[10_000],
    archived: 100_000,
};

/// A timed figure: its name, what measures it, and its target.
type TimedFigure<'a> = (String, Box<dyn Fn() -> Vec<Duration> + 'a>, &'static str);

fn main() {
    bridge_host::watch::install();
    let _removes_at_the_end = RemoveDeferred;
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only TEXT` runs just the figures whose name contains TEXT.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let want = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    let sizes = if quick { &QUICK } else { &FULL };
    let cache = tempfile::tempdir().expect("temp dir");
    let cache = cache.path();
    let bench_dir = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    println!(
        "session-bridge benchmarks: profile {}, {} CPUs, {} run, bridge directories under {} ({})",
        if cfg!(debug_assertions) {
            "debug (numbers not representative)"
        } else {
            "bench (release, opt-level 3)"
        },
        thread::available_parallelism().map_or(0, |n| n.get()),
        if quick { "quick" } else { "full" },
        bench_dir.display(),
        file_system_of(&bench_dir)
    );
    if std::env::var_os("BENCH_BRIDGE_HOST").is_some() {
        println!("whole-process figures run {}", bridge_host().display());
    }
    println!("\n| figure | n | median | p90 | p99 | max | target |\n|---|---|---|---|---|---|---|");

    let timed: Vec<TimedFigure> = vec![
        (
            "send, whole process".into(),
            Box::new(|| send_process(sizes, cache)),
            "≤ 5 ms",
        ),
        (
            "delivery latency, send returned → listen printed".into(),
            Box::new(|| delivery_latency(sizes, cache)),
            "p50 ≤ 5 ms, p99 ≤ 25 ms",
        ),
        (
            "ask round trip, automatic responder".into(),
            Box::new(|| ask_round_trip(sizes, cache)),
            "≤ 15 ms",
        ),
        (
            "MCP check_inbox round trip, warm server, nothing pending".into(),
            Box::new(|| mcp::check_inbox_round_trip(sizes, cache)),
            "< 5 ms",
        ),
        (
            "MCP ask round trip, automatic responder".into(),
            Box::new(|| mcp::ask_round_trip(sizes, cache)),
            "≤ 2 × the CLI's ask",
        ),
    ];
    let nats = relay::server_bin();
    let relay_latency = "relay: send on machine a returned → listen on machine b printed";
    if want(relay_latency) {
        match &nats {
            Some(bin) => row(
                relay_latency,
                &relay::latency(sizes, bin, cache),
                "p50 ≤ 10 ms, p99 ≤ 50 ms",
            ),
            None => println!("| {relay_latency} | skipped: no nats-server |"),
        }
    }
    let scaling = sizes.scaling.iter().map(|&read| {
        (
            format!("listen, one new among {read} read"),
            Box::new(move || listen_among_read(sizes, cache, read))
                as Box<dyn Fn() -> Vec<Duration>>,
            "≤ 10 ms, flat",
        )
    });
    let one_pass = sizes.left_by_original.iter().map(|&read| {
        (
            format!(
                "listen, one new behind {read} read files the original left in inbox/ (the one pass)"
            ),
            Box::new(move || listen_behind_originals_read(sizes, cache, read))
                as Box<dyn Fn() -> Vec<Duration>>,
            "",
        )
    });
    let history: Vec<TimedFigure> = [
        ("the newest 20", vec![]),
        (
            "--grep, no match (a full scan)",
            vec!["--grep", "no such words anywhere"],
        ),
        ("--peer, the oldest 20 to match", vec!["--peer", "zzzzzz"]),
    ]
    .into_iter()
    .map(|(what, args)| {
        (
            format!("history of {} archived messages, {what}", sizes.archived),
            Box::new(move || history_of_archive(sizes, cache, &args))
                as Box<dyn Fn() -> Vec<Duration>>,
            "< 50 ms",
        )
    })
    .collect();
    let mut medians: Vec<(String, Duration)> = Vec::new();
    for (name, measure, target) in timed
        .into_iter()
        .chain(scaling)
        .chain(one_pass)
        .chain(history)
    {
        if want(&name) {
            let samples = measure();
            row(&name, &samples, target);
            medians.push((name, median(&samples)));
        }
    }
    let median_of = |prefix: &str| {
        medians
            .iter()
            .find(|(name, _)| name.starts_with(prefix))
            .map(|(_, m)| m.as_secs_f64())
    };
    if let (Some(mcp), Some(cli)) = (median_of("MCP ask round trip"), median_of("ask round trip")) {
        println!(
            "\nMCP ask over CLI ask, medians: {:.2} ms / {:.2} ms = {:.2}× (target ≤ 2×)",
            mcp * 1000.0,
            cli * 1000.0,
            mcp / cli
        );
    }

    first_runs(sizes, &want);

    println!("\n| figure | value | target |\n|---|---|---|");
    let name = "throughput, 4 senders + 4 listeners, reused instances in one process";
    if want(name) {
        let rounds = throughput_rounds(sizes, || in_process_throughput(sizes, cache));
        println!("| {name} | {rounds} | ≥ 2,000 msg/s |");
    }
    let name = "relay throughput, 4 senders on machine a + 4 listeners on machine b";
    if want(name) {
        match &nats {
            Some(bin) => {
                let rounds = throughput_rounds(sizes, || relay::throughput(sizes, bin, cache));
                println!("| {name} | {rounds} | ≥ 1,000 msg/s |");
            }
            None => println!("| {name} | skipped: no nats-server | |"),
        }
    }
    let name = "RSS of a connected, idle relay (median of 3)";
    if want(name) {
        match &nats {
            Some(bin) => {
                let rss = relay::idle_rss(bin, cache);
                println!("| {name} | {:.1} MB | ≤ 30 MB |", rss as f64 / 1024.0);
            }
            None => println!("| {name} | skipped: no nats-server | |"),
        }
    }
    let name = "relay scale, 25 machines on one server";
    if want(name) {
        match &nats {
            Some(bin) => {
                let scale = relay::scale(bin, cache, 25, 20);
                let kb = |k: u64| format!("{:.1} MB", k as f64 / 1024.0);
                let rss = &scale.relay_rss;
                println!(
                    "| {name}: until every machine lists every other | {:.1} s | |",
                    scale.all_listed.as_secs_f64()
                );
                println!(
                    "| {name}: send → listen between random pairs (median of {}) | {:.2} ms (max {:.2} ms) | |",
                    scale.pair_latency.len(),
                    median(&scale.pair_latency).as_secs_f64() * 1000.0,
                    scale.pair_latency.iter().max().unwrap().as_secs_f64() * 1000.0
                );
                println!(
                    "| {name}: RSS of an idle relay (median, max of {}) | {}, {} | |",
                    rss.len(),
                    kb(rss[rss.len() / 2]),
                    kb(rss[rss.len() - 1])
                );
                println!("| {name}: RSS of the server | {} | |", kb(scale.server_rss));
            }
            None => println!("| {name} | skipped: no nats-server | |"),
        }
    }
    let name = "throughput, 4 sender + 4 listener bridge-host processes";
    if want(name) {
        let rounds = throughput_rounds(sizes, || process_throughput(sizes, cache));
        println!("| {name} | {rounds} | ≥ 300 msg/s |");
    }
    let name = "peak RSS of a blocked listen (median of 5)";
    if want(name) {
        let rss = blocked_listen_rss(cache);
        println!("| {name} | {:.1} MB | ≤ 30 MB |", rss as f64 / 1024.0);
    }
    let name = format!("CPU of an idle listen over {} s", sizes.idle_secs);
    if want(&name) {
        let cpu = idle_listen_cpu(sizes, cache);
        println!("| {name} | {cpu:.2} % | 0 % |");
    }
    let name = "RSS of a connected, idle MCP server (median of 5)";
    if want(name) {
        let rss = mcp::idle_rss(cache);
        println!("| {name} | {:.1} MB | < 30 MB |", rss as f64 / 1024.0);
    }
    let name = format!(
        "CPU of a connected, idle MCP server over {} s",
        sizes.idle_secs
    );
    if want(&name) {
        let cpu = mcp::idle_cpu(sizes, cache);
        println!("| {name} | {cpu:.2} % | 0 % |");
    }
}

// ---------------------------------------------------------------- figures

fn send_process(sizes: &Sizes, cache: &Path) -> Vec<Duration> {
    let w = World::new(cache);
    (0..sizes.send)
        .map(|i| {
            let started = Instant::now();
            w.run(&w.a, &["send", &w.b_id, "query", &format!("message {i}")]);
            started.elapsed()
        })
        .collect()
}

fn delivery_latency(sizes: &Sizes, cache: &Path) -> Vec<Duration> {
    let w = World::new(cache);
    (0..sizes.latency)
        .map(|i| {
            let listener = w.spawn(&w.b, &["listen", "--timeout", "30"]);
            let printed = first_output_instant(listener);
            // Let the listener reach its wait before the message is sent.
            thread::sleep(Duration::from_millis(40));
            w.run(&w.a, &["send", &w.b_id, "query", &format!("ping {i}")]);
            let sent = Instant::now();
            let printed = printed.join().expect("listener thread");
            printed.saturating_duration_since(sent)
        })
        .collect()
}

fn ask_round_trip(sizes: &Sizes, cache: &Path) -> Vec<Duration> {
    let w = Arc::new(World::new(cache));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let responder = automatic_responder(&w, &done);
    let samples = (0..sizes.ask)
        .map(|i| {
            let started = Instant::now();
            let out = w.output(&w.a, &["ask", &w.b_id, &format!("question {i}")]);
            assert!(out.starts_with("Reply from"), "{out}");
            started.elapsed()
        })
        .collect();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    responder.join().expect("responder");
    samples
}

/// Answers every query that reaches `w.b` with `bridge-host run listen`
/// and `reply`, until `done` is set.
fn automatic_responder(
    w: &Arc<World>,
    done: &Arc<std::sync::atomic::AtomicBool>,
) -> thread::JoinHandle<()> {
    let (w, done) = (w.clone(), done.clone());
    thread::spawn(move || {
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let out = w.output(&w.b, &["listen", "--timeout", "1"]);
            if let Some(id) = delivered_id(&out) {
                w.run(&w.b, &["reply", id, "automatic answer"]);
            }
        }
    })
}

fn listen_among_read(sizes: &Sizes, cache: &Path, read: usize) -> Vec<Duration> {
    let w = World::new(cache);
    let read_dir = w.bridge.join("sessions").join(&w.b_id).join("inbox/read");
    for i in 0..read {
        let id = format!("msg-r{i:011}");
        fs::write(
            read_dir.join(format!("{id}.json")),
            message_json(&id, &w.a_id, &w.b_id, "read"),
        )
        .expect("prefill");
    }
    let inbox = w.bridge.join("sessions").join(&w.b_id).join("inbox");
    (0..sizes.scan)
        .map(|i| {
            let id = format!("msg-n{i:011}");
            let temp = inbox.join(".bench-tmp");
            fs::write(&temp, message_json(&id, &w.a_id, &w.b_id, "pending")).unwrap();
            fs::rename(&temp, inbox.join(format!("{id}.json"))).unwrap();
            let started = Instant::now();
            let out = w.output(&w.b, &["listen", "--timeout", "0"]);
            let took = started.elapsed();
            assert!(out.contains(&id), "{out}");
            took
        })
        .collect()
}

/// `history` in a project whose archive holds `sizes.archived` messages:
/// one real exchange makes the archive, then its log is filled with copies
/// of the real line under new IDs. The `--peer` figure asks for a session
/// only the oldest 20 lines name, so it reads the whole log.
fn history_of_archive(sizes: &Sizes, cache: &Path, args: &[&str]) -> Vec<Duration> {
    let w = World::new(cache);
    w.run(&w.a, &["send", &w.b_id, "query", "the first question"]);
    let project = fs::canonicalize(&w.a).unwrap_or_else(|_| w.a.clone());
    let archive = fs::read_dir(w.bridge.join("archive"))
        .expect("the send made an archive")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|dir| {
            fs::read_to_string(dir.join("project"))
                .is_ok_and(|p| Path::new(p.trim()) == project || Path::new(p.trim()) == w.a)
        })
        .expect("the app's archive");
    let log = archive.join("log.jsonl");
    let first = fs::read_to_string(&log).unwrap();
    let first = first.lines().next().expect("the archived line").to_string();
    let real_id = &first[7..23];
    assert!(real_id.starts_with("msg-"), "{first}");
    let mut text = String::with_capacity(first.len() * sizes.archived);
    for i in 1..sizes.archived {
        let line = first.replace(real_id, &format!("msg-h{i:011}"));
        let line = if i <= 20 {
            line.replace(&format!("\"to\":\"{}\"", w.b_id), "\"to\":\"zzzzzz\"")
        } else {
            line
        };
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str(&first);
    text.push('\n');
    fs::write(&log, text).unwrap();
    let mut command = vec!["history"];
    command.extend_from_slice(args);
    (0..sizes.scan)
        .map(|_| {
            let started = Instant::now();
            let out = w.output(&w.a, &command);
            let took = started.elapsed();
            if args.is_empty() {
                assert!(out.contains("the first question"), "{out}");
            }
            took
        })
        .collect()
}

/// The first `listen` of a session whose inbox holds `read` messages the
/// original plugin took and left there, marked read, and one new message:
/// it moves them all into `read/` in one pass, then delivers. Between
/// samples the folders are swapped back, so each sample starts from the
/// same backlog without writing it again.
fn listen_behind_originals_read(sizes: &Sizes, cache: &Path, read: usize) -> Vec<Duration> {
    let w = World::new(cache);
    let session = w.bridge.join("sessions").join(&w.b_id);
    let inbox = session.join("inbox");
    for i in 0..read {
        let id = format!("msg-o{i:011}");
        fs::write(
            inbox.join(format!("{id}.json")),
            message_json(&id, &w.a_id, &w.b_id, "read"),
        )
        .expect("prefill");
    }
    (0..sizes.one_pass)
        .map(|i| {
            let id = format!("msg-p{i:011}");
            let temp = inbox.join(".bench-tmp");
            fs::write(&temp, message_json(&id, &w.a_id, &w.b_id, "pending")).unwrap();
            fs::rename(&temp, inbox.join(format!("{id}.json"))).unwrap();
            let started = Instant::now();
            let out = w.output(&w.b, &["listen", "--timeout", "0"]);
            let took = started.elapsed();
            assert!(out.contains(&id), "{out}");
            let read_dir = inbox.join("read");
            assert_eq!(fs::read_dir(&read_dir).unwrap().count(), read + 1);
            // Back as the original left it: the moved files become the
            // inbox again, beside its empty folders.
            fs::remove_file(read_dir.join(format!("{id}.json"))).unwrap();
            let next = session.join("inbox.next");
            fs::rename(&read_dir, &next).unwrap();
            for folder in ["claimed", "rejected"] {
                if inbox.join(folder).exists() {
                    fs::rename(inbox.join(folder), next.join(folder)).unwrap();
                }
            }
            fs::create_dir(next.join("read")).unwrap();
            fs::remove_dir(&inbox).unwrap();
            fs::rename(&next, &inbox).unwrap();
            took
        })
        .collect()
}

/// The first-run figures (see `first_run.rs`), for this build and, when
/// `BENCH_BASELINE_HOST` names one, for that build too, measured in turn in
/// the same run, with the ratios of their medians.
fn first_runs(sizes: &Sizes, want: &dyn Fn(&str) -> bool) {
    let mut hosts = vec![("this build", bridge_host())];
    if let Some(baseline) = std::env::var_os("BENCH_BASELINE_HOST") {
        hosts.push(("baseline", PathBuf::from(baseline)));
    }
    let guest = env!("BRIDGE_GUEST_WASM");
    let mut medians: Vec<(String, f64)> = Vec::new();
    let mut figure = |name: String, samples: Vec<Duration>, target: &str| {
        row(&name, &samples, target);
        medians.push((name, median(&samples).as_secs_f64() * 1000.0));
    };
    for (label, host) in &hosts {
        let name = |what: &str| format!("{what} [{label}]");
        if want(&name("first run")) {
            figure(
                name("first run, `run peers`, empty compile cache"),
                first_run::peers(sizes, host, true, &[]),
                "≤ 2 × warm",
            );
            figure(
                name("first run, `run peers`, warm compile cache"),
                first_run::peers(sizes, host, false, &[]),
                "",
            );
            figure(
                name("first run, `run peers --guest FILE`, empty compile cache"),
                first_run::peers(sizes, host, true, &["--guest", guest]),
                "",
            );
            figure(
                name("first run, `run peers --guest FILE`, warm compile cache"),
                first_run::peers(sizes, host, false, &["--guest", guest]),
                "",
            );
        }
        if want(&name("first run, mcp initialize")) {
            figure(
                name("first run, mcp initialize, spawn to answer, empty compile cache"),
                first_run::mcp_initialize(sizes, host, true),
                "≤ 50 ms",
            );
            figure(
                name("first run, mcp initialize, spawn to answer, warm compile cache"),
                first_run::mcp_initialize(sizes, host, false),
                "",
            );
        }
        if want(&name("first run, SessionStart hook")) {
            figure(
                name("first run, SessionStart hook, empty compile cache"),
                first_run::session_start_hook(sizes, host, true),
                "≤ 100 ms",
            );
            figure(
                name("first run, SessionStart hook, warm compile cache"),
                first_run::session_start_hook(sizes, host, false),
                "",
            );
        }
        let ping = name("mcp ping with 1,000 calls waiting");
        if want(&ping) {
            match first_run::ping_with_calls_waiting(sizes, host, Duration::from_secs(10)) {
                Some(samples) => figure(ping, samples, "≤ 100 ms"),
                None => println!("| {ping} | never answered within 10 s |  |  |  |  | ≤ 100 ms |"),
            }
        }
    }
    let of = |name: &str| medians.iter().find(|(n, _)| n == name).map(|(_, m)| *m);
    for (label, _) in &hosts {
        for (cold, warm) in [
            (
                "first run, `run peers`, empty compile cache",
                "first run, `run peers`, warm compile cache",
            ),
            (
                "first run, mcp initialize, spawn to answer, empty compile cache",
                "first run, mcp initialize, spawn to answer, warm compile cache",
            ),
            (
                "first run, SessionStart hook, empty compile cache",
                "first run, SessionStart hook, warm compile cache",
            ),
        ] {
            if let (Some(c), Some(w)) = (
                of(&format!("{cold} [{label}]")),
                of(&format!("{warm} [{label}]")),
            ) {
                println!(
                    "\n{cold} ÷ warm [{label}], medians: {c:.2} ms / {w:.2} ms = {:.2}×",
                    c / w
                );
            }
        }
    }
    if hosts.len() > 1 {
        for (name, this) in medians.iter().filter(|(n, _)| n.ends_with("[this build]")) {
            let base = name.replace("[this build]", "[baseline]");
            if let Some(before) = of(&base) {
                println!(
                    "\n{} this build ÷ baseline, medians: {this:.2} ms / {before:.2} ms = {:.2}×",
                    name.trim_end_matches(" [this build]"),
                    this / before
                );
            }
        }
    }
}

fn in_process_throughput(sizes: &Sizes, cache: &Path) -> (f64, String) {
    let w = World::new(cache);
    let sender = Side {
        bridge: w.bridge.clone(),
        project: w.a.clone(),
        session: w.a_id.clone(),
    };
    let listener = Side {
        bridge: w.bridge.clone(),
        project: w.b.clone(),
        session: w.b_id.clone(),
    };
    four_by_four(cache, &sender, &listener, sizes.in_process_messages / 4, 2)
}

/// One end of [`four_by_four`]: a session in its bridge directory.
struct Side {
    bridge: PathBuf,
    project: PathBuf,
    session: String,
}

/// Four senders (`sender`'s session, each a reused guest instance in this
/// process) send `per_sender` queries each to `listener`'s session, which
/// four listeners take until `listen_timeout` seconds pass without one.
/// Messages per second up to the last take, and the exactly-once account.
fn four_by_four(
    cache: &Path,
    sender: &Side,
    listener: &Side,
    per_sender: usize,
    listen_timeout: u32,
) -> (f64, String) {
    let (component, _) =
        compile_cache::load(&compile_cache::Wasm::embedded(), Some(cache)).unwrap();
    let tally = Arc::new(Tally::new());
    let mut threads = Vec::new();
    for _ in 0..4 {
        let component = component.clone();
        let (bridge, project, session, to) = (
            sender.bridge.clone(),
            sender.project.clone(),
            sender.session.clone(),
            listener.session.clone(),
        );
        threads.push(thread::spawn(move || {
            let mut guest = Guest::instantiate(&component, &bridge, &project).unwrap();
            let context = context(&project, &session);
            for i in 0..per_sender {
                let verb = wit::Verb::Send(wit::SendRequest {
                    to: to.clone(),
                    kind: wit::MessageKind::Query,
                    content: format!("message {i}"),
                    in_reply_to: None,
                });
                guest
                    .run(&context, &verb)
                    .unwrap()
                    .map_err(|f| format!("{:?}", f.error))
                    .unwrap();
            }
        }));
    }
    for _ in 0..4 {
        let (component, tally) = (component.clone(), tally.clone());
        let (bridge, project, session) = (
            listener.bridge.clone(),
            listener.project.clone(),
            listener.session.clone(),
        );
        threads.push(thread::spawn(move || {
            let mut guest = Guest::instantiate(&component, &bridge, &project).unwrap();
            let context = context(&project, &session);
            let listen = wit::Verb::Listen(wit::ListenRequest {
                timeout_seconds: Some(listen_timeout),
            });
            while let Ok(report) = guest.run(&context, &listen).unwrap() {
                let wit::Outcome::Delivered(delivery) = report.outcome else {
                    panic!("listen returned something else");
                };
                guest
                    .commit_delivery(&context, &delivery.ticket)
                    .unwrap()
                    .unwrap();
                tally.record(delivery.message.id);
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    tally.finish(per_sender * 4)
}

fn process_throughput(sizes: &Sizes, cache: &Path) -> (f64, String) {
    let w = Arc::new(World::new(cache));
    let per_sender = sizes.process_messages / 4;
    let tally = Arc::new(Tally::new());
    let mut threads = Vec::new();
    for s in 0..4 {
        let w = w.clone();
        threads.push(thread::spawn(move || {
            for i in 0..per_sender {
                w.run(&w.a, &["send", &w.b_id, "query", &format!("m{s}-{i}")]);
            }
        }));
    }
    for _ in 0..4 {
        let (w, tally) = (w.clone(), tally.clone());
        threads.push(thread::spawn(move || {
            loop {
                let out = w.output(&w.b, &["listen", "--timeout", "3"]);
                let Some(id) = delivered_id(&out) else {
                    break;
                };
                tally.record(id.to_string());
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    tally.finish(per_sender * 4)
}

fn blocked_listen_rss(cache: &Path) -> u64 {
    let w = World::new(cache);
    let mut peaks: Vec<u64> = (0..5)
        .map(|_| {
            let mut child = w.spawn(&w.b, &["listen", "--timeout", "10"]);
            thread::sleep(Duration::from_millis(300));
            let peak = proc_status_kb(child.id(), "VmHWM:");
            child.kill().unwrap();
            child.wait().unwrap();
            peak
        })
        .collect();
    peaks.sort();
    peaks[2]
}

fn idle_listen_cpu(sizes: &Sizes, cache: &Path) -> f64 {
    let w = World::new(cache);
    let mut child = w.spawn(&w.b, &["listen"]);
    thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(child.id());
    thread::sleep(Duration::from_secs(sizes.idle_secs));
    let after = cpu_ticks(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    // SAFETY: sysconf has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (after - before) as f64 / ticks_per_sec / sizes.idle_secs as f64 * 100.0
}

// ---------------------------------------------------------------- helpers

/// Two registered sessions, `a` and `b`, in a fresh bridge directory.
struct World {
    root: Option<tempfile::TempDir>,
    bridge: PathBuf,
    cache: PathBuf,
    a: PathBuf,
    b: PathBuf,
    a_id: String,
    b_id: String,
}

impl World {
    fn new(cache: &Path) -> Self {
        let root = bench_tempdir();
        let bridge = root.path().join("bridge");
        let a = root.path().join("app");
        let b = root.path().join("library");
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        let mut world = World {
            bridge,
            cache: cache.to_path_buf(),
            a,
            b,
            a_id: String::new(),
            b_id: String::new(),
            root: Some(root),
        };
        world.a_id = world
            .output(&world.a.clone(), &["start"])
            .trim()
            .to_string();
        world.b_id = world
            .output(&world.b.clone(), &["start"])
            .trim()
            .to_string();
        world
    }

    fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(bridge_host());
        command
            .env_clear()
            .env("BRIDGE_DIR", &self.bridge)
            .env("BRIDGE_CACHE_DIR", &self.cache)
            .current_dir(cwd)
            .arg("run")
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        command
    }

    fn run(&self, cwd: &Path, args: &[&str]) {
        let status = self
            .command(cwd, args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "bridge-host run {args:?} failed");
    }

    fn output(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.command(cwd, args).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    fn spawn(&self, cwd: &Path, args: &[&str]) -> Child {
        self.command(cwd, args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

fn context(project: &Path, session: &str) -> wit::InvocationContext {
    wit::InvocationContext {
        session: Some(session.to_string()),
        agent_session: None,
        project_dir: project.to_str().unwrap().to_string(),
        working_dir: project.to_str().unwrap().to_string(),
        format: wit::OutputFormat::Text,
        settings: Vec::new(),
        bridge_dir: String::new(),
        caller: wit::Caller::Terminal,
        agent_process: None,
        withheld: Vec::new(),
        retention: None,
        client: None,
    }
}

/// The instant `child` first writes to stdout, read on a thread.
fn first_output_instant(mut child: Child) -> thread::JoinHandle<Instant> {
    thread::spawn(move || {
        let mut stdout = child.stdout.take().unwrap();
        let mut byte = [0u8; 1];
        stdout
            .read_exact(&mut byte)
            .expect("listener printed nothing");
        let at = Instant::now();
        let mut rest = Vec::new();
        let _ = stdout.read_to_end(&mut rest);
        child.wait().unwrap();
        at
    })
}

fn message_json(id: &str, from: &str, to: &str, status: &str) -> String {
    format!(
        "{{\n  \"id\": \"{id}\",\n  \"from\": \"{from}\",\n  \"to\": \"{to}\",\n  \"type\": \"query\",\n  \
         \"timestamp\": \"2026-11-23T10:06:00Z\",\n  \"status\": \"{status}\",\n  \"content\": \"benchmark\",\n  \
         \"inReplyTo\": null,\n  \"metadata\": {{\n    \"urgency\": \"normal\",\n    \"fromProject\": \"app\"\n  }}\n}}\n"
    )
}

/// Deliveries counted by message ID, and when the last one happened.
struct Tally {
    started: Instant,
    delivered: Mutex<(HashMap<String, usize>, Instant)>,
}

impl Tally {
    fn new() -> Self {
        let started = Instant::now();
        Tally {
            started,
            delivered: Mutex::new((HashMap::new(), started)),
        }
    }

    fn record(&self, id: String) {
        let mut delivered = self.delivered.lock().unwrap();
        *delivered.0.entry(id).or_default() += 1;
        delivered.1 = Instant::now();
    }

    /// Messages per second up to the last delivery, and the exactly-once
    /// account: sent, duplicated, lost.
    fn finish(&self, expected: usize) -> (f64, String) {
        let (delivered, last) = &*self.delivered.lock().unwrap();
        let duplicates = delivered.values().filter(|&&n| n > 1).count();
        let lost = expected.saturating_sub(delivered.len());
        (
            expected as f64 / last.duration_since(self.started).as_secs_f64(),
            format!("{expected} sent, {duplicates} duplicated, {lost} lost"),
        )
    }
}

/// Runs a throughput figure `sizes.throughput_rounds` times: the median
/// rate, every run's rate, and the exactly-once account of each run.
fn throughput_rounds(sizes: &Sizes, measure: impl Fn() -> (f64, String)) -> String {
    let runs: Vec<(f64, String)> = (0..sizes.throughput_rounds).map(|_| measure()).collect();
    let mut rates: Vec<f64> = runs.iter().map(|(rate, _)| *rate).collect();
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let mut accounts: Vec<&str> = runs.iter().map(|(_, exact)| exact.as_str()).collect();
    accounts.dedup();
    let each: Vec<String> = runs.iter().map(|(rate, _)| format!("{rate:.0}")).collect();
    format!(
        "{median:.0} msg/s (median of {} runs: {}; {} each)",
        runs.len(),
        each.join(", "),
        accounts.join(" / ")
    )
}

fn proc_status_kb(pid: u32, key: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces) in parens.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 overall, 12 and 13 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn row(name: &str, samples: &[Duration], target: &str) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let pick = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    println!(
        "| {name} | {} | {} | {} | {} | {} | {target} |",
        sorted.len(),
        ms(pick(0.5)),
        ms(pick(0.9)),
        ms(pick(0.99)),
        ms(*sorted.last().unwrap())
    );
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(root) = self.root.take() {
            defer_removal(root);
        }
    }
}

/// Directories whose removal waits for the end of the run.
///
/// On an ext4 file system without a journal, as on this project's machine,
/// the inode allocator skips inodes freed in the last minute or so (up to
/// six while their inode table block is still dirty), checking each one
/// (`recently_deleted`). The scaling row alone writes 100,000 files;
/// removing each figure's directory as it ended made every later figure
/// pay for that scan on each new file, a cost of the bench's own clean-up
/// rather than of the bridge.
static DEFERRED: Mutex<Vec<tempfile::TempDir>> = Mutex::new(Vec::new());

fn defer_removal(dir: tempfile::TempDir) {
    DEFERRED.lock().unwrap_or_else(|p| p.into_inner()).push(dir);
}

/// Removes the deferred directories when `main` ends, panics included.
struct RemoveDeferred;

impl Drop for RemoveDeferred {
    fn drop(&mut self) {
        DEFERRED.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A fresh directory for one figure's bridge: under `BENCH_DIR` when set
/// (to measure another file system, say a tmpfs), else the system's
/// temporary directory.
fn bench_tempdir() -> tempfile::TempDir {
    match std::env::var_os("BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).expect("a temp dir under BENCH_DIR"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

/// The type of the file system `dir` is on, from the longest matching mount
/// point in /proc/mounts: the figures that create files depend on it.
fn file_system_of(dir: &Path) -> String {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let point = fields.nth(1)?;
            let kind = fields.next()?;
            dir.starts_with(point).then_some((point.len(), kind))
        })
        .max_by_key(|&(len, _)| len)
        .map_or("file system unknown".into(), |(_, kind)| kind.to_string())
}

/// The ID of the message a `listen` printed, from its `<peer-message id=...>` line.
fn delivered_id(out: &str) -> Option<&str> {
    out.lines()
        .find(|l| l.starts_with("<peer-message "))?
        .split(' ')
        .find_map(|w| w.strip_prefix("id="))
}
