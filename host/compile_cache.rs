//! Compiling a guest once, not on every run.
//!
//! Compiling the guest costs about 120 ms; loading a precompiled artifact
//! costs about 3 ms. Precompiled artifacts are machine code that `wasmtime`
//! loads without verifying it, so the cache is treated like `~/.ssh`: a
//! directory created 0700, refused if anyone else owns it or can write it,
//! entries refused unless they are our own 0600 regular files, and each
//! entry carries a BLAKE3 digest of its body that is checked before the
//! body is deserialized. The key covers the engine's compatibility hash and
//! the guest's bytes, so a new host or a new guest never loads a stale one.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
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
    hasher.0.update(b"session-bridge compile cache v1\0");
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
    let entry = dir.join(format!("{}.cwasm", cache_key(engine, wasm)));
    if let Some(bytes) = read_verified(&entry) {
        // SAFETY: the body is the exact serialization this engine wrote: the
        // file is ours, private, and its digest matched (see module docs).
        match unsafe { Component::deserialize(engine, &bytes[DIGEST_LEN..]) } {
            Ok(component) => return Ok((component, Source::Cache)),
            Err(e) => eprintln!(
                "warning: ignoring the cached guest {}: {e}",
                entry.display()
            ),
        }
    }
    let component = compile(engine, wasm)?;
    if let Err(e) = store(&entry, &component) {
        eprintln!(
            "warning: could not save the compiled guest to {}: {e:#}",
            entry.display()
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

/// A cache entry (digest, then body) if it is ours, private, and intact.
fn read_verified(entry: &Path) -> Option<Vec<u8>> {
    let meta = fs::symlink_metadata(entry).ok()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let private = meta.is_file() && meta.uid() == me && meta.permissions().mode() & 0o077 == 0;
    if !private {
        eprintln!(
            "warning: ignoring the cached guest {}: it is not a private file of yours",
            entry.display()
        );
        return None;
    }
    let bytes = fs::read(entry).ok()?;
    if bytes.len() < DIGEST_LEN {
        return None;
    }
    let (digest, body) = bytes.split_at(DIGEST_LEN);
    if blake3::hash(body).as_bytes() != digest {
        eprintln!(
            "warning: ignoring the cached guest {}: its digest does not match (corrupted?)",
            entry.display()
        );
        return None;
    }
    Some(bytes)
}

fn store(entry: &Path, component: &Component) -> Result<()> {
    let body = component
        .serialize()
        .map_err(|e| anyhow!("cannot serialize: {e}"))?;
    let dir = entry.parent().expect("entries live in the cache directory");
    let temp = dir.join(format!(".{}.tmp", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut f| {
            f.write_all(blake3::hash(&body).as_bytes())?;
            f.write_all(&body)
        })
        .and_then(|()| fs::rename(&temp, entry));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    Ok(written?)
}
