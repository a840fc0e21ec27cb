//! What the agent or script reads: the reference's text formats, or one JSON
//! object per verb. Text meant for a terminal escapes control characters in
//! values it does not own, so a peer's project name cannot forge lines.

use serde_json::{Value, json};

use crate::wire::{Manifest, Message};
use crate::{Delivery, Format, Outcome, Peer, PeerEntry, StatusReport, StopReport};

pub fn render(outcome: &Outcome, format: Format) -> String {
    match format {
        Format::Text => text(outcome),
        Format::Json => {
            let mut out = serde_json::to_string(&to_json(outcome)).expect("JSON values serialize");
            out.push('\n');
            out
        }
    }
}

/// One line of a value: control characters (newlines included) escaped.
fn one_line(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Session(manifest) => format!("{}\n", manifest.session_id),
        Outcome::Connected { peer, .. } => format!(
            "Connected to '{}' ({}) at {}\n",
            one_line(&peer.project_name),
            peer.session_id,
            one_line(&peer.project_path)
        ),
        Outcome::Sent(message) => format!("{}\n", message.id),
        Outcome::Delivered(delivery) => delivered_text(delivery),
        Outcome::Answered(delivery) => response_text(&delivery.message),
        Outcome::Peers(entries) => peers_table(entries),
        Outcome::Status(report) => status_text(report),
        Outcome::Heartbeat(_) => String::new(),
        Outcome::Stopped(report) => stopped_text(report),
    }
}

fn delivered_text(delivery: &Delivery) -> String {
    let m = &delivery.message;
    format!(
        "MESSAGE_ID={}\nFROM_ID={}\nTO_ID={}\nFROM_PROJECT={}\nTYPE={}\nIN_REPLY_TO={}\n---\n{}\n",
        m.id,
        m.from,
        m.to,
        one_line(&m.metadata.from_project),
        m.kind.as_str(),
        m.in_reply_to.as_deref().unwrap_or(""),
        m.content
    )
}

/// The reference's reply format, used by `ask` and `receive`.
fn response_text(message: &Message) -> String {
    format!(
        "Response from {}:\n{}\n",
        one_line(&message.metadata.from_project),
        message.content
    )
}

fn status_word(peer: &Peer) -> String {
    let base = if peer.stale { "stale" } else { "active" };
    if peer.this_session {
        format!("{base} (this session)")
    } else {
        base.to_string()
    }
}

fn peers_table(entries: &[PeerEntry]) -> String {
    let mut rows = vec![[
        "SESSION".to_string(),
        "PROJECT".to_string(),
        "STATUS".to_string(),
        "PATH".to_string(),
    ]];
    for entry in entries {
        rows.push(match entry {
            PeerEntry::Valid(peer) => [
                peer.manifest.session_id.clone(),
                one_line(&peer.manifest.project_name),
                status_word(peer),
                one_line(&peer.manifest.project_path),
            ],
            PeerEntry::Unreadable { session_id, reason } => [
                session_id.clone(),
                "?".to_string(),
                "unreadable".to_string(),
                one_line(reason),
            ],
        });
    }
    let width = |col: usize| {
        rows.iter()
            .map(|r| r[col].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let mut out = String::new();
    for row in &rows {
        for (col, cell) in row.iter().enumerate() {
            if col < 3 {
                out.push_str(cell);
                let pad = widths[col] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    if entries.is_empty() {
        out.push_str("(no sessions; `bridge-host run start` registers one)\n");
    }
    out
}

fn status_text(report: &StatusReport) -> String {
    let s = &report.session;
    let mut out = format!(
        "Session {} ({}) at {}\nLast heartbeat: {}\n",
        s.session_id,
        one_line(&s.project_name),
        one_line(&s.project_path),
        s.last_heartbeat
    );
    if report.connected.is_empty() {
        out.push_str("Connected peers: none\n");
    } else {
        out.push_str("Connected peers:\n");
        for peer in &report.connected {
            out.push_str(&format!(
                "  {} ({}) {}\n",
                peer.manifest.session_id,
                one_line(&peer.manifest.project_name),
                status_word(peer)
            ));
        }
    }
    out.push_str(&format!(
        "Pending messages: {}\nSent messages: {}\n",
        report.pending, report.sent
    ));
    out
}

fn stopped_text(report: &StopReport) -> String {
    let mut out = format!("Session {} stopped.\n", report.session_id);
    if !report.notified.is_empty() {
        out.push_str(&format!("Notified: {}\n", report.notified.join(", ")));
    }
    if !report.pruned.is_empty() {
        out.push_str(&format!(
            "Removed abandoned sessions: {}\n",
            report.pruned.join(", ")
        ));
    }
    out
}

fn manifest_json(manifest: &Manifest) -> Value {
    serde_json::to_value(manifest).expect("manifests serialize")
}

fn message_json(message: &Message) -> Value {
    serde_json::to_value(message).expect("messages serialize")
}

fn peer_json(peer: &Peer) -> Value {
    let mut value = manifest_json(&peer.manifest);
    value["stale"] = json!(peer.stale);
    value["thisSession"] = json!(peer.this_session);
    value
}

fn to_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Session(manifest) | Outcome::Heartbeat(manifest) => manifest_json(manifest),
        Outcome::Connected { peer, stale, ping } => json!({
            "connected": manifest_json(peer),
            "stale": stale,
            "ping": message_json(ping),
        }),
        Outcome::Sent(message) => json!({
            "messageId": message.id,
            "message": message_json(message),
        }),
        Outcome::Delivered(delivery) | Outcome::Answered(delivery) => json!({
            "message": message_json(&delivery.message),
            "answeredPing": delivery.answered_ping.as_ref().map(message_json),
        }),
        Outcome::Peers(entries) => json!({
            "peers": entries.iter().map(|entry| match entry {
                PeerEntry::Valid(peer) => peer_json(peer),
                PeerEntry::Unreadable { session_id, reason } => json!({
                    "sessionId": session_id,
                    "unreadable": reason,
                }),
            }).collect::<Vec<_>>(),
        }),
        Outcome::Status(report) => json!({
            "session": manifest_json(&report.session),
            "connected": report.connected.iter().map(peer_json).collect::<Vec<_>>(),
            "pending": report.pending,
            "sent": report.sent,
        }),
        Outcome::Stopped(report) => json!({
            "sessionId": report.session_id,
            "notified": report.notified,
            "pruned": report.pruned,
        }),
    }
}
