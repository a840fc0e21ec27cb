//! Conversations as users have them.

use std::process::Child;

use crate::util::{World, answer_command, parse_listen, parse_reply};

fn finish(child: Child) -> (i32, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Listens once in `project` and returns (header fields, content); the
/// whole text is the field `TEXT`.
fn listen(
    w: &World,
    project: &std::path::Path,
) -> (std::collections::BTreeMap<String, String>, String) {
    let out = w
        .cmd(project)
        .args(["run", "listen", "--timeout", "20"])
        .ok();
    let (mut fields, content) = parse_listen(&out);
    fields.insert("TEXT".into(), out);
    (fields, content)
}

#[test]
fn a_query_is_answered_by_the_listening_session() {
    let w = World::new();
    let lib = w.project("my-library");
    let app = w.project("my-app");
    let lib_id = w.start(&lib);
    let app_id = w.start(&app);
    assert_ne!(lib_id, app_id);

    let connected = w.cmd(&app).args(["run", "connect", &lib_id]).ok();
    assert_eq!(
        connected,
        format!(
            "Connected to 'my-library' ({lib_id}) at {}\n",
            lib.display()
        )
    );
    let (ping, content) = listen(&w, &lib);
    assert_eq!(ping["TYPE"], "ping");
    assert_eq!(ping["FROM_ID"], app_id);
    assert_eq!(ping["TO_ID"], lib_id);
    assert_eq!(ping["FROM_PROJECT"], "my-app");
    assert_eq!(content, "connected");

    let asker = w
        .cmd(&app)
        .args([
            "run",
            "ask",
            &lib_id,
            "what changed in v2?",
            "--timeout",
            "30",
        ])
        .spawn();
    let (query, question) = listen(&w, &lib);
    assert_eq!(query["TYPE"], "query");
    assert_eq!(query["IN_REPLY_TO"], "");
    assert_eq!(question, "what changed in v2?");
    let answer_id = w
        .cmd(&lib)
        .args(["run", "reply", &query["MESSAGE_ID"], "foo() is now bar()"])
        .ok();
    assert!(answer_id.starts_with("msg-"), "{answer_id}");

    let (code, stdout, stderr) = finish(asker);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        parse_reply(&stdout),
        ("my-library".to_string(), "foo() is now bar()".to_string())
    );
}

#[test]
fn the_clarification_loop_keeps_one_thread_from_question_to_answer() {
    let w = World::new();
    let lib = w.project("lib");
    let app = w.project("app");
    let lib_id = w.start(&lib);
    let app_id = w.start(&app);

    // The app asks; the library asks back instead of answering.
    let first = w
        .cmd(&app)
        .args([
            "run",
            "ask",
            &lib_id,
            "how do I migrate?",
            "--timeout",
            "30",
        ])
        .spawn();
    let (q1, _) = listen(&w, &lib);
    assert_eq!(q1["IN_REPLY_TO"], "");
    let asked_back = w
        .cmd(&lib)
        .args(["run", "reply", &q1["MESSAGE_ID"], "From which version?"])
        .ok();
    let (code, stdout, stderr) = finish(first);
    assert_eq!(code, 0, "{stderr}");
    let (back, text) = parse_listen(&stdout);
    assert_eq!(text, "From which version?");
    assert_eq!(back["MESSAGE_ID"], asked_back.trim());
    assert_eq!(back["IN_REPLY_TO"], q1["MESSAGE_ID"]);
    assert_eq!(
        back["FIRST_LINE"],
        format!(
            "Reply from {lib_id} \"lib\" to your query {}. If it asks you something, answer \
             with this command, your answer in place of <answer>:",
            q1["MESSAGE_ID"]
        )
    );

    // The app answers with the command the reply gives; the library sees
    // the answer as the follow-up to its own question.
    let (words, input) = answer_command(&stdout, "from 1.4");
    let second = w
        .cmd(&app)
        .args(&words)
        .args(["--timeout", "30"])
        .stdin(input)
        .spawn();
    let (q2, text) = listen(&w, &lib);
    assert_eq!(text, "from 1.4");
    assert_eq!(q2["FROM_ID"], app_id);
    assert_eq!(q2["IN_REPLY_TO"], asked_back.trim());
    assert_eq!(
        q2["FIRST_LINE"],
        format!(
            "Query from {app_id} \"app\", following up on {}. Answer with this command, your \
             answer in place of <answer>:",
            asked_back.trim(),
        )
    );
    let (words, input) = answer_command(&q2["TEXT"], "Rename init() to setup().");
    assert_eq!(words[..3], ["run", "reply", q2["MESSAGE_ID"].as_str()]);
    w.cmd(&lib).args(&words).stdin(input).ok();
    let (code, stdout, _) = finish(second);
    assert_eq!(code, 0);
    let (answer, text) = parse_listen(&stdout);
    assert_eq!(text, "Rename init() to setup().");
    assert_eq!(answer["IN_REPLY_TO"], q2["MESSAGE_ID"]);
}

#[test]
fn check_inbox_takes_a_waiting_message_without_waiting() {
    let w = World::new();
    let lib = w.project("lib");
    let app = w.project("app");
    let lib_id = w.start(&lib);
    let app_id = w.start(&app);
    let check = || w.cmd(&lib).args(["run", "check-inbox"]).ok();

    assert_eq!(check(), "No new messages.\n");
    let query = w
        .cmd(&app)
        .args(["run", "send", &lib_id, "query", "which version?"])
        .ok();
    let shown = check();
    let (fields, content) = parse_listen(&shown);
    assert_eq!(content, "which version?");
    assert_eq!(
        fields["FIRST_LINE"],
        format!(
            "Query from {app_id} \"app\". Answer with this command, your answer in place of \
             <answer>:"
        )
    );
    let (words, _) = answer_command(&shown, "2.1");
    assert_eq!(words[..4], ["run", "reply", query.trim(), "-"]);
    // Taken: the next check finds nothing, and the command it gave answers.
    assert_eq!(check(), "No new messages.\n");
    w.cmd(&lib).args(["run", "reply", query.trim(), "2.1"]).ok();
    let got = w
        .cmd(&app)
        .args(["run", "receive", query.trim(), "--timeout", "5"])
        .ok();
    assert_eq!(parse_reply(&got), ("lib".to_string(), "2.1".to_string()));
}

#[test]
fn three_sessions_each_get_their_own_answer() {
    let w = World::new();
    let hub = w.project("hub");
    let left = w.project("left");
    let right = w.project("right");
    let hub_id = w.start(&hub);
    let left_id = w.start(&left);
    let right_id = w.start(&right);

    let ask_left = w
        .cmd(&left)
        .args([
            "run",
            "ask",
            &hub_id,
            "question from left",
            "--timeout",
            "30",
        ])
        .spawn();
    let ask_right = w
        .cmd(&right)
        .args([
            "run",
            "ask",
            &hub_id,
            "question from right",
            "--timeout",
            "30",
        ])
        .spawn();
    for _ in 0..2 {
        let (q, text) = listen(&w, &hub);
        let expected_sender = if text.ends_with("left") {
            &left_id
        } else {
            &right_id
        };
        assert_eq!(&q["FROM_ID"], expected_sender);
        w.cmd(&hub)
            .args([
                "run",
                "reply",
                &q["MESSAGE_ID"],
                &format!("answer for {text}"),
            ])
            .ok();
    }
    assert_eq!(
        parse_reply(&finish(ask_left).1),
        (
            "hub".to_string(),
            "answer for question from left".to_string()
        )
    );
    assert_eq!(
        parse_reply(&finish(ask_right).1),
        (
            "hub".to_string(),
            "answer for question from right".to_string()
        )
    );

    // A direct message between the two spokes goes only to its addressee.
    w.cmd(&left)
        .args(["run", "send", &right_id, "query", "hello right"])
        .ok();
    let (m, text) = listen(&w, &right);
    assert_eq!(
        (m["FROM_ID"].as_str(), text.as_str()),
        (left_id.as_str(), "hello right")
    );
    let (_, stderr) = w
        .cmd(&hub)
        .args(["run", "listen", "--timeout", "1"])
        .fails();
    assert_eq!(stderr, "", "a listen timeout prints nothing");
}

#[test]
fn stop_notifies_peers_and_removes_only_this_session() {
    let w = World::new();
    let a = w.project("alpha");
    let b = w.project("beta");
    let a_id = w.start(&a);
    let b_id = w.start(&b);
    w.cmd(&a).args(["run", "connect", &b_id]).ok();
    listen(&w, &b); // the ping

    let stopped = w.cmd(&a).args(["run", "stop"]).ok();
    assert!(
        stopped.contains(&format!("Session {a_id} stopped.")),
        "{stopped}"
    );
    assert!(stopped.contains(&format!("Notified: {b_id}")), "{stopped}");
    assert!(!w.session_dir(&a_id).exists());
    assert!(!a.join(".claude/bridge-session").exists());

    // Status names the ended peer...
    let status = w.cmd(&b).args(["run", "status"]).ok();
    assert!(
        status.contains(&format!("{a_id} \"alpha\" ended its session at ")),
        "{status}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&w.cmd(&b).args(["run", "status", "--json"]).ok()).unwrap();
    assert_eq!(status["ended"][0]["from"], a_id.as_str());
    assert_eq!(status["ended"][0]["content"], "Session ended");
    // ...and the next real message carries it.
    let c = w.project("gamma");
    let c_id = w.start(&c);
    w.cmd(&c)
        .args(["run", "send", &b_id, "query", "still there?"])
        .ok();
    let heard = w.cmd(&b).args(["run", "listen", "--timeout", "20"]).ok();
    assert!(
        heard.starts_with(&format!("Query from {c_id} \"gamma\"")),
        "{heard}"
    );
    assert!(
        heard.contains(&format!("Also: {a_id} \"alpha\" ended its session at ")),
        "{heard}"
    );
    // With nothing else pending, a listener someone watches is told that a
    // peer left, instead of waiting on for it.
    w.cmd(&c).args(["run", "stop"]).ok();
    let heard = w.cmd(&b).args(["run", "listen", "--timeout", "20"]).ok();
    assert!(
        heard.starts_with(&format!(
            "{c_id} \"gamma\" ended its session. Nothing to answer.\n"
        )),
        "{heard}"
    );
    assert_eq!(
        w.cmd(&b).args(["run", "check-inbox"]).ok(),
        "No new messages.\n"
    );
    assert_eq!(w.cmd(&b).args(["run", "id"]).ok().trim(), b_id);

    let (_, stderr) = w.cmd(&a).args(["run", "id"]).fails();
    assert!(stderr.contains("bridge-host run start"), "{stderr}");
}

#[test]
fn a_session_can_register_again_after_stop() {
    let w = World::new();
    let a = w.project("alpha");
    let b = w.project("beta");
    let first = w.start(&a);
    let b_id = w.start(&b);
    w.cmd(&a).args(["run", "stop"]).ok();
    let second = w.start(&a);
    assert_ne!(first, second);
    assert_eq!(w.cmd(&a).args(["run", "id"]).ok().trim(), second);
    w.cmd(&a)
        .args(["run", "send", &b_id, "query", "back again"])
        .ok();
    let (m, _) = listen(&w, &b);
    assert_eq!(m["FROM_ID"], second);

    // The same ID can be taken again explicitly.
    w.cmd(&a).args(["run", "stop"]).ok();
    let again = w.cmd(&a).args(["run", "start", "--session", &first]).ok();
    assert_eq!(again.trim(), first);
    assert!(w.session_dir(&first).join("manifest.json").is_file());
}

#[test]
fn content_can_come_from_standard_input() {
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    w.start(&a);
    let b_id = w.start(&b);
    let awkward = "line one\n'quotes' \"double\" $(not a command) `tick`\n\ttabbed -- --flag";
    // One final line break (the one a here-document or `echo` adds) is not
    // part of the text; a second one is.
    for (input, sent) in [
        (format!("{awkward}\n"), awkward.to_string()),
        (awkward.to_string(), awkward.to_string()),
        (format!("{awkward}\n\n"), format!("{awkward}\n")),
        (format!("{awkward}\r\n"), format!("{awkward}\r")),
    ] {
        w.cmd(&a)
            .args(["run", "send", &b_id, "query", "-"])
            .stdin(input)
            .ok();
        let out = w
            .cmd(&b)
            .args(["run", "listen", "--timeout", "20", "--json"])
            .ok();
        let delivered: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(delivered["message"]["content"], sent.as_str());
    }
}

#[test]
fn json_output_is_one_object_per_verb() {
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    let a_id = w.start(&a);
    let b_id = w.start(&b);

    let id = w.cmd(&a).args(["run", "id"]).json();
    assert_eq!(id["sessionId"], a_id);
    let connect = w.cmd(&a).args(["run", "connect", &b_id]).json();
    assert_eq!(connect["connected"]["sessionId"], b_id);
    assert_eq!(connect["stale"], false);
    let sent = w.cmd(&a).args(["run", "send", &b_id, "query", "hi"]).json();
    let sent_id = sent["messageId"].as_str().unwrap().to_string();
    let listened = w.cmd(&b).args(["run", "listen", "--timeout", "5"]).json();
    assert_eq!(listened["message"]["type"], "ping");
    assert_eq!(listened["answeredPing"]["type"], "ping");
    let listened = w.cmd(&b).args(["run", "listen", "--timeout", "5"]).json();
    assert_eq!(listened["message"]["id"], sent_id.as_str());
    assert_eq!(listened["message"]["status"], "read");
    let peers = w.cmd(&a).args(["run", "peers"]).json();
    assert_eq!(peers["peers"].as_array().unwrap().len(), 2);
    let status = w.cmd(&a).args(["run", "status"]).json();
    assert_eq!(status["sent"], 2);
    assert_eq!(status["connected"][0]["sessionId"], b_id);
    let heartbeat = w.cmd(&a).args(["run", "heartbeat"]).json();
    assert_eq!(heartbeat["sessionId"], a_id);
    let (stdout, _) = w
        .cmd(&a)
        .args(["run", "--json", "send", "zzzzzz", "query", "x"])
        .fails();
    let error: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(error["error"]["kind"], "no-such-session");
    let stop = w.cmd(&a).args(["run", "stop"]).json();
    assert_eq!(stop["sessionId"], a_id);
}

#[test]
fn an_ask_that_times_out_says_how_far_the_query_got() {
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    w.start(&a);
    let b_id = w.start(&b);
    let (stdout, _) = w
        .cmd(&a)
        .args(["run", "ask", &b_id, "anyone?", "--timeout", "1"])
        .fails();
    let id = stdout
        .split_whitespace()
        .find(|w| w.starts_with("msg-"))
        .unwrap_or_else(|| panic!("no message ID in {stdout:?}"))
        .to_string();
    assert_eq!(
        stdout,
        format!(
            "No response to {id} after 1s: it is queued in {b_id}'s inbox, not taken yet; \
             to keep waiting: bridge-host run receive {id}\n"
        )
    );
    // Taken but not answered: the next wait says by whom and when.
    let (q, _) = listen(&w, &b);
    assert_eq!(q["MESSAGE_ID"], id);
    let (stdout, _) = w
        .cmd(&a)
        .args(["run", "receive", &id, "--timeout", "1"])
        .fails();
    assert!(
        stdout.starts_with(&format!(
            "No response to {id} after 1s: taken by {b_id} at "
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(", not answered yet; to keep waiting"),
        "{stdout}"
    );
    let tracked = w.cmd(&a).args(["run", "track", &id]).json();
    assert_eq!(tracked["stage"], "taken", "{tracked}");
    // A late reply is still collected with receive, and the receipt says so.
    let answer = w.cmd(&b).args(["run", "reply", &id, "late"]).ok();
    let got = w
        .cmd(&a)
        .args(["run", "receive", &id, "--timeout", "5"])
        .ok();
    assert_eq!(parse_reply(&got), ("b".to_string(), "late".to_string()));
    let tracked = w.cmd(&a).args(["run", "track", &id]).json();
    assert_eq!(tracked["stage"], "answered", "{tracked}");
    assert_eq!(tracked["reply"], answer.trim(), "{tracked}");
}

#[test]
fn status_summarises_the_session() {
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    let a_id = w.start(&a);
    let b_id = w.start(&b);
    w.cmd(&a).args(["run", "connect", &b_id]).ok();
    w.cmd(&b).args(["run", "send", &a_id, "query", "one"]).ok();
    let status = w.cmd(&a).args(["run", "status"]).ok();
    assert!(
        status.starts_with(&format!("Session {a_id} (a) at ")),
        "{status}"
    );
    assert!(status.contains(&format!("  {b_id} (b) active")), "{status}");
    assert!(status.contains("Pending messages: 1"), "{status}");
    assert!(status.contains("Sent messages: 1"), "{status}");
}

#[test]
fn listen_registers_a_session_that_has_none() {
    let w = World::new();
    let lib = w.project("lib");
    let (output, description) = w
        .cmd(&lib)
        .args(["run", "listen", "--timeout", "1"])
        .output();
    assert_eq!(output.status.code(), Some(1), "{description}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let id = w.cmd(&lib).args(["run", "id"]).ok();
    assert!(
        stderr.contains(&format!("bridge-host run connect {}", id.trim())),
        "{description}"
    );
}
