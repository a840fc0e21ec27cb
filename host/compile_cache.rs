//! Compiling a guest once, not on every run.
//!
//! Compiling the guest costs about 120 ms; loading a precompiled artifact
//! costs about 3 ms. Precompiled artifacts are machine code that `wasmtime`
//! loads without verifying it, so the cache is treated like `~/.ssh`: a
//! directory created 0700, refused if anyone else owns it or can write it,
//! entries refused unless they are our own 0600 regular files. The key
//! covers the engine's compatibility hash and the guest's digest, so a new
//! host or a new guest never loads a stale one.
//!
//! Each entry has a check file beside it (`<key>.check`) that records the
//! artifact's BLAKE3 digest and the identity of the file as written: its
//! device, inode, size, and modification and change times in nanoseconds.
//! Any write to the file, a rename over it or a copy changes that identity
//! (nobody but root can set a change time), so a file whose identity still
//! matches is the one this cache wrote and is loaded without reading it
//! all. Any other file is hashed in full and loaded only if the digest
//! matches, and its new identity is recorded. On file systems with whole
//! second timestamps the identity proves too little, and every load hashes.
//!
//! An entry is checked and loaded through one open file descriptor: it is
//! checked, then handed to wasmtime as `/proc/self/fd/<n>`, which maps the
//! same file in place. Nothing can swap the file between the check and the
//! load, and the artifact is never copied onto the heap. Off Linux (and on
//! Linux with the `portable` feature) there is no such path: the checked
//! descriptor is mapped and wasmtime loads a copy of those bytes, which costs
//! a copy of the artifact (about 1.4 MB) per run and the same guarantee.
//!
//! On Windows the cache is not used: its checks need an owner and a mode,
//! and Windows keeps permissions in ACLs, which this host does not read.
//! Every run there compiles the guest.

use std::borrow::Cow;
#[cfg(unix)]
use std::fs;
#[cfg(unix)]
use std::hash::{Hash, Hasher};
#[cfg(unix)]
use std::io::Write;
#[cfg(native_linux)]
use std::os::fd::AsRawFd;
#[cfg(unix)]
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
#[cfg(unix)]
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::sandbox;

/// Feeds `Hash` output into BLAKE3.
#[cfg(unix)]
struct Blake3Hasher(blake3::Hasher);

#[cfg(unix)]
impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let bytes = self.0.finalize();
        u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// A guest component's bytes and their BLAKE3 digest, which keys the cache.
pub struct Wasm<'a> {
    pub bytes: Cow<'a, [u8]>,
    pub digest: blake3::Hash,
}

impl Wasm<'static> {
    /// The guest embedded in this binary, with the digest build.rs computed.
    pub fn embedded() -> Self {
        Wasm {
            bytes: Cow::Borrowed(crate::DEFAULT_GUEST),
            digest: blake3::Hash::from_hex(crate::DEFAULT_GUEST_BLAKE3)
                .expect("build.rs writes a hex digest"),
        }
    }
}

impl<'a> Wasm<'a> {
    pub fn new(bytes: impl Into<Cow<'a, [u8]>>) -> Self {
        let bytes = bytes.into();
        let digest = blake3::hash(&bytes);
        Wasm { bytes, digest }
    }
}

#[cfg(unix)]
/// The cache key of `wasm` for `engine`, an engine without a compiler: its
/// compatibility hash covers the configuration and wasmtime's version, not
/// the CPU. Loading checks an artifact's CPU features against the host, so
/// a cache shared by two machines settles on an artifact both can run.
fn cache_key(engine: &Engine, wasm: &Wasm) -> String {
    let mut hasher = Blake3Hasher(blake3::Hasher::new());
    hasher.0.update(b"session-bridge compile cache v5\0");
    hasher.0.update(std::env::consts::ARCH.as_bytes());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.update(wasm.digest.as_bytes());
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

/// The private folder `name` of the cache directory (`cache_dir`, else
/// [`default_dir`]), created 0700 if needed, for state that front ends
/// keep between runs; None without a cache directory (no HOME).
pub fn private_subdir(
    cache_dir: Option<&Path>,
    name: &str,
    what: &str,
) -> anyhow::Result<Option<PathBuf>> {
    let Some(cache) = cache_dir.map(Path::to_path_buf).or_else(default_dir) else {
        return Ok(None);
    };
    let dir = cache.join(name);
    crate::dirs::prepare_private_dir(&dir, what)?;
    Ok(Some(dir))
}

/// Where a loaded guest's machine code came from, for `bridge-host guest
/// info` and benches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Compiled by build.rs and shipped in this binary.
    Shipped,
    Cache,
    Compiled,
}

/// The embedded guest as build.rs compiled it for this binary's target:
/// nothing is compiled and no cache is read or written. None when build.rs
/// could not compile it for the target (a cross build for another
/// architecture) or wasmtime refuses the artifact here; the caller then
/// compiles the guest as it would any other.
pub fn load_shipped() -> Option<Component> {
    if crate::DEFAULT_GUEST_PRECOMPILED.is_empty() {
        return None;
    }
    let engine = sandbox::runtime_engine().ok()?;
    // SAFETY: these bytes are part of this binary, as trusted as its own
    // code: build.rs wrote them with this exact wasmtime and the engine
    // configuration of `engine_config`. wasmtime still checks the
    // artifact's version, configuration, target and CPU features against
    // this engine and refuses a mismatch, which the caller survives.
    unsafe { Component::deserialize(&engine, crate::DEFAULT_GUEST_PRECOMPILED) }.ok()
}

/// Loads `wasm` as a component, from the cache when a verified entry exists,
/// compiling it (and storing the result) otherwise. Problems with the cache
/// are reported on standard error and never stop the run.
///
/// The component belongs to `component.engine()`: an engine without a
/// compiler when the cache served it, else the one that compiled it.
#[cfg(not(unix))]
pub fn load(wasm: &Wasm, dir: Option<&Path>) -> Result<(Component, Source)> {
    // See the module's documentation: without owner and mode checks, an
    // artifact another user wrote could be loaded, so none is.
    let _ = dir;
    compile(&sandbox::engine()?, &wasm.bytes).map(|c| (c, Source::Compiled))
}

/// Loads `wasm` as a component, from the cache when a verified entry exists,
/// compiling it (and storing the result) otherwise. Problems with the cache
/// are reported on standard error and never stop the run.
///
/// The component belongs to `component.engine()`: an engine without a
/// compiler when the cache served it, else the one that compiled it.
#[cfg(unix)]
pub fn load(wasm: &Wasm, dir: Option<&Path>) -> Result<(Component, Source)> {
    let usable_dir = dir.and_then(|dir| {
        crate::dirs::prepare_private_dir(dir, "compile cache directory")
            .map_err(|e| eprintln!("warning: not using the compile cache: {e:#}"))
            .ok()
            .map(|()| dir)
    });
    let Some(dir) = usable_dir else {
        return compile(&sandbox::engine()?, &wasm.bytes).map(|c| (c, Source::Compiled));
    };
    let runtime = sandbox::runtime_engine()?;
    let key = cache_key(&runtime, wasm);
    let entry = Entry {
        artifact: dir.join(format!("{key}.cwasm")),
        check: dir.join(format!("{key}.check")),
    };
    if let Some(component) = entry.load(&runtime) {
        return Ok((component, Source::Cache));
    }
    let component = compile(&sandbox::engine()?, &wasm.bytes)?;
    match entry.store(&component) {
        Ok(()) => prune(dir, &key),
        Err(e) => eprintln!(
            "warning: could not save the compiled guest to {}: {e:#}",
            entry.artifact.display()
        ),
    }
    Ok((component, Source::Compiled))
}

#[cfg(unix)]
/// An entry of another key not opened for this long is removed after a
/// compile. Loading reads the artifact, so its access time (kept to within
/// a day under Linux's default `relatime`) says when it was last used.
const UNUSED_ENTRY_AGE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

#[cfg(unix)]
/// Clears out what no load will use again, after a compile (rare, and
/// already slow): entries in the first cache format (`<key>.cwasm` with a
/// bare digest in `<key>.blake3`), which no host reads any more, and
/// entries of other keys unused for [`UNUSED_ENTRY_AGE`], which a new
/// wasmtime or guest leaves behind at about 1.4 MB each. Should an entry
/// still be wanted (a file system mounted `noatime` hides its use), the
/// next load compiles it again. Anything not named like an entry is left
/// alone.
fn prune(dir: &Path, keep: &str) {
    let Ok(listing) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    let unused = |path: &Path| {
        fs::symlink_metadata(path).is_ok_and(|meta| {
            let last = meta.accessed().into_iter().chain(meta.modified()).max();
            last.is_some_and(|t| now.duration_since(t).unwrap_or_default() > UNUSED_ENTRY_AGE)
        })
    };
    for entry in listing.flatten() {
        let name = entry.file_name();
        let Some((key, kind)) = name.to_str().and_then(|n| n.split_once('.')) else {
            continue;
        };
        let is_key = key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_key || key == keep {
            continue;
        }
        let artifact = dir.join(format!("{key}.cwasm"));
        let remove = match kind {
            "blake3" => true,
            "cwasm" => unused(&artifact),
            // A check whose artifact is gone guards nothing.
            "check" => unused(&artifact) || fs::symlink_metadata(&artifact).is_err(),
            _ => false,
        };
        if remove {
            let _ = fs::remove_file(&artifact);
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn compile(engine: &Engine, wasm: &[u8]) -> Result<Component> {
    Component::new(engine, wasm).map_err(|e| anyhow!("not a valid WebAssembly component: {e:#}"))
}

#[cfg(unix)]
/// One cache entry: the serialized component and its check file.
struct Entry {
    artifact: PathBuf,
    check: PathBuf,
}

#[cfg(unix)]
/// Which file an artifact is: any change to it changes one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
    changed_ns: i128,
}

#[cfg(unix)]
impl FileIdentity {
    fn of(meta: &fs::Metadata) -> Self {
        let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        FileIdentity {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.len(),
            modified_ns: ns(meta.mtime(), meta.mtime_nsec()),
            changed_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether the file system keeps sub-second times. With whole seconds, a
    /// change in the same second as the write would leave them equal.
    fn fine_grained(&self) -> bool {
        self.modified_ns % 1_000_000_000 != 0 || self.changed_ns % 1_000_000_000 != 0
    }
}

#[cfg(unix)]
/// What a check file says: the artifact's digest and the file it was
/// last seen as.
#[derive(Debug, PartialEq, Eq)]
struct CheckRecord {
    digest: blake3::Hash,
    file: FileIdentity,
}

#[cfg(unix)]
const CHECK_HEADER: &str = "session-bridge compile cache check v3";

#[cfg(unix)]
impl CheckRecord {
    fn to_text(&self) -> String {
        let f = &self.file;
        format!(
            "{CHECK_HEADER}\nblake3 {}\nfile {} {} {} {} {}\n",
            self.digest.to_hex(),
            f.device,
            f.inode,
            f.size,
            f.modified_ns,
            f.changed_ns
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        (lines.next()? == CHECK_HEADER).then_some(())?;
        let digest = blake3::Hash::from_hex(lines.next()?.strip_prefix("blake3 ")?).ok()?;
        let mut fields = lines.next()?.strip_prefix("file ")?.split(' ');
        let mut next = || fields.next();
        let file = FileIdentity {
            device: next()?.parse().ok()?,
            inode: next()?.parse().ok()?,
            size: next()?.parse().ok()?,
            modified_ns: next()?.parse().ok()?,
            changed_ns: next()?.parse().ok()?,
        };
        (next().is_none() && lines.next().is_none()).then_some(CheckRecord { digest, file })
    }
}

#[cfg(unix)]
/// Opens `path` for reading if it is a regular file of ours that nobody
/// else can read or write; warns and returns None otherwise.
fn open_private(path: &Path) -> Option<(fs::File, fs::Metadata)> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    let me = rustix::process::geteuid().as_raw();
    if meta.is_file() && meta.uid() == me && meta.permissions().mode() & 0o077 == 0 {
        Some((file, meta))
    } else {
        eprintln!(
            "warning: ignoring the cached guest file {}: it is not a private file of yours",
            path.display()
        );
        None
    }
}

#[cfg(unix)]
impl Entry {
    /// The entry's component, if the entry is ours, private and intact.
    fn load(&self, engine: &Engine) -> Option<Component> {
        let (check_file, _) = open_private(&self.check)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(check_file, 1024), &mut text)
            .ok()?;
        let Some(record) = CheckRecord::parse(&text) else {
            eprintln!(
                "warning: ignoring the cached guest {}: its check file is unreadable",
                self.artifact.display()
            );
            return None;
        };
        let (artifact, meta) = open_private(&self.artifact)?;
        let file = FileIdentity::of(&meta);
        if file != record.file || !file.fine_grained() {
            // SAFETY: the file is a private regular file of ours; only this
            // user could change it while it is mapped, and the mapping is
            // read-only.
            let mapped = unsafe { memmap2::Mmap::map(&artifact) }.ok()?;
            if blake3::hash(&mapped) != record.digest {
                eprintln!(
                    "warning: ignoring the cached guest {}: its digest does not match (corrupted?)",
                    self.artifact.display()
                );
                return None;
            }
            // The same bytes in another file (a copy, a restore): remember
            // this one, so that the next run need not hash it again.
            let renewed = CheckRecord {
                digest: record.digest,
                file,
            };
            let _ = write_private(&self.check, renewed.to_text().as_bytes());
        }
        let loaded = deserialize(engine, &artifact)?;
        loaded
            .map_err(|e| {
                eprintln!(
                    "warning: ignoring the cached guest {}: {e}",
                    self.artifact.display()
                )
            })
            .ok()
    }

    /// Writes the component, then its check file, each through a temporary
    /// file and a rename. The identity recorded is that of the file written,
    /// read through its descriptor after the rename, so a file swapped in
    /// meanwhile would not match it.
    fn store(&self, component: &Component) -> Result<()> {
        let body = component
            .serialize()
            .map_err(|e| anyhow!("cannot serialize: {e}"))?;
        let written = write_private(&self.artifact, &body)?;
        let record = CheckRecord {
            digest: blake3::hash(&body),
            file: FileIdentity::of(&written.metadata()?),
        };
        write_private(&self.check, record.to_text().as_bytes())?;
        Ok(())
    }
}

/// Loads the checked, open `artifact` in place, through its descriptor's
/// name in `/proc`, which maps that same file.
#[cfg(native_linux)]
fn deserialize(engine: &Engine, artifact: &fs::File) -> Option<wasmtime::Result<Component>> {
    let through_fd = PathBuf::from(format!("/proc/self/fd/{}", artifact.as_raw_fd()));
    if !through_fd.exists() {
        return deserialize_copy(engine, artifact);
    }
    // SAFETY: the bytes are the exact serialization this engine wrote: the
    // file is ours and private, and it is the very file the cache wrote,
    // unchanged since, or its digest matched (see module docs). Loading
    // through our descriptor maps that same file.
    Some(unsafe { Component::deserialize_file(engine, &through_fd) })
}

#[cfg(all(unix, not(native_linux)))]
fn deserialize(engine: &Engine, artifact: &fs::File) -> Option<wasmtime::Result<Component>> {
    deserialize_copy(engine, artifact)
}

/// Loads a copy of the checked, open `artifact`, read through a mapping of
/// its descriptor.
#[cfg(unix)]
fn deserialize_copy(engine: &Engine, artifact: &fs::File) -> Option<wasmtime::Result<Component>> {
    // SAFETY: the file is a private regular file of ours, checked as in
    // `deserialize`; the mapping is read-only and of the checked descriptor.
    let mapped = unsafe { memmap2::Mmap::map(artifact) }.ok()?;
    // SAFETY: as above: these are the bytes this engine wrote.
    Some(unsafe { Component::deserialize(engine, &mapped[..]) })
}

#[cfg(unix)]
/// Writes `bytes` to a private temporary file and renames it to `path`;
/// returns the file, still open.
fn write_private(path: &Path, bytes: &[u8]) -> Result<fs::File> {
    let dir = path.parent().expect("entries live in the cache directory");
    let temp = dir.join(format!(".{}.tmp", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut f| f.write_all(bytes).map(|()| f))
        .and_then(|f| fs::rename(&temp, path).map(|()| f));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    Ok(written?)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn record(changed_ns: i128) -> CheckRecord {
        CheckRecord {
            digest: blake3::hash(b"artifact"),
            file: FileIdentity {
                device: 2049,
                inode: 131_077,
                size: 1_442_152,
                modified_ns: 1_795_000_000_123_456_789,
                changed_ns,
            },
        }
    }

    #[test]
    fn check_records_round_trip_and_refuse_anything_else() {
        let good = record(1_795_000_000_123_456_790);
        let text = good.to_text();
        assert_eq!(CheckRecord::parse(&text), Some(good));
        assert_eq!(CheckRecord::parse(&text.replace("v3", "v2")), None);
        assert_eq!(CheckRecord::parse(&text.replace(" 131077 ", " x ")), None);
        assert_eq!(CheckRecord::parse(&format!("{text}extra\n")), None);
        assert_eq!(
            CheckRecord::parse(&text[..text.find("file").unwrap()]),
            None
        );
        let short = text.rsplit_once(' ').unwrap().0;
        assert_eq!(CheckRecord::parse(short), None);
        assert_eq!(CheckRecord::parse(""), None);
    }

    #[test]
    fn whole_second_times_never_count_as_proof() {
        let mut coarse = record(1_795_000_000_000_000_000);
        coarse.file.modified_ns = 1_795_000_000_000_000_000;
        assert!(!coarse.file.fine_grained());
        assert!(record(1_795_000_000_000_000_000).file.fine_grained());
    }
}
