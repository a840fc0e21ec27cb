//! Mail out: what waits here for other machines, published to the server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::sync::Notify;

use crate::sandbox::wit;

use super::serve::Watching;
use super::state::Relay;
use super::{GATHER, GATHER_BELOW, PUBLISH_ACK_WAIT, RETRY, keys, log};

/// Carries what waits for other machines: claims it through the guest,
/// publishes it with its message ID for deduplication, and commits each
/// claim once the server acknowledged it.
pub(super) async fn outbound(
    relay: Arc<Relay>,
    js: jetstream::Context,
    client: async_nats::Client,
    wake: Arc<Notify>,
    mut watch: Watching,
) {
    let mut refused_machines: HashMap<String, Instant> = HashMap::new();
    while !relay.stopping() {
        if client.connection_state() != async_nats::connection::State::Connected {
            tokio::select! {
                _ = wake.notified() => {}
                _ = relay.pause(Duration::from_millis(250)) => {}
            }
            continue;
        }
        let verb = wit::Verb::RelayOutbound(wit::RelayRequest {
            machine: relay.machine.clone(),
        });
        let outgoing = match relay.call(false, verb).await {
            Ok(report) => match report.outcome {
                wit::Outcome::RelayOutgoing(outgoing) => outgoing,
                _ => {
                    log("the guest answered relay-outbound with another outcome");
                    relay.pause(RETRY).await;
                    continue;
                }
            },
            Err(err) => {
                log(format!("cannot look for messages to carry: {err:#}"));
                relay.pause(RETRY).await;
                continue;
            }
        };
        let watching_more = watch.set(&outgoing.watch, &outgoing.sessions);
        if outgoing.items.is_empty() {
            // A folder watched from now on (a sender's outbox, for its
            // sent copy): what changed there before the watch is seen by
            // looking again at once.
            if watching_more {
                continue;
            }
            // Lapsed claims (a publish that failed) return to an inbox
            // without a change to wake on: look again now and then.
            tokio::select! {
                _ = wake.notified() => {}
                _ = relay.pause(Duration::from_secs(3)) => {}
            }
            continue;
        }
        let n = outgoing.items.len();
        let mut pending = Vec::new();
        for item in outgoing.items {
            let subject = format!(
                "{}.mail.{}.{}",
                relay.prefix, item.to_machine, relay.machine
            );
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", item.message_id.as_str());
            match keys::sign(&relay.key, &item.to_machine, &relay.machine, &item.payload) {
                Ok((signer, signature)) => {
                    headers.insert("Bridge-Signer", signer.as_str());
                    headers.insert("Bridge-Signature", signature.as_str());
                }
                Err(err) => {
                    log(format!("cannot sign {}: {err:#}", item.message_id));
                    continue;
                }
            }
            match js
                .publish_with_headers(subject, headers, item.payload.clone().into())
                .await
            {
                Ok(ack) => pending.push((item, ack)),
                Err(err) => log(format!("cannot publish {}: {err}", item.message_id)),
            }
        }
        let mut acked = Vec::new();
        let mut failed = 0;
        for (item, ack) in pending {
            match tokio::time::timeout(PUBLISH_ACK_WAIT, ack).await {
                Ok(Ok(_)) => acked.push(item.ticket),
                Ok(Err(err)) => {
                    failed += 1;
                    let last = refused_machines.get(&item.to_machine);
                    if last.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                        refused_machines.insert(item.to_machine.clone(), Instant::now());
                        // No stream answered: it was never made, or the
                        // server holding it is down.
                        let why = match err.kind() {
                            jetstream::context::PublishErrorKind::StreamNotFound => format!(
                                "it waits here and is sent again. No stream for machine {} \
                                 answered: either the server that holds it is down (with more \
                                 replicas, another takes over), or it was never made (the \
                                 team's admin makes it with `bridge-host relay admin --machine \
                                 {}`)",
                                item.to_machine, item.to_machine
                            ),
                            _ => "it waits here and is sent again".to_string(),
                        };
                        log(format!(
                            "the server did not take {} for machine {}: {err}; {why}",
                            item.message_id, item.to_machine
                        ));
                    }
                }
                Err(_) => failed += 1,
            }
        }
        relay.commit(acked).await;
        // More may be waiting past what one look lists: look again at once
        // (an empty look waits for a change, above).
        if failed > 0 {
            relay.pause(Duration::from_millis(500)).await;
        } else if n < GATHER_BELOW {
            // A small batch under steady traffic: let a little more gather
            // first, since each pass costs the same however little it
            // carries. A message after a quiet spell goes at once (the
            // empty look above waits for it).
            relay.pause(GATHER).await;
        }
    }
}
