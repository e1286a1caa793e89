//! The call log: one row per call with its times, path summary and outcome, filtered and paged by
//! keyset (newest first, on `(started_at, call_id)`), so page 10 000 costs what page 1 costs.

use super::filter::{Cursor, LogFilter, OperatorRef};
use crate::clock::rfc3339;
use crate::db::{Db, DbError};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

/// One call as the log shows it. Times are RFC 3339 (UTC); durations whole seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRow {
    pub call_id: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub channel: String,
    pub language: Option<String>,
    pub language_guessed: bool,
    pub area: Option<String>,
    pub cap: Option<String>,
    pub town: Option<String>,
    pub outcome: Option<String>,
    /// From the call's start to entering the queue (or to its end).
    pub menu_secs: Option<i64>,
    /// From entering the queue to being answered, abandoning, leaving (or now, still waiting).
    pub queue_secs: Option<i64>,
    /// From being answered to the call's end.
    pub talk_secs: Option<i64>,
    pub operator_id: Option<i64>,
    pub operator: Option<String>,
    pub disposition: Option<String>,
    /// The caller's number as masked at call time (`+39 3** *** **12`); the full number is never stored.
    pub masked_number: Option<String>,
    pub queue_status: Option<String>,
    /// Epoch milliseconds of the start (for clients that compute).
    #[serde(skip)]
    pub started_ms: i64,
}

/// The columns a [`CallRow`] is read from (kept with [`call_row`]).
pub const CALL_COLUMNS: &str = "c.call_id, c.started_at, c.ended_at, c.channel, c.language, \
    CAST(c.language_guessed AS BIGINT), c.area, c.cap, c.town, c.outcome, c.operator_id, u.name, c.disposition, \
    c.caller_masked, q.entered_at, q.status, q.updated_at, c.answered_at";
pub const CALL_FROM: &str =
    "calls c LEFT JOIN queue_entries q ON q.call_id = c.call_id LEFT JOIN users u ON u.id = c.operator_id";

/// When an operator took the call: the console's `answered_at`, or the queue entry's last change
/// when it says assigned/answered (calls the SIP adapter transferred before the console existed).
pub const ANSWER_AT_SQL: &str =
    "COALESCE(c.answered_at, CASE WHEN q.status IN ('assigned', 'answered') THEN q.updated_at END)";

pub fn call_row(row: &AnyRow, now_ms: i64) -> Result<CallRow, sqlx::Error> {
    let started: i64 = row.try_get(1)?;
    let ended: Option<i64> = row.try_get(2)?;
    let queued: Option<i64> = row.try_get(14)?;
    let q_status: Option<String> = row.try_get(15)?;
    let q_updated: Option<i64> = row.try_get(16)?;
    let answered: Option<i64> = row.try_get(17)?;
    let answered = answered.or(match q_status.as_deref() {
        Some("assigned" | "answered") => q_updated,
        _ => None,
    });
    let secs = |a: i64, b: i64| (b - a).max(0) / 1000;
    let menu_end = queued.or(ended).unwrap_or(now_ms);
    let queue_secs = queued.map(|q| {
        let end = answered
            .or(match q_status.as_deref() {
                Some("abandoned" | "left") => q_updated,
                _ => None,
            })
            .or(ended)
            .unwrap_or(now_ms);
        secs(q, end)
    });
    Ok(CallRow {
        call_id: row.try_get(0)?,
        started_at: rfc3339(started),
        ended_at: ended.map(rfc3339),
        channel: row.try_get(3)?,
        language: row.try_get(4)?,
        language_guessed: row.try_get::<i64, _>(5)? != 0,
        area: row.try_get(6)?,
        cap: row.try_get(7)?,
        town: row.try_get(8)?,
        outcome: row.try_get(9)?,
        menu_secs: Some(secs(started, menu_end)),
        queue_secs,
        talk_secs: answered.map(|a| secs(a, ended.unwrap_or(now_ms))),
        operator_id: row.try_get(10)?,
        operator: row.try_get(11)?,
        disposition: row.try_get(12)?,
        masked_number: row.try_get(13)?,
        queue_status: q_status,
        started_ms: started,
    })
}

/// A value bound to a numbered placeholder.
#[derive(Debug, Clone)]
pub enum Bind {
    Text(String),
    Int(i64),
}

/// A WHERE clause under construction: conditions and their `$n` values.
#[derive(Debug, Default)]
pub struct Where {
    conds: Vec<String>,
    pub binds: Vec<Bind>,
}

impl Where {
    /// Adds a condition; `?` in it is replaced by the next placeholders, in order.
    pub fn push(&mut self, cond: &str, values: Vec<Bind>) {
        let mut out = String::new();
        let mut values = values.into_iter();
        for part in cond.split_inclusive('?') {
            if let Some(head) = part.strip_suffix('?') {
                out.push_str(head);
                if let Some(v) = values.next() {
                    self.binds.push(v);
                    out.push_str(&format!("${}", self.binds.len()));
                }
            } else {
                out.push_str(part);
            }
        }
        self.conds.push(out);
    }

    pub fn sql(&self) -> String {
        if self.conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conds.join(" AND "))
        }
    }

    pub fn query<'q>(&self, sql: &'q str) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        let mut q = sqlx::query(sql);
        for b in &self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s.clone()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

/// Whose calls a user may see.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scope {
    /// Supervisors and admins: every call.
    All,
    /// An operator: only the calls they took.
    Operator(i64),
}

/// A page of the log and where the next one starts.
#[derive(Debug, Serialize)]
pub struct Page {
    pub calls: Vec<CallRow>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// The operator id a filter names (`None`: the name is nobody, so nothing matches).
pub async fn resolve_operator(db: &Db, op: &OperatorRef) -> Result<Option<i64>, DbError> {
    match op {
        OperatorRef::Id(id) => Ok(Some(*id)),
        OperatorRef::Name(name) => {
            let row: Option<(i64,)> =
                sqlx::query_as("SELECT id FROM users WHERE name = $1").bind(name).fetch_optional(db.pool()).await?;
            Ok(row.map(|(id,)| id))
        }
    }
}

/// The filter's WHERE clause (without the cursor). `None` when it can match nothing.
pub async fn filter_where(db: &Db, f: &LogFilter, scope: Scope) -> Result<Option<Where>, DbError> {
    let mut w = Where::default();
    if let Scope::Operator(id) = scope {
        w.push("c.operator_id = ?", vec![Bind::Int(id)]);
    }
    if let Some(op) = &f.operator {
        match resolve_operator(db, op).await? {
            Some(id) => w.push("c.operator_id = ?", vec![Bind::Int(id)]),
            None => return Ok(None),
        }
    }
    if let Some(from) = f.from {
        w.push("c.started_at >= ?", vec![Bind::Int(from)]);
    }
    if let Some(to) = f.to {
        w.push("c.started_at < ?", vec![Bind::Int(to)]);
    }
    let text = [
        ("c.language = ?", f.language.map(|l| l.as_str().to_owned())),
        ("c.area = ?", f.area.map(|a| a.as_str().to_owned())),
        ("c.outcome = ?", f.outcome.map(str::to_owned)),
        ("c.disposition = ?", f.disposition.clone()),
        ("c.town = ?", f.town.clone()),
        ("c.channel = ?", f.channel.map(str::to_owned)),
    ];
    for (cond, value) in text {
        if let Some(v) = value {
            w.push(cond, vec![Bind::Text(v)]);
        }
    }
    Ok(Some(w))
}

/// Adds the keyset condition: rows strictly after the cursor, newest first. Written so that the
/// first term is a plain range the `(…, started_at, call_id)` indexes serve on both backends.
pub fn after_cursor(w: &mut Where, c: &Cursor) {
    w.push(
        "c.started_at <= ? AND (c.started_at < ? OR c.call_id < ?)",
        vec![Bind::Int(c.started_at), Bind::Int(c.started_at), Bind::Text(c.call_id.clone())],
    );
}

/// One page of the log.
pub async fn page(db: &Db, f: &LogFilter, scope: Scope, now_ms: i64) -> Result<Page, DbError> {
    let Some(mut w) = filter_where(db, f, scope).await? else {
        return Ok(Page { calls: Vec::new(), next: None });
    };
    if let Some(c) = &f.after {
        after_cursor(&mut w, c);
    }
    let sql = format!(
        "SELECT {CALL_COLUMNS} FROM {CALL_FROM}{} ORDER BY c.started_at DESC, c.call_id DESC LIMIT {}",
        w.sql(),
        f.limit + 1
    );
    let rows = w.query(&sql).fetch_all(db.pool()).await?;
    let mut calls = rows.iter().map(|r| call_row(r, now_ms)).collect::<Result<Vec<_>, _>>()?;
    let next = if calls.len() > f.limit {
        calls.truncate(f.limit);
        calls.last().map(|c| Cursor { started_at: c.started_ms, call_id: c.call_id.clone() }.encode())
    } else {
        None
    };
    Ok(Page { calls, next })
}

/// One call's row, if the scope lets the user see it.
pub async fn one(db: &Db, call_id: &str, scope: Scope, now_ms: i64) -> Result<Option<CallRow>, DbError> {
    let mut w = Where::default();
    w.push("c.call_id = ?", vec![Bind::Text(call_id.to_owned())]);
    if let Scope::Operator(id) = scope {
        w.push("c.operator_id = ?", vec![Bind::Int(id)]);
    }
    let sql = format!("SELECT {CALL_COLUMNS} FROM {CALL_FROM}{}", w.sql());
    let row = w.query(&sql).fetch_optional(db.pool()).await?;
    Ok(row.map(|r| call_row(&r, now_ms)).transpose()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut w = Where::default();
        w.push("a = ?", vec![Bind::Int(1)]);
        after_cursor(&mut w, &Cursor { started_at: 5, call_id: "x".into() });
        assert_eq!(w.sql(), " WHERE a = $1 AND c.started_at <= $2 AND (c.started_at < $3 OR c.call_id < $4)");
        assert_eq!(w.binds.len(), 4);
    }
}
