//! Which guests this host can run, and what a guest component says about
//! itself. A guest names the protocol version it implements through the
//! versioned interfaces it imports (`session-bridge:protocol/...@X.Y.Z`);
//! a version this host does not speak is refused before anything runs.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use wasmtime::component::Component;

/// The protocol package every guest implements.
pub const PACKAGE: &str = "session-bridge:protocol";

pub use crate::bindings::{CURRENT_VERSION, SUPPORTED_VERSIONS};

/// The protocol version a component targets, from its imports; None when it
/// imports no `session-bridge:protocol` interface at all.
pub fn protocol_version(component: &Component) -> Option<String> {
    let prefix = format!("{PACKAGE}/");
    component
        .component_type()
        .imports(component.engine())
        .find_map(|(name, _)| {
            let (_, version) = name.strip_prefix(&prefix)?.split_once('@')?;
            Some(version.to_string())
        })
}

/// The versions this host runs, as `package@version` names.
pub fn supported() -> String {
    SUPPORTED_VERSIONS
        .iter()
        .map(|v| format!("{PACKAGE}@{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses a component this host cannot run, naming both sides' versions.
///
/// # Errors
/// When the component targets another protocol version, or none.
pub fn check_compatible(component: &Component, origin: &str) -> Result<String> {
    match protocol_version(component) {
        Some(version) if SUPPORTED_VERSIONS.contains(&version.as_str()) => Ok(version),
        Some(version) => bail!(
            "the guest {origin} targets {PACKAGE}@{version}, but this bridge-host supports {}; \
             rebuild the guest against one of those, or use a bridge-host that supports it",
            supported()
        ),
        None => bail!(
            "{origin} is not a session-bridge guest: it imports no {PACKAGE} interface \
             (this bridge-host supports {})",
            supported()
        ),
    }
}

/// A private, empty, temporary directory, removed on drop: the bridge
/// directory of a guest that is only asked about itself.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new() -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!("bridge-host-{}-{nanos}", std::process::id()));
        crate::dirs::prepare_private_dir(&path, "scratch directory")?;
        Ok(ScratchDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
