//! The contact-centre KPIs, as pure functions over additive counts.
//!
//! The database hands over [`Counts`] per UTC hour × language × area (live from the calls, or from
//! the `kpi_hourly` roll-up once the calls are purged); this module groups them by Rome day, Rome
//! hour, language or area, and turns each group's counts into ratios. The definitions (also in
//! `docs/supervisors.md` and on the page):
//!
//! - **queued** (offered): calls that entered the operator queue.
//! - **answered**: queued calls an operator took; their **wait** runs from entering the queue to
//!   being answered.
//! - **abandoned**: queued calls whose caller hung up while waiting; **short** abandons hung up
//!   within [`SHORT_ABANDON_MS`] (5 s) of entering the queue.
//! - **service level** = answered within [`SERVICE_LEVEL_MS`] (20 s) ÷ (answered + abandoned after
//!   5 s). Short abandons are left out of the denominator (misdials, callers who changed their
//!   mind before any operator could have answered); longer abandons count against it.
//! - **ASA** (average speed of answer) = total wait of answered calls ÷ answered calls.
//! - **abandonment rate** = abandoned (all, short ones included) ÷ queued.
//! - **self-service rate** = calls that heard nearby services read back (outcome `self_service`)
//!   ÷ all calls.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Europe::Rome;
use serde::Serialize;
use std::collections::BTreeMap;

/// Answered within this long of entering the queue counts towards the service level.
pub const SERVICE_LEVEL_MS: i64 = 20_000;
/// Callers who abandon within this long of entering the queue are left out of the service level.
pub const SHORT_ABANDON_MS: i64 = 5_000;

/// The additive counts of a set of calls. Every KPI is computed from these, so sums of counts
/// (hours into days, languages into totals) give the KPIs of the sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub calls: i64,
    pub self_service: i64,
    pub queued: i64,
    pub answered: i64,
    pub answered_in_sl: i64,
    pub abandoned: i64,
    pub abandoned_short: i64,
    pub wait_answered_ms: i64,
    pub wait_abandoned_ms: i64,
    pub max_wait_ms: i64,
    pub talk_ms: i64,
    pub callback: i64,
    pub out_of_hours: i64,
    pub hung_up_in_menu: i64,
    pub menu_ms: i64,
    /// Callbacks that reached the caller, counted in the hour they did (not per call: they come
    /// after the call, often after it is settled; `callback::attempt` adds them to `kpi_hourly`).
    pub callbacks_reached: i64,
    /// Callbacks closed as unreachable after `callback_max_attempts`, in the hour they were.
    pub callbacks_unreachable: i64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.calls += o.calls;
        self.self_service += o.self_service;
        self.queued += o.queued;
        self.answered += o.answered;
        self.answered_in_sl += o.answered_in_sl;
        self.abandoned += o.abandoned;
        self.abandoned_short += o.abandoned_short;
        self.wait_answered_ms += o.wait_answered_ms;
        self.wait_abandoned_ms += o.wait_abandoned_ms;
        self.max_wait_ms = self.max_wait_ms.max(o.max_wait_ms);
        self.talk_ms += o.talk_ms;
        self.callback += o.callback;
        self.out_of_hours += o.out_of_hours;
        self.hung_up_in_menu += o.hung_up_in_menu;
        self.menu_ms += o.menu_ms;
        self.callbacks_reached += o.callbacks_reached;
        self.callbacks_unreachable += o.callbacks_unreachable;
    }

    /// The counts of one call, from its facts: the reference definition (the SQL that aggregates
    /// in the database, `store.rs`, computes the same sums).
    pub fn of_call(call: &CallFacts) -> Counts {
        let mut c = Counts { calls: 1, ..Counts::default() };
        match call.outcome.as_deref() {
            Some("self_service") => c.self_service = 1,
            Some("callback") => c.callback = 1,
            Some("out_of_hours") => c.out_of_hours = 1,
            Some("hung_up_in_menu") => c.hung_up_in_menu = 1,
            _ => {}
        }
        let menu_end = call.queued_at.or(call.ended_at);
        if let Some(end) = menu_end {
            c.menu_ms = (end - call.started_at).max(0);
        }
        if let Some(queued_at) = call.queued_at {
            c.queued = 1;
            if let Some(answered_at) = call.answered_at {
                let wait = (answered_at - queued_at).max(0);
                c.answered = 1;
                c.wait_answered_ms = wait;
                c.max_wait_ms = wait;
                c.answered_in_sl = i64::from(wait <= SERVICE_LEVEL_MS);
                if let Some(ended) = call.ended_at {
                    c.talk_ms = (ended - answered_at).max(0);
                }
            } else if let Some(abandoned_at) = call.abandoned_at {
                let wait = (abandoned_at - queued_at).max(0);
                c.abandoned = 1;
                c.abandoned_short = i64::from(wait < SHORT_ABANDON_MS);
                c.wait_abandoned_ms = wait;
                c.max_wait_ms = wait;
            }
        }
        c
    }

    pub fn kpis(&self) -> Kpis {
        let ratio = |n: i64, d: i64| (d > 0).then(|| n as f64 / d as f64);
        Kpis {
            service_level: ratio(self.answered_in_sl, self.answered + self.abandoned - self.abandoned_short),
            asa_secs: ratio(self.wait_answered_ms, self.answered).map(|ms| ms / 1000.0),
            abandonment_rate: ratio(self.abandoned, self.queued),
            self_service_rate: ratio(self.self_service, self.calls),
            avg_talk_secs: ratio(self.talk_ms, self.answered).map(|ms| ms / 1000.0),
            max_wait_secs: self.max_wait_ms as f64 / 1000.0,
        }
    }
}

/// What the KPIs need to know of one call (instants in epoch milliseconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallFacts {
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub outcome: Option<String>,
    /// When it entered the operator queue.
    pub queued_at: Option<i64>,
    /// When an operator took it.
    pub answered_at: Option<i64>,
    /// When the caller hung up while still waiting.
    pub abandoned_at: Option<i64>,
}

/// The ratios of a group. `None` where the denominator is zero (shown as "—", never as 0 %).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Kpis {
    pub service_level: Option<f64>,
    pub asa_secs: Option<f64>,
    pub abandonment_rate: Option<f64>,
    pub self_service_rate: Option<f64>,
    pub avg_talk_secs: Option<f64>,
    pub max_wait_secs: f64,
}

/// The counts of one UTC hour, language and area ('' for none), as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Hours since the Unix epoch (UTC).
    pub hour_utc: i64,
    pub language: String,
    pub area: String,
    pub counts: Counts,
}

/// How KPI rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    /// By day in Europe/Rome (`2026-11-24`).
    Day,
    /// By hour in Europe/Rome, over the whole range (`00`…`23`): the daily profile.
    Hour,
    Language,
    Area,
}

impl Grouping {
    pub fn parse(s: &str) -> Result<Grouping, String> {
        match s {
            "day" => Ok(Grouping::Day),
            "hour" => Ok(Grouping::Hour),
            "language" => Ok(Grouping::Language),
            "area" => Ok(Grouping::Area),
            other => Err(format!("unknown group {other:?}: use day, hour, language or area")),
        }
    }
}

/// The Rome calendar day an epoch hour falls in.
pub fn rome_day(hour_utc: i64) -> String {
    rome_time(hour_utc).map(|t| format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day())).unwrap_or_default()
}

fn rome_time(hour_utc: i64) -> Option<DateTime<chrono_tz::Tz>> {
    DateTime::<Utc>::from_timestamp(hour_utc.checked_mul(3600)?, 0).map(|t| t.with_timezone(&Rome))
}

/// Midnight in Rome at the start of `day`, in epoch milliseconds.
pub fn rome_midnight_ms(day: NaiveDate) -> i64 {
    let naive = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    // Midnight always exists in Rome (DST switches at 02:00/03:00).
    Rome.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|| naive.and_utc().timestamp_millis())
}

/// The Rome calendar day of an instant.
pub fn rome_date(ms: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().with_timezone(&Rome).date_naive()
}

/// One group's counts and KPIs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiRow {
    pub key: String,
    #[serde(flatten)]
    pub counts: Counts,
    #[serde(flatten)]
    pub kpis: Kpis,
}

/// Groups buckets and computes each group's KPIs; rows sorted by key. Returns the rows and the
/// total over all buckets.
pub fn group(buckets: &[Bucket], by: Grouping) -> (Vec<KpiRow>, KpiRow) {
    let mut groups: BTreeMap<String, Counts> = BTreeMap::new();
    let mut total = Counts::default();
    for b in buckets {
        let key = match by {
            Grouping::Day => rome_day(b.hour_utc),
            Grouping::Hour => rome_time(b.hour_utc).map(|t| format!("{:02}", t.hour())).unwrap_or_default(),
            Grouping::Language => {
                if b.language.is_empty() {
                    "none".to_owned()
                } else {
                    b.language.clone()
                }
            }
            Grouping::Area => {
                if b.area.is_empty() {
                    "none".to_owned()
                } else {
                    b.area.clone()
                }
            }
        };
        groups.entry(key).or_default().add(&b.counts);
        total.add(&b.counts);
    }
    let rows = groups.into_iter().map(|(key, counts)| KpiRow { key, kpis: counts.kpis(), counts }).collect();
    (rows, KpiRow { key: "total".to_owned(), kpis: total.kpis(), counts: total })
}

/// Sums the counts of calls into buckets (the pure twin of the database's aggregation).
pub fn bucket_calls<'a>(calls: impl IntoIterator<Item = (&'a CallFacts, &'a str, &'a str)>) -> Vec<Bucket> {
    let mut map: BTreeMap<(i64, String, String), Counts> = BTreeMap::new();
    for (call, language, area) in calls {
        map.entry((call.started_at.div_euclid(3_600_000), language.to_owned(), area.to_owned()))
            .or_default()
            .add(&Counts::of_call(call));
    }
    map.into_iter().map(|((hour_utc, language, area), counts)| Bucket { hour_utc, language, area, counts }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-24 (a Tuesday; Rome is UTC+1) at hh:mm:ss Rome time, in ms.
    fn at(h: u32, m: u32, s: u32) -> i64 {
        Rome.with_ymd_and_hms(2026, 11, 24, h, m, s).unwrap().timestamp_millis()
    }

    /// A hand-made day: eight calls, every outcome.
    fn fixture() -> Vec<(CallFacts, &'static str, &'static str)> {
        let call = |start: i64, end: i64, outcome: &str| CallFacts {
            started_at: start,
            ended_at: Some(end),
            outcome: Some(outcome.to_owned()),
            ..CallFacts::default()
        };
        vec![
            // 1. it/casa 10:00: queued 30 s in menu, answered after 10 s, talked 120 s.
            (
                CallFacts {
                    queued_at: Some(at(10, 0, 30)),
                    answered_at: Some(at(10, 0, 40)),
                    ..call(at(10, 0, 0), at(10, 2, 40), "answered")
                },
                "it",
                "casa",
            ),
            // 2. it/casa 10:05: queued after 20 s, answered after 40 s, talked 60 s.
            (
                CallFacts {
                    queued_at: Some(at(10, 5, 20)),
                    answered_at: Some(at(10, 6, 0)),
                    ..call(at(10, 5, 0), at(10, 7, 0), "answered")
                },
                "it",
                "casa",
            ),
            // 3. fr/lavoro 10:30: queued after 10 s, abandoned after 3 s (short).
            (
                CallFacts {
                    queued_at: Some(at(10, 30, 10)),
                    abandoned_at: Some(at(10, 30, 13)),
                    ..call(at(10, 30, 0), at(10, 30, 13), "hung_up_in_queue")
                },
                "fr",
                "lavoro",
            ),
            // 4. fr/lavoro 11:10: queued after 15 s, abandoned after 60 s.
            (
                CallFacts {
                    queued_at: Some(at(11, 10, 15)),
                    abandoned_at: Some(at(11, 11, 15)),
                    ..call(at(11, 10, 0), at(11, 11, 15), "hung_up_in_queue")
                },
                "fr",
                "lavoro",
            ),
            // 5. en/salute 11:20: self-service, 90 s in the menu.
            (call(at(11, 20, 0), at(11, 21, 30), "self_service"), "en", "salute"),
            // 6. it/none 11:40: hung up in the menu after 8 s.
            (call(at(11, 40, 0), at(11, 40, 8), "hung_up_in_menu"), "it", ""),
            // 7. es/casa 11:50: callback request after 45 s.
            (call(at(11, 50, 0), at(11, 50, 45), "callback"), "es", "casa"),
            // 8. it/casa 11:55: queued after 5 s, answered after exactly 20 s, talked 100 s.
            (
                CallFacts {
                    queued_at: Some(at(11, 55, 5)),
                    answered_at: Some(at(11, 55, 25)),
                    ..call(at(11, 55, 0), at(11, 57, 5), "answered")
                },
                "it",
                "casa",
            ),
        ]
    }

    fn buckets() -> Vec<Bucket> {
        let f = fixture();
        bucket_calls(f.iter().map(|(c, l, a)| (c, *l, *a)))
    }

    #[test]
    fn totals_match_the_hand_computed_figures() {
        let (_, total) = group(&buckets(), Grouping::Day);
        let c = total.counts;
        assert_eq!((c.calls, c.queued, c.answered, c.answered_in_sl), (8, 5, 3, 2));
        assert_eq!((c.abandoned, c.abandoned_short, c.self_service, c.callback, c.hung_up_in_menu), (2, 1, 1, 1, 1));
        assert_eq!(c.wait_answered_ms, 70_000, "10 + 40 + 20 s");
        assert_eq!(c.talk_ms, 280_000, "120 + 60 + 100 s");
        assert_eq!(c.max_wait_ms, 60_000);
        // Menu: 30 + 20 + 10 + 15 + 90 + 8 + 45 + 5 = 223 s.
        assert_eq!(c.menu_ms, 223_000);
        let k = total.kpis;
        // SL: 2 answered within 20 s (10 s and exactly 20 s) ÷ (3 answered + 1 abandoned after 5 s).
        assert_eq!(k.service_level, Some(0.5));
        assert_eq!(k.asa_secs, Some(70.0 / 3.0));
        assert_eq!(k.abandonment_rate, Some(2.0 / 5.0));
        assert_eq!(k.self_service_rate, Some(1.0 / 8.0));
        assert_eq!(k.max_wait_secs, 60.0);
    }

    #[test]
    fn groups_by_rome_hour_language_and_area() {
        let b = buckets();
        let (hours, _) = group(&b, Grouping::Hour);
        let keys: Vec<_> = hours.iter().map(|r| (r.key.as_str(), r.counts.calls)).collect();
        assert_eq!(keys, [("10", 3), ("11", 5)], "Rome hours, not UTC");
        assert_eq!(hours[0].kpis.service_level, Some(0.5), "10h: 1 of 2 answered in time, the short abandon left out");
        assert_eq!(hours[1].kpis.service_level, Some(0.5), "11h: 1 answered in time, 1 long abandon");

        let (langs, _) = group(&b, Grouping::Language);
        let it = langs.iter().find(|r| r.key == "it").unwrap();
        assert_eq!((it.counts.calls, it.counts.answered), (4, 3));
        assert_eq!(it.kpis.asa_secs, Some(70.0 / 3.0));
        let fr = langs.iter().find(|r| r.key == "fr").unwrap();
        assert_eq!(fr.kpis.service_level, Some(0.0), "one long abandon, nobody answered");
        assert_eq!(fr.kpis.asa_secs, None, "no answered call: no ASA, not zero");
        assert_eq!(fr.kpis.abandonment_rate, Some(1.0));

        let (areas, _) = group(&b, Grouping::Area);
        let keys: Vec<_> = areas.iter().map(|r| (r.key.as_str(), r.counts.calls)).collect();
        assert_eq!(keys, [("casa", 4), ("lavoro", 2), ("none", 1), ("salute", 1)]);

        let (days, _) = group(&b, Grouping::Day);
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].key, "2026-11-24");
    }

    #[test]
    fn sums_of_buckets_give_the_kpis_of_the_sum() {
        // Splitting the calls across buckets and re-adding them changes nothing.
        let b = buckets();
        let mut sum = Counts::default();
        for x in &b {
            sum.add(&x.counts);
        }
        let (_, total) = group(&b, Grouping::Area);
        assert_eq!(sum, total.counts);
        assert_eq!(sum.kpis(), total.kpis);
    }

    #[test]
    fn rome_days_follow_daylight_saving() {
        // 2026-03-29 01:00 UTC is 03:00 CEST in Rome, the same day; 2026-03-28 23:00 UTC is midnight.
        let h = |y, m, d, hh| Utc.with_ymd_and_hms(y, m, d, hh, 0, 0).unwrap().timestamp() / 3600;
        assert_eq!(rome_day(h(2026, 3, 28, 22)), "2026-03-28");
        assert_eq!(rome_day(h(2026, 3, 28, 23)), "2026-03-29");
        assert_eq!(rome_day(h(2026, 7, 1, 22)), "2026-07-02", "UTC+2 in summer");
        let d = NaiveDate::from_ymd_opt(2026, 7, 2).unwrap();
        assert_eq!(rome_midnight_ms(d), Utc.with_ymd_and_hms(2026, 7, 1, 22, 0, 0).unwrap().timestamp_millis());
        assert_eq!(rome_date(rome_midnight_ms(d)), d);
    }

    #[test]
    fn an_empty_range_has_no_ratios() {
        let k = Counts::default().kpis();
        assert_eq!((k.service_level, k.asa_secs, k.abandonment_rate, k.self_service_rate), (None, None, None, None));
    }
}
