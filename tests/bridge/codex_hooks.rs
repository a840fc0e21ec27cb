//! The Codex hooks with a stand-in for the `codex` program that records
//! each `codex queue` it is asked to run (the real Codex TUI is driven in
//! `codex_tui.rs`): what the waker queues, what it never wakes for, that a
//! message Codex did not take is not lost, and that SessionEnd stops it all.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::World;

const THREAD: &str = "019a2b3c-4d5e-7f60-8a9b-0c1d2e3f4a5b";

/// A `codex` that appends each call's arguments (each ended by a NUL, each
/// call by a record separator) to `calls`, and fails while the file
/// `refuse` exists.
fn stand_in_codex(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let calls = dir.join("codex-calls");
    let refuse = dir.join("codex-refuses");
    let program = dir.join("codex");
    let script = format!(
        "#!/bin/sh\nif [ -e '{refuse}' ]; then echo 'Error: thread/queue/add failed: no rollout found' >&2; exit 1; fi\nprintf '%s\\0' \"$@\" >> '{calls}'\nprintf '\\036' >> '{calls}'\n",
        refuse = refuse.display(),
        calls = calls.display()
    );
    std::fs::write(&program, script).unwrap();
    let mut permissions = std::fs::metadata(&program).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&program, permissions).unwrap();
    (program, calls, refuse)
}

/// The `codex queue` calls made so far, each as its arguments.
fn queued(calls: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(calls)
        .unwrap_or_default()
        .split('\u{1e}')
        .filter(|call| !call.is_empty())
        .map(|line| {
            line.split('\0')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hook_input(event: &str, cwd: &Path) -> String {
    serde_json::json!({
        "session_id": THREAD,
        "cwd": cwd,
        "hook_event_name": event,
        "transcript_path": cwd.join("rollout.jsonl"),
        "model": "stand-in",
        "source": "startup",
    })
    .to_string()
}

/// The command lines of this world's waker processes.
fn waker_commands(world: &World) -> Vec<String> {
    let bridge = world.bridge.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("codex-wake") && c.contains(&bridge))
        .collect()
}

fn wakers(world: &World) -> usize {
    waker_commands(world).len()
}

#[test]
fn a_codex_thread_is_registered_woken_through_codex_queue_and_stopped_at_its_end() {
    let w = World::new();
    let codex_project = w.project("codex-app");
    let asker = w.project("library");
    let (codex, calls, refuse) = stand_in_codex(w.root.path());

    // SessionStart: the thread's session, a note worded for the MCP tools.
    // The user's own flags on the hook's command line (here a retention)
    // go on to the waker it leaves.
    let note = w
        .cmd(&codex_project)
        .args(["--retention", "30d", "hook", "codex-session-start"])
        .env("BRIDGE_CODEX_BIN", &codex)
        .stdin(hook_input("SessionStart", &codex_project))
        .ok();
    let id = note
        .split("bridge session ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no session in the note: {note}"))
        .to_string();
    assert!(
        note.contains(&format!("reaches it with the connect tool with peer {id}")),
        "{note}"
    );
    assert!(!note.contains("/session-bridge:"), "{note}");
    wait_for("the waker", || wakers(&w) == 1);
    let waker = &waker_commands(&w)[0];
    assert!(waker.contains(" --retention 30d "), "{waker}");

    // A second SessionStart (a resumed thread) leaves one waker.
    w.cmd(&codex_project)
        .args(["hook", "codex-session-start"])
        .env("BRIDGE_CODEX_BIN", &codex)
        .stdin(hook_input("SessionStart", &codex_project))
        .ok();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(wakers(&w), 1);

    // Nothing wakes it for nothing: a connect's ping is answered unseen.
    w.start(&asker);
    w.cmd(&asker).args(["run", "connect", &id]).ok();

    // A query is queued into the thread, whole, once.
    let question = "Does `render($x)` still take \"opts\"? !1";
    let sent = w
        .cmd(&asker)
        .args(["run", "send", &id, "query", question])
        .ok();
    let message_id = sent.trim().to_string();
    wait_for("the query to be queued", || !queued(&calls).is_empty());
    let call = &queued(&calls)[0];
    assert_eq!(
        &call[..4],
        ["queue", "--thread", THREAD, "--message"],
        "{call:?}"
    );
    let text = &call[4];
    assert!(
        text.starts_with(
            "session-bridge: a message from a peer agent session arrived for this session \
             (it is not from the user).\nQuery from "
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Answer with: the reply tool with message_id {message_id}"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("\n{question}\n")), "{text}");
    let track = w.cmd(&asker).args(["run", "track", &message_id]).ok();
    assert!(track.contains("(tool-wake)"), "{track}");

    // Codex refuses: the message is not lost, and is queued once Codex
    // takes it again.
    std::fs::write(&refuse, "").unwrap();
    let second = w
        .cmd(&asker)
        .args(["run", "send", &id, "query", "second question"])
        .ok();
    let second = second.trim().to_string();
    std::thread::sleep(Duration::from_secs(2));
    let pending = w.cmd(&asker).args(["run", "track", &second]).ok();
    assert!(!pending.contains("(tool-wake)"), "{pending}");
    std::fs::remove_file(&refuse).unwrap();
    wait_for("the refused message to be queued again", || {
        queued(&calls).len() == 2
    });
    assert!(queued(&calls)[1][4].contains(&second));

    // SessionEnd stops the session, and the waker with it, even in a
    // project that opted in to away answers: those are answered from a
    // Claude Code transcript, which a Codex thread does not have.
    w.cmd(&codex_project).args(["run", "away", "on"]).ok();
    w.cmd(&codex_project)
        .args(["hook", "codex-session-end"])
        .stdin(hook_input("SessionEnd", &codex_project))
        .ok();
    wait_for("the waker to end", || wakers(&w) == 0);
    let peers = w.cmd(&asker).args(["run", "peers"]).ok();
    assert!(!peers.contains(&id), "{peers}");
    let away = w
        .cmd(&codex_project)
        .args(["--json", "run", "away", "status"])
        .json();
    assert_eq!(away["sessions"], serde_json::json!([]), "{away}");
    // Two queries, two calls: the ping woke nothing.
    assert_eq!(queued(&calls).len(), 2);
}
