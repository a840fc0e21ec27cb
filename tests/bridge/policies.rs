//! Alternate guests (`--guest`): the example policies through the real
//! host, `guest info` / `guest check`, and refusal of foreign versions.

use std::path::{Path, PathBuf};

use crate::util::{World, parse_listen, probe_guest};

fn policy(name: &str) -> PathBuf {
    Path::new(env!("BRIDGE_POLICIES_DIR")).join(format!("{name}.wasm"))
}

#[test]
fn redact_secrets_redacts_and_audits_without_the_secret() {
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    let a_id = w.start(&a);
    let b_id = w.start(&b);
    let secret_text = "deploy with AKIAIOSFODNN7EXAMPLE and\nDB_PASSWORD=correct-horse-battery\n\
                       -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nthanks";
    let (output, description) = w
        .cmd(&a)
        .args(["--guest"])
        .args([policy("redact_secrets_policy")])
        .args(["run", "send", &b_id, "query", "-"])
        .stdin(secret_text)
        .output();
    assert!(output.status.success(), "{description}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning: policy: redacted 1 aws-access-key, 1 env-secret, 1 private-key"),
        "{description}"
    );

    let (_, content) = parse_listen(&w.cmd(&b).args(["run", "listen", "--timeout", "5"]).ok());
    assert!(
        content.starts_with("deploy with [REDACTED:aws-access-key] and"),
        "{content}"
    );
    assert!(
        content.contains("DB_PASSWORD=[REDACTED:env-secret]"),
        "{content}"
    );
    assert!(content.contains("[REDACTED:private-key]"), "{content}");
    assert!(content.ends_with("thanks"), "{content}");
    for secret in [
        "AKIAIOSFODNN7EXAMPLE",
        "correct-horse-battery",
        "MIIEowIBAAKCAQEA",
    ] {
        assert!(!content.contains(secret), "{secret} leaked: {content}");
    }

    let audit = std::fs::read_to_string(w.session_dir(&a_id).join("policy-audit.log")).unwrap();
    assert_eq!(audit.lines().count(), 1, "{audit}");
    assert!(
        audit.contains("redacted") && audit.contains("aws-access-key"),
        "{audit}"
    );
    for secret in [
        "AKIAIOSFODNN7EXAMPLE",
        "correct-horse-battery",
        "MIIEowIBAAKCAQEA",
    ] {
        assert!(
            !audit.contains(secret),
            "{secret} in the audit log: {audit}"
        );
    }
}

#[test]
fn redact_secrets_can_refuse_instead() {
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    w.start(&a);
    let b_id = w.start(&b);
    let (_, stderr) = w
        .cmd(&a)
        .env("BRIDGE_GUEST", policy("redact_secrets_policy"))
        .args(["--guest-setting", "mode=refuse"])
        .args([
            "run",
            "send",
            &b_id,
            "query",
            "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        ])
        .fails();
    assert!(
        stderr.contains("refused to send") && stderr.contains("1 github-token"),
        "{stderr}"
    );
    assert!(!stderr.contains("ghp_abc"), "{stderr}");
    w.cmd(&b).args(["run", "listen", "--timeout", "1"]).fails();

    // Ordinary text goes through untouched, and a bad setting is explained.
    w.cmd(&a)
        .env("BRIDGE_GUEST", policy("redact_secrets_policy"))
        .args(["--guest-setting", "mode=refuse"])
        .args(["run", "send", &b_id, "query", "nothing secret here"])
        .ok();
    let (_, stderr) = w
        .cmd(&a)
        .env("BRIDGE_GUEST", policy("redact_secrets_policy"))
        .args(["--guest-setting", "mode=maybe", "run", "id"])
        .fails();
    assert!(
        stderr.contains("mode \"maybe\" is neither redact nor refuse"),
        "{stderr}"
    );
}

#[test]
fn json_lines_changes_only_the_presentation() {
    let w = World::new();
    let a = w.project("a");
    let b = w.project("b");
    let a_id = w.start(&a);
    let b_id = w.start(&b);
    let guest = policy("json_lines_policy");
    let sent = w
        .cmd(&a)
        .args(["--guest"])
        .args([&guest])
        .args(["run", "send", &b_id, "query", "two\nlines"])
        .ok();
    let receipt: serde_json::Value = serde_json::from_str(&sent).unwrap();
    let id = receipt["sent"].as_str().unwrap().to_string();
    let got = w
        .cmd(&b)
        .args(["--guest"])
        .args([&guest])
        .args(["run", "listen", "--timeout", "5"])
        .ok();
    assert_eq!(got.lines().count(), 1, "{got}");
    let line: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(line["id"], id.as_str());
    assert_eq!(line["from"], a_id.as_str());
    assert_eq!(line["fromProject"], "a");
    assert_eq!(line["type"], "query");
    assert_eq!(line["content"], "two\nlines");
    // The wire format is the protocol's, whatever the presentation.
    let stored = w.session_dir(&b_id).join(format!("inbox/read/{id}.json"));
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(stored).unwrap()).unwrap();
    assert_eq!(stored["type"], "query");
    // Failures are the policy's to word, too.
    let (_, stderr) = w
        .cmd(&b)
        .args(["--guest"])
        .args([&guest])
        .args(["run", "reply", "msg-000000000000", "x"])
        .fails();
    let failure: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
    assert_eq!(failure["verb"], "reply", "{stderr}");
    assert_eq!(failure["error"], "no message msg-000000000000", "{stderr}");
}

#[test]
fn guest_info_and_check_describe_guests() {
    let w = World::new();
    let a = w.project("a");
    let info = w.cmd(&a).args(["guest", "info"]).ok();
    assert!(
        info.contains("implements: session-bridge:protocol@0.2.0"),
        "{info}"
    );
    assert!(info.contains("policy: default 0.2.0"), "{info}");
    assert!(info.contains("can run: yes"), "{info}");
    let hash = info
        .lines()
        .find_map(|l| l.strip_prefix("blake3: "))
        .unwrap();
    // The digest build.rs recorded is that of the bytes embedded.
    let embedded = std::fs::read(env!("BRIDGE_GUEST_WASM")).unwrap();
    assert_eq!(hash, blake3::hash(&embedded).to_hex().as_str());

    let check = w
        .cmd(&a)
        .args(["guest", "check"])
        .args([policy("redact_secrets_policy")])
        .ok();
    assert!(check.contains("policy: redact-secrets 0.1.0"), "{check}");
    assert!(check.contains("can run: yes"), "{check}");

    let junk = w.root.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm at all").unwrap();
    let (_, stderr) = w.cmd(&a).args(["guest", "check"]).args([&junk]).fails();
    assert!(
        stderr.contains("not a loadable WebAssembly component"),
        "{stderr}"
    );
}

/// A component that imports the protocol at `version`, and nothing else.
fn component_targeting(w: &World, version: &str) -> PathBuf {
    let text =
        format!("(component (import \"session-bridge:protocol/host@{version}\" (instance)))");
    let path = w.root.path().join(format!("v{version}.wasm"));
    std::fs::write(&path, wat::parse_str(&text).unwrap()).unwrap();
    path
}

#[test]
fn a_guest_for_another_protocol_version_is_refused_up_front() {
    let w = World::new();
    let a = w.project("a");
    w.start(&a);
    let future = component_targeting(&w, "0.9.0");
    let before = crate::util::snapshot(&w.bridge);
    let (_, stderr) = w
        .cmd(&a)
        .args(["--guest"])
        .args([&future])
        .args(["run", "peers"])
        .fails();
    assert!(
        stderr.contains("targets session-bridge:protocol@0.9.0")
            && stderr.contains("supports session-bridge:protocol@0.1.0"),
        "{stderr}"
    );
    assert_eq!(crate::util::snapshot(&w.bridge), before);
    let (check, _) = w.cmd(&a).args(["guest", "check"]).args([&future]).fails();
    assert!(
        check.contains("implements: session-bridge:protocol@0.9.0"),
        "{check}"
    );
    assert!(check.contains("can run: no"), "{check}");

    let unrelated = w.root.path().join("empty.wasm");
    std::fs::write(&unrelated, wat::parse_str("(component)").unwrap()).unwrap();
    let (_, stderr) = w
        .cmd(&a)
        .args(["--guest"])
        .args([&unrelated])
        .args(["run", "peers"])
        .fails();
    assert!(stderr.contains("is not a session-bridge guest"), "{stderr}");
}

#[test]
fn an_alternate_guest_gets_no_more_power_than_the_embedded_one() {
    // The probe guest is loaded with --guest like any policy; the sandbox
    // tests (sandbox.rs) run all their attacks through it. Here: it cannot
    // read the host's environment, and its settings are only what it is given.
    let w = World::new();
    let a = w.project("a");
    let (code, stdout, stderr) = {
        let (output, _) = w
            .cmd(&a)
            .env("SECRET_IN_HOST_ENV", "should-not-leak")
            .args(["--guest"])
            .args([probe_guest()])
            .args(["run", "connect", "read:/proc/self/environ"])
            .output();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("should-not-leak") && !stderr.contains("should-not-leak"));
}
