//! Wire compatibility with the original bash + jq plugin, both ways.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::util::{World, answer_script, parse_listen, parse_reply};

const ORIGINAL: &str = "a1b2c3";

fn fixture(name: &str, to: &str, query: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/original")
        .join(name);
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    std::fs::read_to_string(path)
        .unwrap()
        .replace("{{NOW}}", &now)
        .replace("{{TO}}", to)
        .replace("{{QUERY}}", query)
}

/// Lays out a session as the original's scripts do.
fn original_session(w: &World) {
    let dir = w.session_dir(ORIGINAL);
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    std::fs::create_dir_all(dir.join("outbox")).unwrap();
    std::fs::write(dir.join("manifest.json"), fixture("manifest.json", "", "")).unwrap();
}

/// Writes like the original: a temporary file, then a rename.
fn deliver_like_original(w: &World, to: &str, id: &str, text: &str) {
    let inbox = w.session_dir(to).join("inbox");
    let temp = inbox.join(format!("{id}.json.tmp"));
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(temp, inbox.join(format!("{id}.json"))).unwrap();
}

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

fn is_wire_stamp(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'Z'
}

fn is_id(text: &str, prefix: &str, len: usize) -> bool {
    text.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == len
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// Asserts `value` is a message with exactly the original's fields, in the
/// original's order, with the original's types.
fn assert_original_message_shape(value: &Value) {
    assert_eq!(
        keys(value),
        [
            "id",
            "from",
            "to",
            "type",
            "timestamp",
            "status",
            "content",
            "inReplyTo",
            "metadata"
        ],
        "{value}"
    );
    assert!(is_id(value["id"].as_str().unwrap(), "msg-", 12), "{value}");
    assert!(is_id(value["from"].as_str().unwrap(), "", 6), "{value}");
    assert!(is_id(value["to"].as_str().unwrap(), "", 6), "{value}");
    assert!(
        ["query", "response", "ping", "session-ended"].contains(&value["type"].as_str().unwrap())
    );
    assert!(
        is_wire_stamp(value["timestamp"].as_str().unwrap()),
        "{value}"
    );
    assert!(value["status"].is_string());
    assert!(value["content"].is_string());
    assert!(value["inReplyTo"].is_null() || value["inReplyTo"].is_string());
    assert_eq!(keys(&value["metadata"]), ["urgency", "fromProject"]);
    assert!(value["metadata"]["urgency"].is_string());
    assert!(value["metadata"]["fromProject"].is_string());
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.ends_with(b"}\n"), "ends with a newline, as jq writes");
    serde_json::from_slice(&bytes).unwrap()
}

fn json_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn manifests_have_exactly_the_original_fields() {
    let w = World::new();
    let lib = w.project("my-library");
    let id = w.start(&lib);
    let manifest = read_json(&w.session_dir(&id).join("manifest.json"));
    assert_eq!(
        keys(&manifest),
        [
            "sessionId",
            "projectName",
            "projectPath",
            "startedAt",
            "lastHeartbeat",
            "status",
            "capabilities"
        ]
    );
    assert_eq!(manifest["sessionId"], id.as_str());
    assert_eq!(manifest["projectName"], "my-library");
    assert_eq!(manifest["projectPath"], lib.to_str().unwrap());
    assert!(is_wire_stamp(manifest["startedAt"].as_str().unwrap()));
    assert!(is_wire_stamp(manifest["lastHeartbeat"].as_str().unwrap()));
    assert_eq!(manifest["status"], "active");
    assert_eq!(
        manifest["capabilities"],
        serde_json::json!(["query", "context-dump", "conversation"])
    );
}

#[test]
fn an_original_session_asks_and_bridge_host_answers() {
    let w = World::new();
    let lib = w.project("my-library");
    let me = w.start(&lib);
    original_session(&w);

    let peers = w.cmd(&lib).args(["run", "peers"]).ok();
    let row = peers.lines().find(|l| l.starts_with(ORIGINAL)).unwrap();
    assert!(row.contains("my-app") && row.contains("active"), "{peers}");

    deliver_like_original(&w, &me, "msg-0dzhx0wgcik9", &fixture("query.json", &me, ""));
    let out = w.cmd(&lib).args(["run", "listen", "--timeout", "5"]).ok();
    let (fields, content) = parse_listen(&out);
    assert_eq!(
        fields["FIRST_LINE"],
        format!(
            "Query from {ORIGINAL} \"my-app\". Answer with this command, your answer in place \
             of <answer>:"
        )
    );
    assert!(
        answer_script(&out, "x").starts_with("bridge-host run reply msg-0dzhx0wgcik9 - <<'"),
        "{out}"
    );
    assert_eq!(
        (
            &fields["TO_ID"][..],
            &fields["TYPE"][..],
            &fields["IN_REPLY_TO"][..]
        ),
        (&me[..], "query", "")
    );
    assert_eq!(content, "What breaking changes did you make?");

    let reply_id = w
        .cmd(&lib)
        .args(["run", "reply", "msg-0dzhx0wgcik9", "init() is setup() now"])
        .ok();
    let reply_id = reply_id.trim();
    // Where the original's asker looks: its inbox, status pending.
    let delivered = read_json(
        &w.session_dir(ORIGINAL)
            .join("inbox")
            .join(format!("{reply_id}.json")),
    );
    assert_original_message_shape(&delivered);
    assert_eq!(delivered["id"], reply_id);
    assert_eq!(delivered["from"], me.as_str());
    assert_eq!(delivered["to"], ORIGINAL);
    assert_eq!(delivered["type"], "response");
    assert_eq!(delivered["status"], "pending");
    assert_eq!(delivered["inReplyTo"], "msg-0dzhx0wgcik9");
    assert_eq!(delivered["content"], "init() is setup() now");
    assert_eq!(delivered["metadata"]["urgency"], "normal");
    assert_eq!(delivered["metadata"]["fromProject"], "my-library");

    let copy = read_json(
        &w.session_dir(&me)
            .join("outbox")
            .join(format!("{reply_id}.json")),
    );
    assert_original_message_shape(&copy);
    assert_eq!(copy["status"], "sent");

    // The query, once taken, leaves the inbox the original scans, and is
    // kept as it arrived.
    let taken = read_json(&w.session_dir(&me).join("inbox/read/msg-0dzhx0wgcik9.json"));
    assert_original_message_shape(&taken);
    assert!(
        !w.session_dir(&me)
            .join("inbox/msg-0dzhx0wgcik9.json")
            .exists()
    );
}

#[test]
fn bridge_host_asks_and_an_original_session_answers() {
    let w = World::new();
    let lib = w.project("my-library");
    let me = w.start(&lib);
    original_session(&w);

    let asker = w
        .cmd(&lib)
        .args([
            "run",
            "ask",
            ORIGINAL,
            "Did the API change?",
            "--timeout",
            "30",
        ])
        .spawn();
    let their_inbox = w.session_dir(ORIGINAL).join("inbox");
    let deadline = Instant::now() + Duration::from_secs(20);
    let query_path = loop {
        if let Some(path) = json_files(&their_inbox).into_iter().next() {
            break path;
        }
        assert!(Instant::now() < deadline, "the query never arrived");
        std::thread::sleep(Duration::from_millis(20));
    };
    let query = read_json(&query_path);
    assert_original_message_shape(&query);
    assert_eq!(query["type"], "query");
    assert_eq!(query["status"], "pending");
    assert!(query["inReplyTo"].is_null());
    let query_id = query["id"].as_str().unwrap();
    assert_eq!(
        query_path.file_name().unwrap().to_str().unwrap(),
        format!("{query_id}.json")
    );

    deliver_like_original(
        &w,
        &me,
        "msg-r3sp0ns3x0x1",
        &fixture("response.json", &me, query_id),
    );
    let out = asker.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        parse_reply(&String::from_utf8(out.stdout).unwrap()),
        (
            "my-app".to_string(),
            "We renamed init() to setup().".to_string()
        )
    );
}

#[test]
fn an_original_ping_is_answered_with_a_ping() {
    let w = World::new();
    let lib = w.project("my-library");
    let me = w.start(&lib);
    original_session(&w);
    deliver_like_original(&w, &me, "msg-p1ngp1ngp1ng", &fixture("ping.json", &me, ""));
    let out = w.cmd(&lib).args(["run", "listen", "--timeout", "5"]).ok();
    let (fields, content) = parse_listen(&out);
    assert_eq!(
        (fields["TYPE"].as_str(), content.as_str()),
        ("ping", "connected")
    );
    let answers = json_files(&w.session_dir(ORIGINAL).join("inbox"));
    assert_eq!(answers.len(), 1);
    let pong = read_json(&answers[0]);
    assert_original_message_shape(&pong);
    assert_eq!(pong["type"], "ping");
    assert_eq!(pong["inReplyTo"], "msg-p1ngp1ngp1ng");

    // The original counts connected peers from pings in its inbox; we count
    // ours the same way.
    let status = w.cmd(&lib).args(["run", "status"]).json();
    assert_eq!(status["connected"][0]["sessionId"], ORIGINAL);
}

/// A message as the original leaves it once taken: still in `inbox/`,
/// rewritten with `"status": "read"`.
fn marked_read_by_original(id: &str, from: &str, to: &str) -> String {
    fixture("query.json", to, "")
        .replace("msg-0dzhx0wgcik9", id)
        .replace(
            &format!("\"from\": \"{ORIGINAL}\""),
            &format!("\"from\": \"{from}\""),
        )
        .replace("\"status\": \"pending\"", "\"status\": \"read\"")
}

/// Pending message files under `inbox/`, counted as the original's
/// instructions count them: every `*.json` below it, however deep, whose
/// status is pending.
fn pending_counted_recursively(inbox: &Path) -> usize {
    let mut count = 0;
    let mut dirs = vec![inbox.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                count += usize::from(text.contains("\"status\": \"pending\""));
            }
        }
    }
    count
}

#[test]
fn a_pending_message_behind_the_originals_read_backlog_is_delivered_at_once() {
    // The project still points at the session the original registered, and
    // its inbox holds what the original took, marked read in place: users
    // report 1,352 such files.
    const READ_BY_ORIGINAL: usize = 1_400;
    let w = World::new();
    let app = w.project("my-app");
    let lib = w.project("my-library");
    let lib_id = w.start(&lib);
    original_session(&w);
    std::fs::create_dir_all(app.join(".claude")).unwrap();
    std::fs::write(app.join(".claude/bridge-session"), ORIGINAL).unwrap();
    let inbox = w.session_dir(ORIGINAL).join("inbox");
    for i in 0..READ_BY_ORIGINAL {
        let id = format!("msg-r{i:011}");
        std::fs::write(
            inbox.join(format!("{id}.json")),
            marked_read_by_original(&id, &lib_id, ORIGINAL),
        )
        .unwrap();
    }
    let sent = w
        .cmd(&lib)
        .args(["run", "send", ORIGINAL, "query", "still there?"])
        .ok();

    let out = w.cmd(&app).args(["run", "listen", "--timeout", "5"]).ok();
    let (fields, content) = parse_listen(&out);
    assert_eq!(
        (fields["MESSAGE_ID"].as_str(), content.as_str()),
        (sent.trim(), "still there?")
    );
    // The read files were moved aside in that one look, every one of them:
    // nothing but pending messages is left where looks list.
    assert_eq!(json_files(&inbox).len(), 0, "read files left in the inbox");
    assert_eq!(json_files(&inbox.join("read")).len(), READ_BY_ORIGINAL + 1);
    w.cmd(&app)
        .args(["run", "listen", "--timeout", "1"])
        .fails();
}

#[test]
fn a_taken_message_is_kept_marked_read_and_otherwise_as_it_arrived() {
    let w = World::new();
    let lib = w.project("my-library");
    let me = w.start(&lib);
    original_session(&w);
    // A field a newer peer might add stays on disk.
    let arrived = fixture("query.json", &me, "").replace(
        "  \"metadata\": {",
        "  \"x-trace\": \"kept\",\n  \"metadata\": {",
    );
    deliver_like_original(&w, &me, "msg-0dzhx0wgcik9", &arrived);
    let inbox = w.session_dir(&me).join("inbox");
    assert_eq!(pending_counted_recursively(&inbox), 1);

    w.cmd(&lib).args(["run", "listen", "--timeout", "5"]).ok();
    let kept = std::fs::read_to_string(inbox.join("read/msg-0dzhx0wgcik9.json")).unwrap();
    // Marked in place: `"read"` and three spaces where `"pending"` was.
    assert_eq!(
        kept,
        arrived.replace("\"status\": \"pending\"", "\"status\": \"read\"   ")
    );
    let parsed: serde_json::Value = serde_json::from_str(&kept).unwrap();
    assert_eq!(parsed["status"], "read");
    assert_eq!(pending_counted_recursively(&inbox), 0);
    assert_eq!(std::fs::read_dir(inbox.join("claimed")).unwrap().count(), 0);
}

#[test]
fn an_original_message_answering_a_malformed_id_is_shown_without_it() {
    let w = World::new();
    let lib = w.project("my-library");
    let me = w.start(&lib);
    original_session(&w);
    // The original's own tests send replies to `msg-original-123`.
    let odd = fixture("response.json", &me, "msg-original-123");
    deliver_like_original(&w, &me, "msg-r3sp0ns3x0x1", &odd);

    let (output, description) = w
        .cmd(&lib)
        .args(["run", "listen", "--timeout", "5"])
        .output();
    assert!(output.status.success(), "{description}");
    let (fields, content) = parse_listen(&String::from_utf8(output.stdout).unwrap());
    assert_eq!(content, "We renamed init() to setup().");
    assert_eq!(fields["FROM_ID"], ORIGINAL);
    assert_eq!(fields["IN_REPLY_TO"], "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("\"msg-original-123\"") && stderr.contains("without that reference"),
        "{description}"
    );
    let rejected = w.session_dir(&me).join("inbox/rejected");
    assert!(
        !rejected.exists() || std::fs::read_dir(&rejected).unwrap().count() == 0,
        "{description}"
    );
}
