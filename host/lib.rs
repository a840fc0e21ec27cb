//! The host side of session-bridge: the sandbox that runs the protocol
//! guest, the few capabilities it brokers, and the front ends that reach
//! it: the CLI ([`cli`]), the agents' hooks ([`hooks`], with the approval
//! hook [`hooks::approve`]), the MCP server ([`mcp`]), the relay between
//! machines ([`relay`]), the installer into clients' configurations
//! ([`setup`]), `bridge-host doctor` ([`doctor`]) and the away answerer
//! ([`away`]).
//!
//! Each front end builds on the invocation core ([`invoke`]) and the verb
//! table ([`verbs`]). Front ends call one another in a few places only:
//! the SessionStart hooks start the relay (`relay::start_if_configured`),
//! the MCP server checks a thread ID as the hooks check a session ID
//! (`hooks::is_agent_session`), and the doctor asks the relay
//! (`relay::health`) and setup (`setup::installed`) and checks the Codex
//! program the waker runs (`hooks::codex_program`). The core calls one
//! front end: [`invoke`] gives each guest `away::spawner`, which starts
//! the away answerer when the guest asks. `main.rs` only parses the
//! command line; the benchmarks use this library directly.

// The relay names library items by the crate's name, as it did from the
// binary; this keeps its body as it is.
extern crate self as bridge_host;

pub mod away;
pub mod bindings;
pub mod cli;
pub mod compile_cache;
pub mod confine;
pub mod dirs;
pub mod doctor;
mod engine_config;
pub mod guests;
pub mod hooks;
pub mod invoke;
pub mod listing;
pub mod mcp;
pub mod process;
pub mod relay;
pub mod sandbox;
pub mod setup;
pub mod signals;
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
