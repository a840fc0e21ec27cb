//! `session-bridge:protocol@0.2.0`, the newest version, bound from
//! `wit/v0.2.0/`. Its types are the ones the host works in.

use anyhow::Result;
use wasmtime::Store;

use crate::sandbox::HostState;

wasmtime::component::bindgen!({
    world: "bridge",
    path: "wit/v0.2.0",
    imports: { default: trappable },
    with: {
        "session-bridge:protocol/host.watcher": crate::watch::DirWatcher,
    },
});

pub use self::session_bridge::protocol::types as wit;

impl wit::Host for HostState {}

host_interface!(session_bridge::protocol::host {
    fn process_running(&mut self, process: String) -> wasmtime::Result<Option<bool>> {
        Ok(self.agent_process_running(&process))
    }

    fn flush_bridge_dir(&mut self) -> wasmtime::Result<Result<(), String>> {
        Ok(self.flush_bridge_fs())
    }
});

/// An instantiated 0.2.0 guest.
pub struct Instance(Bridge);

impl Instance {
    instantiate!("0.2.0");

    pub fn info(&self, store: &mut Store<HostState>) -> wasmtime::Result<wit::GuestInfo> {
        self.0.call_info(store)
    }

    pub fn limits(&self, store: &mut Store<HostState>) -> wasmtime::Result<wit::Limits> {
        self.0.call_limits(store)
    }

    pub fn run(
        &self,
        store: &mut Store<HostState>,
        context: &wit::InvocationContext,
        verb: &wit::Verb,
    ) -> wasmtime::Result<Result<wit::Report, wit::Failure>> {
        self.0.call_run(store, context, verb)
    }

    pub fn commit_delivery(
        &self,
        store: &mut Store<HostState>,
        context: &wit::InvocationContext,
        ticket: &wit::ClaimTicket,
    ) -> wasmtime::Result<Result<(), wit::BridgeError>> {
        self.0.call_commit_delivery(store, context, ticket)
    }
}
