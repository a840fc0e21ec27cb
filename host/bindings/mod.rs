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

pub mod v0_1_0;
pub mod v0_2_0;

/// The newest version: the types the host speaks.
pub use v0_2_0 as current;

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
            _ => v0_2_0::Instance::instantiate(component, linker, store).map(Bound::V0_2_0),
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
