//! The call log's filters and its keyset cursor, parsed from the query string into valid values
//! (bad input is a 400 naming the parameter, never a panic nor a silently ignored filter).

use super::kpi::{rome_date, rome_midnight_ms};
use base64::Engine;
use chrono::{DateTime, NaiveDate};
use ivr::domain::{Language, ServiceArea};
use serde::Deserialize;

/// Outcomes a call can end with (`ivr::engine::Outcome`, as stored).
pub const OUTCOMES: [&str; 7] =
    ["self_service", "queued", "answered", "callback", "out_of_hours", "hung_up_in_menu", "hung_up_in_queue"];
/// The telephony channels, as stored.
pub const CHANNELS: [&str; 3] = ["sip", "webhook", "twiml"];
/// Rows per page when `limit` is not given, and at most.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

/// The query string as sent.
#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub language: Option<String>,
    pub area: Option<String>,
    pub outcome: Option<String>,
    pub operator: Option<String>,
    pub disposition: Option<String>,
    pub town: Option<String>,
    pub channel: Option<String>,
    pub limit: Option<String>,
    pub after: Option<String>,
}

/// Who the operator filter names: a user id or a user name.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorRef {
    Id(i64),
    Name(String),
}

/// A validated filter. Instants are epoch milliseconds; `to` is exclusive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFilter {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub language: Option<Language>,
    pub area: Option<ServiceArea>,
    pub outcome: Option<&'static str>,
    pub operator: Option<OperatorRef>,
    pub disposition: Option<String>,
    pub town: Option<String>,
    pub channel: Option<&'static str>,
    pub limit: usize,
    pub after: Option<Cursor>,
}

/// Where the previous page stopped: the last row's start and call id (newest first).
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub started_at: i64,
    pub call_id: String,
}

impl Cursor {
    /// Opaque to clients: base64url of `<started_at>:<call_id>`.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", self.started_at, self.call_id))
    }

    pub fn decode(s: &str) -> Result<Cursor, String> {
        let bad = || "invalid `after` cursor: pass the `next` value of the previous page".to_owned();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let (at, id) = raw.split_once(':').ok_or_else(bad)?;
        let started_at = at.parse().map_err(|_| bad())?;
        if id.is_empty() {
            return Err(bad());
        }
        Ok(Cursor { started_at, call_id: id.to_owned() })
    }
}

/// An instant: RFC 3339 (`2026-11-24T09:00:00Z`) or a day (`2026-11-24`, midnight in Rome). For
/// `to`, a day means the end of that day.
fn instant(name: &str, s: &str, end_of_day: bool) -> Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) if end_of_day => Ok(rome_midnight_ms(d.succ_opt().unwrap_or(d))),
        Ok(d) => Ok(rome_midnight_ms(d)),
        Err(_) => Err(format!("`{name}`: {s:?} is neither a date (2026-11-24) nor an RFC 3339 instant")),
    }
}

/// The range `from`/`to` (either may be absent). A `to` before `from` is an error.
pub fn range(from: Option<&str>, to: Option<&str>) -> Result<(Option<i64>, Option<i64>), String> {
    let from = from.filter(|s| !s.is_empty()).map(|s| instant("from", s, false)).transpose()?;
    let to = to.filter(|s| !s.is_empty()).map(|s| instant("to", s, true)).transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if t < f {
            return Err("`to` is before `from`".to_owned());
        }
    }
    Ok((from, to))
}

/// The Rome day boundaries of a KPI range: defaults to the last 7 days including today.
pub fn day_range(from: Option<&str>, to: Option<&str>, now_ms: i64) -> Result<(i64, i64), String> {
    let (f, t) = range(from, to)?;
    let today = rome_date(now_ms);
    let to = t.unwrap_or_else(|| rome_midnight_ms(today.succ_opt().unwrap_or(today)));
    let from = f.unwrap_or_else(|| rome_midnight_ms(today - chrono::Days::new(6)));
    if to < from {
        return Err("`to` is before `from`".to_owned());
    }
    Ok((from, to))
}

fn pick(name: &str, value: &str, allowed: &[&'static str]) -> Result<&'static str, String> {
    allowed
        .iter()
        .find(|a| **a == value)
        .copied()
        .ok_or_else(|| format!("`{name}`: {value:?} is not one of {}", allowed.join(", ")))
}

fn text(name: &str, value: &str) -> Result<String, String> {
    if value.chars().count() > 100 || value.chars().any(char::is_control) {
        return Err(format!("`{name}`: at most 100 printable characters"));
    }
    Ok(value.to_owned())
}

impl LogQuery {
    pub fn parse(&self) -> Result<LogFilter, String> {
        let present = |o: &Option<String>| o.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
        let (from, to) = range(self.from.as_deref(), self.to.as_deref())?;
        let limit = match present(&self.limit) {
            None => DEFAULT_LIMIT,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(format!("`limit`: {s:?} is not a number from 1 to {MAX_LIMIT}")),
            },
        };
        Ok(LogFilter {
            from,
            to,
            language: present(&self.language)
                .map(|s| Language::parse(&s).map_err(|e| format!("`language`: {e}")))
                .transpose()?,
            area: present(&self.area)
                .map(|s| ServiceArea::parse(&s).map_err(|e| format!("`area`: {e}")))
                .transpose()?,
            outcome: present(&self.outcome).map(|s| pick("outcome", &s, &OUTCOMES)).transpose()?,
            operator: present(&self.operator)
                .map(|s| match s.parse::<i64>() {
                    Ok(id) => Ok(OperatorRef::Id(id)),
                    Err(_) => text("operator", &s).map(OperatorRef::Name),
                })
                .transpose()?,
            disposition: present(&self.disposition).map(|s| text("disposition", &s)).transpose()?,
            town: present(&self.town).map(|s| text("town", &s)).transpose()?,
            channel: present(&self.channel).map(|s| pick("channel", &s, &CHANNELS)).transpose()?,
            limit,
            after: present(&self.after).map(|s| Cursor::decode(&s)).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor { started_at: 1_790_000_000_123, call_id: "CA:weird/id".into() };
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        for bad in ["", "!!!", "bm9jb2xvbg", "MTIz"] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_parse_into_valid_filters_or_name_the_bad_parameter() {
        let q = LogQuery {
            from: Some("2026-11-24".into()),
            to: Some("2026-11-24".into()),
            language: Some("fr".into()),
            outcome: Some("answered".into()),
            operator: Some("anna".into()),
            limit: Some("10".into()),
            ..LogQuery::default()
        };
        let f = q.parse().unwrap();
        assert_eq!(f.to.unwrap() - f.from.unwrap(), 86_400_000, "a whole Rome day");
        assert_eq!(f.language, Some(Language::Fr));
        assert_eq!(f.operator, Some(OperatorRef::Name("anna".into())));
        assert_eq!(f.limit, 10);
        for (q, word) in [
            (LogQuery { language: Some("xx".into()), ..LogQuery::default() }, "language"),
            (LogQuery { outcome: Some("won".into()), ..LogQuery::default() }, "outcome"),
            (LogQuery { channel: Some("fax".into()), ..LogQuery::default() }, "channel"),
            (LogQuery { limit: Some("0".into()), ..LogQuery::default() }, "limit"),
            (LogQuery { limit: Some("9999".into()), ..LogQuery::default() }, "limit"),
            (LogQuery { from: Some("yesterday".into()), ..LogQuery::default() }, "from"),
            (
                LogQuery { from: Some("2026-11-26".into()), to: Some("2026-11-24".into()), ..LogQuery::default() },
                "before",
            ),
            (LogQuery { after: Some("zz".into()), ..LogQuery::default() }, "after"),
        ] {
            let e = q.parse().unwrap_err();
            assert!(e.contains(word), "{e}");
        }
        assert_eq!(LogQuery::default().parse().unwrap().limit, DEFAULT_LIMIT);
    }
}
