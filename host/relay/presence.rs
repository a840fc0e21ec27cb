//! Presence: this machine's sessions published to the bucket, and other
//! machines' sessions shown here.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use async_nats::jetstream::{self, consumer::pull, kv, stream};
use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::sandbox::wit;

use super::inbound::materialize;
use super::state::Relay;
use super::{PUBLISH_ACK_WAIT, keys, log};

/// Publishes this machine's sessions to the presence bucket when they
/// change and at a third of the TTL, and shows other machines' sessions
/// here: each change as it comes (through this machine's consumer on the
/// bucket), and a full pass at the same pace, which is also what removes
/// the sessions of a machine whose entries expired.
pub(super) async fn presence(
    relay: Arc<Relay>,
    js: jetstream::Context,
    bucket: kv::Store,
    (bucket_stream, feed): (stream::Stream, jetstream::consumer::Consumer<pull::Config>),
    wake: Arc<Notify>,
    ttl: u64,
) {
    let refresh = Duration::from_secs((ttl / 3).clamp(3, 60));
    let mut published: HashMap<String, Vec<u8>> = HashMap::new();
    let mut last_full = Instant::now() - refresh * 2;
    let mut changes = None;
    while !relay.stopping() {
        // The feed starts before the full pass reads the bucket, so that
        // nothing put in between is missed until the next pass.
        if changes.is_none() {
            changes = feed
                .stream()
                .heartbeat(Duration::from_secs(5))
                .messages()
                .await
                .ok();
            last_full = Instant::now() - refresh * 2;
        }
        let full = last_full.elapsed() >= refresh;
        publish_own(&relay, &js, &bucket, &mut published, full).await;
        if full {
            resync(&relay, &bucket_stream).await;
            last_full = Instant::now();
        }
        let change = async {
            match changes.as_mut() {
                Some(c) => c.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            entry = change => match entry {
                Some(Ok(message)) => {
                    apply(&relay, &message).await;
                    let _ = message.ack().await;
                }
                // Missed heartbeats and the like: the feed goes on.
                Some(Err(_)) => {}
                None => changes = None,
            },
            // A session started or stopped here (the outbound loop's
            // watch on `sessions/`), or a periodic pass.
            _ = wake.notified() => {
                // A new session's manifest is written just after its folder.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ = relay.pause(refresh.min(Duration::from_secs(5))) => {}
        }
    }
}

/// Puts the presence entry `manifest` of this machine's session `session`
/// under `key`, signed as mail is (`Bridge-Signer`, `Bridge-Signature`): a
/// put of the key-value bucket with two headers more, so that no machine
/// can show sessions under another's name.
async fn put_signed(
    relay: &Arc<Relay>,
    js: &jetstream::Context,
    key: &str,
    session: &str,
    manifest: &[u8],
) -> Result<()> {
    let (signer, signature) = keys::sign_presence(&relay.key, &relay.machine, session, manifest)?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Bridge-Signer", signer.as_str());
    headers.insert("Bridge-Signature", signature.as_str());
    let subject = format!("$KV.{}.{key}", relay.bucket());
    let ack = js
        .publish_with_headers(subject, headers, manifest.to_vec().into())
        .await?;
    tokio::time::timeout(PUBLISH_ACK_WAIT, ack)
        .await
        .map_err(|_| anyhow!("the server did not confirm it within {PUBLISH_ACK_WAIT:?}"))??;
    Ok(())
}

/// A presence entry read from the bucket, with its signature headers.
pub(super) fn remote_entry(
    machine: String,
    session_id: String,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> wit::RemoteEntry {
    let header = |name: &str| {
        headers
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
            .unwrap_or_default()
    };
    wit::RemoteEntry {
        machine,
        session_id,
        payload: payload.to_vec(),
        signer: header("Bridge-Signer"),
        signature: header("Bridge-Signature"),
    }
}

async fn publish_own(
    relay: &Arc<Relay>,
    js: &jetstream::Context,
    bucket: &kv::Store,
    published: &mut HashMap<String, Vec<u8>>,
    refresh: bool,
) {
    let verb = wit::Verb::RelayPresence(wit::RelayRequest {
        machine: relay.machine.clone(),
    });
    let entries = match relay.call(false, verb).await {
        Ok(wit::Report {
            outcome: wit::Outcome::RelayPresence(entries),
            ..
        }) => entries,
        Ok(_) => return,
        Err(err) => {
            log(format!("cannot read this machine's sessions: {err:#}"));
            return;
        }
    };
    let mut now: HashSet<String> = HashSet::new();
    for entry in entries {
        now.insert(entry.session_id.clone());
        let same = published.get(&entry.session_id) == Some(&entry.payload);
        if same && !refresh {
            continue;
        }
        let key = format!("{}.{}", relay.machine, entry.session_id);
        match put_signed(relay, js, &key, &entry.session_id, &entry.payload).await {
            Ok(()) => {
                published.insert(entry.session_id, entry.payload);
            }
            Err(err) => log(format!("cannot publish the presence of {key}: {err:#}")),
        }
    }
    let ended: Vec<String> = published
        .keys()
        .filter(|id| !now.contains(*id))
        .cloned()
        .collect();
    for id in ended {
        let key = format!("{}.{id}", relay.machine);
        match bucket.delete(&key).await {
            Ok(()) => {
                published.remove(&id);
            }
            Err(err) => log(format!("cannot withdraw the presence of {key}: {err}")),
        }
    }
}

/// Splits a presence key `<machine>.<session>`.
fn split_key(key: &str) -> Option<(String, String)> {
    let (machine, session) = key.split_once('.')?;
    Some((machine.to_string(), session.to_string()))
}

/// One change read from the bucket: a put, or a delete or purge marker.
async fn apply(relay: &Arc<Relay>, message: &jetstream::Message) {
    let prefix = format!("$KV.{}.", relay.bucket());
    let Some(key) = message.subject.as_str().strip_prefix(&prefix) else {
        return;
    };
    let Some((machine, session)) = split_key(key) else {
        return;
    };
    if machine == relay.machine {
        return;
    }
    let removed = message
        .headers
        .as_ref()
        .and_then(|h| h.get("KV-Operation"))
        .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
    if removed {
        materialize(relay, false, Vec::new(), false, vec![(machine, session)]).await;
    } else {
        let remote = vec![remote_entry(
            machine,
            session,
            message.headers.as_ref(),
            &message.payload,
        )];
        materialize(relay, false, remote, false, Vec::new()).await;
    }
}

/// The last entry of presence key `key`, with its headers, when it is a
/// put (not a delete or purge marker); read by direct get, which a machine
/// may do.
pub(super) async fn last_entry(
    bucket_stream: &stream::Stream,
    prefix: &str,
    key: &str,
) -> Result<Option<jetstream::message::StreamMessage>> {
    use async_nats::jetstream::stream::DirectGetErrorKind;
    match bucket_stream
        .direct_get_last_for_subject(format!("{prefix}{key}"))
        .await
    {
        Ok(message) => {
            let removed = message
                .headers
                .get("KV-Operation")
                .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
            Ok((!removed).then_some(message))
        }
        Err(err) if matches!(err.kind(), DirectGetErrorKind::NotFound) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Reads the whole bucket and shows exactly what it holds. The keys come
/// from the bucket stream's subjects (a stream info, which a machine may
/// ask for), not from a consumer, which a machine may not create.
async fn resync(relay: &Arc<Relay>, bucket_stream: &stream::Stream) {
    let prefix = format!("$KV.{}.", relay.bucket());
    let mut subjects = match bucket_stream.info_with_subjects(format!("{prefix}>")).await {
        Ok(subjects) => subjects,
        Err(err) => {
            log(format!("cannot list the presence bucket: {err}"));
            return;
        }
    };
    let mut keys = Vec::new();
    while let Some(next) = subjects.next().await {
        match next {
            Ok((subject, _)) => {
                if let Some(key) = subject.strip_prefix(&prefix) {
                    keys.push(key.to_string());
                }
            }
            Err(err) => {
                log(format!("cannot list the presence bucket: {err}"));
                return;
            }
        }
    }
    let mut remote = Vec::new();
    for key in keys {
        let Some((machine, session)) = split_key(&key) else {
            continue;
        };
        if machine == relay.machine {
            continue;
        }
        match last_entry(bucket_stream, &prefix, &key).await {
            Ok(Some(entry)) => remote.push(remote_entry(
                machine,
                session,
                Some(&entry.headers),
                &entry.payload,
            )),
            Ok(None) => {}
            // Unreadable now: a full pass must not remove what it could
            // not read, so this one stops here.
            Err(err) => {
                log(format!("cannot read the presence of {key}: {err}"));
                return;
            }
        }
    }
    materialize(relay, false, remote, true, Vec::new()).await;
}
