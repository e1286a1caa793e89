//! The calls' writer for a SQLite file: one OS thread with its own connection (rusqlite), which
//! runs the same batches as the sqlx writers ([`super::writer::batch`]) with statements that
//! execute on the spot.
//!
//! Why its own thread and driver: sqlx's SQLite driver hands every statement to a worker thread
//! and back (two thread wake-ups per statement; a batch has a dozen statements plus a few per
//! request), so the one writer spent its time waiting for hand-offs while the CPU idled. Here a
//! statement is a function call on prepared, cached statements. The thread is the only writer of
//! the calls (SQLite has one write lock anyway); the rest of the server keeps using the pool.
//!
//! Checkpoints (copying the WAL back into the database file, with an fsync) run on a second thread
//! with its own connection, every [`CHECKPOINT_EVERY`], instead of inside whichever commit crosses
//! SQLite's 1,000-page mark: that commit's requests used to wait for the copy. A passive
//! checkpoint never blocks the writer. (Other connections keep SQLite's automatic checkpoints; it
//! is only switched off on the writer's.)
//!
//! But SQLite starts the WAL file over only when a write begins after a checkpoint has copied
//! *every* frame, and under steady load the writer always adds frames while the other thread
//! copies: the WAL grew without end (33 MB/s at 2,000 events/s). So when it passes
//! [`WAL_RESTART_FRAMES`], the checkpointer catches up to within a few hundred frames and asks the
//! writer ([`Checkpoints::restart_wanted`]) to copy the rest itself between two batches: nothing
//! is written meanwhile, the copy completes, and the writer's next transaction starts the WAL file
//! over (truncated to [`WAL_KEEP_BYTES`]). The writer's share is a few hundred pages and an fsync.
//!
//! When another connection holds the write lock (the console's ACD, a CLI command), SQLite's own
//! busy handler would sleep 1, 2, 5, 10… ms between tries; this connection polls every 100 µs
//! instead (for about 5 s, then `SQLITE_BUSY` fails the batch), so a short foreign transaction
//! costs the calls its own length, not a sleep. The other way round, the pool's writers of this
//! process take a turn (`crate::db::turns`) and the writer starts no batch while one is waiting,
//! so they do not sleep behind batch after batch.

use super::store::{
    chunk_sizes, insert_events, load_calls, EventRow, Loaded, NewCall, Store, Writes, EVENTS_PER_STATEMENT,
    INSERT_CALL, STORED_RESPONSE,
};
use super::writer::{self, Job, Planned, Transactor};
use super::{queue, CallError, CallRequest, Runtime};
use crate::db::{Backend, DbError};
use ivr::domain::{Language, ServiceArea};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, ToSql, TransactionBehavior};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::mpsc;

/// A call's new step: the columns that change on every event (none of them indexed).
const UPDATE_CALL_STEP: &str =
    "UPDATE calls SET state = $1, last_seq = $2, carrier_seq = $3, updated_at = $4, pending_actions = $5 WHERE call_id = $6";

/// What the call's steps established (language, area, place, outcome…), written only when one of
/// them changed. These columns are indexed for the supervisors' log, and SQLite rewrites an
/// index entry whenever its column is assigned, changed or not: assigning them on every event
/// (as a single upsert did) dirtied five index pages per call per event for nothing. (SQLite
/// numbers `$N` parameters by first appearance, so they appear here in order.)
const UPDATE_CALL_FACTS: &str = "UPDATE calls SET language = $1, language_guessed = $2, area = $3, town = $4, \
     outcome = $5, ended_at = $6, cap = $7 WHERE call_id = $8 AND (language IS NOT $1 OR language_guessed IS NOT $2 \
     OR area IS NOT $3 OR town IS NOT $4 OR outcome IS NOT $5 OR ended_at IS NOT $6 OR cap IS NOT $7)";

/// Prepared statements kept per connection (the batch sizes' power-of-two variants included).
const STATEMENT_CACHE: usize = 128;
/// Between two tries for a write lock another connection holds.
const BUSY_POLL: Duration = Duration::from_micros(100);
/// Tries before giving up with `SQLITE_BUSY` (≈ 5 s).
const BUSY_TRIES: i32 = 50_000;
/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// Past this many frames (64 MiB of 2 KiB pages) the WAL is started over.
const WAL_RESTART_FRAMES: i64 = 32_768;
/// The checkpointer catches up to this many frames before the writer copies the rest.
const CATCH_UP_FRAMES: i64 = 256;
/// The size a WAL file started over is truncated to (`journal_size_limit`).
const WAL_KEEP_BYTES: i64 = 64 << 20;

/// What the checkpointer and the writer share.
struct Checkpoints {
    /// Set by the checkpointer: the WAL is long and nearly all copied; the writer should copy the
    /// rest (which lets its next transaction start the WAL over).
    restart_wanted: AtomicBool,
    /// [`CHECKPOINT_EVERY`] and [`WAL_RESTART_FRAMES`] (smaller in tests).
    every: Duration,
    restart_frames: i64,
}

impl Checkpoints {
    fn new() -> Checkpoints {
        Checkpoints {
            restart_wanted: AtomicBool::new(false),
            every: CHECKPOINT_EVERY,
            restart_frames: WAL_RESTART_FRAMES,
        }
    }
}

/// Opens the writer's connection and starts its thread; returns its queue. The thread ends when
/// every sender is gone.
pub(crate) fn spawn(rt: Arc<Runtime>, file: &Path) -> Result<mpsc::UnboundedSender<Job>, DbError> {
    let conn = open_writer(file)?;
    let checkpoints = open(file)?;
    let shared = Arc::new(Checkpoints::new());
    let writer_shared = shared.clone();
    // The checkpointer stops when the writer does (it holds this sender).
    let (alive, writer_gone) = std::sync::mpsc::channel::<()>();
    let (tx, rx) = mpsc::unbounded_channel();
    let thread_err = |e: std::io::Error| DbError::Corrupt(format!("cannot start the call writer's threads: {e}"));
    std::thread::Builder::new()
        .name("call-checkpoint".into())
        .spawn(move || checkpoint_until(checkpoints, &shared, writer_gone))
        .map_err(thread_err)?;
    std::thread::Builder::new()
        .name("call-writer".into())
        .spawn(move || {
            run(&rt, conn, &writer_shared, rx);
            drop(alive);
        })
        .map_err(thread_err)?;
    Ok(tx)
}

/// Passive checkpoints every [`CHECKPOINT_EVERY`] until the writer is gone, then a last one; a
/// long WAL is caught up with and handed to the writer to start over (see the module's comment).
fn checkpoint_until(conn: Connection, shared: &Checkpoints, writer_gone: std::sync::mpsc::Receiver<()>) {
    loop {
        let last = !matches!(writer_gone.recv_timeout(shared.every), Err(std::sync::mpsc::RecvTimeoutError::Timeout));
        match checkpoint(&conn) {
            Ok(frames) if frames.log > shared.restart_frames && !last => {
                let mut frames = frames;
                // Each pass copies what the writer added during the previous one: a few passes
                // bring the remainder down to what the writer can copy without a noticeable stall.
                for _ in 0..8 {
                    if frames.log - frames.copied <= CATCH_UP_FRAMES {
                        break;
                    }
                    match checkpoint(&conn) {
                        Ok(f) => frames = f,
                        Err(_) => break,
                    }
                }
                shared.restart_wanted.store(true, Ordering::Release);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
        if last {
            return;
        }
    }
}

/// Between two batches: copies the rest of a long WAL when the checkpointer asks, so that the next
/// transaction starts the WAL over.
fn restart_if_wanted(conn: &Connection, shared: &Checkpoints) {
    if shared.restart_wanted.swap(false, Ordering::AcqRel) {
        if let Err(e) = checkpoint(conn) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// The WAL's frames after a checkpoint, and how many of them are in the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frames {
    log: i64,
    copied: i64,
}

/// One passive checkpoint (never waits for the writer or the readers).
fn checkpoint(conn: &Connection) -> rusqlite::Result<Frames> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok(Frames { log: r.get(1)?, copied: r.get(2)? }))
}

/// The writer's connection: no automatic checkpoints (the checkpointer's thread makes them), and a
/// WAL started over is truncated to [`WAL_KEEP_BYTES`].
fn open_writer(file: &Path) -> Result<Connection, DbError> {
    let conn = open(file)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES)?;
    Ok(conn)
}

fn open(file: &Path) -> Result<Connection, DbError> {
    let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    // The pool's connections set the same (WAL is a property of the file, set by them first).
    // A larger page cache and memory-mapped reads: the calls' pages are read without a copy.
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536; PRAGMA mmap_size = 268435456;",
    )?;
    conn.busy_handler(Some(|tries: i32| {
        if tries >= BUSY_TRIES {
            return false;
        }
        std::thread::sleep(BUSY_POLL);
        true
    }))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

fn run(rt: &Runtime, mut conn: Connection, shared: &Checkpoints, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let turns = rt.db.turns();
    loop {
        restart_if_wanted(&conn, shared);
        if waiting.is_empty() {
            match rx.blocking_recv() {
                Some(job) => waiting.push_back(job),
                None => return,
            }
        }
        writer::gather(&mut waiting, &mut rx);
        let batch = writer::next_batch(&mut waiting);
        // The pool's writers waiting for the lock go first (`crate::db::turns`).
        turns.start_batch();
        ready(writer::apply(rt, &mut SqliteTransactor { conn: &mut conn }, batch));
        turns.end_batch();
    }
}

/// Runs a future whose every `await` is already complete (this module's store never waits).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        // Not reached: nothing in a batch waits on anything but this store. Should a future
        // change add a real wait, this degrades to polling rather than stalling the thread.
        std::thread::yield_now();
    }
}

struct SqliteTransactor<'c> {
    conn: &'c mut Connection,
}

impl Transactor for SqliteTransactor<'_> {
    async fn transaction(&mut self, rt: &Runtime, reqs: &[&CallRequest]) -> Result<Vec<Planned>, CallError> {
        // IMMEDIATE: the write lock now, not at the first write (no upgrade that could fail).
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(DbError::from)?;
        let planned = writer::batch(rt, &mut SqliteStore { tx: &tx }, reqs).await?;
        tx.commit().map_err(DbError::from)?;
        Ok(planned)
    }
}

struct SqliteStore<'a, 'c> {
    tx: &'a rusqlite::Transaction<'c>,
}

fn db(e: rusqlite::Error) -> CallError {
    CallError::Db(DbError::Sqlite(e))
}

impl Store for SqliteStore<'_, '_> {
    async fn load(&mut self, ids: &[&str]) -> Result<HashMap<String, Loaded>, CallError> {
        let n = ids.len().next_power_of_two();
        let mut stmt = self.tx.prepare_cached(&load_calls(Backend::Sqlite, n)).map_err(db)?;
        for i in 0..n {
            stmt.raw_bind_parameter(i + 1, ids[i.min(ids.len() - 1)]).map_err(db)?;
        }
        let mut rows = stmt.raw_query();
        let mut loaded = HashMap::with_capacity(ids.len());
        while let Some(r) = rows.next().map_err(db)? {
            loaded.insert(
                r.get(0).map_err(db)?,
                Loaded {
                    state: r.get(1).map_err(db)?,
                    last_seq: r.get(2).map_err(db)?,
                    carrier_seq: r.get(3).map_err(db)?,
                    pending: r.get(4).map_err(db)?,
                    channel: r.get(5).map_err(db)?,
                    started_at: r.get(6).map_err(db)?,
                },
            );
        }
        Ok(loaded)
    }

    async fn stored_response(&mut self, call_id: &str, key: &str) -> Result<Option<(String, String)>, CallError> {
        let mut stmt = self.tx.prepare_cached(STORED_RESPONSE).map_err(db)?;
        stmt.query_row(params![call_id, key], |r| Ok((r.get(0)?, r.get(1)?))).optional().map_err(db)
    }

    async fn insert_call(&mut self, c: &NewCall<'_>) -> Result<(), CallError> {
        let mut stmt = self.tx.prepare_cached(INSERT_CALL).map_err(db)?;
        stmt.execute(params![c.call_id, c.channel, c.started_at, c.caller_hash, c.caller_masked, c.state])
            .map_err(db)?;
        Ok(())
    }

    async fn enqueue(
        &mut self,
        call_id: &str,
        language: Language,
        area: Option<ServiceArea>,
        priority: u8,
        now_ms: i64,
    ) -> Result<(), CallError> {
        let mut stmt = self.tx.prepare_cached(queue::ENQUEUE).map_err(db)?;
        stmt.execute(params![call_id, language.as_str(), area.map(|a| a.as_str()), i64::from(priority), now_ms])
            .map_err(db)?;
        Ok(())
    }

    async fn calls_ahead(&mut self, call_id: &str) -> Result<Option<i64>, CallError> {
        let mut stmt = self.tx.prepare_cached(queue::AHEAD).map_err(db)?;
        stmt.query_row(params![call_id], |r| r.get(0)).optional().map_err(db)
    }

    async fn record_callback(
        &mut self,
        call_id: &str,
        language: Language,
        area: Option<ServiceArea>,
        now_ms: i64,
        sealed_number: Option<&str>,
    ) -> Result<(), CallError> {
        let mut stmt = self.tx.prepare_cached(queue::RECORD_CALLBACK).map_err(db)?;
        stmt.execute(params![language.as_str(), area.map(|a| a.as_str()), now_ms, sealed_number, call_id])
            .map_err(db)?;
        Ok(())
    }

    async fn leave(&mut self, call_id: &str, hung_up: bool, now_ms: i64) -> Result<(), CallError> {
        let mut stmt = self.tx.prepare_cached(queue::LEAVE).map_err(db)?;
        stmt.execute(params![queue::leave_status(hung_up), now_ms, call_id]).map_err(db)?;
        Ok(())
    }

    async fn write(&mut self, w: &Writes) -> Result<(), CallError> {
        // Every call of the batch has its row (loaded, or inserted by this transaction).
        let mut step = self.tx.prepare_cached(UPDATE_CALL_STEP).map_err(db)?;
        let mut facts = self.tx.prepare_cached(UPDATE_CALL_FACTS).map_err(db)?;
        for r in &w.calls {
            step.execute(params![r.state, r.last_seq, r.carrier_seq, r.updated_at, r.pending, r.call_id])
                .map_err(db)?;
            facts
                .execute(params![
                    r.language,
                    r.language_guessed,
                    r.area,
                    r.town,
                    r.outcome,
                    r.ended_at,
                    r.cap,
                    r.call_id
                ])
                .map_err(db)?;
        }
        write_chunks(self.tx, &w.events, EVENTS_PER_STATEMENT, insert_events, event_values)
    }
}

/// Writes `rows` with the multi-row statement `sql(n)`, in power-of-two chunks of at most `max`
/// rows, each row binding `values(row)` in order.
fn write_chunks<T>(
    tx: &rusqlite::Transaction<'_>,
    rows: &[T],
    max: usize,
    sql: fn(usize) -> String,
    values: fn(&T) -> Vec<&dyn ToSql>,
) -> Result<(), CallError> {
    let mut rows = rows;
    for size in chunk_sizes(rows.len(), max) {
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        let mut stmt = tx.prepare_cached(&sql(size)).map_err(db)?;
        let mut i = 0;
        for row in chunk {
            for value in values(row) {
                i += 1;
                stmt.raw_bind_parameter(i, value).map_err(db)?;
            }
        }
        stmt.raw_execute().map_err(db)?;
    }
    Ok(())
}

fn event_values(r: &EventRow) -> Vec<&dyn ToSql> {
    vec![&r.call_id, &r.seq, &r.at, &r.kind, &r.data, &r.request_key, &r.fingerprint, &r.answer]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::store::EVENT_COLUMNS;

    /// Each row binds as many values as its statement has columns.
    #[test]
    fn rows_bind_one_value_per_column() {
        let event = EventRow {
            call_id: "c".into(),
            seq: 1,
            at: 1,
            kind: "k".into(),
            data: "{}".into(),
            request_key: Some("json:1".into()),
            fingerprint: Some("f".into()),
            answer: Some("{}".into()),
        };
        assert_eq!(event_values(&event).len(), EVENT_COLUMNS);
    }

    /// The calls' two updates together write what the upsert of the other store writes, and the
    /// facts only when one of them changed.
    #[test]
    fn a_step_updates_the_facts_only_when_they_change() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE calls (call_id TEXT PRIMARY KEY, state TEXT, last_seq INTEGER, carrier_seq INTEGER, \
             updated_at INTEGER, pending_actions TEXT, language TEXT, language_guessed INTEGER, area TEXT, town TEXT, \
             outcome TEXT, ended_at INTEGER, cap TEXT); INSERT INTO calls (call_id, language_guessed) VALUES ('c', 0);",
        )
        .unwrap();
        let step =
            |seq: i64| conn.execute(UPDATE_CALL_STEP, params!["{}", seq, seq, seq, None::<String>, "c"]).unwrap();
        let facts_cap = |language: Option<&str>, ended: Option<i64>, cap: Option<&str>| {
            conn.execute(
                UPDATE_CALL_FACTS,
                params![language, 0, None::<String>, None::<String>, None::<String>, ended, cap, "c"],
            )
            .unwrap()
        };
        let facts = |language: Option<&str>, ended: Option<i64>| facts_cap(language, ended, None);
        assert_eq!(step(1), 1);
        assert_eq!(facts(None, None), 0, "nothing changed: the row is not rewritten");
        assert_eq!(facts(Some("it"), None), 1);
        assert_eq!(facts(Some("it"), None), 0);
        assert_eq!(facts(Some("it"), Some(9)), 1);
        assert_eq!(facts_cap(Some("it"), Some(9), Some("22100")), 1, "a CAP is a fact");
        assert_eq!(facts_cap(Some("it"), Some(9), Some("22100")), 0);
        assert_eq!(facts(Some("it"), Some(9)), 1, "and so is its absence");
        let row: (i64, Option<String>, Option<i64>) = conn
            .query_row("SELECT last_seq, language, ended_at FROM calls WHERE call_id = 'c'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(row, (1, Some("it".into()), Some(9)));
    }

    /// Under steady writes a long WAL is started over instead of growing without end (the
    /// checkpointer alone never copies every frame while the writer keeps adding), and nothing
    /// written is lost.
    #[test]
    fn a_long_wal_is_started_over_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wal.db");
        Connection::open(&file)
            .unwrap()
            .execute_batch("PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; CREATE TABLE t (x BLOB);")
            .unwrap();
        let writer = open_writer(&file).unwrap();
        let shared = Arc::new(Checkpoints {
            restart_wanted: AtomicBool::new(false),
            every: Duration::from_millis(5),
            restart_frames: 200,
        });
        let (alive, writer_gone) = std::sync::mpsc::channel::<()>();
        let checkpointer = {
            let (shared, conn) = (shared.clone(), open(&file).unwrap());
            std::thread::spawn(move || checkpoint_until(conn, &shared, writer_gone))
        };
        let wal = dir.path().join("wal.db-wal");
        const ROWS: i64 = 6000;
        let mut largest = 0;
        for _ in 0..ROWS {
            restart_if_wanted(&writer, &shared);
            // A row of most of a page: every commit appends at least one 2 KiB frame.
            writer.execute("INSERT INTO t VALUES (zeroblob(1500))", []).unwrap();
            largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        }
        drop(alive);
        checkpointer.join().unwrap();
        // Kept whole, the WAL would hold every commit's frames (about three each here).
        let frame = 2048 + 24;
        assert!(largest < ROWS as u64 * frame, "the WAL grew to {largest} bytes for {ROWS} commits");
        let rows: i64 = writer.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, ROWS);
    }
}
