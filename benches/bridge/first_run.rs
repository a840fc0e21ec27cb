//! What a user's first run costs: a verb, `bridge-host mcp` and the
//! SessionStart hook, each started with a compile cache nothing has used,
//! beside the same with a warm cache; and whether the MCP server still
//! answers `ping` with a thousand calls waiting. Every figure spawns the
//! `bridge-host` it is given, so a baseline build can be measured side by
//! side with this one (`BENCH_BASELINE_HOST`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Sizes, bench_tempdir, defer_removal};

/// `host` run with only this world's bridge directory, HOME and cache.
fn command(host: &Path, root: &Path, cache: &Path) -> Command {
    let mut command = Command::new(host);
    command
        .env_clear()
        .env("HOME", root.join("home"))
        .env("BRIDGE_DIR", root.join("bridge"))
        .env("BRIDGE_CACHE_DIR", cache)
        .current_dir(root.join("project"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// A bridge directory with one session, a HOME and a project; its warm
/// cache is `root/warm-cache`.
fn world(host: &Path) -> tempfile::TempDir {
    let root = bench_tempdir();
    std::fs::create_dir_all(root.path().join("project")).unwrap();
    std::fs::create_dir_all(root.path().join("home")).unwrap();
    let warm = root.path().join("warm-cache");
    let started = command(host, root.path(), &warm)
        .args(["run", "start"])
        .status()
        .unwrap();
    assert!(started.success());
    root
}

/// `run peers` (with `args` before it): each sample with a compile cache
/// nobody has used when `cold`, else with the world's warm one.
pub fn peers(sizes: &Sizes, host: &Path, cold: bool, args: &[&str]) -> Vec<Duration> {
    let root = world(host);
    let warm = root.path().join("warm-cache");
    let samples = (0..sizes.cold)
        .map(|i| {
            let cache = if cold {
                root.path().join(format!("cold-cache-{i}"))
            } else {
                warm.clone()
            };
            let started = Instant::now();
            let status = command(host, root.path(), &cache)
                .args(args)
                .args(["run", "peers"])
                .status()
                .unwrap();
            let took = started.elapsed();
            assert!(status.success());
            took
        })
        .collect();
    defer_removal(root);
    samples
}

/// `bridge-host mcp` started with an empty compile cache: from the spawn to
/// the answer to `initialize` read.
pub fn mcp_initialize(sizes: &Sizes, host: &Path, cold: bool) -> Vec<Duration> {
    let root = world(host);
    let warm = root.path().join("warm-cache");
    let samples = (0..sizes.cold)
        .map(|i| {
            let cache = if cold {
                root.path().join(format!("cold-cache-{i}"))
            } else {
                warm.clone()
            };
            let started = Instant::now();
            let mut child = command(host, root.path(), &cache)
                .arg("mcp")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "bench-client", "version": "1"}}});
            writeln!(stdin, "{initialize}").unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            let took = started.elapsed();
            assert!(line.contains("\"serverInfo\""), "{line}");
            drop(stdin);
            let _ = child.wait();
            took
        })
        .collect();
    defer_removal(root);
    samples
}

/// The plugin's SessionStart hook for a new Claude session, as Claude Code
/// runs it on a first start: a new bridge directory and an empty cache
/// each time (`cold`), or the same warm cache.
pub fn session_start_hook(sizes: &Sizes, host: &Path, cold: bool) -> Vec<Duration> {
    let root = bench_tempdir();
    std::fs::create_dir_all(root.path().join("project")).unwrap();
    std::fs::create_dir_all(root.path().join("home")).unwrap();
    let warm = root.path().join("warm-cache");
    let samples = (0..sizes.cold)
        .map(|i| {
            let cache = if cold {
                root.path().join(format!("cold-cache-{i}"))
            } else {
                warm.clone()
            };
            let input = json!({
                "session_id": format!("00000000-0000-4000-8000-{i:012}"),
                "cwd": root.path().join("project"),
                "hook_event_name": "SessionStart",
                "source": "startup",
            });
            let started = Instant::now();
            let mut child = command(host, root.path(), &cache)
                .env("BRIDGE_DIR", root.path().join(format!("bridge-{i}")))
                .args(["hook", "session-start"])
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.to_string().as_bytes())
                .unwrap();
            let status = child.wait().unwrap();
            let took = started.elapsed();
            assert!(status.success());
            took
        })
        .collect();
    defer_removal(root);
    samples
}

/// `ping`, request written to answer read, while one connection has sent
/// 1,000 `listen` calls that wait with no timeout. None when the server
/// does not answer the first ping within `give_up` (a server that stops
/// reading its input never does).
pub fn ping_with_calls_waiting(
    sizes: &Sizes,
    host: &Path,
    give_up: Duration,
) -> Option<Vec<Duration>> {
    let root = world(host);
    let warm = root.path().join("warm-cache");
    let mut child = command(host, root.path(), &warm)
        .arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (lines, read) = mpsc::channel::<Value>();
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(message) = serde_json::from_str(&line)
                && lines.send(message).is_err()
            {
                break;
            }
        }
    });
    let mut send = |message: Value| writeln!(stdin, "{message}").unwrap();
    let wait_for = |id: u64, within: Duration| -> bool {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match read.recv_timeout(left) {
                Ok(message) if message["id"] == json!(id) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "bench-client", "version": "1"}}}),
    );
    assert!(wait_for(1, Duration::from_secs(30)));
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "status", "arguments": {}}}));
    assert!(wait_for(2, Duration::from_secs(30)));
    for id in 10..1010 {
        send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "listen", "arguments": {}}}));
    }
    // The calls past the bound are answered at once; let them drain.
    thread::sleep(Duration::from_secs(2));
    let mut samples = Vec::new();
    for n in 0..sizes.cold as u64 * 4 {
        let id = 5000 + n;
        let started = Instant::now();
        send(json!({"jsonrpc": "2.0", "id": id, "method": "ping"}));
        if !wait_for(id, give_up) {
            let _ = child.kill();
            let _ = child.wait();
            defer_removal(root);
            return None;
        }
        samples.push(started.elapsed());
    }
    let _ = child.kill();
    let _ = child.wait();
    defer_removal(root);
    Some(samples)
}
