//! The prompt texts: valid Fluent, the same ids in every configured language, every id the flow uses
//! present, and every Play/Say the engine emits renders without a missing variable.

use crate::dsl::*;
use fluent_bundle::{FluentArgs, FluentBundle, FluentResource, FluentValue};
use fluent_syntax::ast::Entry;
use ivr::domain::{Language, PromptId};
use ivr::engine::{Action, SayArg};
use ivr::flow::EMBEDDED_FTL;
use std::collections::{BTreeMap, BTreeSet};

fn ids_of(lang: Language) -> BTreeMap<String, &'static str> {
    let mut ids = BTreeMap::new();
    for (l, file, text) in EMBEDDED_FTL {
        if l != lang.as_str() {
            continue;
        }
        let resource = fluent_syntax::parser::parse(text)
            .unwrap_or_else(|(_, errors)| panic!("prompts/{lang}/{file}: {errors:?}"));
        for entry in resource.body {
            match entry {
                Entry::Message(m) => {
                    let id = m.id.name.to_owned();
                    assert!(m.value.is_some(), "prompts/{lang}/{file}: {id} has no text");
                    if let Some(other) = ids.insert(id.clone(), file) {
                        panic!("prompts/{lang}: {id} is defined in {other} and {file}");
                    }
                }
                Entry::Junk { content } => panic!("prompts/{lang}/{file}: junk {content:?}"),
                _ => {}
            }
        }
    }
    ids
}

#[test]
fn every_language_has_the_same_ids_in_the_same_files() {
    let italian = ids_of(Language::It);
    assert!(italian.len() >= 25, "{italian:?}");
    for &lang in flow().languages() {
        let ids = ids_of(lang);
        assert_eq!(ids, italian, "prompts/{lang} differ from prompts/it");
        for id in ids.keys() {
            assert!(PromptId::parse(id).is_ok(), "{id} is not a valid prompt id");
        }
    }
}

#[test]
fn every_prompt_the_flow_uses_exists_in_every_language() {
    for &lang in flow().languages() {
        let ids = ids_of(lang);
        for id in flow().prompt_ids() {
            assert!(ids.contains_key(id.as_str()), "{id} missing in prompts/{lang}");
        }
    }
    // And the flow uses every text (no orphan prompt to translate for nothing), but for the ones
    // the HTTP adapters say themselves when a request cannot be processed.
    const ADAPTER_PROMPTS: [&str; 1] = ["technical-problem"];
    let mut used: BTreeSet<&str> = flow().prompt_ids().iter().map(|p| p.as_str()).collect();
    used.extend(ADAPTER_PROMPTS);
    let defined: BTreeSet<String> = ids_of(Language::It).into_keys().collect();
    for id in &defined {
        assert!(used.contains(id.as_str()), "{id} is written but never used by the flow");
    }
}

fn bundle(lang: Language) -> FluentBundle<FluentResource> {
    let mut bundle = FluentBundle::new(vec![lang.as_str().parse().unwrap()]);
    bundle.set_use_isolating(false);
    for (l, file, text) in EMBEDDED_FTL {
        if l == lang.as_str() {
            let resource = FluentResource::try_new(text.to_owned()).unwrap_or_else(|_| panic!("{lang}/{file}"));
            bundle.add_resource(resource).unwrap();
        }
    }
    bundle
}

/// Renders a Play or Say action; panics on any Fluent error (missing message or variable).
fn render(bundles: &BTreeMap<Language, FluentBundle<FluentResource>>, action: &Action) -> Option<String> {
    let (id, lang, args) = match action {
        Action::Play { prompt, language, .. } => (prompt, *language, BTreeMap::new()),
        Action::Say { message, language, args, .. } => (message, *language, args.clone()),
        _ => return None,
    };
    let bundle = &bundles[&lang];
    let message = bundle.get_message(id.as_str()).unwrap_or_else(|| panic!("{id} missing in {lang}"));
    let mut fargs = FluentArgs::new();
    for (k, v) in &args {
        match v {
            SayArg::Text(t) => fargs.set(k.as_str(), FluentValue::from(t.clone())),
            SayArg::Number(n) => fargs.set(k.as_str(), FluentValue::from(*n)),
        }
    }
    let mut errors = Vec::new();
    let text = bundle.format_pattern(message.value()?, Some(&fargs), &mut errors).into_owned();
    assert!(errors.is_empty(), "{id} in {lang} with {args:?}: {errors:?}");
    assert!(!text.trim().is_empty() && !text.contains('{'), "{id} in {lang}: {text:?}");
    Some(text)
}

#[test]
fn everything_the_engine_says_renders_in_every_language() {
    let bundles: BTreeMap<Language, _> = flow().languages().iter().map(|&l| (l, bundle(l))).collect();
    let scripts: Vec<(&str, Vec<Step>)> = vec![
        ("services", concat(vec![to_services("1"), vec![s(In::Press("9"), &[]), s(In::Results(0, false), &[])]])),
        (
            "queue",
            concat(vec![
                to_choice("2"),
                vec![
                    s(In::Press("2"), &[]),
                    s(In::Queue(1, 30), &[]),
                    s(In::Silence, &[]),
                    s(In::Wait(400), &[]),
                    s(In::Queue(4, 400), &[]),
                    s(In::Assigned, &[]),
                    s(In::Failed, &[]),
                    s(In::Press("1"), &[]),
                ],
            ]),
        ),
        (
            "landline",
            vec![
                s(In::Start(Some("+39 0341 123456")), &[]),
                s(In::Press("9"), &[]),
                s(In::Press("{d}"), &[]),
                s(In::Press("1"), &[]),
                s(In::Press("1"), &[]),
                s(In::Press("8"), &[]),
            ],
        ),
    ];
    let mut rendered = BTreeSet::new();
    for &lang in flow().languages() {
        for (at, (name, steps)) in [OPEN, OPEN, OPEN].iter().zip(&scripts) {
            let mut call = Call::new(at);
            for (input, _) in steps {
                if call.input(input, lang).is_some() {
                    for a in call.last.clone() {
                        if let Some(text) = render(&bundles, &a) {
                            rendered.insert((lang, name.to_string(), text));
                        }
                    }
                }
            }
        }
        for at in [EVENING, "2026-03-07 14:00", "2026-03-02 07:00"] {
            let mut call = Call::new(at);
            for (input, _) in to_area_menu() {
                call.input(&input, lang);
            }
            for a in call.last.clone() {
                render(&bundles, &a);
            }
        }
    }
    assert!(rendered.len() > 40);
}

#[test]
fn plural_and_choice_variants_are_used() {
    for &lang in flow().languages() {
        let b = bundle(lang);
        let fmt = |id: &str, args: &[(&str, FluentValue<'static>)]| {
            let mut fa = FluentArgs::new();
            for (k, v) in args {
                fa.set(*k, v.clone());
            }
            let mut errors = vec![];
            let text =
                b.format_pattern(b.get_message(id).unwrap().value().unwrap(), Some(&fa), &mut errors).into_owned();
            assert!(errors.is_empty(), "{id} {lang}: {errors:?}");
            text
        };
        let n = |x: f64| FluentValue::from(x);
        let first = fmt("queue-position", &[("position", n(1.0)), ("minutes", n(1.0))]);
        let third = fmt("queue-position", &[("position", n(3.0)), ("minutes", n(5.0))]);
        let soon = fmt("queue-position", &[("position", n(2.0)), ("minutes", n(0.0))]);
        let second = fmt("queue-position", &[("position", n(2.0)), ("minutes", n(1.0))]);
        assert!(
            second.contains('2') && !first.contains('1'),
            "{lang}: the next in line is told so: {first} / {second}"
        );
        assert!(third.contains('3') && third.contains('5'), "{lang}: {third}");
        assert_ne!(soon, third);
        let item = |address: &str, hours: &str| {
            fmt(
                "services-item",
                &[
                    ("name", "Sportello".into()),
                    ("address", FluentValue::from(address.to_owned())),
                    ("town", "Como".into()),
                    ("phone", "0 3 1".into()),
                    ("hours", FluentValue::from(hours.to_owned())),
                ],
            )
        };
        let open = item("none", "9-13");
        let closed = item("none", "none");
        assert!(open.contains("9-13") && !closed.contains("none"), "{lang}: {open} / {closed}");
        // The street, when known, is read with the town and before the phone number.
        let street = item("Via Gramsci 17", "9-13");
        let (at, phone) = (street.find("Via Gramsci 17"), street.find("0 3 1"));
        assert!(at.is_some_and(|a| phone.is_some_and(|p| a < p)) && street.contains("Como"), "{lang}: {street}");
        assert!(!open.contains("none") && open.contains("Como"), "{lang}: {open}");
        let time = |day: &str, hour: f64, minute: f64| {
            let hour12 = if hour > 12.0 { hour - 12.0 } else { hour };
            let half_day = if hour < 12.0 { "am" } else { "pm" };
            fmt(
                "hours-next-opening",
                &[
                    ("day", FluentValue::from(day.to_owned())),
                    ("weekday", n(1.0)),
                    ("hour", n(hour)),
                    ("minute", n(minute)),
                    ("hour12", n(hour12)),
                    ("half_day", FluentValue::from(half_day)),
                ],
            )
        };
        let monday = time("later", 9.0, 0.0);
        let tomorrow = time("tomorrow", 9.0, 0.0);
        let half_past = time("tomorrow", 14.0, 30.0);
        // The hour as a number the voice reads in the language, no "09:00" read digit by digit.
        assert!(monday.contains('9') && !monday.contains("09") && monday != tomorrow, "{lang}: {monday}");
        assert!(half_past != tomorrow && (half_past.contains("14") || half_past.contains('2')), "{lang}: {half_past}");
    }
}
