//! A hostile guest for the sandbox tests. It implements the bridge world,
//! but `connect <probe>` performs an attack instead of a ping:
//!
//! - `read:<path>`   reads a file and reports its size
//! - `write:<path>`  creates a file
//! - `list:<path>`   lists a directory
//! - `sleep:<ms>`    sleeps on the WASI clock
//! - `spin`          loops forever
//! - `hog`           allocates without bound
//! - `shout`         returns gigabytes of output
//! - `stderr`        writes without bound to standard error
//! - `watch:<path>`  asks the host to watch a folder

use std::io::Write;

wit_bindgen::generate!({
    world: "bridge",
    path: "../../../wit/v0.1.0",
});

use session_bridge::protocol::host;
use session_bridge::protocol::types::*;

struct Probe;

fn blocked(path: &str, err: impl ToString) -> BridgeError {
    BridgeError::Io(FileProblem {
        path: path.to_string(),
        reason: err.to_string(),
    })
}

fn done(text: String) -> Report {
    Report {
        outcome: Outcome::Peers(Vec::new()),
        rendered: text,
        warnings: Vec::new(),
    }
}

fn attack(probe: &str) -> Result<Report, BridgeError> {
    let (action, arg) = probe.split_once(':').unwrap_or((probe, ""));
    match action {
        "read" => std::fs::read(arg)
            .map(|bytes| done(format!("read {} bytes from {arg}\n", bytes.len())))
            .map_err(|e| blocked(arg, e)),
        "write" => std::fs::File::create(arg)
            .and_then(|mut f| f.write_all(b"escaped"))
            .map(|()| done(format!("wrote {arg}\n")))
            .map_err(|e| blocked(arg, e)),
        "list" => std::fs::read_dir(arg)
            .map(|entries| done(format!("listed {} entries in {arg}\n", entries.count())))
            .map_err(|e| blocked(arg, e)),
        "watch" => host::Watcher::watch(arg)
            .map(|_| done(format!("watching {arg}\n")))
            .map_err(|e| blocked(arg, e)),
        "connect" => std::net::TcpStream::connect(arg)
            .map(|_| done(format!("connected to {arg}\n")))
            .map_err(|e| blocked(arg, e)),
        "sleep" => {
            let ms: u64 = arg.parse().unwrap_or(100);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Ok(done(format!("slept {ms} ms\n")))
        }
        "spin" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "hog" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 16 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "shout" => Ok(done("x".repeat(200 << 20))),
        "stderr" => {
            let line = "y".repeat(1 << 20);
            let mut stderr = std::io::stderr();
            for _ in 0..4096 {
                if stderr.write_all(line.as_bytes()).is_err() {
                    break;
                }
            }
            Ok(done("stderr done\n".into()))
        }
        _ => Err(BridgeError::InvalidArgument(format!(
            "unknown probe {probe:?}"
        ))),
    }
}

impl Guest for Probe {
    fn info() -> GuestInfo {
        GuestInfo {
            name: "probe".into(),
            version: "0.1.0".into(),
        }
    }

    fn limits() -> Limits {
        Limits {
            max_content_bytes: 1024,
        }
    }

    fn run(_context: InvocationContext, verb: Verb) -> Result<Report, Failure> {
        let result = match verb {
            Verb::Connect(probe) => attack(&probe),
            _ => Err(BridgeError::InvalidArgument(
                "the probe guest only runs connect".into(),
            )),
        };
        result.map_err(|error| Failure {
            error,
            warnings: Vec::new(),
        })
    }

    fn commit_delivery(
        _context: InvocationContext,
        _ticket: ClaimTicket,
    ) -> Result<(), BridgeError> {
        Ok(())
    }
}

export!(Probe);
