//! The session-bridge protocol: every rule about sessions and messages.
//!
//! This crate is a plain library, tested natively, with a thin WebAssembly
//! component layer (`component`) that `bridge-host` runs in a sandbox whose
//! only directory is the bridge directory. The host supplies what the
//! sandbox cannot do through [`Platform`].

// No unsafe code in the guest. The one exception is the component layer,
// whose bindings wit-bindgen generates into it (the exports' `extern "C"`
// entry points, the canonical ABI's memory handling); a lint level set on
// a macro call does not reach its expansion, so the whole module is
// allowed, and the WebAssembly build, which compiles it, can only deny
// unsafe code (a `forbid` could not be lifted there). Its own code has
// none.
#![cfg_attr(not(target_family = "wasm"), forbid(unsafe_code))]
#![cfg_attr(target_family = "wasm", deny(unsafe_code))]

// Lets generated code name this crate the same way inside it and in the
// policy crates that use it.
extern crate self as session_bridge_guest;

#[cfg(target_family = "wasm")]
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub mod clock;
pub mod error;
pub mod files;
pub mod ids;
pub mod layout;
pub mod wire;

pub mod policy;

mod archive;
mod away;
mod commands;
mod identity;
#[cfg(target_family = "wasm")]
mod instance;
mod mailbox;
mod memo;
mod model;
mod notices;
mod receipts;
mod registry;
pub mod relay;
pub mod relay_keys;
mod render;
// The path component.rs names failures' words by.
use render::failure as failure_text;
mod verbs;

#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
pub mod component;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

pub use error::{BridgeError, Result};
pub use layout::Layout;
pub use model::*;
pub use policy::{DefaultPolicy, GuestPolicy, Policy, Settings};
pub use render::{McpText, ToolText, mcp_text};

/// Waits for changes in one folder.
pub trait Watcher {
    /// Blocks until the folder changed since the watch began or since the
    /// last call, or until `timeout` passes. True when something changed.
    fn wait(&mut self, timeout: Duration) -> bool;
}

/// Why a host call failed, as the host classes it; `render` words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The path given is not a plain relative path inside the bridge
    /// directory.
    OutsideBridgeDir(String),
    /// The host keeps the guest out of this session directory.
    Withheld(String),
    /// The folder at this path was replaced while the host opened it.
    Replaced(String),
    /// The most watchers the host allows at once already run.
    TooManyWatchers(u32),
    /// The invocation names no project directory.
    NoProjectDir,
    /// The platform has no such operation.
    Unsupported,
    /// A file operation failed.
    Io {
        path: String,
        kind: IoKind,
        detail: String,
    },
}

/// What went wrong with the file system, as the operating system classes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    NotFound,
    PermissionDenied,
    NoSpace,
    ReadOnly,
    Other,
}

/// What the host provides beyond the bridge directory.
pub trait Platform {
    /// Watches `dir` (inside the bridge directory); None when it cannot, in
    /// which case waiting falls back to short sleeps.
    fn watch(&self, dir: &Path) -> Option<Box<dyn Watcher>>;
    /// The project pointer's content, if any.
    fn read_pointer(&self) -> Option<String>;
    /// Points the project at `id`.
    fn write_pointer(&self, id: &str) -> std::result::Result<(), HostError>;
    /// Removes the project pointer if it holds `id`.
    fn clear_pointer(&self, id: &str) -> std::result::Result<(), HostError>;
    /// Whether the process the host named `process` (an agent process from
    /// [`Context::agent_process`]) still runs; None when it cannot tell.
    fn process_running(&self, process: &str) -> Option<bool> {
        let _ = process;
        None
    }
    /// Flushes everything written in the bridge directory to stable
    /// storage at once; an error when the platform cannot, and the caller
    /// then flushes file by file.
    fn flush_all(&self) -> std::result::Result<(), HostError> {
        Err(HostError::Unsupported)
    }
    /// Starts the host's away answerer for the away session `session`,
    /// detached; an error when the host cannot.
    fn answer_away(&self, session: &str) -> std::result::Result<(), HostError> {
        let _ = session;
        Err(HostError::Unsupported)
    }
}

/// A platform for running the protocol natively (tests, fuzzing, tools):
/// the project pointer lives in memory and there are no change
/// notifications, so waits fall back to short sleeps.
#[derive(Debug, Default)]
pub struct LocalPlatform {
    pointer: std::sync::Mutex<Option<String>>,
    /// Agent processes that run, for [`Platform::process_running`]: an
    /// unlisted process has ended. None (the default) cannot tell.
    pub running: std::sync::Mutex<Option<Vec<String>>>,
    /// The sessions [`Platform::answer_away`] was asked to answer, in order.
    pub answerers: std::sync::Mutex<Vec<String>>,
}

impl Platform for LocalPlatform {
    fn watch(&self, _dir: &Path) -> Option<Box<dyn Watcher>> {
        None
    }

    fn read_pointer(&self) -> Option<String> {
        self.pointer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn write_pointer(&self, id: &str) -> std::result::Result<(), HostError> {
        *self.pointer.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.to_string());
        Ok(())
    }

    fn clear_pointer(&self, id: &str) -> std::result::Result<(), HostError> {
        let mut pointer = self.pointer.lock().unwrap_or_else(|e| e.into_inner());
        if pointer.as_deref() == Some(id) {
            *pointer = None;
        }
        Ok(())
    }

    fn answer_away(&self, session: &str) -> std::result::Result<(), HostError> {
        self.answerers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session.to_string());
        Ok(())
    }

    fn process_running(&self, process: &str) -> Option<bool> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running
            .as_ref()
            .map(|list| list.iter().any(|p| p == process))
    }
}

/// One bridge directory seen through a platform, under a policy.
pub struct Bridge<P> {
    layout: Layout,
    platform: P,
    policy: Box<dyn Policy>,
    /// Who runs the current verb: for receipts, and the commands its text
    /// shows.
    caller: std::cell::Cell<Caller>,
    /// What this bridge remembers between verbs. Shared only by the
    /// bridges of one sandboxed instance (see [`Bridge::with_caches`]).
    caches: std::rc::Rc<memo::Caches>,
}

impl<P: Platform> Bridge<P> {
    /// A bridge under the default policy.
    pub fn new(layout: Layout, platform: P) -> Self {
        Self::with_policy(layout, platform, Box::new(DefaultPolicy))
    }

    /// A bridge under `policy`.
    pub fn with_policy(layout: Layout, platform: P, policy: Box<dyn Policy>) -> Self {
        Bridge {
            layout,
            platform,
            policy,
            caller: std::cell::Cell::new(Caller::Terminal),
            caches: std::rc::Rc::default(),
        }
    }

    /// This bridge remembering into `caches` instead of its own: the
    /// component builds a bridge per call, and the calls to one instance
    /// share what it learnt.
    #[cfg(target_family = "wasm")]
    pub(crate) fn with_caches(mut self, caches: std::rc::Rc<memo::Caches>) -> Self {
        self.caches = caches;
        self
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Runs one verb.
    ///
    /// # Errors
    /// Every expected failure is a [`BridgeError`], returned with the
    /// warnings met before it.
    pub fn run(&self, context: &Context, verb: Verb) -> std::result::Result<Report, Failure> {
        self.caller.set(context.caller);
        let mut warnings = Vec::new();
        let verb_name = verb.name();
        match self.dispatch(context, verb, &mut warnings) {
            Ok(outcome) => {
                let render = |format| {
                    self.policy
                        .render(&outcome, format)
                        .unwrap_or_else(|| render::render(&outcome, format, context.caller))
                };
                Ok(Report {
                    rendered: render(context.format),
                    structured: context.structured.then(|| render(Format::Json)),
                    outcome,
                    warnings,
                })
            }
            Err(error) => {
                let (mut rendered, to_stdout) = failure_text::render(&error, verb_name, context);
                if let Some(text) = self
                    .policy
                    .render_failure(&error, verb_name, context.format)
                {
                    rendered = text;
                }
                Err(Failure {
                    error,
                    warnings,
                    rendered,
                    to_stdout,
                })
            }
        }
    }

    /// Completes a delivery after the host printed it.
    ///
    /// # Errors
    /// `Io` when the claim lapsed or the move failed; `InvalidArgument` for a
    /// ticket that is not a claim.
    pub fn commit_delivery(&self, ticket: &ClaimTicket) -> Result<()> {
        self.commit(ticket)
    }

    /// [`Self::commit_delivery`] for a caller other than the last verb's.
    ///
    /// # Errors
    /// As [`Self::commit_delivery`].
    pub fn commit_delivery_as(&self, context: &Context, ticket: &ClaimTicket) -> Result<()> {
        self.caller.set(context.caller);
        self.commit(ticket)
    }
}
