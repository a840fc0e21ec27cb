//! The order in which batches of received mail are written.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex};

/// The order in which batches of received mail are written: each batch
/// waits for its turn before its first write, and passes the turn on once
/// all its messages are written (when it asks for the flush, or when it
/// ends), so that the next is written while this one's flush goes on, and
/// a listener never sees a later message before an earlier one.
#[derive(Default)]
pub(super) struct Turns {
    state: Mutex<TurnState>,
    changed: Condvar,
}

#[derive(Default)]
struct TurnState {
    /// The turn that may write now.
    next: u64,
    /// Turns passed ahead of `next` (a batch dropped unwritten).
    passed: BTreeSet<u64>,
}

impl Turns {
    fn lock(&self) -> std::sync::MutexGuard<'_, TurnState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pass(&self, turn: u64) {
        let mut state = self.lock();
        if turn < state.next {
            return;
        }
        state.passed.insert(turn);
        loop {
            let next = state.next;
            if !state.passed.remove(&next) {
                break;
            }
            state.next += 1;
        }
        self.changed.notify_all();
    }
}

/// One batch's turn; passed on at the latest when dropped.
pub(super) struct Turn {
    pub(super) turns: Arc<Turns>,
    pub(super) number: u64,
}

impl Turn {
    /// Blocks until every earlier turn has passed.
    pub(super) fn wait(&self) {
        let mut state = self.turns.lock();
        while state.next < self.number {
            state = self
                .turns
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    pub(super) fn pass(&self) {
        self.turns.pass(self.number);
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.pass();
    }
}
