//! What one WebAssembly instance of the guest keeps between calls to its
//! exports: the bridge directory the host preopened, and what the bridges
//! it builds remember (see [`Caches`]).
//!
//! A component's exports are free functions, and `component` builds a
//! [`Bridge`](crate::Bridge) per call (the policy's settings come with
//! each call), so what outlives a call must live in a static. An instance
//! runs one call at a time on its one thread, so that static is a
//! thread-local, and it is the guest's only one that stays: natively
//! (tests, fuzzing, tools) nothing lives here, each bridge owns its
//! caches and files go through the standard library.

use std::rc::Rc;

use crate::memo::Caches;

/// The state of this instance.
#[derive(Default)]
struct Instance {
    /// Shared by every bridge this instance builds.
    caches: Rc<Caches>,
    /// The bridge directory: the one directory the host preopens, as ".".
    #[cfg(target_os = "wasi")]
    bridge_dir: std::cell::OnceCell<Option<wasip2::filesystem::types::Descriptor>>,
}

thread_local! {
    static INSTANCE: Instance = Instance::default();
}

/// What this instance's bridges remember.
pub(crate) fn caches() -> Rc<Caches> {
    INSTANCE.with(|instance| Rc::clone(&instance.caches))
}

/// Runs `op` on the preopened bridge directory; None when the host
/// preopened none.
#[cfg(target_os = "wasi")]
pub(crate) fn with_bridge_dir<R>(
    op: impl FnOnce(&wasip2::filesystem::types::Descriptor) -> R,
) -> Option<R> {
    INSTANCE.with(|instance| {
        let dir = instance.bridge_dir.get_or_init(|| {
            wasip2::filesystem::preopens::get_directories()
                .into_iter()
                .find(|(_, name)| name == ".")
                .map(|(dir, _)| dir)
        });
        dir.as_ref().map(op)
    })
}
