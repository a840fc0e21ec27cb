//! `bridge-host doctor`: what it says on a bare machine, on a bridge
//! directory others can write, with the pinned Codex CLI whether Codex runs
//! the bridge's hooks (trusted, or not after a hand edit) and whether
//! `codex queue` reaches Codex, and with the pinned Claude Code whether it
//! lists the plugin enabled with its wake hooks.

use serde_json::Value;

use crate::util::{World, pinned};

fn checks_of(report: &Value) -> Vec<(String, String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                c["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn find<'a>(checks: &'a [(String, String, String)], name: &str) -> &'a (String, String, String) {
    checks
        .iter()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("no {name} check in {checks:?}"))
}

#[test]
fn on_a_bare_machine_every_check_is_listed_and_nothing_is_created() {
    let w = World::new();
    let here = w.project("p");
    let table = w
        .cmd(&here)
        .args(["doctor"])
        .env("PATH", "/usr/bin:/bin")
        .ok();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["CHECK", "STATUS", "DETAIL"]
    );
    for name in [
        "bridge directory",
        "compile cache",
        "relay",
        "claude-code",
        "codex",
        "gemini",
        "cursor",
        "vscode",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(name)),
            "{name}:\n{table}"
        );
    }
    assert!(table.contains("does not exist yet"), "{table}");
    assert!(!w.bridge.exists(), "doctor created {}", w.bridge.display());

    let (output, description) = w
        .cmd(&here)
        .args(["doctor", "--json"])
        .env("PATH", "/usr/bin:/bin")
        .output();
    assert!(output.status.success(), "{description}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let checks = checks_of(&report);
    assert_eq!(find(&checks, "relay").1, "off");
    assert_eq!(find(&checks, "gemini").1, "off");
    assert!(
        find(&checks, "gemini")
            .2
            .contains("not installed (no `gemini` on PATH)")
    );
}

#[test]
fn a_bridge_directory_others_can_write_fails_with_the_fix() {
    let w = World::new();
    let here = w.project("p");
    w.start(&here);
    let mut permissions = std::fs::metadata(&w.bridge).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o777);
    std::fs::set_permissions(&w.bridge, permissions).unwrap();
    let (output, description) = w
        .cmd(&here)
        .args(["doctor", "--json"])
        .env("PATH", "/usr/bin:/bin")
        .output();
    assert_eq!(output.status.code(), Some(1), "{description}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let checks = checks_of(&report);
    let (_, status, detail) = find(&checks, "bridge directory");
    assert_eq!(status, "fail");
    assert!(detail.contains("mode 777"), "{detail}");
    assert!(detail.contains("chmod"), "{detail}");
}

#[test]
fn with_codex_set_up_doctor_checks_its_hooks_are_trusted_and_codex_queue_reaches_it() {
    let Some(codex) = pinned("codex", "codex", "the doctor's Codex test") else {
        return;
    };
    let codex_bin = codex.parent().unwrap();
    let w = World::new();
    let here = w.project("p");
    let codex_home = w.root.path().join("codex-home");
    std::fs::create_dir_all(&codex_home).unwrap();
    let config = codex_home.join("config.toml");
    std::fs::write(&config, "[analytics]\nenabled = false\n").unwrap();
    let path = format!("{}:/usr/bin:/bin", codex_bin.display());
    let run = |args: &[&str]| {
        w.cmd(&here)
            .args(args)
            .env("PATH", &path)
            .env("CODEX_HOME", &codex_home)
            .env("XDG_DATA_HOME", w.home().join(".local/share"))
    };
    run(&["setup", "codex"]).ok();
    let report = run(&["doctor"]).json();
    let checks = checks_of(&report);
    let (_, status, detail) = find(&checks, "codex");
    assert_eq!(status, "ok", "{detail}");
    assert!(detail.contains("codex-cli 0.171.0"), "{detail}");
    assert!(
        detail.contains("set up (bridge-host setup codex)"),
        "{detail}"
    );
    assert!(
        detail.contains("the bridge's 3 hooks are trusted, and codex queue reaches Codex"),
        "{detail}"
    );

    // Codex where BRIDGE_CODEX_BIN says, as the waker finds it, is the
    // Codex checked.
    let chosen = w
        .cmd(&here)
        .args(["doctor"])
        .env("PATH", "/usr/bin:/bin")
        .env("CODEX_HOME", &codex_home)
        .env("XDG_DATA_HOME", w.home().join(".local/share"))
        .env("BRIDGE_CODEX_BIN", codex_bin.join("codex"))
        .json();
    let (_, status, detail) = find(&checks_of(&chosen), "codex").clone();
    assert_eq!(status, "ok", "{detail}");
    assert!(detail.contains("codex queue reaches Codex"), "{detail}");

    // A hand edit of a hook's command: Codex no longer trusts it, and the
    // doctor says so (the hook would silently not run).
    let edited = std::fs::read_to_string(&config)
        .unwrap()
        .replace("hook codex-stop", "hook codex-stop ");
    std::fs::write(&config, edited).unwrap();
    let (output, description) = run(&["doctor", "--json"]).output();
    assert_eq!(output.status.code(), Some(1), "{description}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let checks = checks_of(&report);
    let (_, status, detail) = find(&checks, "codex");
    assert_eq!(status, "fail", "{detail}");
    assert!(detail.contains("until they are trusted"), "{detail}");
    assert!(detail.contains("(modified)"), "{detail}");
}

/// The relay check connects to the server as this machine's relay would:
/// a real nats-server with JetStream is reached and named; nothing
/// listening is a failure that names the server.
#[test]
fn the_relay_check_reaches_a_real_server_and_fails_on_one_that_does_not_answer() {
    let Some(bin) = crate::nats::server_bin("doctor") else {
        return;
    };
    let server = crate::nats::Server::start(&bin, "");
    let w = World::new();
    let here = w.project("p");
    let report = w
        .cmd(&here)
        .args(["doctor"])
        .env("PATH", "/usr/bin:/bin")
        .env("BRIDGE_RELAY_SERVER", server.url())
        .json();
    let checks = checks_of(&report);
    let (_, status, detail) = find(&checks, "relay");
    // No relay runs for this bridge directory: reached, with a warning.
    assert_eq!(status, "warn", "{detail}");
    assert!(
        detail.contains(&format!("{}: reached", server.url())),
        "{detail}"
    );
    assert!(detail.contains("JetStream on"), "{detail}");
    assert!(
        detail.contains("no relay runs for this bridge directory"),
        "{detail}"
    );

    let nobody = format!("nats://127.0.0.1:{}", crate::nats::free_port());
    let (output, description) = w
        .cmd(&here)
        .args(["doctor", "--json"])
        .env("PATH", "/usr/bin:/bin")
        .env("BRIDGE_RELAY_SERVER", &nobody)
        .output();
    assert_eq!(output.status.code(), Some(1), "{description}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let checks = checks_of(&report);
    let (_, status, detail) = find(&checks, "relay");
    assert_eq!(status, "fail", "{detail}");
    assert!(detail.starts_with(&format!("{nobody}: ")), "{detail}");
}

/// With the pinned Claude Code: the doctor reads Claude Code's own plugin
/// list. Set up but not started yet, the plugin is not listed and comes at
/// the next start; installed, it is enabled with its wake hooks; disabled,
/// nothing wakes a session and the doctor says how to enable it.
#[test]
fn with_claude_code_set_up_doctor_reads_its_plugin_list_and_the_wake_hooks() {
    let Some(claude) = pinned("claude-code", "claude", "the doctor's Claude Code test") else {
        return;
    };
    let claude_bin = claude.parent().unwrap();
    let w = World::new();
    let here = w.project("p");
    let path = format!("{}:/usr/bin:/bin", claude_bin.display());
    let run = |program: &str, args: &[&str]| {
        let command = if program == "claude" {
            w.sh(&here, &format!("exec claude {}", args.join(" ")))
        } else {
            w.cmd(&here).args(args)
        };
        // Nothing leaves the machine: Claude Code's traffic is off, and
        // its proxies lead nowhere.
        command
            .env("PATH", &path)
            .env("XDG_DATA_HOME", w.home().join(".local/share"))
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
    };
    let claude_check = || {
        let report = run("bridge-host", &["doctor"]).json();
        find(&checks_of(&report), "claude-code").clone()
    };
    run("bridge-host", &["setup", "claude-code"]).ok();
    let (_, status, detail) = claude_check();
    assert_eq!(status, "ok", "{detail}");
    assert!(detail.contains("2.1.197 (Claude Code)"), "{detail}");
    assert!(
        detail.contains(
            "wake: Claude Code does not list session-bridge@session-bridge yet; it installs \
             the plugin at its next start"
        ),
        "{detail}"
    );

    // What Claude Code's first start does: the marketplace setup declared
    // is added, and the plugin installed from it.
    let marketplace = w.home().join(".local/share/session-bridge/claude-code");
    run(
        "claude",
        &[
            "plugin",
            "marketplace",
            "add",
            &marketplace.display().to_string(),
        ],
    )
    .ok();
    run(
        "claude",
        &["plugin", "install", "session-bridge@session-bridge"],
    )
    .ok();
    let (_, status, detail) = claude_check();
    assert_eq!(status, "ok", "{detail}");
    assert!(
        detail.contains(&format!(
            "wake: the plugin ({}) is enabled in Claude Code with its 2 wake hooks",
            env!("CARGO_PKG_VERSION")
        )),
        "{detail}"
    );

    run(
        "claude",
        &["plugin", "disable", "session-bridge@session-bridge"],
    )
    .ok();
    let (_, status, detail) = claude_check();
    assert_eq!(status, "warn", "{detail}");
    assert!(
        detail.contains(
            "is installed but disabled, so nothing wakes a session: claude plugin \
             enable session-bridge@session-bridge"
        ),
        "{detail}"
    );
}
