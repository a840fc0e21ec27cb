//! A policy that changes only presentation: every message handed to the
//! agent (`listen`, `ask`, `receive`) becomes one line of JSON, and `send` /
//! `reply` print a one-line JSON receipt, and a failure one line
//! `{"error": ..., "verb": ...}`. Scripts read it with one
//! `json.loads` per line, and agents other than Claude get no
//! shell-variable framing to misread. Everything else — delivery, claiming,
//! identity — is the protocol's, unchanged.

use serde_json::json;
use session_bridge_guest::wire::Message;
use session_bridge_guest::{Format, GuestPolicy, Outcome, Policy, Result, Settings};

/// Presents messages as JSON lines.
pub struct JsonLines;

fn line(message: &Message) -> String {
    let value = json!({
        "id": message.id,
        "from": message.from,
        "fromProject": message.metadata.from_project,
        "to": message.to,
        "type": message.kind.as_str(),
        "inReplyTo": message.in_reply_to,
        "content": message.content,
    });
    format!("{value}\n")
}

impl Policy for JsonLines {
    fn render(&self, outcome: &Outcome, format: Format) -> Option<String> {
        if format == Format::Json {
            return None; // --json already asks for the standard object.
        }
        match outcome {
            Outcome::Delivered(delivery) | Outcome::Answered(delivery) => {
                Some(line(&delivery.message))
            }
            Outcome::Sent(sent) => Some(format!("{}\n", json!({ "sent": sent.message.id }))),
            _ => None,
        }
    }

    fn render_failure(
        &self,
        error: &session_bridge_guest::BridgeError,
        verb: &str,
        format: Format,
    ) -> Option<String> {
        if format == Format::Json {
            return None;
        }
        Some(format!(
            "{}\n",
            json!({ "error": error.to_string(), "verb": verb })
        ))
    }
}

impl GuestPolicy for JsonLines {
    const NAME: &'static str = "json-lines";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn configure(settings: &Settings) -> Result<Self> {
        match settings.first() {
            None => Ok(JsonLines),
            Some((key, _)) => Err(session_bridge_guest::BridgeError::InvalidArgument(format!(
                "json-lines takes no settings, but {key:?} was given"
            ))),
        }
    }
}

#[cfg(target_family = "wasm")]
session_bridge_guest::export_policy!(JsonLines);
