//! What an instance that runs many verbs remembers between them (the
//! benchmarks' reused guests, a long-lived server): small, bounded maps
//! whose entries carry the time they were learnt. A process that runs one
//! verb starts each empty.

use std::collections::HashMap;
use std::hash::Hash;

use crate::clock;

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
