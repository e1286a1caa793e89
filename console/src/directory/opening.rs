//! Weekly opening hours of a service: "is it open at this instant?" with ranges that cross
//! midnight, Italian national holidays (closed) and validity dates, in the schedule's time zone
//! (Europe/Rome unless the data says otherwise). Also the simple readable form organizations
//! write, `lun-ven 09:00-13:00; mar,gio 14:30-17:00`, parsed and printed.
//!
//! The clock is always passed in: nothing here reads the time.

use chrono::{DateTime, Datelike, Days, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;

/// An instant as a local date and minute of the day in one time zone.
#[derive(Debug, Clone, Copy)]
pub struct LocalNow {
    pub tz: Tz,
    pub date: NaiveDate,
    pub yesterday: Option<NaiveDate>,
    pub minute: u16,
}

impl LocalNow {
    pub fn new(now: DateTime<Utc>, tz: Tz) -> LocalNow {
        let local = now.with_timezone(&tz);
        let date = local.date_naive();
        LocalNow {
            tz,
            date,
            yesterday: date.checked_sub_days(Days::new(1)),
            minute: (local.hour() * 60 + local.minute()) as u16,
        }
    }
}

/// One opening range on one weekday. `close <= open` means it ends the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Monday = 0 … Sunday = 6.
    pub day: u8,
    /// Minutes since midnight.
    pub open: u16,
    pub close: u16,
}

/// A service's weekly hours.
#[derive(Debug, Clone, PartialEq)]
pub struct WeeklyHours {
    pub ranges: Vec<Range>,
    pub valid_from: Option<NaiveDate>,
    pub valid_to: Option<NaiveDate>,
    pub tz: Tz,
}

impl Default for WeeklyHours {
    fn default() -> Self {
        WeeklyHours { ranges: Vec::new(), valid_from: None, valid_to: None, tz: chrono_tz::Europe::Rome }
    }
}

impl WeeklyHours {
    fn counts(&self, date: NaiveDate) -> bool {
        !ivr::hours::is_national_holiday(date)
            && self.valid_from.is_none_or(|f| date >= f)
            && self.valid_to.is_none_or(|t| date <= t)
    }

    /// Whether the service is open at `now`. A range crossing midnight belongs to the day it
    /// starts: Friday 22:00–02:00 is open at 01:00 on Saturday, unless that Friday was a holiday.
    pub fn is_open_at(&self, now: DateTime<Utc>) -> bool {
        self.is_open_local(&LocalNow::new(now, self.tz))
    }

    /// [`WeeklyHours::is_open_at`] with the local date and time already worked out (the search
    /// computes them once per query, not once per service).
    pub fn is_open_local(&self, now: &LocalNow) -> bool {
        let today = now.date.weekday().num_days_from_monday() as u8;
        let yesterday = (today + 6) % 7;
        let minute = now.minute;
        self.ranges.iter().any(|r| {
            if r.close > r.open {
                r.day == today && minute >= r.open && minute < r.close && self.counts(now.date)
            } else {
                (r.day == today && minute >= r.open && self.counts(now.date))
                    || (r.day == yesterday && minute < r.close && now.yesterday.is_some_and(|d| self.counts(d)))
            }
        })
    }

    /// Today's ranges at `now` in the readable form (`09:00-13:00, 14:30-17:00`), empty when closed
    /// all day (holidays included).
    pub fn today_text(&self, now: DateTime<Utc>) -> String {
        self.today_text_local(&LocalNow::new(now, self.tz))
    }

    /// [`WeeklyHours::today_text`] with the local date already worked out.
    pub fn today_text_local(&self, now: &LocalNow) -> String {
        let date = now.date;
        if !self.counts(date) {
            return String::new();
        }
        let day = date.weekday().num_days_from_monday() as u8;
        let mut today: Vec<&Range> = self.ranges.iter().filter(|r| r.day == day).collect();
        today.sort_by_key(|r| r.open);
        today.iter().map(|r| format!("{}-{}", hhmm(r.open), hhmm(r.close))).collect::<Vec<_>>().join(", ")
    }
}

/// `540` → `09:00`.
pub fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

const DAY_NAMES: [&[&str]; 7] = [
    &["lun", "lunedi", "lunedì", "mon", "monday", "mo", "lu"],
    &["mar", "martedi", "martedì", "tue", "tuesday", "tu", "ma"],
    &["mer", "mercoledi", "mercoledì", "wed", "wednesday", "we", "me"],
    &["gio", "giovedi", "giovedì", "thu", "thursday", "th", "gi"],
    &["ven", "venerdi", "venerdì", "fri", "friday", "fr", "ve"],
    &["sab", "sabato", "sat", "saturday", "sa"],
    &["dom", "domenica", "sun", "sunday", "su", "do"],
];

/// Short Italian day names, Monday first.
pub const DAY_SHORT: [&str; 7] = ["lun", "mar", "mer", "gio", "ven", "sab", "dom"];

fn parse_day(s: &str) -> Option<u8> {
    let s = s.trim().trim_end_matches('.').to_lowercase();
    DAY_NAMES.iter().position(|names| names.contains(&s.as_str())).map(|p| p as u8)
}

fn parse_clock(s: &str) -> Option<u16> {
    let s = s.trim().replace('.', ":");
    let (h, m) = match s.split_once(':') {
        Some((h, m)) => (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?),
        None => (s.parse::<u16>().ok()?, 0),
    };
    (h <= 24 && m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
}

/// A group of the readable form: the days (Monday = 0) and the ranges (open, close) in minutes.
pub type HoursGroup = (Vec<u8>, Vec<(u16, u16)>);

/// Parses `lun-ven 09:00-13:00; mar,gio 14:30-17:00` (Italian or English day names, `9-13` and
/// `9.00-13.00` accepted, several ranges per group separated by commas or spaces).
pub fn parse_readable(text: &str) -> Result<Vec<HoursGroup>, String> {
    let mut groups = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let split = part.find(|c: char| c.is_ascii_digit()).ok_or_else(|| format!("{part:?}: no hours"))?;
        let (days_text, ranges_text) = part.split_at(split);
        let mut days = Vec::new();
        for item in days_text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.split_once('-') {
                Some((a, b)) => {
                    let a = parse_day(a).ok_or_else(|| format!("{a:?} is not a day"))?;
                    let b = parse_day(b).ok_or_else(|| format!("{b:?} is not a day"))?;
                    let mut d = a;
                    loop {
                        days.push(d);
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => days.push(parse_day(item).ok_or_else(|| format!("{item:?} is not a day"))?),
            }
        }
        if days.is_empty() {
            return Err(format!("{part:?}: no days before the hours"));
        }
        let mut ranges = Vec::new();
        for r in ranges_text.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
            let (a, b) = r.split_once('-').ok_or_else(|| format!("{r:?} is not a range HH:MM-HH:MM"))?;
            let open = parse_clock(a).ok_or_else(|| format!("{a:?} is not a time"))?;
            let close = parse_clock(b).ok_or_else(|| format!("{b:?} is not a time"))?;
            if open == close {
                return Err(format!("{r:?} is empty"));
            }
            ranges.push((open, close));
        }
        days.sort_unstable();
        days.dedup();
        groups.push((days, ranges));
    }
    Ok(groups)
}

/// The readable form of a day list: `lun-ven`, `mar,gio`, `sab`.
pub fn days_text(days: &[u8]) -> String {
    let mut sorted = days.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let contiguous = sorted.len() > 2 && sorted.windows(2).all(|w| w[1] == w[0] + 1);
    if contiguous {
        format!("{}-{}", DAY_SHORT[sorted[0] as usize], DAY_SHORT[sorted[sorted.len() - 1] as usize])
    } else {
        sorted.iter().map(|&d| DAY_SHORT[(d % 7) as usize]).collect::<Vec<_>>().join(",")
    }
}

/// RRULE day codes of a day list: `MO,TU,WE`.
pub fn byday(days: &[u8]) -> String {
    const CODES: [&str; 7] = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];
    days.iter().map(|&d| CODES[(d % 7) as usize]).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn rome(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        chrono_tz::Europe::Rome.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap().with_timezone(&Utc)
    }

    fn hours(text: &str) -> WeeklyHours {
        let mut w = WeeklyHours::default();
        for (days, ranges) in parse_readable(text).unwrap() {
            for d in days {
                for &(open, close) in &ranges {
                    w.ranges.push(Range { day: d, open, close });
                }
            }
        }
        w
    }

    #[test]
    fn readable_form_parses_and_evaluates() {
        let w = hours("lun-ven 09:00-13:00; mar,gio 14:30-17:00");
        // 2025-03-04 is a Tuesday.
        assert!(w.is_open_at(rome(2025, 3, 4, 9, 0)));
        assert!(!w.is_open_at(rome(2025, 3, 4, 13, 0)));
        assert!(w.is_open_at(rome(2025, 3, 4, 16, 59)));
        assert!(!w.is_open_at(rome(2025, 3, 5, 15, 0)), "Wednesday afternoon is closed");
        assert!(!w.is_open_at(rome(2025, 3, 8, 10, 0)), "Saturday is closed");
        assert_eq!(w.today_text(rome(2025, 3, 4, 8, 0)), "09:00-13:00, 14:30-17:00");
    }

    #[test]
    fn ranges_cross_midnight_and_holidays_close() {
        let w = hours("ven 22:00-02:00");
        // 2025-03-07 is a Friday.
        assert!(w.is_open_at(rome(2025, 3, 7, 23, 30)));
        assert!(w.is_open_at(rome(2025, 3, 8, 1, 59)));
        assert!(!w.is_open_at(rome(2025, 3, 8, 2, 0)));
        assert!(!w.is_open_at(rome(2025, 3, 7, 21, 59)));
        let weekdays = hours("lun-dom 08:00-20:00");
        // Christmas 2025 (Thursday) and Easter Monday 2025 (21 April) are holidays.
        assert!(!weekdays.is_open_at(rome(2025, 12, 25, 10, 0)));
        assert!(!weekdays.is_open_at(rome(2025, 4, 21, 10, 0)));
        assert!(weekdays.is_open_at(rome(2025, 4, 22, 10, 0)));
        assert_eq!(weekdays.today_text(rome(2025, 12, 25, 10, 0)), "");
    }

    #[test]
    fn bad_readable_forms_are_rejected() {
        assert!(parse_readable("lun-ven").is_err());
        assert!(parse_readable("xyz 09:00-12:00").is_err());
        assert!(parse_readable("lun 09:00-25:00").is_err());
        assert!(parse_readable("lun 09:00").is_err());
        assert_eq!(parse_readable("sab-lun 9-12").unwrap()[0].0, vec![0, 5, 6]);
        assert_eq!(days_text(&[0, 1, 2, 3, 4]), "lun-ven");
        assert_eq!(days_text(&[1, 3]), "mar,gio");
    }
}
