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

/// The release targets and their archives' suffixes, as
/// `.ci/release-archives` makes them.
const RELEASE_TARGETS: [(&str, &str); 5] = [
    ("x86_64-unknown-linux-musl", ".tar.gz"),
    ("aarch64-unknown-linux-musl", ".tar.gz"),
    ("x86_64-pc-windows-gnu", ".zip"),
    ("x86_64-apple-darwin", ".tar.gz"),
    ("aarch64-apple-darwin", ".tar.gz"),
];

/// Every way to fetch a release archive names the same file: the
/// `cargo binstall` metadata in Cargo.toml (for each release target, and
/// for Windows MSVC hosts, which get the GNU build), the release script,
/// and the plugin's launcher, whose committed `release/SHA256SUMS` must
/// name this version's archives and whose default URL is the repository's
/// releases.
#[test]
fn binstall_the_release_script_and_the_plugin_name_the_same_archives() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: toml_edit::DocumentMut = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let package = &manifest["package"];
    let repo = package["repository"].as_str().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let binstall = &package["metadata"]["binstall"];
    let mut targets: Vec<(&str, &str, &str)> = RELEASE_TARGETS
        .iter()
        .map(|&(target, suffix)| (target, target, suffix))
        .collect();
    targets.push(("x86_64-pc-windows-msvc", "x86_64-pc-windows-gnu", ".zip"));
    for (host, archive_target, suffix) in targets {
        let field = |key: &str| {
            binstall
                .get("overrides")
                .and_then(|o| o.get(host))
                .and_then(|o| o.get(key))
                .or_else(|| binstall.get(key))
                .and_then(|v| v.as_str())
                .unwrap_or_else(|| panic!("no binstall {key} for {host}"))
                .replace("{ repo }", repo)
                .replace("{ version }", version)
                .replace("{ name }", "bridge-host")
                .replace("{ target }", host)
                .replace("{ bin }", "bridge-host")
                .replace(
                    "{ binary-ext }",
                    if host.contains("windows") { ".exe" } else { "" },
                )
        };
        let folder = format!("bridge-host-v{version}-{archive_target}");
        assert_eq!(
            field("pkg-url"),
            format!("{repo}/releases/download/v{version}/{folder}{suffix}"),
            "{host}"
        );
        let exe = if host.contains("windows") { ".exe" } else { "" };
        assert_eq!(
            field("bin-dir"),
            format!("{folder}/bridge-host{exe}"),
            "{host}"
        );
        let format = if suffix == ".zip" { "zip" } else { "tgz" };
        assert_eq!(field("pkg-fmt"), format, "{host}");
    }

    let script = std::fs::read_to_string(root.join(".ci/release-archives")).unwrap();
    assert!(
        script.contains("name=\"bridge-host-v$version-$target\"")
            && script.contains("$name.tar.gz")
            && script.contains("$name.zip"),
        ".ci/release-archives names its archives otherwise"
    );
    let launcher = std::fs::read_to_string(root.join("plugin/bin/bridge-host")).unwrap();
    assert!(
        launcher.contains(&format!("release_url=\"{repo}/releases/download\"")),
        "the launcher's default URL is not {repo}/releases/download"
    );
    let sums = std::fs::read_to_string(root.join("plugin/release/SHA256SUMS")).unwrap();
    assert!(!sums.trim().is_empty());
    for line in sums.lines() {
        let (sum, name) = line.split_once("  ").unwrap_or_else(|| panic!("{line:?}"));
        assert!(
            sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()),
            "{line:?}"
        );
        assert!(
            RELEASE_TARGETS
                .iter()
                .any(|(target, suffix)| name == format!("bridge-host-v{version}-{target}{suffix}")),
            "plugin/release/SHA256SUMS names {name}, not an archive of {version}: \
             after a version change, commit the new archives' sums (docs/release.md)"
        );
    }
}
