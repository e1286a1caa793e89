//! Every path of the default flow, scripted as whole calls, in all four languages.

use crate::dsl::*;
use ivr::domain::{Language, ServiceArea};
use ivr::engine::{Action, Event, Lookup, Outcome, SayArg, Wait};

/// The language menu after Italian was offered (a withheld or unlisted number).
fn lang_menu() -> Vec<&'static str> {
    menu_tokens(&[Language::It])
}

#[test]
fn language_guess_then_each_language() {
    for call in run_all("language guess", OPEN, &to_area_menu()) {
        assert!(call.state.language.is_some());
        assert_eq!(call.state.node, "area-menu");
    }
}

#[test]
fn language_menu_then_each_language() {
    // Withheld: Italian offered first, then every other language on one key.
    for &l in flow().languages() {
        let mut steps = vec![s(In::Start(None), &["language-guess@it", "collect"]), (In::Silence, lang_menu())];
        if l == Language::It {
            steps.truncate(1);
            steps.push(s(In::Press("1"), &["welcome@it", "recording-notice@it", "area-menu@it", "collect"]));
        } else {
            steps.push(s(In::Press("{d}"), &["welcome@{l}", "recording-notice@{l}", "area-menu@{l}", "collect"]));
        }
        let call = run("language menu", OPEN, &steps, l);
        assert_eq!(call.state.language, Some(l));
    }
}

#[test]
fn language_menu_speaks_each_option_in_its_own_language_with_its_key() {
    let mut call = Call::new(OPEN);
    call.input(&In::Start(None), Language::It);
    call.input(&In::Silence, Language::It);
    let says: Vec<(String, Language, SayArg)> = call
        .last
        .iter()
        .filter_map(|a| match a {
            Action::Say { message, language, args, .. } => {
                Some((message.to_string(), *language, args["digit"].clone()))
            }
            _ => None,
        })
        .collect();
    let expected: Vec<(String, Language, SayArg)> = ["en", "fr", "es", "ru", "zh", "ar", "ro", "sq", "uk"]
        .iter()
        .enumerate()
        .map(|(i, t)| ("language-option".to_owned(), lang(t), SayArg::Number((i + 1) as f64)))
        .collect();
    assert_eq!(says, expected);
}

#[test]
fn guessed_language_accepted() {
    for &l in flow().languages() {
        let steps = vec![
            s(In::Start(Some(home_number(l))), &["language-guess@{l}", "collect"]),
            s(In::Press("1"), &["welcome@{l}", "recording-notice@{l}", "area-menu@{l}", "collect"]),
        ];
        let call = run("guess accepted", OPEN, &steps, l);
        assert_eq!(call.state.language, Some(l));
    }
}

#[test]
fn guessed_languages_from_other_countries() {
    for (number, first, second) in [
        ("+52 55 1234 5678", "es", None), // Mexico
        ("+54 11 1234 5678", "es", None), // Argentina
        ("+57 301 234 5678", "es", None), // Colombia
        ("+1 212 555 0100", "en", None),  // USA
        ("+234 803 123 4567", "en", None),
        ("+40 712 345 678", "ro", None),
        ("+373 69 123 456", "ro", Some("ru")), // Moldova
        ("+355 67 234 5678", "sq", None),
        ("+383 44 123 456", "sq", None),         // Kosovo
        ("+212 612 345678", "ar", Some("fr")),   // Morocco
        ("+213 551 23 45 67", "ar", Some("fr")), // Algeria
        ("+216 20 123 456", "ar", Some("fr")),   // Tunisia
        ("+20 100 123 4567", "ar", Some("en")),  // Egypt
        ("+218 91 234 5678", "ar", None),        // Libya
        ("+380 50 123 4567", "uk", None),
        ("+7 912 345 6789", "ru", None),
        ("+375 29 123 4567", "ru", None), // Belarus
        ("+86 139 1234 5678", "zh", None),
    ] {
        let mut want = vec!["language-guess@{l}"];
        if let Some(second) = second {
            want.push(format!("language-guess@{second}").leak());
        }
        want.push("collect");
        let steps = vec![(In::Start(Some(number)), want)];
        let call = run("guess table", OPEN, &steps, lang(first));
        assert_eq!(call.state.guessed_language, Some(lang(first)), "{number}");
        assert_eq!(call.state.guessed_second, second.map(lang), "{number}");
        // The second guess is key 2.
        if let Some(second) = second {
            let steps = vec![
                (
                    In::Start(Some(number)),
                    vec!["language-guess@{l}", format!("language-guess@{second}").leak(), "collect"],
                ),
                (
                    In::Press("2"),
                    vec![
                        format!("welcome@{second}").leak(),
                        format!("recording-notice@{second}").leak(),
                        format!("area-menu@{second}").leak(),
                        "collect",
                    ],
                ),
            ];
            let call = run("second guess", OPEN, &steps, lang(first));
            assert_eq!(call.state.language, Some(lang(second)), "{number}");
        }
    }
    // An unlisted country: Italian is offered, then the menu of the others.
    let steps =
        vec![s(In::Start(Some("+49 30 1234567")), &["language-guess@it", "collect"]), (In::Silence, lang_menu())];
    run("no guess", OPEN, &steps, Language::It);
}

#[test]
fn guessed_language_refused_by_a_key_or_silence() {
    let offered = [lang("ar"), lang("fr")];
    for refusal in [In::Press("3"), In::Press("9"), In::Press("#"), In::Press("*"), In::Silence] {
        for &l in flow().languages() {
            if offered.contains(&l) {
                continue;
            }
            let steps = vec![
                s(In::Start(Some("+212 612 345678")), &["language-guess@ar", "language-guess@fr", "collect"]),
                (refusal.clone(), menu_tokens(&offered)),
                s(In::Press("{d}"), &["welcome@{l}", "recording-notice@{l}", "area-menu@{l}", "collect"]),
            ];
            let call = run("guess refused", OPEN, &steps, l);
            assert_eq!(call.state.language, Some(l));
        }
    }
}

#[test]
fn each_area_is_chosen_by_its_digit() {
    for area in ServiceArea::ALL {
        let digit: &'static str = ["1", "2", "3", "4", "5", "6"][area.menu_digit() as usize - '1' as usize];
        let steps = concat(vec![to_cap(digit), vec![(In::Press("#"), queue_tokens(area.as_str()))]]);
        for call in run_all("area choice", OPEN, &steps) {
            assert_eq!(call.state.area, Some(area));
            assert_eq!(call.outcome(), Some(Outcome::Queued));
        }
    }
}

#[test]
fn portal_information_then_back_to_the_area_menu() {
    let steps = concat(vec![
        to_area_menu(),
        vec![
            s(In::Press("7"), &["portal-info@{l}", "area-menu@{l}", "collect"]),
            s(In::Press("4"), &["cap-ask@{l}", "collect5"]),
        ],
    ]);
    for call in run_all("portal info", OPEN, &steps) {
        assert_eq!(call.state.area, Some(ServiceArea::Salute));
    }
}

/// The CAP the call's place was found by.
fn place_cap(call: &Call) -> Option<&str> {
    call.state.place.as_ref().and_then(|p| p.cap.as_ref()).map(|c| c.as_str())
}

#[test]
fn cap_exact_prefix_area_invalid_and_skip() {
    // Exact: 22100 Como.
    for call in run_all("cap exact", OPEN, &to_choice("1")) {
        assert_eq!(call.state.place.as_ref().map(|p| p.label.as_str()), Some("Como"));
        assert_eq!(place_cap(&call), Some("22100"), "the CAP keyed in is kept");
        assert_eq!(call.say_args("cap-placed")["place"], SayArg::Text("Como".into()));
    }
    // Unknown CAP in a known area: 00118 is Rome (area 001), 20121 is Milan (area 201).
    for (cap, label) in [("00118", "Roma"), ("20121", "Milano"), ("20121#", "Milano")] {
        let steps =
            concat(vec![to_cap("2"), vec![s(In::Press(cap), &["cap-placed@{l}", "service-choice@{l}", "collect"])]]);
        for call in run_all("cap prefix area", OPEN, &steps) {
            assert_eq!(call.state.place.as_ref().map(|p| p.label.as_str()), Some(label));
            assert_eq!(place_cap(&call), Some(cap.trim_end_matches('#')));
        }
    }
    // Unknown area, malformed, too short: asked again; a good one then works.
    for bad in ["99001", "123", "1234567", "12A45"] {
        let steps = concat(vec![
            to_cap("2"),
            vec![
                s(In::Press(bad), &["cap-invalid@{l}", "cap-ask@{l}", "collect5"]),
                s(In::Press("22100"), &["cap-placed@{l}", "service-choice@{l}", "collect"]),
            ],
        ]);
        run_all("cap invalid", OPEN, &steps);
    }
    // Skip with #: no place, straight to the queue.
    let steps = concat(vec![to_cap("3"), vec![(In::Press("#"), queue_tokens("casa"))]]);
    for call in run_all("cap skipped", OPEN, &steps) {
        assert_eq!(call.state.place, None);
    }
}

#[test]
fn three_invalid_caps_reach_an_operator() {
    let steps = concat(vec![
        to_cap("5"),
        vec![
            s(In::Press("99001"), &["cap-invalid@{l}", "cap-ask@{l}", "collect5"]),
            s(In::Press("1"), &["cap-invalid@{l}", "cap-ask@{l}", "collect5"]),
            (In::Press("99999"), queue_tokens("minori")),
        ],
    ]);
    run_all("three bad caps", OPEN, &steps);
}

/// An Italian landline from Como, Italian offered first; other languages refuse the guess.
/// An Italian landline, Italian offered; then `{l}` (Italian by 1 at the guess, the others from the
/// menu), area 6: the landline's province offered.
fn landline_start(l: Language) -> Vec<Step> {
    let mut v = vec![s(In::Start(Some("+39 031 555 1234")), &["language-guess@it", "collect"])];
    if l != Language::It {
        v.push((In::Press("8"), lang_menu()));
        v.push(s(In::Press("{d}"), &["welcome@{l}", "recording-notice@{l}", "area-menu@{l}", "collect"]));
    } else {
        v.push(s(In::Press("1"), &["welcome@{l}", "recording-notice@{l}", "area-menu@{l}", "collect"]));
    }
    v.push(s(In::Press("6"), &["cap-landline@{l}", "collect5"]));
    v
}

/// Runs `steps(l)` in every configured language.
fn run_each(name: &str, at: &str, steps: impl Fn(Language) -> Vec<Step>) -> Vec<Call> {
    flow().languages().iter().map(|&l| run(name, at, &steps(l), l)).collect()
}

#[test]
fn landline_area_accepted() {
    let steps = |l| {
        concat(vec![landline_start(l), vec![s(In::Press("1"), &["cap-placed@{l}", "service-choice@{l}", "collect"])]])
    };
    for call in run_each("landline accepted", OPEN, steps) {
        assert_eq!(call.state.place.as_ref().map(|p| p.label.as_str()), Some("Como"));
        assert_eq!(place_cap(&call), None, "a province has no CAP");
    }
    let mut call = Call::new(OPEN);
    for (input, _) in landline_start(Language::Fr) {
        call.input(&input, Language::Fr);
    }
    assert_eq!(call.say_args("cap-landline")["province"], SayArg::Text("Como".into()));
}

#[test]
fn landline_area_refused_with_2_or_by_typing_a_cap() {
    let steps = |l| {
        concat(vec![
            landline_start(l),
            vec![
                s(In::Press("2"), &["cap-ask@{l}", "collect5"]),
                s(In::Press("00118"), &["cap-placed@{l}", "service-choice@{l}", "collect"]),
            ],
        ])
    };
    for call in run_each("landline refused", OPEN, steps) {
        assert!(call.state.landline_declined);
        assert_eq!(call.state.place.as_ref().map(|p| p.label.as_str()), Some("Roma"));
    }
    let steps = |l| {
        concat(vec![
            landline_start(l),
            vec![s(In::Press("23900#"), &["cap-placed@{l}", "service-choice@{l}", "collect"])],
        ])
    };
    for call in run_each("landline replaced by a cap", OPEN, steps) {
        assert_eq!(call.state.place.as_ref().map(|p| p.label.as_str()), Some("Lecco"));
    }
}

#[test]
fn self_service_repeat_next_page_no_more_then_operator() {
    let steps = concat(vec![
        to_services("1"),
        vec![
            s(In::Press("1"), &["services+0"]),
            s(
                In::Results(3, true),
                &[
                    "services-intro@{l}",
                    "services-item@{l}",
                    "services-item@{l}",
                    "services-item@{l}",
                    "services-options@{l}",
                    SMS_OFFER,
                    "collect",
                ],
            ),
            s(In::Press("9"), &["services+3"]),
            s(
                In::Results(2, false),
                &[
                    "services-intro@{l}",
                    "services-item@{l}",
                    "services-item@{l}",
                    "services-options@{l}",
                    SMS_OFFER,
                    "collect",
                ],
            ),
            s(In::Press("9"), &["services-no-more@{l}", "services-options@{l}", SMS_OFFER, "collect"]),
            s(In::Press("#"), &["services+3"]),
            s(
                In::Results(2, false),
                &[
                    "services-intro@{l}",
                    "services-item@{l}",
                    "services-item@{l}",
                    "services-options@{l}",
                    SMS_OFFER,
                    "collect",
                ],
            ),
            (In::Press("2"), queue_tokens("lingua")),
        ],
    ]);
    for call in run_all("self-service", OPEN, &steps) {
        assert_eq!(call.outcome(), Some(Outcome::Queued));
    }
}

#[test]
fn self_service_lookup_and_readback_carry_the_data() {
    let mut call = Call::new(OPEN);
    for (input, _) in to_choice("3") {
        call.input(&input, Language::Es);
    }
    call.input(&In::Press("1"), Language::Es);
    match &call.last[..] {
        [.., Action::Lookup(Lookup::NearestServices { area, place_label, offset, limit, near })] => {
            assert_eq!((*area, place_label.as_str(), *offset, *limit), (ServiceArea::Casa, "Como", 0, 3));
            assert!((near.lat - 45.81).abs() < 0.01 && (near.lng - 9.086).abs() < 0.01);
        }
        other => panic!("{other:?}"),
    }
    call.input(&In::Results(3, false), Language::Es);
    let items: Vec<_> = call
        .last
        .iter()
        .filter_map(|a| match a {
            Action::Say { message, args, language, .. } if message.as_str() == "services-item" => {
                assert_eq!(*language, Language::Es);
                Some(args.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["name"], SayArg::Text("Sportello 1".into()));
    assert_eq!(items[0]["town"], SayArg::Text("Como".into()));
    assert_eq!(items[0]["address"], SayArg::Text("Via Gramsci 17".into()));
    assert_eq!(items[1]["address"], SayArg::Text("none".into()), "no street address: the town only");
    assert_eq!(items[0]["phone"], SayArg::Text("0 3 1 5 5 5 0 0 0".into()));
    assert_eq!(items[0]["hours"], SayArg::Text("9:00-13:00".into()));
    assert_eq!(items[1]["hours"], SayArg::Text("none".into()));
    assert_eq!(items[2]["index"], SayArg::Number(3.0));
    assert_eq!(call.outcome(), Some(Outcome::SelfService));
    assert_eq!(call.state.wait, Wait::ServicesMenu { offset: 0, has_more: false });
    // 9 with no more pages does not look up again.
    call.input(&In::Press("9"), Language::Es);
    assert_eq!(tokens(&call.last), vec!["services-no-more@es", "services-options@es", "collect"]);
    // Hanging up after hearing services is a self-service call.
    call.input(&In::HangUp, Language::Es);
    assert_eq!(call.outcome(), Some(Outcome::SelfService));
}

#[test]
fn self_service_with_no_results_goes_to_an_operator() {
    let steps = concat(vec![
        to_choice("2"),
        vec![s(In::Press("1"), &["services+0"]), {
            let mut t = vec!["services-none@{l}"];
            t.extend(queue_tokens("lavoro"));
            (In::Results(0, false), t)
        }],
    ]);
    run_all("no results", OPEN, &steps);
    // A page past the end that turns out empty: "no more", back to the last page.
    let steps = concat(vec![
        to_services("2"),
        vec![
            s(In::Press("9"), &["services+3"]),
            s(In::Results(0, false), &["services-no-more@{l}", "services-options@{l}", SMS_OFFER, "collect"]),
            s(In::Press("1"), &["services+0"]),
        ],
    ]);
    run_all("empty next page", OPEN, &steps);
}

#[test]
fn directory_silence_goes_to_an_operator() {
    let steps =
        concat(vec![to_choice("2"), vec![s(In::Press("1"), &["services+0"]), (In::Silence, queue_tokens("lavoro"))]]);
    run_all("lookup timeout", OPEN, &steps);
}

fn queue_steps() -> Vec<Step> {
    concat(vec![to_choice("4"), vec![(In::Press("2"), queue_tokens("salute"))]])
}

#[test]
fn queue_announcements_then_callback_offer_past_the_threshold() {
    let steps = concat(vec![
        queue_steps(),
        vec![
            s(In::Queue(3, 240), &["queue-position@{l}", "collect"]),
            s(In::Silence, &["queue?"]),
            s(In::Wait(30), &[]),
            s(In::Queue(2, 180), &["collect"]), // announced 30 s ago: not yet
            s(In::Wait(40), &[]),
            s(In::Silence, &["queue?"]),
            s(In::Queue(2, 120), &["queue-position@{l}", "collect"]),
            s(In::Press("1"), &["collect"]), // no callback offered yet: 1 means nothing
            s(In::Wait(240), &[]),
            s(In::Silence, &["queue?"]),
            s(In::Queue(1, 60), &["queue-position@{l}", "queue-callback-offer@{l}", "collect"]),
            // On SIP the caller may leave a voice message first; the request goes with it.
            s(In::Press("1"), &["voicemail-prompt@{l}", "record"]),
            s(In::Press("5"), &[]),
            s(
                In::Recorded(4200),
                &["record-callback:{l}:salute", "callback-confirmed@{l}", "goodbye@{l}", "hangup:Callback"],
            ),
        ],
    ]);
    for call in run_all("queue and callback", OPEN, &steps) {
        assert_eq!(call.outcome(), Some(Outcome::Callback));
        assert!(call.state.ended());
    }
}

#[test]
fn long_estimated_wait_offers_a_callback_at_once() {
    let steps = concat(vec![
        queue_steps(),
        vec![s(In::Queue(12, 900), &["queue-position@{l}", "queue-callback-offer@{l}", "collect"])],
    ]);
    for call in run_all("long wait", OPEN, &steps) {
        let args = call.say_args("queue-position");
        assert_eq!(args["position"], SayArg::Number(12.0));
        assert_eq!(args["minutes"], SayArg::Number(15.0));
    }
}

#[test]
fn queue_keys_repeat_or_keep_waiting() {
    let steps = concat(vec![
        queue_steps(),
        vec![
            s(In::Queue(3, 100), &["queue-position@{l}", "collect"]),
            s(In::Press("#"), &["queue?"]),
            s(In::Queue(3, 100), &["queue-position@{l}", "collect"]),
            s(In::Press("0"), &["collect"]),
            s(In::Press("*"), &["collect"]),
            s(In::Press("5"), &["collect"]),
        ],
    ]);
    for call in run_all("queue keys", OPEN, &steps) {
        assert_eq!(call.state.wait, Wait::Hold);
    }
}

#[test]
fn operator_assigned_transfer_failed_requeued_with_priority_then_answered() {
    let steps = concat(vec![
        queue_steps(),
        vec![
            s(In::Queue(1, 30), &["queue-position@{l}", "collect"]),
            s(In::Assigned, &["transfer:op-7"]),
            s(In::Failed, &["queue-transfer-failed@{l}", "enqueue:{l}:salute:7", "queue?"]),
            s(In::Queue(1, 10), &["queue-position@{l}", "collect"]),
            s(In::Silence, &["queue?"]),
            s(In::Assigned, &["transfer:op-7"]),
            s(In::Failed, &["queue-transfer-failed@{l}", "enqueue:{l}:salute:9", "queue?"]),
            s(In::Assigned, &["transfer:op-7"]),
            s(In::HangUp, &[]),
        ],
    ]);
    for call in run_all("transfer", OPEN, &steps) {
        assert_eq!(call.outcome(), Some(Outcome::Answered));
    }
}

#[test]
fn a_blind_hand_over_puts_the_caller_in_the_other_queue_in_their_first_place() {
    let steps = concat(vec![
        queue_steps(),
        vec![
            s(In::Queue(1, 30), &["queue-position@{l}", "collect"]),
            s(In::Wait(90), &[]),
            s(In::Assigned, &["transfer:op-7"]),
            s(In::Wait(120), &[]),
            // In the other queue: its welcome in its language, the same priority, the hold.
            s(In::HandOver("fr", Some("lavoro")), &["queue-enter@fr", "enqueue:fr:lavoro:5", "queue?"]),
            s(In::Queue(1, 60), &["queue-position@fr", "collect"]),
            s(In::Press("0"), &["collect"]),
            s(In::Assigned, &["transfer:op-7"]),
        ],
    ]);
    for call in run_all("hand-over", OPEN, &steps) {
        let entered = call.events.iter().find(|(e, _)| matches!(e, Event::Digits(_))).map(|(_, at)| *at);
        let q = call.state.queue.expect("queued");
        // The stay began before the 210 s of the first queue and the first conversation.
        assert!(call.now - q.entered_at >= chrono::Duration::seconds(210), "{q:?}");
        assert!(entered.is_some_and(|t| t <= q.entered_at));
        assert_eq!(call.state.language, Some(lang("fr")));
        assert_eq!(call.state.area, Some(ServiceArea::Lavoro));
        assert_eq!(call.outcome(), Some(Outcome::Answered));
    }
    // Not while the caller is still waiting or in a menu: the queue is theirs already.
    let mut call = run("hand-over in the queue", OPEN, &concat(vec![queue_steps()]), Language::It);
    let before = call.state.clone();
    let actions = call.send(Event::HandedOver { language: lang("fr"), area: None }).to_vec();
    assert!(tokens(&actions).is_empty(), "{actions:?}");
    assert_eq!(call.state, before);
}

#[test]
fn the_third_failed_transfer_gives_a_callback_instead_of_the_queue_again() {
    let steps = concat(vec![
        queue_steps(),
        vec![
            s(In::Queue(1, 30), &["queue-position@{l}", "collect"]),
            s(In::Assigned, &["transfer:op-7"]),
            s(In::Failed, &["queue-transfer-failed@{l}", "enqueue:{l}:salute:7", "queue?"]),
            s(In::Assigned, &["transfer:op-7"]),
            s(In::Failed, &["queue-transfer-failed@{l}", "enqueue:{l}:salute:9", "queue?"]),
            s(In::Assigned, &["transfer:op-7"]),
            s(In::Failed, &["queue-transfer-failed@{l}", "voicemail-prompt@{l}", "record"]),
            s(
                In::Recorded(0),
                &["record-callback:{l}:salute", "callback-confirmed@{l}", "goodbye@{l}", "hangup:Callback"],
            ),
        ],
    ]);
    for call in run_all("three failed transfers", OPEN, &steps) {
        assert_eq!(call.outcome(), Some(Outcome::Callback));
    }
}

#[test]
fn zero_means_operator_from_every_menu() {
    // Before any language: Italian.
    run(
        "0 in language menu",
        OPEN,
        &[s(In::Start(None), &["language-guess@it", "collect"]), (In::Silence, lang_menu()), {
            // The recording notice, not heard yet, is said in the queue.
            let t: Vec<&str> = vec!["recording-notice@it", "queue-enter@it", "enqueue:it:-:5", "queue?"];
            (In::Press("0"), t)
        }],
        Language::It,
    );
    run(
        "0 at the guess",
        OPEN,
        &[
            s(In::Start(Some("+33 6 12 34 56 78")), &["language-guess@fr", "collect"]),
            // The caller heard French offered: a French-speaking operator serves them.
            s(In::Press("0"), &["recording-notice@fr", "queue-enter@fr", "enqueue:fr:-:5", "queue?"]),
        ],
        Language::Fr,
    );
    // In the chosen language from every later menu.
    run_all("0 in area menu", OPEN, &concat(vec![to_area_menu(), vec![(In::Press("0"), queue_tokens("-"))]]));
    run_all("0 in cap entry", OPEN, &concat(vec![to_cap("2"), vec![(In::Press("0"), queue_tokens("lavoro"))]]));
    run_all("0 in choice", OPEN, &concat(vec![to_choice("3"), vec![(In::Press("0"), queue_tokens("casa"))]]));
    run_all("0 in services", OPEN, &concat(vec![to_services("6"), vec![(In::Press("0"), queue_tokens("mediazione"))]]));
}

#[test]
fn star_goes_back_to_the_previous_menu() {
    let steps = concat(vec![
        to_services("1"),
        vec![
            s(In::Press("*"), &["service-choice@{l}", "collect"]),
            s(In::Press("*"), &["cap-ask@{l}", "collect5"]),
            s(In::Press("*"), &["area-menu@{l}", "collect"]),
            // Back to the languages: the menu, then the language offered first.
            (In::Press("*"), menu_without_l()),
            s(In::Press("*"), &["language-guess@{l}", "collect"]),
            s(In::Press("1"), &["welcome@{l}", "recording-notice@{l}", "area-menu@{l}", "collect"]),
        ],
    ]);
    run_all("star", OPEN, &steps);
}

#[test]
fn hash_repeats_the_current_menu() {
    let steps = concat(vec![
        vec![s(In::Start(Some("{home}")), &["language-guess@{l}", "collect"])],
        // At the guess, any other key is the menu.
        vec![(In::Press("#"), menu_without_l())],
        vec![(In::Press("#"), menu_without_l())],
        // A guess refused by mistake is one key away: * offers it again.
        vec![s(In::Press("*"), &["language-guess@{l}", "collect"])],
        vec![s(In::Press("1"), &["welcome@{l}", "recording-notice@{l}", "area-menu@{l}", "collect"])],
        vec![
            s(In::Press("#"), &["area-menu@{l}", "collect"]),
            s(In::Press("2"), &["cap-ask@{l}", "collect5"]),
            s(In::Press("22100"), &["cap-placed@{l}", "service-choice@{l}", "collect"]),
            s(In::Press("#"), &["service-choice@{l}", "collect"]),
            s(In::Press("1"), &["services+0"]),
            s(
                In::Results(1, false),
                &["services-intro@{l}", "services-item@{l}", "services-options@{l}", SMS_OFFER, "collect"],
            ),
            s(In::Press("#"), &["services+0"]),
        ],
    ]);
    run_all("hash", OPEN, &steps);
}

#[test]
fn silence_repeats_then_slows_down_then_operator() {
    let steps = concat(vec![
        to_area_menu(),
        vec![
            s(In::Silence, &["area-menu@{l}", "collect"]),
            s(In::Silence, &["area-menu@{l}~", "collect"]),
            s(In::Silence, &["queue-enter@{l}~", "enqueue:{l}:-:5", "queue?"]),
        ],
    ]);
    for call in run_all("silence", OPEN, &steps) {
        assert!(call.state.slow);
    }
    // Silence once, then a key: the next menu is at normal pace.
    let steps = concat(vec![
        to_area_menu(),
        vec![s(In::Silence, &["area-menu@{l}", "collect"]), s(In::Press("1"), &["cap-ask@{l}", "collect5"])],
    ]);
    run_all("silence once", OPEN, &steps);
    // In the language menu: slow from the second silence, Italian operator on the third.
    let slow_menu: Vec<&'static str> =
        lang_menu().into_iter().map(|t| if t == "collect" { t } else { &*format!("{t}~").leak() }).collect();
    let steps = vec![
        s(In::Start(None), &["language-guess@it", "collect"]),
        (In::Silence, lang_menu()),
        (In::Silence, lang_menu()),
        (In::Silence, slow_menu),
        // Straight to the queue: the recording notice is said there.
        s(In::Silence, &["recording-notice@it~", "queue-enter@it~", "enqueue:it:-:5", "queue?"]),
    ];
    run("silent in language menu", OPEN, &steps, Language::It);
}

#[test]
fn three_invalid_keys_reach_an_operator() {
    let steps = concat(vec![
        to_area_menu(),
        vec![
            s(In::Press("8"), &["invalid-choice@{l}", "area-menu@{l}", "collect"]),
            s(In::Press("9"), &["invalid-choice@{l}", "area-menu@{l}", "collect"]),
            (In::Press("D"), queue_tokens("-")),
        ],
    ]);
    run_all("three invalid", OPEN, &steps);
    // Mixed: invalid, silence, invalid.
    let steps = concat(vec![
        to_choice("1"),
        vec![
            s(In::Press("5"), &["invalid-choice@{l}", "service-choice@{l}", "collect"]),
            s(In::Silence, &["service-choice@{l}", "collect"]),
            (In::Press("7"), queue_tokens("lingua")),
        ],
    ]);
    run_all("invalid and silent", OPEN, &steps);
    let steps = concat(vec![
        to_services("1"),
        vec![
            s(In::Press("4"), &["invalid-choice@{l}", "services-options@{l}", SMS_OFFER, "collect"]),
            s(In::Silence, &["services-options@{l}", SMS_OFFER, "collect"]),
            s(In::Silence, &["queue-enter@{l}~", "enqueue:{l}:lingua:5", "queue?"]),
        ],
    ]);
    run_all("services menu failures", OPEN, &steps);
}

#[test]
fn hang_up_in_menu_in_queue_and_after_self_service() {
    for call in run_all("hang up in menu", OPEN, &concat(vec![to_cap("1"), vec![s(In::HangUp, &[])]])) {
        assert_eq!(call.outcome(), Some(Outcome::HungUpInMenu));
        assert!(call.state.ended());
    }
    let steps =
        concat(vec![queue_steps(), vec![s(In::Queue(4, 200), &["queue-position@{l}", "collect"]), s(In::HangUp, &[])]]);
    for call in run_all("hang up in queue", OPEN, &steps) {
        assert_eq!(call.outcome(), Some(Outcome::HungUpInQueue));
    }
    let steps = concat(vec![to_services("1"), vec![s(In::HangUp, &[])]]);
    for call in run_all("hang up after services", OPEN, &steps) {
        assert_eq!(call.outcome(), Some(Outcome::SelfService));
    }
    // Anything after the end is ignored.
    let steps = concat(vec![to_cap("1"), vec![s(In::HangUp, &[]), s(In::Press("1"), &[]), s(In::Assigned, &[])]]);
    run_all("after the end", OPEN, &steps);
}

fn out_of_hours_prompts() -> Vec<&'static str> {
    vec!["hours-closed@{l}", "hours-next-opening@{l}", "hours-portal@{l}", "hours-options@{l}", "collect"]
}

fn to_out_of_hours() -> Vec<Step> {
    let mut v = to_area_menu();
    v[1].1 = ["welcome@{l}", "recording-notice@{l}"].into_iter().chain(out_of_hours_prompts()).collect();
    v
}

#[test]
fn out_of_hours_callback() {
    let steps = concat(vec![
        to_out_of_hours(),
        vec![
            s(In::Press("1"), &["voicemail-prompt@{l}", "record"]),
            s(
                In::Recorded(3000),
                &["record-callback:{l}:-", "callback-confirmed@{l}", "goodbye@{l}", "hangup:Callback"],
            ),
        ],
    ]);
    for call in run_all("out of hours callback", EVENING, &steps) {
        assert_eq!(call.outcome(), Some(Outcome::Callback));
    }
    // Hanging up while leaving the message leaves it: the request stands.
    let steps = concat(vec![
        to_out_of_hours(),
        vec![s(In::Press("1"), &["voicemail-prompt@{l}", "record"]), s(In::HangUp, &["record-callback:{l}:-"])],
    ]);
    for call in run_all("out of hours voice message, then a hang-up", EVENING, &steps) {
        assert_eq!(call.outcome(), Some(Outcome::Callback));
    }
    let mut call = Call::new(EVENING);
    for (input, _) in to_out_of_hours() {
        call.input(&input, Language::En);
    }
    let args = call.say_args("hours-next-opening");
    assert_eq!(args["day"], SayArg::Text("tomorrow".into()));
    assert_eq!(args["time"], SayArg::Text("09:00".into()));
    assert_eq!(args["weekday"], SayArg::Number(2.0));
}

#[test]
fn out_of_hours_self_service_works_and_operator_requests_come_back_here() {
    let steps = concat(vec![
        to_out_of_hours(),
        vec![
            s(In::Press("2"), &["area-menu@{l}", "collect"]),
            s(In::Press("1"), &["cap-ask@{l}", "collect5"]),
            s(In::Press("22100"), &["cap-placed@{l}", "service-choice@{l}", "collect"]),
            s(In::Press("1"), &["services+0"]),
            s(
                In::Results(1, false),
                &["services-intro@{l}", "services-item@{l}", "services-options@{l}", SMS_OFFER, "collect"],
            ),
            (In::Press("2"), out_of_hours_prompts()),
            (In::Press("0"), out_of_hours_prompts()), // no operator to reach: repeated
            s(In::HangUp, &[]),
        ],
    ]);
    for call in run_all("out of hours self-service", EVENING, &steps) {
        assert_eq!(call.outcome(), Some(Outcome::SelfService));
    }
    // 0 from a menu out of hours also lands here.
    let steps = concat(vec![
        to_out_of_hours(),
        vec![s(In::Press("2"), &["area-menu@{l}", "collect"]), (In::Press("0"), out_of_hours_prompts())],
    ]);
    run_all("0 out of hours", EVENING, &steps);
}

#[test]
fn out_of_hours_silence_repeats_twice_then_goodbye() {
    let slow: Vec<&str> =
        vec!["hours-closed@{l}~", "hours-next-opening@{l}~", "hours-portal@{l}~", "hours-options@{l}~", "collect"];
    let steps = concat(vec![
        to_out_of_hours(),
        vec![
            (In::Silence, out_of_hours_prompts()),
            (In::Silence, slow),
            s(In::Silence, &["goodbye@{l}~", "hangup:OutOfHours"]),
        ],
    ]);
    for call in run_all("out of hours silence", EVENING, &steps) {
        assert_eq!(call.outcome(), Some(Outcome::OutOfHours));
    }
    let steps = concat(vec![
        to_out_of_hours(),
        vec![
            {
                let mut t = vec!["invalid-choice@{l}"];
                t.extend(out_of_hours_prompts());
                (In::Press("5"), t)
            },
            {
                let mut t = vec!["invalid-choice@{l}"];
                t.extend(out_of_hours_prompts());
                (In::Press("6"), t)
            },
            s(In::Press("7"), &["goodbye@{l}", "hangup:OutOfHours"]),
        ],
    ]);
    run_all("out of hours invalid keys", EVENING, &steps);
}

#[test]
fn holidays_sundays_and_nights_are_out_of_hours() {
    for (at, day, weekday) in [
        ("2026-04-06 10:00", "tomorrow", 2.0), // Easter Monday 2026
        ("2025-04-21 11:00", "tomorrow", 2.0), // Easter Monday 2025
        ("2024-04-01 09:30", "tomorrow", 2.0), // Easter Monday 2024
        ("2026-12-25 10:00", "later", 1.0),    // Christmas (Friday): 26 Saturday is St Stephen, next Monday
        ("2026-03-08 10:00", "tomorrow", 1.0), // a Sunday
        ("2026-03-02 07:30", "today", 1.0),    // Monday before opening
        ("2026-03-07 14:00", "later", 1.0),    // Saturday afternoon
    ] {
        let calls = run_all("holiday", at, &to_out_of_hours());
        for mut call in calls {
            let args = call.say_args("hours-next-opening");
            assert_eq!(args["day"], SayArg::Text(day.into()), "{at}");
            assert_eq!(args["weekday"], SayArg::Number(weekday), "{at}");
            call.input(&In::HangUp, Language::It);
            assert_eq!(call.outcome(), Some(Outcome::OutOfHours));
        }
    }
    // The day after Easter Monday is open.
    run_all("after easter", "2026-04-07 10:00", &to_area_menu());
}

#[test]
fn the_queue_closing_during_the_menus_sends_callers_out_of_hours() {
    // Saturday 12:58: open when the call starts, closed by the time the caller asks for an operator.
    let steps = concat(vec![to_choice("1"), vec![s(In::Wait(180), &[]), (In::Press("2"), out_of_hours_prompts())]]);
    run_all("closing time", "2026-03-07 12:58", &steps);
}

#[test]
fn stale_and_unexpected_events_are_logged_and_ignored() {
    let steps = concat(vec![vec![s(In::Press("1"), &[]), s(In::Silence, &[]), s(In::HangUp, &[])]]);
    let call = run("events before the start", OPEN, &steps, Language::It);
    assert_eq!(call.outcome(), Some(Outcome::HungUpInMenu));
    let steps = concat(vec![
        to_area_menu(),
        vec![
            s(In::Results(3, true), &[]),
            s(In::Queue(1, 1), &[]),
            s(In::Assigned, &[]),
            s(In::Failed, &[]),
            s(In::PromptDone, &[]),
            s(In::Start(None), &[]),
            s(In::Press("1"), &["cap-ask@{l}", "collect5"]),
        ],
    ]);
    run_all("stale events", OPEN, &steps);
    // Keys while the directory is being asked are ignored too.
    let steps = concat(vec![to_choice("1"), vec![s(In::Press("1"), &["services+0"]), s(In::Press("5"), &[])]]);
    for call in run_all("keys during lookup", OPEN, &steps) {
        assert_eq!(call.state.wait, Wait::Services { offset: 0 });
    }
}

#[test]
fn logs_trace_the_path_without_the_number() {
    let mut call = Call::new(OPEN);
    call.input(&In::Start(Some("+39 031 555 1234")), Language::It);
    call.input(&In::Press("1"), Language::It);
    let json = serde_json::to_string(&call.events).unwrap();
    assert!(!json.contains("5551234") && !json.contains("0315551234"), "{json}");
    let logs: Vec<String> = call
        .last
        .iter()
        .filter_map(|a| match a {
            Action::Log(l) => Some(serde_json::to_string(l).unwrap()),
            _ => None,
        })
        .collect();
    assert!(logs.iter().any(|l| l.contains(r#""kind":"node_left","node":"language-guess""#)), "{logs:?}");
    assert!(logs.iter().any(|l| l.contains(r#""kind":"node_entered","node":"area-menu""#)), "{logs:?}");
    assert!(logs.iter().any(|l| l.contains(r#""kind":"language_chosen""#)), "{logs:?}");
    assert!(
        logs.iter().any(|l| l.contains(r#""kind":"prompt","node":"area-menu","prompt":"area-menu","language":"it""#)),
        "{logs:?}"
    );
    assert!(logs.iter().all(|l| !l.contains("5551234")));
}

#[test]
fn a_state_from_an_older_flow_is_recovered_not_a_panic() {
    let mut call = Call::new(OPEN);
    for (input, _) in to_area_menu() {
        call.input(&input, Language::Fr);
    }
    call.state.node = "renamed-node".into();
    call.send(Event::Digits(ivr::domain::DtmfDigits::parse("1").unwrap()));
    assert_eq!(tokens(&call.last), vec!["queue-enter@fr", "enqueue:fr:-:5", "queue?"]);
}

#[test]
fn out_of_hours_star_and_hash_repeat_the_message() {
    let steps = concat(vec![
        to_out_of_hours(),
        vec![
            (In::Press("#"), out_of_hours_prompts()),
            (In::Press("*"), out_of_hours_prompts()),
            s(In::Press("1"), &["voicemail-prompt@{l}", "record"]),
            s(In::Press("#"), &[]),
            s(
                In::Recorded(900),
                &["record-callback:{l}:-", "callback-confirmed@{l}", "goodbye@{l}", "hangup:Callback"],
            ),
        ],
    ]);
    run_all("out of hours # and *", EVENING, &steps);
}

#[test]
fn the_refusal_key_during_the_recording_notice_refuses_the_recording() {
    for &l in flow().languages() {
        let steps = vec![
            s(In::Start(Some(home_number(l))), &["language-guess@{l}", "collect"]),
            s(In::Press("1"), &["welcome@{l}", "recording-notice@{l}", "area-menu@{l}", "collect"]),
            // 9 during the notice: confirmed, and the area menu again (9 means nothing there).
            s(In::Press("9"), &["recording-refused@{l}", "area-menu@{l}", "collect"]),
            s(In::Press("3"), &["cap-ask@{l}", "collect5"]),
        ];
        let call = run("recording refused", OPEN, &steps, l);
        assert!(call.state.recording_refused, "{l}");
        assert_eq!(call.state.area, Some(ServiceArea::Casa));
    }
}

#[test]
fn only_the_first_key_after_the_notice_refuses() {
    for &l in flow().languages() {
        let steps = vec![
            s(In::Start(Some(home_number(l))), &["language-guess@{l}", "collect"]),
            s(In::Press("1"), &["welcome@{l}", "recording-notice@{l}", "area-menu@{l}", "collect"]),
            s(In::Press("3"), &["cap-ask@{l}", "collect5"]),
        ];
        let call = run("recording accepted", OPEN, &steps, l);
        assert!(!call.state.recording_refused);
        assert!(call.state.notice.is_none());
    }
    // Silence, then 9 in the menu said again: an invalid key, not a refusal.
    let steps = vec![
        s(In::Start(None), &["language-guess@it", "collect"]),
        s(In::Press("1"), &["welcome@it", "recording-notice@it", "area-menu@it", "collect"]),
        s(In::Silence, &["area-menu@it", "collect"]),
        s(In::Press("9"), &["invalid-choice@it", "area-menu@it", "collect"]),
    ];
    let call = run("late key", OPEN, &steps, Language::It);
    assert!(!call.state.recording_refused);
}

#[test]
fn a_caller_who_goes_to_the_queue_at_once_hears_the_notice_there_and_may_refuse_on_hold() {
    let steps = vec![
        s(In::Start(None), &["language-guess@it", "collect"]),
        s(In::Press("0"), &["recording-notice@it", "queue-enter@it", "enqueue:it:-:5", "queue?"]),
    ];
    let mut call = run("notice in the queue", OPEN, &steps, Language::It);
    call.input(&In::Queue(2, 120), Language::It);
    assert_eq!(call.state.wait, Wait::Hold);
    let actions = call.input(&In::Press("9"), Language::It).unwrap().to_vec();
    assert!(call.state.recording_refused);
    assert_eq!(call.state.wait, Wait::Hold, "still waiting for an operator");
    assert_eq!(tokens(&actions)[0], "recording-refused@it", "{actions:?}");
}
