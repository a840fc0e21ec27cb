//! Which session an invocation speaks for.
//!
//! The order is: an explicit session (`--session`, `BRIDGE_SESSION_ID`);
//! the session registered for the agent's own session ID
//! (`CLAUDE_CODE_SESSION_ID`); the project pointer; the manifest whose
//! `projectPath` contains the project directory (`--project-dir`,
//! `PROJECT_DIR`, or the working directory). When the agent's session ID
//! is known, sessions registered by another agent are never picked by the
//! later steps, so two agents in one repository keep separate bridges.

use std::path::Path;

use crate::error::Result;
use crate::ids::SessionId;
use crate::registry::{is_refused, validate_agent_session};
use crate::wire::Manifest;
use crate::{Bridge, Context, Platform};

impl<P: Platform> Bridge<P> {
    /// Resolves this invocation's session; None when nothing matches.
    ///
    /// # Errors
    /// `InvalidSessionId` for a malformed explicit session,
    /// `InvalidArgument` for a malformed agent session ID.
    pub(crate) fn resolve(&self, context: &Context) -> Result<Option<SessionId>> {
        Ok(self.identify(context)?.map(|(id, _)| id))
    }

    /// As [`Self::resolve`], with the session's manifest when finding the
    /// session meant reading it (every verb that needs its identity reads
    /// the manifest next, and one read per run is enough).
    pub(crate) fn identify(
        &self,
        context: &Context,
    ) -> Result<Option<(SessionId, Option<Manifest>)>> {
        if let Some(explicit) = &context.session {
            return Ok(Some((SessionId::parse(explicit)?, None)));
        }
        if let Some(agent) = self.registered_for_agent(context)? {
            return Ok(Some((agent, None)));
        }
        if let Some((pointed, manifest)) = self.pointed(context)? {
            return Ok(Some((pointed, Some(manifest))));
        }
        self.session_containing(context)
    }

    /// The session registered by this agent session, if any.
    pub(crate) fn registered_for_agent(&self, context: &Context) -> Result<Option<SessionId>> {
        let Some(agent) = &context.agent_session else {
            return Ok(None);
        };
        validate_agent_session(agent)?;
        let found = self
            .session_ids()?
            .into_iter()
            .find(|id| self.agent_of(id).as_deref() == Some(agent.as_str()));
        Ok(found)
    }

    /// True when `id` may stand for this invocation: it is not registered
    /// to a different agent session.
    fn usable_by(&self, id: &SessionId, context: &Context) -> bool {
        match (&context.agent_session, self.agent_of(id)) {
            (Some(mine), Some(theirs)) => *mine == theirs,
            _ => true,
        }
    }

    /// The session named by the project pointer, if it still exists.
    pub(crate) fn pointed_session(&self, context: &Context) -> Result<Option<SessionId>> {
        Ok(self.pointed(context)?.map(|(id, _)| id))
    }

    fn pointed(&self, context: &Context) -> Result<Option<(SessionId, Manifest)>> {
        let Some(text) = self.platform.read_pointer() else {
            return Ok(None);
        };
        let Ok(id) = SessionId::parse(text.trim()) else {
            return Ok(None);
        };
        let manifest = match self.manifest(&id) {
            Ok(manifest) => manifest,
            // The project's own session, which cannot be used as it is:
            // say so, rather than act for another session or a new one.
            Err(refused) if is_refused(&refused) => return Err(refused),
            Err(_) => return Ok(None),
        };
        Ok(self.usable_by(&id, context).then_some((id, manifest)))
    }

    /// True when this invocation's project owns `id`, whose manifest is
    /// `manifest`: the session was named explicitly, registered by this
    /// agent, is named by the project's pointer, or has this very project
    /// directory as its `projectPath`. A session found only because its
    /// project contains this one belongs to that other project, whose
    /// pointer this invocation cannot clear.
    pub(crate) fn project_owns(
        &self,
        context: &Context,
        id: &SessionId,
        manifest: &Manifest,
    ) -> bool {
        let same_dir = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        context.session.is_some()
            || context
                .agent_session
                .as_deref()
                .is_some_and(|agent| self.agent_of(id).as_deref() == Some(agent))
            || self.platform.read_pointer().as_deref().map(str::trim) == Some(id.as_str())
            || same_dir(&manifest.project_path, &context.project_dir)
    }

    /// The live session whose project contains the project directory
    /// (`--project-dir`, `PROJECT_DIR`, or the working directory): the
    /// most specific project, then the most recent heartbeat.
    fn session_containing(
        &self,
        context: &Context,
    ) -> Result<Option<(SessionId, Option<Manifest>)>> {
        let within = Path::new(&context.project_dir);
        // An invocation without a project directory (hooks that name the
        // agent only) is contained in nothing; nor does a relative
        // `projectPath`, which no registration writes, contain anything.
        if !within.is_absolute() {
            return Ok(None);
        }
        let mut best: Option<Manifest> = None;
        for id in self.session_ids()? {
            let Ok(manifest) = self.manifest(&id) else {
                continue;
            };
            let project = Path::new(&manifest.project_path);
            if !project.is_absolute()
                || !within.starts_with(project)
                || !self.usable_by(&id, context)
                // An away session answers only through its read-only
                // copies; nothing run in its project acts as it.
                || manifest.status == crate::away::AWAY_STATUS
            {
                continue;
            }
            let better = best.as_ref().is_none_or(|b| {
                (manifest.project_path.len(), &manifest.last_heartbeat)
                    > (b.project_path.len(), &b.last_heartbeat)
            });
            if better {
                best = Some(manifest);
            }
        }
        Ok(best.and_then(|m| Some((SessionId::parse(&m.session_id).ok()?, Some(m)))))
    }
}
