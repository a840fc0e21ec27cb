//! The host side of session-bridge: the sandbox that runs the protocol
//! guest, and the few capabilities it brokers. `main.rs` is the CLI on top;
//! the benchmarks use this library directly.

pub mod bindings;
pub mod compile_cache;
pub mod confine;
pub mod dirs;
mod engine_config;
pub mod guests;
pub mod listing;
pub mod process;
pub mod sandbox;
pub mod verbs;
pub mod wasi_link;
pub mod watch;

/// The default guest component, built from `guest/` by build.rs.
pub static DEFAULT_GUEST: &[u8] = include_bytes!(env!("BRIDGE_GUEST_WASM"));

/// The BLAKE3 digest of [`DEFAULT_GUEST`] in hex, computed by build.rs.
pub static DEFAULT_GUEST_BLAKE3: &str = env!("BRIDGE_GUEST_BLAKE3");

/// The default guest compiled ahead of time by build.rs for the target
/// this binary was built for, with [`engine_config`]'s configuration; empty
/// when build.rs could not compile it for that target (a cross build for
/// another architecture), and the guest is then compiled on first use.
pub static DEFAULT_GUEST_PRECOMPILED: &[u8] = include_bytes!(env!("BRIDGE_GUEST_CWASM"));
