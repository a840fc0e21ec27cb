//! What a [`Bridge`](crate::Bridge) that runs many verbs remembers between
//! them (the benchmarks' reused guests, a long-lived server): small, bounded
//! maps whose entries carry the time they were learnt, all held in one
//! [`Caches`] that belongs to the bridge. A process that runs one verb
//! starts each empty, and two bridges never share one (inside the sandbox,
//! the bridges of one instance do; see `crate::instance`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::path::PathBuf;

use crate::Liveness;
use crate::clock;
use crate::mailbox::Pending;

/// Everything a bridge remembers between verbs. Each cache says what it
/// holds where it is filled.
pub(crate) struct Caches {
    /// The archive key each session recorded at `start`, as read or written
    /// by this bridge: a bridge that runs many verbs reads each once.
    pub(crate) known_keys: RefCell<Memo<String, String>>,
    /// Whether a session is a member of an archive's project, as this
    /// bridge last found: a member stays one; that a session is not is
    /// trusted for a second (`NOT_MEMBER_FRESH_MS` in archive/keys.rs).
    pub(crate) members: RefCell<Memo<(String, String), bool>>,
    /// Pending files already read by this bridge, by path, with their
    /// content dropped (see `Bridge::load_pending_cached`).
    pub(crate) scanned: RefCell<HashMap<PathBuf, Pending>>,
    /// Per inbox, the names of a large listing not yet tried (see
    /// `Bridge::pending_names`).
    pub(crate) backlog: RefCell<HashMap<PathBuf, Vec<String>>>,
    /// The bytes of the claims this bridge handed out and has not
    /// committed yet, by claim name (a relay claims a whole batch before it
    /// commits any), so that a commit keeps exactly what was shown without
    /// reading the file again. Bounded by `CLAIMED_BYTES_LIMIT` in
    /// mailbox/claim.rs.
    pub(crate) claimed_bytes: RefCell<HashMap<String, Vec<u8>>>,
    /// What `Bridge::liveness` found for each session directory.
    pub(crate) liveness: RefCell<Memo<String, Liveness>>,
    /// Sessions of other machines, with their machine (see
    /// `Bridge::remote_machine` in relay.rs).
    pub(crate) remote: RefCell<Memo<crate::ids::SessionId, String>>,
    /// The archive logs kept open for appending (see archive/append.rs).
    #[cfg(target_os = "wasi")]
    pub(crate) open_logs: RefCell<crate::archive::OpenLogs>,
}

impl Default for Caches {
    fn default() -> Self {
        Caches {
            known_keys: RefCell::new(Memo::new(64)),
            members: RefCell::new(Memo::new(256)),
            scanned: RefCell::default(),
            backlog: RefCell::default(),
            claimed_bytes: RefCell::default(),
            liveness: RefCell::new(Memo::new(64)),
            remote: RefCell::new(Memo::new(crate::relay::MAX_REMOTE_SESSIONS)),
            #[cfg(target_os = "wasi")]
            open_logs: RefCell::default(),
        }
    }
}

/// A bounded map of remembered facts, each with when it was learnt.
pub(crate) struct Memo<K, V> {
    entries: HashMap<K, (V, u64)>,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    /// An empty memo that forgets everything once it holds `capacity`.
    pub(crate) fn new(capacity: usize) -> Self {
        Memo {
            entries: HashMap::new(),
            capacity,
        }
    }

    /// The fact for `key`, if it was learnt less than `fresh_ms` ago (any
    /// time, for None).
    pub(crate) fn get(&self, key: &K, fresh_ms: Option<u64>) -> Option<V> {
        let (value, at) = self.entries.get(key)?;
        let fresh = fresh_ms.is_none_or(|ms| clock::epoch_millis().saturating_sub(*at) < ms);
        fresh.then(|| value.clone())
    }

    /// Remembers `value` for `key`, learnt now.
    pub(crate) fn put(&mut self, key: K, value: V) {
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        self.entries.insert(key, (value, clock::epoch_millis()));
    }

    /// Forgets `key`.
    pub(crate) fn forget(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::Memo;

    #[test]
    fn a_memo_forgets_stale_facts_and_stays_bounded() {
        let mut memo = Memo::new(2);
        memo.put("a", 1);
        assert_eq!(memo.get(&"a", None), Some(1));
        assert_eq!(memo.get(&"a", Some(60_000)), Some(1));
        assert_eq!(memo.get(&"a", Some(0)), None);
        memo.put("b", 2);
        memo.put("c", 3);
        assert_eq!(memo.get(&"a", None), None, "full, so it started over");
        assert_eq!(memo.get(&"c", None), Some(3));
        memo.forget(&"c");
        assert_eq!(memo.get(&"c", None), None);
    }
}
