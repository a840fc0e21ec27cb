//! The commands the guest's text tells an agent to run, worded for the
//! caller that will read them: a `bridge-host run …` command line for a
//! terminal and the plugin's hooks, a tool call for an MCP client (which
//! may have no shell at all). `caller` is who runs the verb whose text
//! shows them.

use crate::Caller;

fn mcp(caller: Caller) -> bool {
    caller.uses_tools()
}

/// A verb with no argument: `bridge-host run peers`, or `the peers tool`.
pub(crate) fn plain(caller: Caller, verb: &str) -> String {
    if mcp(caller) {
        format!("the {} tool", tool_name(verb))
    } else {
        format!("bridge-host run {verb}")
    }
}

/// A verb about one message: `bridge-host run track msg-…`, or
/// `the track tool with message_id msg-…`.
pub(crate) fn on_message(caller: Caller, verb: &str, id: &str) -> String {
    if mcp(caller) {
        format!("the {} tool with message_id {id}", tool_name(verb))
    } else {
        format!("bridge-host run {verb} {id}")
    }
}

/// The placeholder a shown command has for the words the reader writes.
pub(crate) const ANSWER_PLACEHOLDER: &str = "<answer>";

/// How to answer a received message: the reply tool for an MCP client; for
/// an agent's shell or the wake hook, the bridge's MCP tool or a command;
/// for a terminal, the command. The command takes the answer on standard
/// input from a here-document whose quoted delimiter carries a fresh
/// random tag, so the shell takes every byte of the answer literally
/// (backticks, `$`, `!`, quotes, backslashes, a line that reads `EOF`) and
/// the plugin's approval hook passes it unasked. The first line ends in a
/// colon; the command follows on lines of its own.
pub(crate) fn reply(caller: Caller, id: &str) -> String {
    if mcp(caller) {
        return format!("Answer with: the reply tool with message_id {id}");
    }
    answer_with(
        caller,
        "Answer with",
        &format!("the reply tool of the bridge's MCP server (message_id {id})"),
        &format!("bridge-host run reply {id} -"),
    )
}

/// How to answer a peer's reply (`reply_id`) that asks something back: a
/// new question to `peer` that follows up on that reply.
pub(crate) fn ask(caller: Caller, peer: &str, reply_id: &str) -> String {
    if mcp(caller) {
        return format!(
            "If it asks you something, answer with: the ask tool with peer {peer} and \
             in_reply_to {reply_id}"
        );
    }
    answer_with(
        caller,
        "If it asks you something, answer with",
        &format!("the ask tool of the bridge's MCP server (peer {peer}, in_reply_to {reply_id})"),
        &format!("bridge-host run ask {peer} --in-reply-to {reply_id} -"),
    )
}

/// What an agent is told about text its shell tool will not carry.
pub(crate) const ESCAPES_NOTE: &str = "(A shell tool may refuse control characters, such as the \
     CR of CRLF line endings: then add --escapes after the - and write each as \\r or \\u{1b}, \
     and each backslash as \\\\.)";

/// `lead` and either `tool` or `command` fed by a quoted here-document,
/// which a person at a terminal is shown alone.
fn answer_with(caller: Caller, lead: &str, tool: &str, command: &str) -> String {
    let delimiter = format!("ANSWER_{}", crate::ids::random_token(8));
    let block = format!("{command} <<'{delimiter}'\n{ANSWER_PLACEHOLDER}\n{delimiter}");
    if caller == Caller::Terminal {
        format!("{lead} this command, your answer in place of {ANSWER_PLACEHOLDER}:\n{block}")
    } else {
        // An agent's shell tool may refuse control characters (Claude
        // Code's Bash tool refuses a CR): `--escapes` carries them.
        format!(
            "{lead} {tool}, or with this command, your answer in place of \
             {ANSWER_PLACEHOLDER}:\n{block}\n{ESCAPES_NOTE}"
        )
    }
}

/// How to reach a session: what a peer runs to connect to it.
pub(crate) fn connect(caller: Caller, id: &str) -> String {
    if mcp(caller) {
        format!("the connect tool with peer {id}")
    } else {
        format!("bridge-host run connect {id}")
    }
}

/// The MCP tool that runs `verb` (`check-inbox` is `check_inbox`).
fn tool_name(verb: &str) -> String {
    verb.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_gets_command_lines_and_an_mcp_client_gets_tool_calls() {
        let terminal = Caller::Terminal;
        let text = reply(terminal, "msg-a");
        let (first, block) = text.split_once('\n').unwrap();
        assert_eq!(
            first,
            "Answer with this command, your answer in place of <answer>:"
        );
        let lines: Vec<&str> = block.lines().collect();
        let delimiter = lines[0]
            .strip_prefix("bridge-host run reply msg-a - <<'")
            .and_then(|rest| rest.strip_suffix('\''))
            .unwrap();
        assert!(
            delimiter.starts_with("ANSWER_") && delimiter.len() == 15,
            "{delimiter}"
        );
        assert_eq!(lines[1..], ["<answer>", delimiter]);
        assert_eq!(
            on_message(terminal, "receive", "msg-a"),
            "bridge-host run receive msg-a"
        );
        assert_eq!(plain(terminal, "peers"), "bridge-host run peers");
        let text = ask(Caller::AgentShell, "a1b2c3", "msg-b");
        assert!(
            text.starts_with(
                "If it asks you something, answer with the ask tool of the bridge's MCP server \
                 (peer a1b2c3, in_reply_to msg-b), or with this command, your answer in place \
                 of <answer>:\nbridge-host run ask a1b2c3 --in-reply-to msg-b - <<'ANSWER_"
            ),
            "{text}"
        );
        let mcp = Caller::Mcp;
        assert_eq!(
            reply(mcp, "msg-a"),
            "Answer with: the reply tool with message_id msg-a"
        );
        assert_eq!(
            on_message(mcp, "receive", "msg-a"),
            "the receive tool with message_id msg-a"
        );
        assert_eq!(plain(mcp, "check-inbox"), "the check_inbox tool");
        assert_eq!(
            ask(mcp, "a1b2c3", "msg-b"),
            "If it asks you something, answer with: the ask tool with peer a1b2c3 and \
             in_reply_to msg-b"
        );
    }

    #[test]
    fn no_shown_command_puts_the_answer_in_double_quotes() {
        for caller in [Caller::Terminal, Caller::AgentShell, Caller::WakeHook] {
            for text in [reply(caller, "msg-a"), ask(caller, "a1b2c3", "msg-b")] {
                assert!(!text.contains("\"<answer>\""), "{text}");
                assert!(!text.contains("'<answer>'"), "{text}");
                // Two here-documents never share a delimiter.
                assert_ne!(reply(caller, "msg-a"), reply(caller, "msg-a"));
            }
        }
    }
}
