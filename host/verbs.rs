//! The bridge's verbs: one table that every front end is derived from.
//!
//! A verb is named once here, in [`VERBS`]: its `bridge-host run` name,
//! the MCP tool that runs it (if the MCP server offers it), and whether
//! the plugin's approval hook lets a woken session run it unasked. The
//! CLI's arguments ([`VerbArgs`]) and their conversion to the guest's
//! verb ([`VerbArgs::into_wit`]) live here too. The tests below fail when
//! the CLI or the MCP server lacks a verb of the table, or offers one it
//! does not list; [`name_of`] and the 0.1.0 binding match every verb of
//! the WIT, so the compiler names what a new WIT verb still needs.
//!
//! Adding a verb (docs/architecture.md, "Adding a verb", has the full
//! list): 0.1.0 and 0.2.0 are frozen, so the verb goes into the next
//! version's WIT (`wit/v0.3.0/verbs.wit`, created with that version), with
//! arms refusing it in `bindings/v0_2_0.rs` and `bindings/v0_1_0.rs`; then
//! the guest, a row of [`VERBS`] with its [`VerbArgs`] variant and
//! conversion, an arm in [`name_of`], the MCP tool in `mcp/tools.rs` (its
//! words in the guest's `render/mcp.rs`) when the row names one, and
//! docs/cli.md.

use anyhow::Result;
use clap::{Subcommand, ValueEnum};

use crate::sandbox::wit;

/// One verb, as the front ends offer it.
#[derive(Debug, Clone, Copy)]
pub struct VerbSpec {
    /// `bridge-host run <name>`.
    pub name: &'static str,
    /// The MCP tool that runs it, when the MCP server offers it.
    pub tool: Option<&'static str>,
    /// The approval hook lets a session run it unasked: it belongs in
    /// answering a peer.
    pub answers: bool,
}

const fn verb(name: &'static str, tool: Option<&'static str>, answers: bool) -> VerbSpec {
    VerbSpec {
        name,
        tool,
        answers,
    }
}

/// Every verb a user or an agent runs, in the order `bridge-host run
/// --help` lists them.
pub const VERBS: [VerbSpec; 18] = [
    verb("start", None, false),
    verb("id", None, true),
    verb("connect", Some("connect"), true),
    verb("send", Some("send"), true),
    verb("listen", Some("listen"), true),
    verb("check-inbox", Some("check_inbox"), true),
    verb("track", Some("track"), true),
    verb("thread", Some("thread"), true),
    verb("history", Some("history"), true),
    verb("cleanup", None, false),
    verb("reply", Some("reply"), true),
    verb("ask", Some("ask"), true),
    verb("receive", Some("receive"), true),
    verb("peers", Some("peers"), true),
    verb("status", Some("status"), true),
    verb("heartbeat", None, false),
    verb("stop", None, false),
    verb("away", Some("away"), false),
];

/// The verbs the approval hook lets a woken session run.
pub fn answer_verbs() -> impl Iterator<Item = &'static str> {
    VERBS.iter().filter(|v| v.answers).map(|v| v.name)
}

/// The MCP server's tools, by name.
pub fn tools() -> impl Iterator<Item = &'static str> {
    VERBS.iter().filter_map(|v| v.tool)
}

/// The MCP tools the approval hook lets a woken session call: those of
/// the verbs that belong in answering a peer (not `away`, which costs
/// model calls and is for a person to turn on).
pub fn answer_tools() -> impl Iterator<Item = &'static str> {
    VERBS.iter().filter(|v| v.answers).filter_map(|v| v.tool)
}

/// The MCP tools a person confirms in clients that approve tools one by
/// one: those of the verbs that do not belong in answering (`away`).
pub fn confirmed_tools() -> impl Iterator<Item = &'static str> {
    VERBS.iter().filter(|v| !v.answers).filter_map(|v| v.tool)
}

/// The name a guest verb goes by in the host's own messages: the CLI
/// name of a verb of [`VERBS`], or the internal verb's WIT name.
pub fn name_of(verb: &wit::Verb) -> &'static str {
    match verb {
        wit::Verb::Start => "start",
        wit::Verb::Id => "id",
        wit::Verb::Connect(_) => "connect",
        wit::Verb::Send(_) => "send",
        wit::Verb::Listen(_) => "listen",
        wit::Verb::CheckInbox => "check-inbox",
        wit::Verb::Track(_) => "track",
        wit::Verb::Thread(_) => "thread",
        wit::Verb::History(_) => "history",
        wit::Verb::Cleanup(_) => "cleanup",
        wit::Verb::Reply(_) => "reply",
        wit::Verb::Ask(_) => "ask",
        wit::Verb::Receive(_) => "receive",
        wit::Verb::Peers => "peers",
        wit::Verb::Status => "status",
        wit::Verb::Heartbeat => "heartbeat",
        wit::Verb::Stop => "stop",
        wit::Verb::SessionStart => "session-start",
        wit::Verb::Seen(_) => "seen",
        wit::Verb::RelayOutbound(_) => "relay-outbound",
        wit::Verb::RelayInbound(_) => "relay-inbound",
        wit::Verb::RelayPresence(_) => "relay-presence",
        wit::Verb::RelayMaterialize(_) => "relay-materialize",
        wit::Verb::Away(_) => "away",
        wit::Verb::SessionEnd(_) => "session-end",
        wit::Verb::AwayTake(_) => "away-take",
        wit::Verb::AwayRenew(_) => "away-renew",
        wit::Verb::AwayFinish(_) => "away-finish",
    }
}

/// A message's type, as `run send` and the MCP `send` tool take it.
#[derive(Debug, Clone, Copy, ValueEnum, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KindArg {
    /// A question that expects a reply.
    Query,
    /// An answer, or a question back to the asker.
    Response,
    /// A liveness check (`connect` sends one).
    Ping,
    /// Tells the peer this session ended.
    SessionEnded,
}

impl From<KindArg> for wit::MessageKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Query => wit::MessageKind::Query,
            KindArg::Response => wit::MessageKind::Response,
            KindArg::Ping => wit::MessageKind::Ping,
            KindArg::SessionEnded => wit::MessageKind::SessionEnded,
        }
    }
}

#[derive(Subcommand)]
pub enum VerbArgs {
    /// Register this session, or reuse it; prints the session ID.
    Start,
    /// Print this session's ID.
    Id,
    /// Ping a peer session.
    Connect {
        /// The peer's session ID.
        peer: String,
    },
    /// Deliver one message; prints its ID.
    Send {
        /// The recipient's session ID.
        peer: String,
        /// The message type.
        #[arg(value_enum)]
        kind: KindArg,
        /// The content, or `-` to read it from standard input.
        #[arg(allow_hyphen_values = true)]
        content: String,
        /// The message this one answers.
        #[arg(long, value_name = "MESSAGE_ID")]
        in_reply_to: Option<String>,
    },
    /// Wait for and take the next message for this session.
    Listen {
        /// Give up after this many seconds (exit 1) [default: wait forever].
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u32>,
    },
    /// Take the next message if one is waiting, without waiting; prints
    /// "No new messages." otherwise.
    CheckInbox,
    /// Show where a message this session sent stands: queued, taken, seen,
    /// answered, set aside, or its recipient gone.
    Track {
        /// The sent message's ID.
        message_id: String,
    },
    /// Print the whole conversation a message belongs to, oldest first.
    Thread {
        /// A message ID of the conversation.
        message_id: String,
    },
    /// List the messages this project exchanged, newest last (kept across
    /// `stop` and new sessions).
    History {
        /// Only messages to or from this session.
        #[arg(long, value_name = "ID")]
        peer: Option<String>,
        /// Only messages whose content contains this text.
        #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
        grep: Option<String>,
        /// At most this many [default: 20].
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Remove ghost sessions, archive taken messages past the retention
    /// (--retention), and drop old set-aside and temporary files.
    Cleanup {
        /// Say what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Answer a message this session received; prints the answer's ID.
    Reply {
        /// The received message's ID.
        message_id: String,
        /// The answer, or `-` to read it from standard input.
        #[arg(allow_hyphen_values = true)]
        content: String,
    },
    /// Send a query to a peer and wait for its reply.
    Ask {
        /// The peer's session ID.
        peer: String,
        /// The question, or `-` to read it from standard input.
        #[arg(allow_hyphen_values = true)]
        question: String,
        // The default is the guest's `limits.reply-wait-seconds`.
        /// Give up after this many seconds (exit 1) [default: 90].
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u32>,
        /// A message of the conversation this question follows up.
        #[arg(long, value_name = "MESSAGE_ID")]
        in_reply_to: Option<String>,
    },
    /// Wait for the reply to a message already sent.
    Receive {
        /// The sent message's ID.
        message_id: String,
        // The default is the guest's `limits.reply-wait-seconds`.
        /// Give up after this many seconds (exit 1) [default: 90].
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u32>,
    },
    /// List sessions.
    Peers,
    /// Summarise this session.
    Status,
    /// Refresh this session's heartbeat.
    Heartbeat,
    /// End this session, notifying its peers.
    Stop,
    /// Away answers for this project: once its Claude Code session ends,
    /// the session stays registered as away and a read-only copy of its
    /// transcript answers queries, within limits (docs/away.md).
    Away {
        #[command(subcommand)]
        action: AwayAction,
    },
}

/// What `run away` does.
#[derive(Subcommand, Debug, Clone)]
pub enum AwayAction {
    /// Opt this project in, optionally changing its limits (a limit not
    /// given keeps its current value).
    On(AwayLimits),
    /// Opt this project out; its away sessions stop.
    Off,
    /// Show the settings, the away sessions and what they used.
    Status,
}

/// The limits of `run away on`, also the MCP `away` tool's arguments.
#[derive(clap::Args, Debug, Clone, Default, serde::Deserialize, schemars::JsonSchema)]
pub struct AwayLimits {
    /// Model turns one answer may take [default: 8].
    #[arg(long, value_name = "N")]
    #[serde(default)]
    pub max_turns: Option<u32>,
    /// Seconds one answer may take [default: 180].
    #[arg(long, value_name = "SECONDS")]
    #[serde(default)]
    pub max_seconds: Option<u32>,
    /// Answers in any hour [default: 20].
    #[arg(long, value_name = "N")]
    #[serde(default)]
    pub per_hour: Option<u32>,
    /// Answers in any 24 hours [default: 100].
    #[arg(long, value_name = "N")]
    #[serde(default)]
    pub per_day: Option<u32>,
    /// US dollars the copies may spend in any 24 hours, as Claude Code
    /// reports its cost [default: 2.00].
    #[arg(long, value_name = "USD")]
    #[serde(default)]
    pub spend_per_day: Option<f64>,
    /// Let sessions of other machines (through the relay) ask too
    /// [default: this machine only].
    #[arg(long)]
    #[serde(default)]
    pub allow_other_machines: bool,
    /// Let only sessions of this machine ask again.
    #[arg(long, conflicts_with = "allow_other_machines")]
    #[serde(default)]
    pub this_machine_only: bool,
}

impl AwayLimits {
    /// The guest's settings: what was not given stays as it is.
    pub fn into_wit(self) -> wit::AwaySettings {
        wit::AwaySettings {
            max_turns: self.max_turns,
            max_seconds: self.max_seconds,
            per_hour: self.per_hour,
            per_day: self.per_day,
            spend_per_day: self.spend_per_day,
            allow_other_machines: if self.allow_other_machines {
                Some(true)
            } else if self.this_machine_only {
                Some(false)
            } else {
                None
            },
        }
    }
}

impl AwayAction {
    pub fn into_wit(self) -> wit::AwayRequest {
        match self {
            AwayAction::On(limits) => wit::AwayRequest::On(limits.into_wit()),
            AwayAction::Off => wit::AwayRequest::Off,
            AwayAction::Status => wit::AwayRequest::Status,
        }
    }
}

impl VerbArgs {
    /// The guest's verb, with each content argument (a message, an answer,
    /// a question) resolved by `content` (the CLI reads `-` from standard
    /// input there), and the waits not given taken from the guest's
    /// `limits`.
    pub fn into_wit(
        self,
        limits: &wit::Limits,
        mut content: impl FnMut(String) -> Result<String>,
    ) -> Result<wit::Verb> {
        let verb = self;
        Ok(match verb {
            VerbArgs::Start => wit::Verb::Start,
            VerbArgs::Id => wit::Verb::Id,
            VerbArgs::Connect { peer } => wit::Verb::Connect(peer),
            VerbArgs::Send {
                peer,
                kind: k,
                content: c,
                in_reply_to,
            } => wit::Verb::Send(wit::SendRequest {
                to: peer,
                kind: k.into(),
                content: content(c)?,
                in_reply_to,
            }),
            VerbArgs::Listen { timeout } => wit::Verb::Listen(wit::ListenRequest {
                timeout_seconds: timeout,
            }),
            VerbArgs::CheckInbox => wit::Verb::CheckInbox,
            VerbArgs::Track { message_id } => wit::Verb::Track(message_id),
            VerbArgs::Thread { message_id } => wit::Verb::Thread(message_id),
            VerbArgs::History { peer, grep, limit } => {
                wit::Verb::History(wit::HistoryRequest { peer, grep, limit })
            }
            VerbArgs::Cleanup { dry_run } => wit::Verb::Cleanup(wit::CleanupRequest { dry_run }),
            VerbArgs::Reply {
                message_id,
                content: c,
            } => wit::Verb::Reply(wit::ReplyRequest {
                message_id,
                content: content(c)?,
            }),
            VerbArgs::Ask {
                peer,
                question,
                timeout,
                in_reply_to,
            } => wit::Verb::Ask(wit::AskRequest {
                to: peer,
                content: content(question)?,
                timeout_seconds: timeout.unwrap_or(limits.reply_wait_seconds),
                in_reply_to,
            }),
            VerbArgs::Receive {
                message_id,
                timeout,
            } => wit::Verb::Receive(wit::ReceiveRequest {
                message_id,
                timeout_seconds: timeout.unwrap_or(limits.reply_wait_seconds),
            }),
            VerbArgs::Peers => wit::Verb::Peers,
            VerbArgs::Status => wit::Verb::Status,
            VerbArgs::Heartbeat => wit::Verb::Heartbeat,
            VerbArgs::Stop => wit::Verb::Stop,
            VerbArgs::Away { action } => wit::Verb::Away(action.into_wit()),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use clap::{CommandFactory, Parser};

    use super::{VERBS, VerbArgs};

    /// `bridge-host run`, as main.rs mounts [`VerbArgs`].
    #[derive(Parser)]
    struct Run {
        #[command(subcommand)]
        verb: VerbArgs,
    }

    #[test]
    fn the_cli_offers_exactly_the_verbs_of_the_table() {
        let offered: Vec<String> = Run::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        let table: Vec<&str> = VERBS.iter().map(|v| v.name).collect();
        assert_eq!(offered, table);
    }

    /// The embedded guest's limits.
    pub(crate) fn guest_limits() -> crate::sandbox::wit::Limits {
        let component = crate::compile_cache::load_shipped().expect("the shipped guest");
        let scratch = crate::guests::ScratchDir::new().unwrap();
        crate::sandbox::Guest::instantiate(&component, scratch.path(), scratch.path())
            .and_then(|mut guest| guest.limits())
            .unwrap()
    }

    #[test]
    fn the_help_of_ask_and_receive_gives_the_guests_reply_wait() {
        let said = format!("[default: {}]", guest_limits().reply_wait_seconds);
        let mut run = Run::command();
        for verb in ["ask", "receive"] {
            let help = run
                .find_subcommand_mut(verb)
                .unwrap()
                .render_help()
                .to_string();
            let line = help.lines().find(|l| l.contains("--timeout")).unwrap();
            let rest = help.split_once(line).unwrap().1;
            assert!(
                line.contains(&said) || rest.lines().next().is_some_and(|l| l.contains(&said)),
                "{verb}: {help}"
            );
        }
    }

    #[test]
    fn tool_names_are_the_verb_names_in_snake_case() {
        for verb in VERBS {
            if let Some(tool) = verb.tool {
                assert_eq!(tool, verb.name.replace('-', "_"), "{}", verb.name);
            }
        }
    }
}
