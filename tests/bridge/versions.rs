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

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A released contract is frozen: `wit/RELEASED.sha256` lists the digest of
/// every file of every released version, and no file of a released
/// version's folder may change, appear or go.
#[test]
fn every_released_wit_file_is_unchanged() {
    use sha2::{Digest, Sha256};
    let wit = Path::new(REPO).join("wit");
    let list = std::fs::read_to_string(wit.join("RELEASED.sha256")).unwrap();
    let mut listed = std::collections::BTreeSet::new();
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let (digest, file) = line
            .split_once("  ")
            .unwrap_or_else(|| panic!("not a `sha256sum` line: {line:?}"));
        let bytes = std::fs::read(wit.join(file))
            .unwrap_or_else(|err| panic!("released wit/{file} is gone ({err})"));
        let now = format!("{:x}", Sha256::digest(&bytes));
        assert_eq!(
            now, digest,
            "wit/{file} changed, but it belongs to a released version, which is frozen: \
             undo the change, and put it in a new version folder beside it"
        );
        listed.insert(file.to_string());
    }
    let versions: std::collections::BTreeSet<&str> = listed
        .iter()
        .filter_map(|f| f.split_once('/'))
        .map(|(v, _)| v)
        .collect();
    assert!(versions.contains("v0.1.0") && versions.contains("v0.2.0"));
    for version in versions {
        for entry in std::fs::read_dir(wit.join(version)).unwrap().flatten() {
            let file = format!("{version}/{}", entry.file_name().to_string_lossy());
            assert!(
                listed.contains(&file),
                "wit/{file} was added to the released version {version}, which is frozen"
            );
        }
    }
}

/// The published crate carries the guest as a built component
/// (`host/prebuilt/`, used by build.rs when the sources are absent). It
/// must be exactly what the sources build to. After a change to the guest,
/// `BRIDGE_REFRESH_PREBUILT=1 cargo test --test bridge prebuilt` writes the
/// new one.
#[test]
fn the_prebuilt_guest_is_what_the_guest_sources_build_to() {
    let built = std::fs::read(env!("BRIDGE_GUEST_WASM")).unwrap();
    let prebuilt = Path::new(REPO).join("host/prebuilt/session_bridge_guest.wasm");
    if std::env::var_os("BRIDGE_REFRESH_PREBUILT").is_some() {
        std::fs::write(&prebuilt, &built).unwrap();
    }
    let committed = std::fs::read(&prebuilt).unwrap_or_default();
    assert!(
        committed == built,
        "{} ({} bytes) is not what the guest's sources build to ({} bytes, {}); \
         run BRIDGE_REFRESH_PREBUILT=1 cargo test --test bridge prebuilt and commit it",
        prebuilt.display(),
        committed.len(),
        built.len(),
        env!("BRIDGE_GUEST_WASM")
    );
}
