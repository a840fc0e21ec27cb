//! This session's life: `start` (and the SessionStart hook's
//! `session-start`), who it is, `status` and `stop`.

use super::SESSION_ENDED_CONTENT;
use crate::error::{BridgeError, Result};
use crate::files;
use crate::ids::SessionId;
use crate::registry::{validate_agent_session, validate_project_dir};
use crate::wire::{Kind, Manifest, Message};
use crate::{Bridge, Context, Outcome, Peer, PeerEntry, Platform, StatusReport, StopReport};

/// A session of another machine is only ever acted as on its own machine.
///
/// # Errors
/// `InvalidArgument` naming the machine.
pub(crate) fn refuse_remote(manifest: &Manifest) -> Result<()> {
    match &manifest.machine {
        Some(machine) => Err(BridgeError::InvalidArgument(format!(
            "session {} runs on machine {machine}; it is shown here by the relay and can be \
             sent to, but only that machine can act as it",
            manifest.session_id
        ))),
        None => Ok(()),
    }
}

impl<P: Platform> Bridge<P> {
    /// `session-start`: registers (as `start`), records the agent process,
    /// runs the cheap part of cleanup and names the live peers.
    pub(super) fn session_start(
        &self,
        context: &Context,
        warnings: &mut Vec<String>,
    ) -> Result<Outcome> {
        let session = self.start(context, warnings)?;
        let me = SessionId::parse(&session.session_id)?;
        let cleanup = self.cleanup_cheap(context, &me, warnings);
        let live_peers = self
            .peers(context)?
            .into_iter()
            .filter_map(|entry| match entry {
                PeerEntry::Valid(peer) if !peer.this_session && !peer.stale => Some(peer),
                _ => None,
            })
            .collect();
        Ok(Outcome::SessionStarted(crate::SessionStartReport {
            session,
            live_peers,
            cleanup,
        }))
    }

    /// This session and its manifest, with the heartbeat refreshed if due.
    ///
    /// # Errors
    /// `NoIdentity` when no session resolves, `NoSuchSession` when the
    /// resolved one is gone.
    pub(crate) fn me(&self, context: &Context) -> Result<(SessionId, Manifest)> {
        let (id, known) = self.identify(context)?.ok_or(BridgeError::NoIdentity)?;
        let manifest = match known {
            Some(manifest) => manifest,
            None => self.manifest(&id)?,
        };
        refuse_remote(&manifest)?;
        let manifest = self.touch_if_due(manifest)?;
        Ok((id, manifest))
    }

    pub(super) fn start(&self, context: &Context, warnings: &mut Vec<String>) -> Result<Manifest> {
        validate_project_dir(&context.project_dir)?;
        let agent = context.agent_session.as_deref();
        if let Some(agent) = agent {
            validate_agent_session(agent)?;
        }
        let reuse = match &context.session {
            Some(explicit) => Some(SessionId::parse(explicit)?),
            None => match self.registered_for_agent(context)? {
                Some(id) => Some(id),
                // A new agent session gets its own bridge, even in a project
                // that already has one.
                None if agent.is_some() => None,
                None => self.pointed_session(context)?,
            },
        };
        // The client is in the manifest's first write, so that nobody
        // reading it meanwhile sees the session without it.
        let client = crate::registry::client_name(context.client.as_deref());
        let manifest = match reuse {
            Some(id) => match self.manifest(&id) {
                Ok(mut manifest) => {
                    refuse_remote(&manifest)?;
                    for dir in self.layout.session_dirs(&id) {
                        files::ensure_dir(&dir)?;
                    }
                    self.record_agent(&id, agent)?;
                    self.new_incarnation(&id)?;
                    self.come_back(&id);
                    manifest.project_path = context.project_dir.clone();
                    manifest.project_name = crate::wire::project_name(&context.project_dir);
                    if client.is_some() {
                        manifest.client = client;
                    }
                    self.touch(&manifest)?
                }
                Err(BridgeError::NoSuchSession(_) | BridgeError::Corrupt { .. }) => {
                    files::ensure_dir(&self.layout.session(&id))?;
                    self.register(&id, &context.project_dir, agent, client)?
                }
                Err(err) => return Err(err),
            },
            None => self.register_new(&context.project_dir, agent, client)?,
        };
        self.archive_register(&manifest, warnings);
        if let Ok(id) = SessionId::parse(&manifest.session_id)
            && let Err(err) = self.record_agent_process(&id, context)
        {
            warnings.push(format!(
                "the agent process was not recorded ({err}); receipts will go by the heartbeat"
            ));
        }
        if let Err(why) = self.platform.write_pointer(&manifest.session_id) {
            warnings.push(format!(
                "the project pointer was not written ({why}); commands run in this project \
                 need --session {} or BRIDGE_SESSION_ID",
                manifest.session_id
            ));
        }
        Ok(manifest)
    }

    pub(super) fn status(&self, context: &Context) -> Result<StatusReport> {
        let (me, session) = self.me(context)?;
        let connected = self
            .correspondents(&me, Some(Kind::Ping))?
            .into_iter()
            .filter_map(|id| self.manifest(&id).ok())
            .map(|manifest| Peer {
                stale: manifest.is_stale(),
                this_session: false,
                manifest,
            })
            .collect();
        let count_json = |dir: std::path::PathBuf| -> Result<u32> {
            Ok(files::list(&dir)?
                .iter()
                .filter(|n| n.ends_with(".json"))
                .count() as u32)
        };
        let history = self.inbox_history(&me)?;
        let notices = self.pending_notices(&me);
        Ok(StatusReport {
            session,
            connected,
            // Notices held back for the next real message are not pending work.
            pending: count_json(self.layout.inbox(&me))?.saturating_sub(notices),
            sent: count_json(self.layout.outbox(&me))?,
            ended: self.ended_peers(&history),
        })
    }

    pub(crate) fn stop(&self, context: &Context, warnings: &mut Vec<String>) -> Result<StopReport> {
        let (me, mine) = self.me(context)?;
        if !self.project_owns(context, &me, &mine) {
            return Err(BridgeError::InvalidArgument(format!(
                "session {me} belongs to the project {:?}, not to {:?}; stop it from there \
                 (--project-dir {:?}) or name it with --session {me}",
                mine.project_path, context.project_dir, mine.project_path
            )));
        }
        let notified = self.end_session(&me, &mine, warnings)?;
        let mut pruned = Vec::new();
        for id in self.session_ids()? {
            if self.prune_if_abandoned(&id)? {
                pruned.push(id.to_string());
            }
        }
        let cheap = self.cleanup_cheap(context, &me, warnings);
        pruned.extend(cheap.sessions_removed);
        Ok(StopReport {
            session_id: me.to_string(),
            notified,
            pruned,
        })
    }

    /// Ends session `me` (its manifest `mine`): its correspondents are sent
    /// `session-ended`, the senders of what it never took are told, and
    /// its directory is removed (its messages archived first). Returns the
    /// peers notified.
    pub(crate) fn end_session(
        &self,
        me: &SessionId,
        mine: &Manifest,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<String>> {
        let incarnation = self.incarnation(me);
        let mut notified = Vec::new();
        for peer in self.correspondents(me, None)? {
            let mut ended = Message::new(
                me,
                &peer,
                Kind::SessionEnded,
                SESSION_ENDED_CONTENT.into(),
                None,
                &mine.project_name,
            );
            match self.deliver(&mut ended, warnings) {
                Ok(()) => notified.push(peer.to_string()),
                Err(err) => warnings.push(format!("could not notify {peer}: {err}")),
            }
        }
        self.receipts_recipient_gone(me);
        if self.remove_own_session(me, incarnation.as_deref())? {
            if let Err(why) = self.platform.clear_pointer(me.as_str()) {
                warnings.push(format!("the project pointer was not removed: {why}"));
            }
        } else {
            warnings.push(format!(
                "session {me} registered again while stopping; the new registration was left in place"
            ));
        }
        Ok(notified)
    }
}
