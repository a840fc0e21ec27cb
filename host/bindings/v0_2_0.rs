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

/// Every type of this version's interfaces, under one name: the host
/// speaks them as `wit::Name` whichever interface defines them.
pub mod wit {
    pub use super::session_bridge::protocol::about::{GuestInfo, Limits, McpText, ToolText};
    pub use super::session_bridge::protocol::context::{
        Caller, InvocationContext, OutputFormat, WithheldSession,
    };
    pub use super::session_bridge::protocol::errors::{
        BridgeError, Failure, FileProblem, HeldQuery, SizeLimit, Timeout,
    };
    pub use super::session_bridge::protocol::host::{HostError, IoFailure, IoKind};
    pub use super::session_bridge::protocol::mail::{
        ClaimTicket, Delivery, HistoryEntry, Liveness, Manifest, Message, MessageId, MessageKind,
        MessageMetadata, MessageStatus, Peer, PeerEntry, Receipt, ReceiptEvent, SessionId, Stage,
        UnreadableSession,
    };
    pub use super::session_bridge::protocol::relay::{
        InboundMessage, InboundVerdict, MaterializeReport, PresenceEntry, RelayInboundRequest,
        RelayItem, RelayMaterializeRequest, RelayOutgoing, RelayRequest, RemoteEntry,
    };
    pub use super::session_bridge::protocol::reports::{
        AwayJob, AwaySession, AwayStatus, CleanupReport, Connection, Outcome, Report, SentReport,
        SessionStartReport, StatusReport, StopReport,
    };
    pub use super::session_bridge::protocol::verbs::{
        AskRequest, AwayFailure, AwayOutcome, AwayRequest, AwayResult, AwaySettings,
        CleanupRequest, HistoryRequest, ListenRequest, ReceiveRequest, ReplyRequest, SeenRequest,
        SendRequest, SessionEndRequest, Verb,
    };
}

use self::session_bridge::protocol as interfaces;

impl interfaces::about::Host for HostState {}
impl interfaces::context::Host for HostState {}
impl interfaces::errors::Host for HostState {}
impl interfaces::mail::Host for HostState {}
impl interfaces::relay::Host for HostState {}
impl interfaces::reports::Host for HostState {}
impl interfaces::verbs::Host for HostState {}

host_interface!(session_bridge::protocol::host, wit::HostError, |e| e, {
    fn process_running(&mut self, process: String) -> wasmtime::Result<Option<bool>> {
        Ok(self.agent_process_running(&process))
    }

    fn flush_bridge_dir(&mut self) -> wasmtime::Result<Result<(), wit::HostError>> {
        Ok(self.flush_bridge_fs())
    }

    fn answer_away(&mut self, session: String) -> wasmtime::Result<Result<(), wit::HostError>> {
        Ok(self.start_answerer(&session))
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

    pub fn mcp_text(&self, store: &mut Store<HostState>) -> wasmtime::Result<Option<wit::McpText>> {
        self.0.call_mcp_text(store).map(Some)
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
