//! The embedded guest ships compiled: a first run compiles nothing and
//! writes no cache. A guest given with `--guest` is compiled once, cached
//! privately and verified before use.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::util::World;

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect()
}

/// The embedded guest's component, given as a file: it is compiled on
/// first use and cached, as any guest given with `--guest` is.
fn guest_file() -> &'static str {
    env!("BRIDGE_GUEST_WASM")
}

/// Session "a", started with its compile cache in `cache`, running the
/// guest from a file.
struct Cached {
    w: World,
    a: PathBuf,
    cache: PathBuf,
}

impl Cached {
    fn started() -> Self {
        let w = World::new();
        let a = w.project("a");
        let cache = w.root.path().join("cache");
        w.cmd(&a)
            .env("BRIDGE_CACHE_DIR", &cache)
            .env("BRIDGE_GUEST", guest_file())
            .args(["run", "start"])
            .ok();
        Cached { w, a, cache }
    }

    /// `run id` with the cache: its output, and a description for failures.
    fn id(&self) -> (std::process::Output, String) {
        self.w
            .cmd(&self.a)
            .env("BRIDGE_CACHE_DIR", &self.cache)
            .env("BRIDGE_GUEST", guest_file())
            .args(["run", "id"])
            .output()
    }

    /// `run id` succeeds with nothing on standard error: the cache served
    /// it without a warning.
    fn assert_quiet_id(&self) {
        let (out, description) = self.id();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{description}"
        );
    }
}

#[test]
fn a_first_run_from_an_empty_cache_compiles_nothing_and_writes_no_cache() {
    let w = World::new();
    let a = w.project("a");
    let cache = w.root.path().join("fresh-cache");
    let id = w
        .cmd(&a)
        .env("BRIDGE_CACHE_DIR", &cache)
        .args(["run", "start"])
        .ok();
    assert_eq!(id.trim().len(), 6, "{id}");
    let peers = w
        .cmd(&a)
        .env("BRIDGE_CACHE_DIR", &cache)
        .args(["run", "peers"])
        .ok();
    assert!(peers.contains(id.trim()), "{peers}");
    assert!(
        !cache.exists() || entries(&cache).is_empty(),
        "the embedded guest was compiled into the cache: {:?}",
        entries(&cache)
    );
    let info = w
        .cmd(&a)
        .env("BRIDGE_CACHE_DIR", &cache)
        .args(["guest", "info"])
        .ok();
    assert!(
        info.contains("machine code: compiled when bridge-host was built, shipped in it"),
        "{info}"
    );
    // A guest given as a file is compiled, then served by the cache.
    let from_file = |w: &World| {
        w.cmd(&a)
            .env("BRIDGE_CACHE_DIR", &cache)
            .args(["guest", "info", "--guest", guest_file()])
            .ok()
    };
    assert!(from_file(&w).contains("machine code: compiled now"));
    assert!(from_file(&w).contains("machine code: loaded from the compile cache"));
}

#[test]
fn the_cache_is_private_and_reused() {
    let c = Cached::started();
    let mode = std::fs::metadata(&c.cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let cached = entries(&c.cache);
    assert_eq!(cached.len(), 1);
    let mode = std::fs::metadata(&cached[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let check = cached[0].with_extension("check");
    let record = std::fs::read_to_string(&check).unwrap();
    let digest = blake3::hash(&std::fs::read(&cached[0]).unwrap());
    assert!(
        record.contains(&format!("\nblake3 {}\n", digest.to_hex())),
        "{record}"
    );
    let mode = std::fs::metadata(&check).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let written = std::fs::metadata(&cached[0]).unwrap().modified().unwrap();
    c.assert_quiet_id();
    assert_eq!(
        std::fs::metadata(&cached[0]).unwrap().modified().unwrap(),
        written
    );
}

#[test]
fn a_tampered_cache_entry_is_never_loaded() {
    let c = Cached::started();
    let entry = entries(&c.cache).remove(0);
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&entry, &bytes).unwrap();
    let (out, description) = c.id();
    assert!(out.status.success(), "{description}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("digest does not match"),
        "{description}"
    );
    // It was replaced by a good one.
    c.assert_quiet_id();
}

/// The inode number an entry's check file records.
fn recorded_inode(entry: &Path) -> u64 {
    let record = std::fs::read_to_string(entry.with_extension("check")).unwrap();
    let file = record
        .lines()
        .find_map(|l| l.strip_prefix("file "))
        .unwrap();
    file.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_copied_cache_entry_is_hashed_once_then_trusted() {
    use std::os::unix::fs::MetadataExt;
    let c = Cached::started();
    let entry = entries(&c.cache).remove(0);
    assert_eq!(
        recorded_inode(&entry),
        std::fs::metadata(&entry).unwrap().ino()
    );
    // A copy put in place, as a backup restore would: same bytes, new file.
    let copy = c.cache.join("copy");
    std::fs::copy(&entry, &copy).unwrap();
    std::fs::rename(&copy, &entry).unwrap();
    let copied_inode = std::fs::metadata(&entry).unwrap().ino();
    assert_ne!(recorded_inode(&entry), copied_inode);
    c.assert_quiet_id();
    // Its digest matched, so it was used as it is and recorded.
    assert_eq!(std::fs::metadata(&entry).unwrap().ino(), copied_inode);
    assert_eq!(recorded_inode(&entry), copied_inode);
}

/// A cache directory made beforehand, with `mode`.
fn cache_dir_with_mode(w: &World, mode: u32) -> PathBuf {
    let cache = w.root.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(mode)).unwrap();
    cache
}

/// Writes `name` in `dir`, last accessed and modified `days_ago`.
fn write_aged(dir: &Path, name: &str, days_ago: u64) {
    let path = dir.join(name);
    std::fs::write(&path, b"x").unwrap();
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(days_ago * 86_400);
    let times = std::fs::FileTimes::new()
        .set_accessed(then)
        .set_modified(then);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_times(times)
        .unwrap();
}

#[test]
fn a_compile_removes_old_format_and_long_unused_entries_only() {
    let w = World::new();
    let a = w.project("a");
    let cache = cache_dir_with_mode(&w, 0o700);
    let key = |c: &str| c.repeat(64);
    let removed = [
        // The first cache format.
        format!("{}.cwasm", key("a")),
        format!("{}.blake3", key("a")),
        // Another key's entry, unused for 40 days.
        format!("{}.cwasm", key("b")),
        format!("{}.check", key("b")),
        // A check without its artifact.
        format!("{}.check", key("c")),
    ];
    let kept = [
        // Another guest's entry, used yesterday.
        format!("{}.cwasm", key("d")),
        format!("{}.check", key("d")),
        // Not named like entries, however old.
        "notes.txt".to_string(),
        "short.blake3".to_string(),
        "ff.cwasm".to_string(),
    ];
    for name in removed.iter().chain(&kept) {
        let days = if name.starts_with('d') { 1 } else { 40 };
        write_aged(&cache, name, days);
    }
    w.cmd(&a)
        .env("BRIDGE_CACHE_DIR", &cache)
        .env("BRIDGE_GUEST", guest_file())
        .args(["run", "start"])
        .ok();
    for name in &removed {
        assert!(!cache.join(name).exists(), "{name} was kept");
    }
    for name in &kept {
        assert!(cache.join(name).exists(), "{name} was removed");
    }
    assert_eq!(
        entries(&cache).len(),
        3,
        "the new entry, {} and ff.cwasm",
        kept[0]
    );
}

#[test]
fn a_cache_others_can_write_is_not_used() {
    let w = World::new();
    let a = w.project("a");
    let cache = cache_dir_with_mode(&w, 0o777);
    let (out, description) = w
        .cmd(&a)
        .env("BRIDGE_CACHE_DIR", &cache)
        .env("BRIDGE_GUEST", guest_file())
        .args(["run", "start"])
        .output();
    assert!(out.status.success(), "{description}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not using the compile cache") && stderr.contains("chmod 700"),
        "{description}"
    );
    assert!(entries(&cache).is_empty());
}
