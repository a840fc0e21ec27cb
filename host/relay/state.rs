//! The relay's state: its guest instances and what they share, and the
//! lock that keeps one relay per bridge directory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use tokio::sync::Notify;

use crate::invoke::{Invocation, describe};
use crate::sandbox::wit;

use super::admin::Layout;
use super::turns::{Turn, Turns};
use super::{SAY_AGAIN, log};

/// How many batches of received mail are written at once, each by its own
/// guest instance. While one batch waits for its flush to disk, the next is
/// written, and the two flushes are one for the disk.
pub(super) const INBOUND_WRITERS: usize = 2;

/// The guest instances: one carries mail out and keeps presence, the
/// others write mail in, so none waits for another.
pub(super) struct Relay {
    pub(super) machine: String,
    pub(super) prefix: String,
    pub(super) layout: Layout,
    /// Signs what this relay publishes.
    pub(super) key: nkeys::KeyPair,
    pub(super) out: Mutex<Invocation>,
    pub(super) inbound: Vec<Mutex<Invocation>>,
    pub(super) turns: Arc<Turns>,
    /// When each line logged once per [`SAY_AGAIN`] was last logged.
    pub(super) said: Mutex<HashMap<String, Instant>>,
    /// The stream sequences of the messages waiting for a trusted key,
    /// each with when it was last offered.
    pub(super) waiting: Mutex<HashMap<u64, Instant>>,
    pub(super) stopping: AtomicBool,
    pub(super) stop: Notify,
}

impl Relay {
    pub(super) fn mail_stream(&self) -> String {
        self.layout.mail_stream(&self.machine)
    }

    pub(super) fn bucket(&self) -> String {
        self.layout.bucket()
    }

    /// Runs `verb` on one instance, off the async threads.
    pub(super) async fn call(
        self: &Arc<Self>,
        inbound: bool,
        verb: wit::Verb,
    ) -> Result<wit::Report> {
        self.call_in_turn(inbound, verb, None).await
    }

    /// Runs `verb` on one instance, off the async threads; with a `turn`,
    /// only once it is that turn, which the verb passes on when it asks
    /// for its writes to be flushed.
    pub(super) async fn call_in_turn(
        self: &Arc<Self>,
        inbound: bool,
        verb: wit::Verb,
        turn: Option<Arc<Turn>>,
    ) -> Result<wit::Report> {
        let relay = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(turn) = &turn {
                turn.wait();
            }
            let mut invocation = if inbound {
                // A free writer, else the first.
                relay
                    .inbound
                    .iter()
                    .find_map(|lock| match lock.try_lock() {
                        Ok(guard) => Some(guard),
                        Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
                        Err(std::sync::TryLockError::WouldBlock) => None,
                    })
                    .unwrap_or_else(|| relay.inbound[0].lock().unwrap_or_else(|e| e.into_inner()))
            } else {
                relay.out.lock().unwrap_or_else(|e| e.into_inner())
            };
            invocation.withhold_loose()?;
            invocation.guest.before_flush(turn.map(|turn| {
                let hook: bridge_host::sandbox::BeforeFlush = Box::new(move || turn.pass());
                hook
            }));
            let ran = invocation.run(&verb);
            invocation.guest.before_flush(None);
            match ran? {
                Ok(report) => {
                    for warning in &report.warnings {
                        log(format!("warning: {warning}"));
                    }
                    Ok(report)
                }
                Err(failure) => Err(anyhow!("{}", Invocation::failure_text(&failure))),
            }
        })
        .await
        .map_err(|e| anyhow!("the guest call failed: {e}"))?
    }

    /// Commits the claims on messages the server acknowledged.
    pub(super) async fn commit(self: &Arc<Self>, tickets: Vec<wit::ClaimTicket>) {
        let relay = self.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut invocation = relay.out.lock().unwrap_or_else(|e| e.into_inner());
            let invocation = &mut *invocation;
            for ticket in tickets {
                match invocation
                    .guest
                    .commit_delivery(&invocation.context, &ticket)
                {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => log(format!(
                        "{} was relayed, but its claim here could not be committed: {}",
                        ticket.message_id,
                        describe(&err)
                    )),
                    Err(err) => log(format!(
                        "{} was relayed, but its claim here could not be committed: {err:#}",
                        ticket.message_id
                    )),
                }
            }
        })
        .await;
        if let Err(err) = done {
            log(format!("committing relayed messages failed: {err}"));
        }
    }

    /// Logs `line` unless it was logged less than [`SAY_AGAIN`] ago: for
    /// what comes back each time a waiting message is offered again.
    pub(super) fn log_now_and_then(&self, line: String) {
        let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        said.retain(|_, at| now.duration_since(*at) < SAY_AGAIN);
        if let std::collections::hash_map::Entry::Vacant(slot) = said.entry(line) {
            log(slot.key());
            slot.insert(now);
        }
    }

    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Sleeps for `wait`, or less when the relay is stopping.
    pub(super) async fn pause(&self, wait: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.stop.notified() => {}
        }
    }
}

/// Holds the one relay of a bridge directory: a lock on `relay.lock`,
/// released when the process ends however it ends.
pub(super) fn lock_bridge(bridge_dir: &std::path::Path, machine: &str) -> Result<std::fs::File> {
    use std::io::Write;
    let path = bridge_dir.join("relay.lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "another relay already serves {} ({}); one relay per bridge directory",
                bridge_dir.display(),
                holder.trim()
            );
        }
        Err(std::fs::TryLockError::Error(err)) => {
            return Err(err).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    file.set_len(0)?;
    write!(file, "pid {} machine {machine}", std::process::id())?;
    Ok(file)
}
