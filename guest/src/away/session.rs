//! Going away, coming back, and the `away` verb.

use serde::{Deserialize, Serialize};

use super::AWAY_STATUS;
use crate::error::{BridgeError, Result};
use crate::files::{self};
use crate::ids::SessionId;
use crate::wire::{Kind, Manifest};
use crate::{
    AwayRequest, AwaySession, AwayStatus, Bridge, Caller, Context, Outcome, Platform, StopReport,
    clock,
};

/// The largest `away.json` read.
const MAX_MARKER_BYTES: u64 = 8192;
/// The longest transcript path or working directory kept.
const MAX_PATH_BYTES: usize = 4096;

/// What an away session's `away.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Marker {
    /// The agent's own session ID, which the fork resumes.
    pub agent_session: String,
    /// The agent's working directory, where the fork runs.
    pub working_dir: String,
    /// The transcript, as the agent's hook named it.
    pub transcript: Option<String>,
    /// When it went away.
    pub since: String,
}

impl<P: Platform> Bridge<P> {
    /// True when session `id` is away.
    pub(crate) fn is_away(&self, id: &SessionId) -> bool {
        files::stat(&self.layout.session(id).join("away.json")).is_ok()
    }

    /// Whether a query to session `id` may be held for its next live
    /// session: it is away here, or it is a session of another machine,
    /// which may be away there by now (its presence says so only some
    /// time after it went away).
    pub(crate) fn may_hold(&self, id: &SessionId) -> bool {
        self.is_away(id) || self.manifest(id).is_ok_and(|m| m.machine.is_some())
    }

    /// The away record of session `id`, if it is away.
    pub(crate) fn away_marker(&self, id: &SessionId) -> Option<Marker> {
        let bytes =
            files::read_bounded(&self.layout.session(id).join("away.json"), MAX_MARKER_BYTES)
                .ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// A session registered again (its agent resumed): it is live, and
    /// what limits held is for it to take now.
    pub(crate) fn come_back(&self, id: &SessionId) {
        let dir = self.layout.session(id);
        let _ = files::remove_if_present(&dir.join("away.json"));
        let held = dir.join("away-held");
        for name in files::list(&held).unwrap_or_default() {
            let _ = files::remove_if_present(&held.join(name));
        }
    }

    /// `session-end`: the agent ended its session. In a project that
    /// opted in, a Claude Code session stays registered as away, to be
    /// answered from `transcript`; anything else stops as `stop` does.
    pub(crate) fn session_end(
        &self,
        context: &Context,
        transcript: Option<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Outcome> {
        let (me, mine) = self.me(context)?;
        let agent = context.agent_session.clone().filter(|a| !a.is_empty());
        let settings = self.away_settings(&mine.project_path, warnings);
        let transcript = transcript.filter(|t| t.starts_with('/') && t.len() <= MAX_PATH_BYTES);
        let can_go_away = settings.enabled
            && context.caller == Caller::SessionHook
            && agent
                .as_deref()
                .is_some_and(|a| self.agent_of(&me).as_deref() == Some(a));
        let Some(agent) = agent.filter(|_| can_go_away) else {
            return self.stop(context, warnings).map(Outcome::Stopped);
        };
        let working_dir = if context.working_dir.starts_with('/') {
            context.working_dir.clone()
        } else {
            mine.project_path.clone()
        };
        let marker = Marker {
            agent_session: agent,
            working_dir,
            transcript,
            since: clock::now_stamp(),
        };
        let bytes = serde_json::to_vec_pretty(&marker).expect("markers serialize");
        files::replace(&self.layout.session(&me), "away.json", &bytes)?;
        let mut manifest = mine;
        manifest.status = AWAY_STATUS.into();
        manifest.last_heartbeat = clock::now_stamp();
        self.write_manifest(&manifest)?;
        // The project's next session registers its own; the pointer must
        // not name this one meanwhile.
        if let Err(why) = self.platform.clear_pointer(me.as_str()) {
            warnings.push(format!("the project pointer was not removed: {why}"));
        }
        if self.pending_queries(&me) > 0 {
            self.start_answerer(&me, warnings);
        }
        Ok(Outcome::WentAway(manifest))
    }

    /// Asks the host to start the away answerer for `id`; a failure is a
    /// warning, and the queries wait.
    pub(crate) fn start_answerer(&self, id: &SessionId, warnings: &mut Vec<String>) {
        if let Err(why) = self.platform.answer_away(id.as_str()) {
            warnings.push(format!(
                "session {id} is away, and its answerer could not be started ({why}); the \
                 query waits in its inbox"
            ));
        }
    }

    /// Queries waiting in `id`'s inbox (the names only; nothing is read).
    pub(crate) fn pending_queries(&self, id: &SessionId) -> u32 {
        files::list(&self.layout.inbox(id))
            .unwrap_or_default()
            .iter()
            .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
            .count() as u32
    }

    /// Queries of `id` that a limit held.
    pub(crate) fn held_queries(&self, id: &SessionId) -> u32 {
        files::list(&self.layout.session(id).join("away-held"))
            .unwrap_or_default()
            .len() as u32
    }

    /// `away`: on, off or status, for this invocation's project.
    pub(crate) fn away(
        &self,
        context: &Context,
        request: &AwayRequest,
        warnings: &mut Vec<String>,
    ) -> Result<Outcome> {
        crate::registry::validate_project_dir(&context.project_dir)?;
        let project = crate::layout::normalized_project(&context.project_dir).to_string();
        let mut stopped = Vec::new();
        match request {
            AwayRequest::On(change) => {
                let mut next = self.away_settings(&project, warnings).with(change)?;
                next.enabled = true;
                self.write_away_settings(&project, &next)?;
            }
            AwayRequest::Off => {
                let current = self.away_settings(&project, warnings);
                if current.enabled {
                    self.write_away_settings(
                        &project,
                        &super::Settings {
                            enabled: false,
                            ..current
                        },
                    )?;
                }
                for (id, manifest) in self.away_sessions(&project) {
                    match self.end_session(&id, &manifest, warnings) {
                        Ok(_) => stopped.push(id.to_string()),
                        Err(err) => {
                            warnings.push(format!("away session {id} was not stopped: {err}"))
                        }
                    }
                }
            }
            AwayRequest::Status => {}
        }
        let settings = self.away_settings(&project, warnings);
        let spent = self.away_spent(&project);
        let mut sessions = Vec::new();
        for (id, _) in self.away_sessions(&project) {
            let Some(marker) = self.away_marker(&id) else {
                continue;
            };
            let pending = self.pending_queries(&id);
            let held = self.held_queries(&id);
            // Status looks after queries nobody is answering (after a
            // restart of the machine, say).
            if settings.enabled && pending > held {
                self.start_answerer(&id, warnings);
            }
            sessions.push(AwaySession {
                session_id: id.to_string(),
                agent_session: marker.agent_session,
                working_dir: marker.working_dir,
                transcript: marker.transcript,
                since: marker.since,
                pending,
                held,
            });
        }
        Ok(Outcome::Away(AwayStatus {
            project_dir: project,
            enabled: settings.enabled,
            max_turns: settings.max_turns,
            max_seconds: settings.max_seconds,
            per_hour: settings.per_hour,
            per_day: settings.per_day,
            spend_per_day: settings.spend_per_day,
            allow_other_machines: settings.allow_other_machines,
            answers_last_hour: spent.last_hour,
            answers_last_day: spent.last_day,
            spent_last_day: spent.dollars_last_day,
            sessions,
            stopped,
        }))
    }

    /// The away sessions of `project`.
    pub(crate) fn away_sessions(&self, project: &str) -> Vec<(SessionId, Manifest)> {
        let project = crate::layout::normalized_project(project);
        self.session_ids()
            .unwrap_or_default()
            .into_iter()
            .filter(|id| self.is_away(id))
            .filter_map(|id| {
                let manifest = self.manifest(&id).ok()?;
                (crate::layout::normalized_project(&manifest.project_path) == project)
                    .then_some((id, manifest))
            })
            .collect()
    }

    /// Stops away session `id` because its transcript is gone.
    pub(crate) fn end_away(
        &self,
        id: &SessionId,
        warnings: &mut Vec<String>,
    ) -> Result<StopReport> {
        let manifest = self.manifest(id)?;
        if manifest.status != AWAY_STATUS {
            return Err(BridgeError::InvalidArgument(format!(
                "session {id} is not away; only its own agent stops it"
            )));
        }
        let notified = self.end_session(id, &manifest, warnings)?;
        Ok(StopReport {
            session_id: id.to_string(),
            notified,
            pruned: Vec::new(),
        })
    }
}

/// Whether a message of `kind` is one an away session's copy answers.
pub(crate) fn answerable(kind: Kind) -> bool {
    kind == Kind::Query
}
