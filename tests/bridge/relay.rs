//! `bridge-host relay` between "machines" (each its own bridge directory
//! and relay) through a real nats-server with JetStream.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use crate::nats::{Cluster, Machine, Server, introduce, server_bin, wait_until};
use crate::util::{parse_listen, parse_reply};

/// Machines of these names, that trust each other's keys, each with a
/// relay connected to `server`.
fn machines<const N: usize>(server: &Server, names: [&str; N], args: &[&str]) -> [Machine; N] {
    let mut machines = names.map(Machine::new);
    introduce(&machines.iter().collect::<Vec<_>>());
    for machine in &mut machines {
        machine.start_relay(&server.url(), args);
    }
    for machine in &machines {
        machine.wait_connected();
    }
    machines
}

/// Two machines `a` and `b`, each with a relay connected to `server`.
fn two_machines(server: &Server, args: &[&str]) -> (Machine, Machine) {
    let [a, b] = machines(server, ["a", "b"], args);
    (a, b)
}

/// `bridge-host run listen` on `machine` in `project`, parsed.
fn listen(
    machine: &Machine,
    project: &Path,
) -> (std::collections::BTreeMap<String, String>, String) {
    let text = machine
        .world
        .cmd(project)
        .args(["run", "listen", "--timeout", "30"])
        .ok();
    parse_listen(&text)
}

/// `bridge-host run reply ID TEXT` on `machine` in `project`.
fn reply(machine: &Machine, project: &Path, id: &str, text: &str) {
    machine
        .world
        .cmd(project)
        .args(["run", "reply", id, text])
        .ok();
}

/// What a spawned `bridge-host run ask` printed as the reply: (from, text).
fn answer_to(asker: std::process::Child) -> (String, String) {
    let out = asker.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_reply(&String::from_utf8_lossy(&out.stdout))
}

fn raw_client<F, T>(url: &str, options: async_nats::ConnectOptions, body: F) -> T
where
    F: AsyncFnOnce(async_nats::Client) -> T,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = options.connect(url).await.expect("raw client connects");
        body(client).await
    })
}

/// The key `machine`'s relay signs with when it has no `--creds`: the one
/// it made next to its bridge directory.
fn signing_key_of(machine: &Machine) -> nkeys::KeyPair {
    let mut name = machine.world.bridge.file_name().unwrap().to_os_string();
    name.push(".relay-key");
    let seed = std::fs::read_to_string(machine.world.bridge.with_file_name(name)).unwrap();
    nkeys::KeyPair::from_seed(seed.trim()).unwrap()
}

#[test]
fn sessions_on_two_machines_list_each_other_and_ask_and_answer() {
    let Some(bin) = server_bin("ask across machines") else {
        return;
    };
    let server = Server::start(&bin, "");
    let (a, b) = two_machines(&server, &[]);
    let (app, app_id) = a.session("app");
    let (lib, lib_id) = b.session("library");
    a.wait_for_peer(&app, &lib_id, "b");
    b.wait_for_peer(&lib, &app_id, "a");

    // The table says where each session runs.
    let table = a.world.cmd(&app).args(["run", "peers"]).ok();
    let header = table.lines().next().unwrap();
    assert!(header.contains("MACHINE"), "{table}");
    let row = table.lines().find(|l| l.starts_with(&lib_id)).unwrap();
    assert!(row.contains(" b ") && row.contains("library"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&app_id) && l.contains("this machine")),
        "{table}"
    );

    // Materialized in the original's layout.
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(a.world.session_dir(&lib_id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["machine"], "b");
    assert_eq!(manifest["projectName"], "library");
    assert!(a.world.session_dir(&lib_id).join("inbox").is_dir());

    let asker = a
        .world
        .cmd(&app)
        .args([
            "run",
            "ask",
            &lib_id,
            "What changed in v2?",
            "--timeout",
            "60",
        ])
        .spawn();
    let (fields, content) = listen(&b, &lib);
    assert_eq!(fields["FROM_ID"], app_id);
    assert_eq!(fields["TYPE"], "query");
    assert_eq!(content, "What changed in v2?");
    reply(&b, &lib, &fields["MESSAGE_ID"], "init() is now setup()");
    let (from, answer) = answer_to(asker);
    assert_eq!(from, "library");
    assert_eq!(answer, "init() is now setup()");

    // The asker's receipt: relayed, taken on machine b by the library's
    // listener (carried back), answered.
    let track = || -> Value {
        let text = a
            .world
            .cmd(&app)
            .args(["run", "track", &fields["MESSAGE_ID"], "--json"])
            .ok();
        serde_json::from_str(&text).unwrap()
    };
    let taken_by = |receipt: &Value| {
        receipt["events"].as_array().unwrap().iter().any(|e| {
            e["stage"] == "taken" && e["by"] == lib_id.as_str() && e["taker"] == "terminal"
        })
    };
    assert!(
        wait_until(Duration::from_secs(20), || taken_by(&track())),
        "{}",
        track()
    );
    let receipt = track();
    assert_eq!(receipt["stage"], "answered", "{receipt}");
    let stages: Vec<&str> = receipt["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["queued", "relayed", "taken", "answered"],
        "{receipt}"
    );
    // Carried, the step leaves b's copy of the asker's session.
    let left = b.world.session_dir(&app_id).join("receipts");
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_dir(&left)
            .map(|d| d
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".taken")))
            .unwrap_or(true)),
        "{}",
        crate::util::listing(&left)
    );
}

#[test]
fn a_message_for_an_offline_machine_waits_and_track_says_where() {
    let Some(bin) = server_bin("offline machine") else {
        return;
    };
    let server = Server::start(&bin, "");
    let (mut a, mut b) = two_machines(&server, &[]);
    let (app, _) = a.session("app");
    let (lib, lib_id) = b.session("library");
    a.wait_for_peer(&app, &lib_id, "b");

    // b's relay is down: the server holds the message for b.
    b.stop_relay();
    let id = a
        .world
        .cmd(&app)
        .args(["run", "send", &lib_id, "query", "are you there?"])
        .ok()
        .trim()
        .to_string();
    let relayed = wait_until(Duration::from_secs(20), || {
        a.world
            .cmd(&app)
            .args(["run", "track", &id])
            .ok()
            .contains("relayed")
    });
    let text = a.world.cmd(&app).args(["run", "track", &id]).ok();
    assert!(relayed, "{text}");
    assert!(
        text.contains("held by the relay server for machine b"),
        "{text}"
    );

    // a's relay is down too: the send still succeeds, queued for b.
    a.stop_relay();
    let second = a
        .world
        .cmd(&app)
        .args(["run", "send", &lib_id, "query", "and now?"])
        .ok()
        .trim()
        .to_string();
    let text = a.world.cmd(&app).args(["run", "track", &second]).ok();
    assert!(text.contains(": queued"), "{text}");
    assert!(text.contains("for machine b"), "{text}");

    // Both relays back: both arrive, once each, in order.
    a.start_relay(&server.url(), &[]);
    b.start_relay(&server.url(), &[]);
    let (first, content) = listen(&b, &lib);
    assert_eq!(
        (first["MESSAGE_ID"].as_str(), content.as_str()),
        (id.as_str(), "are you there?")
    );
    let (next, content) = listen(&b, &lib);
    assert_eq!(
        (next["MESSAGE_ID"].as_str(), content.as_str()),
        (second.as_str(), "and now?")
    );
    let empty = b.world.cmd(&lib).args(["run", "check-inbox"]).ok();
    assert_eq!(empty.trim(), "No new messages.");
}

#[test]
fn stop_tells_remote_peers_and_the_session_leaves_their_listing() {
    let Some(bin) = server_bin("stop across machines") else {
        return;
    };
    let server = Server::start(&bin, "");
    let (a, b) = two_machines(&server, &[]);
    let (app, app_id) = a.session("app");
    let (lib, lib_id) = b.session("library");
    a.wait_for_peer(&app, &lib_id, "b");
    b.wait_for_peer(&lib, &app_id, "a");
    // They exchanged messages, so stop notifies.
    a.world
        .cmd(&app)
        .args(["run", "send", &lib_id, "query", "hello"])
        .ok();
    listen(&b, &lib);
    b.world.cmd(&lib).args(["run", "stop"]).ok();
    let told = wait_until(Duration::from_secs(20), || {
        let status = a.world.cmd(&app).args(["run", "status", "--json"]).ok();
        let status: Value = serde_json::from_str(&status).unwrap();
        status["ended"]
            .as_array()
            .is_some_and(|e| e.iter().any(|m| m["from"] == lib_id))
    });
    assert!(
        told,
        "a was not told that {lib_id} ended:\n{}",
        a.relay_log()
    );
    let gone = wait_until(Duration::from_secs(20), || {
        !a.peers(&app).iter().any(|p| p["sessionId"] == lib_id)
    });
    assert!(gone, "{lib_id} is still listed on a: {:?}", a.peers(&app));
    assert!(!a.world.session_dir(&lib_id).exists());
}

#[test]
fn an_original_session_asks_across_machines_with_its_own_file_writes() {
    let Some(bin) = server_bin("original scripts across machines") else {
        return;
    };
    let server = Server::start(&bin, "");
    let (a, b) = two_machines(&server, &[]);
    let (lib, lib_id) = b.session("library");
    // A session laid out and driven as the original's scripts do it.
    let original = "a1b2c3";
    let dir = a.world.session_dir(original);
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    std::fs::create_dir_all(dir.join("outbox")).unwrap();
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    std::fs::write(
        dir.join("manifest.json"),
        format!(
            r#"{{"sessionId":"{original}","projectName":"old-app","projectPath":"/home/me/old-app","startedAt":"{now}","lastHeartbeat":"{now}","status":"active","capabilities":["query","context-dump","conversation"]}}"#
        ),
    )
    .unwrap();
    b.wait_for_peer(&lib, original, "a");
    let app = a.world.project("old-app");
    a.wait_for_peer(&app, &lib_id, "b");
    // send-message.sh: a temporary file, renamed into the peer's inbox.
    let query = format!(
        r#"{{"id":"msg-0dzhx0wgcik9","from":"{original}","to":"{lib_id}","type":"query","timestamp":"{now}","status":"pending","content":"Which API broke?","inReplyTo":null,"metadata":{{"urgency":"normal","fromProject":"old-app"}}}}"#
    );
    let inbox = a.world.session_dir(&lib_id).join("inbox");
    std::fs::write(inbox.join("msg-0dzhx0wgcik9.json.tmp"), &query).unwrap();
    std::fs::rename(
        inbox.join("msg-0dzhx0wgcik9.json.tmp"),
        inbox.join("msg-0dzhx0wgcik9.json"),
    )
    .unwrap();
    let (fields, content) = listen(&b, &lib);
    assert_eq!(fields["FROM_ID"], original);
    assert_eq!(fields["FROM_PROJECT"], "old-app");
    assert_eq!(content, "Which API broke?");
    reply(&b, &lib, "msg-0dzhx0wgcik9", "The config loader.");
    // Where the original's asker looks: a pending file in its own inbox
    // that answers its query.
    let mut found = None;
    let arrived = wait_until(Duration::from_secs(20), || {
        for entry in std::fs::read_dir(dir.join("inbox")).unwrap().flatten() {
            let Ok(bytes) = std::fs::read(entry.path()) else {
                continue;
            };
            let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            if value["inReplyTo"] == "msg-0dzhx0wgcik9" && value["status"] == "pending" {
                found = Some(value);
                return true;
            }
        }
        false
    });
    assert!(
        arrived,
        "the reply never reached the original's inbox:\n{}",
        a.relay_log()
    );
    let reply = found.unwrap();
    assert_eq!(reply["content"], "The config loader.");
    assert_eq!(reply["from"], lib_id.as_str());
}

#[test]
fn a_clarification_loop_runs_across_machines_and_is_one_thread() {
    let Some(bin) = server_bin("clarification across machines") else {
        return;
    };
    let server = Server::start(&bin, "");
    let (a, b) = two_machines(&server, &[]);
    let (app, _) = a.session("app");
    let (lib, lib_id) = b.session("library");
    a.wait_for_peer(&app, &lib_id, "b");

    let asker = a
        .world
        .cmd(&app)
        .args([
            "run",
            "ask",
            &lib_id,
            "Is the v2 API stable?",
            "--timeout",
            "60",
        ])
        .spawn();
    let (query, _) = listen(&b, &lib);
    // The listener asks back, as a response to the query.
    reply(&b, &lib, &query["MESSAGE_ID"], "Which module do you mean?");
    let (_, question) = answer_to(asker);
    assert_eq!(question, "Which module do you mean?");
    // The asker answers with a new query, which follows up on the reply
    // (a follow-up only when the asker says so).
    let thread = a
        .world
        .cmd(&app)
        .args(["run", "thread", &query["MESSAGE_ID"], "--json"])
        .ok();
    let thread: Value = serde_json::from_str(&thread).unwrap();
    let asked_back = thread["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["inReplyTo"] == query["MESSAGE_ID"].as_str())
        .and_then(|m| m["id"].as_str())
        .unwrap_or_else(|| panic!("{thread}"))
        .to_string();
    let asker = a
        .world
        .cmd(&app)
        .args([
            "run",
            "ask",
            &lib_id,
            "The parser.",
            "--in-reply-to",
            &asked_back,
            "--timeout",
            "60",
        ])
        .spawn();
    let (follow_up, content) = listen(&b, &lib);
    assert_eq!(content, "The parser.");
    assert!(!follow_up["IN_REPLY_TO"].is_empty(), "{follow_up:?}");
    reply(&b, &lib, &follow_up["MESSAGE_ID"], "Yes, stable since 2.1.");
    let (_, answer) = answer_to(asker);
    assert_eq!(answer, "Yes, stable since 2.1.");
    let thread = a
        .world
        .cmd(&app)
        .args(["run", "thread", &query["MESSAGE_ID"], "--json"])
        .ok();
    let thread: Value = serde_json::from_str(&thread).unwrap();
    let contents: Vec<&str> = thread["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "Is the v2 API stable?",
            "Which module do you mean?",
            "The parser.",
            "Yes, stable since 2.1."
        ],
        "{thread}"
    );
}

#[test]
fn hostile_messages_from_the_network_are_refused_logged_without_content_and_survived() {
    let Some(bin) = server_bin("hostile network input") else {
        return;
    };
    let server = Server::start(&bin, "");
    let [a, b, c] = machines(&server, ["a", "b", "c"], &[]);
    let (app, app_id) = a.session("app");
    let (_, lib_id) = b.session("library");
    let (_, other_id) = c.session("other");
    a.wait_for_peer(&app, &lib_id, "b");
    a.wait_for_peer(&app, &other_id, "c");
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let message = |id: &str, from: &str, to: &str, content: &str| {
        serde_json::json!({
            "id": id, "from": from, "to": to, "type": "query", "timestamp": now,
            "status": "pending", "content": content, "inReplyTo": null,
            "metadata": {"urgency": "normal", "fromProject": "x"},
        })
        .to_string()
    };
    const SECRET: &str = "SECRET-CONTENT-7f3a";
    let big = "x".repeat(7 * 1024 * 1024 + 10);
    let hostile: Vec<(&str, String)> = vec![
        ("malformed", format!("{{ not json {SECRET}")),
        (
            "wrong shape",
            format!(r#"{{"id":"msg-aaaaaaaaaaaa","content":"{SECRET}"}}"#),
        ),
        (
            "oversized",
            message("msg-bbbbbbbbbbbb", &lib_id, &app_id, &big),
        ),
        // b publishes as a session of machine c.
        (
            "forged from",
            message("msg-cccccccccccc", &other_id, &app_id, SECRET),
        ),
        // b publishes as a session of this very machine.
        (
            "forged local from",
            message("msg-dddddddddddd", &app_id, &app_id, SECRET),
        ),
        // For a session that lives on machine c, not on a.
        (
            "another machine's session",
            message("msg-eeeeeeeeeeee", &lib_id, &other_id, SECRET),
        ),
        (
            "unknown recipient",
            message("msg-ffffffffffff", &lib_id, "zzzzzz", SECRET),
        ),
    ];
    let good = message("msg-gggggggggggg", &lib_id, &app_id, "a fair question");
    // Signed with b's own key, as b's relay signs: the checks below are
    // those after the signature's.
    let pair_b = signing_key_of(&b);
    let signed = |payload: &str| {
        use base64::Engine as _;
        let bytes = format!("session-bridge relay v1\na\nb\n{payload}");
        (
            pair_b.public_key(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(pair_b.sign(bytes.as_bytes()).unwrap()),
        )
    };
    raw_client(
        &server.url(),
        async_nats::ConnectOptions::new(),
        async |client| {
            let js = async_nats::jetstream::new(client);
            for (what, payload) in &hostile {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("hostile-{what}").as_str());
                let (signer, signature) = signed(payload);
                headers.insert("Bridge-Signer", signer.as_str());
                headers.insert("Bridge-Signature", signature.as_str());
                js.publish_with_headers("bridge.mail.a.b", headers, payload.clone().into())
                    .await
                    .unwrap()
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            }
            // A legitimate message, then its replay under another publish ID.
            for attempt in ["first", "replay"] {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", attempt);
                let (signer, signature) = signed(&good);
                headers.insert("Bridge-Signer", signer.as_str());
                headers.insert("Bridge-Signature", signature.as_str());
                js.publish_with_headers("bridge.mail.a.b", headers, good.clone().into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        },
    );
    // The legitimate one arrives, once; the relay still runs.
    let (fields, content) = listen(&a, &app);
    assert_eq!(fields["MESSAGE_ID"], "msg-gggggggggggg");
    assert_eq!(content, "a fair question");
    let logged = wait_until(Duration::from_secs(20), || {
        let log = a.relay_log();
        log.matches("refused a message from machine b").count() >= hostile.len()
            && log.contains("msg-gggggggggggg from machine b was received before")
    });
    let log = a.relay_log();
    assert!(logged, "{log}");
    assert!(!log.contains(SECRET), "content was logged:\n{log}");
    for why in [
        "not a message with a valid message ID",
        "over the 7340032-byte limit",
        &format!("names {other_id} as its sender, a session of machine \"c\""),
        &format!("names {app_id} as its sender, a session of this machine"),
        &format!("addressed to {other_id}, a session of machine \"c\""),
        "addressed to zzzzzz, which is not a session of this machine",
    ] {
        assert!(log.contains(why), "no refusal saying {why:?}:\n{log}");
    }
    let empty = a.world.cmd(&app).args(["run", "check-inbox"]).ok();
    assert_eq!(empty.trim(), "No new messages.");
    let mut a = a;
    assert!(a.relay_running(), "{log}");
    // No message landed anywhere else either.
    for (name, machine) in [("b", &b), ("c", &c)] {
        assert!(
            !crate::util::listing(&machine.world.bridge).contains("msg-cccccccccccc"),
            "{name}"
        );
    }
}

#[test]
fn a_machine_that_disappears_is_gone_from_the_others_with_no_ghosts() {
    let Some(bin) = server_bin("presence expiry") else {
        return;
    };
    let server = Server::start(&bin, "");
    let (a, mut b) = two_machines(&server, &["--presence-ttl", "12"]);
    let (app, _) = a.session("app");
    let (lib, lib_id) = b.session("library");
    a.wait_for_peer(&app, &lib_id, "b");
    // A session whose heartbeat is old on its machine is stale on others.
    let (_, old_id) = b.session("old");
    let manifest = b.world.session_dir(&old_id).join("manifest.json");
    let mut value: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    value["lastHeartbeat"] = "2026-01-01T00:00:00Z".into();
    std::fs::write(&manifest, value.to_string()).unwrap();
    // Its relay publishes it at its next pass.
    let stale = wait_until(Duration::from_secs(30), || {
        a.peers(&app)
            .iter()
            .any(|p| p["sessionId"] == old_id && p["stale"] == true && p["machine"] == "b")
    });
    assert!(stale, "{:?}", a.peers(&app));
    let table = a.world.cmd(&app).args(["run", "peers"]).ok();
    let row = table.lines().find(|l| l.starts_with(&old_id)).unwrap();
    assert!(row.contains("stale"), "{table}");
    let _ = lib;
    // A crash: nothing is withdrawn, the entries expire.
    b.kill_relay();
    let gone = wait_until(Duration::from_secs(60), || {
        !a.peers(&app).iter().any(|p| p["sessionId"] == lib_id)
    });
    assert!(
        gone,
        "{lib_id} is still listed: {:?}\n{}",
        a.peers(&app),
        a.relay_log()
    );
    assert!(!a.world.session_dir(&lib_id).exists());
}

#[test]
fn one_relay_per_bridge_directory_and_sigterm_stops_it_cleanly() {
    let Some(bin) = server_bin("one relay per directory") else {
        return;
    };
    let server = Server::start(&bin, "");
    let mut a = Machine::new("a");
    a.start_relay(&server.url(), &[]);
    a.wait_connected();
    let second = a
        .world
        .cmd(a.world.root.path())
        .args(["relay", "--server", &server.url(), "--machine", "a"])
        .output()
        .0;
    assert_eq!(second.status.code(), Some(1));
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("another relay already serves"), "{said}");
    let status = a.stop_relay().unwrap();
    assert!(status.success(), "{status:?}\n{}", a.relay_log());
    assert!(
        a.relay_log().contains("SIGTERM; stopping"),
        "{}",
        a.relay_log()
    );
    // A bad machine name is refused before anything connects.
    let bad = a
        .world
        .cmd(a.world.root.path())
        .args(["relay", "--server", &server.url(), "--machine", "Bad.Name"])
        .output()
        .0;
    assert_eq!(bad.status.code(), Some(1));
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("is not 1 to 32 characters"), "{said}");
}

/// The admin's example key in docs/relay.md's configuration.
const DOCS_ADMIN_KEY: &str = "UBQWX7PVJ6AA4JOILDUAWLAEJ56OY2XPZ5V7AWXNFRZIECIZNFHQUC5E";

/// The team's server configuration as docs/relay.md gives it: its `accounts`
/// block, with the user block repeated for each of `machines` (name, nkey
/// public key) in place of the example machine `laptop`, and the admin's
/// key in place of the example one.
fn documented_accounts(machines: &[(&str, String)], admin: &str) -> String {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join("relay.md"),
    )
    .unwrap();
    let start = page
        .find("\naccounts {")
        .expect("docs/relay.md has the team's accounts block")
        + 1;
    let block = &page[start..];
    let block = &block[..block.find("\n```").unwrap()];
    assert!(block.contains(DOCS_ADMIN_KEY), "the admin's user block");
    let block = block.replace(DOCS_ADMIN_KEY, admin);
    let user_start = block.find("      { nkey: ").expect("a user block");
    let close = "        } }";
    let user_end = block.find(close).expect("the user block's end") + close.len();
    let user = &block[user_start..user_end];
    let example = user["      { nkey: ".len()..]
        .split_whitespace()
        .next()
        .unwrap();
    let users: Vec<String> = machines
        .iter()
        .map(|(machine, key)| user.replace(example, key).replace("laptop", machine))
        .collect();
    format!(
        "{}{}{}\n",
        &block[..user_start],
        users.join("\n"),
        &block[user_end..]
    )
}

/// `bridge-host relay keygen --out <dir>/<name>.nk`: the seed file and
/// the printed public key.
fn keygen(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let path = dir.join(format!("{name}.nk"));
    let out = std::process::Command::new(crate::util::BIN)
        .args(["relay", "keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(key.starts_with('U') && key.len() == 56, "{key}");
    (path, key)
}

/// `bridge-host relay admin --machine M...` with the admin's credentials.
fn admin(server: &Server, creds: &Path, machines: &[&str]) -> String {
    let mut command = std::process::Command::new(crate::util::BIN);
    command
        .args(["relay", "admin", "--server", &server.url(), "--creds"])
        .arg(creds);
    for machine in machines {
        command.args(["--machine", machine]);
    }
    let out = command.output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

/// Every way a machine `m` holding its own valid credentials might use the
/// JetStream API to read or forge the mail of machine `b`, or to learn more
/// than `peers` shows: (subject, body, headers). `lib` is a session of `b`.
/// One abuse: the subject, the body, and the headers.
type Abuse = (String, String, Vec<(&'static str, String)>);

fn abuse_catalogue(m: &str, lib: &str) -> Vec<Abuse> {
    let own = format!("bridge-mail-{m}");
    let stream = |extra: &str| {
        format!(r#"{{"name":"{own}","subjects":["bridge.mail.{m}.*"],"storage":"file",{extra}}}"#)
    };
    let push = |stream_name: &str, deliver: &str| {
        format!(
            r#"{{"stream_name":"{stream_name}","config":{{"deliver_subject":"{deliver}","ack_policy":"none","deliver_policy":"all"}}}}"#
        )
    };
    let none = Vec::new;
    vec![
        // Streams that read another machine's mail, or write onto its subjects.
        (format!("$JS.API.STREAM.CREATE.{own}"), stream(r#""sources":[{"name":"bridge-mail-b"}]"#), none()),
        (format!("$JS.API.STREAM.CREATE.{own}"), format!(r#"{{"name":"{own}","mirror":{{"name":"bridge-mail-b"}}}}"#), none()),
        (format!("$JS.API.STREAM.CREATE.{own}"), stream(&format!(r#""republish":{{"src":"bridge.mail.{m}.{m}","dest":"bridge.mail.b.a"}}"#)), none()),
        (format!("$JS.API.STREAM.CREATE.{own}"), stream(r#""subject_transform":{"src":"bridge.mail.*.*","dest":"bridge.mail.b.a"}"#), none()),
        (format!("$JS.API.STREAM.UPDATE.{own}"), stream(r#""sources":[{"name":"bridge-mail-b"}]"#), none()),
        ("$JS.API.STREAM.CREATE.snoop".into(), r#"{"name":"snoop","sources":[{"name":"bridge-mail-b"}]}"#.into(), none()),
        ("$JS.API.STREAM.UPDATE.bridge-mail-b".into(), r#"{"name":"bridge-mail-b","subjects":["bridge.mail.b.*"],"republish":{"src":">","dest":"stolen.>"}}"#.into(), none()),
        ("$JS.API.STREAM.DELETE.bridge-mail-b".into(), String::new(), none()),
        (format!("$JS.API.STREAM.DELETE.{own}"), String::new(), none()),
        ("$JS.API.STREAM.DELETE.KV_bridge-presence".into(), String::new(), none()),
        // Consumers that deliver elsewhere, or on another machine's stream.
        (format!("$JS.API.CONSUMER.CREATE.{own}"), push(&own, "bridge.mail.b.c"), none()),
        (format!("$JS.API.CONSUMER.CREATE.{own}.push"), push(&own, "bridge.mail.b.c"), none()),
        (format!("$JS.API.CONSUMER.DURABLE.CREATE.{own}.push"), push(&own, "bridge.mail.b.c"), none()),
        (format!("$JS.API.CONSUMER.CREATE.{own}.relay"), push(&own, "bridge.mail.b.c"), none()),
        ("$JS.API.CONSUMER.CREATE.KV_bridge-presence".into(), push("KV_bridge-presence", "bridge.mail.b.c"), none()),
        (format!("$JS.API.CONSUMER.CREATE.KV_bridge-presence.presence-{m}"), push("KV_bridge-presence", "bridge.mail.b.c"), none()),
        ("$JS.API.CONSUMER.CREATE.bridge-mail-b.snoop".into(), r#"{"stream_name":"bridge-mail-b","config":{"durable_name":"snoop"}}"#.into(), none()),
        ("$JS.API.CONSUMER.DURABLE.CREATE.bridge-mail-b.snoop".into(), r#"{"stream_name":"bridge-mail-b","config":{"durable_name":"snoop"}}"#.into(), none()),
        ("$JS.API.CONSUMER.DELETE.bridge-mail-b.relay".into(), String::new(), none()),
        ("$JS.API.CONSUMER.MSG.NEXT.bridge-mail-b.relay".into(), r#"{"batch":10}"#.into(), none()),
        ("$JS.API.CONSUMER.MSG.NEXT.KV_bridge-presence.presence-b".into(), r#"{"batch":10}"#.into(), none()),
        // Reading, purging and deleting messages directly.
        ("$JS.API.DIRECT.GET.bridge-mail-b".into(), r#"{"seq":1}"#.into(), none()),
        ("$JS.API.DIRECT.GET.bridge-mail-b.bridge.mail.b.a".into(), String::new(), none()),
        ("$JS.API.STREAM.MSG.GET.bridge-mail-b".into(), r#"{"seq":1}"#.into(), none()),
        (format!("$JS.API.STREAM.MSG.GET.{own}"), r#"{"seq":1}"#.into(), none()),
        ("$JS.API.STREAM.PURGE.bridge-mail-b".into(), String::new(), none()),
        ("$JS.API.STREAM.PURGE.KV_bridge-presence".into(), String::new(), none()),
        ("$JS.API.STREAM.MSG.DELETE.bridge-mail-b".into(), r#"{"seq":1}"#.into(), none()),
        ("$JS.API.STREAM.MSG.DELETE.KV_bridge-presence".into(), r#"{"seq":1}"#.into(), none()),
        // Another machine's presence: put, delete.
        (format!("$KV.bridge-presence.b.{lib}"), "{}".into(), none()),
        (format!("$KV.bridge-presence.b.{lib}"), String::new(), vec![("KV-Operation", "DEL".to_string())]),
        // Names and counts beyond what `peers` shows.
        ("$JS.API.INFO".into(), String::new(), none()),
        ("$JS.API.STREAM.NAMES".into(), String::new(), none()),
        ("$JS.API.STREAM.LIST".into(), String::new(), none()),
        ("$JS.API.STREAM.INFO.bridge-mail-b".into(), String::new(), none()),
        ("$JS.API.CONSUMER.NAMES.bridge-mail-b".into(), String::new(), none()),
        ("$JS.API.CONSUMER.LIST.KV_bridge-presence".into(), String::new(), none()),
        ("$JS.API.CONSUMER.NAMES.KV_bridge-presence".into(), String::new(), none()),
        ("$JS.API.CONSUMER.INFO.KV_bridge-presence.presence-b".into(), String::new(), none()),
        ("$JS.API.CONSUMER.INFO.bridge-mail-b.relay".into(), String::new(), none()),
        // Mail published as another machine.
        (format!("bridge.mail.b.{}", if m == "a" { "c" } else { "a" }), "{}".into(), none()),
    ]
}

/// Machine `m` tries the whole catalogue with its own credentials; returns
/// what its subscriptions to other machines' subjects received.
fn try_abuse(server: &Server, m: &str, seed: &str, lib: &str) -> usize {
    let catalogue = abuse_catalogue(m, lib);
    raw_client(
        &server.url(),
        async_nats::ConnectOptions::with_nkey(seed.to_string())
            .custom_inbox_prefix(format!("_INBOX_{m}")),
        async |client| {
            // Replies of other machines, and their mail.
            let mut spies = Vec::new();
            for subject in ["_INBOX_b.>", "bridge.mail.b.>", "_INBOX.>"] {
                if let Ok(sub) = client.subscribe(subject).await {
                    spies.push(sub);
                }
            }
            let reply = format!("_INBOX_{m}.abuse");
            let mut answers = client.subscribe(reply.clone()).await.unwrap();
            for (subject, body, headers) in &catalogue {
                let mut map = async_nats::HeaderMap::new();
                for (k, v) in headers {
                    map.insert(*k, v.as_str());
                }
                client
                    .publish_with_reply_and_headers(
                        subject.clone(),
                        reply.clone(),
                        map,
                        body.clone().into(),
                    )
                    .await
                    .unwrap();
            }
            // A rollup of all, on a subject this machine may publish on,
            // would purge every other machine's presence: the bucket allows
            // none.
            let js = async_nats::jetstream::new(client.clone());
            let mut rollup = async_nats::HeaderMap::new();
            rollup.insert("Nats-Rollup", "all");
            let rolled = match js
                .publish_with_headers(
                    format!("$KV.bridge-presence.{m}.rollup"),
                    rollup,
                    "{}".into(),
                )
                .await
            {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            assert!(!rolled, "{m} rolled the presence bucket up");
            client.flush().await.unwrap();
            // Whatever answered: only refusals.
            while let Ok(Some(answer)) =
                tokio::time::timeout(Duration::from_millis(300), answers.next()).await
            {
                let text = String::from_utf8_lossy(&answer.payload);
                assert!(
                    text.is_empty() || text.contains("\"error\""),
                    "{m} was answered: {text}"
                );
            }
            let mut got = 0;
            for mut spy in spies {
                while let Ok(Some(_)) =
                    tokio::time::timeout(Duration::from_millis(100), spy.next()).await
                {
                    got += 1;
                }
            }
            got
        },
    )
}

/// What the permissions cannot stop: the server does not check the reply
/// subject of a request, and answers it on its own authority. Machine `c`,
/// with its own credentials, makes the server publish into b's stream as
/// machine a (a direct get of its own presence entry, and a pull from its
/// own consumer, each answered to `bridge.mail.b.a`), and into the
/// presence bucket under a's name (answered to `$KV.bridge-presence.a.…`).
/// The server stores all three. b's relay refuses each, because a's key
/// did not sign it, logs it as a forgery, and shows and delivers nothing.
fn redirect_through_replies(
    server: &Server,
    c: &mut Machine,
    seed_c: &str,
    a: &Machine,
    b: &Machine,
    (app_id, lib_id): (&str, &str),
) {
    use base64::Engine as _;
    let pair_c = nkeys::KeyPair::from_seed(seed_c).unwrap();
    let key_c = pair_c.public_key();
    let sign = |signed: String| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(pair_c.sign(signed.as_bytes()).unwrap())
    };
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    const SECRET: &str = "REDIRECTED-FORGERY-9a41";
    let mail = |id: &str| {
        serde_json::json!({
            "id": id, "from": app_id, "to": lib_id, "type": "query", "timestamp": now,
            "status": "pending", "content": SECRET, "inReplyTo": null,
            "metadata": {"urgency": "normal", "fromProject": "app"},
        })
        .to_string()
    };
    let (by_get, by_pull) = (mail("msg-redirectget1"), mail("msg-redirectpul1"));
    // A session "of machine a", from a's real manifest as b shows it.
    let fake = "fakefa";
    let manifest = std::fs::read_to_string(b.world.session_dir(app_id).join("manifest.json"))
        .unwrap()
        .replace(app_id, fake);
    assert!(manifest.contains("\"machine\""), "{manifest}");
    // c stops its relay, so that its own consumer is free for the pull.
    c.stop_relay();
    raw_client(
        &server.url(),
        async_nats::ConnectOptions::with_nkey(seed_c.to_string()).custom_inbox_prefix("_INBOX_c"),
        async |client| {
            let js = async_nats::jetstream::new(client.clone());
            let headers = |signature: String| {
                let mut h = async_nats::HeaderMap::new();
                h.insert("Bridge-Signer", key_c.as_str());
                h.insert("Bridge-Signature", signature.as_str());
                h
            };
            let as_a_for_b =
                |payload: &str| headers(sign(format!("session-bridge relay v1\nb\na\n{payload}")));
            // Its own presence keys, which it may put, hold the forgeries.
            for (key, payload, h) in [
                ("redirect1", by_get.clone(), as_a_for_b(&by_get)),
                (
                    "redirect2",
                    manifest.clone(),
                    headers(sign(format!(
                        "session-bridge presence v1\na\n{fake}\n{manifest}"
                    ))),
                ),
            ] {
                js.publish_with_headers(format!("$KV.bridge-presence.c.{key}"), h, payload.into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
            // A message to itself, which it may send, in its own stream.
            js.publish_with_headers(
                "bridge.mail.c.c",
                as_a_for_b(&by_pull),
                by_pull.clone().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
            for (subject, body, reply) in [
                (
                    "$JS.API.DIRECT.GET.KV_bridge-presence.$KV.bridge-presence.c.redirect1"
                        .to_string(),
                    String::new(),
                    "bridge.mail.b.a".to_string(),
                ),
                (
                    "$JS.API.DIRECT.GET.KV_bridge-presence.$KV.bridge-presence.c.redirect2".into(),
                    String::new(),
                    format!("$KV.bridge-presence.a.{fake}"),
                ),
                (
                    "$JS.API.CONSUMER.MSG.NEXT.bridge-mail-c.relay".into(),
                    // Long enough that, were the message handed first to a
                    // pull the stopped relay left behind, it comes here
                    // once that delivery's ack wait (30 s) ends.
                    r#"{"batch":1,"expires":60000000000}"#.into(),
                    "bridge.mail.b.a".into(),
                ),
            ] {
                client
                    .publish_with_reply(subject, reply, body.into())
                    .await
                    .unwrap();
            }
            client.flush().await.unwrap();
        },
    );
    // b received all three, as the server stored them, and refused them.
    // The direct get's answer is stored under `bridge.mail.b.a`; the pulled
    // message under c's own name (nats-server 2.9.10), so it is refused as
    // a message c's key did not sign over those bytes for b.
    let as_a = format!(
        "warning: SECURITY: refused a message from the network that machine \"a\" did not sign: \
         it was published as machine \"a\" but signed by key {key_c}"
    );
    let as_c = format!(
        "warning: SECURITY: refused a message from the network that machine \"c\" did not sign: \
         its signature by key {key_c} does not verify"
    );
    let presence_refused = format!(
        "warning: SECURITY: refused a presence entry from the network that machine \"a\" did \
         not sign: it was published as machine \"a\" but signed by key {key_c}"
    );
    let refused = wait_until(Duration::from_secs(90), || {
        let log = b.relay_log();
        log.contains(&as_a) && log.contains(&as_c) && log.contains(&presence_refused)
    });
    assert!(refused, "{}", b.relay_log());
    for machine in [a, b] {
        assert!(!machine.relay_log().contains(SECRET));
    }
    let lib = b.world.project("library");
    assert!(
        !b.peers(&lib).iter().any(|p| p["sessionId"] == fake),
        "{:?}",
        b.peers(&lib)
    );
    assert!(!b.world.session_dir(fake).exists());
}

/// The streams and consumers on the server, seen with the admin's key.
fn server_objects(server: &Server, admin_seed: &str) -> Vec<String> {
    raw_client(
        &server.url(),
        async_nats::ConnectOptions::with_nkey(admin_seed.to_string()),
        async |client| {
            let js = async_nats::jetstream::new(client);
            let names: Vec<String> = js
                .stream_names()
                .filter_map(|n| async move { n.ok() })
                .collect()
                .await;
            let mut all = Vec::new();
            for name in names {
                let mut stream = js.get_stream(&name).await.unwrap();
                let config = stream.info().await.unwrap().config.clone();
                all.push(format!(
                    "{name} sources={} mirror={} republish={} subjects={:?}",
                    config.sources.as_ref().is_some_and(|s| !s.is_empty()),
                    config.mirror.is_some(),
                    config.republish.is_some(),
                    config.subjects
                ));
                let consumers: Vec<String> = stream
                    .consumer_names()
                    .filter_map(|n| async move { n.ok() })
                    .collect()
                    .await;
                for consumer in consumers {
                    let info = stream
                        .consumer_info(&consumer)
                        .await
                        .unwrap()
                        .config
                        .deliver_subject
                        .clone();
                    all.push(format!("{name}/{consumer} deliver={info:?}"));
                }
            }
            all.sort();
            all
        },
    )
}

/// The configuration docs/relay.md gives, run as written with machines a
/// and b set up by `relay admin`, and machine c with valid credentials but
/// no stream yet. Each machine tries the JetStream API abuse catalogue
/// with its own credentials, c before and after its stream exists: each
/// attempt is refused, the server logs it, nothing on the server changed,
/// nothing was read or forged, and the relays keep working.
#[test]
fn the_documented_configuration_refuses_the_jetstream_abuse_catalogue() {
    let Some(bin) = server_bin("machine permissions and the abuse catalogue") else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let (admin_creds, admin_key) = keygen(keys.path(), "admin");
    let (creds_a, key_a) = keygen(keys.path(), "a");
    let (creds_b, key_b) = keygen(keys.path(), "b");
    let (creds_c, key_c) = keygen(keys.path(), "c");
    // As `nk -gen user -pubout` prints them: the seed, then the public key.
    std::fs::write(
        &creds_a,
        format!(
            "{}\n{key_a}\n",
            std::fs::read_to_string(&creds_a).unwrap().trim()
        ),
    )
    .unwrap();
    let seed = |path: &Path| {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    let config = documented_accounts(
        &[
            ("a", key_a.clone()),
            ("b", key_b.clone()),
            ("c", key_c.clone()),
        ],
        &admin_key,
    );
    let server = Server::start(&bin, &config);
    let said = admin(&server, &admin_creds, &["a", "b"]);
    assert!(
        said.contains("mail stream bridge-mail-a: created"),
        "{said}"
    );
    let mut a = Machine::new("a");
    let mut b = Machine::new("b");
    let mut c = Machine::new("c");
    // The team's roster: the keys the admin put in the configuration.
    let roster = [
        ("a", key_a.clone()),
        ("b", key_b.clone()),
        ("c", key_c.clone()),
    ];
    for machine in [&a, &b, &c] {
        machine.trust_roster(&roster);
    }
    a.start_relay(&server.url(), &["--creds", creds_a.to_str().unwrap()]);
    b.start_relay(&server.url(), &["--creds", creds_b.to_str().unwrap()]);
    c.start_relay(&server.url(), &["--creds", creds_c.to_str().unwrap()]);
    a.wait_connected();
    b.wait_connected();
    let (app, app_id) = a.session("app");
    let (lib, lib_id) = b.session("library");
    a.wait_for_peer(&app, &lib_id, "b");
    b.wait_for_peer(&lib, &app_id, "a");
    let round_trip = |question: &str| {
        let asker = a
            .world
            .cmd(&app)
            .args(["run", "ask", &lib_id, question, "--timeout", "60"])
            .spawn();
        let (fields, _) = listen(&b, &lib);
        reply(&b, &lib, &fields["MESSAGE_ID"], "yes");
        assert_eq!(answer_to(asker).1, "yes");
    };
    round_trip("allowed?");
    // c has no stream yet, and says who makes it.
    let hint = "the stream bridge-mail-c does not exist, and this machine may not create it: \
                the team's admin creates it with `bridge-host relay admin --machine c`";
    assert!(
        wait_until(Duration::from_secs(30), || c.relay_log().contains(hint)),
        "{}",
        c.relay_log()
    );
    let before = server_objects(&server, &seed(&admin_creds));
    assert!(
        !before.iter().any(|o| o.contains("bridge-mail-c")),
        "{before:?}"
    );

    // Popped from the end: c first, before its stream exists; then a, and
    // c again once the admin made c's stream.
    let mut attempts = vec![("a", seed(&creds_a)), ("c", seed(&creds_c))];
    let mut expected = before.clone();
    let mut round = 0;
    while let Some((m, machine_seed)) = attempts.pop() {
        round += 1;
        let spied = try_abuse(&server, m, &machine_seed, &lib_id);
        assert_eq!(spied, 0, "{m} read another machine's subjects");
        let key = match m {
            "a" => &key_a,
            _ => &key_c,
        };
        // The server refused each one, and logged it.
        let mut missing = Vec::new();
        let logged = wait_until(Duration::from_secs(20), || {
            let log = server.log();
            missing = abuse_catalogue(m, &lib_id)
                .into_iter()
                .map(|(subject, _, _)| subject)
                .chain([
                    "_INBOX_b.>".to_string(),
                    "bridge.mail.b.>".into(),
                    "_INBOX.>".into(),
                ])
                .filter(|subject| {
                    !log.lines().any(|line| {
                        line.contains("Violation")
                            && line.contains(key.as_str())
                            && line.contains(&format!("Subject \"{subject}\""))
                    })
                })
                .collect();
            missing.is_empty()
        });
        assert!(logged, "not refused for {m}: {missing:?}\n{}", server.log());
        // Nothing changed on the server.
        let now = server_objects(&server, &seed(&admin_creds));
        assert_eq!(now, expected, "after {m}'s attempts (round {round})");
        if round == 1 {
            assert_eq!(m, "c");
            // Then c's stream is made, and c tries again.
            let said = admin(&server, &admin_creds, &["c"]);
            assert!(
                said.contains("mail stream bridge-mail-c: created"),
                "{said}"
            );
            c.wait_connected();
            expected = server_objects(&server, &seed(&admin_creds));
            assert!(
                expected.iter().any(|o| o.contains("bridge-mail-c/relay")),
                "{expected:?}"
            );
            attempts.insert(0, ("c", seed(&creds_c)));
        }
        for object in &now {
            assert!(
                object.contains("sources=false mirror=false republish=false")
                    || object.contains("deliver=None"),
                "{object}"
            );
        }
        assert!(
            !now.iter()
                .any(|o| o.contains("snoop") || o.contains("push")),
            "{now:?}"
        );
    }
    // b's presence is intact, nothing forged arrived, and mail still flows.
    a.wait_for_peer(&app, &lib_id, "b");
    let empty = b.world.cmd(&lib).args(["run", "check-inbox"]).ok();
    assert_eq!(empty.trim(), "No new messages.");
    let empty = a.world.cmd(&app).args(["run", "check-inbox"]).ok();
    assert_eq!(empty.trim(), "No new messages.");
    round_trip("still working?");
    let (_, other_id) = c.session("other");
    a.wait_for_peer(&app, &other_id, "c");
    redirect_through_replies(&server, &mut c, &seed(&creds_c), &a, &b, (&app_id, &lib_id));
    let empty = b.world.cmd(&lib).args(["run", "check-inbox"]).ok();
    assert_eq!(empty.trim(), "No new messages.");
    round_trip("and after the replies?");
    // The relays under these permissions try nothing they may not do,
    // but for c's own stream before the admin made it.
    for machine in [&a, &b, &c] {
        let log = machine.relay_log();
        assert!(
            log.lines()
                .filter(|l| l.contains("Violation"))
                .all(|l| machine.name == "c"
                    && l.ends_with("\"$JS.API.STREAM.CREATE.bridge-mail-c\"")),
            "{log}"
        );
    }
}

/// A server that lets every client publish anywhere (no permissions at
/// all). Nothing is trusted on first sight: before b trusts a's key, mail
/// "from a" waits on the server, whoever signed it, and a's sessions are
/// not shown on b; once b trusts a's real key (from the roster), a's mail
/// arrives and the forgery that came first is refused. Then machine e
/// publishes on b's subject as machine a: unsigned, signed by e's own key,
/// or signed by a's key over other bytes, each is refused on arrival and
/// the forgeries are logged as such; a's real mail still arrives; a changed
/// key is accepted only after `relay trust`.
#[test]
fn a_forged_or_unsigned_message_is_refused_under_a_server_that_allows_everything() {
    let Some(bin) = server_bin("forged mail under an allow-all server") else {
        return;
    };
    let server = Server::start(&bin, "");
    let mut a = Machine::new("a");
    let mut b = Machine::new("b");
    // a trusts b; b trusts nobody yet.
    a.trust_roster(&[("b", b.relay_key(&[]))]);
    a.start_relay(&server.url(), &[]);
    b.start_relay(&server.url(), &[]);
    a.wait_connected();
    b.wait_connected();
    let (app, app_id) = a.session("app");
    let (lib, lib_id) = b.session("library");
    a.wait_for_peer(&app, &lib_id, "b");
    let key_a = a
        .relay_log()
        .split("signs as ")
        .nth(1)
        .map(|rest| rest[..56].to_string())
        .unwrap();
    assert_eq!(a.relay_key(&[]), key_a);
    // a's signing key, kept next to its bridge directory.
    let pair_a = signing_key_of(&a);
    assert_eq!(pair_a.public_key(), key_a);
    let untrusted_sessions = format!(
        "the sessions of machine \"a\" are not shown: this machine trusts no key for \"a\" yet, \
         and what it published is signed by key {key_a}. If that is \"a\"'s key (its relay logs \
         `signs as U...` when it starts, and the team's roster lists it), run `bridge-host relay \
         trust a {key_a}` here, or `bridge-host relay trust --roster FILE`"
    );
    assert!(
        wait_until(Duration::from_secs(30), || b
            .relay_log()
            .contains(&untrusted_sessions)),
        "{}",
        b.relay_log()
    );
    assert!(
        !b.peers(&lib).iter().any(|p| p["sessionId"] == app_id),
        "{:?}",
        b.peers(&lib)
    );
    let pair_e = nkeys::KeyPair::new_user();
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let message = |id: &str, content: &str| {
        serde_json::json!({
            "id": id, "from": app_id, "to": lib_id, "type": "query", "timestamp": now,
            "status": "pending", "content": content, "inReplyTo": null,
            "metadata": {"urgency": "normal", "fromProject": "app"},
        })
        .to_string()
    };
    let sign = |pair: &nkeys::KeyPair, payload: &str| {
        use base64::Engine as _;
        let signed = format!("session-bridge relay v1\nb\na\n{payload}");
        (
            pair.public_key(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(pair.sign(signed.as_bytes()).unwrap()),
        )
    };
    const SECRET: &str = "FORGED-CONTENT-51c2";
    let unsigned = message("msg-unsignedaaaa", SECRET);
    let by_e = message("msg-signedbyeeee", SECRET);
    let altered = message("msg-alteredaaaaa", SECRET);
    let rightly = message("msg-rightlyaaaaa", "signed by a");
    let changed = message("msg-newkeyeeeeee", "signed by a's new key");
    // Each: a message ID, its payload, and its (signer, signature).
    type Item<'a> = (&'a str, String, Option<(String, String)>);
    let publish = |items: Vec<Item>| {
        raw_client(
            &server.url(),
            async_nats::ConnectOptions::new(),
            async |client| {
                let js = async_nats::jetstream::new(client);
                for (what, payload, signature) in items {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", format!("forged-{what}").as_str());
                    if let Some((signer, signature)) = &signature {
                        headers.insert("Bridge-Signer", signer.as_str());
                        headers.insert("Bridge-Signature", signature.as_str());
                    }
                    js.publish_with_headers("bridge.mail.b.a", headers, payload.into())
                        .await
                        .unwrap()
                        .await
                        .unwrap();
                }
            },
        )
    };
    // First sight: a forgery signed by e, then a's real mail. Both wait.
    const FIRST: &str = "FORGED-FIRST-7d0e";
    let first_forged = message("msg-firstforgedee", FIRST);
    publish(vec![(
        "first",
        first_forged.clone(),
        Some(sign(&pair_e, &first_forged)),
    )]);
    a.world
        .cmd(&app)
        .args(["run", "send", &lib_id, "query", "first"])
        .ok();
    let e = pair_e.public_key();
    let waits = |key: &str| {
        format!(
            "mail from machine \"a\" waits on the server, undelivered: this machine trusts no key \
             for \"a\" yet, and what it published is signed by key {key}. If that is \"a\"'s key"
        )
    };
    assert!(
        wait_until(Duration::from_secs(30), || {
            let log = b.relay_log();
            log.contains(&waits(&e)) && log.contains(&waits(&key_a))
        }),
        "{}",
        b.relay_log()
    );
    let empty = b.world.cmd(&lib).args(["run", "check-inbox"]).ok();
    assert_eq!(empty.trim(), "No new messages.");
    assert!(!b.world.bridge.join("relay-keys").join("a.pub").exists());
    // b trusts a's key from the team's roster: a's mail arrives, and the
    // forgery is refused, loudly.
    b.trust_roster(&[("a", key_a.clone())]);
    assert_eq!(listen(&b, &lib).1, "first");
    let loud = format!(
        "warning: SECURITY: refused a message from the network that machine \"a\" did not sign: \
         it was published as machine \"a\" but signed by key {e}, not by \"a\"'s key {key_a}. If \
         that machine's key really changed, run `bridge-host relay trust a {e}` on this machine"
    );
    assert!(
        wait_until(Duration::from_secs(30), || b.relay_log().contains(&loud)),
        "{}",
        b.relay_log()
    );
    b.wait_for_peer(&lib, &app_id, "a");
    let empty = b.world.cmd(&lib).args(["run", "check-inbox"]).ok();
    assert_eq!(empty.trim(), "No new messages.");
    assert!(!b.relay_log().contains(FIRST));
    // Once trusted: more forgeries.
    publish(vec![
        ("unsigned", unsigned.clone(), None),
        ("by-e", by_e.clone(), Some(sign(&pair_e, &by_e))),
        ("altered", altered.clone(), Some(sign(&pair_a, &rightly))),
        ("rightly", rightly.clone(), Some(sign(&pair_a, &rightly))),
    ]);
    // Only the rightly signed one arrives.
    let (fields, content) = listen(&b, &lib);
    assert_eq!(
        (fields["MESSAGE_ID"].as_str(), content.as_str()),
        ("msg-rightlyaaaaa", "signed by a")
    );
    let logged = wait_until(Duration::from_secs(20), || {
        let log = b.relay_log();
        log.matches(&loud).count() >= 2
            && log.contains("it is not signed")
            && log.contains(&format!("its signature by key {key_a} does not verify"))
    });
    let log = b.relay_log();
    assert!(logged, "{log}");
    assert!(
        log.contains("refused a message from machine a") && log.contains("it is not signed"),
        "{log}"
    );
    assert!(!log.contains(SECRET), "{log}");
    let empty = b.world.cmd(&lib).args(["run", "check-inbox"]).ok();
    assert_eq!(empty.trim(), "No new messages.");
    // A new key for a: refused until b trusts it, explicitly.
    let trust = b.world.cmd(&lib).args(["relay", "trust", "a", &e]).ok();
    assert_eq!(
        trust.trim(),
        format!("machine a's key is now {e} (it was {key_a})")
    );
    publish(vec![(
        "changed",
        changed.clone(),
        Some(sign(&pair_e, &changed)),
    )]);
    let (fields, _) = listen(&b, &lib);
    assert_eq!(fields["MESSAGE_ID"], "msg-newkeyeeeeee");
}

/// A send writes the recipient's inbox first and its own sent copy then.
/// When the relay carried the message in between, and the other machine
/// took it at once, the `taken` step came back before the sent copy was
/// there and was refused ("… sent no message …"), so `track` never showed
/// it taken (once in 43 asks, on a loaded machine). The two writes are
/// made here by hand, a second apart.
#[test]
fn a_taken_step_is_kept_when_the_sent_copy_is_written_after_the_inbox() {
    let Some(bin) = server_bin("taken step and a late sent copy") else {
        return;
    };
    let server = Server::start(&bin, "");
    let (a, b) = two_machines(&server, &[]);
    let (app, app_id) = a.session("app");
    let (lib, lib_id) = b.session("library");
    a.wait_for_peer(&app, &lib_id, "b");
    b.wait_for_peer(&lib, &app_id, "a");
    let listener = b
        .world
        .cmd(&lib)
        .args(["run", "listen", "--timeout", "60"])
        .spawn();
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let id = "msg-latecopyaaaa";
    let message = |status: &str| {
        serde_json::json!({
            "id": id, "from": app_id, "to": lib_id, "type": "query", "timestamp": now,
            "status": status, "content": "late copy", "inReplyTo": null,
            "metadata": {"urgency": "normal", "fromProject": "app"},
        })
        .to_string()
    };
    let inbox = a.world.session_dir(&lib_id).join("inbox");
    std::fs::write(inbox.join(format!(".{id}.tmp")), message("pending")).unwrap();
    std::fs::rename(
        inbox.join(format!(".{id}.tmp")),
        inbox.join(format!("{id}.json")),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let outbox = a.world.session_dir(&app_id).join("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::write(outbox.join(format!(".{id}.tmp")), message("sent")).unwrap();
    std::fs::rename(
        outbox.join(format!(".{id}.tmp")),
        outbox.join(format!("{id}.json")),
    )
    .unwrap();
    let out = listener.wait_with_output().unwrap();
    let (fields, _) = parse_listen(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(fields["MESSAGE_ID"], id);
    let taken = wait_until(Duration::from_secs(20), || {
        a.world
            .cmd(&app)
            .args(["run", "track", id])
            .ok()
            .contains("taken by")
    });
    let log = a.relay_log();
    assert!(
        taken,
        "{}\n{log}",
        a.world.cmd(&app).args(["run", "track", id]).ok()
    );
    assert!(!log.contains("sent no message"), "{log}");
}

#[test]
fn the_relay_speaks_tls_with_a_private_ca_and_refuses_an_unknown_one() {
    let Some(bin) = server_bin("TLS") else {
        return;
    };
    if !crate::util::on_path("openssl") {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "openssl is missing"
        );
        eprintln!("skipped: the TLS test needs openssl");
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=team CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=relay",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=other CA",
        "-keyout",
        "other.key",
        "-out",
        "other.pem",
    ]);
    let config = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    );
    let server = Server::start(&bin, &config);
    let url = format!("tls://127.0.0.1:{}", server.port);
    let ca = dir.join("ca.pem");
    let mut a = Machine::new("a");
    let mut b = Machine::new("b");
    introduce(&[&a, &b]);
    a.start_relay(&url, &["--tls-ca", ca.to_str().unwrap()]);
    b.start_relay(&url, &["--tls-ca", ca.to_str().unwrap()]);
    a.wait_connected();
    b.wait_connected();
    let (app, _) = a.session("app");
    let (lib, lib_id) = b.session("library");
    a.wait_for_peer(&app, &lib_id, "b");
    let id = a
        .world
        .cmd(&app)
        .args(["run", "send", &lib_id, "query", "over TLS"])
        .ok();
    let (fields, content) = listen(&b, &lib);
    assert_eq!(
        (fields["MESSAGE_ID"].as_str(), content.as_str()),
        (id.trim(), "over TLS")
    );

    // A relay that trusts another CA never connects, and says why.
    let mut c = Machine::new("c");
    let other = dir.join("other.pem");
    c.start_relay(&url, &["--tls-ca", other.to_str().unwrap()]);
    let refused = wait_until(Duration::from_secs(20), || {
        c.relay_log()
            .contains("check that the server's certificate is signed by that CA")
    });
    let log = c.relay_log();
    assert!(refused, "{log}");
    assert!(!log.contains("connected to the relay server"), "{log}");
    let _ = c.stop_relay();
}

#[test]
fn session_start_starts_the_configured_relay_once_per_bridge_directory() {
    let Some(bin) = server_bin("relay started by SessionStart") else {
        return;
    };
    let server = Server::start(&bin, "");
    let a = Machine::new("a");
    let project = a.world.project("app");
    let hook = |session: &str| {
        a.world
            .cmd(&project)
            .args(["hook", "session-start"])
            .env("BRIDGE_RELAY_SERVER", server.url())
            .env("BRIDGE_RELAY_MACHINE", "a")
            .env("CLAUDE_CODE_SESSION_ID", session)
            .stdin(
                serde_json::json!({
                    "session_id": session, "cwd": project, "hook_event_name": "SessionStart"
                })
                .to_string(),
            )
            .ok()
    };
    let note = hook("11111111-1111-1111-1111-111111111111");
    assert!(note.contains("bridge session"), "{note}");
    let log = a.world.bridge.join("relay.log");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(30), || read()
            .contains("connected to the relay server")),
        "{}",
        read()
    );
    // A second session of the same bridge directory: no second relay.
    hook("22222222-2222-2222-2222-222222222222");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        read().matches("bridge-host relay: machine a,").count(),
        1,
        "{}",
        read()
    );
    let holder = std::fs::read_to_string(a.world.bridge.join("relay.lock")).unwrap();
    let pid: i32 = holder.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: signalling the relay the hook started, found by its lock.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(
        wait_until(Duration::from_secs(15), || read()
            .contains("SIGTERM; stopping")),
        "{}",
        read()
    );
    // Without the setting, SessionStart starts nothing.
    let b = Machine::new("b");
    let other = b.world.project("lib");
    b.world
        .cmd(&other)
        .args(["hook", "session-start"])
        .env(
            "CLAUDE_CODE_SESSION_ID",
            "33333333-3333-3333-3333-333333333333",
        )
        .stdin(
            serde_json::json!({"session_id": "33333333-3333-3333-3333-333333333333",
                "cwd": other, "hook_event_name": "SessionStart"})
            .to_string(),
        )
        .ok();
    assert!(!b.world.bridge.join("relay.log").exists());
}

#[test]
fn the_wake_hook_wakes_an_idle_session_for_a_question_from_another_machine() {
    let Some(bin) = server_bin("wake hook across machines") else {
        return;
    };
    let server = Server::start(&bin, "");
    let (a, b) = two_machines(&server, &[]);
    let (app, _) = a.session("app");
    let lib = b.world.project("library");
    let agent = "44444444-5555-4666-8777-888888888888";
    let input = |event: &str| {
        serde_json::json!({"session_id": agent, "cwd": lib, "hook_event_name": event,
            "transcript_path": b.world.root.path().join("t.jsonl")})
        .to_string()
    };
    let hook = |args: &[&str], event: &str| {
        b.world
            .cmd(&lib)
            .args(args)
            .env("CLAUDE_CODE_SESSION_ID", agent)
            .stdin(input(event))
    };
    let note = hook(&["hook", "session-start"], "SessionStart").ok();
    let lib_id = note
        .split("this session is bridge session ")
        .nth(1)
        .and_then(|rest| rest.get(..6))
        .unwrap_or_else(|| panic!("{note}"))
        .to_string();
    a.wait_for_peer(&app, &lib_id, "b");
    // The idle session's wake hook, as the plugin runs it.
    let waiting = hook(&["hook", "wake", "--registration-grace", "10"], "Stop").spawn();
    std::thread::sleep(Duration::from_millis(500));
    a.world
        .cmd(&app)
        .args(["run", "send", &lib_id, "query", "What changed in v2?"])
        .ok();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(waiting.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the wake hook never woke")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the hook did not wake Claude: {stderr}"
    );
    assert!(stderr.contains("What changed in v2?"), "{stderr}");
    assert!(stderr.contains("Query from"), "{stderr}");
}

/// A batch of mail that listeners take while the relay is still writing
/// it. The relay used to flush each file by its inbox name, so a file a
/// listener had already claimed failed the whole batch: the server
/// delivered it again two seconds later, and the relay logged each message
/// as received before.
#[test]
fn mail_taken_while_its_batch_is_written_is_acknowledged_once() {
    let Some(bin) = server_bin("batch taken while written") else {
        return;
    };
    let server = Server::start(&bin, "");
    let (a, mut b) = two_machines(&server, &[]);
    let (app, _) = a.session("app");
    let (lib, lib_id) = b.session("library");
    a.wait_for_peer(&app, &lib_id, "b");

    // The server holds a backlog for b, which b's relay takes in one go.
    b.stop_relay();
    let sent: std::collections::BTreeSet<String> = (0..60)
        .map(|i| {
            a.world
                .cmd(&app)
                .args(["run", "send", &lib_id, "query", &format!("change {i}")])
                .ok()
                .trim()
                .to_string()
        })
        .collect();
    let relayed = wait_until(Duration::from_secs(30), || {
        let inbox = a.world.bridge.join("sessions").join(&lib_id).join("inbox");
        std::fs::read_dir(&inbox).is_ok_and(|d| {
            d.flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".json"))
        })
    });
    let left = std::fs::read_dir(a.world.bridge.join("sessions").join(&lib_id).join("inbox"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>());
    assert!(
        relayed,
        "a's relay did not carry the backlog: {left:?}\n{}",
        a.relay_log()
    );

    // Two listeners wait on b before its relay comes back, each taking
    // messages until eight seconds pass without one.
    let script = format!(
        "while {:?} run listen --timeout 8; do :; done",
        crate::util::BIN
    );
    let listeners: Vec<_> = (0..2).map(|_| b.world.sh(&lib, &script).spawn()).collect();
    std::thread::sleep(Duration::from_millis(500));
    b.start_relay(&server.url(), &[]);
    let mut taken: Vec<String> = Vec::new();
    for listener in listeners {
        let out = listener.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // Each delivery's opening tag names its message.
        taken.extend(
            text.lines()
                .filter(|line| line.starts_with("<peer-message "))
                .filter_map(|line| line.split(' ').find_map(|w| w.strip_prefix("id=")))
                .map(str::to_string),
        );
    }
    taken.sort();
    let log = b.relay_log();
    assert_eq!(
        taken,
        sent.iter().cloned().collect::<Vec<_>>(),
        "each message taken once\nrelay log:\n{log}"
    );
    assert!(
        !log.contains("received before") && !log.contains("cannot write"),
        "the batch was written once and acknowledged at once\nrelay log:\n{log}"
    );
}

#[test]
fn a_backlog_of_the_largest_messages_crosses_whole_and_in_order() {
    let Some(bin) = server_bin("largest messages") else {
        return;
    };
    let server = Server::start(&bin, "");
    let (mut a, mut b) = two_machines(&server, &[]);
    let (app, _) = a.session("app");
    let (lib, lib_id) = b.session("library");
    a.wait_for_peer(&app, &lib_id, "b");
    // Both relays down: the messages wait on machine a, then all at once
    // on the server for machine b.
    b.stop_relay();
    a.stop_relay();
    // Content at the limit, each byte escaped to six in the message file:
    // 240 MiB in all, which no single guest call could hold.
    let count = 40;
    let ids: Vec<String> = (0..count)
        .map(|n| {
            let content = format!("{n:03}{}", "\u{1}".repeat(1024 * 1024 - 3));
            a.world
                .cmd(&app)
                .args(["run", "send", &lib_id, "query", "-"])
                .stdin(content)
                .ok()
                .trim()
                .to_string()
        })
        .collect();
    a.start_relay(&server.url(), &[]);
    let relayed = wait_until(Duration::from_secs(120), || {
        a.world
            .cmd(&app)
            .args(["run", "track", &ids[count - 1]])
            .ok()
            .contains("relayed")
    });
    assert!(relayed, "{}", a.relay_log());
    b.start_relay(&server.url(), &[]);
    for (n, id) in ids.iter().enumerate() {
        let text = b
            .world
            .cmd(&lib)
            .args(["run", "listen", "--timeout", "60"])
            .ok();
        let (fields, content) = parse_listen(&text);
        assert_eq!(
            (fields["MESSAGE_ID"].as_str(), content.get(..3)),
            (id.as_str(), Some(format!("{n:03}").as_str())),
            "machine a's relay:\n{}\nmachine b's relay:\n{}",
            a.relay_log(),
            b.relay_log()
        );
        // Shown with its control bytes escaped; kept exact in read/.
        let _ = content;
        let kept: Value = serde_json::from_slice(
            &std::fs::read(
                b.world
                    .session_dir(&lib_id)
                    .join("inbox")
                    .join("read")
                    .join(format!("{id}.json")),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            kept["content"].as_str().unwrap().len(),
            1024 * 1024,
            "message {n}"
        );
    }
    let empty = b.world.cmd(&lib).args(["run", "check-inbox"]).ok();
    assert_eq!(empty.trim(), "No new messages.");
    // Nothing was refused or sent twice on the way.
    for log in [a.relay_log(), b.relay_log()] {
        assert!(!log.contains("cannot write"), "{log}");
        assert!(!log.contains("disconnected"), "{log}");
    }
}

/// Three servers in a cluster, relays started without `--replicas`: the
/// streams and the bucket get 3 replicas. While machine a sends to b, the
/// node leading b's mail stream is killed and stays down: mail goes on
/// arriving during the outage, and every message arrives once.
#[test]
fn mail_flows_through_the_loss_of_the_node_leading_a_stream() {
    let Some(bin) = server_bin("cluster node loss") else {
        return;
    };
    let mut cluster = Cluster::start(&bin, 3);
    let urls = cluster.urls();
    let mut a = Machine::new("a");
    let mut b = Machine::new("b");
    introduce(&[&a, &b]);
    a.start_relay(&urls, &[]);
    b.start_relay(&urls, &[]);
    a.wait_connected();
    b.wait_connected();
    let (app, _) = a.session("app");
    let (lib, lib_id) = b.session("library");
    a.wait_for_peer(&app, &lib_id, "b");
    // Which node leads b's stream, and how many keep it.
    let admin_url = cluster.nodes[0].url();
    let stream_state = |url: &str| {
        raw_client(url, async_nats::ConnectOptions::new(), async |client| {
            let js = async_nats::jetstream::new(client);
            let mut replicas = Vec::new();
            for name in ["bridge-mail-b", "bridge-mail-a", "KV_bridge-presence"] {
                let mut stream = js.get_stream(name).await.unwrap();
                let info = stream.info().await.unwrap();
                replicas.push(info.config.num_replicas);
            }
            let mut stream = js.get_stream("bridge-mail-b").await.unwrap();
            let leader = stream
                .info()
                .await
                .unwrap()
                .cluster
                .as_ref()
                .and_then(|c| c.leader.clone())
                .unwrap();
            (replicas, leader)
        })
    };
    let (replicas, leader) = stream_state(&admin_url);
    assert_eq!(replicas, [3, 3, 3]);
    let leader: usize = leader.trim_start_matches('n').parse::<usize>().unwrap() - 1;

    let total = 90;
    let kill_after = 30;
    let taken = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let listening = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let listener = {
        let (taken, listening) = (taken.clone(), listening.clone());
        std::thread::spawn(move || {
            while listening.load(std::sync::atomic::Ordering::Acquire) {
                let cmd = b.world.cmd(&lib).args(["run", "listen", "--timeout", "3"]);
                let out = cmd.spawn().wait_with_output().unwrap();
                if out.status.success() {
                    let (fields, _) = parse_listen(&String::from_utf8_lossy(&out.stdout));
                    taken.lock().unwrap().push(fields["MESSAGE_ID"].clone());
                }
            }
            b
        })
    };
    let mut sent = Vec::new();
    for n in 0..total {
        if n == kill_after {
            cluster.nodes[leader].kill();
        }
        let id = a
            .world
            .cmd(&app)
            .args(["run", "send", &lib_id, "query", &format!("n{n}")])
            .ok()
            .trim()
            .to_string();
        sent.push(id);
    }
    // All arrive while the node is still down.
    let all = wait_until(Duration::from_secs(120), || {
        taken.lock().unwrap().len() >= total
    });
    // A little longer, so that a late duplicate would be counted.
    std::thread::sleep(Duration::from_secs(3));
    listening.store(false, std::sync::atomic::Ordering::Release);
    let b = listener.join().unwrap();
    let taken = taken.lock().unwrap().clone();
    let mut unique = taken.clone();
    unique.sort();
    unique.dedup();
    let lost: Vec<&String> = sent.iter().filter(|id| !unique.contains(id)).collect();
    assert!(
        all && lost.is_empty() && unique.len() == taken.len(),
        "sent {}, taken {} ({} unique), lost {lost:?}\nmachine a's relay:\n{}\nmachine b's relay:\n{}",
        sent.len(),
        taken.len(),
        unique.len(),
        a.relay_log(),
        b.relay_log()
    );
    // The outage was not mistaken for a machine that never came.
    assert!(!a.relay_log().contains("may never have connected"));
}

/// A credentials file that is not one is refused before anything
/// connects, naming the line at fault and what to do, not with a hint
/// about TLS after a failed handshake. `nk`'s output (a seed, then its
/// public key) is accepted: the documented configuration's test uses it.
#[test]
fn a_credentials_file_that_is_not_one_is_refused_with_what_is_wrong() {
    let a = Machine::new("a");
    let dir = a.world.root.path();
    let (_, public) = keygen(dir, "real");
    let cases = [
        (
            "garbage.nk",
            "not a key\n".to_string(),
            "line 1 of",
            "is neither an nkey user seed (SU...) nor its public key (U...)",
        ),
        (
            "public-only.nk",
            format!("{public}\n"),
            "holds no nkey user seed",
            "bridge-host relay keygen --out FILE",
        ),
        (
            "account.nk",
            format!("{}\n", nkeys::KeyPair::new_account().seed().unwrap()),
            "line 1 of",
            "is an account, operator, server or cluster seed, not a user seed",
        ),
        (
            "mixed.nk",
            format!("{}\n{public}\n", nkeys::KeyPair::new_user().seed().unwrap()),
            "line 2 of",
            "but the seed's public key is",
        ),
    ];
    for (name, text, first, second) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let out = a
            .world
            .cmd(dir)
            .args([
                "relay",
                "--server",
                "nats://127.0.0.1:9",
                "--machine",
                "a",
                "--creds",
                path.to_str().unwrap(),
            ])
            .output()
            .0;
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {said}");
        assert!(
            said.contains(first) && said.contains(second),
            "{name}: {said}"
        );
        assert!(
            !said.contains("tls") && !said.contains("nonce"),
            "{name}: {said}"
        );
    }
}

/// The roster in docs/relay.md, as written, is trusted whole; a roster
/// with a bad line is refused whole, naming the line, and changes nothing.
#[test]
fn the_documented_roster_is_trusted_whole_and_a_bad_line_changes_nothing() {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join("relay.md"),
    )
    .unwrap();
    let section = &page[page
        .find("#### The team's roster")
        .expect("the roster section")..];
    let start = section.find("```\n").expect("the roster block") + 4;
    let block = &section[start..];
    let block = &block[..block.find("```").unwrap()];
    let a = Machine::new("a");
    let dir = a.world.root.path();
    let file = dir.join("team-roster.txt");
    std::fs::write(&file, block).unwrap();
    let trust = |path: &Path| {
        a.world
            .cmd(dir)
            .args(["relay", "trust", "--roster", path.to_str().unwrap()])
            .output()
            .0
    };
    let out = trust(&file);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    let keys = a.world.bridge.join("relay-keys");
    for line in block
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut fields = line.split_whitespace();
        let (machine, key) = (fields.next().unwrap(), fields.next().unwrap());
        assert!(
            said.contains(&format!("machine {machine}'s key is now {key}")),
            "{said}"
        );
        let pinned = std::fs::read_to_string(keys.join(format!("{machine}.pub"))).unwrap();
        assert_eq!(pinned.trim(), key);
    }
    // Again: nothing changes, and it says so.
    let again = String::from_utf8_lossy(&trust(&file).stdout).into_owned();
    assert!(again.contains("key was U"), "{again}");
    // A bad line anywhere: refused whole, and the new machine is not trusted.
    let bad = dir.join("bad-roster.txt");
    std::fs::write(
        &bad,
        format!("{block}newbox {}\nlaptop\n", a.relay_key(&[])),
    )
    .unwrap();
    let out = trust(&bad);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not `MACHINE KEY`") && err.contains("bad-roster.txt"),
        "{err}"
    );
    assert!(!keys.join("newbox.pub").exists());
}
