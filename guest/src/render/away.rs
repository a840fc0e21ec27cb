//! Away answers in words: `away on|off|status`, and what the answerer's
//! verbs report.

use serde_json::{Value, json};

use super::{message_json, one_line};
use crate::{AwayJob, AwayStatus};

pub(super) fn status_text(status: &AwayStatus) -> String {
    let mut out = String::new();
    let project = one_line(&status.project_dir);
    if status.enabled {
        out.push_str(&format!(
            "Away answers are on for {project}: when its Claude Code session ends, the session \
             stays registered as away, and a read-only copy of its transcript answers queries.\n"
        ));
    } else {
        out.push_str(&format!(
            "Away answers are off for {project}: a session that ends stops. \
             `bridge-host run away on` turns them on.\n"
        ));
    }
    out.push_str(&format!(
        "Limits: {} turns and {} s per answer; {} answers per hour, {} per day; ${:.2} per day; \
         asked by {}.\n",
        status.max_turns,
        status.max_seconds,
        status.per_hour,
        status.per_day,
        status.spend_per_day,
        if status.allow_other_machines {
            "sessions of any machine"
        } else {
            "sessions of this machine only"
        }
    ));
    out.push_str(&format!(
        "Used: {} answers in the last hour, {} in the last 24 hours, ${:.2} in the last 24 hours.\n",
        status.answers_last_hour, status.answers_last_day, status.spent_last_day
    ));
    for id in &status.stopped {
        out.push_str(&format!("Stopped away session {id}.\n"));
    }
    if status.sessions.is_empty() {
        out.push_str("No away sessions.\n");
    }
    for s in &status.sessions {
        out.push_str(&format!(
            "Away session {id} since {since}: Claude Code session {agent}, in {dir}; {pending} \
             queries waiting{held}.\n",
            id = s.session_id,
            since = s.since,
            agent = one_line(&s.agent_session),
            dir = one_line(&s.working_dir),
            pending = s.pending,
            held = if s.held > 0 {
                format!(" ({} held for its next live session)", s.held)
            } else {
                String::new()
            }
        ));
    }
    out
}

pub(super) fn status_json(status: &AwayStatus) -> Value {
    json!({
        "projectDir": status.project_dir,
        "enabled": status.enabled,
        "maxTurns": status.max_turns,
        "maxSeconds": status.max_seconds,
        "perHour": status.per_hour,
        "perDay": status.per_day,
        "spendPerDay": status.spend_per_day,
        "allowOtherMachines": status.allow_other_machines,
        "answersLastHour": status.answers_last_hour,
        "answersLastDay": status.answers_last_day,
        "spentLastDay": status.spent_last_day,
        "sessions": status.sessions.iter().map(|s| json!({
            "sessionId": s.session_id,
            "agentSession": s.agent_session,
            "workingDir": s.working_dir,
            "transcript": s.transcript,
            "since": s.since,
            "pending": s.pending,
            "held": s.held,
        })).collect::<Vec<_>>(),
        "stopped": status.stopped,
    })
}

pub(super) fn job_text(job: Option<&AwayJob>) -> String {
    match job {
        Some(job) => format!("{}\n", job.query.id),
        None => String::new(),
    }
}

pub(super) fn job_json(job: Option<&AwayJob>) -> Value {
    match job {
        Some(job) => json!({
            "query": message_json(&job.query),
            "agentSession": job.agent_session,
            "workingDir": job.working_dir,
            "maxTurns": job.max_turns,
            "maxSeconds": job.max_seconds,
        }),
        None => json!({ "query": null }),
    }
}
