//! The invocation core every front end shares: the settings of one run
//! ([`Config`]), the guest to load ([`GuestSource`]), where a verb runs
//! ([`Place`]), and a guest instance ready to run verbs for it
//! ([`Invocation`]). The CLI, the hooks, the MCP server and the relay each
//! build on these and never on one another.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::sandbox::{Guest, wit};
use crate::{compile_cache, dirs, guests};

/// The most a guest may print for one verb.
const MAX_OUTPUT_BYTES: usize = 16 << 20;

/// The settings of one run of `bridge-host`, whatever its front end: the
/// CLI's global options and their environment variables.
#[derive(clap::Args, Clone)]
pub struct Config {
    /// The bridge directory (the guest's only preopened directory).
    #[arg(long, global = true, env = "BRIDGE_DIR", value_name = "DIR")]
    pub bridge_dir: Option<PathBuf>,
    /// Act as this session ID.
    #[arg(long, global = true, env = "BRIDGE_SESSION_ID", value_name = "ID")]
    pub session: Option<String>,
    /// The project directory [default: the working directory].
    #[arg(long, global = true, env = "PROJECT_DIR", value_name = "DIR")]
    pub project_dir: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Read content arguments with escapes: `\r`, `\n`, `\t`, `\u{1b}`
    /// and `\\` for a backslash. For text with control characters, which
    /// an agent's shell tool may refuse to carry (Claude Code's Bash tool
    /// refuses a CR).
    #[arg(long, global = true)]
    pub escapes: bool,
    /// Where compiled guests are cached [default: ~/.cache/session-bridge].
    #[arg(long, global = true, env = "BRIDGE_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Run this guest component instead of the embedded one.
    #[arg(long, global = true, env = "BRIDGE_GUEST", value_name = "FILE.wasm")]
    pub guest: Option<PathBuf>,
    /// A setting for the guest's policy (repeatable).
    #[arg(
        long = "guest-setting",
        global = true,
        env = "BRIDGE_GUEST_SETTINGS",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = parse_setting
    )]
    pub guest_settings: Vec<(String, String)>,
    /// How long taken messages stay in a session's mailbox before cleanup
    /// archives them, e.g. `7d` or `36h` [default: 7d].
    #[arg(long, global = true, env = "BRIDGE_RETENTION", value_name = "DURATION")]
    pub retention: Option<String>,
    /// The agent's own session ID, set by Claude Code.
    #[arg(long, global = true, env = "CLAUDE_CODE_SESSION_ID", hide = true)]
    pub agent_session: Option<String>,
}

impl Config {
    /// This bridge-host executable, with the flags that make a process it
    /// starts (the MCP server's reaper, an away answerer, the Codex
    /// waker) use the same bridge directory, cache, guest, guest settings
    /// and retention as this one.
    pub fn this_program(&self) -> Result<std::process::Command> {
        let exe = std::env::current_exe().context("cannot find this bridge-host executable")?;
        let mut command = std::process::Command::new(exe);
        if let Some(dir) = &self.bridge_dir {
            command.arg("--bridge-dir").arg(dir);
        }
        if let Some(dir) = &self.cache_dir {
            command.arg("--cache-dir").arg(dir);
        }
        if let Some(guest) = &self.guest {
            command.arg("--guest").arg(guest);
        }
        for (key, value) in &self.guest_settings {
            command.arg("--guest-setting").arg(format!("{key}={value}"));
        }
        if let Some(retention) = &self.retention {
            command.arg("--retention").arg(retention);
        }
        Ok(command)
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
pub struct GuestSource {
    pub wasm: compile_cache::Wasm<'static>,
    pub origin: String,
    /// The guest embedded in this binary, which build.rs compiled ahead of
    /// time: its first run compiles nothing.
    pub embedded: bool,
}

impl GuestSource {
    pub fn from_global(global: &Config) -> Result<Self> {
        match &global.guest {
            Some(path) => Self::file(path),
            None => Ok(Self::embedded()),
        }
    }

    /// The guest embedded in this binary.
    pub fn embedded() -> Self {
        GuestSource {
            wasm: compile_cache::Wasm::embedded(),
            origin: "embedded in bridge-host".into(),
            embedded: true,
        }
    }

    pub fn file(path: &Path) -> Result<Self> {
        Ok(GuestSource {
            wasm: compile_cache::Wasm::new(read_guest(path)?),
            origin: path.display().to_string(),
            embedded: false,
        })
    }

    /// The guest's machine code: shipped in this binary for the embedded
    /// guest, else loaded from the compile cache, else compiled (and
    /// cached).
    pub fn component(
        &self,
        global: &Config,
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
    pub fn load(&self, global: &Config) -> Result<(wasmtime::component::Component, String)> {
        let (component, _) = self
            .component(global)
            .with_context(|| format!("cannot load the guest {}", self.origin))?;
        let version = guests::check_compatible(&component, &self.origin)?;
        Ok((component, version))
    }
}

pub fn default_bridge_dir() -> Result<PathBuf> {
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
pub fn bridge_dir(global: &Config) -> Result<PathBuf> {
    let bridge_dir = match &global.bridge_dir {
        Some(dir) => absolute(dir)?,
        None => default_bridge_dir()?,
    };
    dirs::prepare_private_dir(&bridge_dir, "bridge directory")?;
    Ok(bridge_dir)
}

pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// Where an invocation runs: its working directory, project and agent.
pub struct Place {
    pub working_dir: PathBuf,
    pub project_dir: PathBuf,
    pub agent_session: Option<String>,
    /// Who runs the verb.
    pub caller: wit::Caller,
    /// The agent process behind the session, when a hook knows it.
    pub agent_process: Option<String>,
    /// The agent client, when it names itself (an MCP client).
    pub client: Option<String>,
}

impl Place {
    /// The process's own working directory, `--project-dir` and
    /// `CLAUDE_CODE_SESSION_ID`.
    pub fn of_process(global: &Config) -> Result<Self> {
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
pub struct Invocation {
    pub guest: Guest,
    pub context: wit::InvocationContext,
    /// The limits and times the guest keeps to.
    pub limits: wit::Limits,
    pub bridge_dir: PathBuf,
}

impl Invocation {
    pub fn open(global: &Config, place: Place) -> Result<Self> {
        let bridge_dir = bridge_dir(global)?;
        let (component, _) = GuestSource::from_global(global)?.load(global)?;
        Self::with_component(global, place, &component, &bridge_dir)
    }

    /// As [`Self::open`], with the guest already loaded and the bridge
    /// directory already prepared (the MCP server keeps both).
    pub fn with_component(
        global: &Config,
        place: Place,
        component: &wasmtime::component::Component,
        bridge_dir: &Path,
    ) -> Result<Self> {
        let bridge_dir = bridge_dir.to_path_buf();
        let mut guest = Guest::instantiate(component, &bridge_dir, &place.project_dir)?;
        guest.answerer(Some(crate::away::spawner(global, &bridge_dir)));
        let limits = guest.limits()?;
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
            limits,
            bridge_dir,
        };
        invocation.withhold_loose()?;
        Ok(invocation)
    }

    /// Withholds the session directories that are not private, as they are
    /// now; a long-lived instance (the MCP server's) calls it before each
    /// verb, since sessions come and go.
    pub fn withhold_loose(&mut self) -> Result<()> {
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

    pub fn run(&mut self, verb: &wit::Verb) -> Result<Result<wit::Report, wit::Failure>> {
        self.guest.run(&self.context, verb)
    }

    /// Says, on standard error, why each withheld session directory the
    /// guest tried to reach was refused, unless the guest's failure is
    /// about it and said so (`said`, its `refused` list).
    pub fn print_withheld(&self, said: &[String]) {
        for loose in self.guest.withheld_touched() {
            if !said.contains(&loose.name) {
                eprintln!("warning: {}", loose.explanation());
            }
        }
    }

    /// Whether the guest has tool wakes, `seen` and away answers, which a
    /// 0.1.0 guest lacks.
    pub fn guest_has_tool_wakes_and_away(&self) -> bool {
        self.guest.has_tool_wakes_and_away()
    }

    /// The guest's text for a failure, as the hooks, the MCP tools and the
    /// relay's log quote it.
    pub fn failure_text(failure: &wit::Failure) -> String {
        failure.message.clone()
    }

    /// Writes the report's text to `out`; only once it is out is a claimed
    /// message given up. If this process dies before, or the write fails,
    /// the lease returns the message to the inbox.
    pub fn hand_over(
        &mut self,
        report: &wit::Report,
        verb_name: &str,
        out: &mut dyn Write,
    ) -> Result<()> {
        self.hand_over_with(report, verb_name, |text| {
            out.write_all(text.as_bytes())?;
            out.flush()?;
            Ok(())
        })
    }

    /// As [`Self::hand_over`], with `deliver` putting the text where it
    /// goes (another program's queue, for instance); the claim is given up
    /// only when `deliver` succeeds.
    pub fn hand_over_with(
        &mut self,
        report: &wit::Report,
        verb_name: &str,
        deliver: impl FnOnce(&str) -> Result<()>,
    ) -> Result<()> {
        if report.rendered.len() > MAX_OUTPUT_BYTES {
            bail!(
                "the guest produced {} bytes of output, over the host's {MAX_OUTPUT_BYTES}-byte cap",
                report.rendered.len()
            );
        }
        deliver(&report.rendered)?;
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

/// A guest error in a few plain words, for the host's own warnings (the
/// commit after a printed delivery, whose failure the guest did not render).
pub fn describe(err: &wit::BridgeError) -> String {
    match err {
        wit::BridgeError::Io(p) | wit::BridgeError::Corrupt(p) => {
            format!("{}: {}", p.path, p.reason)
        }
        wit::BridgeError::InvalidArgument(why) | wit::BridgeError::Pointer(why) => why.clone(),
        other => format!("{other:?}"),
    }
}

/// Prints the guest's warnings on standard error, each on its own line.
pub fn print_warnings(warnings: &[String]) {
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
