//! Exactly-once claiming under concurrent listeners, and recovery after a
//! listener dies holding a claim.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::util::{World, parse_listen, parse_reply};

/// Runs `listen` in `dir` until one times out after `timeout` seconds,
/// counting each delivered message ID in `seen`.
fn listen_until_idle(
    w: &World,
    dir: &std::path::Path,
    timeout: &str,
    seen: &Mutex<HashMap<String, usize>>,
) {
    loop {
        let (output, _) = w
            .cmd(dir)
            .args(["run", "listen", "--timeout", timeout])
            .output();
        if !output.status.success() {
            return;
        }
        let (fields, _) = parse_listen(&String::from_utf8(output.stdout).unwrap());
        *seen
            .lock()
            .unwrap()
            .entry(fields["MESSAGE_ID"].clone())
            .or_default() += 1;
    }
}

#[test]
fn concurrent_listeners_deliver_each_message_exactly_once() {
    const LISTENERS: usize = 4;
    const MESSAGES: usize = 40;
    let w = Arc::new(World::new());
    let sender = w.project("sender");
    let inbox_owner = w.project("busy");
    w.start(&sender);
    let busy_id = w.start(&inbox_owner);

    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let listeners: Vec<_> = (0..LISTENERS)
        .map(|_| {
            let (w, seen, dir) = (w.clone(), seen.clone(), inbox_owner.clone());
            std::thread::spawn(move || listen_until_idle(&w, &dir, "3", &seen))
        })
        .collect();
    let mut sent = Vec::new();
    for i in 0..MESSAGES {
        let id = w
            .cmd(&sender)
            .args(["run", "send", &busy_id, "query", &format!("message {i}")])
            .ok();
        sent.push(id.trim().to_string());
    }
    for listener in listeners {
        listener.join().unwrap();
    }
    // On a loaded machine every listener may have given up before the last
    // send; whatever is left is drained here and counted the same way.
    listen_until_idle(&w, &inbox_owner, "2", &seen);
    let seen = seen.lock().unwrap();
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "delivered more than once: {duplicates:?}"
    );
    let lost: Vec<_> = sent.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(lost.is_empty(), "never delivered: {lost:?}");
    assert_eq!(seen.len(), MESSAGES);
}

/// Moves a pending message into `claimed/` as a listener that then died
/// would have left it, claimed `age_ms` ago.
fn abandon_claim(w: &World, owner: &str, message_id: &str, age_ms: u64) {
    let inbox = w.session_dir(owner).join("inbox");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    std::fs::rename(
        inbox.join(format!("{message_id}.json")),
        inbox.join(format!(
            "claimed/{message_id}.deadbeef.{}.claim",
            now - age_ms
        )),
    )
    .unwrap();
}

#[test]
fn a_message_held_by_a_dead_listener_comes_back_after_the_lease() {
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    w.start(&a);
    let b_id = w.start(&b);
    let fresh = w
        .cmd(&a)
        .args(["run", "send", &b_id, "query", "held recently"])
        .ok();
    let old = w
        .cmd(&a)
        .args(["run", "send", &b_id, "query", "held long ago"])
        .ok();
    abandon_claim(&w, &b_id, fresh.trim(), 0);
    abandon_claim(&w, &b_id, old.trim(), 60_000);

    // The long-abandoned claim is recovered at once ...
    let (fields, content) = parse_listen(&w.cmd(&b).args(["run", "listen", "--timeout", "5"]).ok());
    assert_eq!(
        (fields["MESSAGE_ID"].as_str(), content.as_str()),
        (old.trim(), "held long ago")
    );
    // ... the fresh one only when its lease runs out, then exactly once.
    let started = std::time::Instant::now();
    let (fields, _) = parse_listen(&w.cmd(&b).args(["run", "listen", "--timeout", "30"]).ok());
    assert_eq!(fields["MESSAGE_ID"], fresh.trim());
    assert!(started.elapsed() >= std::time::Duration::from_secs(5));
    w.cmd(&b).args(["run", "listen", "--timeout", "1"]).fails();
}

/// The claims in `owner`'s `claimed/` folder.
fn claims(w: &World, owner: &str) -> Vec<String> {
    std::fs::read_dir(w.session_dir(owner).join("inbox/claimed"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn listeners_killed_while_holding_a_claim_lose_nothing() {
    const HELD: usize = 3;
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    w.start(&a);
    let b_id = w.start(&b);
    // Each message is larger than a pipe holds, and nobody reads the
    // listeners' output: each claims a message, starts printing it, and
    // blocks there, between its claim and its commit.
    let content = |i: usize| format!("{i}:{}", "x".repeat(256 << 10));
    let mut sent = Vec::new();
    for i in 0..HELD {
        let id = w
            .cmd(&a)
            .args(["run", "send", &b_id, "query", "-"])
            .stdin(content(i))
            .ok();
        sent.push(id.trim().to_string());
    }
    let mut doomed: Vec<_> = (0..HELD)
        .map(|_| w.cmd(&b).args(["run", "listen"]).spawn())
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while claims(&w, &b_id).len() < HELD {
        assert!(
            std::time::Instant::now() < deadline,
            "the listeners never claimed: {:?}",
            claims(&w, &b_id)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for listener in &mut doomed {
        listener.kill().unwrap();
        listener.wait().unwrap();
    }
    // Killed with their claims held: nothing was committed, nothing is
    // pending, and the messages are only in `claimed/`.
    let read = w.session_dir(&b_id).join("inbox/read");
    assert_eq!(std::fs::read_dir(&read).unwrap().count(), 0);
    assert_eq!(claims(&w, &b_id).len(), HELD);

    // After the lease, each comes back exactly once, intact.
    let mut delivered = Vec::new();
    for _ in 0..HELD {
        let out = w.cmd(&b).args(["run", "listen", "--timeout", "30"]).ok();
        let (fields, text) = parse_listen(&out);
        let index: usize = text.split(':').next().unwrap().parse().unwrap();
        assert_eq!(text, content(index), "delivered damaged");
        assert_eq!(fields["MESSAGE_ID"], sent[index]);
        delivered.push(fields["MESSAGE_ID"].clone());
    }
    delivered.sort();
    sent.sort();
    assert_eq!(delivered, sent);
    w.cmd(&b).args(["run", "listen", "--timeout", "1"]).fails();
    assert!(claims(&w, &b_id).is_empty(), "{:?}", claims(&w, &b_id));
}

#[test]
fn a_reply_awaited_by_ask_is_not_taken_by_a_listener() {
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    w.start(&a);
    let b_id = w.start(&b);
    // A background listener on the asker's own inbox, as the plugin runs.
    let background = w.cmd(&a).args(["run", "listen", "--timeout", "20"]).spawn();
    let asker = w
        .cmd(&a)
        .args(["run", "ask", &b_id, "question", "--timeout", "20"])
        .spawn();
    let (q, _) = parse_listen(&w.cmd(&b).args(["run", "listen", "--timeout", "10"]).ok());
    w.cmd(&b)
        .args(["run", "reply", &q["MESSAGE_ID"], "answer"])
        .ok();
    let asked = asker.wait_with_output().unwrap();
    assert_eq!(
        parse_reply(&String::from_utf8(asked.stdout).unwrap()),
        ("b".to_string(), "answer".to_string())
    );
    let mut background = background;
    let _ = background.kill();
    let out = background.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("answer"),
        "the listener took the asker's reply"
    );
}
