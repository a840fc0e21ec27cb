//! Figures of `bridge-host mcp`, driven over its standard input and output
//! with JSON-RPC lines written here, as any MCP client would.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Sizes, World, automatic_responder, bridge_host, cpu_ticks, proc_status_kb};

/// One connected MCP server.
pub struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Server {
    /// Starts `bridge-host mcp` in `project` on `w`'s bridge directory and
    /// completes the MCP handshake.
    pub fn connect(w: &World, project: &Path) -> Self {
        let mut child = Command::new(bridge_host())
            .env_clear()
            .env("BRIDGE_DIR", &w.bridge)
            .env("BRIDGE_CACHE_DIR", &w.cache)
            .current_dir(project)
            .arg("mcp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("bridge-host mcp starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut server = Server {
            child,
            stdin,
            stdout,
            next_id: 0,
        };
        server.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "bench-client", "version": "1"}
            }),
        );
        server.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        // The session is registered by the time a status call returns.
        server.call("status", json!({}));
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn send(&mut self, message: &Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Sends a request and returns its result, skipping notifications.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            let read = self.stdout.read_line(&mut line).unwrap();
            assert!(read > 0, "bridge-host mcp closed its output");
            let message: Value = serde_json::from_str(&line).unwrap();
            if message["id"] == json!(id) {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
        }
    }

    /// Calls a tool and returns its result.
    pub fn call(&mut self, tool: &str, arguments: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": arguments}))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `check_inbox` on an empty inbox, call to response, in a warm server.
pub fn check_inbox_round_trip(sizes: &Sizes, cache: &Path) -> Vec<Duration> {
    let w = World::new(cache);
    let mut server = Server::connect(&w, &w.a);
    for _ in 0..10 {
        server.call("check_inbox", json!({}));
    }
    (0..sizes.send * 4)
        .map(|_| {
            let started = Instant::now();
            let result = server.call("check_inbox", json!({}));
            let took = started.elapsed();
            assert_eq!(
                result["content"][0]["text"], "No new messages.\n",
                "{result}"
            );
            took
        })
        .collect()
}

/// An MCP `ask` answered by the same automatic responder as the CLI's
/// `ask` figure (a `bridge-host run listen` / `reply` loop).
pub fn ask_round_trip(sizes: &Sizes, cache: &Path) -> Vec<Duration> {
    let w = std::sync::Arc::new(World::new(cache));
    let mut server = Server::connect(&w, &w.a);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let responder = automatic_responder(&w, &done);
    let samples = (0..sizes.ask)
        .map(|i| {
            let started = Instant::now();
            let result = server.call(
                "ask",
                json!({"peer": w.b_id, "question": format!("question {i}"), "timeout_seconds": 30}),
            );
            let took = started.elapsed();
            let text = result["content"][0]["text"].as_str().unwrap_or_default();
            assert!(text.starts_with("Reply from"), "{result}");
            took
        })
        .collect();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    responder.join().expect("responder");
    samples
}

/// The resident set of a connected, idle server, in KiB, after `settle`.
pub fn idle_rss(cache: &Path) -> u64 {
    let w = World::new(cache);
    let mut rss: Vec<u64> = (0..5)
        .map(|_| {
            let mut server = Server::connect(&w, &w.a);
            server.call("peers", json!({}));
            thread::sleep(Duration::from_millis(500));
            proc_status_kb(server.pid(), "VmRSS:")
        })
        .collect();
    rss.sort();
    rss[2]
}

/// CPU used by a connected, idle server over `sizes.idle_secs`, in percent.
pub fn idle_cpu(sizes: &Sizes, cache: &Path) -> f64 {
    let w = World::new(cache);
    let server = Server::connect(&w, &w.a);
    thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(server.pid());
    thread::sleep(Duration::from_secs(sizes.idle_secs));
    let after = cpu_ticks(server.pid());
    // SAFETY: sysconf has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (after - before) as f64 / ticks_per_sec / sizes.idle_secs as f64 * 100.0
}
