//! The plugin's PreToolUse hook: approves a Bash command only when it is
//! one `bridge-host run <verb> …` call whose words the shell takes
//! literally, so a session woken by a peer can answer with nobody at the
//! terminal, and nothing else runs unasked.
//!
//! A command is approved when all of these hold:
//! - outside quotes it has only letters, digits and `-_./:,+`, spaces and
//!   backslash escapes: no `;`, `&`, `|`, `<`, `>`, `(`, `$`, backticks,
//!   globs, `~`, `#`, `=`, `{` or newlines, so the shell sees one simple
//!   command and expands nothing;
//! - single-quoted text is anything but `'`; double-quoted text has no `$`,
//!   backtick, `\` or `!`, the characters a shell expands there;
//! - its words, split by a shell-words parser, are exactly `bridge-host`,
//!   `run`, one verb the verb table marks as answering a peer
//!   ([`crate::verbs::answer_verbs`]), then arguments, of which the only
//!   options are `--json`, `--escapes`, `--timeout <digits>` and
//!   `--in-reply-to <id>`
//!   (so no `--bridge-dir`, `--session`, `--guest` or `--cache-dir`);
//! - it may end in one here-document with a quoted delimiter
//!   (`… - <<'EOF'`, the body, `EOF`), whose body the shell passes as it
//!   is; nothing may follow the closing line, and the operator stands
//!   alone (`3<<'EOF'` would feed another file descriptor);
//! - no option value starts with `-`, so none can pass for an option.
//!
//! The bridge's own MCP tools (the plugin's `bridge` server, named
//! `mcp__plugin_session-bridge_bridge__<tool>` by Claude Code) are approved
//! as they are: their arguments are structured, so there is no command
//! line to smuggle anything into, and each tool runs one verb.
//!
//! Anything else gets no answer from this hook, and Claude Code asks the
//! user as usual.

use std::io::{self, Read, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::verbs;

/// The largest hook input read; a Bash call with a long answer is well under.
const MAX_INPUT_BYTES: u64 = 8 << 20;

/// Reads the PreToolUse JSON on standard input and prints Claude Code's
/// "allow" decision when the command qualifies. Never fails the tool call:
/// on any doubt it prints nothing and exits 0.
pub fn run() -> Result<ExitCode> {
    let mut bytes = Vec::new();
    io::stdin()
        .lock()
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .context("cannot read the hook input")?;
    let Ok(input) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(ExitCode::SUCCESS);
    };
    let tool = input.get("tool_name").and_then(Value::as_str);
    let reason = match (
        tool,
        input.pointer("/tool_input/command").and_then(Value::as_str),
    ) {
        (Some("Bash"), Some(command)) => approved(command).map(|verb| {
            format!("session-bridge: one `bridge-host run {verb}` call with literal arguments")
        }),
        (Some(tool), _) => approved_tool(tool)
            .map(|name| format!("session-bridge: the bridge's own MCP tool `{name}`")),
        _ => None,
    };
    if let Some(reason) = reason {
        let decision = json!({
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "allow",
                "permissionDecisionReason": reason,
            }
        });
        let mut out = io::stdout().lock();
        writeln!(out, "{decision}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// How Claude Code names the tools of the plugin's MCP server `bridge`
/// (`.mcp.json`): `mcp__plugin_<plugin>_<server>__<tool>`.
pub const MCP_TOOL_PREFIX: &str = "mcp__plugin_session-bridge_bridge__";

/// The bridge tool `tool_name` calls, when it is one of the plugin's own.
pub fn approved_tool(tool_name: &str) -> Option<&'static str> {
    let tool = tool_name.strip_prefix(MCP_TOOL_PREFIX)?;
    verbs::answer_tools().find(|t| *t == tool)
}

/// The verb of `command` when the hook approves it, else None.
pub fn approved(command: &str) -> Option<&'static str> {
    let (line, heredoc) = split_heredoc(command)?;
    if !literal_only(line) {
        return None;
    }
    let words = shell_words::split(line).ok()?;
    let [program, run, verb, args @ ..] = words.as_slice() else {
        return None;
    };
    if program != "bridge-host" || run != "run" {
        return None;
    }
    let verb = verbs::answer_verbs().find(|v| v == verb)?;
    let mut stdin_content = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-" => stdin_content = true,
            "--json" | "--escapes" => {}
            "--timeout" => {
                let value = args.next()?;
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
            }
            // A value clap could read as an option is refused here, not
            // left to clap.
            "--in-reply-to" if args.next()?.starts_with('-') => return None,
            "--in-reply-to" => {}
            // Any other option, or content that clap could read as one.
            other if other.starts_with('-') => return None,
            _ => {}
        }
    }
    // A here-document feeds the content that `-` names, and nothing else.
    if heredoc && !stdin_content {
        return None;
    }
    Some(verb)
}

/// Splits off a trailing here-document with a single-quoted delimiter:
/// `<line> <<'DELIM'`, a newline, the body, and a last line that is exactly
/// `DELIM`. Returns the command line and whether there was one. None when
/// the text has a here-document of any other form, or anything after it.
fn split_heredoc(command: &str) -> Option<(&str, bool)> {
    let command = command.strip_suffix('\n').unwrap_or(command);
    let Some((first, rest)) = command.split_once('\n') else {
        return Some((command, false));
    };
    // A newline inside quotes on a one-line command is content; leave it to
    // the scanner, which knows quotes.
    let Some(op) = first.rfind("<<'") else {
        return Some((command, false));
    };
    // `3<<'EOF'` feeds file descriptor 3, not standard input: what would
    // run is not what was read. The operator must stand alone as a word.
    if !first[..op].ends_with([' ', '\t']) {
        return None;
    }
    let delimiter = first[op + 3..].strip_suffix('\'')?;
    let plain = !delimiter.is_empty()
        && delimiter
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !plain {
        return None;
    }
    // The body ends at the first line that is the delimiter; that line must
    // be the last one.
    let mut lines = rest.split('\n');
    lines.by_ref().find(|l| *l == delimiter)?;
    if lines.next().is_some() {
        return None;
    }
    Some((first[..op].trim_end(), true))
}

/// True when the shell would take every character of `line` literally:
/// see the module documentation.
fn literal_only(line: &str) -> bool {
    #[derive(PartialEq)]
    enum State {
        Plain,
        Single,
        Double,
    }
    let mut state = State::Plain;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match state {
            State::Plain => match c {
                '\'' => state = State::Single,
                '"' => state = State::Double,
                // An escaped character is literal; an escaped newline joins
                // lines, which is refused like a newline.
                '\\' => match chars.next() {
                    Some('\n') | None => return false,
                    Some(_) => {}
                },
                ' ' | '\t' => {}
                c if c.is_ascii_alphanumeric() || "-_./:,+".contains(c) => {}
                _ => return false,
            },
            State::Single => {
                if c == '\'' {
                    state = State::Plain;
                }
            }
            State::Double => match c {
                '"' => state = State::Plain,
                '$' | '`' | '\\' | '!' => return false,
                _ => {}
            },
        }
    }
    state == State::Plain
}

#[cfg(test)]
mod tests {
    use super::{MCP_TOOL_PREFIX, approved, approved_tool, verbs};

    #[test]
    fn literal_bridge_commands_are_approved() {
        for (command, verb) in [
            (
                r#"bridge-host run reply msg-0dzhx0wgcik9 "init() is now setup()""#,
                "reply",
            ),
            (
                "bridge-host run reply msg-0dzhx0wgcik9 'it'\\''s setup() now'",
                "reply",
            ),
            (
                "bridge-host run ask k3x9q2 'which version?' --timeout 60",
                "ask",
            ),
            (
                "bridge-host run ask k3x9q2 --in-reply-to msg-0dzhx0wgcik9 'v2'",
                "ask",
            ),
            ("bridge-host run check-inbox", "check-inbox"),
            ("bridge-host run listen --timeout 540", "listen"),
            ("bridge-host run connect k3x9q2", "connect"),
            ("bridge-host run status --json", "status"),
            ("bridge-host run track msg-0dzhx0wgcik9", "track"),
            ("bridge-host run thread msg-0dzhx0wgcik9 --json", "thread"),
            ("bridge-host run history", "history"),
            (
                "bridge-host run reply msg-0dzhx0wgcik9 'two\nlines; $(not run)'",
                "reply",
            ),
            (
                "bridge-host run reply msg-0dzhx0wgcik9 - <<'EOF'\nfn setup() -> $HOME `x`\nEOF",
                "reply",
            ),
            (
                "bridge-host run reply msg-0dzhx0wgcik9 - <<'EOF'\nbody\nEOF\n",
                "reply",
            ),
            // The commands the guest's text shows, filled in.
            (
                "bridge-host run reply msg-0dzhx0wgcik9 - <<'ANSWER_t4k8q0zd'\n`init()` is now \
                 `setup()`; $HOME $(id) !! 'q' \"d\" \\\nEOF\nANSWER_t4k8q0zd",
                "reply",
            ),
            (
                "bridge-host run ask k3x9q2 --in-reply-to msg-0dzhx0wgcik9 - \
                 <<'ANSWER_t4k8q0zd'\nThe v2 API.\r\nANSWER_t4k8q0zd",
                "ask",
            ),
            (
                "bridge-host run reply msg-0dzhx0wgcik9 - --escapes <<'ANSWER_t4k8q0zd'\n\
                 line one\\r\nline two\\r\nANSWER_t4k8q0zd",
                "reply",
            ),
        ] {
            assert_eq!(approved(command), Some(verb), "{command}");
        }
    }

    #[test]
    fn exactly_the_bridges_own_mcp_tools_are_approved() {
        for tool in verbs::answer_tools() {
            let name = format!("{MCP_TOOL_PREFIX}{tool}");
            assert_eq!(approved_tool(&name), Some(tool), "{name}");
        }
        // Away answers cost model calls: a person turns them on.
        assert_eq!(approved_tool(&format!("{MCP_TOOL_PREFIX}away")), None);
        for other in [
            "mcp__plugin_session-bridge_bridge__",
            "mcp__plugin_session-bridge_bridge__run",
            "mcp__plugin_session-bridge_bridge__reply2",
            "mcp__plugin_other_bridge__reply",
            "mcp__bridge__reply",
            "mcp__plugin_session-bridge_bridgex__reply",
            "reply",
            "Bash",
            "Write",
        ] {
            assert_eq!(approved_tool(other), None, "{other}");
        }
    }

    #[test]
    fn each_verb_of_the_table_is_approved_exactly_when_it_answers() {
        for verb in verbs::VERBS {
            let command = format!("bridge-host run {}", verb.name);
            assert_eq!(
                approved(&command),
                verb.answers.then_some(verb.name),
                "{command}"
            );
        }
    }

    #[test]
    fn nothing_else_is_approved() {
        let hostile = [
            // Substitution inside the answer.
            r#"bridge-host run reply msg-0dzhx0wgcik9 "$(cat ~/.ssh/id_rsa)""#,
            "bridge-host run reply msg-0dzhx0wgcik9 \"`id`\"",
            "bridge-host run reply msg-0dzhx0wgcik9 $(id)",
            "bridge-host run reply msg-0dzhx0wgcik9 `id`",
            // Lists, pipes, redirections, a second command.
            "bridge-host run status; rm -rf ~",
            "bridge-host run status && curl 127.0.0.1",
            "bridge-host run status || true",
            "bridge-host run status | sh",
            "bridge-host run status & sleep 1",
            "bridge-host run reply msg-0dzhx0wgcik9 x > ~/.bashrc",
            "bridge-host run reply msg-0dzhx0wgcik9 - < ~/.ssh/id_rsa",
            "bridge-host run status 2>&1",
            "bridge-host run status\nrm -rf ~",
            "bridge-host run status\\\nrm -rf ~",
            "(bridge-host run status)",
            "{ bridge-host run status; }",
            // Here-documents that expand, or with something after them.
            "bridge-host run reply msg-0dzhx0wgcik9 - <<EOF\n$(id)\nEOF",
            "bridge-host run reply msg-0dzhx0wgcik9 - <<\"EOF\"\nx\nEOF",
            "bridge-host run reply msg-0dzhx0wgcik9 - <<'EOF'\nx\nEOF\nrm -rf ~",
            "bridge-host run reply msg-0dzhx0wgcik9 - <<'EOF' ; id\nx\nEOF",
            "bridge-host run status <<'EOF'\nx\nEOF",
            // Expansion and globbing.
            "bridge-host run reply msg-0dzhx0wgcik9 $HOME",
            "bridge-host run reply msg-0dzhx0wgcik9 \"${HOME}\"",
            "bridge-host run reply msg-0dzhx0wgcik9 ~/x",
            "bridge-host run reply msg-0dzhx0wgcik9 *",
            "bridge-host run reply msg-0dzhx0wgcik9 file?",
            "bridge-host run reply msg-0dzhx0wgcik9 [ab]",
            "bridge-host run reply msg-0dzhx0wgcik9 {a,b}",
            "bridge-host run reply msg-0dzhx0wgcik9 \"hi!\"",
            "bridge-host run reply msg-0dzhx0wgcik9 'unclosed",
            // Programs that are not the bare bridge-host.
            "/tmp/evil/bridge-host run status",
            "./bridge-host run status",
            "evil-bridge-host run status",
            "BRIDGE_DIR=/tmp bridge-host run status",
            "env bridge-host run status",
            "\"$CLAUDE_PLUGIN_ROOT/bin/bridge-host\" run status",
            // Verbs and options that do not belong in an answer.
            "bridge-host run stop",
            "bridge-host run start",
            "bridge-host run cleanup",
            "bridge-host run history --retention 0s",
            "bridge-host run track msg-0dzhx0wgcik9 --retention=0s",
            "bridge-host hook session-end",
            "bridge-host guest check /tmp/x.wasm",
            "bridge-host run",
            "bridge-host run status --guest /tmp/evil.wasm",
            "bridge-host run status --bridge-dir /tmp",
            "bridge-host --session a1b2c3 run status",
            "bridge-host run reply msg-0dzhx0wgcik9 --session=a1b2c3",
            "bridge-host run reply msg-0dzhx0wgcik9 '--guest=/tmp/evil.wasm'",
            "bridge-host run listen --timeout 5s",
            "bridge-host run send k3x9q2 query x --guest-setting a=b",
            // A numbered here-document feeds another file descriptor.
            "bridge-host run reply msg-0dzhx0wgcik9 - 3<<'EOF'\nx\nEOF",
            "bridge-host run reply msg-0dzhx0wgcik9 - 0<<'EOF'\nx\nEOF",
            "bridge-host run reply msg-0dzhx0wgcik9 -<<'EOF'\nx\nEOF",
            // An option value that clap could take for an option.
            "bridge-host run ask k3x9q2 --in-reply-to --guest x.wasm",
            "bridge-host run ask k3x9q2 --in-reply-to -x 'q'",
        ];
        for command in hostile {
            assert_eq!(approved(command), None, "approved: {command}");
        }
    }
}
