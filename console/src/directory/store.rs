//! The directory in the database (the source of truth): replace it whole in one transaction,
//! load it whole to build the index, read one service's rows for `GET /api/services/{id}`, and
//! the version counter that tells every server its index is stale.
//!
//! Written once for both backends through sqlx's `Any` driver; the SQL is generated from
//! [`schema`](super::schema) so it cannot drift from the importer.

use super::dataset::{Dataset, Row};
use super::schema::{Kind, Table, TABLES};
use crate::db::{Backend, Db, DbError};
use sqlx::Row as _;

/// Parameters per INSERT statement: under SQLite's 32,766 and PostgreSQL's 65,535, and small
/// enough that one statement stays well under the slow-statement log threshold.
const MAX_PARAMS: usize = 2_000;

fn sql_table(table: &Table) -> String {
    format!("dir_{}", table.name)
}

fn column_list(table: &Table) -> String {
    table.columns.iter().map(|c| format!("\"{}\"", c.name)).collect::<Vec<_>>().join(", ")
}

fn is_float(kind: Kind) -> bool {
    matches!(kind, Kind::Float { .. })
}

/// How many times an import meets SQLite's write lock held past the busy timeout before it gives up.
const BUSY_TRIES: u32 = 4;

/// Replaces the whole directory with `data` in one transaction and bumps the version, returning
/// the new version. `data` must have been validated: a row the database rejects aborts everything.
/// On SQLite, a write lock another connection held past the busy timeout (a running server's
/// writers, on a loaded machine) is waited for again, up to [`BUSY_TRIES`] times.
pub async fn replace_all(db: &Db, data: &Dataset) -> Result<i64, DbError> {
    replace_recorded(db, data, None).await
}

/// [`replace_all`] for an import: the import is recorded in the directory's history and the
/// audit log (`source`: the path imported) in the same transaction.
pub async fn replace_all_as_import(
    db: &Db,
    data: &Dataset,
    source: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<i64, DbError> {
    replace_recorded(db, data, Some((source, now))).await
}

async fn replace_recorded(
    db: &Db,
    data: &Dataset,
    source: Option<(&str, chrono::DateTime<chrono::Utc>)>,
) -> Result<i64, DbError> {
    let mut tries = 1;
    loop {
        match replace_once(db, data, source).await {
            Err(e) if e.is_busy() && tries < BUSY_TRIES => {
                tracing::warn!(error = %e, tries, "the directory import waited for the database's write lock; trying again");
                tries += 1;
            }
            other => return other,
        }
    }
}

async fn replace_once(
    db: &Db,
    data: &Dataset,
    source: Option<(&str, chrono::DateTime<chrono::Utc>)>,
) -> Result<i64, DbError> {
    // SQLite looks a numbered parameter's name up by walking the statement's list of names,
    // once per parameter: 2,000 `$N` cost 2,000² steps per statement. Anonymous `?` cost none.
    let numbered = db.backend() == Backend::Postgres;
    let mut tx = db.pool().begin().await?;
    for table in TABLES.iter().rev() {
        sqlx::query(&format!("DELETE FROM {}", sql_table(table))).execute(&mut *tx).await?;
    }
    for (t, table) in TABLES.iter().enumerate() {
        let rows = &data.tables[t];
        let per_stmt = (MAX_PARAMS / table.columns.len()).clamp(1, 500);
        for chunk in rows.chunks(per_stmt) {
            let mut sql = format!("INSERT INTO {} ({}) VALUES ", sql_table(table), column_list(table));
            let mut n = 0;
            for (r, _) in chunk.iter().enumerate() {
                if r > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for c in 0..table.columns.len() {
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    n += 1;
                    if numbered {
                        sql.push_str(&format!("${n}"));
                    } else {
                        sql.push('?');
                    }
                }
                sql.push(')');
            }
            let mut query = sqlx::query(&sql);
            for row in chunk {
                for (c, column) in table.columns.iter().enumerate() {
                    let v = row.get(c);
                    query = match column.kind {
                        Kind::Float { .. } => query.bind(v.and_then(|s| s.parse::<f64>().ok())),
                        Kind::Int => query.bind(v.and_then(|s| s.parse::<i64>().ok())),
                        _ => query.bind(v.map(str::to_owned)),
                    };
                }
            }
            query.execute(&mut *tx).await?;
        }
    }
    sqlx::query("UPDATE dir_meta SET value = value + 1 WHERE key = 'version'").execute(&mut *tx).await?;
    if let Some((source, now)) = source {
        super::editing::record_import(&mut tx, source, data.rows("service").len(), now).await?;
    }
    let version: i64 =
        sqlx::query("SELECT value FROM dir_meta WHERE key = 'version'").fetch_one(&mut *tx).await?.try_get(0)?;
    tx.commit().await?;
    Ok(version)
}

fn row_from(table: &Table, r: &sqlx::any::AnyRow) -> Result<Row, DbError> {
    let mut values = Vec::with_capacity(table.columns.len());
    for (c, column) in table.columns.iter().enumerate() {
        let v = match column.kind {
            k if is_float(k) => r.try_get::<Option<f64>, _>(c)?.map(|x| x.to_string()),
            Kind::Int => r.try_get::<Option<i64>, _>(c)?.map(|x| x.to_string()),
            _ => r.try_get::<Option<String>, _>(c)?,
        };
        values.push(v);
    }
    Ok(Row::new(values))
}

/// The whole directory, every table sorted by id.
pub async fn load_all(db: &Db) -> Result<Dataset, DbError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    // The sender moves into the reading future and closes the channel when it ends.
    let read = async move { stream_all(db, &tx).await };
    let collect = async {
        let mut data = Dataset::default();
        while let Some((t, row)) = rx.recv().await {
            data.tables[t].push(row);
        }
        data
    };
    let (read, data) = tokio::join!(read, collect);
    read?;
    Ok(data)
}

/// Every table's rows, table by table in the order of [`TABLES`] (by its index there), each
/// table sorted by id, sent one at a time: the index is built from them without the whole
/// directory's rows held at once. Returns when the last row is sent (or the receiver is gone).
pub async fn stream_all(db: &Db, to: &tokio::sync::mpsc::Sender<(usize, Row)>) -> Result<(), DbError> {
    for (t, table) in TABLES.iter().enumerate() {
        let sql = format!("SELECT {} FROM {} ORDER BY id", column_list(table), sql_table(table));
        // Row by row: the driver's rows of a whole table (every value boxed with its column's
        // metadata) are never all held at once (BENCHMARKS.md, "Memory").
        let mut rows = sqlx::query(&sql).fetch(db.pool());
        while let Some(r) = futures_util::TryStreamExt::try_next(&mut rows).await? {
            if to.send((t, row_from(table, &r)?)).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Rows of `table` whose `column` equals `value`, sorted by id.
pub async fn rows_where(db: &Db, table: &Table, column: &str, value: &str) -> Result<Vec<Row>, DbError> {
    let sql = format!(
        "SELECT {} FROM {} WHERE \"{}\" = $1 ORDER BY id",
        column_list(table),
        sql_table(table),
        column.replace('"', "")
    );
    let rows = sqlx::query(&sql).bind(value.to_owned()).fetch_all(db.pool()).await?;
    rows.iter().map(|r| row_from(table, r)).collect()
}

/// The directory's version: bumped by every write.
pub async fn version(db: &Db) -> Result<i64, DbError> {
    let row = sqlx::query("SELECT value FROM dir_meta WHERE key = 'version'").fetch_optional(db.pool()).await?;
    Ok(match row {
        Some(r) => r.try_get::<i64, _>(0)?,
        None => 0,
    })
}

/// How many services are stored.
pub async fn service_count(db: &Db) -> Result<i64, DbError> {
    let row = sqlx::query("SELECT COUNT(*) FROM dir_service").fetch_one(db.pool()).await?;
    Ok(row.try_get::<i64, _>(0)?)
}
