//! Native tests of the protocol library: the same code the component runs,
//! on a temporary directory, with threads standing in for processes.

use std::path::Path;
use std::sync::Mutex;

use crate::ids::SessionId;
use crate::wire::Kind;
use crate::{Bridge, Context, Format, Layout, LocalPlatform, Outcome, Verb};

fn bridge(root: &Path) -> Bridge<LocalPlatform> {
    Bridge::new(Layout::new(root), LocalPlatform::default())
}

fn context(session: Option<&str>, project: &str) -> Context {
    Context {
        session: session.map(str::to_string),
        format: Format::Text,
        ..Context::for_project(project)
    }
}

fn start(root: &Path, project: &str) -> String {
    match bridge(root)
        .run(&context(None, project), Verb::Start)
        .unwrap()
        .outcome
    {
        Outcome::Session(m) => m.session_id,
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_message_is_claimed_by_exactly_one_of_many_listeners() {
    const MESSAGES: usize = 300;
    const LISTENERS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let sender = start(root, "/p/sender");
    let receiver = start(root, "/p/receiver");
    let send = bridge(root);
    for i in 0..MESSAGES {
        send.run(
            &context(Some(&sender), "/p/sender"),
            Verb::Send {
                to: receiver.clone(),
                kind: Kind::Query,
                content: format!("m{i}"),
                in_reply_to: None,
            },
        )
        .unwrap();
    }
    let taken = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..LISTENERS {
            scope.spawn(|| {
                let listener = bridge(root);
                let ctx = context(Some(&receiver), "/p/receiver");
                while let Ok(report) = listener.run(
                    &ctx,
                    Verb::Listen {
                        timeout_seconds: Some(0),
                    },
                ) {
                    let Outcome::Delivered(delivery) = report.outcome else {
                        panic!("listen delivered nothing");
                    };
                    listener.commit_delivery(&delivery.ticket).unwrap();
                    taken.lock().unwrap().push(delivery.message.content);
                }
            });
        }
    });
    let mut taken = taken.into_inner().unwrap();
    taken.sort();
    let before = taken.len();
    taken.dedup();
    assert_eq!(before, taken.len(), "a message was delivered twice");
    assert_eq!(taken.len(), MESSAGES, "a message was lost");
    let layout = Layout::new(root);
    let id = SessionId::parse(&receiver).unwrap();
    assert_eq!(
        std::fs::read_dir(layout.read(&id)).unwrap().count(),
        MESSAGES
    );
    assert_eq!(std::fs::read_dir(layout.claimed(&id)).unwrap().count(), 0);
}

#[test]
fn a_registration_made_while_stopping_survives() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let id = SessionId::parse(&start(root, "/p/a")).unwrap();
    let b = bridge(root);
    let seen = b.incarnation(&id);
    // Another process runs `start` for the same session in the meantime.
    b.new_incarnation(&id).unwrap();
    assert!(!b.remove_own_session(&id, seen.as_deref()).unwrap());
    assert!(Layout::new(root).manifest(&id).is_file());
    // Without a concurrent start, the session goes.
    let seen = b.incarnation(&id);
    assert!(b.remove_own_session(&id, seen.as_deref()).unwrap());
    assert!(!Layout::new(root).session(&id).exists());
}

#[test]
fn a_fresh_session_is_never_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let id = SessionId::parse(&start(root, "/p/a")).unwrap();
    assert!(!bridge(root).prune_if_abandoned(&id).unwrap());
    assert!(Layout::new(root).manifest(&id).is_file());
}

#[test]
fn replies_reach_only_the_asker_that_waits_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let asker = start(root, "/p/asker");
    let peer = start(root, "/p/peer");
    let b = bridge(root);
    let ask_ctx = context(Some(&asker), "/p/asker");
    let peer_ctx = context(Some(&peer), "/p/peer");
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            bridge(root).run(
                &ask_ctx,
                Verb::Ask {
                    to: peer.clone(),
                    content: "q".into(),
                    timeout_seconds: 10,
                    in_reply_to: None,
                },
            )
        });
        let query = loop {
            if let Ok(report) = b.run(
                &peer_ctx,
                Verb::Listen {
                    timeout_seconds: Some(0),
                },
            ) {
                break report;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let Outcome::Delivered(query) = query.outcome else {
            panic!()
        };
        // An unrelated message to the asker must not satisfy the wait.
        b.run(
            &peer_ctx,
            Verb::Send {
                to: asker.clone(),
                kind: Kind::Response,
                content: "unrelated".into(),
                in_reply_to: None,
            },
        )
        .unwrap();
        b.run(
            &peer_ctx,
            Verb::Reply {
                message_id: query.message.id.clone(),
                content: "the answer".into(),
            },
        )
        .unwrap();
        let answered = waiting.join().unwrap().unwrap();
        let Outcome::Answered(reply) = &answered.outcome else {
            panic!("{:?}", answered.outcome);
        };
        let lines: Vec<&str> = answered.rendered.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "Reply from {} \"peer\" to your query {}. If it asks you something, answer \
                 with this command, your answer in place of <answer>:",
                query.message.to, query.message.id
            )
        );
        // The follow-up names the reply it answers, and takes any text.
        assert!(
            lines[1].starts_with(&format!(
                "bridge-host run ask {} --in-reply-to {} - <<'ANSWER_",
                query.message.to, reply.message.id
            )),
            "{}",
            answered.rendered
        );
        assert_eq!(lines[2], "<answer>");
        assert_eq!(
            crate::render::peer_content(&answered.rendered),
            Some("the answer")
        );
    });
}

fn listen_once(root: &Path, session: &str) -> Result<crate::Report, crate::Failure> {
    bridge(root).run(
        &context(Some(session), "/p/x"),
        Verb::Listen {
            timeout_seconds: Some(0),
        },
    )
}

#[test]
fn files_set_aside_under_one_name_never_replace_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let id = start(root, "/p/b");
    let layout = Layout::new(root);
    let session = SessionId::parse(&id).unwrap();
    let long = format!("msg-{}.json", "x".repeat(240));
    for (name, bytes) in [
        ("msg-fuzzfixed000.json", &b"first"[..]),
        ("msg-fuzzfixed000.json", &b"second"[..]),
        (long.as_str(), &b"long"[..]),
    ] {
        std::fs::write(layout.inbox(&session).join(name), bytes).unwrap();
        let failure = listen_once(root, &id).unwrap_err();
        assert!(
            failure.warnings.iter().any(|w| w.starts_with("set aside")),
            "{:?}",
            failure.warnings
        );
    }
    let mut kept: Vec<Vec<u8>> = std::fs::read_dir(layout.rejected(&session))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".reason"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        [b"first".to_vec(), b"long".to_vec(), b"second".to_vec()]
    );
    let reasons = std::fs::read_dir(layout.rejected(&session))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".reason"))
        .count();
    assert_eq!(reasons, 3);
}

#[test]
fn committing_a_forged_ticket_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    start(root, "/p/a");
    let before: Vec<_> = std::fs::read_dir(Layout::new(root).sessions())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let forged = crate::ClaimTicket {
        session_id: "nnnnnn".into(),
        message_id: "msg-aaaaaaaaaaaa".into(),
        claim_name: "msg-aaaaaaaaaaaa.abcdefgh.1.claim".into(),
    };
    assert!(bridge(root).commit_delivery(&forged).is_err());
    let after: Vec<_> = std::fs::read_dir(Layout::new(root).sessions())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after);
}

/// Registers a session for `ctx` and returns its ID.
fn started(b: &Bridge<LocalPlatform>, ctx: &Context) -> String {
    b.run(ctx, Verb::Start).unwrap().rendered.trim().to_string()
}

#[test]
fn listen_removes_temporary_files_left_by_killed_writers() {
    let dir = tempfile::tempdir().unwrap();
    let b = bridge(dir.path());
    let me = started(&b, &context(None, "/p/me"));
    let inbox = dir.path().join("sessions").join(&me).join("inbox");
    let old = inbox.join(".tmp-abandoned000");
    let fresh = inbox.join(".tmp-beingwritten");
    std::fs::write(&old, b"{\"id\":").unwrap();
    std::fs::write(&fresh, b"{\"id\":").unwrap();
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let _ = listen_once(dir.path(), &me);
    assert!(!old.exists(), "an hour-old temporary file was kept");
    assert!(
        fresh.exists(),
        "a temporary file still being written was removed"
    );
}

/// Sends a query from `sender` (of project /p/sender) to `to` through `b`
/// itself, so that what `b` remembers is what the test looks at.
fn query_on(b: &Bridge<LocalPlatform>, sender: &str, to: &str, content: &str) {
    b.run(
        &context(Some(sender), "/p/sender"),
        Verb::Send {
            to: to.into(),
            kind: Kind::Query,
            content: content.into(),
            in_reply_to: None,
        },
    )
    .unwrap();
}

#[test]
fn a_listener_remembers_at_most_one_listing_of_pending_files() {
    let dir = tempfile::tempdir().unwrap();
    let b = bridge(dir.path());
    let sender = started(&b, &context(None, "/p/sender"));
    for inbox in 0..4 {
        let project = format!("/p/inbox{inbox}");
        let mut own = context(None, &project);
        // Its own agent, so that `start` makes a new session here.
        own.agent_session = Some(format!("agent-{inbox}"));
        let me = started(&b, &own);
        for i in 0..3 {
            query_on(&b, &sender, &me, &format!("m{i}"));
        }
        b.run(
            &context(Some(&me), "/p/x"),
            Verb::Listen {
                timeout_seconds: Some(0),
            },
        )
        .unwrap();
        // One inbox's listing at most: three pending when it looked.
        assert!((1..=3).contains(&b.remembered_count()));
    }
}

#[test]
fn two_bridges_on_one_thread_share_nothing_they_remember() {
    let dir = tempfile::tempdir().unwrap();
    let a = bridge(dir.path());
    let b = bridge(dir.path());
    let sender = started(&a, &context(None, "/p/sender"));
    let mut own = context(None, "/p/me");
    own.agent_session = Some("agent-me".into());
    let me = started(&a, &own);
    for i in 0..2 {
        query_on(&a, &sender, &me, &format!("m{i}"));
    }
    let listen = Verb::Listen {
        timeout_seconds: Some(0),
    };
    let Outcome::Delivered(first) = a
        .run(&context(Some(&me), "/p/x"), listen.clone())
        .unwrap()
        .outcome
    else {
        panic!("a message was pending");
    };
    // `a` read the inbox and holds what it showed for the commit; `b`
    // learnt nothing from it.
    assert!(a.remembered_count() >= 1);
    assert_eq!(a.caches.claimed_bytes.borrow().len(), 1);
    let me_dir = a
        .layout()
        .session(&SessionId::parse(&me).unwrap())
        .display()
        .to_string();
    assert!(a.caches.known_keys.borrow().get(&me, None).is_some());
    assert!(a.caches.liveness.borrow().get(&me_dir, None).is_some());
    assert_eq!(b.remembered_count(), 0);
    assert!(b.caches.claimed_bytes.borrow().is_empty());
    assert!(b.caches.known_keys.borrow().get(&me, None).is_none());
    assert!(b.caches.liveness.borrow().get(&me_dir, None).is_none());
    // A commit on another bridge (an MCP commit on another pooled
    // instance) works from the file.
    b.commit_delivery(&first.ticket).unwrap();
    assert!(b.caches.claimed_bytes.borrow().is_empty());
    let Outcome::Delivered(second) = b.run(&context(Some(&me), "/p/x"), listen).unwrap().outcome
    else {
        panic!("the second message was pending");
    };
    assert_ne!(second.message.id, first.message.id);
    assert_eq!(b.caches.claimed_bytes.borrow().len(), 1);
}

#[test]
fn the_bytes_of_a_claim_committed_elsewhere_are_forgotten_after_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let a = bridge(dir.path());
    let sender = started(&a, &context(None, "/p/sender"));
    let mut own = context(None, "/p/me");
    own.agent_session = Some("agent-me".into());
    let me = started(&a, &own);
    a.run(
        &context(Some(&sender), "/p/sender"),
        Verb::Send {
            to: me.clone(),
            kind: Kind::Query,
            content: "m".into(),
            in_reply_to: None,
        },
    )
    .unwrap();
    // A claim `a` handed out a lease ago, committed by another instance.
    let lapsed_at = crate::clock::epoch_millis() - crate::mailbox::CLAIM_LEASE.as_millis() as u64;
    let lapsed = format!("msg-000000000001.abcdefgh.{lapsed_at}.claim");
    a.caches
        .claimed_bytes
        .borrow_mut()
        .insert(lapsed.clone(), b"{}".to_vec());
    let Outcome::Delivered(delivery) = a
        .run(
            &context(Some(&me), "/p/x"),
            Verb::Listen {
                timeout_seconds: Some(0),
            },
        )
        .unwrap()
        .outcome
    else {
        panic!("a message was pending");
    };
    let kept = a.caches.claimed_bytes.borrow();
    assert!(!kept.contains_key(&lapsed));
    assert!(kept.contains_key(&delivery.ticket.claim_name));
}

#[test]
fn a_bounded_listing_stops_at_enough_matching_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..5 {
        std::fs::write(root.join(format!("msg-{i}.json")), "{}").unwrap();
    }
    std::fs::write(root.join(".tmp-writing"), "{").unwrap();
    std::fs::write(root.join("notes.txt"), "").unwrap();
    std::fs::create_dir(root.join("claimed")).unwrap();
    let some = crate::files::list_some(root, ".json", 2, None).unwrap();
    assert_eq!(some.len(), 2, "{some:?}");
    assert!(
        some.iter()
            .all(|n| n.starts_with("msg-") && n.ends_with(".json"))
    );
    let mut all = crate::files::list_some(root, ".json", 100, None).unwrap();
    all.sort();
    let expected: Vec<String> = (0..5).map(|i| format!("msg-{i}.json")).collect();
    assert_eq!(all, expected);
}

fn run_as(root: &Path, session: &str, verb: Verb) -> crate::Report {
    bridge(root)
        .run(&context(Some(session), "/p/x"), verb)
        .unwrap_or_else(|f| panic!("{verb_err:?}", verb_err = f.error))
}

fn send_as(
    root: &Path,
    from: &str,
    to: &str,
    kind: Kind,
    content: &str,
    in_reply_to: Option<&str>,
) {
    run_as(
        root,
        from,
        Verb::Send {
            to: to.into(),
            kind,
            content: content.into(),
            in_reply_to: in_reply_to.map(str::to_string),
        },
    );
}

fn taken(report: crate::Report) -> crate::Delivery {
    match report.outcome {
        Outcome::Delivered(d) => d,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

fn read_names(root: &Path, session: &str) -> Vec<String> {
    let layout = Layout::new(root);
    crate::files::list(&layout.read(&SessionId::parse(session).unwrap())).unwrap_or_default()
}

#[test]
fn the_answer_to_a_connect_is_taken_silently() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let app = start(root, "/p/app");
    let lib = start(root, "/p/lib");
    run_as(root, &app, Verb::Connect(lib.clone()));
    // The library's listener answers the ping with a pong.
    let ping = taken(listen_once(root, &lib).unwrap());
    assert!(ping.answered_ping.is_some());
    bridge(root).commit_delivery(&ping.ticket).unwrap();
    // The app finds nothing to do, and the pong is filed, not left pending.
    let nothing = listen_once(root, &app).unwrap_err();
    assert!(
        matches!(nothing.error, crate::BridgeError::TimedOut(0)),
        "{nothing:?}"
    );
    assert_eq!(read_names(root, &app).len(), 1, "the pong is filed as read");
    // And nobody answered the pong: the library's inbox is empty.
    let again = listen_once(root, &lib).unwrap_err();
    assert!(matches!(again.error, crate::BridgeError::TimedOut(0)));
}

#[test]
fn an_original_style_ping_back_ends_the_exchange() {
    // The original's agent answers every ping with a new ping, without
    // inReplyTo. A ping from a peer this session pinged moments ago is that
    // answer: it is filed silently and not answered, so the loop ends.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ours = start(root, "/p/ours");
    let original = start(root, "/p/original");
    run_as(root, &ours, Verb::Connect(original.clone()));
    send_as(root, &original, &ours, Kind::Ping, "connected", None);
    let quiet = listen_once(root, &ours).unwrap_err();
    assert!(
        matches!(quiet.error, crate::BridgeError::TimedOut(0)),
        "{quiet:?}"
    );
    // The original's inbox holds only our connect ping: no answer was sent.
    let first = taken(listen_once(root, &original).unwrap());
    assert_eq!(first.message.from, ours);
    assert!(
        first.message.in_reply_to.is_none(),
        "that is the connect ping"
    );
    bridge(root).commit_delivery(&first.ticket).unwrap();
    // `first` was answered with a pong by `original`'s listen; `ours` files
    // it silently too.
    assert!(matches!(
        listen_once(root, &ours).unwrap_err().error,
        crate::BridgeError::TimedOut(0)
    ));
    assert!(matches!(
        listen_once(root, &original).unwrap_err().error,
        crate::BridgeError::TimedOut(0)
    ));
}

#[test]
fn a_ping_from_a_peer_not_pinged_lately_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let lib = start(root, "/p/lib");
    let app = start(root, "/p/app");
    send_as(root, &app, &lib, Kind::Ping, "connected", None);
    let ping = taken(listen_once(root, &lib).unwrap());
    let pong = ping.answered_ping.expect("a new peer's ping is answered");
    assert_eq!(pong.in_reply_to.as_deref(), Some(ping.message.id.as_str()));
}

#[test]
fn session_ended_notices_wait_for_a_real_message_and_show_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let lib = start(root, "/p/lib");
    let app = start(root, "/p/app");
    let other = start(root, "/p/other");
    send_as(root, &app, &lib, Kind::Query, "hello?", None);
    let query = taken(listen_once(root, &lib).unwrap());
    bridge(root).commit_delivery(&query.ticket).unwrap();
    run_as(root, &app, Verb::Stop);
    // The notice alone is nothing to do for the wake hook: it finds nothing.
    let wake = Context {
        caller: crate::Caller::WakeHook,
        ..context(Some(&lib), "/p/x")
    };
    let listen = Verb::Listen {
        timeout_seconds: Some(0),
    };
    let alone = bridge(root).run(&wake, listen.clone()).unwrap_err();
    assert!(
        matches!(alone.error, crate::BridgeError::TimedOut(0)),
        "{alone:?}"
    );
    // Status names the ended peer and counts no pending work.
    let status = run_as(root, &lib, Verb::Status);
    assert!(
        status
            .rendered
            .contains(&format!("{app} \"app\" ended its session at ")),
        "{}",
        status.rendered
    );
    assert!(
        status.rendered.contains("Pending messages: 0"),
        "{}",
        status.rendered
    );
    // The next real message carries the notice, once.
    send_as(root, &other, &lib, Kind::Query, "next?", None);
    let report = bridge(root).run(&wake, listen.clone()).unwrap();
    assert!(
        report
            .rendered
            .contains(&format!("Also: {app} \"app\" ended its session at ")),
        "{}",
        report.rendered
    );
    let next = taken(report);
    assert_eq!(next.message.content, "next?");
    assert_eq!(next.notices.len(), 1);
    bridge(root).commit_delivery(&next.ticket).unwrap();
    send_as(root, &other, &lib, Kind::Query, "third?", None);
    let third = bridge(root).run(&wake, listen).unwrap();
    assert!(!third.rendered.contains("Also:"), "{}", third.rendered);
}

#[test]
fn a_watched_listener_is_told_a_peer_left_when_nothing_else_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let lib = start(root, "/p/lib");
    let app = start(root, "/p/app");
    let other = start(root, "/p/other");
    // Peers that talked to lib tell it when they end.
    for peer in [&app, &other] {
        send_as(root, peer, &lib, Kind::Query, "hello?", None);
        let query = taken(listen_once(root, &lib).unwrap());
        bridge(root).commit_delivery(&query.ticket).unwrap();
    }
    run_as(root, &app, Verb::Stop);
    // A real message pending goes first, with the notice after it.
    send_as(root, &other, &lib, Kind::Query, "first?", None);
    let report = listen_once(root, &lib).unwrap();
    let first = taken(report.clone());
    assert_eq!(first.message.content, "first?");
    assert!(
        report
            .rendered
            .contains(&format!("Also: {app} \"app\" ended its session at ")),
        "{}",
        report.rendered
    );
    bridge(root).commit_delivery(&first.ticket).unwrap();
    // Nothing else pending: a terminal (and check-inbox) shows the notice
    // itself rather than waiting on, or saying there is nothing.
    run_as(root, &other, Verb::Stop);
    let report = bridge(root)
        .run(&context(Some(&lib), "/p/x"), Verb::CheckInbox)
        .unwrap();
    assert!(
        report.rendered.starts_with(&format!(
            "{other} \"other\" ended its session. Nothing to answer.\n"
        )),
        "{}",
        report.rendered
    );
    let notice = taken(report);
    assert_eq!(notice.message.kind, Kind::SessionEnded);
    bridge(root).commit_delivery(&notice.ticket).unwrap();
    // Shown once.
    assert!(matches!(
        bridge(root)
            .run(&context(Some(&lib), "/p/x"), Verb::CheckInbox)
            .unwrap()
            .outcome,
        Outcome::NothingPending
    ));
}

/// A pending message file from `from` to `to`, written straight into the
/// inbox.
fn plant_pending(root: &Path, from: &str, to: &str, id: &str, content: &str) {
    let from = SessionId::parse(from).unwrap();
    let to_id = SessionId::parse(to).unwrap();
    let mut message =
        crate::wire::Message::new(&from, &to_id, Kind::Query, content.into(), None, "p");
    message.id = id.to_string();
    let inbox = Layout::new(root).inbox(&to_id);
    std::fs::write(inbox.join(format!("{id}.json")), message.to_bytes()).unwrap();
}

#[test]
fn a_look_sees_past_a_window_of_messages_it_cannot_take() {
    // Hundreds of pending messages this session sent itself, which listen
    // skips, fill every window a look reads; one from a peer lies beyond.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let me = start(root, "/p/me");
    let peer = start(root, "/p/peer");
    for i in 0..600 {
        plant_pending(root, &me, &me, &format!("msg-self{i:08}"), "to myself");
    }
    let inbox = Layout::new(root).inbox(&SessionId::parse(&me).unwrap());
    // Natively, a listing comes in the directory's own order: place the
    // peer's message where the first window does not reach.
    let window = crate::mailbox::PENDING_WINDOW;
    let beyond = (0..100)
        .map(|i| format!("msg-peer{i:08}"))
        .find(|id| {
            plant_pending(root, &peer, &me, id, "from the peer");
            let first = crate::files::list_some(&inbox, ".json", window, None).unwrap();
            let unseen = !first.contains(&format!("{id}.json"));
            if !unseen {
                std::fs::remove_file(inbox.join(format!("{id}.json"))).unwrap();
            }
            unseen
        })
        .expect("some name lies past the first window");
    let report = listen_once(root, &me).unwrap_or_else(|f| panic!("{f:?}"));
    let Outcome::Delivered(delivery) = report.outcome else {
        panic!("{:?}", report.outcome);
    };
    assert_eq!(delivery.message.id, beyond);
    assert_eq!(delivery.message.content, "from the peer");
}

#[test]
fn a_commit_killed_after_deciding_is_finished_by_the_next_look_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let me = start(root, "/p/me");
    let peer = start(root, "/p/peer");
    plant_pending(root, &peer, &me, "msg-decided00001", "once only");
    let Outcome::Delivered(delivery) = listen_once(root, &me).unwrap().outcome else {
        panic!("nothing delivered");
    };
    // The commit's deciding rename happened, with a claim old enough to
    // have lapsed, and then its process died.
    let layout = Layout::new(root);
    let id = SessionId::parse(&me).unwrap();
    let claimed = layout.claimed(&id);
    let old = format!(
        "msg-decided00001.{}.{}.taken",
        &delivery.ticket.claim_name[17..25],
        crate::clock::epoch_millis() - 60_000
    );
    std::fs::rename(
        claimed.join(&delivery.ticket.claim_name),
        claimed.join(&old),
    )
    .unwrap();

    let again = listen_once(root, &me);
    assert!(
        matches!(again, Err(ref f) if f.error == crate::BridgeError::TimedOut(0)),
        "{again:?}"
    );
    assert_eq!(std::fs::read_dir(&claimed).unwrap().count(), 0);
    let kept = std::fs::read_to_string(layout.read(&id).join("msg-decided00001.json")).unwrap();
    assert!(kept.contains("\"status\": \"read\""), "{kept}");
    assert!(kept.contains("once only"), "{kept}");
    // And the commit that did not finish is not taken for a new one.
    assert!(bridge(root).commit_delivery(&delivery.ticket).is_err());
}

#[test]
fn an_ask_follows_up_only_when_the_asker_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let app = start(root, "/p/app");
    let lib = start(root, "/p/lib");
    let layout = Layout::new(root);
    let app_id = SessionId::parse(&app).unwrap();
    let lib_id = SessionId::parse(&lib).unwrap();
    let ask = |question: &str, in_reply_to: Option<String>| -> crate::wire::Message {
        let failed = bridge(root)
            .run(
                &context(Some(&app), "/p/app"),
                Verb::Ask {
                    to: lib.clone(),
                    content: question.into(),
                    timeout_seconds: 0,
                    in_reply_to,
                },
            )
            .unwrap_err();
        assert!(matches!(
            failed.error,
            crate::BridgeError::NotAnswered { seconds: 0, .. }
        ));
        let query = taken(listen_once(root, &lib).unwrap());
        bridge(root).commit_delivery(&query.ticket).unwrap();
        query.message
    };
    let first = ask("what changed in v2?", None);
    // The reply is taken just now: the next question is still about
    // something else unless the asker names the message it follows up.
    let reply = bridge(root)
        .run(
            &context(Some(&lib), "/p/lib"),
            Verb::Reply {
                message_id: first.id.clone(),
                content: "setup()".into(),
            },
        )
        .unwrap();
    let Outcome::Sent(sent) = reply.outcome else {
        panic!("{:?}", reply.outcome);
    };
    let taken_reply = taken(listen_once(root, &app).unwrap());
    bridge(root).commit_delivery(&taken_reply.ticket).unwrap();
    // A record an earlier version left behind changes nothing either.
    let threads = layout.threads(&app_id);
    std::fs::create_dir_all(&threads).unwrap();
    let now = crate::clock::epoch_millis();
    std::fs::write(
        threads.join(lib_id.as_str()),
        format!("{} {now}", sent.message.id),
    )
    .unwrap();
    assert_eq!(
        ask("an unrelated question", None).in_reply_to,
        None,
        "a new question is not labelled a follow-up"
    );
    assert_eq!(
        ask("and the config?", Some(sent.message.id.clone()))
            .in_reply_to
            .as_deref(),
        Some(sent.message.id.as_str()),
        "a question the asker says follows up does"
    );
}

#[test]
fn an_mcp_client_is_named_in_its_manifest_and_told_to_answer_with_tools() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let asker = start(root, "/p/asker");
    let mcp = Context {
        client: Some("codex-mcp-client\n0.169.0 \u{7}".into()),
        caller: crate::Caller::Mcp,
        agent_session: Some("mcp-1".into()),
        structured: true,
        ..Context::for_project("/p/answerer")
    };
    let report = bridge(root).run(&mcp, Verb::Start).unwrap();
    let Outcome::Session(manifest) = &report.outcome else {
        panic!("{:?}", report.outcome);
    };
    // Control characters from the client never reach the manifest.
    assert_eq!(manifest.client.as_deref(), Some("codex-mcp-client 0.169.0"));
    let on_disk = std::fs::read_to_string(
        root.join("sessions")
            .join(&manifest.session_id)
            .join("manifest.json"),
    )
    .unwrap();
    let on_disk: serde_json::Value = serde_json::from_str(&on_disk).unwrap();
    assert_eq!(on_disk["client"], "codex-mcp-client 0.169.0", "{on_disk}");
    // Structured output: the text and the JSON of the same result.
    assert_eq!(report.rendered, format!("{}\n", manifest.session_id));
    let json: serde_json::Value =
        serde_json::from_str(report.structured.as_deref().unwrap()).unwrap();
    assert_eq!(json["sessionId"], manifest.session_id.as_str(), "{json}");
    let answerer = manifest.session_id.clone();
    bridge(root)
        .run(
            &context(Some(&asker), "/p/asker"),
            Verb::Send {
                to: answerer.clone(),
                kind: Kind::Query,
                content: "which version?".into(),
                in_reply_to: None,
            },
        )
        .unwrap();
    let mine = Context {
        session: Some(answerer),
        ..mcp.clone()
    };
    let delivered = bridge(root).run(&mine, Verb::CheckInbox).unwrap();
    assert!(
        delivered
            .rendered
            .contains("Answer with: the reply tool with message_id msg-"),
        "{}",
        delivered.rendered
    );
    assert!(
        !delivered.rendered.contains("bridge-host run"),
        "{}",
        delivered.rendered
    );
    // A terminal reading the same kind of message still gets the command.
    let terminal = bridge(root)
        .run(&context(Some(&asker), "/p/asker"), Verb::Peers)
        .unwrap();
    assert!(terminal.structured.is_none());
    assert!(
        terminal.rendered.contains("codex-mcp-client 0.169.0"),
        "{}",
        terminal.rendered
    );
}

#[test]
fn a_client_name_is_cut_to_its_limit_on_a_character_boundary() {
    let long = "é".repeat(200);
    let name = crate::registry::client_name(Some(&long)).unwrap();
    assert!(name.len() <= crate::registry::MAX_CLIENT_NAME_BYTES);
    assert!(name.chars().all(|c| c == 'é'));
    assert_eq!(crate::registry::client_name(Some(" \n\t ")), None);
    assert_eq!(crate::registry::client_name(None), None);
}

/// Runs a relay verb on `root` and returns its outcome.
fn relay_run(root: &Path, verb: Verb) -> Outcome {
    bridge(root)
        .run(&context(None, "/p/relay"), verb)
        .unwrap()
        .outcome
}

/// Shows session `id` of machine `machine` here, as the relay does.
fn materialize(root: &Path, machine: &str, id: &str, project: &str) -> crate::MaterializeReport {
    crate::relay_keys::testing::trust(root, machine);
    let mut manifest = crate::wire::Manifest::new(&SessionId::parse(id).unwrap(), project);
    manifest.machine = Some(machine.into());
    let verb = Verb::RelayMaterialize(crate::MaterializeRequest {
        machine: "here".into(),
        remote: vec![crate::relay_keys::testing::presence(
            machine,
            id,
            manifest.to_bytes(),
        )],
        complete: false,
        gone: Vec::new(),
    });
    match relay_run(root, verb) {
        Outcome::RelayMaterialized(report) => report,
        other => panic!("{other:?}"),
    }
}

#[test]
fn machine_names_are_plain_subject_tokens() {
    for good in ["a", "laptop", "dev-box-2", &"x".repeat(32)] {
        assert!(crate::relay::validate_machine(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "-a",
        "A",
        "a.b",
        "a b",
        "a*",
        "a>",
        &"x".repeat(33),
        "ä",
    ] {
        assert!(crate::relay::validate_machine(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_remote_session_never_replaces_a_local_one_and_cannot_be_acted_as() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let local = start(root, "/p/local");
    let report = materialize(root, "other", &local, "/p/forged");
    assert!(report.added.is_empty(), "{report:?}");
    assert!(
        report.refused[0].contains("is a session of this machine"),
        "{report:?}"
    );
    let report = materialize(root, "other", "abc123", "/p/lib");
    assert_eq!(report.added, ["abc123"]);
    // A second machine claiming the same ID is refused.
    let report = materialize(root, "third", "abc123", "/p/lib");
    assert!(
        report.refused[0].contains("already shown for machine other"),
        "{report:?}"
    );
    let acted = bridge(root).run(&context(Some("abc123"), "/p/x"), Verb::Status);
    let failure = acted.unwrap_err();
    assert!(
        failure.rendered.contains(
            "runs on machine other; it is shown here by the relay and can be sent to, but only"
        ),
        "{}",
        failure.rendered
    );
}

#[test]
fn mail_from_the_network_must_come_from_the_publishing_machine() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let me = start(root, "/p/app");
    materialize(root, "b", "bbbbbb", "/p/lib");
    materialize(root, "c", "cccccc", "/p/other");
    let message = |id: &str, from: &str| {
        let mut m = crate::wire::Message::new(
            &SessionId::parse(from).unwrap(),
            &SessionId::parse(&me).unwrap(),
            Kind::Query,
            "hello".into(),
            None,
            "lib",
        );
        m.id = id.into();
        m.status = crate::wire::Status::Pending;
        m.to_bytes()
    };
    let batch = vec![
        ("b".into(), message("msg-aaaaaaaaaaaa", "bbbbbb")),
        ("b".into(), message("msg-bbbbbbbbbbbb", "cccccc")),
        ("b".into(), message("msg-aaaaaaaaaaaa", "bbbbbb")),
        ("b".into(), message("msg-cccccccccccc", "dddddd")),
    ];
    let inbox = Layout::new(root).inbox(&SessionId::parse(&me).unwrap());
    let pending = || -> Vec<String> {
        std::fs::read_dir(&inbox)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect()
    };
    // First offer: a sender not known yet holds the whole batch back, so
    // that nothing after it can land before it.
    let verb = Verb::RelayInbound {
        machine: "here".into(),
        messages: crate::relay_keys::testing::signed("here", batch.clone()),
        last_offer: false,
    };
    let Outcome::RelayReceived(verdicts) = relay_run(root, verb) else {
        panic!()
    };
    assert_eq!(
        verdicts[0],
        crate::InboundVerdict::Held("msg-aaaaaaaaaaaa".into())
    );
    assert!(
        matches!(&verdicts[1], crate::InboundVerdict::Refused(why) if why.contains("a session of machine \"c\"")),
        "{verdicts:?}"
    );
    assert_eq!(
        verdicts[3],
        crate::InboundVerdict::UnknownSender("dddddd".into())
    );
    assert!(pending().is_empty(), "{:?}", pending());
    // Last offer: the sender is still unknown, so it is refused, and the
    // rest is written once.
    let verb = Verb::RelayInbound {
        machine: "here".into(),
        messages: crate::relay_keys::testing::signed("here", batch),
        last_offer: true,
    };
    let Outcome::RelayReceived(verdicts) = relay_run(root, verb) else {
        panic!()
    };
    assert_eq!(
        verdicts[0],
        crate::InboundVerdict::Delivered("msg-aaaaaaaaaaaa".into())
    );
    assert!(
        matches!(&verdicts[1], crate::InboundVerdict::Refused(_)),
        "{verdicts:?}"
    );
    assert_eq!(
        verdicts[2],
        crate::InboundVerdict::Duplicate("msg-aaaaaaaaaaaa".into())
    );
    assert_eq!(
        verdicts[3],
        crate::InboundVerdict::Refused(
            "msg-cccccccccccc names dddddd as its sender, which is not a session of machine \"b\""
                .into()
        )
    );
    assert_eq!(pending(), ["msg-aaaaaaaaaaaa.json"]);
}

#[test]
fn a_taken_message_is_marked_read_in_place_and_moved_but_a_linked_one_is_copied() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let app = start(root, "/p/app");
    let lib = start(root, "/p/lib");
    let layout = Layout::new(root);
    let inbox = layout.inbox(&SessionId::parse(&lib).unwrap());
    let read = layout.read(&SessionId::parse(&lib).unwrap());
    let only_file = |dir: &Path| {
        let names: Vec<_> = crate::files::list(dir)
            .unwrap()
            .into_iter()
            .filter(|n| n.ends_with(".json"))
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        dir.join(&names[0])
    };

    // The file that arrived is the file kept: the same inode, its status
    // overwritten in place, every other byte as it arrived.
    send_as(root, &app, &lib, Kind::Query, "first", None);
    let arrived = only_file(&inbox);
    let (before, inode) = (
        std::fs::read_to_string(&arrived).unwrap(),
        std::fs::metadata(&arrived).unwrap().ino(),
    );
    let delivery = taken(listen_once(root, &lib).unwrap());
    bridge(root).commit_delivery(&delivery.ticket).unwrap();
    let kept = read.join(arrived.file_name().unwrap());
    assert_eq!(std::fs::metadata(&kept).unwrap().ino(), inode);
    assert_eq!(
        std::fs::read_to_string(&kept).unwrap(),
        before.replace("\"status\": \"pending\"", "\"status\": \"read\"   ")
    );
    let parsed: serde_json::Value = serde_json::from_slice(&std::fs::read(&kept).unwrap()).unwrap();
    assert_eq!(parsed["status"], "read");
    let claimed = crate::files::list(&layout.claimed(&SessionId::parse(&lib).unwrap())).unwrap();
    assert!(claimed.is_empty(), "{claimed:?}");

    // A file with a second name elsewhere is not changed under that name: a
    // marked copy is written instead.
    send_as(root, &app, &lib, Kind::Query, "second", None);
    let arrived = only_file(&inbox);
    let elsewhere = root.join("linked.json");
    std::fs::hard_link(&arrived, &elsewhere).unwrap();
    let before = std::fs::read_to_string(&arrived).unwrap();
    let delivery = taken(listen_once(root, &lib).unwrap());
    bridge(root).commit_delivery(&delivery.ticket).unwrap();
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), before);
    assert_eq!(
        std::fs::read_to_string(read.join(arrived.file_name().unwrap())).unwrap(),
        before.replace("\"status\": \"pending\"", "\"status\": \"read\"")
    );
}

#[test]
fn a_patch_in_place_stays_within_one_disk_sector() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.json");
    let (pending, read) = (crate::wire::PENDING_VALUE, crate::wire::READ_IN_PLACE);
    for (at, patched) in [
        (100, true),
        (503, true),
        (504, false),
        (508, false),
        (512, true),
    ] {
        let mut bytes = vec![b' '; 600];
        bytes[at..at + pending.len()].copy_from_slice(pending);
        std::fs::write(&file, &bytes).unwrap();
        let done = crate::files::patch_in_place(&file, at as u64, pending, read).unwrap();
        assert_eq!(done, patched, "at {at}");
        let expected = if patched { read } else { pending };
        assert_eq!(
            &std::fs::read(&file).unwrap()[at..at + 9],
            expected,
            "at {at}"
        );
    }
}
