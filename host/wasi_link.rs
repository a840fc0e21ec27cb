//! Links the WASI interfaces a guest imports, and no others.
//!
//! wasmtime-wasi's `add_to_linker_sync` defines every WASI 0.2 function,
//! sockets included, in a fresh linker for each process: about a third of
//! them are sockets, which no bridge guest needs, and defining a function
//! costs name hashing and a first run of its set-up code. Linking only what
//! the component imports gives the guest the same functions it would have
//! had, and a guest that imports `wasi:sockets` still gets them (denied all
//! the same by the WASI context; see `sandbox`).

use std::collections::HashSet;

use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime::{Engine, Result};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::sync as wasi;
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sockets};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};

/// `wasi:io` works on the resource table alone.
struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

type Add<T> = fn(&mut Linker<T>) -> Result<()>;

/// Every interface the host provides, by name without its version, and
/// what defines it.
fn interfaces<T: WasiView + 'static>() -> Vec<(&'static str, Add<T>)> {
    vec![
        ("wasi:io/error", |l| {
            wasmtime_wasi::p2::bindings::io::error::add_to_linker::<T, Io>(l, |t| t.ctx().table)
        }),
        ("wasi:io/poll", |l| {
            wasi::io::poll::add_to_linker::<T, Io>(l, |t| t.ctx().table)
        }),
        ("wasi:io/streams", |l| {
            wasi::io::streams::add_to_linker::<T, Io>(l, |t| t.ctx().table)
        }),
        ("wasi:clocks/wall-clock", |l| {
            clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)
        }),
        ("wasi:clocks/monotonic-clock", |l| {
            clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)
        }),
        ("wasi:filesystem/types", |l| {
            wasi::filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)
        }),
        ("wasi:filesystem/preopens", |l| {
            filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)
        }),
        ("wasi:random/random", |l| {
            random::random::add_to_linker::<T, WasiRandom>(l, T::random)
        }),
        ("wasi:random/insecure", |l| {
            random::insecure::add_to_linker::<T, WasiRandom>(l, T::random)
        }),
        ("wasi:random/insecure-seed", |l| {
            random::insecure_seed::add_to_linker::<T, WasiRandom>(l, T::random)
        }),
        ("wasi:cli/exit", |l| {
            cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)
        }),
        ("wasi:cli/environment", |l| {
            cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)
        }),
        ("wasi:cli/stdin", |l| {
            cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)
        }),
        ("wasi:cli/stdout", |l| {
            cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)
        }),
        ("wasi:cli/stderr", |l| {
            cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)
        }),
        ("wasi:cli/terminal-input", |l| {
            cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)
        }),
        ("wasi:cli/terminal-output", |l| {
            cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)
        }),
        ("wasi:cli/terminal-stdin", |l| {
            cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)
        }),
        ("wasi:cli/terminal-stdout", |l| {
            cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)
        }),
        ("wasi:cli/terminal-stderr", |l| {
            cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)
        }),
        ("wasi:sockets/network", |l| {
            let options = sockets::network::LinkOptions::default();
            sockets::network::add_to_linker::<T, WasiSockets>(l, &options, T::sockets)
        }),
        ("wasi:sockets/instance-network", |l| {
            sockets::instance_network::add_to_linker::<T, WasiSockets>(l, T::sockets)
        }),
        ("wasi:sockets/ip-name-lookup", |l| {
            sockets::ip_name_lookup::add_to_linker::<T, WasiSockets>(l, T::sockets)
        }),
        ("wasi:sockets/tcp-create-socket", |l| {
            sockets::tcp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)
        }),
        ("wasi:sockets/tcp", |l| {
            wasi::sockets::tcp::add_to_linker::<T, WasiSockets>(l, T::sockets)
        }),
        ("wasi:sockets/udp-create-socket", |l| {
            wasi::sockets::udp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)
        }),
        ("wasi:sockets/udp", |l| {
            wasi::sockets::udp::add_to_linker::<T, WasiSockets>(l, T::sockets)
        }),
    ]
}

/// The interfaces `component` imports, by name without version.
fn imported(component: &Component, engine: &Engine) -> HashSet<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| unversioned(name).to_string())
        .collect()
}

fn unversioned(name: &str) -> &str {
    name.split_once('@').map_or(name, |(bare, _)| bare)
}

/// Defines in `linker` the WASI interfaces `component` imports. Returns
/// whether `wasi:filesystem/types` was among them.
pub fn add_imported<T: WasiView + 'static>(
    linker: &mut Linker<T>,
    component: &Component,
) -> Result<bool> {
    let wanted = imported(component, component.engine());
    for (name, add) in interfaces::<T>() {
        if wanted.contains(name) {
            add(linker)?;
        }
    }
    Ok(wanted.contains("wasi:filesystem/types"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_dropped_from_interface_names() {
        assert_eq!(unversioned("wasi:cli/stdout@0.2.12"), "wasi:cli/stdout");
        assert_eq!(unversioned("wasi:cli/stdout"), "wasi:cli/stdout");
    }
}
