//! Whether the agent behind a session runs: its recorded agent process,
//! as the host tells, else its heartbeat.

use super::MAX_AGENT_PROCESS_BYTES;
use crate::error::{BridgeError, Result};
use crate::files::{self};
use crate::ids::SessionId;
use crate::wire::{MAX_MANIFEST_FILE_BYTES, Manifest};
use crate::{Bridge, Context, Liveness, Platform};

impl<P: Platform> Bridge<P> {
    /// Whether the agent behind session `id` runs: its recorded agent
    /// process, as the host tells; otherwise its heartbeat.
    pub(crate) fn liveness(&self, id: &SessionId) -> Liveness {
        let key = self.layout.session(id).display().to_string();
        let cached = self
            .caches
            .liveness
            .borrow()
            .get(&key, Some(LIVENESS_FRESH_MS));
        if let Some(liveness) = cached {
            return liveness;
        }
        let liveness = self.liveness_now(id);
        self.caches.liveness.borrow_mut().put(key, liveness);
        liveness
    }

    /// [`Self::liveness`], looked up afresh.
    pub(crate) fn liveness_now(&self, id: &SessionId) -> Liveness {
        if self.is_away(id) {
            return Liveness::Away;
        }
        match self.agent_process_running(id) {
            Some(true) => return Liveness::Running,
            Some(false) => return Liveness::NotRunning,
            None => {}
        }
        let manifest = files::read_bounded(&self.layout.manifest(id), MAX_MANIFEST_FILE_BYTES)
            .ok()
            .and_then(|bytes| Manifest::parse(&bytes, id).ok());
        match manifest {
            Some(manifest) if manifest.is_stale() => Liveness::NotRunning,
            Some(_) => Liveness::Running,
            None => Liveness::Unknown,
        }
    }

    /// Whether the agent process recorded for session `id` runs: None when
    /// none is recorded or the host cannot tell. Unlike [`Self::liveness`]
    /// it never guesses from the heartbeat, so cleanup removes a session
    /// early only on this word.
    pub(crate) fn agent_process_running(&self, id: &SessionId) -> Option<bool> {
        let process = files::read_bounded(
            &self.layout.agent_process(id),
            MAX_AGENT_PROCESS_BYTES as u64,
        )
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|text| !text.is_empty())?;
        self.platform.process_running(&process)
    }

    /// Records `context.agent_process` for session `id` (start, session-start).
    /// Without one, a process recorded before stays.
    ///
    /// # Errors
    /// `InvalidArgument` for a name that is empty, too long or holds control
    /// characters; `Io` when it cannot be written.
    pub(crate) fn record_agent_process(&self, id: &SessionId, context: &Context) -> Result<()> {
        let Some(process) = context.agent_process.as_deref() else {
            return Ok(());
        };
        let key = self.layout.session(id).display().to_string();
        self.caches.liveness.borrow_mut().forget(&key);
        if process.is_empty()
            || process.len() > MAX_AGENT_PROCESS_BYTES
            || process.chars().any(char::is_control)
        {
            return Err(BridgeError::InvalidArgument(format!(
                "the agent process name {:?} is not 1 to {MAX_AGENT_PROCESS_BYTES} bytes of \
                 printable text",
                process.chars().take(80).collect::<String>()
            )));
        }
        files::replace(
            &self.layout.session(id),
            "agent-process",
            process.as_bytes(),
        )
    }
}

/// How long an instance that runs many verbs trusts a liveness it looked
/// up: a burst of sends to one peer asks once.
pub(super) const LIVENESS_FRESH_MS: u64 = 1000;
