//! Turning the guest's typed errors into messages that say what was wrong
//! and what to do next.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use crate::sandbox::wit::BridgeError;

/// An error as the user sees it.
pub struct Shown {
    pub kind: &'static str,
    pub message: String,
    /// Printed on standard output (the reference's timeout line), not stderr.
    on_stdout: bool,
}

impl Shown {
    pub fn new(err: &BridgeError, verb: &str, bridge_dir: &Path, project_dir: &Path) -> Self {
        let bridge = bridge_dir.display();
        let (kind, message) = match err {
            BridgeError::InvalidSessionId(id) => (
                "invalid-session-id",
                format!(
                    "invalid session ID {id:?}: a session ID is 6 characters of [a-z0-9]; \
                     bridge-host run peers lists them"
                ),
            ),
            BridgeError::InvalidMessageId(id) => (
                "invalid-message-id",
                format!(
                    "invalid message ID {id:?}: a message ID is msg- followed by 12 characters \
                     of [a-z0-9], as printed by send, ask and listen"
                ),
            ),
            BridgeError::InvalidArgument(why) => ("invalid-argument", why.clone()),
            BridgeError::NoSuchSession(id) => (
                "no-such-session",
                format!("no session {id} under {bridge}; bridge-host run peers lists them"),
            ),
            BridgeError::NoIdentity => (
                "no-identity",
                format!(
                    "no bridge session for this project ({}): none given by --session or \
                     BRIDGE_SESSION_ID, none registered for this agent session, no \
                     .claude/bridge-session pointer, no session whose project contains the \
                     working directory. Run: bridge-host run start",
                    project_dir.display()
                ),
            ),
            BridgeError::NoSuchMessage(id) => (
                "no-such-message",
                match verb {
                    "receive" => format!(
                        "no message {id} in this session's outbox; receive waits for replies to \
                         messages this session sent (bridge-host run status shows the session)"
                    ),
                    _ => format!(
                        "no message {id} in this session's inbox; reply answers messages this \
                         session received, by the message ID that listen printed"
                    ),
                },
            ),
            BridgeError::ContentTooLarge(limit) => (
                "content-too-large",
                format!(
                    "content is {} bytes, over the limit of {} bytes; send a summary or split it \
                     into several messages",
                    limit.size, limit.limit
                ),
            ),
            BridgeError::TimedOut(secs) => (
                "timed-out",
                match verb {
                    "listen" => String::new(),
                    "check-inbox" => "No new messages.".to_string(),
                    _ => format!("No response received after {secs}s. The peer may be inactive."),
                },
            ),
            BridgeError::Corrupt(problem) => (
                "corrupt",
                format!(
                    "{bridge}/{} is malformed: {}; if it is this session's manifest, \
                     bridge-host run start rewrites it",
                    problem.path, problem.reason
                ),
            ),
            BridgeError::Io(problem) => (
                "io",
                format!("{bridge}/{}: {}", problem.path, problem.reason),
            ),
            BridgeError::Pointer(why) => ("pointer", format!("project pointer: {why}")),
        };
        let on_stdout = matches!(err, BridgeError::TimedOut(_));
        Shown {
            kind,
            message,
            on_stdout,
        }
    }

    /// Prints the error: one JSON object on stdout with `--json`; otherwise
    /// the reference's timeout line on stdout, anything else on stderr.
    pub fn print(&self, json: bool) -> Result<()> {
        if json {
            let object = format!(
                "{{\"error\":{{\"kind\":{},\"message\":{}}}}}\n",
                json_string(self.kind),
                json_string(&self.message)
            );
            std::io::stdout().write_all(object.as_bytes())?;
        } else if self.message.is_empty() {
        } else if self.on_stdout {
            println!("{}", self.message);
        } else {
            eprintln!("bridge-host: {}", self.message);
        }
        Ok(())
    }
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
