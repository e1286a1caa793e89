//! Italian national public holidays (festività nazionali), including Easter Monday (Pasquetta),
//! computed for any year.

use chrono::{Datelike, Days, NaiveDate};

/// Easter Sunday of a Gregorian year (anonymous Gregorian algorithm, "Meeus/Jones/Butcher").
/// `None` only for years chrono cannot represent.
pub fn easter_sunday(year: i32) -> Option<NaiveDate> {
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?)
}

/// Fixed-date national holidays as (month, day).
const FIXED: [(u32, u32); 10] = [
    (1, 1),   // Capodanno
    (1, 6),   // Epifania
    (4, 25),  // Festa della Liberazione
    (5, 1),   // Festa del Lavoro
    (6, 2),   // Festa della Repubblica
    (8, 15),  // Ferragosto
    (11, 1),  // Ognissanti
    (12, 8),  // Immacolata Concezione
    (12, 25), // Natale
    (12, 26), // Santo Stefano
];

/// The national holidays of a year, sorted: the ten fixed dates plus Easter Sunday and Monday.
pub fn national_holidays(year: i32) -> Vec<NaiveDate> {
    let mut days: Vec<NaiveDate> = FIXED.iter().filter_map(|&(m, d)| NaiveDate::from_ymd_opt(year, m, d)).collect();
    if let Some(easter) = easter_sunday(year) {
        days.push(easter);
        days.extend(easter.checked_add_days(Days::new(1)));
    }
    days.sort();
    days.dedup();
    days
}

/// Whether a date is an Italian national holiday.
pub fn is_national_holiday(date: NaiveDate) -> bool {
    if FIXED.contains(&(date.month(), date.day())) {
        return true;
    }
    match easter_sunday(date.year()) {
        Some(easter) => date == easter || Some(date) == easter.checked_add_days(Days::new(1)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn easter_sundays_match_the_calendar() {
        // Published dates of Western Easter.
        for (y, m, day) in [
            (1961, 4, 2),
            (2000, 4, 23),
            (2008, 3, 23),
            (2011, 4, 24),
            (2019, 4, 21),
            (2024, 3, 31),
            (2025, 4, 20),
            (2026, 4, 5),
            (2027, 3, 28),
            (2038, 4, 25),
            (2285, 3, 22),
        ] {
            assert_eq!(easter_sunday(y), Some(d(y, m, day)), "{y}");
        }
    }

    #[test]
    fn easter_mondays_are_holidays() {
        for date in [d(2024, 4, 1), d(2025, 4, 21), d(2026, 4, 6), d(2027, 3, 29)] {
            assert!(is_national_holiday(date), "{date}");
        }
        // The day after Easter Monday is a working day.
        for date in [d(2024, 4, 2), d(2025, 4, 22), d(2026, 4, 7)] {
            assert!(!is_national_holiday(date), "{date}");
        }
    }

    #[test]
    fn fixed_holidays_and_ordinary_days() {
        for (m, day) in FIXED {
            assert!(is_national_holiday(d(2026, m, day)));
        }
        for date in [d(2026, 3, 19), d(2026, 11, 2), d(2026, 12, 24), d(2026, 6, 3)] {
            assert!(!is_national_holiday(date), "{date}");
        }
    }

    #[test]
    fn holidays_of_a_year() {
        let days = national_holidays(2025);
        assert_eq!(days.len(), 12);
        assert!(days.contains(&d(2025, 4, 20)) && days.contains(&d(2025, 4, 21)));
        assert!(days.windows(2).all(|w| w[0] < w[1]));
        assert!(days.iter().all(|&x| is_national_holiday(x)));
    }
}
