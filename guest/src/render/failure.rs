//! What a failed verb prints: what was wrong and what to do next, in text
//! or as one JSON object. The host prints it as given.

use serde_json::json;

use crate::error::BridgeError;
use crate::{Caller, Context, Format, Receipt, Stage};

/// The text for `error` from `verb`, and whether it goes to standard output
/// (a timeout's line, as the reference prints it, and every JSON object).
pub(crate) fn render(error: &BridgeError, verb: &str, context: &Context) -> (String, bool) {
    let message = message(error, verb, context);
    match context.format {
        Format::Json => {
            let mut object = json!({ "error": { "kind": kind(error), "message": message } });
            if let BridgeError::NotAnswered { receipt, .. } = error {
                object["receipt"] = super::receipt::receipt_json(receipt);
            }
            let mut out = serde_json::to_string(&object).expect("JSON values serialize");
            out.push('\n');
            (out, true)
        }
        Format::Text if message.is_empty() => (String::new(), false),
        Format::Text => {
            let to_stdout = matches!(
                error,
                BridgeError::TimedOut(_) | BridgeError::NotAnswered { .. }
            );
            let text = if to_stdout {
                format!("{message}\n")
            } else {
                format!("{PROGRAM}{message}\n")
            };
            (text, to_stdout)
        }
    }
}

/// What a failure's text on standard error begins with: the program's name.
const PROGRAM: &str = "bridge-host: ";

/// A rendered failure as a hook, an MCP tool or the relay's log quotes it:
/// without the program's name and the final line break. Used by the
/// component layer only.
#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
pub(crate) fn quoted(rendered: &str) -> String {
    let text = rendered.trim_end();
    text.strip_prefix(PROGRAM).unwrap_or(text).to_string()
}

/// The withheld sessions a failure is about: its text says why each was
/// refused. Used by the component layer only.
#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
pub(crate) fn refused_sessions(error: &BridgeError, context: &Context) -> Vec<String> {
    match error {
        BridgeError::Corrupt { path, .. } | BridgeError::Io { path, .. } => withheld(path, context)
            .map(|(name, _)| name.clone())
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// The error's kind, for JSON.
fn kind(error: &BridgeError) -> &'static str {
    match error {
        BridgeError::InvalidSessionId(_) => "invalid-session-id",
        BridgeError::InvalidMessageId(_) => "invalid-message-id",
        BridgeError::InvalidArgument(_) => "invalid-argument",
        BridgeError::NoSuchSession(_) => "no-such-session",
        BridgeError::NoIdentity => "no-identity",
        BridgeError::NoSuchMessage(_) => "no-such-message",
        BridgeError::ContentTooLarge { .. } => "content-too-large",
        BridgeError::TimedOut(_) | BridgeError::NotAnswered { .. } => "timed-out",
        BridgeError::Corrupt { .. } => "corrupt",
        BridgeError::Io { .. } => "io",
        BridgeError::Pointer(_) => "pointer",
        BridgeError::Held(_) => "held",
    }
}

/// The session directory a file error is about, when the host withholds
/// it: its name and what the host found wrong.
fn withheld<'a>(path: &str, context: &'a Context) -> Option<&'a (String, String)> {
    let mut parts = path.split('/').filter(|p| !p.is_empty() && *p != ".");
    if parts.next() != Some("sessions") {
        return None;
    }
    let name = parts.next()?;
    context.withheld.iter().find(|(id, _)| id == name)
}

fn message(error: &BridgeError, verb: &str, context: &Context) -> String {
    let bridge = if context.bridge_dir.is_empty() {
        "the bridge directory"
    } else {
        context.bridge_dir.as_str()
    };
    match error {
        BridgeError::InvalidSessionId(id) => format!(
            "invalid session ID {id:?}: a session ID is 6 characters of [a-z0-9]; \
             {} lists them",
            crate::commands::plain(context.caller, "peers")
        ),
        BridgeError::InvalidMessageId(id) => format!(
            "invalid message ID {id:?}: a message ID is msg- followed by 12 characters of \
             [a-z0-9], as printed by send, ask and listen"
        ),
        BridgeError::InvalidArgument(why) => why.clone(),
        BridgeError::Held(held) => format!(
            "session {} is away: its agent stopped, and a read-only copy of its transcript \
             answers queries, but not this one: {}. The question stays queued in its inbox for \
             when it runs again; {} shows where it stands",
            held.session_id,
            held.reason,
            crate::commands::on_message(context.caller, "track", &held.message_id)
        ),
        BridgeError::NoSuchSession(id) => {
            format!(
                "no session {id} under {bridge}; {} lists them",
                crate::commands::plain(context.caller, "peers")
            )
        }
        BridgeError::NoIdentity => format!(
            "no bridge session for this project ({}): none given by --session or \
             BRIDGE_SESSION_ID, none registered for this agent session, no \
             .claude/bridge-session pointer, no session whose project contains the working \
             directory. Run: bridge-host run start",
            context.project_dir
        ),
        BridgeError::NoSuchMessage(id) => match verb {
            "receive" => format!(
                "no message {id} in this session's outbox; receive waits for replies to \
                 messages this session sent ({} lists them)",
                crate::commands::plain(context.caller, "history")
            ),
            "track" => format!(
                "this session never sent {id}; track follows messages this session sent \
                 ({} lists what this project exchanged)",
                crate::commands::plain(context.caller, "history")
            ),
            "thread" | "ask" => format!(
                "this session never sent or received {id}; {} lists the messages this \
                 project exchanged",
                crate::commands::plain(context.caller, "history")
            ),
            _ => format!(
                "no message {id} in this session's inbox; reply answers messages this session \
                 received, by the message ID that listen printed"
            ),
        },
        BridgeError::ContentTooLarge { size, limit } => format!(
            "content is {size} bytes, over the limit of {limit} bytes; send a summary or split \
             it into several messages"
        ),
        BridgeError::TimedOut(secs) => match verb {
            "listen" => String::new(),
            _ => format!("No response received after {secs}s. The peer may be inactive."),
        },
        BridgeError::NotAnswered { seconds, receipt } => {
            not_answered(*seconds, receipt, context.caller)
        }
        BridgeError::Corrupt { path, reason } => match withheld(path, context) {
            Some((name, problem)) => refused(name, problem),
            None => format!(
                "{bridge}/{path} is malformed: {reason}; if it is this session's manifest, \
                 bridge-host run start rewrites it"
            ),
        },
        BridgeError::Io { path, reason } => match withheld(path, context) {
            Some((name, problem)) => refused(name, problem),
            None => format!("{bridge}/{path}: {reason}"),
        },
        BridgeError::Pointer(why) => format!("project pointer: {why}"),
    }
}

/// Why a session directory is not used, and how to fix it.
pub(crate) fn refused(name: &str, problem: &str) -> String {
    format!("session {name} is refused as unsafe: {problem}")
}

/// The clock time of a stamp (`HH:MM:SS`), or the stamp itself.
fn clock_time(stamp: &str) -> &str {
    stamp
        .split_once('T')
        .map_or(stamp, |(_, time)| time.trim_end_matches('Z'))
}

/// An `ask` or `receive` that ran out: how far the query got, and the
/// command that keeps waiting.
fn not_answered(seconds: u32, receipt: &Receipt, caller: Caller) -> String {
    let id = &receipt.message.id;
    let to = &receipt.message.to;
    let step = |stage: Stage| receipt.events.iter().rev().find(|e| e.stage == stage);
    let got = match receipt.stage {
        Stage::Queued => match receipt.events.first().and_then(|e| e.detail.as_deref()) {
            Some(machine) => format!("it is queued {machine}, not carried yet"),
            None => format!("it is queued in {to}'s inbox, not taken yet"),
        },
        Stage::Held => format!(
            "{to} is away and held it for its next live session: {}",
            step(Stage::Held)
                .and_then(|e| e.detail.as_deref())
                .unwrap_or("a limit holds it")
        ),
        Stage::Relayed => format!(
            "it is {}, not taken yet",
            step(Stage::Relayed)
                .and_then(|e| e.detail.as_deref())
                .unwrap_or("held by the relay server")
        ),
        Stage::Taken | Stage::Seen => {
            let taken = step(Stage::Taken);
            let at = taken.map_or("", |e| clock_time(&e.at));
            let by = taken.and_then(|e| e.by.as_deref()).unwrap_or(to);
            let seen = if receipt.stage == Stage::Seen {
                ", seen by its agent"
            } else {
                ""
            };
            format!("taken by {by} at {at}{seen}, not answered yet")
        }
        Stage::Answered => format!(
            "answered by {}, but the reply was taken elsewhere",
            receipt.reply.as_deref().unwrap_or("a reply")
        ),
        Stage::SetAside => format!(
            "{to} set it aside: {}",
            step(Stage::SetAside)
                .and_then(|e| e.detail.as_deref())
                .unwrap_or("no reason recorded")
        ),
        Stage::RecipientGone => format!("{to}'s session ended before taking it"),
    };
    let next = match receipt.stage {
        Stage::SetAside | Stage::RecipientGone => {
            format!(
                "{} shows who is there now",
                crate::commands::plain(caller, "peers")
            )
        }
        _ => format!(
            "to keep waiting: {}",
            crate::commands::on_message(caller, "receive", id)
        ),
    };
    format!("No response to {id} after {seconds}s: {got}; {next}")
}
