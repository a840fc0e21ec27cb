//! Builds the default guest (`guest/`) for `wasm32-wasip2`, compiles it
//! ahead of time for the target being built, and hands both paths to the
//! host crate, which embeds them: a user's first run loads the guest's
//! machine code instead of compiling it.
//!
//! The published crate has no guest sources: it carries the guest as the
//! component they build to ([`PREBUILT`]), so that it installs with a
//! stable toolchain and no wasm target. In a checkout the guest is built
//! from its sources, with paths that do not depend on the machine, and a
//! test (`tests/bridge/versions.rs`) checks that the committed component is
//! byte for byte what they build to.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "host/engine_config.rs"]
mod engine_config;

const TARGET: &str = "wasm32-wasip2";
/// The built guest the published crate carries (see the module
/// documentation).
const PREBUILT: &str = "host/prebuilt/session_bridge_guest.wasm";

fn main() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    for watched in [
        "guest/src",
        "guest/Cargo.toml",
        "guest/Cargo.lock",
        "wit",
        PREBUILT,
        "policies/Cargo.toml",
        "policies/Cargo.lock",
        "policies/redact-secrets/Cargo.toml",
        "policies/redact-secrets/src",
        "policies/json-lines/Cargo.toml",
        "policies/json-lines/src",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    // `native_linux`: the Linux-only paths (dnotify, hashed listings, the
    // compile cache loaded through /proc, processes read from /proc). Off
    // Linux, and on Linux with the `portable` feature, the host uses the
    // paths that work everywhere instead; the feature exists so that they
    // are built and tested here too.
    println!("cargo:rustc-check-cfg=cfg(native_linux)");
    let linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if linux && env::var_os("CARGO_FEATURE_PORTABLE").is_none() {
        println!("cargo:rustc-cfg=native_linux");
    }

    // Target directories of their own under OUT_DIR: sharing the outer one
    // would deadlock on its lock. The policies get a separate one because
    // they build the guest crate without its default export, as a cdylib of
    // the same name.
    let guest_target = out.join("guest-target");
    let policies_target = out.join("policies-target");
    let wasm = if root.join("guest/src").is_dir() {
        ensure_target_installed();
        build_wasm(&root.join("guest"), &guest_target, &[]);
        let wasm = guest_target
            .join(TARGET)
            .join("release")
            .join("session_bridge_guest.wasm");
        assert!(
            wasm.is_file(),
            "the guest build succeeded but {} is missing",
            wasm.display()
        );
        wasm
    } else {
        let wasm = root.join(PREBUILT);
        assert!(
            wasm.is_file(),
            "this copy of bridge-host has neither the guest's sources (guest/src) nor the \
             built guest ({PREBUILT}); download the crate again"
        );
        wasm
    };
    // The example policies, for the tests; a published crate has none.
    if root.join("policies/Cargo.toml").is_file() {
        build_wasm(&root.join("policies"), &policies_target, &["--workspace"]);
    }

    println!("cargo:rustc-env=BRIDGE_GUEST_WASM={}", wasm.display());
    // Its digest keys the compile cache; computing it here spares every run
    // from hashing the embedded bytes.
    let bytes =
        std::fs::read(&wasm).unwrap_or_else(|err| panic!("cannot read {}: {err}", wasm.display()));
    println!(
        "cargo:rustc-env=BRIDGE_GUEST_BLAKE3={}",
        blake3::hash(&bytes).to_hex()
    );
    let precompiled = out.join("session_bridge_guest.cwasm");
    precompile(&bytes, &precompiled);
    println!(
        "cargo:rustc-env=BRIDGE_GUEST_CWASM={}",
        precompiled.display()
    );
    // Where the example policies land, for the tests.
    println!(
        "cargo:rustc-env=BRIDGE_POLICIES_DIR={}",
        policies_target.join(TARGET).join("release").display()
    );
}

/// Compiles the guest component for the target this build is for (not the
/// machine building it: `cargo build --target` and .ci/check-targets build
/// for others), with the host's engine configuration, and writes the
/// artifact to `out`. The target is named explicitly, so the code uses only
/// the features every CPU of that architecture has, never this machine's.
/// This Cranelift has every architecture (Cargo.toml's `all-arch` on the
/// build dependency), so a cross build for aarch64 gets machine code too.
/// Where it still cannot compile for the target (an architecture Cranelift
/// lacks), `out` is left empty and the host compiles the guest on its
/// first run, as it does for `--guest`.
fn precompile(wasm: &[u8], out: &Path) {
    let target = env::var("TARGET").expect("set by cargo");
    let windows = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows");
    let compiled = (|| {
        let mut config = engine_config::config(windows);
        config.target(&target)?;
        wasmtime::Engine::new(&config)?.precompile_component(wasm)
    })();
    let bytes = compiled.unwrap_or_else(|err| {
        println!(
            "cargo:warning=the guest is not compiled ahead of time for {target} ({err}); \
             bridge-host will compile it on its first run"
        );
        Vec::new()
    });
    std::fs::write(out, bytes)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", out.display()));
}

/// `cargo build --release --target wasm32-wasip2` for the workspace in `dir`.
fn build_wasm(dir: &Path, target_dir: &Path, extra: &[&str]) {
    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["build", "--release", "--target", TARGET])
        .args(extra)
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    if dir.join("Cargo.lock").exists() {
        cargo.arg("--locked");
    }
    // The host's flags (and target settings) must not leak into the wasm
    // build: they break its link or silently replace the guest's own.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cargo.env_remove(var);
    }
    // The built guest names the sources of its dependencies (in panic
    // locations): under a fixed prefix rather than this machine's
    // CARGO_HOME, it is the same bytes on every machine with the same
    // toolchain, which is what lets the published crate carry it.
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    if let Some(cargo_home) = cargo_home {
        cargo.env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
        );
    }
    let status = cargo
        .status()
        .unwrap_or_else(|err| panic!("could not run cargo to build {}: {err}", dir.display()));
    if !status.success() {
        panic!(
            "building {} for {TARGET} failed; see the errors above",
            dir.display()
        );
    }
}

/// Makes sure the standard library for the wasm target is installed.
/// rust-toolchain.toml lists the target, but rustup only reads that list
/// when it installs the toolchain itself; on a machine whose toolchain was
/// already there, the target is added here, once. Without rustup, or if
/// that fails, the build stops with the one command that fixes it.
fn ensure_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let Some(sysroot) = sysroot else {
        return; // Let the build itself report what is wrong with rustc.
    };
    let libdir = sysroot.join("lib/rustlib").join(TARGET).join("lib");
    if has_std(&libdir) {
        return;
    }
    if let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") {
        let added = Command::new("rustup")
            .args(["target", "add", TARGET, "--toolchain"])
            .arg(&toolchain)
            .status()
            .is_ok_and(|s| s.success());
        if added && has_std(&libdir) {
            println!(
                "cargo:warning=installed the {TARGET} target for {} (rust-toolchain.toml lists it)",
                toolchain.to_string_lossy()
            );
            return;
        }
    }
    panic!(
        "the {TARGET} target is not installed for this toolchain ({}).\n\
         Run: rustup target add {TARGET}",
        sysroot.display()
    );
}

fn has_std(libdir: &Path) -> bool {
    std::fs::read_dir(libdir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
    })
}
