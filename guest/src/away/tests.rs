//! Away answers end to end through `Bridge::run`, on a temporary
//! directory, with the host's part (the fork) played by the test.

use std::path::Path;

use crate::wire::Kind;
use crate::{
    AwayFailure, AwayJob, AwayOutcome, AwayRequest, AwayResult, AwaySettings, Bridge, BridgeError,
    Caller, Context, Layout, Liveness, LocalPlatform, Outcome, Stage, Verb,
};

fn bridge(root: &Path) -> Bridge<LocalPlatform> {
    Bridge::new(Layout::new(root), LocalPlatform::default())
}

const LIB: &str = "/p/lib";
const AGENT: &str = "3f1c9a52-0b7e-4d2a-9c61-5e8f0a1b2c3d";

fn project(dir: &str) -> Context {
    Context::for_project(dir)
}

fn as_session(id: &str) -> Context {
    Context {
        session: Some(id.into()),
        ..project("/p/app")
    }
}

fn answerer(id: &str) -> Context {
    Context {
        caller: Caller::AwayAnswerer,
        ..as_session(id)
    }
}

fn run(b: &Bridge<LocalPlatform>, context: &Context, verb: Verb) -> Outcome {
    b.run(context, verb)
        .unwrap_or_else(|f| panic!("{}", f.rendered))
        .outcome
}

fn away(b: &Bridge<LocalPlatform>, request: AwayRequest) -> crate::AwayStatus {
    match run(b, &project(LIB), Verb::Away(request)) {
        Outcome::Away(status) => status,
        other => panic!("{other:?}"),
    }
}

fn on(b: &Bridge<LocalPlatform>, settings: AwaySettings) {
    assert!(away(b, AwayRequest::On(settings)).enabled);
}

/// The library's Claude Code session, registered by its SessionStart hook.
fn library_session(b: &Bridge<LocalPlatform>) -> String {
    let context = Context {
        agent_session: Some(AGENT.into()),
        caller: Caller::SessionHook,
        ..project(LIB)
    };
    match run(b, &context, Verb::SessionStart) {
        Outcome::SessionStarted(r) => r.session.session_id,
        other => panic!("{other:?}"),
    }
}

/// Its SessionEnd hook.
fn end(b: &Bridge<LocalPlatform>) -> Outcome {
    let context = Context {
        agent_session: Some(AGENT.into()),
        caller: Caller::SessionHook,
        project_dir: String::new(),
        working_dir: "/p/lib/src".into(),
        ..project(LIB)
    };
    run(
        b,
        &context,
        Verb::SessionEnd {
            transcript: Some(format!("/home/u/.claude/projects/-p-lib/{AGENT}.jsonl")),
        },
    )
}

fn asker(b: &Bridge<LocalPlatform>) -> String {
    match run(b, &project("/p/app"), Verb::Start) {
        Outcome::Session(m) => m.session_id,
        other => panic!("{other:?}"),
    }
}

fn send_query(b: &Bridge<LocalPlatform>, from: &str, to: &str, text: &str) -> (String, Liveness) {
    match run(
        b,
        &as_session(from),
        Verb::Send {
            to: to.into(),
            kind: Kind::Query,
            content: text.into(),
            in_reply_to: None,
        },
    ) {
        Outcome::Sent(sent) => (sent.message.id, sent.recipient),
        other => panic!("{other:?}"),
    }
}

fn take(b: &Bridge<LocalPlatform>, id: &str) -> Option<AwayJob> {
    match run(b, &answerer(id), Verb::AwayTake { timeout_seconds: 0 }) {
        Outcome::AwayJob(job) => job,
        other => panic!("{other:?}"),
    }
}

fn finish(
    b: &Bridge<LocalPlatform>,
    id: &str,
    job: &AwayJob,
    outcome: AwayOutcome,
) -> Option<crate::wire::Message> {
    let result = AwayResult {
        ticket: job.ticket.clone(),
        outcome,
        turns: 1,
        cost_usd: 0.01,
        elapsed_ms: 900,
        last_written_ms: Some(1_796_600_000_000),
    };
    match run(b, &answerer(id), Verb::AwayFinish(result)) {
        Outcome::AwayFinished(reply) => reply,
        other => panic!("{other:?}"),
    }
}

fn track_stage(b: &Bridge<LocalPlatform>, asker: &str, id: &str) -> Stage {
    match run(b, &as_session(asker), Verb::Track(id.into())) {
        Outcome::Tracked(receipt) => receipt.stage,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_project_that_opted_in_keeps_its_ended_session_as_away_until_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let b = bridge(dir.path());
    on(&b, AwaySettings::default());
    let lib = library_session(&b);
    let Outcome::WentAway(manifest) = end(&b) else {
        panic!("the session stopped instead of going away");
    };
    assert_eq!(manifest.status, "away");
    let status = away(&b, AwayRequest::Status);
    assert_eq!(status.sessions.len(), 1);
    assert_eq!(status.sessions[0].agent_session, AGENT);
    assert_eq!(status.sessions[0].working_dir, "/p/lib/src");
    // Peers see it away, and a send says who answers.
    let app = asker(&b);
    let (_, recipient) = send_query(&b, &app, &lib, "what changed?");
    assert_eq!(recipient, Liveness::Away);
    // A prune after half an hour, or a session start's cleanup, keep it.
    let Outcome::Peers(peers) = run(&b, &as_session(&app), Verb::Peers) else {
        panic!()
    };
    assert!(peers.iter().any(|p| matches!(p, crate::PeerEntry::Valid(p) if p.manifest.session_id == lib && p.manifest.status == "away")));
    // The agent resumes: the same bridge session is live again.
    assert_eq!(library_session(&b), lib);
    assert!(away(&b, AwayRequest::Status).sessions.is_empty());
    assert_eq!(
        b.manifest(&crate::ids::SessionId::parse(&lib).unwrap())
            .unwrap()
            .status,
        "active"
    );
}

#[test]
fn without_the_opt_in_a_session_end_stops_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let b = bridge(dir.path());
    library_session(&b);
    assert!(matches!(end(&b), Outcome::Stopped(_)));
    assert!(b.session_ids().unwrap().is_empty());
}

#[test]
fn a_query_to_an_away_session_starts_its_answerer_and_is_answered_once_with_its_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let b = bridge(dir.path());
    on(&b, AwaySettings::default());
    let lib = library_session(&b);
    end(&b);
    let app = asker(&b);
    let (query, _) = send_query(&b, &app, &lib, "What is the codeword? `$HOME` and 'quotes'");
    assert_eq!(*b.platform.answerers.lock().unwrap(), vec![lib.clone()]);
    let job = take(&b, &lib).expect("the query is given to the answerer");
    assert_eq!(job.query.id, query);
    assert_eq!(job.agent_session, AGENT);
    assert_eq!(job.working_dir, "/p/lib/src");
    assert!(
        job.prompt
            .contains("What is the codeword? `$HOME` and 'quotes'")
    );
    assert!(job.prompt.contains("read-only copy"));
    // Claimed: a second answerer finds nothing, and a renewal keeps it.
    assert!(take(&b, &lib).is_none());
    let Outcome::AwayRenewed(renewed) =
        run(&b, &answerer(&lib), Verb::AwayRenew(job.ticket.clone()))
    else {
        panic!()
    };
    assert_ne!(renewed.claim_name, job.ticket.claim_name);
    assert!(
        b.run(&answerer(&lib), Verb::AwayRenew(job.ticket.clone()))
            .is_err(),
        "the old claim name is gone"
    );
    let job = AwayJob {
        ticket: renewed,
        ..job
    };
    let reply =
        finish(&b, &lib, &job, AwayOutcome::Answered("PELICAN-7731".into())).expect("a reply");
    let first = reply.content.lines().next().unwrap();
    assert!(
        first.contains("read-only copy of session") && first.contains("2026-12-06T"),
        "{first}"
    );
    assert!(reply.content.ends_with("PELICAN-7731"));
    assert_eq!(reply.to, app);
    assert_eq!(track_stage(&b, &app, &query), Stage::Answered);
    assert!(take(&b, &lib).is_none(), "answered once");
    assert_eq!(away(&b, AwayRequest::Status).answers_last_hour, 1);
}

#[test]
fn past_a_limit_the_query_stays_queued_and_its_ask_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let b = bridge(dir.path());
    on(
        &b,
        AwaySettings {
            per_hour: Some(1),
            ..AwaySettings::default()
        },
    );
    let lib = library_session(&b);
    end(&b);
    let app = asker(&b);
    let (first, _) = send_query(&b, &app, &lib, "first");
    let job = take(&b, &lib).unwrap();
    finish(&b, &lib, &job, AwayOutcome::Answered("one".into())).unwrap();
    // The second question: asked and waited for while the answerer looks.
    let root = dir.path().to_path_buf();
    let (lib2, app2) = (lib.clone(), app.clone());
    let asking = std::thread::spawn(move || {
        bridge(&root).run(
            &as_session(&app2),
            Verb::Ask {
                to: lib2,
                content: "second".into(),
                timeout_seconds: 20,
                in_reply_to: None,
            },
        )
    });
    let mut held = None;
    for _ in 0..100 {
        assert!(take(&b, &lib).is_none(), "no fork past the limit");
        if b.held_queries(&crate::ids::SessionId::parse(&lib).unwrap()) == 1 {
            held = Some(());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    held.expect("the second query was held");
    let failure = asking.join().unwrap().expect_err("the ask ends with why");
    let BridgeError::Held(held) = &failure.error else {
        panic!("{:?}", failure.error)
    };
    let (reason, message_id) = (&held.reason, &held.message_id);
    assert!(reason.contains("1 away answers per hour"), "{reason}");
    assert!(
        failure.rendered.contains("stays queued"),
        "{}",
        failure.rendered
    );
    assert_eq!(track_stage(&b, &app, message_id), Stage::Held);
    assert_eq!(track_stage(&b, &app, &first), Stage::Answered);
    let lib_id = crate::ids::SessionId::parse(&lib).unwrap();
    assert_eq!(b.pending_queries(&lib_id), 1, "still in the inbox");
    // The live session takes it when it comes back.
    library_session(&b);
    let Outcome::Delivered(d) = run(
        &b,
        &as_session(&lib),
        Verb::Listen {
            timeout_seconds: Some(0),
        },
    ) else {
        panic!()
    };
    assert_eq!(&d.message.id, message_id);
}

#[test]
fn a_fork_cut_off_is_tried_once_more_then_held_and_a_missing_transcript_stops_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let b = bridge(dir.path());
    on(&b, AwaySettings::default());
    let lib = library_session(&b);
    end(&b);
    let app = asker(&b);
    let (query, _) = send_query(&b, &app, &lib, "q");
    let killed = || AwayOutcome::Failed(AwayFailure::ClientError("signal: 9 (SIGKILL)".into()));
    let job = take(&b, &lib).unwrap();
    assert!(finish(&b, &lib, &job, killed()).is_none());
    let job = take(&b, &lib).expect("tried once more");
    assert_eq!(job.query.id, query);
    assert!(finish(&b, &lib, &job, killed()).is_none());
    assert!(take(&b, &lib).is_none());
    assert_eq!(track_stage(&b, &app, &query), Stage::Held);
    // Another query, and the transcript is gone: the session stops.
    let (other, _) = send_query(&b, &app, &lib, "q2");
    let job = take(&b, &lib).unwrap();
    assert_eq!(job.query.id, other);
    finish(
        &b,
        &lib,
        &job,
        AwayOutcome::Failed(AwayFailure::TranscriptMissing("/gone.jsonl".into())),
    );
    assert!(b.session_ids().unwrap().iter().all(|id| id.as_str() != lib));
    assert_eq!(track_stage(&b, &app, &other), Stage::RecipientGone);
}

#[test]
fn ledger_entries_written_in_one_millisecond_each_count() {
    // A fork cut off at once and its retry can end in the same
    // millisecond; the second failure once replaced the first, and the
    // query was tried a third time (seen in CI).
    let dir = tempfile::tempdir().unwrap();
    let b = bridge(dir.path());
    let query = crate::ids::MessageId::parse("msg-0dzhx0wgcik9").unwrap();
    for _ in 0..200 {
        b.ledger_start(LIB, &query).unwrap();
        b.ledger_failed(LIB, &query).unwrap();
    }
    assert_eq!(b.away_failures(LIB, &query), 200);
    let spent = b.away_spent(LIB);
    assert_eq!((spent.last_hour, spent.last_day), (200, 200));
}

#[test]
fn off_and_cleanup_end_away_sessions_and_a_session_start_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let b = bridge(dir.path());
    on(&b, AwaySettings::default());
    let lib = library_session(&b);
    end(&b);
    asker(&b);
    assert!(
        b.session_ids().unwrap().iter().any(|id| id.as_str() == lib),
        "a start's cleanup keeps it"
    );
    let status = away(&b, AwayRequest::Off);
    assert_eq!(status.stopped, vec![lib.clone()]);
    assert!(!status.enabled);
    on(&b, AwaySettings::default());
    let lib = library_session(&b);
    end(&b);
    let Outcome::Cleaned(report) = run(&b, &project("/p/app"), Verb::Cleanup { dry_run: false })
    else {
        panic!()
    };
    assert!(report.sessions_removed.contains(&lib), "{report:?}");
}

#[test]
fn limits_out_of_range_are_refused_with_the_range_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let b = bridge(dir.path());
    let failure = b
        .run(
            &project(LIB),
            Verb::Away(AwayRequest::On(AwaySettings {
                max_turns: Some(0),
                ..AwaySettings::default()
            })),
        )
        .unwrap_err();
    assert!(
        failure.rendered.contains("1 to 100"),
        "{}",
        failure.rendered
    );
    let failure = b
        .run(
            &project(LIB),
            Verb::Away(AwayRequest::On(AwaySettings {
                spend_per_day: Some(f64::NAN),
                ..AwaySettings::default()
            })),
        )
        .unwrap_err();
    assert!(
        failure.rendered.contains("--spend-per-day"),
        "{}",
        failure.rendered
    );
    assert!(!away(&b, AwayRequest::Status).enabled);
}
