//! The commands the guest's text tells an agent to run, worded for the
//! caller that will read them: a `bridge-host run …` command line for a
//! terminal and the plugin's hooks, a tool call for an MCP client (which
//! may have no shell at all).

use std::cell::Cell;

use crate::Caller;

thread_local! {
    /// Who the current verb's text is for; set by `Bridge::run`.
    static READER: Cell<Caller> = const { Cell::new(Caller::Terminal) };
}

/// Words the text of the verbs that follow for `caller`.
pub(crate) fn address(caller: Caller) {
    READER.with(|r| r.set(caller));
}

fn mcp() -> bool {
    READER.with(Cell::get) == Caller::Mcp
}

/// A verb with no argument: `bridge-host run peers`, or `the peers tool`.
pub(crate) fn plain(verb: &str) -> String {
    if mcp() {
        format!("the {} tool", tool_name(verb))
    } else {
        format!("bridge-host run {verb}")
    }
}

/// A verb about one message: `bridge-host run track msg-…`, or
/// `the track tool with message_id msg-…`.
pub(crate) fn on_message(verb: &str, id: &str) -> String {
    if mcp() {
        format!("the {} tool with message_id {id}", tool_name(verb))
    } else {
        format!("bridge-host run {verb} {id}")
    }
}

/// How to answer a received message.
pub(crate) fn reply(id: &str) -> String {
    if mcp() {
        format!("the reply tool with message_id {id}")
    } else {
        format!("bridge-host run reply {id} \"<answer>\"")
    }
}

/// How to answer a peer's reply that asks something back.
pub(crate) fn ask(peer: &str) -> String {
    if mcp() {
        format!("the ask tool with peer {peer}")
    } else {
        format!("bridge-host run ask {peer} \"<answer>\"")
    }
}

/// How to reach a session: what a peer runs to connect to it.
pub(crate) fn connect(id: &str) -> String {
    if mcp() {
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
        address(Caller::Terminal);
        assert_eq!(reply("msg-a"), "bridge-host run reply msg-a \"<answer>\"");
        assert_eq!(
            on_message("receive", "msg-a"),
            "bridge-host run receive msg-a"
        );
        assert_eq!(plain("peers"), "bridge-host run peers");
        address(Caller::Mcp);
        assert_eq!(reply("msg-a"), "the reply tool with message_id msg-a");
        assert_eq!(
            on_message("receive", "msg-a"),
            "the receive tool with message_id msg-a"
        );
        assert_eq!(plain("check-inbox"), "the check_inbox tool");
        assert_eq!(ask("a1b2c3"), "the ask tool with peer a1b2c3");
        address(Caller::Terminal);
    }
}
