//! The hostile input catalogue: one table, one fresh bridge per entry. Every
//! entry must fail with a message that names what was wrong, and afterwards
//! the bridge directory and everything outside it must be unchanged, except
//! for the paths the entry is allowed to change.

use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::PathBuf;

use crate::util::{World, snapshot};

/// A fresh world with two sessions, `me` and `peer`, and a directory
/// outside the bridge holding a decoy.
struct Setup {
    w: World,
    me: PathBuf,
    me_id: String,
    peer_id: String,
    outside: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let w = World::new();
        let me = w.project("me");
        let peer = w.project("peer");
        let me_id = w.start(&me);
        let peer_id = w.start(&peer);
        let outside = w.root.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("decoy.json"), br#"{"sessionId":"decoy1"}"#).unwrap();
        Setup {
            w,
            me,
            me_id,
            peer_id,
            outside,
        }
    }

    fn session(&self, id: &str) -> PathBuf {
        self.w.session_dir(id)
    }

    fn my_inbox(&self) -> PathBuf {
        self.session(&self.me_id).join("inbox")
    }

    /// Puts `bytes` in this session's inbox as message `msg-hostile00001`.
    fn plant_message(&self, bytes: &[u8]) {
        std::fs::write(self.my_inbox().join("msg-hostile00001.json"), bytes).unwrap();
    }
}

/// A message in the reference's form with one field replaced by `value`
/// (raw JSON), or removed when `value` is None.
fn message_with(s: &Setup, field: &str, value: Option<&str>) -> Vec<u8> {
    let fields = [
        ("id", "\"msg-hostile00001\"".to_string()),
        ("from", format!("\"{}\"", s.peer_id)),
        ("to", format!("\"{}\"", s.me_id)),
        ("type", "\"query\"".to_string()),
        ("timestamp", "\"2026-11-23T10:06:00Z\"".to_string()),
        ("status", "\"pending\"".to_string()),
        ("content", "\"hello\"".to_string()),
        ("inReplyTo", "null".to_string()),
        (
            "metadata",
            "{\"urgency\":\"normal\",\"fromProject\":\"peer\"}".to_string(),
        ),
    ];
    let body: Vec<String> = fields
        .iter()
        .filter_map(|(name, default)| match (*name == field, value) {
            (true, None) => None,
            (true, Some(v)) => Some(format!("\"{name}\":{v}")),
            (false, _) => Some(format!("\"{name}\":{default}")),
        })
        .collect();
    format!("{{{}}}", body.join(",")).into_bytes()
}

/// The user the owner check hands a session directory to (`nobody`).
const OTHER_USER: u32 = 65534;

/// Entries that only root can plant: giving a directory to another user.
fn needs_root(case: &Case) -> bool {
    case.name.contains("another user owns")
}

/// What an entry runs, what it must say, and what it may change.
struct Case {
    name: &'static str,
    /// Plants the hostile input and returns the `bridge-host` arguments.
    plant: fn(&Setup) -> Vec<String>,
    /// Text the error (standard error) must contain.
    says: fn(&Setup) -> String,
    /// Paths the entry may change (added, removed or rewritten).
    may_change: fn(&Setup) -> Vec<PathBuf>,
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

fn nothing(_: &Setup) -> Vec<PathBuf> {
    Vec::new()
}

/// Inbox entries are set aside into `inbox/rejected/`; nothing else moves.
fn my_inbox(s: &Setup) -> Vec<PathBuf> {
    vec![s.my_inbox()]
}

fn listen_once() -> Vec<String> {
    args(&["run", "listen", "--timeout", "1"])
}

fn set_aside(s: &Setup) -> String {
    format!("set aside sessions/{}/inbox/msg-hostile00001.json", s.me_id)
}

const CASES: &[Case] = &[
    Case {
        name: "session ID with ..",
        plant: |_| args(&["run", "send", "../../elsewhere", "query", "hi"]),
        says: |_| "invalid session ID \"../../elsewhere\"".into(),
        may_change: nothing,
    },
    Case {
        name: "session ID that is ..",
        plant: |_| args(&["run", "connect", ".."]),
        says: |_| "invalid session ID \"..\"".into(),
        may_change: nothing,
    },
    Case {
        name: "session ID with /",
        plant: |_| args(&["run", "send", "ab/c12", "query", "hi"]),
        says: |_| "invalid session ID \"ab/c12\"".into(),
        may_change: nothing,
    },
    Case {
        name: "session ID that is an absolute path",
        plant: |_| args(&["run", "id", "--session", "/etc/passwd"]),
        says: |_| "invalid session ID \"/etc/passwd\"".into(),
        may_change: nothing,
    },
    Case {
        name: "session ID with a unicode look-alike (Cyrillic а)",
        plant: |_| args(&["run", "send", "\u{430}bc123", "query", "hi"]),
        says: |_| "invalid session ID".into(),
        may_change: nothing,
    },
    Case {
        name: "session ID of the wrong length",
        plant: |_| args(&["run", "ask", "abc1234", "hi", "--timeout", "1"]),
        says: |_| "invalid session ID \"abc1234\"".into(),
        may_change: nothing,
    },
    Case {
        name: "message ID with ..",
        plant: |_| args(&["run", "reply", "msg-../../etc/x", "hi"]),
        says: |_| "invalid message ID \"msg-../../etc/x\"".into(),
        may_change: nothing,
    },
    Case {
        name: "message ID with a unicode look-alike",
        plant: |_| args(&["run", "reply", "msg-0dzhx0wgc\u{456}k9", "hi"]),
        says: |_| "invalid message ID".into(),
        may_change: nothing,
    },
    Case {
        name: "message ID of the wrong length",
        plant: |_| args(&["run", "receive", "msg-abc", "--timeout", "1"]),
        says: |_| "invalid message ID \"msg-abc\"".into(),
        may_change: nothing,
    },
    Case {
        name: "message ID that is an absolute path",
        plant: |_| args(&["run", "reply", "/etc/passwd", "hi"]),
        says: |_| "invalid message ID \"/etc/passwd\"".into(),
        may_change: nothing,
    },
    Case {
        name: "a peer's inbox is a symlink pointing outside",
        plant: |s| {
            let inbox = s.session(&s.peer_id).join("inbox");
            std::fs::remove_dir_all(&inbox).unwrap();
            symlink(&s.outside, &inbox).unwrap();
            args(&["run", "send", &s.peer_id, "query", "hi"])
        },
        says: |_| "symbolic link".into(),
        may_change: nothing,
    },
    Case {
        name: "a peer's manifest is a symlink pointing outside",
        plant: |s| {
            let manifest = s.session(&s.peer_id).join("manifest.json");
            std::fs::remove_file(&manifest).unwrap();
            symlink(s.outside.join("decoy.json"), &manifest).unwrap();
            args(&["run", "connect", &s.peer_id])
        },
        says: |s| format!("sessions/{}/manifest.json is malformed", s.peer_id),
        may_change: nothing,
    },
    Case {
        name: "a session directory is a symlink pointing outside",
        plant: |s| {
            symlink(&s.outside, s.w.bridge.join("sessions/evil01")).unwrap();
            args(&["run", "send", "evil01", "query", "hi"])
        },
        says: |_| "no session evil01".into(),
        may_change: nothing,
    },
    Case {
        name: "a FIFO where a message file should be",
        plant: |s| {
            let path = s.my_inbox().join("msg-hostile00001.json");
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: mkfifo with a valid C string.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            listen_once()
        },
        says: |s| {
            format!(
                "{}: it is a special file (FIFO, socket or device), not a regular file",
                set_aside(s)
            )
        },
        may_change: my_inbox,
    },
    Case {
        name: "a directory where a message file should be",
        plant: |s| {
            std::fs::create_dir(s.my_inbox().join("msg-hostile00001.json")).unwrap();
            listen_once()
        },
        says: |s| format!("{}: it is a directory, not a regular file", set_aside(s)),
        may_change: my_inbox,
    },
    Case {
        name: "invalid JSON",
        plant: |s| {
            s.plant_message(b"{\"id\": \"msg-hostile00001\", ");
            listen_once()
        },
        says: |s| format!("{}: not a valid message", set_aside(s)),
        may_change: my_inbox,
    },
    Case {
        name: "JSON with the wrong types",
        plant: |s| {
            s.plant_message(&message_with(s, "content", Some("42")));
            listen_once()
        },
        says: |s| format!("{}: not a valid message", set_aside(s)),
        may_change: my_inbox,
    },
    Case {
        name: "a missing field",
        plant: |s| {
            s.plant_message(&message_with(s, "from", None));
            listen_once()
        },
        says: |s| format!("{}: not a valid message", set_aside(s)),
        may_change: my_inbox,
    },
    Case {
        name: "duplicate keys",
        plant: |s| {
            let mut bytes = message_with(s, "content", Some("\"first\""));
            bytes.pop();
            bytes.extend_from_slice(b",\"content\":\"second\"}");
            s.plant_message(&bytes);
            listen_once()
        },
        says: |s| format!("{}: not a valid message", set_aside(s)),
        may_change: my_inbox,
    },
    Case {
        name: "a 100 MB message file",
        plant: |s| {
            let file = std::fs::File::create(s.my_inbox().join("msg-hostile00001.json")).unwrap();
            file.set_len(100 << 20).unwrap();
            listen_once()
        },
        says: |s| {
            format!(
                "{}: it is 104857600 bytes, over the 7340032-byte limit",
                set_aside(s)
            )
        },
        may_change: my_inbox,
    },
    Case {
        name: "invalid UTF-8 content",
        plant: |s| {
            let mut bytes = message_with(s, "content", Some("\"ok\""));
            let at = bytes.windows(4).position(|w| w == b"\"ok\"").unwrap() + 1;
            bytes.splice(at..at + 2, [0xff, 0xfe]);
            s.plant_message(&bytes);
            listen_once()
        },
        says: |s| format!("{}: not a valid message", set_aside(s)),
        may_change: my_inbox,
    },
    Case {
        name: "an unknown type",
        plant: |s| {
            s.plant_message(&message_with(s, "type", Some("\"command\"")));
            listen_once()
        },
        says: |s| format!("{}: not a valid message", set_aside(s)),
        may_change: my_inbox,
    },
    Case {
        name: "`from` that is not a session ID",
        plant: |s| {
            s.plant_message(&message_with(s, "from", Some("\"../../x\"")));
            listen_once()
        },
        says: |s| format!("{}: bad sender \"../../x\"", set_aside(s)),
        may_change: my_inbox,
    },
    Case {
        name: "a session ID with NUL (argv cannot carry one; a message can)",
        plant: |s| {
            s.plant_message(&message_with(s, "from", Some("\"ab\\u0000c12\"")));
            listen_once()
        },
        says: |s| format!("{}: bad sender \"ab\\0c12\"", set_aside(s)),
        may_change: my_inbox,
    },
    Case {
        name: "`to` that disagrees with the inbox it sits in",
        plant: |s| {
            s.plant_message(&message_with(s, "to", Some("\"zzzzzz\"")));
            listen_once()
        },
        says: |s| {
            format!(
                "{}: it is addressed to \"zzzzzz\", not to this inbox's session {}",
                set_aside(s),
                s.me_id
            )
        },
        may_change: my_inbox,
    },
    Case {
        name: "a peer manifest whose projectPath is relative",
        plant: |s| {
            let manifest = s.session(&s.peer_id).join("manifest.json");
            let text = std::fs::read_to_string(&manifest).unwrap();
            let path = s.w.root.path().join("projects/peer");
            let text = text.replace(path.to_str().unwrap(), "projects/peer");
            std::fs::write(&manifest, text).unwrap();
            args(&["run", "connect", &s.peer_id])
        },
        says: |s| {
            format!(
                "sessions/{}/manifest.json is malformed: its projectPath \"projects/peer\" is not absolute",
                s.peer_id
            )
        },
        may_change: nothing,
    },
    Case {
        name: "a bridge directory that group or others can write",
        plant: |s| {
            std::fs::set_permissions(&s.w.bridge, std::fs::Permissions::from_mode(0o777)).unwrap();
            args(&["run", "peers"])
        },
        says: |s| {
            format!(
                "has mode 777: group or others can write to it, so they could plant or alter messages. Run: chmod 700 {}",
                s.w.bridge.display()
            )
        },
        may_change: nothing,
    },
    Case {
        name: "sending to a session directory that group or others can write",
        plant: |s| {
            std::fs::set_permissions(
                s.session(&s.peer_id),
                std::fs::Permissions::from_mode(0o757),
            )
            .unwrap();
            args(&["run", "send", &s.peer_id, "query", "hi"])
        },
        says: |s| {
            let dir = s.session(&s.peer_id);
            format!(
                "session {} is refused as unsafe: the session directory {} has mode 757: group \
                 or others can write to it, so they could plant or alter messages. Run: chmod \
                 700 {}",
                s.peer_id,
                dir.display(),
                dir.display()
            )
        },
        may_change: nothing,
    },
    Case {
        name: "sending to a session directory another user owns",
        plant: |s| {
            let dir = s.session(&s.peer_id);
            let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: chown with a valid C string. Only root gets here (see
            // `needs_root`), and root can give a directory away.
            let given = unsafe { libc::chown(c.as_ptr(), OTHER_USER, OTHER_USER) };
            assert_eq!(
                given,
                0,
                "chown to {OTHER_USER}: {}",
                std::io::Error::last_os_error()
            );
            args(&["run", "send", &s.peer_id, "query", "hi"])
        },
        says: |s| {
            format!(
                "the session directory {} belongs to user {OTHER_USER} but you are user 0",
                s.session(&s.peer_id).display()
            )
        },
        may_change: nothing,
    },
];

fn changed_outside(
    before: &std::collections::BTreeMap<PathBuf, Vec<u8>>,
    after: &std::collections::BTreeMap<PathBuf, Vec<u8>>,
    allowed: &[PathBuf],
) -> Vec<PathBuf> {
    let keys: std::collections::BTreeSet<&PathBuf> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|path| before.get(*path) != after.get(*path))
        .filter(|path| !allowed.iter().any(|a| path.starts_with(a)))
        .cloned()
        .collect()
}

#[test]
fn every_hostile_input_gets_a_clear_error_and_changes_nothing_else() {
    let mut failures = Vec::new();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    for case in CASES {
        if needs_root(case) && !root {
            // Written past the test harness's capture, so a run that did
            // not check the owner says so.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: hostile entry {:?} needs root to give a directory to another user",
                case.name
            );
            continue;
        }
        let s = Setup::new();
        let run = (case.plant)(&s);
        let before = snapshot(s.w.root.path());
        let (output, description) = s.w.cmd(&s.me).args(&run).output();
        let after = snapshot(s.w.root.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        let says = (case.says)(&s);
        if output.status.code() != Some(1) {
            failures.push(format!("{}: expected exit 1\n{description}", case.name));
        }
        if !stderr.contains(&says) {
            failures.push(format!(
                "{}: stderr lacks {says:?}\n{description}",
                case.name
            ));
        }
        let changed = changed_outside(&before, &after, &(case.may_change)(&s));
        if !changed.is_empty() {
            failures.push(format!("{}: changed {changed:?}\n{description}", case.name));
        }
        // Restore what the plant made unreadable, so the world can be removed.
        let _ = std::fs::set_permissions(&s.w.bridge, std::fs::Permissions::from_mode(0o700));
        let _ = std::fs::set_permissions(
            s.session(&s.peer_id),
            std::fs::Permissions::from_mode(0o700),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_loose_session_directory_is_refused_as_a_peer_and_every_other_session_keeps_working() {
    let s = Setup::new();
    let peer = s.w.project("peer");
    // The original, run under umask 002, makes its session directory 775.
    let loose_project = s.w.project("loose");
    let loose_id = s.w.start(&loose_project);
    let loose_dir = s.session(&loose_id);
    std::fs::set_permissions(&loose_dir, std::fs::Permissions::from_mode(0o775)).unwrap();
    let fix = format!("Run: chmod 700 {}", loose_dir.display());

    let (output, description) = s.w.cmd(&s.me).args(["run", "peers"]).output();
    assert!(output.status.success(), "{description}");
    let table = String::from_utf8_lossy(&output.stdout);
    let row = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no row for {id}\n{description}"))
            .to_string()
    };
    assert!(row(&loose_id).contains("unsafe"), "{description}");
    assert!(
        row(&s.me_id).contains("active (this session)"),
        "{description}"
    );
    assert!(row(&s.peer_id).contains("active"), "{description}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&fix),
        "{description}"
    );

    // Two other sessions talk as before.
    s.w.cmd(&s.me)
        .args(["run", "send", &s.peer_id, "query", "still working?"])
        .ok();
    let heard =
        s.w.cmd(&peer)
            .args(["run", "listen", "--timeout", "5"])
            .ok();
    assert_eq!(crate::util::parse_listen(&heard).1, "still working?");

    // Sending to the loose session, or connecting to it, says why and
    // gives the fix; nothing lands in its inbox.
    let before = snapshot(&loose_dir);
    for verb in [
        vec!["run", "send", loose_id.as_str(), "query", "hi"],
        vec!["run", "connect", loose_id.as_str()],
    ] {
        let (_, stderr) = s.w.cmd(&s.me).args(&verb).fails();
        assert!(
            stderr.contains(&format!("session {loose_id} is refused as unsafe"))
                && stderr.contains(&fix),
            "{verb:?}: {stderr}"
        );
    }
    assert_eq!(snapshot(&loose_dir), before);

    // Taking messages as the loose session says the same, and registers
    // no other session in its place.
    let sessions = std::fs::read_dir(s.w.bridge.join("sessions"))
        .unwrap()
        .count();
    let (_, stderr) =
        s.w.cmd(&loose_project)
            .args(["run", "listen", "--timeout", "1"])
            .fails();
    assert!(stderr.contains(&fix), "{stderr}");
    assert_eq!(
        std::fs::read_dir(s.w.bridge.join("sessions"))
            .unwrap()
            .count(),
        sessions
    );
    // Its own project still gets the listing, with itself marked unsafe.
    let table = s.w.cmd(&loose_project).args(["run", "peers"]).ok();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&loose_id) && l.contains("unsafe")),
        "{table}"
    );

    // Once fixed, it is a peer again.
    std::fs::set_permissions(&loose_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    s.w.cmd(&s.me)
        .args(["run", "send", &loose_id, "query", "welcome back"])
        .ok();
}
