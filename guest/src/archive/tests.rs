//! Native tests of the archive, history, thread and cleanup, through
//! `Bridge::run` as the host calls it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;
#[allow(unused_imports)]
use super::{append::*, cleanup::*, history::*, keys::*, record::*, scan::*, thread::*};
use crate::Bridge;
use crate::BridgeError;
use crate::CleanupReport;
use crate::Context;
use crate::HistoryEntry;
use crate::Layout;
use crate::clock;
use crate::ids::SessionId;
use crate::wire::Status;
use crate::wire::{Kind, Message};
use crate::{Failure, Format, HistoryQuery, LocalPlatform, Outcome, Report, Verb};
use serde_json::json;
use std::io::Write;

fn bridge(root: &Path) -> Bridge<LocalPlatform> {
    Bridge::new(Layout::new(root), LocalPlatform::default())
}

fn ctx(session: Option<&str>, project: &str) -> Context {
    Context {
        session: session.map(str::to_string),
        ..Context::for_project(project)
    }
}

fn run(root: &Path, session: Option<&str>, project: &str, verb: Verb) -> Result<Report, Failure> {
    bridge(root).run(&ctx(session, project), verb)
}

fn ok(root: &Path, session: Option<&str>, project: &str, verb: Verb) -> Report {
    run(root, session, project, verb).unwrap_or_else(|f| panic!("{}", f.rendered))
}

/// Registers a new session in `project`.
fn start(root: &Path, project: &str) -> String {
    match ok(root, None, project, Verb::Start).outcome {
        Outcome::Session(m) => m.session_id,
        other => panic!("{other:?}"),
    }
}

fn send(root: &Path, from: &str, project: &str, to: &str, kind: Kind, content: &str) -> String {
    send_answering(root, from, project, to, kind, content, None)
}

fn send_answering(
    root: &Path,
    from: &str,
    project: &str,
    to: &str,
    kind: Kind,
    content: &str,
    in_reply_to: Option<&str>,
) -> String {
    let report = ok(
        root,
        Some(from),
        project,
        Verb::Send {
            to: to.into(),
            kind,
            content: content.into(),
            in_reply_to: in_reply_to.map(str::to_string),
        },
    );
    match report.outcome {
        Outcome::Sent(sent) => sent.message.id,
        other => panic!("{other:?}"),
    }
}

/// Listens once as `who` and commits what it took.
fn take(root: &Path, who: &str, project: &str) -> Message {
    let b = bridge(root);
    let report = b
        .run(
            &ctx(Some(who), project),
            Verb::Listen {
                timeout_seconds: Some(0),
            },
        )
        .unwrap_or_else(|f| panic!("{}", f.rendered));
    let Outcome::Delivered(delivery) = report.outcome else {
        panic!("nothing delivered")
    };
    b.commit_delivery(&delivery.ticket).unwrap();
    delivery.message
}

fn history_of(root: &Path, project: &str, query: HistoryQuery) -> (Vec<HistoryEntry>, Report) {
    let report = ok(root, None, project, Verb::History(query));
    match &report.outcome {
        Outcome::History(entries) => (entries.clone(), report),
        other => panic!("{other:?}"),
    }
}

fn contents(entries: &[HistoryEntry]) -> Vec<String> {
    entries.iter().map(|e| e.message.content.clone()).collect()
}

fn grep(text: &str) -> HistoryQuery {
    HistoryQuery {
        grep: Some(text.into()),
        ..HistoryQuery::default()
    }
}

/// Moves `id`'s heartbeat `secs` into the past.
fn age_heartbeat(root: &Path, id: &str, secs: u64) {
    let path = Layout::new(root).manifest(&SessionId::parse(id).unwrap());
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["lastHeartbeat"] = json!(clock::stamp(SystemTime::now() - Duration::from_secs(secs)));
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

fn set_age(path: &Path, age: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

/// Every file under `root` with its bytes and modification time.
fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                out.push((path.clone(), Vec::new(), meta.modified().unwrap()));
                stack.push(path);
            } else {
                out.push((
                    path.clone(),
                    std::fs::read(&path).unwrap(),
                    meta.modified().unwrap(),
                ));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn cleaned(report: &Report) -> CleanupReport {
    match &report.outcome {
        Outcome::Cleaned(report) => report.clone(),
        other => panic!("{other:?}"),
    }
}

fn archive_log(root: &Path, project: &str) -> PathBuf {
    let b = bridge(root);
    let key = b
        .archive_key_of(project)
        .expect("the project has an archive");
    Layout::new(root).archive_log(&key)
}

#[test]
fn history_survives_stop_and_a_new_session_in_the_same_project() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let app = start(root, "/p/app");
    let lib = start(root, "/p/lib");
    let q = send(
        root,
        &app,
        "/p/app",
        &lib,
        Kind::Query,
        "What changed in v2?",
    );
    assert_eq!(take(root, &lib, "/p/lib").id, q);
    ok(
        root,
        Some(&lib),
        "/p/lib",
        Verb::Reply {
            message_id: q.clone(),
            content: "The parser.\nAnd more.".into(),
        },
    );
    take(root, &app, "/p/app");
    ok(root, Some(&app), "/p/app", Verb::Stop);
    assert!(
        !Layout::new(root)
            .session(&SessionId::parse(&app).unwrap())
            .exists()
    );

    let (entries, report) = history_of(root, "/p/app", HistoryQuery::default());
    assert_eq!(
        contents(&entries),
        ["What changed in v2?", "The parser.\nAnd more."]
    );
    assert!(entries[0].outgoing && !entries[1].outgoing);
    let lines: Vec<&str> = report.rendered.lines().collect();
    assert_eq!(lines.len(), 3, "{}", report.rendered);
    assert!(
        lines[0].contains(&format!("→ {lib}  query     {q}  What changed in v2?")),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(&format!("← {lib}  response")),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with("The parser.…"), "{}", lines[1]);
    assert_eq!(
        lines[2],
        "The whole conversation of one: bridge-host run thread <message-id>"
    );

    // A new session in the same project sees the old history and adds to it.
    let again = start(root, "/p/app");
    assert_ne!(again, app);
    send(root, &again, "/p/app", &lib, Kind::Query, "And in v3?");
    let (entries, _) = history_of(root, "/p/app/", HistoryQuery::default());
    assert_eq!(
        contents(&entries),
        [
            "What changed in v2?",
            "The parser.\nAnd more.",
            "And in v3?"
        ]
    );
    // The other project keeps its own side.
    let (theirs, _) = history_of(root, "/p/lib", HistoryQuery::default());
    assert_eq!(theirs.len(), 2);
    assert!(!theirs[0].outgoing && theirs[1].outgoing);
    // JSON carries the direction.
    let mut json_ctx = ctx(None, "/p/app");
    json_ctx.format = Format::Json;
    let json: serde_json::Value = serde_json::from_str(
        &bridge(root)
            .run(&json_ctx, Verb::History(HistoryQuery::default()))
            .unwrap()
            .rendered,
    )
    .unwrap();
    let directions: Vec<&str> = json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["direction"].as_str().unwrap())
        .collect();
    assert_eq!(directions, ["out", "in", "out"]);
    assert_eq!(json["messages"][0]["id"], q.as_str());
}

#[test]
fn a_message_between_two_sessions_of_one_project_is_listed_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let one = start(root, "/p/mono");
    let two = start(root, "/p/mono");
    send(root, &one, "/p/mono", &two, Kind::Query, "same project");
    take(root, &two, "/p/mono");
    let (entries, _) = history_of(root, "/p/mono", HistoryQuery::default());
    assert_eq!(contents(&entries), ["same project"]);
    assert!(entries[0].outgoing);
}

#[test]
fn history_search_takes_any_text_safely() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let me = start(root, "/p/me");
    let peer = start(root, "/p/peer");
    let texts = [
        "say \"hi\" to her",
        "C:\\path\\to\\file",
        "two\nlines",
        "regex .* [a-z]+ (x|y) ^$",
        "ünïcödé ✓ 日本",
        "tab\there",
        "plain",
    ];
    for text in texts {
        send(root, &me, "/p/me", &peer, Kind::Query, text);
    }
    let found = |needle: &str| contents(&history_of(root, "/p/me", grep(needle)).0);
    assert_eq!(found("\"hi\""), [texts[0]]);
    assert_eq!(found("\\path\\"), [texts[1]]);
    assert_eq!(found("o\nl"), [texts[2]]);
    assert_eq!(found(".* [a-z]+ (x|y) ^$"), [texts[3]]);
    assert_eq!(found("日本"), [texts[4]]);
    assert_eq!(found("\t"), [texts[5]]);
    // The escapes the log uses are not content: `n` of `\n`, `t` of `\t`.
    assert_eq!(found("\\n"), Vec::<String>::new());
    assert_eq!(found("b\\t"), Vec::<String>::new());
    assert_eq!(found("\\"), [texts[1]]);
    assert_eq!(found("\""), [texts[0]]);
    assert_eq!(found("\"id\":\"msg-"), Vec::<String>::new());
    assert_eq!(found("nothing like it"), Vec::<String>::new());
    assert_eq!(found("").len(), texts.len());
    // Control characters in what is shown are made visible.
    let (_, report) = history_of(root, "/p/me", grep("tab"));
    assert!(
        report.rendered.contains("tab\\there"),
        "{}",
        report.rendered
    );
    let (_, report) = history_of(root, "/p/me", grep("nothing like it"));
    assert_eq!(report.rendered, "No messages in this project's history.\n");
}

#[test]
fn history_filters_by_peer_and_limits_to_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let me = start(root, "/p/me");
    let b = start(root, "/p/b");
    let c = start(root, "/p/c");
    for i in 0..5 {
        send(root, &me, "/p/me", &b, Kind::Query, &format!("to b {i}"));
        send(root, &me, "/p/me", &c, Kind::Query, &format!("to c {i}"));
    }
    send(root, &c, "/p/c", &me, Kind::Query, "from c");
    take(root, &me, "/p/me");
    let by_peer = |peer: &str, limit: Option<u32>| {
        contents(
            &history_of(
                root,
                "/p/me",
                HistoryQuery {
                    peer: Some(peer.into()),
                    limit,
                    ..HistoryQuery::default()
                },
            )
            .0,
        )
    };
    assert_eq!(
        by_peer(&b, None),
        (0..5).map(|i| format!("to b {i}")).collect::<Vec<_>>()
    );
    assert_eq!(by_peer(&c, Some(2)), ["to c 4", "from c"]);
    let (all, _) = history_of(
        root,
        "/p/me",
        HistoryQuery {
            limit: Some(3),
            ..HistoryQuery::default()
        },
    );
    assert_eq!(contents(&all), ["to b 4", "to c 4", "from c"]);
    let both = history_of(
        root,
        "/p/me",
        HistoryQuery {
            peer: Some(b.clone()),
            grep: Some("3".into()),
            limit: None,
        },
    )
    .0;
    assert_eq!(contents(&both), ["to b 3"]);

    let zero = run(
        root,
        None,
        "/p/me",
        Verb::History(HistoryQuery {
            limit: Some(0),
            ..HistoryQuery::default()
        }),
    )
    .unwrap_err();
    assert!(
        zero.rendered.contains("give 1 to 1000"),
        "{}",
        zero.rendered
    );
    let many = ok(
        root,
        None,
        "/p/me",
        Verb::History(HistoryQuery {
            limit: Some(5000),
            ..HistoryQuery::default()
        }),
    );
    assert!(
        many.warnings
            .iter()
            .any(|w| w.contains("showing the newest 1000"))
    );
    let bad_peer = run(
        root,
        None,
        "/p/me",
        Verb::History(HistoryQuery {
            peer: Some("../x".into()),
            ..HistoryQuery::default()
        }),
    )
    .unwrap_err();
    assert!(matches!(bad_peer.error, BridgeError::InvalidSessionId(_)));
    // A project without an archive has no history, and says so.
    let (none, report) = history_of(root, "/p/elsewhere", HistoryQuery::default());
    assert!(none.is_empty());
    assert_eq!(report.rendered, "No messages in this project's history.\n");
}

#[test]
fn a_thread_follows_a_clarification_chain_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let app = start(root, "/p/app");
    let lib = start(root, "/p/lib");
    let q1 = send(
        root,
        &app,
        "/p/app",
        &lib,
        Kind::Query,
        "Does v2 break the API?",
    );
    take(root, &lib, "/p/lib");
    let r1 = send_answering(
        root,
        &lib,
        "/p/lib",
        &app,
        Kind::Response,
        "Which part?",
        Some(&q1),
    );
    take(root, &app, "/p/app");
    let unrelated = send(
        root,
        &app,
        "/p/app",
        &lib,
        Kind::Query,
        "Unrelated question",
    );
    take(root, &lib, "/p/lib");
    // The follow-up asks with --in-reply-to and waits for its answer.
    let answer = std::thread::scope(|scope| {
        let asking = scope.spawn(|| {
            run(
                root,
                Some(&app),
                "/p/app",
                Verb::Ask {
                    to: lib.clone(),
                    content: "The parser.".into(),
                    timeout_seconds: 10,
                    in_reply_to: Some(r1.clone()),
                },
            )
        });
        let q2 = loop {
            if let Ok(report) = run(
                root,
                Some(&lib),
                "/p/lib",
                Verb::Listen {
                    timeout_seconds: Some(0),
                },
            ) {
                let Outcome::Delivered(d) = report.outcome else {
                    panic!()
                };
                bridge(root).commit_delivery(&d.ticket).unwrap();
                break d.message;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(q2.in_reply_to.as_deref(), Some(r1.as_str()));
        ok(
            root,
            Some(&lib),
            "/p/lib",
            Verb::Reply {
                message_id: q2.id.clone(),
                content: "Yes, the parser breaks.".into(),
            },
        );
        let Outcome::Answered(d) = asking.join().unwrap().unwrap().outcome else {
            panic!()
        };
        d.message
    });
    let expected = [
        "Does v2 break the API?",
        "Which part?",
        "The parser.",
        "Yes, the parser breaks.",
    ];
    let thread = |session: Option<&str>, project: &str, id: &str| -> Vec<String> {
        match ok(root, session, project, Verb::Thread(id.into())).outcome {
            Outcome::Thread(messages) => messages.into_iter().map(|m| m.content).collect(),
            other => panic!("{other:?}"),
        }
    };
    // From either end, from any message of it; the unrelated one is not in it.
    assert_eq!(thread(Some(&app), "/p/app", &answer.id), expected);
    assert_eq!(thread(Some(&app), "/p/app", &q1), expected);
    assert_eq!(thread(Some(&lib), "/p/lib", &r1), expected);
    assert_eq!(
        thread(Some(&app), "/p/app", &unrelated),
        ["Unrelated question"]
    );
    let text = ok(root, Some(&app), "/p/app", Verb::Thread(q1.clone())).rendered;
    let mut lines = text.lines();
    let first = lines.next().unwrap();
    assert!(
        first.ends_with(&format!("  {app} → {lib}  query {q1}")),
        "{text}"
    );
    assert_eq!(lines.next(), Some("  | Does v2 break the API?"));
    assert!(
        text.contains(&format!("response {}, answering ", answer.id)),
        "{text}"
    );
    // Still there after stop, with no session.
    ok(root, Some(&app), "/p/app", Verb::Stop);
    assert_eq!(thread(None, "/p/app", &r1), expected);

    let never = run(
        root,
        None,
        "/p/app",
        Verb::Thread("msg-aaaaaaaaaaaa".into()),
    )
    .unwrap_err();
    assert!(matches!(never.error, BridgeError::NoSuchMessage(_)));
    assert!(
        never.rendered.contains("bridge-host run history lists"),
        "{}",
        never.rendered
    );
    let bad = run(root, None, "/p/app", Verb::Thread("msg-../../x".into())).unwrap_err();
    assert!(matches!(bad.error, BridgeError::InvalidMessageId(_)));
}

#[test]
fn a_thread_includes_a_pending_query_from_the_live_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let a = start(root, "/p/a");
    let b = start(root, "/p/b");
    let q = send(root, &a, "/p/a", &b, Kind::Query, "not taken yet");
    // Not taken, so not in b's archive; b's inbox has it.
    let report = ok(root, Some(&b), "/p/b", Verb::Thread(q.clone()));
    let Outcome::Thread(messages) = report.outcome else {
        panic!()
    };
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].content, "not taken yet");
}

#[test]
fn cleanup_dry_run_reports_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let layout = Layout::new(root);
    let me = start(root, "/p/me");
    let ghost = start(root, "/p/ghost");
    send(root, &me, "/p/me", &ghost, Kind::Query, "for the ghost");
    send(root, &ghost, "/p/ghost", &me, Kind::Query, "old news");
    take(root, &me, "/p/me");
    let me_id = SessionId::parse(&me).unwrap();
    let read = std::fs::read_dir(layout.read(&me_id))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    set_age(&read, Duration::from_secs(8 * 86400));
    let rejected = layout.rejected(&me_id);
    std::fs::create_dir_all(&rejected).unwrap();
    std::fs::write(rejected.join("123-abcdef-msg-x.json"), b"junk").unwrap();
    set_age(
        &rejected.join("123-abcdef-msg-x.json"),
        Duration::from_secs(31 * 86400),
    );
    std::fs::write(layout.inbox(&me_id).join(".tmp-abandoned000"), b"{").unwrap();
    set_age(
        &layout.inbox(&me_id).join(".tmp-abandoned000"),
        Duration::from_secs(3600),
    );
    age_heartbeat(root, &ghost, 3600);

    let before = snapshot(root);
    let dry = ok(root, Some(&me), "/p/me", Verb::Cleanup { dry_run: true });
    assert_eq!(snapshot(root), before, "a dry run changed something");
    let planned = cleaned(&dry);
    assert!(planned.dry_run);
    assert_eq!(planned.sessions_removed, std::slice::from_ref(&ghost));
    assert_eq!((planned.messages_archived, planned.files_removed), (2, 2));
    assert!(
        dry.rendered
            .contains(&format!("Would remove 1 abandoned session(s): {ghost}")),
        "{}",
        dry.rendered
    );
    assert!(
        dry.rendered.contains("Would archive 2 message(s)"),
        "{}",
        dry.rendered
    );

    let done = cleaned(&ok(
        root,
        Some(&me),
        "/p/me",
        Verb::Cleanup { dry_run: false },
    ));
    assert_eq!(done.sessions_removed, planned.sessions_removed);
    assert_eq!(
        (done.messages_archived, done.files_removed),
        (planned.messages_archived, planned.files_removed)
    );
    assert!(!read.exists() && !rejected.join("123-abcdef-msg-x.json").exists());
    let again = ok(root, Some(&me), "/p/me", Verb::Cleanup { dry_run: false });
    assert!(
        again.rendered.starts_with("Nothing to clean.\n"),
        "{}",
        again.rendered
    );
    let mut json_ctx = ctx(Some(&me), "/p/me");
    json_ctx.format = Format::Json;
    let json: serde_json::Value = serde_json::from_str(
        &bridge(root)
            .run(&json_ctx, Verb::Cleanup { dry_run: true })
            .unwrap()
            .rendered,
    )
    .unwrap();
    assert_eq!(json["dryRun"], true);
    assert_eq!(json["sessionsRemoved"], json!([]));
    assert_eq!(json["messagesArchived"], 0);
    assert_eq!(json["filesRemoved"], 0);
    assert_eq!(json["kept"][0], format!("{me}: this session"));
}

#[test]
fn cleanup_never_removes_a_pending_message_or_a_live_session() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let layout = Layout::new(root);
    let me = start(root, "/p/me");
    let live = start(root, "/p/live");
    let ghost = start(root, "/p/ghost");
    send(root, &me, "/p/me", &live, Kind::Query, "for the live one");
    send(root, &me, "/p/me", &ghost, Kind::Query, "for the ghost");
    // The live session's taken message is old, and stays: its heartbeat is recent.
    send(root, &me, "/p/me", &live, Kind::Query, "taken long ago");
    let live_id = SessionId::parse(&live).unwrap();
    age_heartbeat(root, &live, 120);
    age_heartbeat(root, &ghost, 2 * 3600);

    let report = ok(root, Some(&me), "/p/me", Verb::Cleanup { dry_run: false });
    let done = cleaned(&report);
    assert_eq!(done.sessions_removed, std::slice::from_ref(&ghost));
    assert!(
        done.kept.contains(&format!("{live}: heartbeat 2 min ago")),
        "{:?}",
        done.kept
    );
    assert!(
        report.rendered.contains("Left alone:\n")
            && report
                .rendered
                .contains(&format!("\n  {me}: this session\n"))
            && report
                .rendered
                .contains(&format!("\n  {live}: heartbeat 2 min ago\n")),
        "{}",
        report.rendered
    );
    assert_eq!(
        std::fs::read_dir(layout.inbox(&live_id))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count(),
        2,
        "a pending message of a live session was touched"
    );
    // The ghost's pending message is in its project's history, never taken.
    assert!(!layout.session(&SessionId::parse(&ghost).unwrap()).exists());
    let (entries, report) = history_of(root, "/p/ghost", HistoryQuery::default());
    assert_eq!(contents(&entries), ["for the ghost"]);
    assert_eq!(entries[0].message.status, Status::Pending);
    assert!(
        report
            .rendered
            .contains("(never taken: its session ended first)"),
        "{}",
        report.rendered
    );
}

#[test]
fn stop_pruning_an_abandoned_session_keeps_its_pending_messages() {
    // Before the archive, `stop` deleted an abandoned session with what was
    // still pending in it.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let me = start(root, "/p/me");
    let ghost = start(root, "/p/ghost");
    let q = send(root, &me, "/p/me", &ghost, Kind::Query, "still pending");
    age_heartbeat(root, &ghost, 2 * 3600);
    let report = ok(root, Some(&me), "/p/me", Verb::Stop);
    let Outcome::Stopped(stopped) = report.outcome else {
        panic!()
    };
    assert!(stopped.pruned.contains(&ghost), "{:?}", stopped.pruned);
    let (entries, _) = history_of(root, "/p/ghost", HistoryQuery::default());
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (
            entries[0].message.id.as_str(),
            entries[0].message.content.as_str()
        ),
        (q.as_str(), "still pending")
    );
    assert_eq!(entries[0].message.status, Status::Pending);
    assert!(
        std::fs::read_dir(Layout::new(root).trash())
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn stop_keeps_the_stopping_sessions_own_pending_messages() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let me = start(root, "/p/me");
    let peer = start(root, "/p/peer");
    send(
        root,
        &peer,
        "/p/peer",
        &me,
        Kind::Query,
        "asked just before stop",
    );
    ok(root, Some(&me), "/p/me", Verb::Stop);
    let (entries, _) = history_of(root, "/p/me", HistoryQuery::default());
    assert_eq!(contents(&entries), ["asked just before stop"]);
    assert_eq!(entries[0].message.status, Status::Pending);
}

#[test]
fn taken_messages_past_retention_leave_read_and_stay_in_history() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let layout = Layout::new(root);
    let me = start(root, "/p/me");
    let peer = start(root, "/p/peer");
    send(root, &peer, "/p/peer", &me, Kind::Query, "old one");
    send(root, &peer, "/p/peer", &me, Kind::Query, "new one");
    take(root, &me, "/p/me");
    take(root, &me, "/p/me");
    let me_id = SessionId::parse(&me).unwrap();
    // One read copy is 8 days old; another came from the original plugin,
    // marked read in the inbox and moved to read/ (so never archived).
    let mut reads: Vec<PathBuf> = std::fs::read_dir(layout.read(&me_id))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    reads.sort();
    let old = reads
        .iter()
        .find(|p| std::fs::read_to_string(p).unwrap().contains("old one"))
        .unwrap()
        .clone();
    set_age(&old, Duration::from_secs(8 * 86400));
    let original = r#"{"id":"msg-0riginal0001","from":"zzzzzz","to":"ME","type":"query","timestamp":"2026-01-02T03:04:05Z","status":"read","content":"from the original","inReplyTo":null,"metadata":{"urgency":"normal","fromProject":"bash"}}"#.replace("ME", &me);
    let original_path = layout.read(&me_id).join("msg-0riginal0001.json");
    std::fs::write(&original_path, original).unwrap();
    set_age(&original_path, Duration::from_secs(30 * 86400));

    // SessionStart runs the cheap part for this session (kept under 36h).
    let mut start_ctx = ctx(Some(&me), "/p/me");
    start_ctx.retention = Some("36h".into());
    let report = bridge(root).run(&start_ctx, Verb::SessionStart).unwrap();
    let Outcome::SessionStarted(started) = report.outcome else {
        panic!()
    };
    assert_eq!(started.cleanup.messages_archived, 2);
    assert!(!old.exists() && !original_path.exists());
    assert_eq!(std::fs::read_dir(layout.read(&me_id)).unwrap().count(), 1);
    assert!(
        !report.rendered.contains("old one"),
        "cleanup loaded a message into the note"
    );
    let (entries, _) = history_of(root, "/p/me", HistoryQuery::default());
    assert_eq!(
        contents(&entries),
        ["from the original", "old one", "new one"]
    );
}

#[test]
fn a_corrupt_archive_line_is_reported_and_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let me = start(root, "/p/me");
    let peer = start(root, "/p/peer");
    send(root, &me, "/p/me", &peer, Kind::Query, "first");
    let log = archive_log(root, "/p/me");
    // Garbage, then a line torn by a full disk to which the next append was glued.
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    file.write_all(b"not json at all\n{\"id\":\"msg-tornline0000\",\"from\":\"ab")
        .unwrap();
    drop(file);
    send(root, &me, "/p/me", &peer, Kind::Query, "second");
    send(root, &me, "/p/me", &peer, Kind::Query, "third");
    let (entries, report) = history_of(root, "/p/me", HistoryQuery::default());
    assert_eq!(contents(&entries), ["first", "second", "third"]);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].starts_with("skipped an unreadable line of ")
            && report.warnings[0].contains("/archive/me-")
            && report.warnings[0].contains("/log.jsonl at byte "),
        "{}",
        report.warnings[0]
    );
    assert!(report.warnings[0].ends_with("bridge-host run cleanup sets it aside"));
    // Delivery is not held up by it.
    assert_eq!(take(root, &peer, "/p/peer").content, "first");

    let cleanup = ok(root, Some(&me), "/p/me", Verb::Cleanup { dry_run: false });
    assert!(
        cleanup
            .warnings
            .iter()
            .any(|w| w.starts_with("set aside 2 unreadable lines")),
        "{:?}",
        cleanup.warnings
    );
    let rejected = std::fs::read_to_string(log.with_file_name("rejected.jsonl")).unwrap();
    assert!(rejected.contains("not json at all\n"));
    assert!(rejected.contains("{\"id\":\"msg-tornline0000\",\"from\":\"ab\n"));
    let (entries, report) = history_of(root, "/p/me", HistoryQuery::default());
    assert_eq!(contents(&entries), ["first", "second", "third"]);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn concurrent_appends_lose_nothing() {
    const THREADS: usize = 8;
    const EACH: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let me = start(root, "/p/me");
    let peer = SessionId::parse(&start(root, "/p/peer")).unwrap();
    let me_id = SessionId::parse(&me).unwrap();
    let manifest = bridge(root).manifest(&me_id).unwrap();
    let key = bridge(root).archive_key_of("/p/me").unwrap();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (manifest, peer, me_id, key) = (&manifest, &peer, &me_id, &key);
            scope.spawn(move || {
                let b = bridge(root);
                for i in 0..EACH {
                    // Some records are large enough to need a file of their own,
                    // some just under the line limit.
                    let content = match i % 50 {
                        0 => format!("big {t} {i} ") + &"x".repeat(INLINE_MAX + 10),
                        1 => format!("near {t} {i} ") + &"y".repeat(INLINE_MAX - 600),
                        _ => format!("m {t} {i} \"q\" \\ ünï"),
                    };
                    let m = Message::new(me_id, peer, Kind::Query, content, None, "me");
                    if t % 2 == 0 {
                        let mut warnings = Vec::new();
                        b.archive_sent(&m, manifest, &mut warnings);
                        assert!(warnings.is_empty(), "{warnings:?}");
                    } else {
                        b.append_record(key, &m, Direction::In, me_id.as_str(), false)
                            .unwrap();
                    }
                }
            });
        }
    });
    let log = Layout::new(root).archive_log(&key);
    let text = std::fs::read(&log).unwrap();
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), THREADS * EACH);
    assert!(
        lines.iter().all(|l| parse_record(l).is_ok()),
        "a line was torn or interleaved"
    );
    let (entries, report) = history_of(
        root,
        "/p/me",
        HistoryQuery {
            limit: Some(1000),
            ..HistoryQuery::default()
        },
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(entries.len(), THREADS * EACH);
    let big = entries
        .iter()
        .filter(|e| e.message.content.starts_with("big "))
        .count();
    assert_eq!(big, THREADS * EACH / 50);
    assert!(
        entries
            .iter()
            .filter(|e| e.message.content.starts_with("big "))
            .all(|e| e.message.content.len() > INLINE_MAX)
    );
    // Grep finds the text of a large record, which the log line does not hold.
    let (found, _) = history_of(root, "/p/me", grep("big 3 50 xxx"));
    assert_eq!(found.len(), 1);
}

#[test]
fn a_bad_retention_says_what_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let me = start(root, "/p/me");
    for bad in ["seven days", "7", "-1d", ""] {
        let mut context = ctx(Some(&me), "/p/me");
        context.retention = Some(bad.into());
        let failure = bridge(root)
            .run(&context, Verb::Cleanup { dry_run: true })
            .unwrap_err();
        assert!(
            matches!(failure.error, BridgeError::InvalidArgument(_)),
            "{bad:?}"
        );
        assert!(
            failure.rendered.contains("such as 7d, 36h or 90min"),
            "{}",
            failure.rendered
        );
    }
    let mut context = ctx(Some(&me), "/p/me");
    context.retention = Some("36h".into());
    assert!(
        bridge(root)
            .run(&context, Verb::Cleanup { dry_run: true })
            .is_ok()
    );
    // The cheap part warns and keeps the default rather than failing a start.
    context.retention = Some("soon".into());
    let report = bridge(root).run(&context, Verb::SessionStart).unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("cleanup used the default")),
        "{:?}",
        report.warnings
    );
}

/// Writes `n` records straight into the archive of `project`, as sends
/// would: every 1000th to `peer_b`, the rest to `peer_a`; every 10,000th
/// holds "needle <i>".
fn fill_archive(root: &Path, project: &str, me: &str, n: usize) -> String {
    let b = bridge(root);
    let key = b.archive_key_for_write(project).unwrap();
    let me = SessionId::parse(me).unwrap();
    let (peer_a, peer_b) = (
        SessionId::parse("aaaaaa").unwrap(),
        SessionId::parse("bbbbbb").unwrap(),
    );
    let mut bytes = Vec::new();
    for i in 0..n {
        let to = if i % 1000 == 0 { &peer_b } else { &peer_a };
        let content = if i % 10_000 == 0 {
            format!("needle {i}: the \"answer\" is\nhere")
        } else {
            format!("message {i} about the parser, the build and a few other things")
        };
        let mut m = Message::new(&me, to, Kind::Query, content, None, "big");
        m.timestamp =
            clock::stamp(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i as u64));
        bytes.extend(encode(&m, Direction::Out, me.as_str(), false));
    }
    std::fs::write(Layout::new(root).archive_log(&key), bytes).unwrap();
    key
}

#[test]
fn history_over_a_hundred_thousand_messages() {
    const N: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let me = start(root, "/p/big");
    fill_archive(root, "/p/big", &me, N);
    let timed = |query: HistoryQuery| {
        let began = std::time::Instant::now();
        let (entries, report) = history_of(root, "/p/big", query);
        (entries, report, began.elapsed())
    };
    let (newest, _, t_plain) = timed(HistoryQuery::default());
    let expected: Vec<String> = (N - 20..N)
        .map(|i| format!("message {i} about the parser, the build and a few other things"))
        .collect();
    assert_eq!(contents(&newest), expected);
    let (needles, _, t_grep) = timed(grep("the \"answer\" is\nhere"));
    assert_eq!(
        contents(&needles),
        (0..N)
            .step_by(10_000)
            .map(|i| format!("needle {i}: the \"answer\" is\nhere"))
            .collect::<Vec<_>>()
    );
    let (none, _, t_miss) = timed(grep("not anywhere"));
    assert!(none.is_empty());
    let (to_b, _, t_peer) = timed(HistoryQuery {
        peer: Some("bbbbbb".into()),
        limit: Some(1000),
        ..HistoryQuery::default()
    });
    assert_eq!(to_b.len(), N / 1000);
    assert!(to_b.iter().all(|e| e.message.to == "bbbbbb"));
    // Times for the record (a debug build; the figure is for the release
    // component, measured by the benchmark).
    eprintln!(
        "history over {N}: newest 20 {t_plain:?}, grep {t_grep:?}, grep miss {t_miss:?}, peer {t_peer:?}"
    );
}

#[test]
fn records_start_with_their_id_and_torn_lines_split_at_the_next_record() {
    let me = SessionId::parse("a1b2c3").unwrap();
    let peer = SessionId::parse("d4e5f6").unwrap();
    let m = Message::new(
        &me,
        &peer,
        Kind::Query,
        "{\"id\":\"msg-aaaaaaaaaaaa\"}".into(),
        None,
        "x",
    );
    let line = encode(&m, Direction::Out, me.as_str(), false);
    assert!(line.starts_with(format!("{{\"id\":\"{}\",", m.id).as_bytes()));
    let body = &line[..line.len() - 1];
    assert_eq!(raw_id(body), Some(m.id.as_str()));
    // Content that looks like a record start is escaped, so not one.
    assert_eq!(record_part(body), (body, 0));
    let glued = [&b"{\"id\":\"msg-tornline0000\",\"fr"[..], body].concat();
    let (part, at) = record_part(&glued);
    assert_eq!((part, at), (body, 28));
    assert_eq!(
        parse_record(part).unwrap().message,
        Message {
            status: Status::Sent,
            ..m
        }
    );
}
