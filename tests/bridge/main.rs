//! Integration tests: every test drives the real `bridge-host` binary.

mod answer_path;
mod away;
mod bad_input;
mod cache;
mod codex_hooks;
mod codex_tui;
mod concurrency;
mod doctor;
mod flows;
mod gemini_hook;
mod guest_library;
mod hostile;
mod identity;
mod interop;
mod mcp;
mod nats;
mod plugin;
mod policies;
mod readme;
mod real_client;
mod relay;
mod sandbox;
mod second_agent;
mod setup;
mod util;
mod versions;
