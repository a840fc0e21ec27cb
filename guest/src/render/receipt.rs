//! What `track` prints, and a receipt as JSON.

use serde_json::json;

use super::one_line;
use crate::wire::Kind;
use crate::{Receipt, Stage};

/// `HH:MM:SS` of a wire stamp, with its date when it is not `day`.
fn when(stamp: &str, day: &str) -> String {
    match stamp.split_once('T') {
        Some((date, time)) if date == day => time.trim_end_matches('Z').to_string(),
        Some((date, time)) => format!("{date} {}", time.trim_end_matches('Z')),
        None => one_line(stamp),
    }
}

/// The text of a receipt: the message, its recipient and stage, one line
/// per step, and what to run next.
pub(crate) fn receipt_text(receipt: &Receipt, caller: crate::Caller) -> String {
    let m = &receipt.message;
    let mut out = format!("{} to {}: {}\n", m.id, m.to, receipt.stage.as_str());
    let day = m.timestamp.split_once('T').map_or("", |(date, _)| date);
    for event in &receipt.events {
        out.push_str(&format!(
            "  {}  {}",
            when(&event.at, day),
            event.stage.as_str()
        ));
        if let Some(by) = &event.by {
            out.push_str(&format!(" by {}", one_line(by)));
        }
        if let Some(taker) = &event.taker {
            out.push_str(&format!(" ({})", one_line(taker)));
        }
        if let Some(detail) = &event.detail {
            out.push_str(&format!(": {}", one_line(detail)));
        }
        out.push('\n');
    }
    let next = match receipt.stage {
        Stage::Answered => Some(format!(
            "Answered by {}; {} shows the conversation",
            receipt.reply.as_deref().unwrap_or("a reply"),
            crate::commands::on_message(caller, "thread", &m.id)
        )),
        Stage::Queued | Stage::Relayed | Stage::Taken | Stage::Seen if m.kind == Kind::Query => {
            Some(format!(
                "Not answered yet; to wait for the reply: {}",
                crate::commands::on_message(caller, "receive", &m.id)
            ))
        }
        Stage::Queued | Stage::Relayed | Stage::Taken | Stage::Seen => None,
        Stage::Held => Some(format!(
            "{} is away, and a limit keeps its read-only copy from answering; the question \
             waits in its inbox for when it runs again",
            m.to
        )),
        Stage::SetAside | Stage::RecipientGone => Some(format!(
            "{} will not take it; {} shows who is there now",
            m.to,
            crate::commands::plain(caller, "peers")
        )),
    };
    if let Some(next) = next {
        out.push_str(&next);
        out.push('\n');
    }
    out
}

/// The JSON of a receipt.
pub(crate) fn receipt_json(receipt: &Receipt) -> serde_json::Value {
    json!({
        "messageId": receipt.message.id,
        "to": receipt.message.to,
        "stage": receipt.stage.as_str(),
        "events": receipt.events.iter().map(|e| json!({
            "stage": e.stage.as_str(),
            "at": e.at,
            "by": e.by,
            "taker": e.taker,
            "detail": e.detail,
        })).collect::<Vec<_>>(),
        "reply": receipt.reply,
    })
}
