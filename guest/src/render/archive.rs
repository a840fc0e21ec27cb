//! What `history`, `thread` and `cleanup` print (see `crate::archive`).

use serde_json::{Value, json};

use super::one_line;
use crate::wire::{Message, Status};
use crate::{CleanupReport, HistoryEntry, clock};

/// How many characters of content a history line shows.
const SUMMARY_CHARS: usize = 72;

/// The first line of `content`, at most [`SUMMARY_CHARS`] characters,
/// with `…` when something was left out.
fn summary(content: &str) -> String {
    let first = content.split('\n').next().unwrap_or("");
    let mut short: String = first.chars().take(SUMMARY_CHARS).collect();
    if short.len() < content.trim_end().len() {
        short.push('…');
    }
    one_line(&short)
}

/// `2026-11-23 10:06:00` from a wire stamp; anything else escaped.
fn when(stamp: &str) -> String {
    if clock::parse_stamp(stamp).is_some() {
        stamp
            .replacen('T', " ", 1)
            .trim_end_matches('Z')
            .to_string()
    } else {
        one_line(stamp)
    }
}

pub(crate) fn history_text(entries: &[HistoryEntry]) -> String {
    if entries.is_empty() {
        return "No messages in this project's history.\n".to_string();
    }
    let mut out = String::new();
    for entry in entries {
        let m = &entry.message;
        let (arrow, peer) = if entry.outgoing {
            ("→", &m.to)
        } else {
            ("←", &m.from)
        };
        let never = if m.status == Status::Pending {
            " (never taken: its session ended first)"
        } else {
            ""
        };
        out.push_str(&format!(
            "{}  {arrow} {}  {:<8}  {}  {}{never}\n",
            when(&m.timestamp),
            one_line(peer),
            m.kind.as_str(),
            one_line(&m.id),
            summary(&m.content),
        ));
    }
    out.push_str("The whole conversation of one: bridge-host run thread <message-id>\n");
    out
}

pub(crate) fn history_json(entries: &[HistoryEntry]) -> serde_json::Value {
    json!({
        "messages": entries.iter().map(|entry| {
            let mut value = crate::render::message_json(&entry.message);
            value["direction"] = json!(if entry.outgoing { "out" } else { "in" });
            value
        }).collect::<Vec<Value>>(),
    })
}

/// Each message: a header line, then its content with every line behind
/// `  | `, so nothing a peer wrote can pass for a header.
pub(crate) fn thread_text(messages: &[Message]) -> String {
    let mut out = String::new();
    for m in messages {
        let answers = m
            .in_reply_to
            .as_deref()
            .map_or(String::new(), |r| format!(", answering {}", one_line(r)));
        out.push_str(&format!(
            "{}  {} → {}  {} {}{answers}\n",
            when(&m.timestamp),
            one_line(&m.from),
            one_line(&m.to),
            m.kind.as_str(),
            one_line(&m.id),
        ));
        for line in m.content.split('\n') {
            out.push_str(&format!("  | {}\n", one_line(line)));
        }
    }
    out
}

pub(crate) fn thread_json(messages: &[Message]) -> serde_json::Value {
    json!({ "messages": messages.iter().map(crate::render::message_json).collect::<Vec<Value>>() })
}

pub(crate) fn cleanup_text(report: &CleanupReport) -> String {
    let would = |done: &str, planned: &str| {
        if report.dry_run {
            planned.to_string()
        } else {
            done.to_string()
        }
    };
    let mut out = String::new();
    if !report.sessions_removed.is_empty() {
        out.push_str(&format!(
            "{} {} abandoned session(s): {}\n",
            would("Removed", "Would remove"),
            report.sessions_removed.len(),
            report.sessions_removed.join(", ")
        ));
    }
    if report.messages_archived > 0 {
        out.push_str(&format!(
            "{} {} message(s) from live mailboxes into the archive (bridge-host run history lists them)\n",
            would("Archived", "Would archive"),
            report.messages_archived
        ));
    }
    if report.files_removed > 0 {
        out.push_str(&format!(
            "{} {} old set-aside or temporary file(s)\n",
            would("Removed", "Would remove"),
            report.files_removed
        ));
    }
    if out.is_empty() {
        out.push_str(if report.dry_run {
            "Nothing to clean; nothing would change.\n"
        } else {
            "Nothing to clean.\n"
        });
    }
    if !report.kept.is_empty() {
        out.push_str("Left alone:\n");
        for kept in &report.kept {
            out.push_str(&format!("  {}\n", one_line(kept)));
        }
    }
    out
}

pub(crate) fn cleanup_json(report: &CleanupReport) -> serde_json::Value {
    json!({
        "dryRun": report.dry_run,
        "sessionsRemoved": report.sessions_removed,
        "messagesArchived": report.messages_archived,
        "filesRemoved": report.files_removed,
        "kept": report.kept,
    })
}
