//! The ACD's rules (automatic call distribution): which waiting call is offered to which
//! operator. Pure, like the engine: waiting calls + operators + now → offers. The console's queue
//! service loads the inputs from the database, applies the offers, and expires missed ones.
//!
//! The rules, in order of precedence:
//! 1. Calls are served by priority (higher first), then by time waited (longest first).
//! 2. A call is offered to the **longest-idle available** operator who speaks its language and
//!    knows its area.
//! 3. After `drop_area_after`, the area requirement is dropped (language only).
//! 4. After `fallback_after`, an operator flagged for intercultural mediation who speaks Italian
//!    or English may take it (a mediator can bridge the language).
//! 5. An operator who let an offer to a call expire is not offered that call again, and is paused
//!    (see [`expired`]).

use chrono::{DateTime, Duration, Utc};
use ivr::domain::{Language, ServiceArea};
use std::collections::HashSet;

/// How long before the requirements loosen, and how long an offer stands.
#[derive(Debug, Clone)]
pub struct AcdConfig {
    pub drop_area_after: Duration,
    pub fallback_after: Duration,
    pub offer_timeout: Duration,
}

impl Default for AcdConfig {
    fn default() -> Self {
        AcdConfig {
            drop_area_after: Duration::seconds(60),
            fallback_after: Duration::seconds(180),
            offer_timeout: Duration::seconds(20),
        }
    }
}

/// A call waiting for an operator.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingCall {
    pub call_id: String,
    pub language: Language,
    pub area: Option<ServiceArea>,
    pub priority: u8,
    pub entered_at: DateTime<Utc>,
    /// Operators whose offer for this call expired or who declined it.
    pub missed_by: Vec<i64>,
}

/// What an operator is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Available,
    /// An offer is on their screen.
    Offered,
    OnCall,
    WrapUp,
    Paused,
    Offline,
}

/// An operator as the ACD sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    pub id: i64,
    pub languages: Vec<Language>,
    pub areas: Vec<ServiceArea>,
    /// Trained for intercultural mediation.
    pub mediator: bool,
    pub presence: Presence,
    /// Since when they have been free (the longest-idle is served first).
    pub idle_since: DateTime<Utc>,
}

/// How well an operator matches the call they are offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Language and area.
    Full,
    /// Language only: the call waited past `drop_area_after`.
    Language,
    /// A mediator speaking Italian or English: the call waited past `fallback_after`.
    Mediation,
}

/// An offer to make: show `call_id` to `operator` until `expires_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub call_id: String,
    pub operator: i64,
    pub matched: Match,
    pub expires_at: DateTime<Utc>,
}

/// The offers to make now. Each call and each operator appears at most once.
pub fn assign(calls: &[WaitingCall], operators: &[Operator], now: DateTime<Utc>, cfg: &AcdConfig) -> Vec<Offer> {
    let mut order: Vec<&WaitingCall> = calls.iter().collect();
    order.sort_by(|a, b| {
        b.priority.cmp(&a.priority).then(a.entered_at.cmp(&b.entered_at)).then(a.call_id.cmp(&b.call_id))
    });
    let mut free: Vec<&Operator> = operators.iter().filter(|o| o.presence == Presence::Available).collect();
    free.sort_by(|a, b| a.idle_since.cmp(&b.idle_since).then(a.id.cmp(&b.id)));
    let mut taken: HashSet<i64> = HashSet::new();
    let mut offers = Vec::new();
    for call in order {
        let waited = now - call.entered_at;
        let candidates = free.iter().filter(|o| !taken.contains(&o.id) && !call.missed_by.contains(&o.id));
        let best = candidates
            .filter_map(|o| match_level(call, o, waited, cfg).map(|m| (m, *o)))
            // Best match level first; among equals, the longest idle (the list is sorted by it).
            .min_by_key(|(m, _)| rank(*m));
        if let Some((matched, operator)) = best {
            taken.insert(operator.id);
            offers.push(Offer {
                call_id: call.call_id.clone(),
                operator: operator.id,
                matched,
                expires_at: now + cfg.offer_timeout,
            });
        }
    }
    offers
}

fn rank(m: Match) -> u8 {
    match m {
        Match::Full => 0,
        Match::Language => 1,
        Match::Mediation => 2,
    }
}

fn match_level(call: &WaitingCall, op: &Operator, waited: Duration, cfg: &AcdConfig) -> Option<Match> {
    let speaks = op.languages.contains(&call.language);
    let knows = call.area.is_none_or(|a| op.areas.contains(&a));
    if speaks && knows {
        Some(Match::Full)
    } else if speaks && waited >= cfg.drop_area_after {
        Some(Match::Language)
    } else if op.mediator
        && waited >= cfg.fallback_after
        && (op.languages.contains(&Language::It) || op.languages.contains(&Language::En))
    {
        Some(Match::Mediation)
    } else {
        None
    }
}

/// Offers whose time ran out: each goes back to the queue, its operator is paused (they are
/// evidently not at their desk) and not offered that call again.
pub fn expired(offers: &[Offer], now: DateTime<Utc>) -> Vec<&Offer> {
    offers.iter().filter(|o| o.expires_at <= now).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use ServiceArea::*;
    #[allow(non_upper_case_globals)]
    const It: Language = Language::It;
    #[allow(non_upper_case_globals)]
    const En: Language = Language::En;
    #[allow(non_upper_case_globals)]
    const Fr: Language = Language::Fr;
    #[allow(non_upper_case_globals)]
    const Es: Language = Language::Es;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap()
    }

    fn call(id: &str, language: Language, area: Option<ServiceArea>, waited_secs: i64) -> WaitingCall {
        WaitingCall {
            call_id: id.into(),
            language,
            area,
            priority: 5,
            entered_at: t0() - Duration::seconds(waited_secs),
            missed_by: vec![],
        }
    }

    fn op(id: i64, languages: &[Language], areas: &[ServiceArea], idle_secs: i64) -> Operator {
        Operator {
            id,
            languages: languages.to_vec(),
            areas: areas.to_vec(),
            mediator: false,
            presence: Presence::Available,
            idle_since: t0() - Duration::seconds(idle_secs),
        }
    }

    fn pairs(offers: &[Offer]) -> Vec<(&str, i64, Match)> {
        offers.iter().map(|o| (o.call_id.as_str(), o.operator, o.matched)).collect()
    }

    #[test]
    fn skills_must_match_and_the_longest_idle_operator_is_chosen() {
        let calls = [call("c1", Fr, Some(Casa), 10)];
        let ops = [
            op(1, &[It, Fr], &[Lavoro], 500), // speaks French, wrong area
            op(2, &[Fr], &[Casa], 30),
            op(3, &[Fr, En], &[Casa, Salute], 90), // idle longer
            op(4, &[Es], &[Casa], 900),
        ];
        let offers = assign(&calls, &ops, t0(), &AcdConfig::default());
        assert_eq!(pairs(&offers), [("c1", 3, Match::Full)]);
        assert_eq!(offers[0].expires_at, t0() + Duration::seconds(20));
    }

    #[test]
    fn only_available_operators_get_offers() {
        let calls = [call("c1", It, None, 10)];
        for presence in [Presence::Offered, Presence::OnCall, Presence::WrapUp, Presence::Paused, Presence::Offline] {
            let mut o = op(1, &[It], &[], 100);
            o.presence = presence;
            assert!(assign(&calls, &[o], t0(), &AcdConfig::default()).is_empty(), "{presence:?}");
        }
    }

    #[test]
    fn the_area_requirement_drops_after_a_wait_then_mediators_step_in() {
        let cfg = AcdConfig::default();
        let ops = [op(1, &[Es], &[Lavoro], 100)];
        assert!(assign(&[call("c", Es, Some(Casa), 59)], &ops, t0(), &cfg).is_empty());
        assert_eq!(pairs(&assign(&[call("c", Es, Some(Casa), 60)], &ops, t0(), &cfg)), [("c", 1, Match::Language)]);

        let mut mediator = op(2, &[It], &[Mediazione], 100);
        mediator.mediator = true;
        let ops = [mediator.clone(), op(3, &[En], &[Casa], 500)];
        // A French-speaking caller with no French-speaking operator: a mediator, only after
        // fallback_after.
        assert!(assign(&[call("c", Fr, Some(Casa), 179)], &ops, t0(), &cfg).is_empty());
        assert_eq!(pairs(&assign(&[call("c", Fr, Some(Casa), 180)], &ops, t0(), &cfg)), [("c", 2, Match::Mediation)]);
        // A mediator who speaks neither Italian nor English is no fallback.
        let mut far = op(4, &[Es], &[], 100);
        far.mediator = true;
        assert!(assign(&[call("c", Fr, None, 999)], &[far], t0(), &cfg).is_empty());
    }

    #[test]
    fn a_better_match_wins_over_a_longer_idle_one() {
        let ops = [op(1, &[Fr], &[], 900), op(2, &[Fr], &[Casa], 10)];
        let offers = assign(&[call("c", Fr, Some(Casa), 400)], &ops, t0(), &AcdConfig::default());
        assert_eq!(pairs(&offers), [("c", 2, Match::Full)]);
    }

    #[test]
    fn priority_then_waiting_time_decide_who_is_served_first() {
        let mut urgent = call("urgent", It, None, 5);
        urgent.priority = 7; // back from a failed transfer
        let calls = [call("old", It, None, 100), urgent, call("new", It, None, 1)];
        let ops = [op(1, &[It], &[], 10), op(2, &[It], &[], 20)];
        let offers = assign(&calls, &ops, t0(), &AcdConfig::default());
        // Two operators, three calls: the urgent and the oldest are served; each operator once.
        assert_eq!(pairs(&offers), [("urgent", 2, Match::Full), ("old", 1, Match::Full)]);
    }

    #[test]
    fn a_missed_offer_goes_to_the_next_operator_and_expires_on_time() {
        let mut c = call("c", It, None, 10);
        let ops = [op(1, &[It], &[], 100), op(2, &[It], &[], 50)];
        let first = assign(std::slice::from_ref(&c), &ops, t0(), &AcdConfig::default());
        assert_eq!(first[0].operator, 1);
        assert!(expired(&first, t0() + Duration::seconds(19)).is_empty());
        let gone = expired(&first, t0() + Duration::seconds(20));
        assert_eq!(gone.len(), 1);
        // Operator 1 missed it: it goes to operator 2, never back to 1.
        c.missed_by.push(gone[0].operator);
        let again = assign(std::slice::from_ref(&c), &ops, t0() + Duration::seconds(20), &AcdConfig::default());
        assert_eq!(pairs(&again), [("c", 2, Match::Full)]);
        assert!(assign(&[c], &ops[..1], t0(), &AcdConfig::default()).is_empty());
    }

    #[test]
    fn calls_waiting_across_a_restart_are_served_in_their_original_order() {
        // After a restart the queue is read back from the database with its entry times: the
        // rules depend on nothing but those inputs.
        let calls = [call("b", It, None, 30), call("a", It, None, 300)];
        let offers = assign(&calls, &[op(1, &[It], &[], 5)], t0(), &AcdConfig::default());
        assert_eq!(pairs(&offers), [("a", 1, Match::Full)]);
    }
}
