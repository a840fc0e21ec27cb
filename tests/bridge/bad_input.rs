//! Bad input gets a clear error and loses nothing.

use std::os::unix::fs::PermissionsExt;

use crate::util::{World, parse_listen, snapshot};

const HOSTILE_SESSION_IDS: &[&str] = &[
    "../../elsewhere",
    "..",
    "/etc/x",
    "ABCDEF",
    "abc12",
    "abc1234",
    "ab/c12",
    "abc\u{0}12",
    "аbc123", // Cyrillic а
    "",
];

#[test]
fn hostile_session_ids_are_refused_and_nothing_is_written() {
    let w = World::new();
    let a = w.project("a");
    w.start(&a);
    let before = snapshot(w.root.path());
    for bad in HOSTILE_SESSION_IDS.iter().filter(|b| !b.contains('\0')) {
        for args in [
            vec!["run", "send", bad, "query", "hi"],
            vec!["run", "connect", bad],
            vec!["run", "ask", bad, "hi", "--timeout", "1"],
        ] {
            let (_, stderr) = w.cmd(&a).args(&args).fails();
            assert!(
                stderr.contains("invalid session ID") || stderr.contains("no session"),
                "{args:?}: {stderr}"
            );
            if !bad.is_empty() {
                assert!(stderr.contains("invalid session ID"), "{args:?}: {stderr}");
            }
        }
        if !bad.is_empty() {
            let (_, stderr) = w.cmd(&a).args(["run", "id", "--session", bad]).fails();
            assert!(stderr.contains("invalid session ID"), "{bad:?}: {stderr}");
        }
    }
    assert_eq!(
        snapshot(w.root.path()).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
}

#[test]
fn hostile_message_ids_are_refused_and_nothing_is_written() {
    let w = World::new();
    let a = w.project("a");
    w.start(&a);
    let before = snapshot(w.root.path());
    for bad in [
        "msg-../../../etc",
        "msg-ABCDEFGHIJKL",
        "msg-short",
        "0dzhx0wgcik9",
        "msg-0dzhx0wgcik9/",
    ] {
        let (_, stderr) = w.cmd(&a).args(["run", "reply", bad, "x"]).fails();
        assert!(stderr.contains("invalid message ID"), "{bad}: {stderr}");
        let (_, stderr) = w
            .cmd(&a)
            .args(["run", "receive", bad, "--timeout", "1"])
            .fails();
        assert!(stderr.contains("invalid message ID"), "{bad}: {stderr}");
    }
    let (_, stderr) = w
        .cmd(&a)
        .args(["run", "reply", "msg-aaaaaaaaaaaa", "x"])
        .fails();
    assert!(stderr.contains("no message msg-aaaaaaaaaaaa"), "{stderr}");
    assert_eq!(snapshot(w.root.path()).len(), before.len());
}

#[test]
fn an_unknown_peer_is_named_with_a_hint() {
    let w = World::new();
    let a = w.project("a");
    w.start(&a);
    let (_, stderr) = w
        .cmd(&a)
        .args(["run", "send", "zzzzzz", "query", "hello"])
        .fails();
    assert!(
        stderr.contains("no session zzzzzz ")
            && stderr.ends_with("; bridge-host run peers lists them\n"),
        "{stderr}"
    );
    assert!(!w.session_dir("zzzzzz").exists());
}

#[test]
fn malformed_and_oversized_inbox_files_are_set_aside_with_a_reason() {
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    w.start(&a);
    let b_id = w.start(&b);
    let inbox = w.session_dir(&b_id).join("inbox");
    std::fs::write(inbox.join("msg-aaaaaaaaaaaa.json"), "{not json").unwrap();
    std::fs::write(inbox.join("msg-bbbbbbbbbbbb.json"), vec![b' '; 8 << 20]).unwrap();
    std::fs::write(
        inbox.join("msg-cccccccccccc.json"),
        r#"{"id":"msg-cccccccccccc","from":"a1b2c3","to":"zzzzzz","type":"query","timestamp":"2026-11-23T10:06:00Z","status":"pending","content":"misrouted","inReplyTo":null,"metadata":{"urgency":"normal","fromProject":"x"}}"#,
    )
    .unwrap();
    std::fs::create_dir(inbox.join("msg-dddddddddddd.json")).unwrap();
    w.cmd(&a)
        .args(["run", "send", &b_id, "query", "the real one"])
        .ok();

    let (output, description) = w.cmd(&b).args(["run", "listen", "--timeout", "5"]).output();
    assert!(output.status.success(), "{description}");
    let (_, content) = parse_listen(&String::from_utf8(output.stdout).unwrap());
    assert_eq!(content, "the real one");
    let stderr = String::from_utf8(output.stderr).unwrap();
    for id in [
        "aaaaaaaaaaaa",
        "bbbbbbbbbbbb",
        "cccccccccccc",
        "dddddddddddd",
    ] {
        assert!(
            stderr.contains(&format!("set aside sessions/{b_id}/inbox/msg-{id}.json")),
            "{id}: {stderr}"
        );
    }
    assert!(stderr.contains("over the 7340032-byte limit"), "{stderr}");
    assert!(
        stderr.contains("not addressed") || stderr.contains("addressed to"),
        "{stderr}"
    );

    // Kept, never deleted, each beside a note saying why.
    let rejected = w.session_dir(&b_id).join("inbox/rejected");
    let kept: Vec<String> = std::fs::read_dir(&rejected)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        kept.iter().filter(|n| n.ends_with(".reason")).count(),
        4,
        "{kept:?}"
    );
    let garbage = kept
        .iter()
        .find(|n| n.ends_with("msg-aaaaaaaaaaaa.json"))
        .unwrap();
    assert_eq!(std::fs::read(rejected.join(garbage)).unwrap(), b"{not json");
}

#[test]
fn content_over_the_limit_is_refused_with_the_limit() {
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    w.start(&a);
    let b_id = w.start(&b);
    let too_big = "x".repeat(1024 * 1024 + 1);
    let (_, stderr) = w
        .cmd(&a)
        .args(["run", "send", &b_id, "query", "-"])
        .stdin(too_big)
        .fails();
    assert!(
        stderr.contains("over the limit of 1048576 bytes"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(w.session_dir(&b_id).join("inbox"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count(),
        0
    );

    // Exactly at the limit is fine, and arrives intact.
    let at_limit: String = "ab\"\n\\é".chars().cycle().take(300_000).collect();
    let at_limit = &at_limit[..at_limit.floor_char_boundary(1024 * 1024)];
    w.cmd(&a)
        .args(["run", "send", &b_id, "query", "-"])
        .stdin(at_limit)
        .ok();
    let got = w.cmd(&b).args(["run", "listen", "--timeout", "5"]).json();
    assert_eq!(got["message"]["content"].as_str().unwrap(), at_limit);
}

#[test]
fn invalid_utf8_on_stdin_is_refused() {
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    w.start(&a);
    let b_id = w.start(&b);
    let (_, stderr) = w
        .cmd(&a)
        .args(["run", "send", &b_id, "query", "-"])
        .stdin(vec![b'o', b'k', 0xff, 0xfe])
        .fails();
    assert!(stderr.contains("not valid UTF-8"), "{stderr}");
}

#[test]
fn awkward_project_names_round_trip_intact() {
    let w = World::new();
    let name = "we\"ird 'name'\nsecond line – naïve ☃";
    let odd = w.project(name);
    let b = w.project("b");
    let odd_id = w.start(&odd);
    let b_id = w.start(&b);

    let peers = w.cmd(&b).args(["run", "peers"]).json();
    let entry = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sessionId"] == odd_id.as_str())
        .unwrap();
    assert_eq!(entry["projectName"], name);
    assert_eq!(entry["projectPath"], odd.to_str().unwrap());

    // The text table keeps one row per session.
    let table = w.cmd(&b).args(["run", "peers"]).ok();
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(
        table.contains("we\"ird 'name'\\nsecond line – naïve ☃"),
        "{table}"
    );

    w.cmd(&odd).args(["run", "send", &b_id, "query", "hi"]).ok();
    let got = w.cmd(&b).args(["run", "listen", "--timeout", "5"]).json();
    assert_eq!(got["message"]["metadata"]["fromProject"], name);
    let connected = w.cmd(&b).args(["run", "connect", &odd_id]).ok();
    assert_eq!(connected.lines().count(), 1, "{connected}");
}

#[test]
fn everything_the_bridge_creates_is_private() {
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    let a_id = w.start(&a);
    let b_id = w.start(&b);
    w.cmd(&a).args(["run", "connect", &b_id]).ok();
    w.cmd(&b).args(["run", "listen", "--timeout", "5"]).ok();
    w.cmd(&b).args(["run", "send", &a_id, "query", "x"]).ok();
    for (path, _) in snapshot(&w.bridge) {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let expected = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, expected, "{} has mode {mode:o}", path.display());
    }
    let mode = std::fs::metadata(&w.bridge).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn a_bridge_directory_others_can_write_is_refused() {
    let w = World::new();
    let a = w.project("a");
    w.start(&a);
    std::fs::set_permissions(&w.bridge, std::fs::Permissions::from_mode(0o777)).unwrap();
    let before = snapshot(&w.bridge);
    let (_, stderr) = w.cmd(&a).args(["run", "peers"]).fails();
    assert!(stderr.contains("has mode 777"), "{stderr}");
    assert!(stderr.contains("chmod 700"), "{stderr}");
    assert_eq!(snapshot(&w.bridge), before);
}

#[test]
fn a_full_disk_fails_the_send_and_leaves_no_partial_message() {
    use std::os::unix::process::CommandExt;
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    w.start(&a);
    let b_id = w.start(&b);
    let mut command = std::process::Command::new(crate::util::BIN);
    command
        .env_clear()
        .env("HOME", w.home())
        .env("BRIDGE_DIR", &w.bridge)
        .env("BRIDGE_CACHE_DIR", w.root.path().join("no-cache"))
        .current_dir(&a)
        .args(["run", "send", &b_id, "query", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        command.pre_exec(|| {
            // Files may grow to 4 KiB: the message below needs more.
            let limit = libc::rlimit {
                rlim_cur: 4096,
                rlim_max: 4096,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&vec![b'z'; 64 * 1024]).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the disk may be full, or a file size limit reached"),
        "{stderr}"
    );
    // Nothing half-written is visible, and no temporary file is left behind.
    let leftovers: Vec<_> = snapshot(&w.session_dir(&b_id).join("inbox"))
        .into_keys()
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Waits for `child`, or kills it and fails if it is still running after
/// `limit`: a FIFO given as the guest used to block bridge-host forever.
fn exits_within(
    mut child: std::process::Child,
    limit: std::time::Duration,
) -> std::process::Output {
    let began = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if began.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bridge-host was still waiting after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_guest_that_is_not_a_regular_file_is_refused_and_named() {
    let w = World::new();
    let a = w.project("a");
    let fifo = w.root.path().join("guest.wasm");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let fifo_text = fifo.to_str().unwrap();
    for (args, what) in [
        (vec!["guest", "check", fifo_text], "a FIFO (named pipe)"),
        (
            vec!["run", "peers", "--guest", fifo_text],
            "a FIFO (named pipe)",
        ),
        (vec!["guest", "check", "/dev/zero"], "a device"),
        (
            vec!["run", "peers", "--guest", w.root.path().to_str().unwrap()],
            "a directory",
        ),
    ] {
        let child = w.cmd(&a).args(&args).spawn();
        let out = exits_within(child, std::time::Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("is {what}, not a regular file"))
                && stderr.contains("give the path of a .wasm component file"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_folder_of_the_bridge_directory_that_is_a_symlink_is_refused_and_named() {
    for folder in ["sessions", "archive"] {
        let w = World::new();
        let a = w.project("a");
        w.start(&a);
        // The folder moved out, private and this user's own, and linked back.
        let outside = w.root.path().join(format!("elsewhere-{folder}"));
        std::fs::rename(w.bridge.join(folder), &outside).unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&outside, w.bridge.join(folder)).unwrap();
        let before = snapshot(&outside);
        for args in [
            vec!["run", "peers"],
            vec!["run", "send", "zzzzzz", "query", "hi"],
        ] {
            let (_, stderr) = w.cmd(&a).args(&args).fails();
            let link = w.bridge.join(folder);
            assert!(
                stderr.contains(&format!(
                    "the {folder} folder {} is a symlink (to {})",
                    link.display(),
                    outside.display()
                )) && stderr.contains("Replace the link with the folder it points to"),
                "{folder}, {args:?}: {stderr}"
            );
            assert!(!stderr.contains("not private to you"), "{stderr}");
        }
        assert_eq!(
            snapshot(&outside),
            before,
            "{folder}: something outside changed"
        );
    }
}

/// The host only classes a failed host call (here: the project pointer
/// cannot be written, because `.claude` is a file); the guest words it, and
/// the session still starts.
#[test]
fn a_pointer_that_cannot_be_written_is_named_with_the_system_error_and_what_to_do() {
    let w = World::new();
    let a = w.project("a");
    std::fs::write(a.join(".claude"), "not a folder").unwrap();
    let (output, description) = w.cmd(&a).args(["run", "start"]).output();
    assert!(output.status.success(), "{description}");
    let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        w.session_dir(&id).join("manifest.json").is_file(),
        "{description}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let claude = a.join(".claude");
    let warning = stderr
        .lines()
        .find(|l| l.contains("the project pointer was not written"))
        .unwrap_or_else(|| panic!("no warning\n{description}"));
    assert!(warning.contains(&claude.display().to_string()), "{warning}");
    assert!(warning.contains("os error"), "{warning}");
    assert!(warning.contains(&format!("--session {id}")), "{warning}");
    assert_eq!(std::fs::read_to_string(&claude).unwrap(), "not a folder");
}
