//! The readback's services by text message: offered to callers a text reaches (an Italian mobile
//! under the default flow), sent on its key, told to the caller whether it went or not, and the
//! menu goes on; never offered to a landline, a withheld number, or by a flow without it.

use crate::dsl::*;
use ivr::domain::Language;
use ivr::engine::{step, Action, Event, LogEntry, Wait};
use ivr::flow::{embedded_prompt_ids, Flow, NodeProblem, DEFAULT_FLOW_TOML};
use ivr::sms::Encoding;

/// A caller from `number` (`None`: withheld), in the language guessed for it, at the readback of
/// three services (area 1, Como).
fn at_readback(number: impl Into<Option<&'static str>>) -> Call {
    let mut call = Call::new(OPEN);
    let mut steps = to_services("1");
    steps[0].0 = In::Start(number.into());
    for (input, _) in &steps {
        call.input(input, Language::It);
    }
    assert!(matches!(call.state.wait, Wait::ServicesMenu { offset: 0, has_more: true }), "{:?}", call.state.wait);
    call
}

fn logged(actions: &[Action]) -> Vec<LogEntry> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Log(l) => Some(l.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_mobile_caller_gets_the_services_read_by_text_and_hears_it_went() {
    let mut call = at_readback("+39 333 1234567");
    let offer = call.say_args("services-sms-offer");
    assert_eq!(offer["digit"], ivr::engine::SayArg::Number(3.0), "the key is the flow's");

    call.input(&In::Press("3"), Language::It);
    match &call.last.iter().filter(|a| !matches!(a, Action::Log(_))).collect::<Vec<_>>()[..] {
        [Action::SendText { services, language, item_prompt, portal_prompt }] => {
            assert_eq!(services, &["svc-0", "svc-1", "svc-2"]);
            assert_eq!(*language, Language::It);
            assert_eq!((item_prompt.as_str(), portal_prompt.as_str()), ("services-item", "sms-portal"));
        }
        other => panic!("expected one SendText, got {other:?}"),
    }
    assert_eq!(call.state.wait, Wait::Text { offset: 0, has_more: true });
    // Keys and silence while it is sent wait for the adapter's answer.
    assert_eq!(tokens(call.input(&In::Press("2"), Language::It).unwrap()), Vec::<String>::new());
    assert_eq!(tokens(call.input(&In::Silence, Language::It).unwrap()), Vec::<String>::new());

    let actions = call.send(Event::TextSent { segments: 2, encoding: Encoding::Gsm7 }).to_vec();
    assert_eq!(tokens(&actions), ["services-sms-sent@it", "services-options@it", "collect"], "no second offer");
    assert!(logged(&actions).contains(&LogEntry::TextSent { segments: 2, encoding: Encoding::Gsm7 }));
    assert_eq!(call.state.wait, Wait::ServicesMenu { offset: 0, has_more: true });
    // The menu goes on: 9 reads the next page, which may be sent again.
    assert_eq!(tokens(call.input(&In::Press("9"), Language::It).unwrap()), ["services+3"]);
    let next = tokens(call.input(&In::Results(2, false), Language::It).unwrap());
    assert!(next.contains(&"services-sms-offer@it".to_owned()), "{next:?}");
}

#[test]
fn a_text_that_fails_is_told_and_may_be_asked_again() {
    let mut call = at_readback("+39 333 1234567");
    call.input(&In::Press("3"), Language::It);
    let actions = call.send(Event::TextFailed { reason: "trunk: 503 Service Unavailable".into() }).to_vec();
    assert_eq!(tokens(&actions), ["services-sms-failed@it", "services-options@it", "services-sms-offer@it", "collect"]);
    assert!(logged(&actions).contains(&LogEntry::TextFailed { reason: "trunk: 503 Service Unavailable".into() }));
    call.input(&In::Press("3"), Language::It);
    assert!(call.last.iter().any(|a| matches!(a, Action::SendText { .. })));
    // An answer when none is awaited is ignored.
    call.send(Event::TextSent { segments: 1, encoding: Encoding::Ucs2 });
    let late = call.send(Event::TextSent { segments: 1, encoding: Encoding::Ucs2 }).to_vec();
    assert!(logged(&late).iter().any(|l| matches!(l, LogEntry::Ignored { .. })), "{late:?}");
}

#[test]
fn a_landline_a_foreign_or_a_withheld_number_is_not_offered_texts() {
    for number in [Some("+39 031 5551234"), Some("+33 6 12 34 56 78"), None] {
        let mut call = at_readback(number);
        let heard = tokens(&call.last);
        assert!(!heard.iter().any(|t| t.starts_with("services-sms-offer")), "{number:?}: {heard:?}");
        call.input(&In::Press("3"), Language::It);
        let l = call.state.language.unwrap();
        let want = [format!("invalid-choice@{l}"), format!("services-options@{l}"), "collect".to_owned()];
        assert_eq!(tokens(&call.last), want, "{number:?}: 3 is no option");
    }
}

#[test]
fn a_server_that_cannot_send_texts_takes_the_offer_out_of_the_flow() {
    let flow = Flow::default_flow().unwrap();
    assert!(flow.offers_sms());
    let without = flow.clone().without_sms();
    assert!(!without.offers_sms());
    // The same call through the flow without texts: no offer.
    let call = at_readback("+39 333 1234567");
    let mut state = call.state.clone();
    state.wait = Wait::Services { offset: 0 };
    let out = step(&without, &state, &Event::LookupResults { services: services(3, 0), has_more: true }, call.now);
    assert!(!tokens(&out.actions).iter().any(|t| t.starts_with("services-sms-offer")), "{:?}", tokens(&out.actions));
}

#[test]
fn the_texts_key_must_be_one_of_the_readbacks_free_digits() {
    for key in ["1", "2", "9", "0", "33", "#"] {
        let toml = DEFAULT_FLOW_TOML.replacen("key = \"3\"", &format!("key = \"{key}\""), 1);
        match Flow::from_toml(&toml, "config/test.toml", &embedded_prompt_ids()) {
            Err(ivr::flow::FlowError::Node { node, problem: NodeProblem::Invalid(why), .. }) => {
                assert_eq!(node, "self-service");
                assert!(why.contains("sms.key"), "{why}");
            }
            other => panic!("key {key}: {other:?}"),
        }
    }
}

#[test]
fn a_json_webhook_caller_is_not_offered_texts() {
    // The webhook sends the number only when the call starts: nothing to send a text to later.
    let mut call = at_readback("+39 333 1234567");
    assert!(tokens(&call.last).iter().any(|t| t.starts_with("services-sms-offer")), "SIP is offered");
    call.state.channel = Some(ivr::engine::Channel::Webhook);
    call.state.wait = Wait::Services { offset: 0 };
    let flow = Flow::default_flow().unwrap();
    let out = step(&flow, &call.state, &Event::LookupResults { services: services(3, 0), has_more: true }, call.now);
    assert!(!tokens(&out.actions).iter().any(|t| t.starts_with("services-sms-offer")), "{:?}", tokens(&out.actions));
    assert!(ivr::engine::Channel::Twiml.texts() && ivr::engine::Channel::Sip.texts());
}
