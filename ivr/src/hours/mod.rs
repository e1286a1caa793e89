//! When the helpline's operators answer: weekly opening hours in Europe/Rome local time, Italian
//! national holidays and extra closing days from the configuration.
//!
//! It exists so the engine can ask one pure question, "is it open at this instant?", with DST and
//! holidays handled in one tested place.

mod holidays;
mod schedule;

pub use holidays::{easter_sunday, is_national_holiday, national_holidays};
pub use schedule::{HoursConfig, HoursError, OpeningRange, Schedule};
