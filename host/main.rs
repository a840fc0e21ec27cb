//! `bridge-host`: runs the session-bridge guest component in a sandbox whose
//! only directory is the bridge directory. The host parses the command
//! line, prepares directories, waits on change notifications and prints;
//! every protocol decision is the guest's.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use bridge_host::sandbox::{Guest, wit};
use bridge_host::verbs::{self, VerbArgs};
use bridge_host::{compile_cache, dirs, guests};

mod approve;
mod hooks;
mod mcp;
mod relay;

/// The most a guest may print for one verb.
const MAX_OUTPUT_BYTES: usize = 16 << 20;

#[derive(Parser)]
#[command(
    name = "bridge-host",
    version,
    about = "Lets two coding-agent sessions talk through a sandboxed file mailbox"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Global {
    /// The bridge directory (the guest's only preopened directory).
    #[arg(long, global = true, env = "BRIDGE_DIR", value_name = "DIR")]
    bridge_dir: Option<PathBuf>,
    /// Act as this session ID.
    #[arg(long, global = true, env = "BRIDGE_SESSION_ID", value_name = "ID")]
    session: Option<String>,
    /// The project directory [default: the working directory].
    #[arg(long, global = true, env = "PROJECT_DIR", value_name = "DIR")]
    project_dir: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Read content arguments with escapes: `\r`, `\n`, `\t`, `\u{1b}`
    /// and `\\` for a backslash. For text with control characters, which
    /// an agent's shell tool may refuse to carry (Claude Code's Bash tool
    /// refuses a CR).
    #[arg(long, global = true)]
    escapes: bool,
    /// Where compiled guests are cached [default: ~/.cache/session-bridge].
    #[arg(long, global = true, env = "BRIDGE_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Run this guest component instead of the embedded one.
    #[arg(long, global = true, env = "BRIDGE_GUEST", value_name = "FILE.wasm")]
    guest: Option<PathBuf>,
    /// A setting for the guest's policy (repeatable).
    #[arg(
        long = "guest-setting",
        global = true,
        env = "BRIDGE_GUEST_SETTINGS",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = parse_setting
    )]
    guest_settings: Vec<(String, String)>,
    /// How long taken messages stay in a session's mailbox before cleanup
    /// archives them, e.g. `7d` or `36h` [default: 7d].
    #[arg(long, global = true, env = "BRIDGE_RETENTION", value_name = "DURATION")]
    retention: Option<String>,
    /// The agent's own session ID, set by Claude Code.
    #[arg(long, global = true, env = "CLAUDE_CODE_SESSION_ID", hide = true)]
    agent_session: Option<String>,
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
        action: GuestAction,
    },
    /// Serve the bridge to an MCP client (Codex, Gemini CLI, Cursor, VS
    /// Code, Claude Code) over standard input and output: one connection is
    /// one bridge session, registered at `initialize` and stopped when the
    /// connection closes.
    Mcp,
    /// Connect this machine's bridge directory to a NATS JetStream server,
    /// so that sessions on other machines can be asked and answer as if
    /// they were local. Runs in the foreground; SIGTERM stops it.
    Relay(relay::RelayArgs),
    /// Handle a Claude Code hook event, reading the hook's JSON on standard
    /// input (the plugin's hooks call this).
    Hook {
        #[command(subcommand)]
        event: hooks::Event,
    },
}

#[derive(Subcommand)]
enum GuestAction {
    /// Show the embedded guest's name, version, protocol and hash.
    Info,
    /// Show which protocol version a guest component implements, and
    /// whether this host can run it (exit 1 when it cannot).
    Check {
        /// The guest component (.wasm).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    // Before any thread exists, so that every thread inherits it.
    bridge_host::watch::install();
    let cli = Cli::parse();
    // Everything the bridge creates is private: directories 0700, files 0600.
    // SAFETY: umask has no preconditions.
    #[cfg(unix)]
    unsafe {
        libc::umask(0o077)
    };
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
        Command::Run { verb } => run_verb(&cli.global, verb),
        Command::Guest { action } => guest_command(&cli.global, action),
        Command::Hook { event } => hooks::run(&cli.global, event),
        Command::Mcp => mcp::run(&cli.global),
        Command::Relay(args) => relay::run(&cli.global, args),
    }
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// The guest to run: the file named by --guest, or the embedded one.
struct GuestSource {
    wasm: compile_cache::Wasm<'static>,
    origin: String,
    /// The guest embedded in this binary, which build.rs compiled ahead of
    /// time: its first run compiles nothing.
    embedded: bool,
}

impl GuestSource {
    fn from_global(global: &Global) -> Result<Self> {
        match &global.guest {
            Some(path) => Self::file(path),
            None => Ok(GuestSource {
                wasm: compile_cache::Wasm::embedded(),
                origin: "embedded in bridge-host".into(),
                embedded: true,
            }),
        }
    }

    fn file(path: &Path) -> Result<Self> {
        Ok(GuestSource {
            wasm: compile_cache::Wasm::new(read_guest(path)?),
            origin: path.display().to_string(),
            embedded: false,
        })
    }

    /// The guest's machine code: shipped in this binary for the embedded
    /// guest, else loaded from the compile cache, else compiled (and
    /// cached).
    fn component(
        &self,
        global: &Global,
    ) -> Result<(wasmtime::component::Component, compile_cache::Source)> {
        if self.embedded
            && let Some(component) = compile_cache::load_shipped()
        {
            return Ok((component, compile_cache::Source::Shipped));
        }
        let cache_dir = global.cache_dir.clone().or_else(compile_cache::default_dir);
        compile_cache::load(&self.wasm, cache_dir.as_deref())
    }

    /// Compiles (or loads from the cache) and checks the protocol version.
    fn load(&self, global: &Global) -> Result<(wasmtime::component::Component, String)> {
        let (component, _) = self
            .component(global)
            .with_context(|| format!("cannot load the guest {}", self.origin))?;
        let version = guests::check_compatible(&component, &self.origin)?;
        Ok((component, version))
    }
}

fn guest_command(global: &Global, action: GuestAction) -> Result<ExitCode> {
    let source = match &action {
        GuestAction::Info => GuestSource::from_global(global)?,
        GuestAction::Check { file } => GuestSource::file(file)?,
    };
    let (component, compiled) = source
        .component(global)
        .with_context(|| format!("{} is not a loadable WebAssembly component", source.origin))?;
    println!("guest: {}", source.origin);
    println!(
        "machine code: {}",
        match compiled {
            compile_cache::Source::Shipped => "compiled when bridge-host was built, shipped in it",
            compile_cache::Source::Cache => "loaded from the compile cache",
            compile_cache::Source::Compiled => "compiled now",
        }
    );
    println!(
        "implements: {}",
        guests::protocol_version(&component)
            .map_or("no session-bridge:protocol version".to_string(), |v| {
                format!("{}@{v}", guests::PACKAGE)
            })
    );
    println!("this host supports: {}", guests::supported());
    println!("size: {} bytes", source.wasm.bytes.len());
    println!("blake3: {}", source.wasm.digest.to_hex());
    if let Err(why) = guests::check_compatible(&component, &source.origin) {
        println!("can run: no");
        eprintln!("bridge-host: {why:#}");
        return Ok(ExitCode::from(1));
    }
    let scratch = guests::ScratchDir::new()?;
    let info = Guest::instantiate(&component, scratch.path(), scratch.path())
        .and_then(|mut guest| guest.info());
    match info {
        Ok(info) => {
            println!("policy: {} {}", info.name, info.version);
            println!("can run: yes");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            println!("can run: no");
            eprintln!("bridge-host: {why:#}");
            Ok(ExitCode::from(1))
        }
    }
}

fn default_bridge_dir() -> Result<PathBuf> {
    // Git Bash sets HOME on Windows; cmd and PowerShell only USERPROFILE,
    // which is where Claude Code keeps `.claude` there.
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| {
            cfg!(windows)
                .then(|| std::env::var_os("USERPROFILE"))
                .flatten()
                .filter(|h| !h.is_empty())
        });
    match home {
        Some(home) => Ok(PathBuf::from(home).join(".claude/session-bridge")),
        None if cfg!(windows) => {
            bail!("neither HOME nor USERPROFILE is set; pass --bridge-dir or set BRIDGE_DIR")
        }
        None => bail!("HOME is not set; pass --bridge-dir or set BRIDGE_DIR"),
    }
}

/// The bridge directory `--bridge-dir` or the default names, created
/// private if missing.
fn bridge_dir(global: &Global) -> Result<PathBuf> {
    let bridge_dir = match &global.bridge_dir {
        Some(dir) => absolute(dir)?,
        None => default_bridge_dir()?,
    };
    dirs::prepare_private_dir(&bridge_dir, "bridge directory")?;
    Ok(bridge_dir)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// Content from an argument, or from standard input for `-` less one
/// final line break, refusing more than the guest accepts before reading
/// it all.
fn content(arg: String, limit: u64) -> Result<String> {
    if arg != "-" {
        return Ok(arg);
    }
    let mut bytes = Vec::new();
    io::stdin()
        .lock()
        .take(limit + 2)
        .read_to_end(&mut bytes)
        .context("cannot read the content from standard input")?;
    // A here-document, `echo` and most editors end the text with a line
    // break that is not part of it: one final "\n" is dropped, so that an
    // answer written in a here-document arrives byte for byte.
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    if bytes.len() as u64 > limit {
        bail!(
            "the content on standard input is over the limit of {limit} bytes; send a summary \
             or split it"
        );
    }
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "the content on standard input is not valid UTF-8 (bad byte at offset {}); \
             messages carry text",
            e.utf8_error().valid_up_to()
        )
    })
}

/// `text` with its escapes (`--escapes`) turned into the characters they
/// name: `\\`, `\n`, `\r`, `\t`, `\0` and `\u{HEX}`. Any other backslash
/// is refused, so that a backslash meant literally is never taken for an
/// escape or the reverse.
fn unescape(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let decoded = match chars.next().map(|(_, e)| e) {
            Some('\\') => '\\',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('0') => '\0',
            Some('u') => {
                let rest = chars.as_str();
                let hex = rest
                    .strip_prefix('{')
                    .and_then(|r| r.split_once('}'))
                    .map(|(hex, _)| hex)
                    .filter(|hex| (1..=6).contains(&hex.len()));
                let c = hex
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .and_then(char::from_u32);
                match (hex, c) {
                    (Some(hex), Some(c)) => {
                        for _ in 0..hex.len() + 2 {
                            chars.next();
                        }
                        c
                    }
                    _ => bail!(
                        "--escapes: `\\u` at byte {at} is not `\\u{{HEX}}` naming a character \
                         (for example `\\u{{1b}}`); write a backslash as `\\\\`"
                    ),
                }
            }
            Some(other) => bail!(
                "--escapes: `\\{other}` at byte {at} is not an escape (`\\r`, `\\n`, `\\t`, \
                 `\\0`, `\\u{{HEX}}`); write a backslash as `\\\\`"
            ),
            None => {
                bail!("--escapes: the text ends in a lone backslash; write a backslash as `\\\\`")
            }
        };
        out.push(decoded);
    }
    Ok(out)
}

fn to_wit_verb(verb: VerbArgs, limit: u64, escapes: bool) -> Result<wit::Verb> {
    // Escaped text is longer than what it names (`\u{1b}` is one byte);
    // the guest checks the limit on the decoded content.
    verb.into_wit(|arg| {
        if escapes {
            unescape(&content(arg, limit.saturating_mul(6))?)
        } else {
            content(arg, limit)
        }
    })
}

/// Where an invocation runs: its working directory, project and agent.
struct Place {
    working_dir: PathBuf,
    project_dir: PathBuf,
    agent_session: Option<String>,
    /// Who runs the verb.
    caller: wit::Caller,
    /// The agent process behind the session, when a hook knows it.
    agent_process: Option<String>,
    /// The agent client, when it names itself (an MCP client).
    client: Option<String>,
}

impl Place {
    /// The process's own working directory, `--project-dir` and
    /// `CLAUDE_CODE_SESSION_ID`.
    fn of_process(global: &Global) -> Result<Self> {
        let working_dir = std::env::current_dir().context("cannot read the working directory")?;
        let project_dir = match &global.project_dir {
            Some(dir) => absolute(dir)?,
            None => working_dir.clone(),
        };
        let agent_session = global.agent_session.clone().filter(|s| !s.is_empty());
        // Claude Code sets CLAUDE_CODE_SESSION_ID for its Bash tool: the
        // command comes from an agent, which receipts record and which is
        // told it may answer with the bridge's MCP tools too.
        let caller = if agent_session.is_some() {
            wit::Caller::AgentShell
        } else {
            wit::Caller::Terminal
        };
        Ok(Place {
            working_dir,
            project_dir,
            agent_session,
            caller,
            agent_process: None,
            client: None,
        })
    }
}

/// A guest instance ready to run verbs for one place.
struct Invocation {
    guest: Guest,
    context: wit::InvocationContext,
    max_content_bytes: u64,
    bridge_dir: PathBuf,
}

impl Invocation {
    fn open(global: &Global, place: Place) -> Result<Self> {
        let bridge_dir = bridge_dir(global)?;
        let (component, _) = GuestSource::from_global(global)?.load(global)?;
        Self::with_component(global, place, &component, &bridge_dir)
    }

    /// As [`Self::open`], with the guest already loaded and the bridge
    /// directory already prepared (the MCP server keeps both).
    fn with_component(
        global: &Global,
        place: Place,
        component: &wasmtime::component::Component,
        bridge_dir: &Path,
    ) -> Result<Self> {
        let bridge_dir = bridge_dir.to_path_buf();
        let mut guest = Guest::instantiate(component, &bridge_dir, &place.project_dir)?;
        let max_content_bytes = guest.limits()?.max_content_bytes;
        let context = wit::InvocationContext {
            session: global.session.clone().filter(|s| !s.is_empty()),
            agent_session: place.agent_session,
            project_dir: path_text(&place.project_dir)?,
            working_dir: path_text(&place.working_dir)?,
            settings: global.guest_settings.clone(),
            format: if global.json {
                wit::OutputFormat::Json
            } else {
                wit::OutputFormat::Text
            },
            bridge_dir: bridge_dir.display().to_string(),
            caller: place.caller,
            agent_process: place.agent_process,
            withheld: Vec::new(),
            retention: global.retention.clone(),
            client: place.client,
        };
        let mut invocation = Invocation {
            guest,
            context,
            max_content_bytes,
            bridge_dir,
        };
        invocation.withhold_loose()?;
        Ok(invocation)
    }

    /// Withholds the session directories that are not private, as they are
    /// now; a long-lived instance (the MCP server's) calls it before each
    /// verb, since sessions come and go.
    fn withhold_loose(&mut self) -> Result<()> {
        let loose = dirs::check_session_dirs(&self.bridge_dir)?;
        self.context.withheld = loose
            .iter()
            .map(|l| wit::WithheldSession {
                session_id: l.name.clone(),
                problem: l.problem.clone(),
            })
            .collect();
        self.guest.withhold(&self.bridge_dir, loose);
        Ok(())
    }

    fn run(&mut self, verb: &wit::Verb) -> Result<Result<wit::Report, wit::Failure>> {
        self.guest.run(&self.context, verb)
    }

    /// Says, on standard error, why each withheld session directory the
    /// guest tried to reach was refused, unless the guest's own words
    /// (`rendered`) already say it.
    fn print_withheld(&self, rendered: Option<&str>) {
        for loose in self.guest.withheld_touched() {
            let said = format!("session {} is refused as unsafe", loose.name);
            if rendered.is_none_or(|text| !text.contains(&said)) {
                eprintln!("warning: {}", loose.explanation());
            }
        }
    }

    /// The protocol version the guest implements.
    fn guest_version(&self) -> &'static str {
        self.guest.version()
    }

    /// The guest's text for a failure, as the hooks quote it.
    fn failure_text(failure: &wit::Failure) -> String {
        let text = failure.rendered.trim_end();
        text.strip_prefix("bridge-host: ")
            .unwrap_or(text)
            .to_string()
    }

    /// Writes the report's text to `out`; only once it is out is a claimed
    /// message given up. If this process dies before, or the write fails,
    /// the lease returns the message to the inbox.
    fn hand_over(
        &mut self,
        report: &wit::Report,
        verb_name: &str,
        out: &mut dyn Write,
    ) -> Result<()> {
        if report.rendered.len() > MAX_OUTPUT_BYTES {
            bail!(
                "the guest produced {} bytes of output, over the host's {MAX_OUTPUT_BYTES}-byte cap",
                report.rendered.len()
            );
        }
        out.write_all(report.rendered.as_bytes())?;
        out.flush()?;
        if let wit::Outcome::Delivered(d) | wit::Outcome::Answered(d) = &report.outcome
            && let Err(err) = self.guest.commit_delivery(&self.context, &d.ticket)?
        {
            eprintln!(
                "warning: the message was printed, but not filed as taken ({verb_name}): {}",
                describe(&err)
            );
        }
        Ok(())
    }
}

fn run_verb(global: &Global, verb: VerbArgs) -> Result<ExitCode> {
    // Never dropped: the process exits right after the verb, and the system
    // takes back the guest's memory, code and descriptors at once. Dropping
    // them first (unmapping, freeing tables) cost about 5 % of a `send`.
    let mut invocation =
        std::mem::ManuallyDrop::new(Invocation::open(global, Place::of_process(global)?)?);
    let wit_verb = to_wit_verb(verb, invocation.max_content_bytes, global.escapes)?;
    let verb_name = verbs::name_of(&wit_verb);
    let report = match invocation.run(&wit_verb)? {
        Ok(report) => report,
        Err(failure) => {
            print_warnings(&failure.warnings);
            invocation.print_withheld(Some(&failure.rendered));
            print_failure(&failure)?;
            return Ok(ExitCode::from(1));
        }
    };
    print_warnings(&report.warnings);
    invocation.print_withheld(None);
    invocation.hand_over(&report, verb_name, &mut io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a failure as the guest rendered it.
fn print_failure(failure: &wit::Failure) -> Result<()> {
    if failure.to_stdout {
        let mut out = io::stdout().lock();
        out.write_all(failure.rendered.as_bytes())?;
        out.flush()?;
    } else {
        io::stderr().write_all(failure.rendered.as_bytes())?;
    }
    Ok(())
}

/// A guest error in a few plain words, for the host's own warnings (the
/// commit after a printed delivery, whose failure the guest did not render).
fn describe(err: &wit::BridgeError) -> String {
    match err {
        wit::BridgeError::Io(p) | wit::BridgeError::Corrupt(p) => {
            format!("{}: {}", p.path, p.reason)
        }
        wit::BridgeError::InvalidArgument(why) | wit::BridgeError::Pointer(why) => why.clone(),
        other => format!("{other:?}"),
    }
}

/// Prints the guest's warnings on standard error, each on its own line.
fn print_warnings(warnings: &[String]) {
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
}

/// The largest guest component file accepted.
const MAX_GUEST_BYTES: u64 = 64 << 20;

fn read_guest(path: &Path) -> Result<Vec<u8>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Opening a FIFO for reading waits for a writer, forever if none comes;
    // without waiting, it is opened, and refused below as not a file.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options
        .open(path)
        .with_context(|| format!("cannot open the guest component {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read the guest component {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "the guest component {} is {}, not a regular file; give the path of a .wasm \
             component file (bridge-host guest check <file> tells whether it can run)",
            path.display(),
            file_kind(&meta)
        );
    }
    let mut bytes = Vec::new();
    file.take(MAX_GUEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the guest component {}", path.display()))?;
    if bytes.len() as u64 > MAX_GUEST_BYTES {
        bail!(
            "the guest component {} is over {MAX_GUEST_BYTES} bytes",
            path.display()
        );
    }
    Ok(bytes)
}

/// What kind of file `meta` describes, for an error message.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let kind = meta.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

fn path_text(path: &Path) -> Result<String> {
    #[cfg(windows)]
    let path = &dirs::git_bash_form(path)?;
    match path.to_str() {
        Some(text) => Ok(text.to_string()),
        None => bail!(
            "{} is not valid UTF-8; session-bridge stores paths as JSON text",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn escapes_name_control_characters_and_a_backslash_must_be_doubled() {
        assert_eq!(
            unescape(r"line one\r\nline two\r\n\tx \\ C:\\path \u{1b}[2J \u{0}\0 é").unwrap(),
            "line one\r\nline two\r\n\tx \\ C:\\path \u{1b}[2J \u{0}\u{0} é"
        );
        assert_eq!(
            unescape("no escapes: $HOME `id`").unwrap(),
            "no escapes: $HOME `id`"
        );
        for bad in [
            r"C:\path",
            r"\u{110000}",
            r"\u{}",
            r"\u1b",
            r"\u{1234567}",
            "end\\",
        ] {
            let err = unescape(bad).unwrap_err().to_string();
            assert!(
                err.contains("--escapes") && err.contains(r"\\"),
                "{bad}: {err}"
            );
        }
    }
}
