//! Commits a delivered message only once the response that carries it has
//! been written to the client, as `bridge-host run` commits only after
//! printing. The transport is stdio's, wrapped: when it has sent a
//! response whose request delivered a message, the delivery is committed.
//! A response that is never sent (the server dies, the write fails, the
//! call was cancelled) leaves the claim to lapse, and the message is
//! delivered again.

use std::future::Future;
use std::sync::Arc;

use rmcp::model::{JsonRpcMessage, RequestId};
use rmcp::service::{RoleServer, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::{IntoTransport, Transport};

use crate::sandbox::wit;

use super::Bridge;

impl Bridge {
    /// Holds `ticket` until the response to request `id` is written.
    pub(super) fn hand_over_with(&self, id: RequestId, ticket: wit::ClaimTicket) {
        self.handovers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, ticket));
    }

    /// The delivery the response to `id` carries, if any.
    fn handed_over(&self, id: &RequestId) -> Option<wit::ClaimTicket> {
        let mut waiting = self.handovers.lock().unwrap_or_else(|e| e.into_inner());
        let at = waiting
            .iter()
            .position(|(waiting_id, _)| waiting_id == id)?;
        Some(waiting.swap_remove(at).1)
    }
}

/// A transport that commits deliveries once their responses are sent.
pub(super) struct Handover<T> {
    inner: T,
    bridge: Arc<Bridge>,
}

impl<T: Transport<RoleServer>> Handover<T> {
    pub(super) fn new(inner: T, bridge: Arc<Bridge>) -> Self {
        Handover { inner, bridge }
    }
}

/// The standard input and output, as an MCP transport.
pub(super) fn stdio() -> impl Transport<RoleServer, Error = std::io::Error> {
    IntoTransport::<RoleServer, std::io::Error, _>::into_transport(rmcp::transport::stdio())
}

impl<T: Transport<RoleServer>> Transport<RoleServer> for Handover<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let ticket = match &item {
            JsonRpcMessage::Response(response) => self.bridge.handed_over(&response.id),
            _ => None,
        };
        let sent = self.inner.send(item);
        let bridge = self.bridge.clone();
        async move {
            let result = sent.await;
            if let Some(ticket) = ticket {
                if result.is_ok() {
                    let _ = tokio::task::spawn_blocking(move || bridge.commit(&ticket)).await;
                } else {
                    eprintln!(
                        "bridge-host mcp: the response carrying {} was not written; it stays in \
                         the inbox and is delivered again",
                        ticket.message_id
                    );
                }
            }
            result
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleServer>>> + Send {
        self.inner.receive()
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
