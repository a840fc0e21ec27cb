//! The sandbox is real: the guest reaches the bridge directory and nothing
//! else, and a hostile guest is stopped with a clear error.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::{World, probe_guest, snapshot};

/// A directory outside the bridge holding a secret and an `inbox/` folder.
fn outside(w: &World) -> std::path::PathBuf {
    let dir = w.root.path().join("outside");
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    std::fs::write(dir.join("secret.txt"), "top secret").unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        r#"{"sessionId":"evil00","projectName":"x","projectPath":"/x","startedAt":"2026-11-23T10:00:00Z","lastHeartbeat":"2026-11-23T10:00:00Z","status":"active","capabilities":[]}"#,
    )
    .unwrap();
    dir
}

#[test]
fn a_symlinked_session_directory_cannot_be_written_through() {
    let w = World::new();
    let a = w.project("a");
    w.start(&a);
    let target = outside(&w);
    std::os::unix::fs::symlink(&target, w.bridge.join("sessions/evil00")).unwrap();
    let before = snapshot(&target);
    let (_, stderr) = w
        .cmd(&a)
        .args(["run", "send", "evil00", "query", "escape?"])
        .fails();
    assert!(stderr.contains("no session evil00"), "{stderr}");
    assert_eq!(snapshot(&target), before, "something was written outside");
}

#[test]
fn a_symlinked_inbox_cannot_be_written_through() {
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    w.start(&a);
    let b_id = w.start(&b);
    let target = outside(&w);
    let inbox = w.session_dir(&b_id).join("inbox");
    std::fs::remove_dir_all(&inbox).unwrap();
    std::os::unix::fs::symlink(target.join("inbox"), &inbox).unwrap();
    let before = snapshot(&target);
    let (_, stderr) = w
        .cmd(&a)
        .args(["run", "send", &b_id, "query", "escape?"])
        .fails();
    assert!(
        stderr.contains("not a directory; the bridge follows no links"),
        "{stderr}"
    );
    assert_eq!(snapshot(&target), before, "something was written outside");
}

fn probe(w: &World, cwd: &Path, attack: &str) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let (output, _) = w
        .cmd(cwd)
        .args(["--guest"])
        .args([probe_guest()])
        .args(["run", "connect", attack])
        .output();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn a_hostile_guest_cannot_leave_the_bridge_directory() {
    let w = World::new();
    let a = w.project("a");
    w.start(&a);
    let target = outside(&w);
    std::os::unix::fs::symlink(&target, w.bridge.join("planted")).unwrap();
    let secret = target.join("secret.txt");
    let before = snapshot(w.root.path());

    let secret_text = secret.to_str().unwrap();
    for attack in [
        "read:/etc/passwd".to_string(),
        format!("read:{secret_text}"),
        "read:../../outside/secret.txt".to_string(),
        "read:sessions/../../../outside/secret.txt".to_string(),
        "read:planted/secret.txt".to_string(),
        format!("write:{}", target.join("new.txt").display()),
        "write:../../outside/new.txt".to_string(),
        "write:planted/new.txt".to_string(),
        "list:..".to_string(),
        "list:planted".to_string(),
        "watch:..".to_string(),
        "watch:planted".to_string(),
        format!("watch:{}", target.display()),
    ] {
        let (code, stdout, stderr, _) = probe(&w, &a, &attack);
        assert_eq!(code, Some(1), "{attack} was not refused: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{attack}: {stdout}");
    }
    assert_eq!(
        snapshot(w.root.path()).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "top secret");

    // Inside, the same guest works: the refusals above are the sandbox's.
    let (code, stdout, stderr, _) = probe(&w, &a, "list:sessions");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "listed 1 entries in sessions\n");
    // Change notifications work inside (a silent fallback to polling would
    // cost latency and idle CPU).
    #[cfg(target_os = "linux")]
    {
        let (code, stdout, stderr, _) = probe(&w, &a, "watch:sessions");
        assert_eq!(
            (code, stdout.as_str()),
            (Some(0), "watching sessions\n"),
            "{stderr}"
        );
    }
}

#[test]
fn a_guest_that_imports_sockets_runs_but_reaches_no_network() {
    // The probe guest imports wasi:sockets (its `connect` uses std::net),
    // so it must still instantiate; the host links sockets only for guests
    // that import them, and denies every address.
    let w = World::new();
    let a = w.project("a");
    w.start(&a);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    for target in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let (code, stdout, stderr, _) = probe(&w, &a, &format!("connect:{target}"));
        assert_eq!(code, Some(1), "{target} was not refused: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{target}: {stdout}");
        assert!(stderr.contains(&target), "{stderr}");
    }
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the guest reached the listener: {accepted:?}"
    );
    // The same guest runs its file probes as before.
    let (code, stdout, stderr, _) = probe(&w, &a, "list:sessions");
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "listed 1 entries in sessions\n"),
        "{stderr}"
    );
}

#[test]
fn a_hostile_guest_is_stopped_when_it_loops_hoards_or_floods() {
    let w = World::new();
    let a = w.project("a");
    for (attack, expected) in [
        ("spin", "instruction budget"),
        ("hog", "more than 256 MiB of memory"),
        ("shout", "more data than it accepts"),
    ] {
        let (code, stdout, stderr, took) = probe(&w, &a, attack);
        assert_eq!(code, Some(1), "{attack}: {stderr}");
        assert!(stdout.is_empty(), "{attack} printed {} bytes", stdout.len());
        assert!(stderr.contains(expected), "{attack}: {stderr}");
        assert!(
            stderr.len() < 70_000,
            "{attack}: stderr of {} bytes",
            stderr.len()
        );
        assert!(took < Duration::from_secs(60), "{attack} took {took:?}");
    }
    // Unbounded writes to its stderr go nowhere beyond a small buffer.
    let (code, _, stderr, _) = probe(&w, &a, "stderr");
    assert_eq!(code, Some(0));
    assert!(stderr.len() < 70_000);
}

#[test]
fn no_guest_can_reach_into_a_session_directory_others_can_write() {
    // The host withholds a loose session directory from whatever guest it
    // runs, not only from the embedded one, which would not try.
    let w = World::new();
    let a = w.project("a");
    let a_id = w.start(&a);
    let loose_id = w.start(&w.project("loose"));
    let loose = w.session_dir(&loose_id);
    std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o775)).unwrap();
    let before = snapshot(&loose);
    for attack in [
        format!("read:sessions/{loose_id}/manifest.json"),
        format!("read:./sessions/{a_id}/../{loose_id}/manifest.json"),
        format!("write:sessions/{loose_id}/inbox/msg-planted00001.json"),
        format!("list:sessions/{loose_id}/inbox"),
        format!("watch:sessions/{loose_id}/inbox"),
    ] {
        let (code, stdout, stderr, _) = probe(&w, &a, &attack);
        assert_eq!(code, Some(1), "{attack} was not refused: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{attack}: {stdout}");
    }
    assert_eq!(snapshot(&loose), before);
    // The private session next to it is the guest's as before.
    let (code, stdout, stderr, _) = probe(&w, &a, &format!("read:sessions/{a_id}/manifest.json"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("read "), "{stdout}");
}

/// A guest may sleep (WASI clocks): the host serves the timer instead of
/// panicking.
#[test]
fn a_guest_that_sleeps_is_served_not_a_host_panic() {
    let w = World::new();
    let a = w.project("alpha");
    w.start(&a);
    let (code, stdout, stderr, _) = probe(&w, &a, "sleep:200");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "slept 200 ms\n");
}
