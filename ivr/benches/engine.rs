//! Decisions per second of the engine on realistic calls, next to a baseline measured in the same
//! run (cloning the state and looking its node up in a `HashMap`, the least any engine of this
//! shape must do), so the ratio means something on a noisy shared machine.
//!
//! Run: `cargo bench -p ivr --bench engine -- --warm-up-time 1 --measurement-time 3`

use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ivr::domain::{CallId, Caller, DtmfDigits, PhoneNumber, ServerSecret};
use ivr::engine::{step, CallState, Channel, Event, ServiceSummary};
use ivr::flow::Flow;
use std::collections::HashMap;

fn keys(s: &str) -> Event {
    Event::Digits(DtmfDigits::parse(s).expect("valid keys"))
}

fn start(number: Option<&str>) -> Event {
    let secret = ServerSecret::new(vec![1u8; 32]).expect("secret");
    let caller = number.map(|n| Caller::from_number(&PhoneNumber::parse(n).expect("number"), &secret));
    Event::CallStarted { channel: Channel::Sip, caller, called: None }
}

fn results(n: usize, has_more: bool) -> Event {
    let services = (0..n)
        .map(|i| ServiceSummary {
            id: format!("s{i}"),
            name: format!("Sportello {i}"),
            address: Some("Via Gramsci 17".into()),
            town: "Como".into(),
            phone: "031 555 0000".into(),
            hours_today: Some("9:00-13:00".into()),
            distance_km: 1.5,
        })
        .collect();
    Event::LookupResults { services, has_more }
}

fn queue(position: u32, wait: u32) -> Event {
    Event::QueueUpdate { position, estimated_wait_secs: wait }
}

/// Four typical calls: French caller using the directory then an operator; Como landline using
/// the directory; an evening callback request; a struggling caller queued after failures.
fn scripts() -> Vec<(DateTime<Utc>, Vec<Event>)> {
    let monday_10 = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let monday_20 = Utc.with_ymd_and_hms(2026, 3, 2, 19, 0, 0).unwrap();
    vec![
        (
            monday_10,
            vec![
                start(Some("+33 6 12 34 56 78")),
                keys("1"),
                keys("3"),
                keys("22100"),
                keys("1"),
                results(3, true),
                keys("9"),
                results(2, false),
                keys("2"),
                queue(3, 200),
                Event::NoInput,
                queue(2, 120),
                Event::OperatorAssigned { operator: "op".into(), target: "sip:op@pbx".into() },
                Event::HungUp,
            ],
        ),
        (
            monday_10,
            vec![
                start(Some("+39 031 555 1234")),
                keys("1"),
                keys("2"),
                keys("1"),
                keys("1"),
                results(3, false),
                keys("1"),
                results(3, false),
                Event::HungUp,
            ],
        ),
        (monday_20, vec![start(None), keys("3"), Event::NoInput, Event::NoInput, keys("1")]),
        (
            monday_10,
            vec![
                start(Some("+44 20 7946 0958")),
                Event::NoInput,
                keys("2"),
                keys("8"),
                Event::NoInput,
                keys("9"),
                queue(5, 400),
                Event::OperatorAssigned { operator: "op".into(), target: "sip:op@pbx".into() },
                Event::TransferFailed { reason: "busy".into() },
                queue(1, 20),
                Event::PromptFinished,
                Event::NoInput,
                queue(1, 10),
                Event::HungUp,
            ],
        ),
    ]
}

/// Every (state before, event, instant) of the scripts, in order.
fn decisions(flow: &Flow) -> Vec<(CallState, Event, DateTime<Utc>)> {
    let mut out = Vec::new();
    for (at, events) in scripts() {
        let mut state = CallState::initial(CallId::parse("bench").expect("id"));
        let mut now = at;
        for event in events {
            let next = step(flow, &state, &event, now).state;
            out.push((state, event, now));
            state = next;
            now += Duration::seconds(20);
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let flow = Flow::default_flow().expect("default flow");
    let decisions = decisions(&flow);
    let names: HashMap<String, usize> = flow.nodes().iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();

    let mut group = c.benchmark_group("decisions");
    group.throughput(Throughput::Elements(decisions.len() as u64));
    group.bench_function("engine_step", |b| {
        b.iter(|| {
            for (state, event, now) in &decisions {
                black_box(step(&flow, black_box(state), black_box(event), *now));
            }
        })
    });
    group.bench_function("baseline_clone_and_lookup", |b| {
        b.iter(|| {
            for (state, event, _) in &decisions {
                let next = black_box(state).clone();
                black_box(names.get(&next.node));
                black_box((next, black_box(event)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
