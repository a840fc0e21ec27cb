//! Compiling a guest once, not on every run.
//!
//! Compiling the guest costs about 120 ms; loading a precompiled artifact
//! costs about 3 ms. Precompiled artifacts are machine code that `wasmtime`
//! loads without verifying it, so the cache is treated like `~/.ssh`: a
//! directory created 0700, refused if anyone else owns it or can write it,
//! entries refused unless they are our own 0600 regular files, and each
//! entry has a BLAKE3 digest beside it (`<key>.blake3`) that is checked
//! before the entry is deserialized. The key covers the engine's
//! compatibility hash and the guest's bytes, so a new host or a new guest
//! never loads a stale one.
//!
//! An entry is checked and loaded through one open file descriptor: it is
//! mapped and hashed, then handed to wasmtime as `/proc/self/fd/<n>`, which
//! maps the same file in place. Nothing can swap the file between the check
//! and the load, and the artifact is never copied onto the heap.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use wasmtime::Engine;
use wasmtime::component::Component;

const DIGEST_LEN: usize = 32;

/// Feeds `Hash` output into BLAKE3.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let bytes = self.0.finalize();
        u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The cache key of `wasm` on `engine`.
pub fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut hasher = Blake3Hasher(blake3::Hasher::new());
    hasher.0.update(b"session-bridge compile cache v2\0");
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.update(wasm);
    hasher.0.finalize().to_hex().to_string()
}

/// Where precompiled guests are kept unless `--cache-dir` says otherwise.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("session-bridge"))
}

/// The outcome of a cache lookup, for `bridge-host guest info` and benches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Compiled,
}

/// Loads `wasm` as a component, from the cache when a verified entry exists,
/// compiling it (and storing the result) otherwise. Problems with the cache
/// are reported on standard error and never stop the run.
pub fn load(engine: &Engine, wasm: &[u8], dir: Option<&Path>) -> Result<(Component, Source)> {
    let usable_dir = dir.and_then(|dir| {
        crate::dirs::prepare_private_dir(dir, "compile cache directory")
            .map_err(|e| eprintln!("warning: not using the compile cache: {e:#}"))
            .ok()
            .map(|()| dir)
    });
    let Some(dir) = usable_dir else {
        return compile(engine, wasm).map(|c| (c, Source::Compiled));
    };
    let key = cache_key(engine, wasm);
    let entry = Entry {
        artifact: dir.join(format!("{key}.cwasm")),
        digest: dir.join(format!("{key}.blake3")),
    };
    if let Some(component) = entry.load(engine) {
        return Ok((component, Source::Cache));
    }
    let component = compile(engine, wasm)?;
    if let Err(e) = entry.store(&component) {
        eprintln!(
            "warning: could not save the compiled guest to {}: {e:#}",
            entry.artifact.display()
        );
    }
    Ok((component, Source::Compiled))
}

#[cfg(feature = "compiler")]
fn compile(engine: &Engine, wasm: &[u8]) -> Result<Component> {
    Component::new(engine, wasm).map_err(|e| anyhow!("not a valid WebAssembly component: {e:#}"))
}

#[cfg(not(feature = "compiler"))]
fn compile(_engine: &Engine, _wasm: &[u8]) -> Result<Component> {
    Err(anyhow!(
        "this bridge-host was built without the `compiler` feature and no verified \
         precompiled guest is in the cache"
    ))
}

/// One cache entry: the serialized component and its digest beside it.
struct Entry {
    artifact: PathBuf,
    digest: PathBuf,
}

/// Opens `path` for reading if it is a regular file of ours that nobody
/// else can read or write; warns and returns None otherwise.
fn open_private(path: &Path) -> Option<fs::File> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.is_file() && meta.uid() == me && meta.permissions().mode() & 0o077 == 0 {
        Some(file)
    } else {
        eprintln!(
            "warning: ignoring the cached guest file {}: it is not a private file of yours",
            path.display()
        );
        None
    }
}

impl Entry {
    /// The entry's component, if the entry is ours, private and intact.
    fn load(&self, engine: &Engine) -> Option<Component> {
        let digest_file = open_private(&self.digest)?;
        let mut expected = Vec::with_capacity(DIGEST_LEN);
        std::io::Read::read_to_end(
            &mut std::io::Read::take(digest_file, DIGEST_LEN as u64 + 1),
            &mut expected,
        )
        .ok()?;
        let artifact = open_private(&self.artifact)?;
        // SAFETY: the file is a private regular file of ours; only this user
        // could change it while it is mapped, and the mapping is read-only.
        let mapped = unsafe { memmap2::Mmap::map(&artifact) }.ok()?;
        if blake3::hash(&mapped).as_bytes()[..] != expected[..] {
            eprintln!(
                "warning: ignoring the cached guest {}: its digest does not match (corrupted?)",
                self.artifact.display()
            );
            return None;
        }
        let through_fd = PathBuf::from(format!("/proc/self/fd/{}", artifact.as_raw_fd()));
        // SAFETY: the bytes are the exact serialization this engine wrote:
        // the file is ours, private, and its digest matched (see module
        // docs). Loading through our descriptor maps that same file.
        let loaded = if through_fd.exists() {
            unsafe { Component::deserialize_file(engine, &through_fd) }
        } else {
            unsafe { Component::deserialize(engine, &mapped[..]) }
        };
        loaded
            .map_err(|e| {
                eprintln!(
                    "warning: ignoring the cached guest {}: {e}",
                    self.artifact.display()
                )
            })
            .ok()
    }

    /// Writes the component, then its digest, each through a temporary
    /// file and a rename.
    fn store(&self, component: &Component) -> Result<()> {
        let body = component
            .serialize()
            .map_err(|e| anyhow!("cannot serialize: {e}"))?;
        write_private(&self.artifact, &body)?;
        write_private(&self.digest, blake3::hash(&body).as_bytes())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("entries live in the cache directory");
    let temp = dir.join(format!(".{}.tmp", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| fs::rename(&temp, path));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    Ok(written?)
}
