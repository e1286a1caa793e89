//! The calls' writers for PostgreSQL: tasks with a connection of their own (tokio-postgres), which
//! run the same batches as every writer ([`super::writer::batch`]) in fewer round trips.
//!
//! Why their own connections: through sqlx a batch was 4–6 sequential round trips (BEGIN, the
//! lock-and-read, the queue statements of some requests, the write, COMMIT), and each waits for the
//! server's process to be scheduled on a busy machine. tokio-postgres sends requests that are
//! polled together in one go (pipelining): BEGIN travels with the lock-and-read, COMMIT with the
//! write, so a batch without queue statements is two round trips. The statements are prepared once
//! per connection. A connection that breaks fails the batch it was running (its requests get a
//! database error, the carrier retries) and is opened again for the next one.

use super::store::{Loaded, NewCall, Store, Writes, INSERT_CALL, PG_LOAD_CALLS, PG_WRITE_BATCH, STORED_RESPONSE};
use super::writer::{self, Job, Planned, Transactor};
use super::{queue, to_json, CallError, CallRequest, Runtime};
use crate::db::pg_tls::MakeRustls;
use crate::db::{redact, DbError};
use ivr::domain::{Language, ServiceArea};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::{Client, Statement};

/// The writers' connections' `application_name` (as `pg_stat_activity` shows them).
pub const APPLICATION_NAME: &str = "helpline-call-writer";

/// How long opening a writer's connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts `n` writer tasks for the database at `url`; returns their queues. Call within a tokio
/// runtime. The connections are opened by the tasks (and again after a failure).
pub(crate) fn spawn(rt: Arc<Runtime>, url: &str, n: usize) -> Result<Vec<mpsc::UnboundedSender<Job>>, DbError> {
    let (mut config, tls) = crate::db::pg_tls::tokio_config(url)?;
    config.application_name(APPLICATION_NAME);
    let target = Arc::new(Target { config, tls, url: redact(url) });
    Ok((0..n)
        .map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(rt.clone(), target.clone(), rx));
            tx
        })
        .collect())
}

/// Where the writers connect.
struct Target {
    config: tokio_postgres::Config,
    /// TLS as the URL's `sslmode` and `sslrootcert` say (`crate::db::pg_tls`).
    tls: MakeRustls,
    /// The URL without its password, for errors.
    url: String,
}

impl Target {
    fn error(&self, reason: String) -> DbError {
        DbError::Connect { backend: "postgres", url: self.url.clone(), reason }
    }
}

/// A writer's connection and its prepared statements.
struct Conn {
    client: Client,
    load: Statement,
    stored_response: Statement,
    insert_call: Statement,
    enqueue: Statement,
    ahead: Statement,
    record_callback: Statement,
    leave: Statement,
    write: Statement,
}

impl Conn {
    async fn open(target: &Target) -> Result<Conn, DbError> {
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, target.config.connect(target.tls.clone()))
            .await
            .map_err(|_| target.error(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| target.error(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "call writer's PostgreSQL connection lost");
            }
        });
        let prepare = |sql: &'static str| client.prepare(sql);
        let (load, stored_response, insert_call, enqueue, ahead, record_callback, leave, write) = tokio::try_join!(
            prepare(PG_LOAD_CALLS),
            prepare(STORED_RESPONSE),
            prepare(INSERT_CALL),
            prepare(queue::ENQUEUE),
            prepare(queue::AHEAD),
            prepare(queue::RECORD_CALLBACK),
            prepare(queue::LEAVE),
            prepare(PG_WRITE_BATCH),
        )?;
        Ok(Conn { client, load, stored_response, insert_call, enqueue, ahead, record_callback, leave, write })
    }
}

async fn run(rt: Arc<Runtime>, target: Arc<Target>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut conn: Option<Conn> = None;
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(job) => waiting.push_back(job),
                None => return,
            }
        }
        writer::gather(&mut waiting, &mut rx);
        let batch = writer::next_batch(&mut waiting);
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            conn = match Conn::open(&target).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "the call writer cannot connect");
                    for job in batch {
                        let _ = job.reply.send(Err(CallError::Db(target.error(e.to_string()))));
                    }
                    continue;
                }
            };
        }
        if let Some(c) = &conn {
            writer::apply(&rt, &mut PgTransactor { conn: c }, batch).await;
        }
    }
}

struct PgTransactor<'c> {
    conn: &'c Conn,
}

impl Transactor for PgTransactor<'_> {
    async fn transaction(&mut self, rt: &Runtime, reqs: &[&CallRequest]) -> Result<Vec<Planned>, CallError> {
        // BEGIN is sent with the store's first statement, COMMIT with its write.
        let mut store = PgStore { conn: self.conn, committed: false };
        match writer::batch(rt, &mut store, reqs).await {
            Ok(planned) if store.committed => Ok(planned),
            Ok(_) => Err(CallError::Db(DbError::Corrupt("a batch ended without its write".into()))),
            Err(e) => {
                if let Err(rollback) = self.conn.client.batch_execute("ROLLBACK").await {
                    tracing::warn!(error = %rollback, "ROLLBACK of a failed batch");
                }
                Err(e)
            }
        }
    }
}

struct PgStore<'c> {
    conn: &'c Conn,
    /// Set once the write and its COMMIT succeeded.
    committed: bool,
}

fn db(e: tokio_postgres::Error) -> CallError {
    CallError::Db(DbError::Postgres(e))
}

impl Store for PgStore<'_> {
    async fn load(&mut self, ids: &[&str]) -> Result<HashMap<String, Loaded>, CallError> {
        let c = &self.conn;
        // One round trip: the transaction begins and the calls are locked (in call-id order, so
        // two nodes' batches cannot deadlock) and read.
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
        let ((), rows) =
            tokio::try_join!(c.client.batch_execute("BEGIN"), c.client.query(&c.load, &params)).map_err(db)?;
        let mut loaded = HashMap::with_capacity(rows.len());
        for r in rows {
            loaded.insert(
                r.try_get(0).map_err(db)?,
                Loaded {
                    state: r.try_get(1).map_err(db)?,
                    last_seq: r.try_get(2).map_err(db)?,
                    carrier_seq: r.try_get(3).map_err(db)?,
                    pending: r.try_get(4).map_err(db)?,
                    channel: r.try_get(5).map_err(db)?,
                    started_at: r.try_get(6).map_err(db)?,
                },
            );
        }
        Ok(loaded)
    }

    async fn stored_response(&mut self, call_id: &str, key: &str) -> Result<Option<(String, String)>, CallError> {
        let row = self.conn.client.query_opt(&self.conn.stored_response, &[&call_id, &key]).await.map_err(db)?;
        row.map(|r| Ok((r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?))).transpose()
    }

    async fn insert_call(&mut self, c: &NewCall<'_>) -> Result<(), CallError> {
        self.conn
            .client
            .execute(
                &self.conn.insert_call,
                &[&c.call_id, &c.channel, &c.started_at, &c.caller_hash, &c.caller_masked, &c.state],
            )
            .await
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
        let area = area.map(|a| a.as_str());
        self.conn
            .client
            .execute(&self.conn.enqueue, &[&call_id, &language.as_str(), &area, &i32::from(priority), &now_ms])
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn calls_ahead(&mut self, call_id: &str) -> Result<Option<i64>, CallError> {
        let row = self.conn.client.query_opt(&self.conn.ahead, &[&call_id]).await.map_err(db)?;
        row.map(|r| r.try_get(0).map_err(db)).transpose()
    }

    async fn record_callback(
        &mut self,
        call_id: &str,
        language: Language,
        area: Option<ServiceArea>,
        now_ms: i64,
        sealed_number: Option<&str>,
    ) -> Result<(), CallError> {
        let area = area.map(|a| a.as_str());
        self.conn
            .client
            .execute(&self.conn.record_callback, &[&language.as_str(), &area, &now_ms, &sealed_number, &call_id])
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn leave(&mut self, call_id: &str, hung_up: bool, now_ms: i64) -> Result<(), CallError> {
        self.conn
            .client
            .execute(&self.conn.leave, &[&queue::leave_status(hung_up), &now_ms, &call_id])
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn write(&mut self, w: &Writes) -> Result<(), CallError> {
        let calls = to_json(&w.calls)?;
        let events = to_json(&w.events)?;
        let c = &self.conn;
        // One round trip: the batch's rows and the COMMIT. Should the write fail, the COMMIT finds
        // the transaction aborted and rolls it back.
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&calls, &events];
        let (_, ()) =
            tokio::try_join!(c.client.execute(&c.write, &params), c.client.batch_execute("COMMIT")).map_err(db)?;
        self.committed = true;
        Ok(())
    }
}
