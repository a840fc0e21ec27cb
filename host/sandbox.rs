//! The guest's sandbox: one engine configuration, one host state struct,
//! exactly one preopened directory, bounded memory, fuel and output.

use std::path::{Component as PathPart, Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow};
use wasmtime::component::{Component, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::confine::{Confined, Confinement};
use crate::dirs::{LooseSession, ProjectPointer};
use crate::watch::DirWatcher;

use crate::bindings::Bound;
pub use crate::bindings::current::wit;

/// Linear memory a guest may grow to.
const MAX_GUEST_MEMORY: usize = 256 << 20;
/// Elements a guest table may grow to.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Instructions (roughly) a guest may execute in one call. Time spent
/// blocked in the host, waiting for messages, costs none.
const FUEL_PER_CALL: u64 = 20_000_000_000;
/// Watchers a guest may hold at once; each holds an open directory.
const MAX_WATCHERS: u32 = 4;
/// What the guest may write to its standard error (kept for trap reports).
const GUEST_STDERR_CAP: usize = 64 << 10;

/// The tokio runtime that WASI's host calls run in. wasmtime-wasi drives
/// each call through tokio; with no runtime entered it starts its own
/// multi-threaded one (worker threads at start-up, a park and wake-up on
/// every call). Every file operation here blocks the calling thread anyway
/// (`allow_blocking_current_thread`), so a current-thread runtime, entered
/// around each call into the guest, does the same work without those
/// threads.
fn host_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
        // The timer serves a guest that sleeps on a WASI clock (`subscribe`
        // and `poll`); without it that call panics the host.
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread tokio runtime needs no resources")
    });
    static TIMER: std::sync::Once = std::sync::Once::new();
    // WASI calls enter the runtime through its handle, which does not drive
    // the timer; one parked thread runs the runtime so that a sleeping
    // guest's deadline fires. It does nothing until a guest sleeps.
    TIMER.call_once(|| {
        let runtime: &'static tokio::runtime::Runtime = &RUNTIME;
        let started = std::thread::Builder::new()
            .name("wasi-timer".into())
            .stack_size(64 << 10)
            .spawn(move || runtime.block_on(std::future::pending::<()>()));
        if let Err(err) = started {
            eprintln!(
                "bridge-host: cannot start the timer thread ({err}); a guest that sleeps will hang"
            );
        }
    });
    &RUNTIME
}

/// The configuration every component is compiled for and run with.
/// Precompiled artifacts are only valid for this exact configuration.
fn config() -> Config {
    crate::engine_config::config(cfg!(windows))
}

/// An engine that can compile components.
pub fn engine() -> Result<Engine> {
    Engine::new(&config()).map_err(|e| anyhow!("cannot set up the wasm engine: {e}"))
}

/// An engine that only loads precompiled components. Setting up the
/// compiler costs about 0.1 ms per process (it probes the CPU and builds
/// its settings), which a run served from the compile cache never needs.
/// Loading checks each artifact's target, settings and CPU features
/// against this host, so nothing built for another one runs.
pub fn runtime_engine() -> Result<Engine> {
    let mut config = config();
    config.enable_compiler(false);
    Engine::new(&config).map_err(|e| anyhow!("cannot set up the wasm engine: {e}"))
}

/// Bounds a guest's memory and tables, remembering a refusal so that the
/// resulting trap can be explained.
struct GuestLimits {
    memory_refused: bool,
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= MAX_GUEST_MEMORY;
        self.memory_refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

/// Everything the host keeps per guest instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: GuestLimits,
    bridge: cap_std::fs::Dir,
    /// The bridge directory's path, for watches that can only be set by path
    /// (see `crate::watch`); each is checked against `bridge`.
    bridge_path: PathBuf,
    pointer: ProjectPointer,
    watchers: u32,
    stderr: MemoryOutputPipe,
    confinement: Confinement,
    interrupt: Option<Interrupt>,
    before_flush: Option<BeforeFlush>,
    answerer: Option<Answerer>,
}

/// Starts the away answerer for a session (see [`Guest::answerer`]).
pub type Answerer = Box<dyn FnMut(&str) -> Result<(), wit::HostError> + Send>;

/// Called once, the first time a verb asks for its writes to be flushed
/// (see [`Guest::before_flush`]).
pub type BeforeFlush = Box<dyn FnOnce() + Send>;

/// How often a waiting guest is interrupted to check for cancellation
/// and to report that it still waits, when an [`Interrupt`] is set.
const INTERRUPT_SLICE: Duration = Duration::from_secs(1);

/// Lets the caller of a waiting verb (the MCP server) cancel the wait and
/// hear that it goes on. While one is set, the guest's waits are cut into
/// one-second slices; after each, `waiting` is called, and once `cancelled`
/// is set the wait traps. The trapped instance must not be used again; the
/// protocol loses nothing, since a claim that is never committed returns
/// to its inbox when its lease ends, as when a `bridge-host run` process is
/// killed.
pub struct Interrupt {
    pub cancelled: Box<dyn Fn() -> bool + Send>,
    pub waiting: Box<dyn FnMut() + Send>,
}

/// The trap a cancelled wait ends in.
pub const CANCELLED: &str = "the wait was cancelled by the caller";

impl Confined for HostState {
    fn confinement(&mut self) -> &mut Confinement {
        &mut self.confinement
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A path the guest passed to a host import, accepted only as plain names
/// below the bridge directory (the capability `Dir` enforces the rest).
fn inside_bridge(path: &str) -> Result<PathBuf, wit::HostError> {
    let plain = !path.is_empty()
        && Path::new(path)
            .components()
            .all(|part| matches!(part, PathPart::Normal(_) | PathPart::CurDir));
    if plain {
        Ok(PathBuf::from(path))
    } else {
        Err(wit::HostError::OutsideBridgeDir(path.to_string()))
    }
}

/// A failed file operation on `path`, classed for the guest to word.
pub(crate) fn io_failure(path: &Path, error: &std::io::Error) -> wit::HostError {
    use std::io::ErrorKind;
    let kind = match error.kind() {
        ErrorKind::NotFound => wit::IoKind::NotFound,
        ErrorKind::PermissionDenied => wit::IoKind::PermissionDenied,
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => wit::IoKind::NoSpace,
        ErrorKind::ReadOnlyFilesystem => wit::IoKind::ReadOnly,
        _ => wit::IoKind::Other,
    };
    wit::HostError::Io(wit::IoFailure {
        path: path.display().to_string(),
        kind,
        detail: error.to_string(),
    })
}

/// What the host interface does, whichever version's binding calls it.
impl HostState {
    pub(crate) fn watch_dir(
        &mut self,
        dir: String,
    ) -> wasmtime::Result<Result<Resource<DirWatcher>, wit::HostError>> {
        if self.watchers >= MAX_WATCHERS {
            return Ok(Err(wit::HostError::TooManyWatchers(MAX_WATCHERS)));
        }
        if self.confinement.refuses(&dir) {
            return Ok(Err(wit::HostError::Withheld(dir)));
        }
        let path = self.bridge_path.join(&dir);
        let opened = inside_bridge(&dir).and_then(|rel| {
            self.bridge
                .open_dir(&rel)
                .map_err(|e| io_failure(&path, &e))
        });
        let watcher = match opened.and_then(|d| DirWatcher::new(&d, &path)) {
            Ok(watcher) => watcher,
            Err(why) => return Ok(Err(why)),
        };
        self.watchers += 1;
        Ok(Ok(self.table.push(watcher)?))
    }

    pub(crate) fn wait_watcher(
        &mut self,
        watcher: Resource<DirWatcher>,
        timeout_ms: u32,
    ) -> wasmtime::Result<bool> {
        let timeout = Duration::from_millis(timeout_ms.into());
        let watcher = self.table.get_mut(&watcher)?;
        let Some(interrupt) = &mut self.interrupt else {
            return Ok(watcher.wait(timeout));
        };
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if (interrupt.cancelled)() {
                return Err(wasmtime::Error::msg(CANCELLED));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let changed = watcher.wait(left.min(INTERRUPT_SLICE));
            // A change seen after the cancel must not wake the guest to
            // claim what nobody will receive.
            if (interrupt.cancelled)() {
                return Err(wasmtime::Error::msg(CANCELLED));
            }
            if changed {
                return Ok(true);
            }
            (interrupt.waiting)();
        }
    }

    pub(crate) fn drop_watcher(&mut self, watcher: Resource<DirWatcher>) -> wasmtime::Result<()> {
        self.table.delete(watcher)?;
        self.watchers -= 1;
        Ok(())
    }

    pub(crate) fn pointer(&self) -> &ProjectPointer {
        &self.pointer
    }

    /// Whether the agent process `process` (as [`crate::process`] names
    /// one) runs; None when this platform cannot tell.
    /// The guest's `answer-away`: starts the away answerer for `session`
    /// through the front end's [`Answerer`]; `unsupported` without one.
    pub(crate) fn start_answerer(&mut self, session: &str) -> Result<(), wit::HostError> {
        match self.answerer.as_mut() {
            Some(answerer) => answerer(session),
            None => Err(wit::HostError::Unsupported),
        }
    }

    pub(crate) fn agent_process_running(&self, process: &str) -> Option<bool> {
        let process = crate::process::ProcessId::parse(process)?;
        crate::process::ProcessId::unsupported()
            .is_none()
            .then(|| process.is_running())
    }

    /// Flushes the file system that holds the bridge directory to stable
    /// storage in one call (`syncfs` on Linux). Elsewhere, and on Linux
    /// with the `portable` feature, there is no such call: the guest is
    /// told so and flushes file by file.
    pub(crate) fn flush_bridge_fs(&mut self) -> Result<(), wit::HostError> {
        if let Some(hook) = self.before_flush.take() {
            hook();
        }
        #[cfg(native_linux)]
        {
            let failed = |err: std::io::Error| io_failure(&self.bridge_path, &err);
            // The directory handle is a path handle, which syncfs refuses:
            // it takes a descriptor open for reading.
            let dir = self.bridge.open(".").map_err(failed)?;
            rustix::fs::syncfs(&dir).map_err(|e| failed(e.into()))
        }
        #[cfg(not(native_linux))]
        {
            Err(wit::HostError::Unsupported)
        }
    }
}

/// One instantiated guest, ready to run verbs.
pub struct Guest {
    store: Store<HostState>,
    bindings: Bound,
}

impl Guest {
    /// Instantiates `component` with the bridge directory as its only
    /// preopened directory and nothing else: no environment, no arguments,
    /// no network, no standard input.
    pub fn instantiate(
        component: &Component,
        bridge_dir: &Path,
        project_dir: &Path,
    ) -> Result<Self> {
        let _entered = host_runtime().enter();
        let bridge = crate::dirs::open_bridge_dir(bridge_dir)?;
        let stderr = MemoryOutputPipe::new(GUEST_STDERR_CAP);
        let wasi = WasiCtxBuilder::new()
            // The host runs one guest call at a time on one thread: blocking
            // file operations in place avoids a thread hop for each of them.
            // It must come before the preopen, which takes the setting along.
            .allow_blocking_current_thread(true)
            .preopened_dir(bridge_dir, ".", FsPerms::ReadWrite)
            .map_err(|e| anyhow!("cannot grant {}: {e}", bridge_dir.display()))?
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limits: GuestLimits {
                memory_refused: false,
            },
            bridge,
            bridge_path: std::path::absolute(bridge_dir)
                .map_err(|e| anyhow!("cannot resolve {}: {e}", bridge_dir.display()))?,
            pointer: ProjectPointer::new(project_dir),
            watchers: 0,
            stderr,
            confinement: Confinement::default(),
            interrupt: None,
            before_flush: None,
            answerer: None,
        };
        let engine = component.engine();
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limits);
        let mut linker = Linker::<HostState>::new(engine);
        crate::wasi_link::add_imported(&mut linker, component)
            .and_then(|filesystem| match filesystem {
                true => crate::listing::add_to_linker(&mut linker)
                    .and_then(|()| crate::confine::add_to_linker(&mut linker)),
                false => Ok(()),
            })
            .map_err(|e| anyhow!("cannot link WASI: {e}"))?;
        store.set_fuel(FUEL_PER_CALL).map_err(|e| anyhow!("{e}"))?;
        let version = crate::guests::protocol_version(component)
            .unwrap_or_else(|| crate::guests::CURRENT_VERSION.to_string());
        let bindings = Bound::instantiate(&version, component, &mut linker, &mut store)?;
        Ok(Guest { store, bindings })
    }

    /// Keeps the guest out of the `loose` session directories under
    /// `bridge_dir` (see `confine`).
    pub fn withhold(&mut self, bridge_dir: &Path, loose: Vec<LooseSession>) {
        self.store.data_mut().confinement = Confinement::new(bridge_dir, loose);
    }

    /// Gives the guest the project pointer of `project_dir` (an instance
    /// starts with its own project's). A hook finds its session by the
    /// agent's ID alone, with no project, and then lets the guest's `stop`
    /// clear the pointer of the project the hook runs for, when it still
    /// names that session.
    pub fn use_project_pointer(&mut self, project_dir: &Path) {
        self.store.data_mut().pointer = ProjectPointer::new(project_dir);
    }

    /// Sets or clears what is called when the guest next asks for the
    /// bridge directory to be flushed: by then the verb has made all its
    /// writes, and only waits for the disk. The relay lets the next batch
    /// of received mail be written from then on, so that batches land in
    /// the order received while their flushes overlap.
    /// How this guest's `answer-away` starts an away answerer; none (the
    /// default) tells the guest it cannot.
    pub fn answerer(&mut self, answerer: Option<Answerer>) {
        self.store.data_mut().answerer = answerer;
    }

    pub fn before_flush(&mut self, hook: Option<BeforeFlush>) {
        self.store.data_mut().before_flush = hook;
    }

    /// Sets or clears the [`Interrupt`] for the verbs that follow.
    pub fn interrupt(&mut self, interrupt: Option<Interrupt>) {
        self.store.data_mut().interrupt = interrupt;
    }

    /// The withheld session directories the guest tried to reach so far.
    pub fn withheld_touched(&self) -> Vec<LooseSession> {
        self.store
            .data()
            .confinement
            .touched()
            .into_iter()
            .cloned()
            .collect()
    }

    /// Refills the instruction budget and enters the host's tokio runtime for
    /// the coming call (see [`host_runtime`]).
    fn refuel(&mut self) -> Result<tokio::runtime::EnterGuard<'static>> {
        let entered = host_runtime().enter();
        self.store
            .set_fuel(FUEL_PER_CALL)
            .map_err(|e| anyhow!("{e}"))?;
        Ok(entered)
    }

    /// Explains a trap, with whatever the guest wrote to standard error.
    fn trapped(&self, call: &str, err: wasmtime::Error) -> anyhow::Error {
        let stderr = self.store.data().stderr.contents();
        let said = String::from_utf8_lossy(&stderr);
        let said = said.trim();
        let out_of_fuel = err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::OutOfFuel);
        let mut message = if out_of_fuel {
            format!(
                "the guest used up its instruction budget in `{call}` (a runaway loop?) and was stopped"
            )
        } else if self.store.data().limits.memory_refused {
            format!(
                "the guest tried to use more than {} MiB of memory in `{call}` and was stopped",
                MAX_GUEST_MEMORY >> 20
            )
        } else if format!("{err:?}").contains("hostcall") {
            format!(
                "the guest tried to pass the host more data than it accepts in `{call}` and was stopped"
            )
        } else {
            format!("the guest failed in `{call}`: {err:?}")
        };
        if !said.is_empty() {
            message.push_str(&format!("\nguest stderr: {said}"));
        }
        anyhow!(message)
    }

    /// The protocol version the guest implements.
    pub fn version(&self) -> &'static str {
        self.bindings.version()
    }

    /// Whether the guest has tool wakes, `seen` and away answers
    /// ([`Bound::has_tool_wakes_and_away`]).
    pub fn has_tool_wakes_and_away(&self) -> bool {
        self.bindings.has_tool_wakes_and_away()
    }

    /// What the guest says about itself.
    pub fn info(&mut self) -> Result<wit::GuestInfo> {
        let _entered = self.refuel()?;
        let info = self.bindings.info(&mut self.store);
        info.map_err(|e| self.trapped("info", e))
    }

    pub fn limits(&mut self) -> Result<wit::Limits> {
        let _entered = self.refuel()?;
        let limits = self.bindings.limits(&mut self.store);
        limits.map_err(|e| self.trapped("limits", e))
    }

    /// The MCP server's words; none from a guest whose version words none.
    pub fn mcp_text(&mut self) -> Result<Option<wit::McpText>> {
        let _entered = self.refuel()?;
        let text = self.bindings.mcp_text(&mut self.store);
        text.map_err(|e| self.trapped("mcp-text", e))
    }

    pub fn run(
        &mut self,
        context: &wit::InvocationContext,
        verb: &wit::Verb,
    ) -> Result<Result<wit::Report, wit::Failure>> {
        let _entered = self.refuel()?;
        let result = self.bindings.run(&mut self.store, context, verb);
        result.map_err(|e| self.trapped("run", e))
    }

    pub fn commit_delivery(
        &mut self,
        context: &wit::InvocationContext,
        ticket: &wit::ClaimTicket,
    ) -> Result<Result<(), wit::BridgeError>> {
        let _entered = self.refuel()?;
        let done = self
            .bindings
            .commit_delivery(&mut self.store, context, ticket);
        done.map_err(|e| self.trapped("commit-delivery", e))
    }
}
