//! Turns at SQLite's one write lock between the calls' writer thread and the pool's writers.
//!
//! The `call-writer` thread (`calls::sqlite`) runs batch after batch under load, and between two
//! of them the lock is free for only a few microseconds. A pool connection that wants it (the
//! ACD's pass, an operator's action, a login) gets `SQLITE_BUSY` and SQLite's busy handler sleeps
//! 1, 2, 5, 10… up to 100 ms between tries: under webhook saturation the console's transactions
//! waited 0.6–1.2 s for the lock.
//!
//! So a pool writer takes a **turn** first ([`LockTurns::take`]): it announces itself, waits until
//! the calls' writer is between two batches, and keeps the turn until its statement holds the lock
//! (for a transaction, until its first write). The calls' writer checks for turns before each
//! batch ([`LockTurns::start_batch`]) and, while one is held, does not start the next batch (for
//! at most [`GIVE_WAY_FOR`], should the turn's holder be slow to run). Once the other connection
//! holds the lock, the writer's own busy handler polls every 100 µs, so it resumes as soon as
//! that transaction commits.
//!
//! The two sides meet without a lock: the pool writer counts itself in, then looks at the writer's
//! `in_batch`; the writer sets `in_batch`, then looks at the count (both sequentially consistent).
//! At least one of them sees the other, so a pool writer never issues its statement while a batch
//! is starting unseen. Without a SQLite file writer (PostgreSQL, SQLite in memory) `in_batch` is
//! never set and a turn costs an atomic increment.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The longest the calls' writer waits for a turn's holder before it runs one batch anyway.
pub const GIVE_WAY_FOR: Duration = Duration::from_millis(20);
/// How long a turn waits for the writer's batch to end before trying the lock anyway (a batch
/// takes well under a millisecond; this only bounds a stalled one).
const WAIT_FOR_BATCH: Duration = Duration::from_millis(200);
/// Between two looks at the turns while the writer gives way.
const GIVE_WAY_POLL: Duration = Duration::from_micros(50);

/// Shared by the pool's writers and the calls' writer thread (one per database).
#[derive(Debug)]
pub struct LockTurns {
    /// Pool writers waiting for the lock or about to take it.
    waiting: AtomicUsize,
    /// The calls' writer is inside a batch (it holds, or is about to take, the lock).
    in_batch: AtomicBool,
    /// Signalled when a batch ends (or does not start because a turn is waiting).
    batch_ended: Notify,
    /// [`GIVE_WAY_FOR`] and [`WAIT_FOR_BATCH`] (longer in tests).
    give_way_for: Duration,
    wait_for_batch: Duration,
}

impl Default for LockTurns {
    fn default() -> LockTurns {
        LockTurns {
            waiting: AtomicUsize::new(0),
            in_batch: AtomicBool::new(false),
            batch_ended: Notify::new(),
            give_way_for: GIVE_WAY_FOR,
            wait_for_batch: WAIT_FOR_BATCH,
        }
    }
}

/// A pool writer's turn: while it lives, the calls' writer starts no batch (see the module).
#[must_use = "the turn ends when dropped: keep it until the statement holds the lock"]
pub struct Turn<'a> {
    turns: &'a LockTurns,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.turns.waiting.fetch_sub(1, SeqCst);
    }
}

impl LockTurns {
    /// Announces a pool writer and waits until the calls' writer is between two batches.
    pub async fn take(&self) -> Turn<'_> {
        self.waiting.fetch_add(1, SeqCst);
        let turn = Turn { turns: self };
        let ended = self.batch_ended.notified();
        let mut ended = std::pin::pin!(ended);
        // Registered before the look at `in_batch`: a batch ending in between still wakes it.
        ended.as_mut().enable();
        if self.in_batch.load(SeqCst) {
            let _ = tokio::time::timeout(self.wait_for_batch, ended).await;
        }
        turn
    }

    /// The calls' writer, before a batch: gives way to the turns (for at most [`GIVE_WAY_FOR`]),
    /// then marks the batch begun. Pair it with [`LockTurns::end_batch`].
    pub fn start_batch(&self) {
        let deadline = Instant::now() + self.give_way_for;
        loop {
            self.in_batch.store(true, SeqCst);
            if self.waiting.load(SeqCst) == 0 || Instant::now() >= deadline {
                return;
            }
            // A turn is waiting, or came while the batch was about to start: let it go first.
            self.in_batch.store(false, SeqCst);
            self.batch_ended.notify_waiters();
            while self.waiting.load(SeqCst) > 0 && Instant::now() < deadline {
                std::thread::sleep(GIVE_WAY_POLL);
            }
        }
    }

    /// The calls' writer, after a batch's commit (or rollback).
    pub fn end_batch(&self) {
        self.in_batch.store(false, SeqCst);
        self.batch_ended.notify_waiters();
    }

    /// Pool writers holding or awaiting a turn.
    pub fn waiting(&self) -> usize {
        self.waiting.load(SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Arc;

    /// A turn taken while no batch runs is had at once, and it holds the next batch back until it
    /// is dropped.
    #[tokio::test]
    async fn a_turn_holds_the_next_batch_back_until_it_is_dropped() {
        // Not the time bound: a busy machine may take long between the steps below.
        let turns = Arc::new(LockTurns { give_way_for: Duration::from_secs(60), ..LockTurns::default() });
        let turn = turns.take().await;
        assert_eq!(turns.waiting(), 1);
        let (started, batch_started) = mpsc::channel();
        let writer = {
            let turns = turns.clone();
            std::thread::spawn(move || {
                turns.start_batch();
                started.send(Instant::now()).unwrap();
                turns.end_batch();
            })
        };
        // The writer gives way: no batch while the turn lives.
        assert!(batch_started.recv_timeout(Duration::from_millis(20)).is_err(), "the batch waited for the turn");
        let dropped = Instant::now();
        drop(turn);
        let at = batch_started.recv_timeout(Duration::from_secs(5)).expect("the batch starts once the turn ends");
        assert!(at >= dropped, "the batch started {:?} before the turn ended", dropped - at);
        writer.join().unwrap();
        assert_eq!(turns.waiting(), 0);
    }

    /// A turn taken during a batch is had when the batch ends, not before.
    #[tokio::test]
    async fn a_turn_waits_for_the_running_batch_to_end() {
        let turns = Arc::new(LockTurns { wait_for_batch: Duration::from_secs(60), ..LockTurns::default() });
        turns.start_batch();
        let taker = {
            let turns = turns.clone();
            tokio::spawn(async move {
                let _turn = turns.take().await;
                turns.in_batch.load(SeqCst)
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!taker.is_finished(), "the turn waits while the batch runs");
        turns.end_batch();
        let in_batch = tokio::time::timeout(Duration::from_secs(5), taker).await.expect("had after the batch").unwrap();
        assert!(!in_batch, "no batch runs during the turn");
    }

    /// A holder that never lets go delays the writer by [`GIVE_WAY_FOR`] per batch, not forever.
    #[tokio::test]
    async fn the_writer_gives_way_for_a_bounded_time() {
        let turns = LockTurns::default();
        let _turn = turns.take().await;
        let t0 = Instant::now();
        turns.start_batch();
        let waited = t0.elapsed();
        turns.end_batch();
        assert!(waited >= GIVE_WAY_FOR && waited < GIVE_WAY_FOR * 50, "{waited:?}");
    }

    /// Turn takers and batches racing on two threads: no batch ever runs while a taker holds its
    /// turn (the `in_batch` and count handshake), and every taker gets its turn.
    #[test]
    fn turns_and_batches_never_overlap() {
        // A holder descheduled on a busy machine must not let a batch in by the time bound.
        let turns = Arc::new(LockTurns { give_way_for: Duration::from_secs(60), ..LockTurns::default() });
        let overlaps = Arc::new(AtomicUsize::new(0));
        let batches = Arc::new(AtomicUsize::new(0));
        let holding = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (turns, overlaps, batches, holding, stop) =
                (turns.clone(), overlaps.clone(), batches.clone(), holding.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    turns.start_batch();
                    // A holder seen at the batch's start or end overlapped it.
                    for _ in 0..2 {
                        if holding.load(SeqCst) {
                            overlaps.fetch_add(1, SeqCst);
                        }
                        std::hint::spin_loop();
                    }
                    turns.end_batch();
                    batches.fetch_add(1, SeqCst);
                }
            })
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let taken = rt.block_on(async {
            // Until both sides have had many goes (the machine may be busy with other tests).
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut taken = 0;
            while (taken < 2_000 || batches.load(SeqCst) < 2_000) && Instant::now() < deadline {
                let turn = turns.take().await;
                holding.store(true, SeqCst);
                // The holder's statement would run here.
                holding.store(false, SeqCst);
                drop(turn);
                taken += 1;
                if taken % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            taken
        });
        stop.store(true, SeqCst);
        writer.join().unwrap();
        assert!(taken >= 2_000 && batches.load(SeqCst) >= 2_000, "{taken} turns, {batches:?} batches");
        assert_eq!(overlaps.load(SeqCst), 0, "a batch ran during a turn");
        assert_eq!(turns.waiting(), 0);
    }
}
