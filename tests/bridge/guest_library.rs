//! Runs the protocol library's own native tests (guest/ is a workspace of
//! its own, built for wasm by build.rs), so `cargo test` covers both.

use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn the_protocol_library_passes_its_native_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest-native");
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["test", "--locked", "--manifest-path"])
        .arg(root.join("guest/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("run cargo test for guest/");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Without the passing tests' lines, so that the failure's own message
    // survives a CI log shortened in the middle.
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|line| !line.ends_with(" ... ok"))
        .collect();
    assert!(
        output.status.success(),
        "guest/ native tests failed\nstdout (passing tests left out):\n{}\nstderr:\n{stderr}",
        failed.join("\n")
    );
    assert!(stdout.contains("test result: ok."), "{stdout}");
}
