//! Weekly opening hours with holidays, evaluated in the helpline's time zone.

use super::holidays::is_national_holiday;
use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::BTreeSet;

/// The `[hours]` table of `config/ivr.toml`, as written by an administrator.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursConfig {
    /// IANA time zone of the opening hours.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Opening ranges per weekday, `"HH:MM-HH:MM"`; a range whose closing time is not after its
    /// opening time closes the next day (`"20:00-02:00"`); `"24:00"` closes at midnight.
    #[serde(default)]
    pub monday: Vec<String>,
    #[serde(default)]
    pub tuesday: Vec<String>,
    #[serde(default)]
    pub wednesday: Vec<String>,
    #[serde(default)]
    pub thursday: Vec<String>,
    #[serde(default)]
    pub friday: Vec<String>,
    #[serde(default)]
    pub saturday: Vec<String>,
    #[serde(default)]
    pub sunday: Vec<String>,
    /// Whether the Italian national holidays close the helpline (default: yes).
    #[serde(default = "yes")]
    pub national_holidays: bool,
    /// Extra closing days, `"YYYY-MM-DD"` (a patron saint's day, 24 December…).
    #[serde(default)]
    pub extra_holidays: Vec<String>,
}

fn default_timezone() -> String {
    "Europe/Rome".to_owned()
}

fn yes() -> bool {
    true
}

/// Why an `[hours]` table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoursError {
    #[error("unknown time zone {0:?} (expected an IANA name such as Europe/Rome)")]
    Timezone(String),
    #[error("{day}: invalid opening range {range:?} (expected \"HH:MM-HH:MM\", e.g. \"09:00-13:00\")")]
    Range { day: &'static str, range: String },
    #[error("invalid extra holiday {0:?} (expected YYYY-MM-DD)")]
    Holiday(String),
    #[error("no opening hours at all: every week day is closed")]
    NeverOpen,
}

/// One opening range in minutes after local midnight. `close_min <= open_min` means it closes
/// the next day at `close_min`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpeningRange {
    pub open_min: u16,
    pub close_min: u16,
}

impl OpeningRange {
    fn parse(s: &str) -> Option<OpeningRange> {
        let (a, b) = s.trim().split_once('-')?;
        let open_min = parse_hhmm(a)?;
        let close_min = parse_hhmm(b)?;
        if open_min >= 24 * 60 || open_min == close_min {
            return None;
        }
        Some(OpeningRange { open_min, close_min })
    }

    fn overnight(self) -> bool {
        self.close_min <= self.open_min
    }

    /// The opening time as `HH:MM`.
    pub fn open_hhmm(self) -> String {
        format!("{:02}:{:02}", self.open_min / 60, self.open_min % 60)
    }
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

/// Validated opening hours. Pure: every method takes the instant to judge.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    tz: Tz,
    /// Index 0 = Monday.
    weekly: [Vec<OpeningRange>; 7],
    national_holidays: bool,
    extra_holidays: BTreeSet<NaiveDate>,
}

const DAY_NAMES: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

impl Schedule {
    pub fn from_config(cfg: &HoursConfig) -> Result<Schedule, HoursError> {
        let tz: Tz = cfg.timezone.parse().map_err(|_| HoursError::Timezone(cfg.timezone.clone()))?;
        let days = [&cfg.monday, &cfg.tuesday, &cfg.wednesday, &cfg.thursday, &cfg.friday, &cfg.saturday, &cfg.sunday];
        let mut weekly: [Vec<OpeningRange>; 7] = Default::default();
        for (i, ranges) in days.iter().enumerate() {
            for r in ranges.iter() {
                let range =
                    OpeningRange::parse(r).ok_or_else(|| HoursError::Range { day: DAY_NAMES[i], range: r.clone() })?;
                weekly[i].push(range);
            }
            weekly[i].sort_by_key(|r| r.open_min);
        }
        if weekly.iter().all(Vec::is_empty) {
            return Err(HoursError::NeverOpen);
        }
        let extra_holidays = cfg
            .extra_holidays
            .iter()
            .map(|s| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| HoursError::Holiday(s.clone())))
            .collect::<Result<_, _>>()?;
        Ok(Schedule { tz, weekly, national_holidays: cfg.national_holidays, extra_holidays })
    }

    /// Whether the helpline is closed all day (a national or configured holiday).
    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        (self.national_holidays && is_national_holiday(date)) || self.extra_holidays.contains(&date)
    }

    fn ranges_of(&self, date: NaiveDate) -> &[OpeningRange] {
        if self.is_holiday(date) {
            &[]
        } else {
            &self.weekly[date.weekday().num_days_from_monday() as usize]
        }
    }

    /// Whether operators answer at this instant. A range that runs past midnight belongs to the day
    /// it opens: it is honoured even if the next day is a holiday.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.tz).naive_local();
        let date = local.date();
        let t = (local.hour() * 60 + local.minute()) as u16;
        let today = self.ranges_of(date).iter().any(|r| {
            if r.overnight() {
                t >= r.open_min
            } else {
                t >= r.open_min && t < r.close_min
            }
        });
        if today {
            return true;
        }
        match date.checked_sub_days(Days::new(1)) {
            Some(yesterday) => self.ranges_of(yesterday).iter().any(|r| r.overnight() && t < r.close_min),
            None => false,
        }
    }

    /// The next instant (strictly after `now`, within 31 days) at which a range opens, in local
    /// time. Opening times that fall in a DST gap are skipped.
    pub fn next_opening(&self, now: DateTime<Utc>) -> Option<DateTime<Tz>> {
        let local_now = now.with_timezone(&self.tz);
        let mut date = local_now.date_naive();
        for _ in 0..=31 {
            for r in self.ranges_of(date) {
                let time = NaiveTime::from_hms_opt(u32::from(r.open_min / 60), u32::from(r.open_min % 60), 0)?;
                if let Some(at) = self.tz.from_local_datetime(&date.and_time(time)).earliest() {
                    if at > local_now {
                        return Some(at);
                    }
                }
            }
            date = date.checked_add_days(Days::new(1))?;
        }
        None
    }

    /// The time zone the hours are expressed in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The opening ranges of a weekday (ignoring holidays).
    pub fn ranges(&self, day: Weekday) -> &[OpeningRange] {
        &self.weekly[day.num_days_from_monday() as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;

    fn cfg() -> HoursConfig {
        let week = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        HoursConfig {
            timezone: "Europe/Rome".into(),
            monday: week(&["09:00-13:00", "14:00-18:00"]),
            tuesday: week(&["09:00-18:00"]),
            wednesday: week(&["09:00-18:00"]),
            thursday: week(&["09:00-18:00"]),
            friday: week(&["09:00-18:00", "20:00-02:00"]),
            saturday: week(&["09:00-13:00"]),
            sunday: vec![],
            national_holidays: true,
            extra_holidays: vec!["2026-12-24".into()],
        }
    }

    fn schedule() -> Schedule {
        Schedule::from_config(&cfg()).unwrap()
    }

    /// A Rome wall-clock time, converted to UTC (earliest if ambiguous).
    fn rome(s: &str) -> DateTime<Utc> {
        let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        chrono_tz::Europe::Rome.from_local_datetime(&naive).earliest().unwrap().with_timezone(&Utc)
    }

    fn utc(s: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap().and_utc()
    }

    #[test]
    fn weekday_ranges_with_a_lunch_break() {
        let s = schedule();
        // Monday 2026-03-02.
        for (t, open) in [
            ("2026-03-02 08:59", false),
            ("2026-03-02 09:00", true),
            ("2026-03-02 12:59", true),
            ("2026-03-02 13:00", false),
            ("2026-03-02 13:30", false),
            ("2026-03-02 14:00", true),
            ("2026-03-02 17:59", true),
            ("2026-03-02 18:00", false),
            ("2026-03-07 10:00", true),  // Saturday morning
            ("2026-03-07 15:00", false), // Saturday afternoon
            ("2026-03-08 10:00", false), // Sunday
        ] {
            assert_eq!(s.is_open(rome(t)), open, "{t}");
        }
    }

    #[test]
    fn utc_instants_are_judged_in_rome_time_across_dst() {
        let s = schedule();
        // Winter (CET, UTC+1): 08:30 UTC is 09:30 in Rome.
        assert!(s.is_open(utc("2026-01-13 08:30")));
        assert!(!s.is_open(utc("2026-01-13 07:30")));
        // Summer (CEST, UTC+2): 07:30 UTC is 09:30 in Rome; 16:30 UTC is 18:30, closed.
        assert!(s.is_open(utc("2026-07-14 07:30")));
        assert!(!s.is_open(utc("2026-07-14 16:30")));
        assert!(s.is_open(utc("2026-07-14 15:30")));
        // DST starts Sunday 2026-03-29 (closed anyway); Monday 2026-03-30 is in CEST.
        assert!(s.is_open(utc("2026-03-30 07:00")));
        assert!(!s.is_open(utc("2026-03-27 07:30"))); // Friday before, CET: 08:30 local
                                                      // DST ends Sunday 2026-10-25; Monday 2026-10-26 08:30 UTC = 09:30 CET.
        assert!(s.is_open(utc("2026-10-26 08:30")));
        assert!(!s.is_open(utc("2026-10-26 07:30")));
    }

    #[test]
    fn dst_transition_days_with_night_opening() {
        // A Sunday night range 01:00-04:00, on the two Sundays the clocks change.
        let mut c = cfg();
        c.sunday = vec!["01:00-04:00".into()];
        c.national_holidays = false;
        let s = Schedule::from_config(&c).unwrap();
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST. 00:30 UTC = 01:30 CET open; 01:30 UTC = 03:30 CEST open;
        // 02:30 UTC = 04:30 CEST closed.
        assert!(s.is_open(utc("2026-03-29 00:30")));
        assert!(s.is_open(utc("2026-03-29 01:30")));
        assert!(!s.is_open(utc("2026-03-29 02:30")));
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET. 02:30 UTC = 03:30 CET open, 03:30 UTC = 04:30 closed.
        assert!(s.is_open(utc("2026-10-25 02:30")));
        assert!(!s.is_open(utc("2026-10-25 03:30")));
        assert!(s.is_open(utc("2026-10-24 23:30"))); // 01:30 CEST on Sunday
    }

    #[test]
    fn ranges_past_midnight_belong_to_the_opening_day() {
        let s = schedule();
        assert!(s.is_open(rome("2026-03-06 21:00"))); // Friday evening
        assert!(s.is_open(rome("2026-03-07 01:30"))); // Saturday small hours, Friday's range
        assert!(!s.is_open(rome("2026-03-07 02:00")));
        assert!(!s.is_open(rome("2026-03-06 19:00")));
        assert!(!s.is_open(rome("2026-03-05 01:00"))); // Thursday's small hours: Wednesday has no night range
    }

    #[test]
    fn holidays_close_the_helpline() {
        let s = schedule();
        for t in [
            "2024-04-01 10:00", // Easter Monday 2024
            "2025-04-21 10:00", // Easter Monday 2025
            "2026-04-06 10:00", // Easter Monday 2026
            "2026-01-06 10:00", // Epifania (Tuesday)
            "2026-06-02 10:00", // Festa della Repubblica (Tuesday)
            "2026-12-08 10:00", // Immacolata (Tuesday)
            "2026-12-24 10:00", // extra holiday from the config (Thursday)
            "2025-12-26 10:00", // Santo Stefano (Friday)
        ] {
            assert!(!s.is_open(rome(t)), "{t}");
        }
        for t in ["2024-04-02 10:00", "2025-04-22 10:00", "2026-04-07 10:00", "2026-12-23 10:00"] {
            assert!(s.is_open(rome(t)), "{t}");
        }
        let mut c = cfg();
        c.national_holidays = false;
        let s = Schedule::from_config(&c).unwrap();
        assert!(s.is_open(rome("2026-04-06 10:00")));
        assert!(!s.is_open(rome("2026-12-24 10:00")));
    }

    #[test]
    fn next_opening_skips_nights_weekends_and_holidays() {
        let s = schedule();
        let next = |t: &str| s.next_opening(rome(t)).map(|d| d.format("%Y-%m-%d %H:%M").to_string());
        assert_eq!(next("2026-03-02 07:00").as_deref(), Some("2026-03-02 09:00"));
        assert_eq!(next("2026-03-02 13:10").as_deref(), Some("2026-03-02 14:00"));
        assert_eq!(next("2026-03-07 13:30").as_deref(), Some("2026-03-09 09:00")); // Sat → Mon
        assert_eq!(next("2026-04-05 10:00").as_deref(), Some("2026-04-07 09:00")); // Easter → Tue
        assert_eq!(next("2026-12-23 19:00").as_deref(), Some("2026-12-28 09:00"));
        // 24, 25, 26, 27 closed
    }

    #[test]
    fn bad_config_is_refused_with_the_reason() {
        let mut c = cfg();
        c.tuesday = vec!["9-18".into()];
        assert_eq!(Schedule::from_config(&c), Err(HoursError::Range { day: "tuesday", range: "9-18".into() }));
        for bad in ["25:00-26:00", "09:00-09:00", "09:60-10:00", "09:00", "24:00-02:00"] {
            c.tuesday = vec![bad.into()];
            assert!(Schedule::from_config(&c).is_err(), "{bad}");
        }
        c.tuesday = vec!["09:00-24:00".into()];
        assert!(Schedule::from_config(&c).is_ok());
        let mut c = cfg();
        c.timezone = "Mars/Olympus".into();
        assert!(matches!(Schedule::from_config(&c), Err(HoursError::Timezone(_))));
        let mut c = cfg();
        c.extra_holidays = vec!["24/12/2026".into()];
        assert!(matches!(Schedule::from_config(&c), Err(HoursError::Holiday(_))));
        let never = HoursConfig {
            monday: vec![],
            tuesday: vec![],
            wednesday: vec![],
            thursday: vec![],
            friday: vec![],
            saturday: vec![],
            ..cfg()
        };
        assert_eq!(Schedule::from_config(&never), Err(HoursError::NeverOpen));
    }
}
