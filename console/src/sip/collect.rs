//! The digit collector behind an engine `Collect`: keys from RFC 4733 or SIP INFO accumulate
//! until `max_digits`, the finish key, or a timeout. Pure (instants are passed in), so its rules
//! are unit-tested apart from sockets.
//!
//! The first-key timeout only starts once the prompts queued before the `Collect` have played
//! (`audio_idle`): callers may type over prompts, and silence is measured after the question.

use ivr::domain::DtmfDigit;
use std::time::{Duration, Instant};

/// What a finished collection tells the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collected {
    /// The keys as pressed, with the finish key if it was pressed.
    Digits(String),
    /// Nothing pressed within the first-key timeout.
    NoInput,
}

/// One `Collect` in progress.
#[derive(Debug, Clone)]
pub struct Collector {
    max_digits: usize,
    first_timeout: Duration,
    inter_digit: Duration,
    finish_key: Option<DtmfDigit>,
    digits: String,
    deadline: Option<Instant>,
}

impl Collector {
    pub fn new(
        max_digits: u8,
        first_timeout_ms: u32,
        inter_digit_timeout_ms: u32,
        finish_key: Option<DtmfDigit>,
    ) -> Self {
        Collector {
            max_digits: usize::from(max_digits.max(1)),
            first_timeout: Duration::from_millis(u64::from(first_timeout_ms)),
            inter_digit: Duration::from_millis(u64::from(inter_digit_timeout_ms.max(1))),
            finish_key,
            digits: String::new(),
            deadline: None,
        }
    }

    /// The prompts have played: the first-key timer starts (if no key came yet).
    pub fn audio_idle(&mut self, now: Instant) {
        if self.digits.is_empty() && self.deadline.is_none() {
            self.deadline = Some(now + self.first_timeout);
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// A key. `Some` when it completes the collection.
    pub fn on_digit(&mut self, digit: DtmfDigit, now: Instant) -> Option<Collected> {
        self.digits.push(digit.as_char());
        if Some(digit) == self.finish_key || self.digits.chars().count() >= self.max_digits {
            return Some(Collected::Digits(std::mem::take(&mut self.digits)));
        }
        self.deadline = Some(now + self.inter_digit);
        None
    }

    /// The timer fired at `now`: `Some` when the collection is over.
    pub fn on_timeout(&mut self, now: Instant) -> Option<Collected> {
        match self.deadline {
            Some(d) if now >= d => {
                self.deadline = None;
                if self.digits.is_empty() {
                    Some(Collected::NoInput)
                } else {
                    Some(Collected::Digits(std::mem::take(&mut self.digits)))
                }
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> DtmfDigit {
        DtmfDigit::new(c).expect("digit")
    }

    #[test]
    fn one_key_menu_completes_at_once() {
        let t = Instant::now();
        let mut c = Collector::new(1, 5000, 3000, None);
        assert_eq!(c.on_digit(d('3'), t), Some(Collected::Digits("3".into())));
    }

    #[test]
    fn first_timeout_starts_after_the_prompts() {
        let t = Instant::now();
        let mut c = Collector::new(5, 5000, 3000, Some(d('#')));
        assert_eq!(c.deadline(), None);
        assert_eq!(c.on_timeout(t + Duration::from_secs(60)), None);
        c.audio_idle(t);
        assert_eq!(c.on_timeout(t + Duration::from_millis(4999)), None);
        assert_eq!(c.on_timeout(t + Duration::from_millis(5000)), Some(Collected::NoInput));
    }

    #[test]
    fn finish_key_and_inter_digit_timeout() {
        let t = Instant::now();
        let mut c = Collector::new(5, 5000, 3000, Some(d('#')));
        assert_eq!(c.on_digit(d('0'), t), None);
        assert_eq!(c.on_digit(d('0'), t), None);
        assert_eq!(c.on_digit(d('#'), t), Some(Collected::Digits("00#".into())));
        let mut c = Collector::new(5, 5000, 3000, Some(d('#')));
        assert_eq!(c.on_digit(d('2'), t), None);
        c.audio_idle(t); // keys already typed: no first-key timer
        assert_eq!(c.deadline(), Some(t + Duration::from_secs(3)));
        assert_eq!(c.on_timeout(t + Duration::from_secs(3)), Some(Collected::Digits("2".into())));
    }

    #[test]
    fn five_digit_cap() {
        let t = Instant::now();
        let mut c = Collector::new(5, 5000, 3000, Some(d('#')));
        for k in "0011".chars() {
            assert_eq!(c.on_digit(d(k), t), None);
        }
        assert_eq!(c.on_digit(d('8'), t), Some(Collected::Digits("00118".into())));
    }
}
