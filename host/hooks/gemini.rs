//! Gemini CLI's AfterAgent hook: `bridge-host hook gemini-after-agent`.
//!
//! Gemini CLI runs it at the end of every turn, with the hook's JSON on
//! standard input. When a message waits for this Gemini session's bridge
//! session, the hook prints `{"decision": "block", "reason": <text>}`, and
//! Gemini CLI sends `<text>` to the model as the next prompt of the same
//! turn (checked with 0.61.0, headless and interactive). The text is the
//! guest's rendering for [`wit::Caller::ToolWake`]: it says the message is
//! a peer's and that the answer goes through the bridge's MCP `reply` tool.
//! When nothing is pending the hook prints nothing, and the turn ends.
//!
//! Which bridge session: Gemini CLI starts its MCP servers and its hooks as
//! children of one process, and tells neither its session ID. The MCP
//! server names its agent session after that process
//! ([`ProcessId::gemini_agent_session`]), and so does this hook.
//!
//! Exit status: Gemini CLI parses standard output when a hook exits 0, and
//! takes standard error as a warning when it exits 1. Any other status
//! (2, or a panic's 101) would make standard error the model's next
//! prompt, so every failure here exits 1.

use std::io::{self, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{confirm_seen, own_session};
use crate::invoke::{Config, Invocation, Place, print_warnings};
use crate::process::ProcessId;
use crate::sandbox::wit;

/// The largest hook input read. Gemini CLI puts the turn's prompt and the
/// model's whole final text in it.
const MAX_INPUT_BYTES: u64 = 32 << 20;
/// The exit status Gemini CLI shows as a warning, and the turn ends.
const FAILED_QUIETLY: u8 = 1;

/// What the hook uses of Gemini CLI's AfterAgent input.
#[derive(Debug, PartialEq)]
struct AfterAgentInput {
    /// The session's chat recording (`transcript_path`), where the guest
    /// looks for the messages it handed over, to confirm they were seen.
    transcript: Option<PathBuf>,
}

impl AfterAgentInput {
    fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() as u64 > MAX_INPUT_BYTES {
            bail!("the hook input is over {MAX_INPUT_BYTES} bytes");
        }
        let value: Value = serde_json::from_slice(bytes).context(
            "the hook input on standard input is not JSON; Gemini CLI passes the hook's JSON \
             there (run this only as Gemini CLI's AfterAgent hook)",
        )?;
        let Value::Object(fields) = value else {
            bail!("the hook input is not a JSON object");
        };
        match fields.get("hook_event_name") {
            Some(Value::String(event)) if event == "AfterAgent" => {}
            Some(other) => bail!(
                "Gemini CLI ran this hook for {other}; it belongs under \"AfterAgent\" in \
                 settings.json, and only there"
            ),
            None => bail!(
                "the hook input has no hook_event_name; is this Gemini CLI's AfterAgent hook?"
            ),
        }
        let transcript = match fields.get("transcript_path") {
            None | Some(Value::Null) => None,
            Some(Value::String(path)) if path.is_empty() => None,
            Some(Value::String(path)) => Some(PathBuf::from(path)).filter(|p| p.is_absolute()),
            Some(other) => bail!("the hook input's transcript_path {other} is not a path"),
        };
        Ok(AfterAgentInput { transcript })
    }

    fn read(stdin: impl Read) -> Result<Self> {
        let mut bytes = Vec::new();
        stdin
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes)
            .context("cannot read the hook input from standard input")?;
        Self::parse(&bytes)
    }
}

/// Runs the hook; every failure is said on standard error and exits 1, so
/// that it never becomes the model's next prompt.
pub(super) fn after_agent(global: &Config) -> ExitCode {
    let ran = catch_unwind(AssertUnwindSafe(|| {
        let input = AfterAgentInput::read(io::stdin().lock())?;
        hand_over_next(global, &input, &mut io::stdout().lock())
    }));
    match ran {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(err)) => {
            eprintln!("bridge-host hook gemini-after-agent: {err:#}");
            ExitCode::from(FAILED_QUIETLY)
        }
        // The panic's message is on standard error already.
        Err(_) => ExitCode::from(FAILED_QUIETLY),
    }
}

/// Takes the next message for this Gemini session that gives the model
/// something to do, and writes it to `out` in Gemini CLI's envelope; the
/// claim is committed only once it is written. Writes nothing when no such
/// message is pending.
fn hand_over_next(global: &Config, input: &AfterAgentInput, out: &mut dyn Write) -> Result<()> {
    let gemini = ProcessId::claude().with_context(|| {
        format!(
            "cannot tell which Gemini CLI process ran this hook ({})",
            ProcessId::unsupported().unwrap_or("its parent process could not be read")
        )
    })?;
    let place = Place {
        working_dir: PathBuf::new(),
        project_dir: PathBuf::new(),
        agent_session: Some(gemini.gemini_agent_session()),
        caller: wit::Caller::ToolWake,
        agent_process: None,
        client: None,
    };
    let mut invocation = Invocation::open(global, place)?;
    if !invocation.guest_has_tool_wakes_and_away() {
        bail!(
            "the guest speaks protocol 0.1.0, which cannot word a message for an agent that \
             answers with MCP tools; run the embedded guest"
        );
    }
    let Some(id) = own_session(&mut invocation)? else {
        bail!(
            "this Gemini CLI session has no bridge session: the bridge's MCP server \
             (`bridge-host mcp` in settings.json's mcpServers) is not configured, has not \
             connected, or has stopped; `gemini mcp list` shows it"
        );
    };
    invocation.context.session = Some(id);
    confirm_seen(&mut invocation, input.transcript.as_deref());
    loop {
        let report = match invocation.run(&wit::Verb::CheckInbox)? {
            Ok(report) => report,
            Err(failure) => bail!("{}", Invocation::failure_text(&failure)),
        };
        print_warnings(&report.warnings);
        match &report.outcome {
            wit::Outcome::NothingPending => return Ok(()),
            // A ping answered for the model: filed, and the next looked at.
            wit::Outcome::Delivered(d) if d.silent => {
                invocation.hand_over(&report, "check-inbox", &mut io::sink())?;
            }
            wit::Outcome::Delivered(_) => {
                let wrapped = wit::Report {
                    rendered: envelope(&report.rendered),
                    ..report
                };
                return invocation.hand_over(&wrapped, "check-inbox", out);
            }
            _ => bail!("the guest answered check-inbox with something other than a delivery"),
        }
    }
}

/// Gemini CLI's AfterAgent output that sends `text` to the model as the
/// next prompt: a "block" decision, whose reason is the prompt.
fn envelope(text: &str) -> String {
    let mut json = serde_json::json!({ "decision": "block", "reason": text }).to_string();
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AfterAgentInput> {
        AfterAgentInput::parse(text.as_bytes())
    }

    fn error(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn gemini_clis_input_gives_the_transcript() {
        // As Gemini CLI 0.61.0 sent it, headless.
        let input = r#"{"session_id":"83e688e0-ce73-4436-832f-dac72f303d86",
            "transcript_path":"/h/.gemini/tmp/proj/chats/session-2026-12-06T21-58-83e688e0.jsonl",
            "cwd":"/tmp/proj","hook_event_name":"AfterAgent",
            "timestamp":"2026-12-06T21:58:41.335Z","prompt":"say hello",
            "prompt_response":"hello","stop_hook_active":false}"#;
        assert_eq!(
            parse(input).unwrap(),
            AfterAgentInput {
                transcript: Some(PathBuf::from(
                    "/h/.gemini/tmp/proj/chats/session-2026-12-06T21-58-83e688e0.jsonl"
                )),
            }
        );
    }

    #[test]
    fn a_missing_empty_or_relative_transcript_is_none() {
        for input in [
            r#"{"hook_event_name":"AfterAgent"}"#,
            r#"{"hook_event_name":"AfterAgent","transcript_path":""}"#,
            r#"{"hook_event_name":"AfterAgent","transcript_path":null}"#,
            r#"{"hook_event_name":"AfterAgent","transcript_path":"chats/s.jsonl"}"#,
        ] {
            assert_eq!(parse(input).unwrap().transcript, None, "{input}");
        }
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        assert!(error("not json").contains("is not JSON"));
        assert!(error("").contains("is not JSON"));
        assert!(error("[1]").contains("not a JSON object"));
        assert!(error(r#"{"session_id":"x"}"#).contains("no hook_event_name"));
        assert!(
            error(r#"{"hook_event_name":"BeforeAgent"}"#)
                .contains("ran this hook for \"BeforeAgent\"")
        );
        assert!(
            error(r#"{"hook_event_name":"AfterAgent","transcript_path":7}"#)
                .contains("transcript_path 7 is not a path")
        );
        let huge = vec![b' '; MAX_INPUT_BYTES as usize + 1];
        assert!(format!("{:#}", AfterAgentInput::parse(&huge).unwrap_err()).contains("is over"));
    }

    #[test]
    fn the_envelope_carries_the_text_unchanged_as_the_reason() {
        let text = "Query from a1b2c3 \"lib\".\n<peer-message>\u{1b}\"}\n";
        let json: Value = serde_json::from_str(&envelope(text)).unwrap();
        assert_eq!(json["decision"], "block");
        assert_eq!(json["reason"], text);
        assert_eq!(json.as_object().unwrap().len(), 2);
    }
}
