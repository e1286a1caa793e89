//! A small language for scripting calls: each step is an input (an event, or time passing) and
//! the key actions expected in reply, written as short tokens:
//!
//! - `area-menu@fr` a prompt played or said in French, `area-menu@fr~` at slow pace;
//! - `collect` a one-key collect, `collect5` the CAP collect;
//! - `services+3` a directory lookup at offset 3, `queue?` a queue-state lookup;
//! - `enqueue:fr:casa:5`, `transfer:op-7`, `record-callback:fr:casa`, `hangup:Callback`.
//!
//! `{l}` in a token stands for the language under test, `{d}` (in keys) for its key in the language
//! menu as the call stands, and the number `{home}` for a number of its country, so one script
//! runs in every configured language. Log actions are checked separately: every step must
//! emit at least one, and the recorded events must replay to the same final state.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use ivr::domain::{CallId, Caller, DtmfDigits, Language, PhoneNumber, ServerSecret};
use ivr::engine::{step, Action, CallState, Channel, Event, Lookup, Outcome, Pace, SayArg, ServiceSummary};
use ivr::flow::Flow;
use std::collections::BTreeMap;
use std::sync::OnceLock;

pub fn flow() -> &'static Flow {
    static FLOW: OnceLock<Flow> = OnceLock::new();
    FLOW.get_or_init(|| Flow::default_flow().unwrap_or_else(|e| panic!("default flow: {e}")))
}

pub fn secret() -> ServerSecret {
    ServerSecret::new(vec![9u8; 32]).unwrap()
}

pub fn caller(number: &str) -> Caller {
    Caller::from_number(&PhoneNumber::parse(number).unwrap(), &secret())
}

/// A Rome wall-clock time (`2026-03-02 10:00`) as a UTC instant.
pub fn rome(s: &str) -> DateTime<Utc> {
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
    chrono_tz::Europe::Rome.from_local_datetime(&naive).earliest().unwrap().with_timezone(&Utc)
}

/// A Monday morning, open.
pub const OPEN: &str = "2026-03-02 10:00";
/// The same Monday, evening: closed.
pub const EVENING: &str = "2026-03-02 20:00";

pub fn services(n: usize, offset: usize) -> Vec<ServiceSummary> {
    (0..n)
        .map(|i| ServiceSummary {
            id: format!("svc-{}", offset + i),
            name: format!("Sportello {}", offset + i + 1),
            // The first of a page has a street address; the others only their town.
            address: (i == 0).then(|| format!("Via Gramsci {}", offset + i + 17)),
            town: "Como".into(),
            phone: format!("031 55500{}", offset + i),
            hours_today: if i % 2 == 0 { Some("9:00-13:00".into()) } else { None },
            distance_km: 1.25 * (i + 1) as f64,
        })
        .collect()
}

/// One input of a script.
#[derive(Debug, Clone)]
pub enum In {
    /// `CallStarted` from this number (`None`: withheld).
    Start(Option<&'static str>),
    Press(&'static str),
    Silence,
    /// `LookupResults` with n services; `has_more`.
    Results(usize, bool),
    Queue(u32, u32),
    Assigned,
    Failed,
    /// The operator hands the caller over to the queue of this language (and area).
    HandOver(&'static str, Option<&'static str>),
    HangUp,
    PromptDone,
    /// The voice message is stored (`Recorded`, milliseconds).
    Recorded(u32),
    /// Time passes (no event, no expectation).
    Wait(i64),
}

pub type Step = (In, Vec<&'static str>);

/// Shorthand: `s(In::Press("1"), &["area-menu@{l}", "collect"])`.
pub fn s(input: In, expect: &[&'static str]) -> Step {
    (input, expect.to_vec())
}

/// The tokens of the non-log actions.
pub fn tokens(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| {
            Some(match a {
                Action::Play { prompt, language, pace } => {
                    format!("{prompt}@{language}{}", if *pace == Pace::Slow { "~" } else { "" })
                }
                Action::Say { message, language, pace, .. } => {
                    format!("{message}@{language}{}", if *pace == Pace::Slow { "~" } else { "" })
                }
                Action::Collect { max_digits: 1, .. } => "collect".to_owned(),
                Action::Collect { max_digits, .. } => format!("collect{max_digits}"),
                Action::Lookup(Lookup::NearestServices { offset, .. }) => {
                    format!("services+{offset}")
                }
                Action::Lookup(Lookup::QueueState) => "queue?".to_owned(),
                Action::Enqueue { language, area, priority } => {
                    format!("enqueue:{language}:{}:{priority}", area.map(|a| a.to_string()).unwrap_or("-".into()))
                }
                Action::Transfer { operator, .. } => format!("transfer:{operator}"),
                Action::RecordCallback { language, area } => {
                    format!("record-callback:{language}:{}", area.map(|a| a.to_string()).unwrap_or("-".into()))
                }
                Action::Hangup { outcome } => format!("hangup:{outcome:?}"),
                Action::Record => "record".to_owned(),
                Action::SendText { services, language, .. } => format!("text:{language}:{}", services.join(",")),
                Action::Log(_) => return None,
            })
        })
        .collect()
}

/// A call in progress under the default flow.
pub struct Call {
    pub state: CallState,
    pub now: DateTime<Utc>,
    pub events: Vec<(Event, DateTime<Utc>)>,
    pub last: Vec<Action>,
    /// Offset of the last services lookup, so `Results` answers the right page.
    services_offset: usize,
}

impl Call {
    pub fn new(at: &str) -> Call {
        Call {
            state: CallState::initial(CallId::parse("test-call").unwrap()),
            now: rome(at),
            events: Vec::new(),
            last: Vec::new(),
            services_offset: 0,
        }
    }

    pub fn send(&mut self, event: Event) -> &[Action] {
        let out = step(flow(), &self.state, &event, self.now);
        assert!(
            out.actions.iter().any(|a| matches!(a, Action::Log(_))),
            "every step logs; {event:?} gave {:?}",
            out.actions
        );
        for a in &out.actions {
            if let Action::Lookup(Lookup::NearestServices { offset, .. }) = a {
                self.services_offset = *offset as usize;
            }
        }
        self.events.push((event, self.now));
        self.state = out.state;
        self.last = out.actions;
        &self.last
    }

    pub fn input(&mut self, input: &In, lang: Language) -> Option<&[Action]> {
        let event = match input {
            In::Start(number) => {
                let number = number.map(|n| if n == "{home}" { home_number(lang) } else { n });
                Event::CallStarted { channel: Channel::Sip, caller: number.map(caller), called: Some("803001".into()) }
            }
            In::Press(keys) => {
                let keys = keys.replace("{d}", &menu_key(&self.state, lang).to_string());
                Event::Digits(DtmfDigits::parse(&keys).unwrap())
            }
            In::Silence => Event::NoInput,
            In::Results(n, has_more) => {
                Event::LookupResults { services: services(*n, self.services_offset), has_more: *has_more }
            }
            In::Queue(position, wait) => Event::QueueUpdate { position: *position, estimated_wait_secs: *wait },
            In::Assigned => Event::OperatorAssigned { operator: "op-7".into(), target: "sip:op7@pbx.local".into() },
            In::Failed => Event::TransferFailed { reason: "busy".into() },
            In::HandOver(language, area) => Event::HandedOver {
                language: Language::parse(language).unwrap(),
                area: area.map(|a| ivr::domain::ServiceArea::parse(a).unwrap()),
            },
            In::HangUp => Event::HungUp,
            In::PromptDone => Event::PromptFinished,
            In::Recorded(ms) => Event::Recorded { duration_ms: *ms },
            In::Wait(secs) => {
                self.now += chrono::Duration::seconds(*secs);
                return None;
            }
        };
        Some(self.send(event))
    }

    /// Arguments of the first `Say` of `message` in the last step.
    pub fn say_args(&self, message: &str) -> BTreeMap<String, SayArg> {
        self.last
            .iter()
            .find_map(|a| match a {
                Action::Say { message: m, args, .. } if m.as_str() == message => Some(args.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Say {message} in {:?}", self.last))
    }

    pub fn outcome(&self) -> Option<Outcome> {
        self.state.outcome
    }
}

/// A scripted call: runs it in `lang`, checking each step's key actions, then that the recorded
/// events replay to the same final state (also through JSON, as the server stores them).
pub fn run(name: &str, at: &str, steps: &[Step], lang: Language) -> Call {
    let mut call = Call::new(at);
    for (i, (input, expected)) in steps.iter().enumerate() {
        let Some(actions) = call.input(input, lang) else {
            continue;
        };
        let got = tokens(actions);
        let want: Vec<String> = expected
            .iter()
            .flat_map(|t| {
                if *t == MENU_WITHOUT_L {
                    menu_tokens(&[lang]).into_iter().map(str::to_owned).collect()
                } else if *t == SMS_OFFER {
                    sms_offered(lang).then(|| format!("services-sms-offer@{lang}")).into_iter().collect()
                } else {
                    vec![t.replace("{l}", lang.as_str())]
                }
            })
            .collect();
        assert_eq!(got, want, "script `{name}` in {lang}, step {i} ({input:?})");
    }
    let json = serde_json::to_string(&call.events).unwrap();
    let events: Vec<(Event, DateTime<Utc>)> = serde_json::from_str(&json).unwrap();
    let replayed = ivr::engine::replay(flow(), CallId::parse("test-call").unwrap(), &events);
    assert_eq!(replayed, call.state, "script `{name}` in {lang}: replay differs");
    let state_json = serde_json::to_string(&call.state).unwrap();
    assert_eq!(serde_json::from_str::<CallState>(&state_json).unwrap(), call.state);
    call
}

/// Runs a script in every configured language.
pub fn run_all(name: &str, at: &str, steps: &[Step]) -> Vec<Call> {
    flow().languages().iter().map(|&l| run(name, at, steps, l)).collect()
}

pub fn lang(tag: &str) -> Language {
    Language::parse(tag).unwrap()
}

/// A number from a country whose language is offered first and alone: `lang`.
pub fn home_number(lang: Language) -> &'static str {
    match lang.as_str() {
        "it" => "+39 333 1234567",
        "en" => "+44 20 7946 0958",
        "fr" => "+33 6 12 34 56 78",
        "es" => "+34 612 345 678",
        "ru" => "+7 912 345 6789",
        "zh" => "+86 139 1234 5678",
        "ar" => "+218 91 234 5678",
        "ro" => "+40 712 345 678",
        "sq" => "+355 67 234 5678",
        "uk" => "+380 50 123 4567",
        other => panic!("no home number for {other}"),
    }
}

/// The languages the menu lists when the guess offered `offered`, in order (keys 1, 2, 3…).
pub fn menu_languages(offered: &[Language]) -> Vec<Language> {
    flow().languages().iter().copied().filter(|l| !offered.contains(l)).collect()
}

/// The tokens of the language menu after the guess offered `offered` (`language-option@en`, …).
pub fn menu_tokens(offered: &[Language]) -> Vec<&'static str> {
    let mut t: Vec<&'static str> =
        menu_languages(offered).iter().map(|l| &*format!("language-option@{l}").leak()).collect();
    t.push("collect");
    t
}

/// The menu's tokens when the language under test was offered first: `{l}` in them is replaced
/// by the one listed language each token stands for, so the script runs in every language.
pub fn menu_without_l() -> Vec<&'static str> {
    vec![MENU_WITHOUT_L]
}

/// A token standing for "the language menu without the language under test, then collect".
pub const MENU_WITHOUT_L: &str = "<language menu without {l}>";

/// A token standing for the readback's text-message offer, said only to a caller a text reaches
/// (of the scripts' home numbers, the Italian mobile).
pub const SMS_OFFER: &str = "<sms offer if the caller is textable>";

/// Whether the home number of `lang` is offered the readback's services by text message.
pub fn sms_offered(lang: Language) -> bool {
    let node = flow().find("self-service").and_then(|ix| flow().node(ix)).map(|n| &n.kind);
    let Some(ivr::flow::NodeKind::SelfService { sms: Some(sms), .. }) = node else { return false };
    caller(home_number(lang)).textable(&sms.countries)
}

/// `lang`'s key in the language menu of this call.
pub fn menu_key(state: &CallState, lang: Language) -> usize {
    let offered: Vec<Language> = if state.guess_offered {
        [state.guessed_language, state.guessed_second].into_iter().flatten().collect()
    } else {
        vec![]
    };
    let menu = menu_languages(&offered);
    menu.iter().position(|l| *l == lang).map(|p| p + 1).unwrap_or(0)
}

/// A number of `{l}`'s country, its language offered first and accepted: the area menu in `{l}`.
pub fn to_area_menu() -> Vec<Step> {
    vec![
        s(In::Start(Some("{home}")), &["language-guess@{l}", "collect"]),
        s(In::Press("1"), &["welcome@{l}", "recording-notice@{l}", "area-menu@{l}", "collect"]),
    ]
}

/// …then area `digit`, the CAP question.
pub fn to_cap(digit: &'static str) -> Vec<Step> {
    let mut v = to_area_menu();
    v.push(s(In::Press(digit), &["cap-ask@{l}", "collect5"]));
    v
}

/// …then CAP 22100 (Como): the choice between services and an operator.
pub fn to_choice(digit: &'static str) -> Vec<Step> {
    let mut v = to_cap(digit);
    v.push(s(In::Press("22100"), &["cap-placed@{l}", "service-choice@{l}", "collect"]));
    v
}

/// …then 1 and three results: the services menu.
pub fn to_services(digit: &'static str) -> Vec<Step> {
    let mut v = to_choice(digit);
    v.push(s(In::Press("1"), &["services+0"]));
    v.push(s(
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
    ));
    v
}

/// …then 2: in the queue for area `digit` (`area` its code).
pub fn queue_tokens(area: &'static str) -> Vec<&'static str> {
    match area {
        "-" => vec!["queue-enter@{l}", "enqueue:{l}:-:5", "queue?"],
        "lingua" => vec!["queue-enter@{l}", "enqueue:{l}:lingua:5", "queue?"],
        "lavoro" => vec!["queue-enter@{l}", "enqueue:{l}:lavoro:5", "queue?"],
        "casa" => vec!["queue-enter@{l}", "enqueue:{l}:casa:5", "queue?"],
        "salute" => vec!["queue-enter@{l}", "enqueue:{l}:salute:5", "queue?"],
        "minori" => vec!["queue-enter@{l}", "enqueue:{l}:minori:5", "queue?"],
        "mediazione" => vec!["queue-enter@{l}", "enqueue:{l}:mediazione:5", "queue?"],
        other => panic!("unknown area {other}"),
    }
}

pub fn concat(parts: Vec<Vec<Step>>) -> Vec<Step> {
    parts.into_iter().flatten().collect()
}
