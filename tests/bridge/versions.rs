//! A guest built against the frozen 0.1.0 contract keeps running beside
//! 0.2.0: the fixture is the default guest as it was released for 0.1.0
//! (tests/fixtures/guest-v0.1.0), run by today's host.

use std::path::{Path, PathBuf};

use crate::util::{World, parse_listen};

fn guest_v0_1_0() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/guest-v0.1.0/session_bridge_guest.wasm")
}

#[test]
fn the_released_0_1_0_guest_is_recognised_and_runs() {
    let w = World::new();
    let a = w.project("a");
    let check = w
        .cmd(&a)
        .args(["guest", "check"])
        .args([guest_v0_1_0()])
        .ok();
    assert!(
        check.contains("implements: session-bridge:protocol@0.1.0"),
        "{check}"
    );
    assert!(check.contains("policy: default 0.1.0"), "{check}");
    assert!(check.contains("can run: yes"), "{check}");
}

#[test]
fn a_0_1_0_guest_sends_and_listens_beside_the_0_2_0_guest() {
    let w = World::new();
    let old_project = w.project("old");
    let new_project = w.project("new");
    let old = |cwd: &Path| w.cmd(cwd).env("BRIDGE_GUEST", guest_v0_1_0());
    let old_id = old(&old_project)
        .args(["run", "start"])
        .ok()
        .trim()
        .to_string();
    let new_id = w.start(&new_project);

    // 0.1.0 writes, 0.2.0 reads.
    let sent = old(&old_project)
        .args(["run", "send", &new_id, "query", "written by 0.1.0"])
        .ok();
    let sent = sent.trim();
    assert!(sent.starts_with("msg-"), "{sent}");
    let heard = w
        .cmd(&new_project)
        .args(["run", "listen", "--timeout", "5"])
        .ok();
    let (fields, content) = parse_listen(&heard);
    assert_eq!(content, "written by 0.1.0");
    assert_eq!(fields["MESSAGE_ID"], sent);
    assert_eq!(fields["FROM_ID"], old_id);

    // 0.2.0 answers, 0.1.0 reads the answer.
    let answer = w
        .cmd(&new_project)
        .args(["run", "reply", sent, "answered by 0.2.0"])
        .ok();
    let heard = old(&old_project)
        .args(["run", "listen", "--timeout", "5"])
        .ok();
    let (fields, content) = parse_listen(&heard);
    assert_eq!(content, "answered by 0.2.0");
    assert_eq!(fields["MESSAGE_ID"], answer.trim());
    assert_eq!(fields["IN_REPLY_TO"], sent);

    // check-inbox, a real verb in 0.2.0, is listen-without-waiting for 0.1.0.
    let nothing = old(&old_project).args(["run", "check-inbox"]).ok();
    assert_eq!(nothing, "No new messages.\n");

    // What 0.1.0 lacks is refused in words, and nothing is lost.
    let (_, stderr) = old(&old_project).args(["run", "track", sent]).fails();
    assert!(
        stderr.contains("`track` needs a guest for session-bridge:protocol@0.2.0"),
        "{stderr}"
    );
    let (_, stderr) = old(&old_project)
        .args(["run", "receive", "msg-000000000000"])
        .fails();
    assert!(stderr.contains("no message msg-000000000000"), "{stderr}");
    let status = w.cmd(&new_project).args(["run", "status"]).json();
    assert_eq!(status["pending"], 0, "{status}");
}
