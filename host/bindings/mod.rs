//! One module per protocol version this host runs, each binding its own
//! frozen `wit/vX.Y.Z/` (as Zed binds each extension API version in a
//! `since_vX` module). The host works in the newest version's types
//! ([`current`]); an older guest is run through its module, which turns
//! the newest types into its own and back. A third version is one more
//! module here and one more arm in [`Bound`].

use anyhow::Result;
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use crate::sandbox::HostState;

/// Implements one version's `host` interface (the watcher resource and the
/// project pointer) for [`HostState`], plus the `extra` functions that
/// version adds; every version does the same work through `HostState`,
/// whose failures are the newest version's `host-error`. `$error` turns
/// one into this version's `$error_type`.
macro_rules! host_interface {
    ($($host:ident)::+, $error_type:ty, $error:expr, { $($extra:item)* }) => {
        impl $($host)::+::HostWatcher for $crate::sandbox::HostState {
            fn watch(
                &mut self,
                dir: String,
            ) -> wasmtime::Result<
                Result<wasmtime::component::Resource<$crate::watch::DirWatcher>, $error_type>,
            > {
                Ok(self.watch_dir(dir)?.map_err($error))
            }

            fn wait(
                &mut self,
                watcher: wasmtime::component::Resource<$crate::watch::DirWatcher>,
                timeout_ms: u32,
            ) -> wasmtime::Result<bool> {
                self.wait_watcher(watcher, timeout_ms)
            }

            fn drop(
                &mut self,
                watcher: wasmtime::component::Resource<$crate::watch::DirWatcher>,
            ) -> wasmtime::Result<()> {
                self.drop_watcher(watcher)
            }
        }

        impl $($host)::+::Host for $crate::sandbox::HostState {
            fn read_project_pointer(&mut self) -> wasmtime::Result<Option<String>> {
                Ok(self.pointer().read())
            }

            fn write_project_pointer(
                &mut self,
                id: String,
            ) -> wasmtime::Result<Result<(), $error_type>> {
                Ok(self.pointer().write(&id).map_err($error))
            }

            fn clear_project_pointer(
                &mut self,
                id: String,
            ) -> wasmtime::Result<Result<(), $error_type>> {
                Ok(self.pointer().clear(&id).map_err($error))
            }

            $($extra)*
        }
    };
}

/// `Instance::instantiate` for the binding module it is used in: links that
/// version's host interface and instantiates the component through its
/// `BridgePre`, naming `$version` when the component does not fit.
macro_rules! instantiate {
    ($version:literal) => {
        pub fn instantiate(
            component: &wasmtime::component::Component,
            linker: &mut wasmtime::component::Linker<$crate::sandbox::HostState>,
            store: &mut wasmtime::Store<$crate::sandbox::HostState>,
        ) -> anyhow::Result<Self> {
            Bridge::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |state| state)
                .map_err(|e| anyhow::anyhow!("cannot link the host interface: {e}"))?;
            let pre = linker
                .instantiate_pre(component)
                .and_then(BridgePre::new)
                .map_err(|e| {
                    anyhow::anyhow!(
                        concat!(
                            "the guest component does not fit this host's ",
                            "session-bridge:protocol@",
                            $version,
                            " world: {}"
                        ),
                        format!("{e:#}")
                    )
                })?;
            pre.instantiate(store)
                .map(Instance)
                .map_err(|e| anyhow::anyhow!("cannot instantiate the guest component: {e:#}"))
        }
    };
}

pub mod v0_1_0;
pub mod v0_2_0;

/// The newest version: the types the host speaks.
pub use v0_2_0 as current;

/// The newest version, which the embedded guest implements.
pub const CURRENT_VERSION: &str = "0.2.0";

/// The protocol versions this host runs, one per module here. A released
/// version is frozen; a new one is added beside it with its own
/// `wit/vX.Y.Z/`.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0", CURRENT_VERSION];

/// A guest instance, bound through the module of the version it targets.
pub enum Bound {
    V0_1_0(v0_1_0::Instance),
    V0_2_0(v0_2_0::Instance),
}

impl Bound {
    /// Links the host interface of `version` and instantiates `component`.
    ///
    /// # Errors
    /// When the component does not fit that version's world.
    pub fn instantiate(
        version: &str,
        component: &Component,
        linker: &mut Linker<HostState>,
        store: &mut Store<HostState>,
    ) -> Result<Self> {
        match version {
            "0.1.0" => v0_1_0::Instance::instantiate(component, linker, store).map(Bound::V0_1_0),
            "0.2.0" => v0_2_0::Instance::instantiate(component, linker, store).map(Bound::V0_2_0),
            other => anyhow::bail!(
                "this bridge-host has no binding for protocol {other}; it runs {}",
                crate::guests::supported()
            ),
        }
    }

    /// What the guest says about itself.
    pub fn info(&self, store: &mut Store<HostState>) -> wasmtime::Result<current::wit::GuestInfo> {
        match self {
            Bound::V0_1_0(guest) => guest.info(store),
            Bound::V0_2_0(guest) => guest.info(store),
        }
    }

    /// The limits the guest enforces.
    pub fn limits(&self, store: &mut Store<HostState>) -> wasmtime::Result<current::wit::Limits> {
        match self {
            Bound::V0_1_0(guest) => guest.limits(store),
            Bound::V0_2_0(guest) => guest.limits(store),
        }
    }

    /// The MCP server's words; none from a guest whose version has none.
    pub fn mcp_text(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Option<current::wit::McpText>> {
        match self {
            Bound::V0_1_0(guest) => guest.mcp_text(store),
            Bound::V0_2_0(guest) => guest.mcp_text(store),
        }
    }

    /// Runs one verb.
    pub fn run(
        &self,
        store: &mut Store<HostState>,
        context: &current::wit::InvocationContext,
        verb: &current::wit::Verb,
    ) -> wasmtime::Result<Result<current::wit::Report, current::wit::Failure>> {
        match self {
            Bound::V0_1_0(guest) => guest.run(store, context, verb),
            Bound::V0_2_0(guest) => guest.run(store, context, verb),
        }
    }

    /// Commits a claim the guest handed out.
    pub fn commit_delivery(
        &self,
        store: &mut Store<HostState>,
        context: &current::wit::InvocationContext,
        ticket: &current::wit::ClaimTicket,
    ) -> wasmtime::Result<Result<(), current::wit::BridgeError>> {
        match self {
            Bound::V0_1_0(guest) => guest.commit_delivery(store, context, ticket),
            Bound::V0_2_0(guest) => guest.commit_delivery(store, context, ticket),
        }
    }

    /// Whether the guest words a message for an agent that answers with
    /// MCP tools (the `tool-wake` caller), confirms what a transcript shows
    /// (`seen`) and answers for away sessions: all three came with 0.2.0.
    /// A front end asks this instead of comparing version numbers.
    pub fn has_tool_wakes_and_away(&self) -> bool {
        match self {
            Bound::V0_1_0(_) => false,
            Bound::V0_2_0(_) => true,
        }
    }

    /// The protocol version bound.
    pub fn version(&self) -> &'static str {
        match self {
            Bound::V0_1_0(_) => "0.1.0",
            Bound::V0_2_0(_) => "0.2.0",
        }
    }
}
