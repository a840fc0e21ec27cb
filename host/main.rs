//! `bridge-host`: runs the session-bridge guest component in a sandbox whose
//! only directory is the bridge directory. This file parses the command
//! line and hands it to a front end of the library: `run` and `guest` to
//! [`cli`], `hook` to [`hooks`], `mcp` to [`mcp`], `relay` to [`relay`],
//! `setup` to [`setup`].
//! Every protocol decision is the guest's.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use bridge_host::invoke::Config;
use bridge_host::verbs::VerbArgs;
use bridge_host::{cli, doctor, hooks, mcp, relay, setup};

#[derive(Parser)]
#[command(
    name = "bridge-host",
    version,
    about = "Lets two coding-agent sessions talk through a sandboxed file mailbox"
)]
struct Cli {
    #[command(flatten)]
    global: Config,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one session-bridge verb.
    Run {
        #[command(subcommand)]
        verb: VerbArgs,
    },
    /// Inspect guest components.
    Guest {
        #[command(subcommand)]
        action: cli::GuestAction,
    },
    /// Serve the bridge to an MCP client (Codex, Gemini CLI, Cursor, VS
    /// Code, Claude Code) over standard input and output: one connection is
    /// one bridge session, registered at `initialize` and stopped when the
    /// connection closes.
    Mcp(mcp::McpArgs),
    /// Connect this machine's bridge directory to a NATS JetStream server,
    /// so that sessions on other machines can be asked and answer as if
    /// they were local. Runs in the foreground; SIGTERM stops it.
    Relay(relay::RelayArgs),
    /// Install the bridge into a client's user-level configuration (Claude
    /// Code, Codex, Gemini CLI, Cursor, VS Code), keeping everything else in
    /// the file; `--remove` takes it out again.
    Setup(setup::SetupArgs),
    /// Say what works on this machine: the bridge directory, the compile
    /// cache, the relay, and each agent client (installed, its version, set
    /// up, and its wake path, checked live where that takes no model call).
    /// A table, or one JSON object with --json; exit 1 when a check failed.
    Doctor,
    /// Handle a Claude Code hook event (the plugin's hooks call this), a
    /// Codex hook (`bridge-host setup codex` installs them) or Gemini CLI's
    /// AfterAgent hook, reading the hook's JSON on standard input.
    Hook {
        #[command(subcommand)]
        event: hooks::Event,
    },
    /// Answer an away session's queries with read-only forks of its
    /// transcript; started by the bridge itself when a query reaches an
    /// away session (docs/away.md).
    #[command(hide = true)]
    AwayAnswer {
        /// The away session.
        #[arg(long)]
        session: String,
    },
}

fn main() -> ExitCode {
    // Before any thread exists, so that every thread inherits it.
    bridge_host::watch::install();
    let cli = Cli::parse();
    // Everything the bridge creates is private: directories 0700, files 0600.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // Past a file size limit (RLIMIT_FSIZE), let the write fail with an error
    // the guest reports, instead of the signal killing the process mid-write.
    // SAFETY: ignoring a signal installs no handler code.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN)
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("bridge-host: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run { verb } => cli::run_verb(&cli.global, verb),
        Command::Guest { action } => cli::guest_command(&cli.global, action),
        Command::Hook { event } => hooks::run(&cli.global, event),
        Command::Mcp(args) => mcp::run(&cli.global, &args),
        Command::Relay(args) => relay::run(&cli.global, args),
        Command::Setup(args) => setup::run(args),
        Command::Doctor => doctor::run(&cli.global, cli.global.json),
        Command::AwayAnswer { session } => bridge_host::away::answer(&cli.global, &session),
    }
}
