//! Property tests: thousands of random calls through the default flow. Whatever the caller and
//! the server do, the engine never panics, every step logs, a patient silent caller always ends
//! up somewhere (queue, transfer, callback, self-service, out-of-hours goodbye) within a bounded
//! number of events, and the recorded events replay to the same final state. Callers come from
//! every configured language's countries, and once a language is chosen every prompt and text is
//! in it.

use crate::dsl::{caller, flow, services};
use chrono::{DateTime, Duration, TimeZone, Utc};
use ivr::domain::{CallId, DtmfDigits};
use ivr::engine::{replay, step, Action, CallState, Channel, Event, Lookup, Outcome, Wait};
use proptest::prelude::*;

const KEYS: [&str; 20] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#", "22100", "00118", "20121#", "99001", "123", "1#", "A",
    "0341",
];

/// Callers from every configured language's countries (Morocco and Egypt with a second guess).
const CALLERS: [Option<&str>; 13] = [
    None,
    Some("+40 712 345 678"),
    Some("+355 67 234 5678"),
    Some("+212 612 345678"),
    Some("+20 100 123 4567"),
    Some("+380 50 123 4567"),
    Some("+7 912 345 6789"),
    Some("+33 6 12 34 56 78"),
    Some("+39 031 555 1234"),
    Some("+39 333 123 4567"),
    Some("+44 20 7946 0958"),
    Some("+34 612 345 678"),
    Some("+86 139 1234 5678"),
];

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        8 => (0..KEYS.len()).prop_map(|i| Event::Digits(DtmfDigits::parse(KEYS[i]).unwrap())),
        3 => Just(Event::NoInput),
        1 => Just(Event::PromptFinished),
        2 => (0usize..5, any::<bool>()).prop_map(|(n, has_more)| Event::LookupResults { services: services(n, 0), has_more }),
        2 => (1u32..30, 0u32..1500).prop_map(|(position, estimated_wait_secs)| Event::QueueUpdate { position, estimated_wait_secs }),
        1 => Just(Event::OperatorAssigned { operator: "op-1".into(), target: "sip:op1@pbx".into() }),
        1 => Just(Event::TransferFailed { reason: "no answer".into() }),
        1 => Just(Event::CallStarted { channel: Channel::Webhook, caller: None, called: None }),
        1 => Just(Event::HungUp),
        1 => (0u32..60_000).prop_map(|duration_ms| Event::Recorded { duration_ms }),
    ]
}

/// A random call: start time (spanning DST, Easter 2026, nights and weekends), caller, events
/// with the seconds before each, and whether the caller hangs up after them.
fn call() -> impl Strategy<Value = (DateTime<Utc>, usize, Vec<(Event, i64)>, bool)> {
    let start = Utc.with_ymd_and_hms(2026, 3, 27, 0, 0, 0).unwrap();
    (
        (0i64..16 * 24 * 60).prop_map(move |m| start + Duration::minutes(m)),
        0..CALLERS.len(),
        prop::collection::vec((event(), 0i64..400), 0..60),
        prop::bool::weighted(0.2),
    )
}

struct Run {
    state: CallState,
    now: DateTime<Utc>,
    events: Vec<(Event, DateTime<Utc>)>,
    last: Vec<Action>,
}

impl Run {
    fn send(&mut self, event: Event) -> Result<(), TestCaseError> {
        let was_ended = self.state.ended();
        let out = step(flow(), &self.state, &event, self.now);
        prop_assert!(out.actions.iter().any(|a| matches!(a, Action::Log(_))), "no log for {event:?}");
        // Once a language is chosen, everything the caller hears is in it, but the offers of the
        // other languages (when they go back to choose again).
        if let Some(lang) = out.state.language {
            for a in &out.actions {
                if let Action::Play { prompt: id, language, .. } | Action::Say { message: id, language, .. } = a {
                    if !id.as_str().starts_with("language-") {
                        prop_assert_eq!(*language, lang, "{} after {:?}", id, event);
                    }
                }
            }
        }
        let hangups = out.actions.iter().filter(|a| matches!(a, Action::Hangup { .. })).count();
        prop_assert!(hangups <= 1);
        if hangups == 1 {
            prop_assert!(out.state.ended());
            let after: Vec<_> = out
                .actions
                .iter()
                .skip_while(|a| !matches!(a, Action::Hangup { .. }))
                .skip(1)
                .filter(|a| !matches!(a, Action::Log(_)))
                .collect();
            prop_assert!(after.is_empty(), "actions after hang-up: {after:?}");
        }
        if was_ended {
            prop_assert_eq!(&out.state, &self.state, "state changed after the end");
            prop_assert!(out.actions.iter().all(|a| matches!(a, Action::Log(_))));
        }
        if self.state.outcome.is_some() {
            // Once decided, an outcome may change (queued → answered) but never goes back to none.
            prop_assert!(out.state.outcome.is_some());
        }
        self.events.push((event, self.now));
        self.state = out.state;
        self.last = out.actions;
        Ok(())
    }
}

/// The next event of a patient caller who never presses a key, with a server that answers.
fn patient_reply(last: &[Action]) -> Event {
    for a in last {
        match a {
            Action::Lookup(Lookup::NearestServices { .. }) => {
                return Event::LookupResults { services: services(2, 0), has_more: false }
            }
            Action::Lookup(Lookup::QueueState) => return Event::QueueUpdate { position: 3, estimated_wait_secs: 120 },
            _ => {}
        }
    }
    Event::NoInput
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_calls_end_well_and_replay((start, who, events, hang_up) in call()) {
        let mut run = Run {
            state: CallState::initial(CallId::parse("prop-call").unwrap()),
            now: start,
            events: Vec::new(),
            last: Vec::new(),
        };
        run.send(Event::CallStarted { channel: Channel::Sip, caller: CALLERS[who].map(caller), called: None })?;
        for (event, gap) in events {
            run.now += Duration::seconds(gap);
            run.send(event)?;
        }
        if hang_up {
            run.send(Event::HungUp)?;
            prop_assert!(run.state.ended());
            prop_assert!(run.state.outcome.is_some());
        }

        // A silent, patient caller: within a bounded number of events the call is over or with
        // the operators.
        let mut drained = 0;
        while !run.state.ended()
            && !matches!(run.state.wait, Wait::Hold | Wait::Transfer)
            && drained < 40
        {
            // A recording always ends (the adapter's deadline): the message is stored.
            let reply = if run.state.wait == Wait::Recording {
                Event::Recorded { duration_ms: 1200 }
            } else {
                patient_reply(&run.last)
            };
            run.now += Duration::seconds(10);
            run.send(reply)?;
            drained += 1;
        }
        prop_assert!(drained < 40, "stuck in {} waiting {:?}", run.state.node, run.state.wait);
        match run.state.wait {
            Wait::Ended => {
                let outcome = run.state.outcome;
                prop_assert!(outcome.is_some());
                if !hang_up && !run.events.iter().any(|(e, _)| *e == Event::HungUp) {
                    // The helpline itself ended the call: only after a callback request or out of hours.
                    prop_assert!(matches!(outcome, Some(Outcome::Callback | Outcome::OutOfHours | Outcome::SelfService)),
                        "ended with {outcome:?}");
                }
            }
            Wait::Hold | Wait::Transfer => {
                prop_assert!(matches!(run.state.outcome, Some(Outcome::Queued | Outcome::Answered)));
                prop_assert!(run.state.queue.is_some());
                prop_assert!(flow().schedule().is_open(run.state.queue.unwrap().entered_at));
            }
            other => prop_assert!(false, "ended waiting {other:?}"),
        }

        // The call log replays to the same state, also after a trip through JSON.
        let replayed = replay(flow(), CallId::parse("prop-call").unwrap(), &run.events);
        prop_assert_eq!(&replayed, &run.state);
        let json = serde_json::to_string(&run.events).unwrap();
        let events: Vec<(Event, DateTime<Utc>)> = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(replay(flow(), CallId::parse("prop-call").unwrap(), &events), run.state.clone());
        let state_json = serde_json::to_string(&run.state).unwrap();
        prop_assert_eq!(serde_json::from_str::<CallState>(&state_json).unwrap(), run.state);
    }
}

/// Any wait the state machine knows.
fn wait() -> impl Strategy<Value = Wait> {
    prop_oneof![
        Just(Wait::CallStart),
        Just(Wait::Digits),
        (0u32..12).prop_map(|offset| Wait::Services { offset }),
        (0u32..12, any::<bool>()).prop_map(|(offset, has_more)| Wait::ServicesMenu { offset, has_more }),
        Just(Wait::QueueState),
        Just(Wait::Hold),
        Just(Wait::Transfer),
        Just(Wait::Ended),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// States the engine would never produce itself (a stored state edited by hand, a flow
    /// changed between two events) still never make it panic, and every step still logs.
    #[test]
    fn odd_states_never_panic(
        node in prop_oneof![(0usize..13).prop_map(Some), Just(None)],
        wait in wait(),
        lang in prop::option::of(0usize..flow().languages().len()),
        area in prop::option::of(0usize..6),
        placed in any::<bool>(),
        queued in any::<bool>(),
        tries in 0u8..5,
        landline in prop::option::of(prop::sample::select(vec!["0312", "02", "0341", "0999", "0"])),
        event in event(),
        minutes in 0i64..20_000,
    ) {
        let now = Utc.with_ymd_and_hms(2026, 3, 27, 0, 0, 0).unwrap() + Duration::minutes(minutes);
        let mut state = CallState::initial(CallId::parse("odd").unwrap());
        state.node = match node {
            Some(i) => flow().nodes().get(i).map(|n| n.name.clone()).unwrap_or_else(|| "gone".into()),
            None => String::new(),
        };
        state.wait = wait;
        state.language = lang.map(|i| flow().languages()[i]);
        state.area = area.map(|i| ivr::domain::ServiceArea::ALL[i]);
        state.place = placed.then(|| ivr::engine::Place {
            label: "Como".into(),
            point: ivr::geo::GeoPoint::new(45.8, 9.08),
            cap: ivr::domain::Cap::parse("22100").ok(),
        });
        state.queue = queued.then_some(ivr::engine::QueueStatus {
            entered_at: now,
            last_announced_at: None,
            priority: 250,
            callback_offered: true,
            failed_transfers: 0,
        });
        state.tries = tries;
        state.landline_area = landline.map(str::to_owned);
        let out = step(flow(), &state, &event, now);
        prop_assert!(out.actions.iter().any(|a| matches!(a, Action::Log(_))));
        let json = serde_json::to_string(&out.state).unwrap();
        prop_assert_eq!(serde_json::from_str::<CallState>(&json).unwrap(), out.state);
    }
}
