//! Adding a language is a data change: its texts (a folder of `.ftl` files), its voice and names
//! (one `[[languages]]` entry) and, optionally, the country codes that offer it first. Here a
//! fixture adds Portuguese to the shipped ten: the flow loads, Brazilian callers are offered it
//! first, the others find it on the language menu's second page (9, then its key), and its texts
//! are formatted and spoken.

use crate::dsl::{caller, rome, OPEN};
use ivr::domain::{CallId, Language};
use ivr::engine::{step, Action, CallState, Channel, Event};
use ivr::flow::{Flow, FlowError, KnownPrompts, DEFAULT_FLOW_TOML};
use ivr::prompts::{Catalog, Espeak, Pace, PromptArg};
use std::path::Path;

/// The repository's prompts and the fixture's Portuguese, in one folder.
fn prompts_with_portuguese() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eleventh");
    for root in [repo, fixture] {
        for lang in std::fs::read_dir(&root).unwrap() {
            let lang = lang.unwrap().path();
            if !lang.is_dir() {
                continue;
            }
            let to = tmp.path().join(lang.file_name().unwrap());
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(&lang).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "ftl") {
                    std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
                }
            }
        }
    }
    tmp
}

/// The shipped flow plus one table entry and one country code.
fn flow_with_portuguese() -> String {
    let entry = "[[languages]]\ntag = \"pt\"\nvoice = \"pt-br\"\nsay = \"pt-BR\"\nname = \"português\"\n\
                 decimal_comma = true\n\n[language_guess]\n\"55\" = \"pt\"   # Brazil\n";
    assert!(DEFAULT_FLOW_TOML.contains("[language_guess]\n"));
    DEFAULT_FLOW_TOML.replacen("[language_guess]\n", entry, 1)
}

fn says(actions: &[Action]) -> Vec<(String, Language)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Say { message, language, .. } | Action::Play { prompt: message, language, .. } => {
                Some((message.to_string(), *language))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_language_is_added_as_data() {
    let dir = prompts_with_portuguese();
    // Without its texts, the new language is refused, naming its folder.
    let err = Flow::from_toml(&flow_with_portuguese(), "eleven.toml", &KnownPrompts::embedded()).unwrap_err();
    assert!(matches!(&err, FlowError::MissingPrompts { language, .. } if language == "pt"), "{err}");

    let flow = Flow::from_toml(&flow_with_portuguese(), "eleven.toml", &KnownPrompts::scan(dir.path()))
        .unwrap_or_else(|e| panic!("{e}"));
    let pt = Language::parse("pt-BR").unwrap();
    assert_eq!(flow.languages().len(), 11);
    assert_eq!(flow.languages()[10], pt);
    assert_eq!((pt.endonym(), pt.voice(), pt.twiml_say()), ("português", "pt-br", Some("pt-BR")));

    let now = rome(OPEN);
    let start = |number: Option<&str>| Event::CallStarted {
        channel: Channel::Sip,
        caller: number.map(caller),
        called: Some("803001".into()),
    };
    let keys = |k: &str| Event::Digits(ivr::domain::DtmfDigits::parse(k).unwrap());
    let initial = CallState::initial(CallId::parse("pt").unwrap());

    // A Brazilian caller: Portuguese first, one key, then everything in it.
    let out = step(&flow, &initial, &start(Some("+55 11 91234 5678")), now);
    assert_eq!(says(&out.actions), [("language-guess".to_owned(), pt)]);
    let out = step(&flow, &out.state, &keys("1"), now);
    assert_eq!(
        says(&out.actions),
        [("welcome".to_owned(), pt), ("recording-notice".to_owned(), pt), ("area-menu".to_owned(), pt)]
    );

    // Anyone else: ten languages but the one offered do not fit on one page: eight, then 9 for
    // more (said in the next page's languages), then Portuguese on the second page. Two keys.
    let out = step(&flow, &initial, &start(None), now);
    let menu = step(&flow, &out.state, &Event::NoInput, now);
    let page: Vec<(String, Language)> = says(&menu.actions);
    assert_eq!(page.len(), 8 + 2, "{page:?}");
    assert_eq!(page[8], ("language-more".to_owned(), Language::parse("uk").unwrap()));
    assert_eq!(page[9], ("language-more".to_owned(), pt));
    let second = step(&flow, &menu.state, &keys("9"), now);
    assert_eq!(
        says(&second.actions),
        [("language-option".to_owned(), Language::parse("uk").unwrap()), ("language-option".to_owned(), pt)]
    );
    let chosen = step(&flow, &second.state, &keys("2"), now);
    assert_eq!(chosen.state.language, Some(pt));

    // Its texts load, format with its plural rules and decimal comma, and are spoken by its voice.
    let catalog = Catalog::load_languages(dir.path(), flow.languages()).unwrap();
    let position = catalog
        .format(pt, &"queue-position".parse().unwrap(), &[("position", PromptArg::from(3)), ("minutes", 1.into())])
        .unwrap();
    assert_eq!(position, "Você é o número 3 na fila. A espera é de cerca de um minuto.");
    let espeak = Espeak::default();
    if espeak.is_available() {
        let samples = espeak.synthesize(pt, &position, Pace::Normal).unwrap();
        assert!(samples.len() > 8000 && ivr::prompts::rms_dbfs(&samples) > -30.0);
    } else {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI installs espeak-ng");
    }
}
