//! The wasmtime configuration every guest is compiled for and run with.
//! build.rs includes this file too (`#[path]`), so that the embedded guest
//! it compiles ahead of time is compiled for exactly the engine that loads
//! it: an artifact is only valid for the configuration it was made with,
//! and loading refuses any other.

use wasmtime::Config;

/// The configuration for a target; `windows` says whether it is Windows
/// (build.rs reads that from the target being built, not from the machine
/// building it).
pub fn config(windows: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    // One instance per process: a copy-on-write memory image (a memfd)
    // would cost more to set up than the copy it saves, and would fail
    // under a small RLIMIT_FSIZE before the guest could report anything.
    config.memory_init_cow(false);
    // Unwind tables only help outside tools walk through guest frames;
    // wasmtime's own traps and backtraces do not use them. Loading a guest
    // registered one per function with the system unwinder (and removed
    // them again at exit): about 1,000 calls for the default guest.
    // Windows needs them to unwind through guest frames, and wasmtime
    // refuses to build an engine there without them.
    if !windows {
        config.native_unwind_info(false);
    }
    config
}
