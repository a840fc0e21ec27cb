//! Answering an away session's queries: which may be answered, the claim a
//! fork holds, the text it is given, and the reply it sends.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::session::{Marker, answerable};
use super::settings::Settings;
use crate::error::{BridgeError, Result};
use crate::files::{self};
use crate::ids::{MessageId, SessionId};
use crate::mailbox::Pending;
use crate::verbs::Pick;
use crate::wire::{Kind, MAX_MESSAGE_FILE_BYTES, Manifest, Message};
use crate::{
    AwayFailure, AwayJob, AwayOutcome, AwayResult, Bridge, ClaimTicket, Context, Outcome, Platform,
};

/// How many times a query's fork may fail to start or be cut off before
/// the query is held for the session's next live turn. A fork that ran
/// out of time or turns is not tried again.
const MAX_ATTEMPTS: u32 = 2;

/// The longest question text quoted in a held reason.
const MAX_LIMIT_WORDS: usize = 400;

impl<P: Platform> Bridge<P> {
    /// The away session an answerer's invocation names, its manifest and
    /// record; None when it is not away (it came back, or was stopped).
    fn answered_session(&self, context: &Context) -> Result<Option<(SessionId, Manifest, Marker)>> {
        let id = context
            .session
            .as_deref()
            .ok_or(BridgeError::NoIdentity)
            .and_then(SessionId::parse)?;
        let manifest = match self.manifest(&id) {
            Ok(manifest) => manifest,
            Err(BridgeError::NoSuchSession(_)) => return Ok(None),
            Err(err) => return Err(err),
        };
        crate::verbs::refuse_remote(&manifest)?;
        Ok(self.away_marker(&id).map(|marker| (id, manifest, marker)))
    }

    /// `away-take`: waits up to `timeout_seconds` for a query to the away
    /// session that its copy may answer, and claims it. Queries past a
    /// limit are held, and their askers told, on the way.
    pub(crate) fn away_take(
        &self,
        context: &Context,
        timeout_seconds: u32,
        warnings: &mut Vec<String>,
    ) -> Result<Outcome> {
        let Some((id, manifest, marker)) = self.answered_session(context)? else {
            return Ok(Outcome::AwayJob(None));
        };
        let project = manifest.project_path.clone();
        let settings = self.away_settings(&project, warnings);
        if !settings.enabled {
            return Ok(Outcome::AwayJob(None));
        }
        let held_dir = self.layout.session(&id).join("away-held");
        let noted = RefCell::new(Vec::new());
        let select = |p: &Pending, _: &HashMap<String, u64>| -> Pick {
            if !answerable(p.message.kind) || p.message.from == id.as_str() {
                return Pick::Skip;
            }
            if files::stat(&held_dir.join(&p.message.id)).is_ok() {
                return Pick::Skip;
            }
            // Read again for each query: the user may have changed them
            // while this answerer waited for one (`away on --per-hour`,
            // `--allow-other-machines`, `off`).
            let settings = self.away_settings(&project, &mut noted.borrow_mut());
            if !settings.enabled {
                return Pick::Skip;
            }
            if let Some(reason) = self.hold_reason(&settings, &project, &p.message) {
                self.hold(&id, &p.message, &reason, &mut noted.borrow_mut());
                return Pick::Skip;
            }
            Pick::Take
        };
        let deadline = Instant::now() + Duration::from_secs(timeout_seconds.into());
        let taken = self.wait_on_inbox(&id, Some(deadline), warnings, select);
        warnings.extend(noted.take());
        let Some(delivery) = taken? else {
            return Ok(Outcome::AwayJob(None));
        };
        let query = delivery.message;
        let qid = MessageId::parse(&query.id)?;
        // As they are now, not as they were when this answerer began.
        let settings = self.away_settings(&project, &mut Vec::new());
        if let Err(err) = self.ledger_start(&project, &qid) {
            warnings.push(format!("the fork for {qid} was not counted: {err}"));
        }
        Ok(Outcome::AwayJob(Some(AwayJob {
            prompt: prompt(&query),
            ticket: delivery.ticket,
            query,
            agent_session: marker.agent_session,
            working_dir: marker.working_dir,
            transcript: marker.transcript,
            max_turns: settings.max_turns,
            max_seconds: settings.max_seconds,
        })))
    }

    /// Why `query` may not be answered by a fork now, if a limit says so.
    fn hold_reason(&self, settings: &Settings, project: &str, query: &Message) -> Option<String> {
        if !settings.allow_other_machines
            && let Some(machine) = query
                .sender()
                .and_then(|s| self.manifest(&s).ok())
                .and_then(|m| m.machine)
        {
            return Some(format!(
                "it was asked from machine {machine:?}, and this project lets only sessions of \
                 this machine ask its away sessions (`bridge-host run away on \
                 --allow-other-machines` lets others ask)"
            ));
        }
        let spent = self.away_spent(project);
        if spent.last_hour >= settings.per_hour {
            return Some(format!(
                "the limit of {} away answers per hour is reached ({} in the last hour; \
                 `bridge-host run away on --per-hour N` changes it)",
                settings.per_hour, spent.last_hour
            ));
        }
        if spent.last_day >= settings.per_day {
            return Some(format!(
                "the limit of {} away answers per day is reached ({} in the last 24 hours; \
                 `bridge-host run away on --per-day N` changes it)",
                settings.per_day, spent.last_day
            ));
        }
        if spent.dollars_last_day >= settings.spend_per_day {
            return Some(format!(
                "the spend limit of ${:.2} per day is reached (${:.2} in the last 24 hours; \
                 `bridge-host run away on --spend-per-day USD` changes it)",
                settings.spend_per_day, spent.dollars_last_day
            ));
        }
        None
    }

    /// Holds `query` in `owner`'s inbox for its next live session, and
    /// tells its sender why (the `held` step of its receipt).
    fn hold(&self, owner: &SessionId, query: &Message, reason: &str, warnings: &mut Vec<String>) {
        let reason: String = reason.chars().take(MAX_LIMIT_WORDS).collect();
        let dir = self.layout.session(owner).join("away-held");
        let marked = files::ensure_child_dir(&dir)
            .and_then(|()| files::replace(&dir, &query.id, reason.as_bytes()));
        if let Err(err) = marked {
            warnings.push(format!(
                "query {} could not be marked as held: {err}",
                query.id
            ));
        }
        self.receipt_held(query, owner, &reason);
        warnings.push(format!(
            "held {} for the next live session: {reason}",
            query.id
        ));
    }

    /// `away-renew`: the claim of a job still being answered, renewed.
    pub(crate) fn away_renew(&self, context: &Context, ticket: &ClaimTicket) -> Result<Outcome> {
        self.check_ticket(context, ticket)?;
        Ok(Outcome::AwayRenewed(self.renew_claim(ticket)?))
    }

    fn check_ticket(&self, context: &Context, ticket: &ClaimTicket) -> Result<SessionId> {
        let id = context
            .session
            .as_deref()
            .ok_or(BridgeError::NoIdentity)
            .and_then(SessionId::parse)?;
        if ticket.session_id != id.as_str() {
            return Err(BridgeError::InvalidArgument(format!(
                "the claim is on session {}'s inbox, not on {id}'s",
                ticket.session_id
            )));
        }
        Ok(id)
    }

    /// `away-finish`: replies with what the fork said, or gives the query
    /// back (held when it cannot be answered by a copy).
    pub(crate) fn away_finish(
        &self,
        context: &Context,
        result: &AwayResult,
        warnings: &mut Vec<String>,
    ) -> Result<Outcome> {
        let id = self.check_ticket(context, &result.ticket)?;
        let manifest = self.manifest(&id)?;
        let claimed = self.layout.claimed(&id).join(&result.ticket.claim_name);
        let query = files::read_bounded(&claimed, MAX_MESSAGE_FILE_BYTES)
            .map_err(|_| BridgeError::Io {
                path: crate::error::display_path(&claimed),
                reason: format!(
                    "the claim on {} lapsed; the query went back to the inbox and will be \
                     answered again",
                    result.ticket.message_id
                ),
            })
            .and_then(|bytes| {
                Message::parse(&bytes, &result.ticket.message_id, Some(&id))
                    .map_err(|why| BridgeError::corrupt(&claimed, why))
            })?;
        let qid = MessageId::parse(&query.id)?;
        let project = manifest.project_path.clone();
        if let Err(err) = self.ledger_done(&project, &qid, result.cost_usd) {
            warnings.push(format!(
                "the cost of the fork for {qid} was not recorded: {err}"
            ));
        }
        let Some(marker) = self.away_marker(&id) else {
            // The agent came back while its copy answered: the live session
            // answers it.
            self.release_claim(&result.ticket)?;
            return Ok(Outcome::AwayFinished(None));
        };
        let failure = match &result.outcome {
            AwayOutcome::Answered(text) if !text.trim().is_empty() => {
                let content = format!(
                    "{}\n\n{}",
                    provenance(&id, &manifest, &marker, result.last_written_ms),
                    text.trim()
                );
                if crate::verbs::check_content(&content).is_ok() {
                    return self.send_answer(
                        &id,
                        &manifest,
                        &query,
                        content,
                        &result.ticket,
                        warnings,
                    );
                }
                AwayFailure::ClientError(format!(
                    "its answer is {} bytes, over the {} bytes a message may hold",
                    content.len(),
                    crate::wire::MAX_CONTENT_BYTES
                ))
            }
            AwayOutcome::Answered(_) => AwayFailure::ClientError("it answered nothing".into()),
            AwayOutcome::Failed(failure) => failure.clone(),
        };
        self.release_claim(&result.ticket)?;
        if let AwayFailure::TranscriptMissing(path) = &failure {
            warnings.push(format!(
                "session {id} stopped: its transcript {path} is gone, so nothing can answer \
                 from it"
            ));
            self.end_away(&id, warnings)?;
            return Ok(Outcome::AwayFinished(None));
        }
        let _ = self.ledger_failed(&project, &qid);
        let retry = matches!(
            failure,
            AwayFailure::NotStarted(_) | AwayFailure::ClientError(_)
        ) && self.away_failures(&project, &qid) < MAX_ATTEMPTS;
        if retry {
            warnings.push(format!(
                "the fork for {qid} did not answer ({}); it will be tried once more",
                failure_words(&failure)
            ));
        } else {
            let reason = format!(
                "its read-only copy could not answer: {}",
                failure_words(&failure)
            );
            self.hold(&id, &query, &reason, warnings);
        }
        Ok(Outcome::AwayFinished(None))
    }

    fn send_answer(
        &self,
        id: &SessionId,
        manifest: &Manifest,
        query: &Message,
        content: String,
        ticket: &ClaimTicket,
        warnings: &mut Vec<String>,
    ) -> Result<Outcome> {
        let asker = query
            .sender()
            .ok_or_else(|| BridgeError::NoSuchMessage(query.id.clone()))?;
        let qid = MessageId::parse(&query.id)?;
        let mut answer = Message::new(
            id,
            &asker,
            Kind::Response,
            content,
            Some(&qid),
            &manifest.project_name,
        );
        // The answer first, then the claim: a crash between the two answers
        // the query twice rather than never.
        self.deliver(&mut answer, warnings)?;
        self.archive_sent(&answer, manifest, warnings);
        if let Err(err) = self.commit(ticket) {
            warnings.push(format!(
                "{qid} was answered, but its claim was not closed: {err}"
            ));
        }
        Ok(Outcome::AwayFinished(Some(answer)))
    }
}

/// What the fork is given: who asks, what it is, and the question.
fn prompt(query: &Message) -> String {
    format!(
        "A peer session asks this session a question through session-bridge. This session has \
         ended; you are a read-only copy of it, resumed from its transcript to answer. You can \
         read files (Read, Grep, Glob) but cannot run commands or change anything. Answer from \
         what this session knows and what you can read, and reply with the answer alone: it \
         goes back to the asker as you write it.\n\nSession {from} (project {project}) asks:\n\n{content}\n",
        from = query.from,
        project = crate::render::one_line(&query.metadata.from_project),
        content = query.content,
    )
}

/// The reply's first line: where the answer came from.
fn provenance(
    id: &SessionId,
    manifest: &Manifest,
    marker: &Marker,
    last_written_ms: Option<u64>,
) -> String {
    let last = last_written_ms
        .map(|ms| crate::clock::stamp(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)))
        .unwrap_or_else(|| marker.since.clone());
    format!(
        "[Answered by a read-only copy of session {id} ({project}), resumed from its \
         transcript; the session itself is not running. Last active {last}.]",
        project = crate::render::one_line(&manifest.project_name),
    )
}

/// A failed fork, in words.
pub(crate) fn failure_words(failure: &AwayFailure) -> String {
    match failure {
        AwayFailure::TimedOut(seconds) => format!(
            "it ran past {seconds} s and was stopped (`bridge-host run away on --max-seconds N` \
             allows more)"
        ),
        AwayFailure::TurnLimit(turns) => format!(
            "it used all {turns} turns without answering (`bridge-host run away on \
             --max-turns N` allows more)"
        ),
        AwayFailure::TranscriptMissing(path) => format!("its transcript {path} is gone"),
        AwayFailure::NotStarted(why) => format!("the client could not be started: {why}"),
        AwayFailure::ClientError(why) => format!("the client failed: {why}"),
    }
}
