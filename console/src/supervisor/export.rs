//! CSV exports: the filtered call log, streamed page by page (keyset pages of [`EXPORT_PAGE`]
//! rows, so a year of calls never sits in memory), and the KPI table. UTF-8, a header row, fields
//! quoted as RFC 4180 says (the `csv` crate's writer). A field that a spreadsheet would run as a
//! formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return: an operator's note, a
//! masked `+39…` number) is written with a leading `'`, as OWASP's CSV-injection advice says.

use super::filter::{Cursor, LogFilter};
use super::kpi::KpiRow;
use super::log::{self, CallRow, Scope};
use crate::db::Db;
use axum::body::{Body, Bytes};
use futures_util::stream;

/// Rows fetched per database round trip while exporting.
pub const EXPORT_PAGE: usize = 1000;

pub const CALL_HEADER: [&str; 20] = [
    "call_id",
    "started_at",
    "ended_at",
    "channel",
    "language",
    "language_guessed",
    "area",
    "cap",
    "town",
    "outcome",
    "menu_secs",
    "queue_secs",
    "talk_secs",
    "operator",
    "disposition",
    "masked_number",
    "queue_status",
    "notes",
    "referrals",
    "operator_id",
];

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn call_record(c: &CallRow) -> [String; 20] {
    [
        c.call_id.clone(),
        c.started_at.clone(),
        opt(&c.ended_at),
        c.channel.clone(),
        opt(&c.language),
        c.language_guessed.to_string(),
        opt(&c.area),
        opt(&c.cap),
        opt(&c.town),
        opt(&c.outcome),
        opt(&c.menu_secs),
        opt(&c.queue_secs),
        opt(&c.talk_secs),
        opt(&c.operator),
        opt(&c.disposition),
        opt(&c.masked_number),
        opt(&c.queue_status),
        String::new(),
        String::new(),
        opt(&c.operator_id),
    ]
}

fn to_csv<I, R>(records: I) -> Result<Bytes, std::io::Error>
where
    I: IntoIterator<Item = R>,
    R: IntoIterator,
    R::Item: AsRef<[u8]>,
{
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in records {
        for field in r {
            w.write_field(inert(field.as_ref())).map_err(std::io::Error::other)?;
        }
        w.write_record(None::<&[u8]>).map_err(std::io::Error::other)?;
    }
    w.into_inner().map(Bytes::from).map_err(|e| std::io::Error::other(e.to_string()))
}

/// A field as a spreadsheet will show it, never run it: `'` before a leading formula character.
fn inert(field: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match field.first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => {
            let mut quoted = Vec::with_capacity(field.len() + 1);
            quoted.push(b'\'');
            quoted.extend_from_slice(field);
            std::borrow::Cow::Owned(quoted)
        }
        _ => std::borrow::Cow::Borrowed(field),
    }
}

/// The notes and referrals of a page of calls, joined as one text per call.
async fn extras(
    db: &Db,
    ids: &[String],
) -> Result<std::collections::HashMap<String, (String, String)>, crate::db::DbError> {
    let mut out: std::collections::HashMap<String, (String, String)> = std::collections::HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let list = marks.join(", ");
    let sql = format!("SELECT call_id, text FROM call_notes WHERE call_id IN ({list}) ORDER BY call_id, updated_at");
    let mut q = sqlx::query_as::<_, (String, String)>(&sql);
    for id in ids {
        q = q.bind(id);
    }
    for (id, text) in q.fetch_all(db.pool()).await? {
        let e = &mut out.entry(id).or_default().0;
        if !e.is_empty() {
            e.push_str(" | ");
        }
        e.push_str(&text);
    }
    let sql = format!("SELECT call_id, service_name FROM referrals WHERE call_id IN ({list}) ORDER BY call_id, at");
    let mut q = sqlx::query_as::<_, (String, String)>(&sql);
    for id in ids {
        q = q.bind(id);
    }
    for (id, name) in q.fetch_all(db.pool()).await? {
        let e = &mut out.entry(id).or_default().1;
        if !e.is_empty() {
            e.push_str(" | ");
        }
        e.push_str(&name);
    }
    Ok(out)
}

enum Next {
    Header,
    Page(Option<Cursor>),
    Done,
}

/// The call log as a streamed CSV body: the header, then one chunk per keyset page.
pub fn calls_csv(db: Db, mut filter: LogFilter, scope: Scope, now_ms: i64) -> Body {
    filter.limit = EXPORT_PAGE;
    let stream = stream::unfold((db, filter, Next::Header), move |(db, mut filter, next)| async move {
        match next {
            Next::Done => None,
            Next::Header => {
                let after = filter.after.clone();
                Some((to_csv([CALL_HEADER]), (db, filter, Next::Page(after))))
            }
            Next::Page(after) => {
                filter.after = after;
                let page = match log::page(&db, &filter, scope, now_ms).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "CSV export failed mid-stream");
                        return Some((Err(std::io::Error::other(e.to_string())), (db, filter, Next::Done)));
                    }
                };
                let ids: Vec<String> = page.calls.iter().map(|c| c.call_id.clone()).collect();
                let extra = match extras(&db, &ids).await {
                    Ok(x) => x,
                    Err(e) => return Some((Err(std::io::Error::other(e.to_string())), (db, filter, Next::Done))),
                };
                let chunk = to_csv(page.calls.iter().map(|c| {
                    let mut r = call_record(c);
                    if let Some((notes, referrals)) = extra.get(&c.call_id) {
                        r[17] = notes.clone();
                        r[18] = referrals.clone();
                    }
                    r
                }));
                let next = match page.next.as_deref().map(Cursor::decode) {
                    Some(Ok(c)) => Next::Page(Some(c)),
                    _ => Next::Done,
                };
                Some((chunk, (db, filter, next)))
            }
        }
    });
    Body::from_stream(stream)
}

pub const KPI_HEADER: [&str; 24] = [
    "group",
    "calls",
    "self_service",
    "queued",
    "answered",
    "answered_within_20s",
    "abandoned",
    "abandoned_within_5s",
    "wait_answered_secs",
    "wait_abandoned_secs",
    "max_wait_secs",
    "talk_secs",
    "callback",
    "out_of_hours",
    "hung_up_in_menu",
    "menu_secs",
    "callbacks_reached",
    "callbacks_unreachable",
    "service_level",
    "asa_secs",
    "abandonment_rate",
    "self_service_rate",
    "avg_talk_secs",
    "definitions",
];

fn ratio(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_default()
}

fn secs(ms: i64) -> String {
    format!("{:.1}", ms as f64 / 1000.0)
}

/// The KPI table (a few hundred rows at most) as CSV.
pub fn kpis_csv(rows: &[KpiRow], total: &KpiRow) -> Result<Bytes, std::io::Error> {
    let record = |r: &KpiRow, note: &str| {
        let c = &r.counts;
        let k = &r.kpis;
        vec![
            r.key.clone(),
            c.calls.to_string(),
            c.self_service.to_string(),
            c.queued.to_string(),
            c.answered.to_string(),
            c.answered_in_sl.to_string(),
            c.abandoned.to_string(),
            c.abandoned_short.to_string(),
            secs(c.wait_answered_ms),
            secs(c.wait_abandoned_ms),
            secs(c.max_wait_ms),
            secs(c.talk_ms),
            c.callback.to_string(),
            c.out_of_hours.to_string(),
            c.hung_up_in_menu.to_string(),
            secs(c.menu_ms),
            c.callbacks_reached.to_string(),
            c.callbacks_unreachable.to_string(),
            ratio(k.service_level),
            k.asa_secs.map(|x| format!("{x:.1}")).unwrap_or_default(),
            ratio(k.abandonment_rate),
            ratio(k.self_service_rate),
            k.avg_talk_secs.map(|x| format!("{x:.1}")).unwrap_or_default(),
            note.to_owned(),
        ]
    };
    let header = KPI_HEADER.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut all = vec![header];
    all.extend(rows.iter().map(|r| record(r, "")));
    all.push(record(total, super::DEFINITIONS_SHORT));
    to_csv(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_a_spreadsheet_would_run_are_made_inert() {
        let b = to_csv([["=HYPERLINK(\"http://evil\")", "+39 3** *** **12", "-2+3", "@SUM(A1)", "\tx", "a=b", "12"]])
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            "\"'=HYPERLINK(\"\"http://evil\"\")\",'+39 3** *** **12,'-2+3,'@SUM(A1),'\tx,a=b,12\n"
        );
    }

    #[test]
    fn fields_are_quoted_as_rfc_4180_says() {
        let b = to_csv([["plain", "with, comma", "with \"quotes\"", "two\nlines", "àèì"]]).unwrap();
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            "plain,\"with, comma\",\"with \"\"quotes\"\"\",\"two\nlines\",àèì\n"
        );
    }
}
