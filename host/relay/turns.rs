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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// Long enough for a waiting thread to be let through.
    const LET_THROUGH: Duration = Duration::from_secs(5);
    /// Long enough to see that a waiting thread is still held.
    const HELD: Duration = Duration::from_millis(100);

    fn turn(turns: &Arc<Turns>, number: u64) -> Turn {
        Turn {
            turns: turns.clone(),
            number,
        }
    }

    /// Waits for `turn` on a thread of its own; the receiver hears once
    /// the wait is over, and gets the turn back.
    fn wait_aside(turn: Turn) -> mpsc::Receiver<Turn> {
        let (done, over) = mpsc::channel();
        std::thread::spawn(move || {
            turn.wait();
            let _ = done.send(turn);
        });
        over
    }

    fn next(turns: &Turns) -> u64 {
        turns.lock().next
    }

    #[test]
    fn the_first_turn_waits_for_nothing() {
        let turns = Arc::new(Turns::default());
        let over = wait_aside(turn(&turns, 0));
        assert!(over.recv_timeout(LET_THROUGH).is_ok());
    }

    #[test]
    fn a_later_turn_waits_until_the_earlier_one_passes() {
        let turns = Arc::new(Turns::default());
        let first = turn(&turns, 0);
        first.wait();
        let over = wait_aside(turn(&turns, 1));
        assert!(
            over.recv_timeout(HELD).is_err(),
            "turn 1 went before turn 0 passed"
        );
        first.pass();
        let second = over.recv_timeout(LET_THROUGH).expect("turn 1 is stuck");
        drop(first);
        drop(second);
        assert_eq!(next(&turns), 2);
    }

    #[test]
    fn turns_are_granted_strictly_in_order() {
        const N: u64 = 8;
        let turns = Arc::new(Turns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let (done, over) = mpsc::channel();
        // The latest turns start waiting first, so that a wait that did
        // not hold them would let them write first.
        for number in (0..N).rev() {
            let (turn, order, done) = (turn(&turns, number), order.clone(), done.clone());
            std::thread::spawn(move || {
                turn.wait();
                order.lock().unwrap().push(number);
                // Passed on when dropped, as a batch that ends.
                drop(turn);
                let _ = done.send(());
            });
            std::thread::sleep(Duration::from_millis(10));
        }
        for _ in 0..N {
            over.recv_timeout(LET_THROUGH).expect("a turn is stuck");
        }
        assert_eq!(*order.lock().unwrap(), (0..N).collect::<Vec<_>>());
        assert_eq!(next(&turns), N);
    }

    #[test]
    fn a_turn_dropped_unused_passes_its_place() {
        let turns = Arc::new(Turns::default());
        // A batch dropped unwritten: it never waited nor wrote.
        drop(turn(&turns, 0));
        let over = wait_aside(turn(&turns, 1));
        assert!(
            over.recv_timeout(LET_THROUGH).is_ok(),
            "turn 1 is stuck behind a dropped turn 0"
        );
        assert_eq!(next(&turns), 2);
    }

    #[test]
    fn a_turn_passed_ahead_of_its_place_is_kept_until_the_earlier_ones_pass() {
        let turns = Arc::new(Turns::default());
        let (first, second) = (turn(&turns, 0), turn(&turns, 1));
        // Turn 2 ends before turns 0 and 1 had theirs.
        drop(turn(&turns, 2));
        assert_eq!(next(&turns), 0);
        let over = wait_aside(turn(&turns, 3));
        assert!(
            over.recv_timeout(HELD).is_err(),
            "turn 3 went while turns 0 and 1 had not passed"
        );
        drop(first);
        assert_eq!(next(&turns), 1);
        assert!(
            over.recv_timeout(HELD).is_err(),
            "turn 3 went while turn 1 had not passed"
        );
        drop(second);
        // Turn 2 passed before: the next is turn 3.
        let fourth = over
            .recv_timeout(LET_THROUGH)
            .expect("turn 3 is stuck behind turn 2, which passed early");
        assert_eq!(next(&turns), 3);
        assert!(turns.lock().passed.is_empty());
        drop(fourth);
        assert_eq!(next(&turns), 4);
    }

    #[test]
    fn a_turn_passed_at_its_flush_and_again_when_dropped_passes_once() {
        let turns = Arc::new(Turns::default());
        let first = turn(&turns, 0);
        first.wait();
        // The flush hook passes the turn; the batch's end drops it.
        first.pass();
        drop(first);
        assert_eq!(next(&turns), 1);
        assert!(turns.lock().passed.is_empty());
        let held = wait_aside(turn(&turns, 2));
        assert!(
            held.recv_timeout(HELD).is_err(),
            "turn 2 went while turn 1 had not passed"
        );
        drop(turn(&turns, 1));
        assert!(held.recv_timeout(LET_THROUGH).is_ok());
    }
}
