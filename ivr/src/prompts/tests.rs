//! Tests of the prompt tooling against the fixture set in `ivr/tests/fixtures/prompts` and, where
//! speech is needed, the real espeak-ng. Without espeak-ng those tests print
//! `SKIPPED (espeak-ng not installed)` and return, except under `CI=true`, where they fail.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::*;
use crate::domain::{Language, PromptId};

/// The languages of the fixture set.
const FIXTURE_LANGS: [Language; 4] = [Language::It, Language::En, Language::Fr, Language::Es];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prompts")
}

fn id(s: &str) -> PromptId {
    PromptId::parse(s).expect("test ids are valid")
}

/// A temporary copy of the fixture set, to break or render into.
fn fixture_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    for lang in FIXTURE_LANGS {
        let from = fixtures().join(lang.as_str());
        let to = tmp.path().join(lang.as_str());
        std::fs::create_dir_all(&to).expect("mkdir");
        for entry in std::fs::read_dir(&from).expect("fixture dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "ftl") {
                let name = path.file_name().expect("file name");
                std::fs::copy(&path, to.join(name)).expect("copy");
            }
        }
    }
    tmp
}

/// espeak-ng, or `None` after printing why the test is skipped. Under `CI=true` a missing
/// espeak-ng fails the test: CI installs it.
fn espeak_or_skip(test: &str) -> Option<()> {
    if Espeak::default().is_available() {
        return Some(());
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: espeak-ng is not installed, and CI=true requires it (apt-get install espeak-ng)");
    }
    // Straight to the process's stderr: `eprintln!` would be captured, and hidden, by the test
    // harness for a passing test.
    let _ = writeln!(std::io::stderr(), "SKIPPED (espeak-ng not installed): {test}");
    None
}

fn args<'a>(pairs: &[(&'a str, PromptArg)]) -> Vec<(&'a str, PromptArg)> {
    pairs.to_vec()
}

// ---------------------------------------------------------------- catalog

#[test]
fn loads_the_fixture_set() {
    let cat = Catalog::load(&fixtures()).expect("fixtures load");
    let expected: BTreeSet<PromptId> =
        ["callers-waiting", "goodbye", "wait-minutes", "welcome"].into_iter().map(id).collect();
    for lang in FIXTURE_LANGS {
        assert_eq!(cat.ids(lang), expected, "{lang}");
    }
    assert_eq!(cat.missing(), vec![]);
    let welcome = cat.format(Language::It, &id("welcome"), &[]).unwrap();
    // No Unicode isolation marks: the text goes to a speech engine.
    assert_eq!(welcome, "Benvenuti al Numero Verde Stranieri.");
    assert!(!cat.has_variables(Language::It, &id("welcome")));
    assert!(cat.has_variables(Language::Fr, &id("callers-waiting")));
    assert!(cat.has_variables(Language::En, &id("wait-minutes")));
    let (path, line) = cat.source(Language::Es, &id("goodbye")).unwrap();
    assert!(path.ends_with("es/main.ftl"));
    assert_eq!(line, 5);
}

#[test]
fn texts_in_memory_make_the_same_catalog_as_the_folder() {
    let from_disk = Catalog::load(&fixtures()).expect("fixtures load");
    // Given in any order: each language's texts are read in path order, like a folder's files.
    let mut texts = Vec::new();
    for lang in FIXTURE_LANGS {
        for entry in std::fs::read_dir(fixtures().join(lang.as_str())).expect("fixture dir") {
            let path = entry.expect("entry").path();
            let name = PathBuf::from(format!("built-in/{lang}/{}", path.file_name().unwrap().to_string_lossy()));
            texts.push((lang, name, std::fs::read(&path).expect("read")));
        }
    }
    texts.reverse();
    let in_memory = Catalog::from_texts(texts.clone()).expect("texts load");
    for lang in FIXTURE_LANGS {
        assert_eq!(in_memory.ids(lang), from_disk.ids(lang), "{lang}");
    }
    let minutes = args(&[("minutes", PromptArg::from(3))]);
    assert_eq!(
        in_memory.format(Language::En, &id("wait-minutes"), &minutes).unwrap(),
        from_disk.format(Language::En, &id("wait-minutes"), &minutes).unwrap()
    );
    let (path, line) = in_memory.source(Language::Es, &id("goodbye")).unwrap();
    assert_eq!((path, line), (Path::new("built-in/es/main.ftl"), 5));

    // The same checks: a broken text is reported with the name it was given.
    texts.push((Language::It, PathBuf::from("built-in/it/zz.ftl"), b"welcome = again\n".to_vec()));
    let err = Catalog::from_texts(texts).unwrap_err();
    assert!(
        matches!(err, PromptError::DuplicateId { ref path, .. } if path == Path::new("built-in/it/zz.ftl")),
        "{err}"
    );
}

#[test]
fn plural_rules_follow_each_locale() {
    let cat = Catalog::load(&fixtures()).unwrap();
    let fmt = |lang, n: i64| cat.format(lang, &id("callers-waiting"), &args(&[("count", n.into())])).unwrap();
    // French: 0 and 1 are both `one`.
    assert_eq!(fmt(Language::Fr, 0), "0 personne en attente.");
    assert_eq!(fmt(Language::Fr, 1), "1 personne en attente.");
    assert_eq!(fmt(Language::Fr, 2), "2 personnes en attente.");
    // Italian, English, Spanish: only 1 is `one`.
    assert_eq!(fmt(Language::It, 0), "Ci sono 0 persone in attesa.");
    assert_eq!(fmt(Language::It, 1), "C'è una persona in attesa.");
    assert_eq!(fmt(Language::It, 5), "Ci sono 5 persone in attesa.");
    assert_eq!(fmt(Language::En, 0), "0 people are waiting.");
    assert_eq!(fmt(Language::En, 1), "One person is waiting.");
    assert_eq!(fmt(Language::Es, 1), "Hay una persona en espera.");
    assert_eq!(fmt(Language::Es, 3), "Hay 3 personas en espera.");
}

#[test]
fn numbers_use_the_locale_decimal_separator() {
    let cat = Catalog::load(&fixtures()).unwrap();
    let minutes = |lang| cat.format(lang, &id("wait-minutes"), &args(&[("minutes", 2.5.into())])).unwrap();
    assert_eq!(minutes(Language::It), "Attesa stimata: 2,5 minuti.");
    assert_eq!(minutes(Language::En), "Estimated wait: 2.5 minutes.");
    assert_eq!(minutes(Language::Fr), "Attente estimée : 2,5 minutes.");
    let whole = cat.format(Language::Es, &id("wait-minutes"), &args(&[("minutes", 10.into())])).unwrap();
    assert_eq!(whole, "Espera estimada: 10 minutos.");
}

#[test]
fn formatting_errors_are_errors() {
    let cat = Catalog::load(&fixtures()).unwrap();
    // A missing variable.
    match cat.format(Language::It, &id("callers-waiting"), &[]) {
        Err(PromptError::Format { lang, id: i, path, line, errors }) => {
            assert_eq!((lang, i), (Language::It, id("callers-waiting")));
            assert!(path.ends_with("it/queue.ftl"));
            assert_eq!(line, 1);
            assert!(errors.contains("count"), "{errors}");
        }
        other => panic!("expected a format error, got {other:?}"),
    }
    // A wrong variable name is as bad as none.
    let wrong = args(&[("cnt", 3.into())]);
    assert!(matches!(cat.format(Language::Fr, &id("callers-waiting"), &wrong), Err(PromptError::Format { .. })));
    assert!(matches!(
        cat.format(Language::En, &id("no-such-prompt"), &[]),
        Err(PromptError::UnknownMessage { lang: Language::En, .. })
    ));
}

#[test]
fn a_reference_to_a_missing_message_is_an_error() {
    let tmp = fixture_copy();
    std::fs::write(tmp.path().join("en/extra.ftl"), "broken-ref = Press { nowhere }.\n").unwrap();
    let cat = Catalog::load(tmp.path()).unwrap();
    assert!(!cat.has_variables(Language::En, &id("broken-ref")));
    let err = cat.format(Language::En, &id("broken-ref"), &[]).unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[test]
fn variables_reached_through_a_message_reference_count() {
    let tmp = fixture_copy();
    std::fs::write(
        tmp.path().join("it/extra.ftl"),
        "again = Ripeto: { callers-waiting }\nloop-a = { loop-b }\nloop-b = { loop-a }\n",
    )
    .unwrap();
    let cat = Catalog::load(tmp.path()).unwrap();
    assert!(cat.has_variables(Language::It, &id("again")));
    assert_eq!(
        cat.format(Language::It, &id("again"), &args(&[("count", 1.into())])).unwrap(),
        "Ripeto: C'è una persona in attesa."
    );
    // A cycle neither hangs nor passes for static text.
    assert!(!cat.has_variables(Language::It, &id("loop-a")));
    assert!(cat.format(Language::It, &id("loop-a"), &[]).is_err());
}

#[test]
fn a_parse_error_names_file_and_line() {
    let tmp = fixture_copy();
    let broken = tmp.path().join("fr/broken.ftl");
    std::fs::write(&broken, "# commentaire\nok-one = Bonjour.\n\nbad = { $count ->\n    [one] un\n}\nok-two = Fin.\n")
        .unwrap();
    match Catalog::load(tmp.path()) {
        Err(PromptError::Parse { path, line, .. }) => {
            assert_eq!(path, broken);
            // The select expression on line 4 has no default variant; the parser stops at
            // line 6, where the closing brace arrives without one.
            assert!((4..=6).contains(&line), "line {line}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }

    // An unclosed placeable: the error is on the line that holds it.
    std::fs::write(&broken, "a = one\nb = two\nc = { $x\nd = four\n").unwrap();
    match Catalog::load(tmp.path()) {
        Err(e @ PromptError::Parse { .. }) => {
            let PromptError::Parse { ref path, line, .. } = e else { unreachable!() };
            assert_eq!(path, &broken);
            assert_eq!(line, 3, "{e}");
            assert!(e.to_string().starts_with(&format!("{}:3:", broken.display())), "{e}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn duplicate_ids_name_both_places() {
    let tmp = fixture_copy();
    let extra = tmp.path().join("es/zz-extra.ftl");
    std::fs::write(&extra, "# otra\n\ngoodbye = Hasta luego.\n").unwrap();
    match Catalog::load(tmp.path()) {
        Err(PromptError::DuplicateId { id: i, path, line, first_path, first_line }) => {
            assert_eq!(i, id("goodbye"));
            assert_eq!((path, line), (extra.clone(), 3));
            assert!(first_path.ends_with("es/main.ftl"));
            assert_eq!(first_line, 5);
        }
        other => panic!("expected a duplicate id, got {other:?}"),
    }

    // Within one file: the second occurrence's line.
    std::fs::write(&extra, "dup = uno\nother = x\ndup = dos\n").unwrap();
    match Catalog::load(tmp.path()) {
        Err(PromptError::DuplicateId { path, line, first_path, first_line, .. }) => {
            assert_eq!((path, line), (extra.clone(), 3));
            assert_eq!((first_path, first_line), (extra, 1));
        }
        other => panic!("expected a duplicate id, got {other:?}"),
    }
}

#[test]
fn ids_must_be_prompt_ids() {
    let tmp = fixture_copy();
    let extra = tmp.path().join("en/extra.ftl");
    std::fs::write(&extra, "fine = ok\nnot_fine = no\n").unwrap();
    match Catalog::load(tmp.path()) {
        Err(PromptError::InvalidId { id, path, line }) => {
            assert_eq!((id.as_str(), path, line), ("not_fine", extra.clone(), 2));
        }
        other => panic!("expected an invalid id, got {other:?}"),
    }
    std::fs::write(&extra, "fine = ok\nno-value =\n    .attr = x\n").unwrap();
    assert!(matches!(Catalog::load(tmp.path()), Err(PromptError::NoValue { line: 2, .. })));
}

#[test]
fn missing_language_folder_and_missing_messages() {
    let tmp = fixture_copy();
    std::fs::remove_dir_all(tmp.path().join("es")).unwrap();
    assert!(matches!(
        Catalog::load_languages(tmp.path(), &FIXTURE_LANGS),
        Err(PromptError::MissingLanguageDir { path }) if path.ends_with("es")
    ));
    // Loading what is there takes the folders present.
    assert_eq!(Catalog::load(tmp.path()).unwrap().languages(), [Language::It, Language::En, Language::Fr]);

    let tmp = fixture_copy();
    // English loses `goodbye`; French gains `only-fr`.
    std::fs::write(tmp.path().join("en/main.ftl"), "-helpline = Helpline\nwelcome = Welcome to the { -helpline }.\n")
        .unwrap();
    std::fs::write(tmp.path().join("fr/extra.ftl"), "only-fr = Seulement en français.\n").unwrap();
    let cat = Catalog::load(tmp.path()).unwrap();
    let missing = cat.missing();
    assert_eq!(
        missing,
        vec![
            (Language::It, id("only-fr")),
            (Language::En, id("goodbye")),
            (Language::En, id("only-fr")),
            (Language::Es, id("only-fr")),
        ]
    );
    let report = check_all(tmp.path(), &cat);
    for (lang, i) in missing {
        assert!(
            report.problems.iter().any(|p| p.lang == lang && p.id == i && p.kind == ProblemKind::MissingMessage),
            "{lang} {i} not reported"
        );
    }
}

#[test]
fn catalog_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Catalog>();
    assert_send_sync::<Tts>();
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_first_id() {
    let tmp = fixture_copy();
    std::fs::write(tmp.path().join("it/bom.ftl"), "\u{feff}bom-first = Primo.\n").unwrap();
    let cat = Catalog::load(tmp.path()).unwrap();
    assert_eq!(cat.format(Language::It, &id("bom-first"), &[]).unwrap(), "Primo.");
    assert_eq!(cat.source(Language::It, &id("bom-first")).map(|s| s.1), Some(1));
}

#[test]
fn non_utf8_files_are_reported() {
    let tmp = fixture_copy();
    let bad = tmp.path().join("es/latin1.ftl");
    std::fs::write(&bad, b"adios = Adi\xf3s.\n").unwrap();
    assert!(matches!(
        Catalog::load(tmp.path()),
        Err(PromptError::NotUtf8 { path }) if path == bad
    ));
}

// ---------------------------------------------------------------- check, without espeak

/// A valid-looking prompt: `secs` of a 440 Hz tone, faded, then 200 ms of silence.
fn tone_prompt(secs: f64, rate: u32) -> Vec<i16> {
    let n = (f64::from(rate) * secs) as usize;
    let fade = rate as usize / 100;
    let mut v: Vec<i16> = (0..n)
        .map(|i| {
            let g = (i.min(n - 1 - i) as f64 / fade as f64).min(1.0);
            let t = i as f64 / f64::from(rate);
            (8000.0 * g * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect();
    v.resize(n + rate as usize / 5, 0);
    v
}

fn write_wav(path: &Path, spec: hound::WavSpec, samples: &[i16]) {
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

fn cut_bytes(path: &Path, n: u64) {
    let len = std::fs::metadata(path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len - n).unwrap();
}

#[test]
fn check_file_reports_each_kind_of_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    let text = "Grazie.";

    write_wav(&p("good.wav"), PROMPT_SPEC, &tone_prompt(1.0, 8000));
    assert_eq!(check_file(&p("good.wav"), text), vec![]);
    assert_eq!(load_wav(&p("good.wav")).unwrap().len(), 9600);

    assert_eq!(check_file(&p("absent.wav"), text), vec![ProblemKind::MissingWav]);

    write_wav(&p("silent.wav"), PROMPT_SPEC, &vec![0; 8000]);
    assert!(matches!(check_file(&p("silent.wav"), text)[..], [ProblemKind::Silent { .. }]));

    let wide = hound::WavSpec { sample_rate: 16000, ..PROMPT_SPEC };
    write_wav(&p("16k.wav"), wide, &tone_prompt(1.0, 16000));
    match &check_file(&p("16k.wav"), text)[..] {
        [ProblemKind::WrongFormat(reason)] => assert!(reason.contains("16000 Hz"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(load_wav(&p("16k.wav")), Err(PromptError::WavFormat { .. })));

    let stereo = hound::WavSpec { channels: 2, ..PROMPT_SPEC };
    write_wav(&p("stereo.wav"), stereo, &tone_prompt(1.0, 8000));
    match &check_file(&p("stereo.wav"), text)[..] {
        [ProblemKind::WrongFormat(reason)] => assert!(reason.contains("2 channel"), "{reason}"),
        other => panic!("{other:?}"),
    }

    write_wav(&p("cut.wav"), PROMPT_SPEC, &tone_prompt(1.0, 8000));
    cut_bytes(&p("cut.wav"), 1001);
    match &check_file(&p("cut.wav"), text)[..] {
        [ProblemKind::Truncated { declared, read }, ..] => {
            assert_eq!((*declared, *read), (9600, 9600 - 501));
        }
        other => panic!("{other:?}"),
    }
    assert!(load_wav(&p("cut.wav")).is_err());

    // Speech that runs to the very last sample.
    let mut abrupt = tone_prompt(1.0, 8000);
    abrupt.truncate(7000);
    write_wav(&p("abrupt.wav"), PROMPT_SPEC, &abrupt);
    assert!(matches!(check_file(&p("abrupt.wav"), text)[..], [ProblemKind::AbruptEnd { .. }]));

    // Half a second cannot hold a 40-character sentence.
    write_wav(&p("short.wav"), PROMPT_SPEC, &tone_prompt(0.3, 8000));
    let long_text = "Per parlare con un operatore, premere 9.";
    assert!(matches!(check_file(&p("short.wav"), long_text)[..], [ProblemKind::TooShort { min_ms: 1600, .. }]));

    std::fs::write(p("junk.wav"), b"RIFF....not a wave").unwrap();
    assert!(matches!(check_file(&p("junk.wav"), text)[..], [ProblemKind::Unreadable(_)]));
}

#[test]
fn a_prompt_in_memory_is_decoded_and_checked_like_a_file() {
    let samples = tone_prompt(1.0, 8000);
    let bytes = wav_bytes(&samples).unwrap();
    assert_eq!(decode_wav(&bytes, Path::new("it/wav/x.wav")).unwrap(), samples);

    let cut = &bytes[..bytes.len() - 1001];
    let err = decode_wav(cut, Path::new("it/wav/x.wav")).unwrap_err();
    assert!(err.to_string().starts_with("it/wav/x.wav: "), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let wide = tmp.path().join("16k.wav");
    write_wav(&wide, hound::WavSpec { sample_rate: 16000, ..PROMPT_SPEC }, &tone_prompt(1.0, 16000));
    let err = decode_wav(&std::fs::read(&wide).unwrap(), Path::new("16k.wav")).unwrap_err();
    assert!(matches!(err, PromptError::WavFormat { .. }), "{err}");
    assert!(decode_wav(b"RIFF....not a wave", Path::new("junk.wav")).is_err());
}

// ---------------------------------------------------------------- rendering, with espeak

fn file_state(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    let bytes = std::fs::read(path).unwrap();
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    (bytes, mtime)
}

#[test]
fn render_then_check_then_rerender_is_a_no_op() {
    let Some(()) = espeak_or_skip("render_then_check_then_rerender_is_a_no_op") else {
        return;
    };
    let tmp = fixture_copy();
    let dir = tmp.path();
    let cat = Catalog::load(dir).unwrap();
    let opts = RenderOptions::default();

    let report = render_all(dir, &cat, &opts).unwrap();
    let statics = ["goodbye", "welcome"];
    assert_eq!(report.written.len(), statics.len() * 4, "{report:?}");
    assert_eq!(report.dynamic.len(), 2 * 4);
    assert!(report.up_to_date.is_empty() && report.identical.is_empty() && report.orphans.is_empty());

    let check = check_all(dir, &cat);
    assert!(check.is_ok(), "{:#?}", check.problems);
    assert_eq!(check.files_checked, 8);
    for lang in FIXTURE_LANGS {
        for s in statics {
            let samples = load_wav(&wav_path(dir, lang, &id(s))).unwrap();
            let secs = samples.len() as f64 / 8000.0;
            assert!((0.8..6.0).contains(&secs), "{lang} {s}: {secs} s");
        }
        // Messages with variables are left to on-demand synthesis.
        assert!(!wav_path(dir, lang, &id("callers-waiting")).exists());
    }

    let paths: Vec<PathBuf> = FIXTURE_LANGS
        .iter()
        .flat_map(|&l| {
            statics
                .iter()
                .map(move |s| wav_path(dir, l, &id(s)))
                .chain(std::iter::once(wav_dir(dir, l).join(MANIFEST_NAME)))
        })
        .collect();
    let before: Vec<_> = paths.iter().map(|p| file_state(p)).collect();

    // Second run: nothing synthesised, nothing written.
    let again = render_all(dir, &cat, &opts).unwrap();
    assert_eq!(again.synthesized(), 0, "{again:?}");
    assert_eq!(again.up_to_date.len(), 8);
    let after: Vec<_> = paths.iter().map(|p| file_state(p)).collect();
    assert!(before == after, "re-render changed files");

    // Without the manifest, speech is synthesised again but the output is byte-identical, so
    // no WAV is rewritten (determinism).
    for lang in FIXTURE_LANGS {
        std::fs::remove_file(wav_dir(dir, lang).join(MANIFEST_NAME)).unwrap();
    }
    let third = render_all(dir, &cat, &opts).unwrap();
    assert_eq!(third.identical.len(), 8, "{third:?}");
    assert!(third.written.is_empty());
    let after: Vec<_> = paths.iter().map(|p| file_state(p)).collect();
    for ((path, b), a) in paths.iter().zip(&before).zip(&after) {
        // The manifests were deleted, so they are new files, with the same bytes.
        if path.ends_with(MANIFEST_NAME) {
            assert!(b.0 == a.0, "{} differs", path.display());
        } else {
            assert!(b == a, "synthesis is not deterministic: {} changed", path.display());
        }
    }

    // WAVs without a static message behind them are reported, and left alone.
    let orphan = wav_dir(dir, Language::It).join("old-prompt.wav");
    std::fs::copy(wav_path(dir, Language::It, &id("welcome")), &orphan).unwrap();
    let dynamic = wav_path(dir, Language::Fr, &id("callers-waiting"));
    std::fs::copy(wav_path(dir, Language::Fr, &id("welcome")), &dynamic).unwrap();
    let with_orphans = render_all(dir, &cat, &opts).unwrap();
    assert_eq!(with_orphans.orphans, vec![orphan.clone(), dynamic.clone()]);
    assert!(orphan.exists() && dynamic.exists());
    assert!(check_all(dir, &cat).is_ok());

    // A changed text is rendered again, and only it.
    std::fs::write(
        dir.join("en/main.ftl"),
        "-helpline = Helpline for Foreign Citizens\nwelcome = Welcome to the { -helpline }.\ngoodbye = Thanks, and goodbye.\n",
    )
    .unwrap();
    let cat = Catalog::load(dir).unwrap();
    let fourth = render_all(dir, &cat, &opts).unwrap();
    assert_eq!(fourth.written, vec![(Language::En, id("goodbye"))]);
    assert_eq!(fourth.up_to_date.len(), 7);
}

#[test]
fn check_all_reports_every_broken_file() {
    let Some(()) = espeak_or_skip("check_all_reports_every_broken_file") else {
        return;
    };
    let tmp = fixture_copy();
    let dir = tmp.path();
    let cat = Catalog::load(dir).unwrap();
    render_all(dir, &cat, &RenderOptions::default()).unwrap();

    let silent = wav_path(dir, Language::It, &id("welcome"));
    write_wav(&silent, PROMPT_SPEC, &vec![0; 16000]);
    let wide = wav_path(dir, Language::En, &id("welcome"));
    let samples = load_wav(&wide).unwrap();
    write_wav(&wide, hound::WavSpec { sample_rate: 16000, ..PROMPT_SPEC }, &samples);
    let stereo = wav_path(dir, Language::En, &id("goodbye"));
    write_wav(&stereo, hound::WavSpec { channels: 2, ..PROMPT_SPEC }, &samples);
    let cut = wav_path(dir, Language::Fr, &id("goodbye"));
    cut_bytes(&cut, 3000);
    let missing = wav_path(dir, Language::Es, &id("welcome"));
    std::fs::remove_file(&missing).unwrap();

    let report = check_all(dir, &cat);
    assert!(!report.is_ok());
    let find = |path: &Path| -> Vec<&ProblemKind> {
        report.problems.iter().filter(|p| p.path.as_deref() == Some(path)).map(|p| &p.kind).collect()
    };
    assert!(matches!(find(&silent)[..], [ProblemKind::Silent { .. }]), "{report:#?}");
    assert!(matches!(find(&wide)[..], [ProblemKind::WrongFormat(_)]), "{report:#?}");
    assert!(matches!(find(&stereo)[..], [ProblemKind::WrongFormat(_)]), "{report:#?}");
    assert!(matches!(find(&cut)[..], [ProblemKind::Truncated { .. }, ..]), "{report:#?}");
    assert_eq!(find(&missing), vec![&ProblemKind::MissingWav]);
    assert_eq!(report.problems.len(), 5 + find(&cut).len() - 1, "{report:#?}");
    // Every problem names its file in its message.
    for p in &report.problems {
        let shown = p.to_string();
        assert!(shown.contains(".wav"), "{shown}");
    }
}

#[test]
fn a_missing_speech_engine_names_the_debian_package() {
    let tmp = fixture_copy();
    let cat = Catalog::load(tmp.path()).unwrap();
    let opts = RenderOptions { espeak_program: PathBuf::from("/nonexistent/espeak-ng"), ..RenderOptions::default() };
    let err = render_all(tmp.path(), &cat, &opts).unwrap_err();
    assert!(matches!(err, PromptError::EspeakNotFound { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("espeak-ng") && shown.contains("apt-get install"), "{shown}");

    let tts = Tts::new(
        tmp.path().join("cache"),
        TtsOptions { espeak_program: PathBuf::from("/nonexistent/espeak-ng"), ..TtsOptions::default() },
    )
    .unwrap();
    assert!(matches!(tts.render(Language::It, "tre", Pace::Normal), Err(PromptError::EspeakNotFound { .. })));
    assert!(matches!(tts.render(Language::It, "  ", Pace::Normal), Err(PromptError::EmptyText)));
    assert!(matches!(
        tts.render(Language::It, &"parola ".repeat(200), Pace::Normal),
        Err(PromptError::TextTooLong { max: 1000, .. })
    ));
}

// ---------------------------------------------------------------- on-demand speech

#[test]
fn tts_synthesises_each_text_once() {
    let Some(()) = espeak_or_skip("tts_synthesises_each_text_once") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("tts");
    let tts = Tts::new(cache.clone(), TtsOptions::default()).unwrap();

    let text = "Lei è il numero 3 in coda.";
    let first = tts.render(Language::It, text, Pace::Normal).unwrap();
    assert_eq!(tts.synth_invocations(), 1);
    assert!(first.len() > 8000, "{} samples", first.len());
    assert!(tts.cache_path(Language::It, text, Pace::Normal).exists());

    // Memory hit: the very same buffer, no synthesis.
    let second = tts.render(Language::It, "  Lei è il numero 3   in coda. ", Pace::Normal).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    assert_eq!(tts.synth_invocations(), 1);

    // Disk hit from a fresh instance (another process, a restart).
    let fresh = Tts::new(cache.clone(), TtsOptions::default()).unwrap();
    let third = fresh.render(Language::It, text, Pace::Normal).unwrap();
    assert_eq!(fresh.synth_invocations(), 0);
    assert_eq!(*third, *first);

    // Another pace or language is another text.
    let slow = tts.render(Language::It, text, Pace::Slow).unwrap();
    assert_eq!(tts.synth_invocations(), 2);
    assert!(slow.len() > first.len(), "slow {} vs normal {}", slow.len(), first.len());
    tts.render(Language::Es, text, Pace::Normal).unwrap();
    assert_eq!(tts.synth_invocations(), 3);

    // A damaged cache file is synthesised again, not served.
    let path = fresh.cache_path(Language::It, "cinque", Pace::Normal);
    fresh.render(Language::It, "cinque", Pace::Normal).unwrap();
    cut_bytes(&path, 500);
    let other = Tts::new(cache, TtsOptions { memory_entries: 1, ..TtsOptions::default() }).unwrap();
    let healed = other.render(Language::It, "cinque", Pace::Normal).unwrap();
    assert_eq!(other.synth_invocations(), 1);
    assert_eq!(load_wav(&path).unwrap(), *healed);

    // The memory bound: with one entry, a second text evicts the first (served from disk then).
    other.render(Language::It, text, Pace::Normal).unwrap();
    other.render(Language::It, "cinque", Pace::Normal).unwrap();
    assert_eq!(other.synth_invocations(), 1);
}

#[test]
fn tts_is_sound_under_concurrent_use() {
    let Some(()) = espeak_or_skip("tts_is_sound_under_concurrent_use") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let tts = std::sync::Arc::new(Tts::new(tmp.path().to_owned(), TtsOptions::default()).unwrap());
    let texts = ["uno", "due", "uno", "due", "uno", "due"];
    let results: Vec<Vec<i16>> = std::thread::scope(|s| {
        let handles: Vec<_> = texts
            .iter()
            .map(|t| {
                let tts = std::sync::Arc::clone(&tts);
                s.spawn(move || tts.render(Language::It, t, Pace::Normal).map(|v| (*v).clone()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("no panic").expect("synthesis")).collect()
    });
    // Racing threads may each synthesise a new text, but never more than once per thread, and
    // they all get the same samples.
    assert!((2..=6).contains(&tts.synth_invocations()));
    assert_eq!(results[0], results[2]);
    assert_eq!(results[0], results[4]);
    assert_eq!(results[1], results[3]);
    assert_ne!(results[0], results[1]);
    let files = std::fs::read_dir(tmp.path()).unwrap().count();
    assert_eq!(files, 2, "one cache file per text, no temporary files left");
}
