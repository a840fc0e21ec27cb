//! Mail in: this machine's mail taken from the server, written by the
//! guest in batches, in order, and acknowledged once written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use async_nats::jetstream::{self, consumer::pull, kv};
use futures_util::StreamExt;

use crate::sandbox::wit;

use super::presence::{last_entry, remote_entry};
use super::state::{INBOUND_WRITERS, Relay};
use super::turns::Turn;
use super::{
    INBOUND_BATCH, INBOUND_BYTES, MAX_WAITING, RETRY, UNKNOWN_SENDER_OFFERS, UNKNOWN_SENDER_PAUSE,
    UNTRUSTED_RETRY, log,
};

/// Takes this machine's mail from the server in batches, has the guest
/// check and write it, and acknowledges each message only once the guest
/// has written it to disk (or refused it, or found it written before).
/// Batches are written in the order received (see [`Turns`](super::turns::Turns)).
pub(super) async fn inbound(
    relay: Arc<Relay>,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    bucket: kv::Store,
) {
    use futures_util::FutureExt;
    let mut writing = tokio::task::JoinSet::new();
    let mut turns = 0;
    // A message that did not fit the last batch: the next one starts with it.
    let mut carried: Option<jetstream::Message> = None;
    while !relay.stopping() {
        // A continuous pull: messages come as they are published.
        let stream = consumer
            .stream()
            .max_messages_per_batch(INBOUND_BATCH)
            .max_bytes_per_batch(INBOUND_BYTES)
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await;
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(err) => {
                log(format!("cannot fetch mail: {err}"));
                relay.pause(RETRY).await;
                continue;
            }
        };
        while !relay.stopping() {
            let first = match carried.take() {
                Some(message) => message,
                None => {
                    let next = tokio::select! {
                        next = stream.next() => next,
                        _ = relay.stop.notified() => None,
                    };
                    match next {
                        Some(Ok(message)) => message,
                        // Missed heartbeats and the like: the stream goes on.
                        Some(Err(err)) => {
                            log(format!("fetching mail: {err}"));
                            continue;
                        }
                        None => break,
                    }
                }
            };
            // With it, whatever else has already arrived, as one batch.
            let mut bytes = first.payload.len();
            let mut messages = vec![first];
            while messages.len() < INBOUND_BATCH && bytes < INBOUND_BYTES {
                match stream.next().now_or_never() {
                    Some(Some(Ok(message))) => {
                        bytes += message.payload.len();
                        if bytes > INBOUND_BYTES {
                            carried = Some(message);
                            break;
                        }
                        messages.push(message);
                    }
                    _ => break,
                }
            }
            // At most INBOUND_WRITERS batches at once: one must end before
            // another starts.
            while writing.len() >= INBOUND_WRITERS {
                writing.join_next().await;
            }
            let turn = Turn {
                turns: relay.turns.clone(),
                number: turns,
            };
            turns += 1;
            let (relay, bucket) = (relay.clone(), bucket.clone());
            writing.spawn(async move { deliver(&relay, &bucket, messages, turn).await });
        }
    }
    // What is being written is acknowledged before the relay stops.
    while writing.join_next().await.is_some() {}
}

/// The publishing machine, from a mail subject `P.mail.<to>.<from>`.
fn publisher(subject: &str) -> String {
    subject.rsplit('.').next().unwrap_or("").to_string()
}

/// Has the guest write one batch, in its turn, and settles each message.
/// A batch with a sender not known here yet is offered again, that
/// sender's presence read from the bucket each time, up to
/// [`UNKNOWN_SENDER_OFFERS`] offers.
async fn deliver(
    relay: &Arc<Relay>,
    bucket: &kv::Store,
    messages: Vec<jetstream::Message>,
    turn: Turn,
) {
    let turn = Arc::new(turn);
    let offer = |messages: &[&jetstream::Message], last_offer: bool| {
        let verb = wit::Verb::RelayInbound(wit::RelayInboundRequest {
            machine: relay.machine.clone(),
            messages: messages
                .iter()
                .map(|m| {
                    let header = |name: &str| {
                        m.headers
                            .as_ref()
                            .and_then(|h| h.get(name))
                            .map(|v| v.as_str().to_string())
                            .unwrap_or_default()
                    };
                    wit::InboundMessage {
                        from_machine: publisher(m.subject.as_str()),
                        payload: m.payload.to_vec(),
                        signer: header("Bridge-Signer"),
                        signature: header("Bridge-Signature"),
                    }
                })
                .collect(),
            last_offer,
        });
        relay.call_in_turn(true, verb, Some(turn.clone()))
    };
    let all: Vec<&jetstream::Message> = messages.iter().collect();
    let Some(verdicts) = received(offer(&all, false).await, &all).await else {
        return;
    };
    let mut again = Vec::new();
    let mut unknown = Vec::new();
    for (message, verdict) in all.iter().zip(verdicts) {
        match verdict {
            wit::InboundVerdict::UnknownSender(sender) => {
                unknown.push((*message, sender));
                again.push(*message);
            }
            wit::InboundVerdict::Held(_) => again.push(*message),
            other => settle(relay, message, &other).await,
        }
    }
    // A sender this machine has not seen yet: its presence may not have
    // arrived, or not even been published (its relay publishes mail and
    // presence each as it notices them). Read it from the bucket, show it,
    // and offer the rest of the batch again; the batch keeps its turn
    // meanwhile, so nothing of a later turn lands before it.
    let mut offers = 1;
    while !again.is_empty() {
        let mut remote = Vec::new();
        for (message, sender) in &unknown {
            let machine = publisher(message.subject.as_str());
            let prefix = format!("$KV.{}.", relay.bucket());
            let key = format!("{machine}.{sender}");
            if let Ok(Some(entry)) = last_entry(&bucket.stream, &prefix, &key).await {
                remote.push(remote_entry(
                    machine,
                    sender.clone(),
                    Some(&entry.headers),
                    &entry.payload,
                ));
            }
        }
        if !remote.is_empty() {
            materialize(relay, true, remote, false, Vec::new()).await;
        }
        offers += 1;
        let last_offer = offers >= UNKNOWN_SENDER_OFFERS;
        let Some(verdicts) = received(offer(&again, last_offer).await, &again).await else {
            return;
        };
        let still_unknown = verdicts
            .iter()
            .any(|v| matches!(v, wit::InboundVerdict::UnknownSender(_)));
        // (A guest that still says unknown on the last offer is settled
        // as it says: refused.)
        if !still_unknown || last_offer {
            for (message, verdict) in again.iter().zip(verdicts) {
                settle(relay, message, &verdict).await;
            }
            return;
        }
        unknown = again
            .iter()
            .zip(verdicts)
            .filter_map(|(message, verdict)| match verdict {
                wit::InboundVerdict::UnknownSender(sender) => Some((*message, sender)),
                _ => None,
            })
            .collect();
        tokio::time::sleep(UNKNOWN_SENDER_PAUSE).await;
    }
}

/// The guest's verdicts on `messages`, one each; None when it could not
/// write them yet, and then each will be delivered again.
async fn received(
    report: Result<wit::Report>,
    messages: &[&jetstream::Message],
) -> Option<Vec<wit::InboundVerdict>> {
    let problem = match report {
        Ok(wit::Report {
            outcome: wit::Outcome::RelayReceived(verdicts),
            ..
        }) if verdicts.len() == messages.len() => return Some(verdicts),
        Ok(_) => "the guest did not answer with one verdict per message".to_string(),
        Err(err) => format!("{err:#}"),
    };
    log(format!(
        "cannot write {} received messages yet: {problem}",
        messages.len()
    ));
    for message in messages {
        let _ = message.ack_with(jetstream::AckKind::Nak(Some(RETRY))).await;
    }
    None
}

/// `text` with its control characters escaped, for one log line: what a
/// refusal quotes may have come from the network.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// Acknowledges a message the guest dealt with, logging what is not a
/// plain delivery (never the content).
async fn settle(relay: &Relay, message: &jetstream::Message, verdict: &wit::InboundVerdict) {
    let from = publisher(message.subject.as_str());
    let sequence = message.info().ok().map(|info| info.stream_sequence);
    if !matches!(verdict, wit::InboundVerdict::Untrusted(_))
        && let Some(seq) = sequence
    {
        relay
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&seq);
    }
    match verdict {
        wit::InboundVerdict::Delivered(_) => {}
        wit::InboundVerdict::Duplicate(id) => log(format!(
            "{id} from machine {from} was received before; dropped"
        )),
        wit::InboundVerdict::Refused(why) => log(format!(
            "refused a message from machine {from} ({} bytes): {}",
            message.payload.len(),
            printable(why)
        )),
        wit::InboundVerdict::UnknownSender(sender) => log(format!(
            "refused a message from machine {from}: unknown sender {sender}"
        )),
        // Signed by a key not trusted here yet: it stays on the server,
        // unacknowledged, and is offered again until the key is trusted
        // (or the stream's hold time passes).
        wit::InboundVerdict::Untrusted(why) => {
            let waits = {
                let mut waiting = relay.waiting.lock().unwrap_or_else(|e| e.into_inner());
                // One not offered again for a while is gone from the
                // stream (its hold time passed), or was taken elsewhere.
                let now = Instant::now();
                waiting.retain(|_, at| now.duration_since(*at) < UNTRUSTED_RETRY * 20);
                sequence.is_some_and(|seq| {
                    let room = waiting.contains_key(&seq) || waiting.len() < MAX_WAITING;
                    if room {
                        waiting.insert(seq, now);
                    }
                    room
                })
            };
            if waits {
                relay.log_now_and_then(printable(why));
                let _ = message
                    .ack_with(jetstream::AckKind::Nak(Some(UNTRUSTED_RETRY)))
                    .await;
                return;
            }
            log(format!(
                "dropped a message from machine {from} ({} bytes): {MAX_WAITING} messages from \
                 machines with no trusted key wait already. {}",
                message.payload.len(),
                printable(why)
            ));
            let _ = message.ack_with(jetstream::AckKind::Term).await;
            return;
        }
        // Held back on its last offer, which a guest should not do: it is
        // not acknowledged, so the server delivers it again.
        wit::InboundVerdict::Held(id) => {
            log(format!(
                "{id} from machine {from} was held back on its last offer; it comes again"
            ));
            let _ = message.ack_with(jetstream::AckKind::Nak(Some(RETRY))).await;
            return;
        }
    }
    if let Err(err) = message.ack().await {
        log(format!("cannot acknowledge a message from {from}: {err}"));
    }
}

pub(super) async fn materialize(
    relay: &Arc<Relay>,
    inbound: bool,
    remote: Vec<wit::RemoteEntry>,
    complete: bool,
    gone: Vec<(String, String)>,
) {
    let verb = wit::Verb::RelayMaterialize(wit::RelayMaterializeRequest {
        machine: relay.machine.clone(),
        remote,
        complete,
        gone,
    });
    match relay.call(inbound, verb).await {
        Ok(report) => {
            for line in report.rendered.lines() {
                log(line);
            }
            // What is refused comes again with each pass over the bucket.
            if let wit::Outcome::RelayMaterialized(done) = &report.outcome {
                for why in &done.refused {
                    relay.log_now_and_then(printable(why));
                }
            }
        }
        Err(err) => log(format!(
            "cannot show the sessions of other machines: {err:#}"
        )),
    }
}
