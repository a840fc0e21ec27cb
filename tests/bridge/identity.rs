//! Which session a command speaks for.

use crate::util::World;

#[test]
fn two_agent_sessions_in_one_project_get_separate_bridges() {
    let w = World::new();
    let repo = w.project("repo");
    let first = w
        .cmd(&repo)
        .env("CLAUDE_CODE_SESSION_ID", "0a1b2c3d-agent-one")
        .args(["run", "start"])
        .ok();
    let second = w
        .cmd(&repo)
        .env("CLAUDE_CODE_SESSION_ID", "9f8e7d6c-agent-two")
        .args(["run", "start"])
        .ok();
    assert_ne!(first, second);
    for (agent, expected) in [
        ("0a1b2c3d-agent-one", &first),
        ("9f8e7d6c-agent-two", &second),
    ] {
        let id = w
            .cmd(&repo)
            .env("CLAUDE_CODE_SESSION_ID", agent)
            .args(["run", "id"])
            .ok();
        assert_eq!(&id, expected, "agent {agent}");
    }
    // Starting again reuses each agent's own session.
    let again = w
        .cmd(&repo)
        .env("CLAUDE_CODE_SESSION_ID", "0a1b2c3d-agent-one")
        .args(["run", "start"])
        .ok();
    assert_eq!(again, first);

    w.cmd(&repo)
        .env("CLAUDE_CODE_SESSION_ID", "0a1b2c3d-agent-one")
        .args(["run", "stop"])
        .ok();
    assert!(!w.session_dir(first.trim()).exists());
    assert!(w.session_dir(second.trim()).join("manifest.json").is_file());
    let still = w
        .cmd(&repo)
        .env("CLAUDE_CODE_SESSION_ID", "9f8e7d6c-agent-two")
        .args(["run", "id"])
        .ok();
    assert_eq!(still, second);
}

#[test]
fn an_unregistered_agent_never_borrows_another_agents_session() {
    let w = World::new();
    let repo = w.project("repo");
    w.cmd(&repo)
        .env("CLAUDE_CODE_SESSION_ID", "agent-one")
        .args(["run", "start"])
        .ok();
    let (_, stderr) = w
        .cmd(&repo)
        .env("CLAUDE_CODE_SESSION_ID", "agent-three")
        .args(["run", "id"])
        .fails();
    assert!(stderr.contains("no bridge session"), "{stderr}");
}

#[test]
fn resolution_order_is_explicit_agent_pointer_then_project_path() {
    let w = World::new();
    let repo = w.project("repo");
    let other = w.project("other");
    let by_pointer = w.start(&repo);
    let explicit = w.start(&other);
    let by_agent = w
        .cmd(&other)
        .env("CLAUDE_CODE_SESSION_ID", "agent-x")
        .args(["run", "start"])
        .ok()
        .trim()
        .to_string();

    // From repo: the pointer.
    assert_eq!(w.cmd(&repo).args(["run", "id"]).ok().trim(), by_pointer);
    // The agent's own registration beats the pointer.
    let id = w
        .cmd(&repo)
        .env("CLAUDE_CODE_SESSION_ID", "agent-x")
        .args(["run", "id"])
        .ok();
    assert_eq!(id.trim(), by_agent);
    // An explicit session beats everything, by flag or by environment.
    let id = w
        .cmd(&repo)
        .env("CLAUDE_CODE_SESSION_ID", "agent-x")
        .args(["run", "id", "--session", &explicit])
        .ok();
    assert_eq!(id.trim(), explicit);
    let id = w
        .cmd(&repo)
        .env("BRIDGE_SESSION_ID", &explicit)
        .args(["run", "id"])
        .ok();
    assert_eq!(id.trim(), explicit);

    // Without the pointer, a subdirectory finds the manifest whose project
    // contains it.
    std::fs::remove_file(repo.join(".claude/bridge-session")).unwrap();
    let deep = repo.join("src/nested");
    std::fs::create_dir_all(&deep).unwrap();
    assert_eq!(w.cmd(&deep).args(["run", "id"]).ok().trim(), by_pointer);
}

#[test]
fn the_project_pointer_holds_the_id_without_a_newline() {
    let w = World::new();
    let repo = w.project("repo");
    let id = w.start(&repo);
    let pointer = std::fs::read_to_string(repo.join(".claude/bridge-session")).unwrap();
    assert_eq!(pointer, id);
}

#[test]
fn a_planted_pointer_symlink_is_replaced_not_followed() {
    let w = World::new();
    let repo = w.project("repo");
    let victim = w.root.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::create_dir_all(repo.join(".claude")).unwrap();
    std::os::unix::fs::symlink(&victim, repo.join(".claude/bridge-session")).unwrap();
    let id = w.start(&repo);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let pointer = repo.join(".claude/bridge-session");
    assert!(!std::fs::symlink_metadata(&pointer).unwrap().is_symlink());
    assert_eq!(std::fs::read_to_string(pointer).unwrap(), id);
}

#[test]
fn hooks_can_name_the_project_from_any_working_directory() {
    let w = World::new();
    let repo = w.project("repo");
    let elsewhere = w.project("unrelated-cwd");
    let id = w
        .cmd(&elsewhere)
        .args(["run", "start", "--project-dir"])
        .args([&repo])
        .ok();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(w.session_dir(id.trim()).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["projectPath"], repo.to_str().unwrap());
    assert_eq!(manifest["projectName"], "repo");
    let again = w
        .cmd(&elsewhere)
        .env("PROJECT_DIR", &repo)
        .args(["run", "id"])
        .ok();
    assert_eq!(again, id);
}

/// A manifest whose heartbeat is `minutes` old.
fn age_manifest(w: &World, id: &str, minutes: u64) {
    let path = w.session_dir(id).join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(minutes * 60);
    let stamp = humantime::format_rfc3339_seconds(then).to_string();
    manifest["lastHeartbeat"] = stamp.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

#[test]
fn stop_prunes_abandoned_sessions_but_never_live_ones() {
    let w = World::new();
    let me = w.project("me");
    let old = w.project("old");
    let quiet = w.project("quiet");
    let me_id = w.start(&me);
    let old_id = w.start(&old);
    let quiet_id = w.start(&quiet);
    age_manifest(&w, &old_id, 45);
    age_manifest(&w, &quiet_id, 10); // stale, but not abandoned

    let peers = w.cmd(&me).args(["run", "peers"]).ok();
    let row = |id: &str| {
        peers
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap()
            .to_string()
    };
    assert!(row(&old_id).contains("stale"), "{peers}");
    assert!(row(&quiet_id).contains("stale"), "{peers}");
    assert!(row(&me_id).contains("active (this session)"), "{peers}");

    let out = w.cmd(&me).args(["run", "stop"]).ok();
    assert!(
        out.contains(&format!("Removed abandoned sessions: {old_id}")),
        "{out}"
    );
    assert!(!w.session_dir(&old_id).exists());
    assert!(w.session_dir(&quiet_id).join("manifest.json").is_file());

    // A session that re-registers is live again and survives the next prune.
    age_manifest(&w, &quiet_id, 45);
    w.cmd(&quiet).args(["run", "start"]).ok();
    let other = w.project("other");
    w.start(&other);
    w.cmd(&other).args(["run", "stop"]).ok();
    assert!(w.session_dir(&quiet_id).join("manifest.json").is_file());
}

#[test]
fn connecting_to_a_stale_peer_warns() {
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    w.start(&a);
    let b_id = w.start(&b);
    age_manifest(&w, &b_id, 6);
    let (output, description) = w.cmd(&a).args(["run", "connect", &b_id]).output();
    assert!(output.status.success(), "{description}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("may not answer"), "{description}");
}

#[test]
fn the_project_dir_given_is_the_one_whose_session_is_found() {
    let w = World::new();
    let repo = w.project("repo");
    let id = w.start(&repo);
    let src = repo.join("src");
    std::fs::create_dir_all(&src).unwrap();
    // From outside any project, as hooks and scripts run: the session whose
    // project contains the directory given, as the original finds it.
    let found = w
        .cmd(std::path::Path::new("/"))
        .env("PROJECT_DIR", &src)
        .args(["run", "id"])
        .ok();
    assert_eq!(found.trim(), id);
    let found = w
        .cmd(std::path::Path::new("/"))
        .args(["run", "id", "--project-dir"])
        .args([&src])
        .ok();
    assert_eq!(found.trim(), id);
    // And a directory given outside the project finds nothing, wherever
    // the command runs.
    let elsewhere = w.project("elsewhere");
    let (_, stderr) = w
        .cmd(&src)
        .env("PROJECT_DIR", &elsewhere)
        .args(["run", "id"])
        .fails();
    assert!(stderr.contains("no bridge session"), "{stderr}");
}

#[test]
fn stop_never_stops_a_session_the_given_project_does_not_own() {
    let w = World::new();
    let p1 = w.project("p1");
    let p2 = w.project("p2");
    let p1_id = w.start(&p1);
    let src = p1.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let pointer = p1.join(".claude/bridge-session");

    // Run from inside p1, for the project p2 (which has no session).
    let (_, stderr) = w
        .cmd(&src)
        .env("PROJECT_DIR", &p2)
        .args(["run", "stop"])
        .fails();
    assert!(stderr.contains("no bridge session"), "{stderr}");
    assert!(w.session_dir(&p1_id).join("manifest.json").is_file());
    assert_eq!(std::fs::read_to_string(&pointer).unwrap(), p1_id);

    // A directory inside p1 does not own p1's session either: stopping it
    // from there would leave p1's pointer behind.
    let (_, stderr) = w
        .cmd(&src)
        .env("PROJECT_DIR", &src)
        .args(["run", "stop"])
        .fails();
    assert!(
        stderr.contains(&format!("session {p1_id} belongs to the project")),
        "{stderr}"
    );
    assert!(w.session_dir(&p1_id).join("manifest.json").is_file());
    assert_eq!(std::fs::read_to_string(&pointer).unwrap(), p1_id);

    // The project itself stops it, and its pointer goes with it.
    let stopped = w
        .cmd(std::path::Path::new("/"))
        .env("PROJECT_DIR", &p1)
        .args(["run", "stop"])
        .ok();
    assert!(
        stopped.contains(&format!("Session {p1_id} stopped.")),
        "{stopped}"
    );
    assert!(!w.session_dir(&p1_id).exists());
    assert!(!pointer.exists());
}
