//! Search behaviour on a small directory built in code: typos, accents, prefixes, stems, every
//! filter, open now across midnight and on a holiday (fixed clock), radius edges, area counts and
//! the IVR's nearest services.

use super::builder::{Builder, FlatService};
use super::documents::service_docs;
use super::index::DirectoryIndex;
use super::opening::parse_readable;
use super::search::{nearest_services, search, SearchQuery};
use chrono::{DateTime, TimeZone, Utc};
use ivr::domain::ServiceArea;
use ivr::geo::{Gazetteer, GeoPoint};
use std::sync::Arc;

const MILANO: GeoPoint = GeoPoint { lat: 45.4642, lng: 9.19 };

/// `km` kilometres due north of `p`.
fn north(p: GeoPoint, km: f64) -> GeoPoint {
    GeoPoint::new(p.lat + (km / GeoPoint::EARTH_RADIUS_KM).to_degrees(), p.lng)
}

fn service(
    name: &str,
    org: &str,
    town: &str,
    point: GeoPoint,
    areas: &[ServiceArea],
    langs: &[&str],
    hours: &str,
) -> FlatService {
    FlatService {
        organization: org.into(),
        name: name.into(),
        description: String::new(),
        areas: areas.to_vec(),
        address: "Via Roma 1".into(),
        town: town.into(),
        point: Some(point),
        phone: "+39 02 1234567".into(),
        languages: langs.iter().map(|s| s.to_string()).collect(),
        hours: parse_readable(hours).unwrap(),
        ..FlatService::default()
    }
}

fn index() -> Arc<DirectoryIndex> {
    use ServiceArea::*;
    let mut n = 0;
    let mut b = Builder::new(|| {
        n += 1;
        format!("id-{n:04}")
    });
    let castello = GeoPoint::new(43.4576, 12.2400);
    let roma = GeoPoint::new(41.8931, 12.4828);
    b.add(&service(
        "Sportello mediazione interculturale",
        "Comune di Milano",
        "Milano",
        MILANO,
        &[Mediazione],
        &["it", "ar"],
        "lun-ven 09:00-13:00",
    ));
    b.add(&service(
        "Mediatore culturale di strada",
        "Associazione Ponti",
        "Milano",
        north(MILANO, 2.0),
        &[Mediazione, Minori],
        &["it", "fr"],
        "ven,sab 22:00-02:00",
    ));
    b.add(&service(
        "Centro per l'impiego",
        "Regione Umbria",
        "Città di Castello",
        castello,
        &[Lavoro],
        &["it"],
        "lun-ven 09:00-13:00",
    ));
    b.add(&service(
        "Consultorio familiare",
        "ASL Roma 1",
        "Roma",
        roma,
        &[Salute],
        &["it", "fr"],
        "lun-ven 08:00-18:00",
    ));
    b.add(&service(
        "Sportello Casa Nord",
        "Comune di Milano",
        "Milano",
        north(MILANO, 9.95),
        &[Casa],
        &["it"],
        "lun-ven 09:00-13:00",
    ));
    b.add(&service(
        "Sportello Casa Lontano",
        "Comune di Milano",
        "Milano",
        north(MILANO, 10.05),
        &[Casa],
        &["it"],
        "lun-ven 09:00-13:00",
    ));
    Arc::new(DirectoryIndex::build(service_docs(&b.data, Gazetteer::embedded())).unwrap())
}

/// A Tuesday morning in Rome.
fn tuesday_10() -> DateTime<Utc> {
    chrono_tz::Europe::Rome.with_ymd_and_hms(2025, 3, 4, 10, 0, 0).unwrap().with_timezone(&Utc)
}

fn rome(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    chrono_tz::Europe::Rome.with_ymd_and_hms(y, m, d, h, min, 0).unwrap().with_timezone(&Utc)
}

fn names(idx: &Arc<DirectoryIndex>, q: &SearchQuery) -> Vec<String> {
    names_at(idx, q, tuesday_10())
}

fn names_at(idx: &Arc<DirectoryIndex>, q: &SearchQuery, now: DateTime<Utc>) -> Vec<String> {
    let mut v: Vec<String> = search(idx, q, now).hits.into_iter().map(|h| h.name).collect();
    v.sort();
    v
}

fn text(t: &str) -> SearchQuery {
    let mut q = SearchQuery::new();
    q.text = t.into();
    q
}

#[test]
fn a_typo_in_a_long_word_still_finds() {
    let idx = index();
    assert_eq!(names(&idx, &text("cosultorio ")), vec!["Consultorio familiare"]);
    assert_eq!(names(&idx, &text("mediazine ")), vec!["Sportello mediazione interculturale"]);
    assert_eq!(
        names(&idx, &text("mediaizone ")),
        vec!["Sportello mediazione interculturale"],
        "a transposition is one typo"
    );
    // Short words must match exactly.
    assert!(names(&idx, &text("casx ")).is_empty());
}

#[test]
fn accents_and_case_do_not_matter() {
    let idx = index();
    assert_eq!(names(&idx, &text("citta")), vec!["Centro per l'impiego"]);
    assert_eq!(names(&idx, &text("CITTÀ DI CASTELLO")), vec!["Centro per l'impiego"]);
}

#[test]
fn the_last_word_matches_as_a_prefix() {
    let idx = index();
    assert_eq!(
        names(&idx, &text("medi")),
        vec!["Mediatore culturale di strada", "Sportello mediazione interculturale"]
    );
    // With a trailing space the word is complete: no prefix.
    assert!(names(&idx, &text("medi ")).is_empty());
    assert_eq!(names(&idx, &text("sportello ca")), vec!["Sportello Casa Lontano", "Sportello Casa Nord"]);
}

#[test]
fn the_word_being_typed_matches_with_one_typo_from_four_letters() {
    let idx = index();
    let both = vec!["Mediatore culturale di strada", "Sportello mediazione interculturale"];
    // "mediz": one letter off "media…".
    assert_eq!(names(&idx, &text("mediz")), both);
    // Four letters with a slip: "cnsu" for "consu…".
    assert_eq!(names(&idx, &text("cnsu")), vec!["Consultorio familiare"]);
    // Under four letters the prefix must be exact; a complete word of four letters too.
    assert!(names(&idx, &text("cns")).is_empty());
    assert!(names(&idx, &text("cnsu ")).is_empty());
}

/// A directory for the ranking: which service comes first for what was typed.
fn ranking_index() -> Arc<DirectoryIndex> {
    use ServiceArea::*;
    let mut n = 0;
    let mut b = Builder::new(|| {
        n += 1;
        format!("id-{n:04}")
    });
    let como = GeoPoint::new(45.8081, 9.0852);
    let comacchio = GeoPoint::new(44.6941, 12.1822);
    let ancona = GeoPoint::new(43.6158, 13.5189);
    let jesi = GeoPoint::new(43.5227, 13.2439);
    let with = |name: &str, org: &str, town: &str, point, description: &str, langs: &[&str]| FlatService {
        description: description.into(),
        ..service(name, org, town, point, &[Lingua], langs, "lun-ven 09:00-13:00")
    };
    // "Como" is within one typo of "coma", and in the organization's name.
    b.add(&with("CPIA Como", "CPIA di Como", "Como", como, "", &["it"]));
    b.add(&with("CPIA Comacchio", "Comune di Comacchio", "Comacchio", comacchio, "", &["it"]));
    // "Ancona" in the organization, not the name.
    b.add(&with("CPIA Jesi", "CPIA di Ancona", "Jesi", jesi, "", &["it"]));
    b.add(&with("CPIA Ancona", "CPIA di Ancona", "Ancona", ancona, "", &["it"]));
    // The words in the name, or only in the description; Arabic spoken or not.
    b.add(&with("Corso di italiano per donne", "Comune di Jesi", "Jesi", jesi, "", &["it"]));
    b.add(&with("Scuola serale", "Comune di Jesi", "Jesi", jesi, "Corso di italiano per donne.", &["it", "ar"]));
    Arc::new(DirectoryIndex::build(service_docs(&b.data, Gazetteer::embedded())).unwrap())
}

fn ranked(idx: &Arc<DirectoryIndex>, q: &SearchQuery) -> Vec<String> {
    search(idx, q, tuesday_10()).hits.into_iter().map(|h| h.name).collect()
}

#[test]
fn exact_outranks_fuzzy_and_names_outrank_descriptions() {
    use super::search::{MatchPlace, TextRank};
    let idx = ranking_index();
    // An exact prefix before a word within one typo (and a stem of the half-typed word).
    let r = search(&idx, &text("cpia coma"), tuesday_10());
    assert_eq!(r.hits[0].name, "CPIA Comacchio");
    assert_eq!(r.hits[0].rank, TextRank { exact_words: 2, place: MatchPlace::Name });
    assert_eq!(r.hits[1].name, "CPIA Como");
    assert_eq!(r.hits[1].rank.exact_words, 1);
    // The service's own name before its organization's, even far away.
    let mut q = text("cpia ance");
    q.near = Some(GeoPoint::new(43.5227, 13.2439));
    let r = search(&idx, &q, tuesday_10());
    assert_eq!(r.hits.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["CPIA Ancona", "CPIA Jesi"]);
    assert_eq!(r.hits[0].rank.place, MatchPlace::Name);
    assert_eq!(r.hits[1].rank.place, MatchPlace::Names);
    // Every word in the name before a match through the description.
    let r = search(&idx, &text("corso italiano donne"), tuesday_10());
    assert_eq!(
        r.hits.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["Corso di italiano per donne", "Scuola serale"]
    );
    assert_eq!(r.hits[1].rank.place, MatchPlace::Description);
}

#[test]
fn equal_matches_are_ranked_by_distance_from_the_place() {
    let idx = ranking_index();
    let mut q = text("cpia");
    q.near = Some(GeoPoint::new(45.8, 9.1));
    assert_eq!(ranked(&idx, &q)[0], "CPIA Como");
    q.near = Some(GeoPoint::new(44.7, 12.2));
    assert_eq!(ranked(&idx, &q)[0], "CPIA Comacchio");
}

#[test]
fn the_languages_spoken_are_searched_in_words_but_italian() {
    let idx = ranking_index();
    assert_eq!(ranked(&idx, &text("arabo")), ["Scuola serale"]);
    // Every service speaks Italian: "italiano" finds what says it, not everything.
    assert_eq!(search(&idx, &text("italiano"), tuesday_10()).total, 2);
}

#[test]
fn when_no_service_has_every_word_those_with_the_most_are_found() {
    let idx = ranking_index();
    // No service says "avvocato": the services with the other words, counted as such.
    let r = search(&idx, &text("avvocato corso donne"), tuesday_10());
    assert_eq!(r.total, 2);
    assert_eq!(r.hits[0].name, "Corso di italiano per donne");
    let lingua = r.area_counts.iter().find(|(a, _)| *a == ServiceArea::Lingua).map(|(_, n)| *n);
    assert_eq!(lingua, Some(2));
    // A word alone that nothing has still finds nothing.
    assert_eq!(search(&idx, &text("avvocato"), tuesday_10()).total, 0);
    // With a filter that leaves full matches in another area only, nothing is relaxed: the
    // area's chip says where they are.
    let mut q = text("corso donne");
    q.areas = vec![ServiceArea::Casa];
    let r = search(&idx, &q, tuesday_10());
    assert_eq!(r.total, 0);
    assert_eq!(r.area_counts.iter().find(|(a, _)| *a == ServiceArea::Lingua).map(|(_, n)| *n), Some(2));
}

#[test]
fn words_are_stemmed() {
    let idx = index();
    // Italian plural → singular.
    assert_eq!(names(&idx, &text("mediatori ")), vec!["Mediatore culturale di strada"]);
    assert_eq!(names(&idx, &text("consultori ")), vec!["Consultorio familiare"]);
}

#[test]
fn filters_by_area_and_language_and_counts_areas() {
    let idx = index();
    let mut q = SearchQuery::new();
    q.areas = vec![ServiceArea::Mediazione];
    let r = search(&idx, &q, tuesday_10());
    assert_eq!(r.total, 2);
    let count = |a| r.area_counts.iter().find(|(x, _)| *x == a).map(|(_, n)| *n).unwrap();
    // Counts ignore the area filter itself, so every chip shows what it would give.
    assert_eq!(count(ServiceArea::Casa), 2);
    assert_eq!(count(ServiceArea::Mediazione), 2);
    assert_eq!(count(ServiceArea::Minori), 1);
    assert_eq!(count(ServiceArea::Lingua), 0);
    q.language = Some("ar".into());
    assert_eq!(names(&idx, &q), vec!["Sportello mediazione interculturale"]);
    q.language = Some("zz".into());
    assert_eq!(search(&idx, &q, tuesday_10()).total, 0);
    let mut q = text("sportello");
    q.language = Some("fr".into());
    assert!(names(&idx, &q).is_empty());
}

/// The "languages spoken" filter takes any ISO 639 code, past the 63 with a bit of their own.
#[test]
fn any_iso_639_code_filters_even_past_sixty_three_languages() {
    let base = generated(60);
    let codes: Vec<String> =
        (0..90u8).map(|i| format!("{}{}", (b'a' + i / 26) as char, (b'a' + i % 26) as char)).collect();
    let mut docs = base.docs.clone();
    for (i, d) in docs.iter_mut().enumerate() {
        // Every service speaks three codes; the last service alone speaks `wo` (Wolof), past the 63rd.
        d.languages = (0..3).map(|k| codes[(i * 3 + k) % 80].clone()).collect();
    }
    let last = docs.len() - 1;
    docs[last].languages = docs[last].languages.iter().cloned().chain(["wo".to_owned()]).collect();
    let idx = Arc::new(DirectoryIndex::build(docs.clone()).unwrap());
    assert!(idx.language_bits.len() == 63 && !idx.language_bits.contains_key("wo"));
    let mut q = SearchQuery::new();
    q.language = Some("wo".into());
    assert_eq!(names(&idx, &q), vec![docs[last].name.clone()]);
    for code in &codes[..80] {
        q.language = Some(code.clone());
        let expected = docs.iter().filter(|d| d.languages.contains(code)).count();
        assert_eq!(search(&idx, &q, tuesday_10()).total, expected, "{code}");
    }
    q.language = Some("zz".into());
    assert_eq!(search(&idx, &q, tuesday_10()).total, 0);
}

#[test]
fn open_now_follows_the_injected_clock() {
    let idx = index();
    let at = |now| {
        let mut q = SearchQuery::new();
        q.open_now = true;
        names_at(&idx, &q, now)
    };
    assert_eq!(at(tuesday_10()).len(), 5, "all but the night service on a Tuesday at 10");
    // Friday 7 March 2025 at 23:30 and Saturday 01:30: only the night service.
    assert_eq!(at(rome(2025, 3, 7, 23, 30)), vec!["Mediatore culturale di strada"]);
    assert_eq!(at(rome(2025, 3, 8, 1, 30)), vec!["Mediatore culturale di strada"]);
    assert!(at(rome(2025, 3, 8, 2, 30)).is_empty());
    // Christmas 2025 is a Thursday: everything is closed.
    assert!(at(rome(2025, 12, 25, 10, 0)).is_empty());
    // Sunday 1:00 after Saturday night, but the Saturday was a holiday (Santo Stefano 2026 is
    // a Saturday): closed.
    assert!(at(rome(2026, 12, 27, 1, 0)).is_empty());
    assert_eq!(at(rome(2026, 12, 20, 1, 0)), vec!["Mediatore culturale di strada"]);
}

#[test]
fn radius_edges_are_exact() {
    let idx = index();
    assert!((MILANO.distance_km(&north(MILANO, 9.95)) - 9.95).abs() < 1e-6);
    let mut q = SearchQuery::new();
    q.areas = vec![ServiceArea::Casa];
    q.near = Some(MILANO);
    q.radius_km = Some(10.0);
    assert_eq!(names(&idx, &q), vec!["Sportello Casa Nord"]);
    q.radius_km = Some(10.1);
    assert_eq!(names(&idx, &q), vec!["Sportello Casa Lontano", "Sportello Casa Nord"]);
    // With text the same edges hold.
    q.text = "sportello".into();
    q.radius_km = Some(10.0);
    assert_eq!(names(&idx, &q), vec!["Sportello Casa Nord"]);
}

#[test]
fn distance_ranks_and_is_reported() {
    let idx = index();
    let mut q = SearchQuery::new();
    q.near = Some(MILANO);
    let r = search(&idx, &q, tuesday_10());
    assert_eq!(r.total, 6);
    let d: Vec<f64> = r.hits.iter().map(|h| h.distance_km.unwrap()).collect();
    assert!(d.windows(2).all(|w| w[0] <= w[1]), "{d:?}");
    assert_eq!(r.hits[0].name, "Sportello mediazione interculturale");
    // Text + position: the nearer of two equal matches first.
    let mut q = text("sportello casa");
    q.near = Some(north(MILANO, 20.0));
    let r = search(&idx, &q, tuesday_10());
    assert_eq!(r.hits[0].name, "Sportello Casa Lontano");
}

#[test]
fn pages_split_the_results() {
    let idx = index();
    let mut q = SearchQuery::new();
    q.size = 4;
    let first = search(&idx, &q, tuesday_10());
    q.page = 2;
    let second = search(&idx, &q, tuesday_10());
    q.page = 3;
    let third = search(&idx, &q, tuesday_10());
    assert_eq!((first.hits.len(), second.hits.len(), third.hits.len()), (4, 2, 0));
    assert_eq!(first.total, 6);
    let mut all: Vec<_> = first.hits.iter().chain(&second.hits).map(|h| h.id.clone()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 6);
}

#[test]
fn nearest_services_for_the_ivr() {
    let idx = index();
    let now = tuesday_10();
    let near = nearest_services(&idx, ServiceArea::Casa, MILANO, 0, 5, now);
    assert_eq!(
        near.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        vec!["Sportello Casa Nord", "Sportello Casa Lontano"]
    );
    assert_eq!(near[0].hours_today, "09:00-13:00");
    assert!((near[0].distance_km - 9.95).abs() < 0.01);
    let next = nearest_services(&idx, ServiceArea::Casa, MILANO, 1, 5, now);
    assert_eq!(next.len(), 1);
    assert!(nearest_services(&idx, ServiceArea::Lingua, MILANO, 0, 5, now).is_empty());
}

/// A generated directory, big enough for many segments' worth of layout runs and dense cities.
fn generated(n: usize) -> Arc<DirectoryIndex> {
    let data = super::generate::generate(n, 7, Gazetteer::embedded());
    Arc::new(DirectoryIndex::build(service_docs(&data, Gazetteer::embedded())).unwrap())
}

/// tantivy's own evaluation of a text, as a boolean query of the same scoring alternatives
/// (exact word, word in names, stems, one typo, completions of the word being typed, exact and
/// within one typo): every match's service ordinal and score. (The alternatives that only tell
/// where a word matched score nothing and match a subset of these.)
fn tantivy_matches(idx: &DirectoryIndex, text: &str) -> std::collections::HashMap<u32, f32> {
    use super::index::{FIRST_STEMMED, NAMES, RAW};
    use tantivy::collector::TopDocs;
    use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
    use tantivy::schema::IndexRecordOption;
    use tantivy::Term;
    let f = idx.fields.text;
    let words = idx.tokens(RAW, text);
    let prefix_last = !text.ends_with(char::is_whitespace);
    let all_short = words.iter().all(|w| w.chars().count() < 3);
    let stems: Vec<Vec<String>> = (0..4).map(|s| idx.tokens(FIRST_STEMMED + s, text)).collect();
    let term = |field, t: &str| -> Box<dyn Query> {
        Box::new(TermQuery::new(Term::from_field_text(field, t), IndexRecordOption::WithFreqs))
    };
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let mut alts: Vec<(Occur, Box<dyn Query>)> = vec![
            (Occur::Should, term(f[RAW], word)),
            (Occur::Should, Box::new(BoostQuery::new(term(f[NAMES], word), 2.0))),
        ];
        let mut seen = Vec::new();
        for (s, st) in stems.iter().enumerate() {
            let field = f[FIRST_STEMMED + s];
            if !seen.contains(&(field, &st[i])) {
                seen.push((field, &st[i]));
                alts.push((Occur::Should, Box::new(BoostQuery::new(term(field, &st[i]), 0.5))));
            }
        }
        let len = word.chars().count();
        if len >= 5 {
            let fuzzy = FuzzyTermQuery::new(Term::from_field_text(f[RAW], word), 1, true);
            alts.push((Occur::Should, Box::new(BoostQuery::new(Box::new(fuzzy), 0.5))));
        }
        let is_prefix = prefix_last && i + 1 == words.len();
        if is_prefix {
            let prefix = FuzzyTermQuery::new_prefix(Term::from_field_text(f[RAW], word), 0, true);
            alts.push((Occur::Should, Box::new(BoostQuery::new(Box::new(prefix), 0.7))));
            if len >= 4 {
                let fuzzy = FuzzyTermQuery::new_prefix(Term::from_field_text(f[RAW], word), 1, true);
                alts.push((Occur::Should, Box::new(BoostQuery::new(Box::new(fuzzy), 0.3))));
            }
        }
        let required = all_short || is_prefix || len >= 3;
        clauses.push((if required { Occur::Must } else { Occur::Should }, Box::new(BooleanQuery::new(alts))));
    }
    let searcher = idx.index.reader().unwrap().searcher();
    let found = searcher.search(&BooleanQuery::new(clauses), &TopDocs::with_limit(idx.len().max(1))).unwrap();
    found
        .into_iter()
        .map(|(score, addr)| (idx.segments[addr.segment_ord as usize].ords[addr.doc_id as usize], score))
        .collect()
}

/// Whether `a` may come before `b` in one answer: the ranking's keys, in order.
fn ranked_before(a: &super::search::SearchHit, b: &super::search::SearchHit, by_distance: bool) -> bool {
    use std::cmp::Ordering::*;
    let distance = |h: &super::search::SearchHit| h.distance_km.unwrap_or(f64::INFINITY);
    let order = b
        .rank
        .cmp(&a.rank)
        .then_with(|| if by_distance { distance(a).total_cmp(&distance(b)) } else { Equal })
        .then_with(|| b.score.total_cmp(&a.score));
    // Reported distances are rounded to metres: equal ones may be either way.
    order != Greater || (by_distance && a.rank == b.rank && (distance(a) - distance(b)).abs() < 0.002)
}

#[test]
fn the_evaluator_agrees_with_tantivy_on_a_generated_directory() {
    let idx = generated(3000);
    let roma = GeoPoint::new(41.8931, 12.4828);
    let texts = [
        "centro impiego",
        "consultorio familliare",
        "medi",
        "mediazione ",
        "sportello casa",
        "corsi di italiano",
        "job search",
        "cours",
        "lavoro",
        "citta",
        "di",
        "xyzzy",
        "accoglienza ",
        "salute donne",
        "cpia coma",
        "spazio famiglie e minori pont",
        "mediatrice arabo",
    ];
    let mut nearby_matches = 0;
    for t in texts {
        let expected = tantivy_matches(&idx, t);
        for (near, radius) in [(None, None), (Some(MILANO), Some(25.0)), (Some(roma), Some(4.0)), (Some(roma), None)] {
            let mut q = text(t);
            q.near = near;
            q.radius_km = radius;
            q.size = super::search::MAX_PAGE_SIZE;
            let r = search(&idx, &q, tuesday_10());
            let within: std::collections::HashSet<u32> = expected
                .keys()
                .copied()
                .filter(|o| match (near, radius) {
                    (Some(c), Some(r)) => idx.docs[*o as usize].point.is_some_and(|p| c.distance_km(&p) <= r),
                    _ => true,
                })
                .collect();
            assert_eq!(r.total, within.len(), "{t:?} near {near:?} within {radius:?}");
            if radius.is_some() {
                nearby_matches += r.total;
            }
            // Every page, in order: the same services as tantivy's, its scores, ranked.
            let mut all = Vec::new();
            for page in 1..=r.total_pages {
                q.page = page;
                all.extend(search(&idx, &q, tuesday_10()).hits);
            }
            assert_eq!(all.len(), r.total, "{t:?}");
            for h in &all {
                let ord = idx.by_id[idx.by_id.partition_point(|&i| idx.docs[i as usize].id < h.id)];
                assert!(within.contains(&ord), "{t:?}: {} is not a match", h.name);
                let score = expected[&ord];
                assert!(
                    (score - h.score).abs() <= 1e-4 * score.abs().max(1.0),
                    "{t:?}: {} scored {} not {score}",
                    h.name,
                    h.score
                );
            }
            for w in all.windows(2) {
                assert!(
                    ranked_before(&w[0], &w[1], near.is_some()),
                    "{t:?} near {near:?}: {} ({:?}, {:?} km, {}) before {} ({:?}, {:?} km, {})",
                    w[0].name,
                    w[0].rank,
                    w[0].distance_km,
                    w[0].score,
                    w[1].name,
                    w[1].rank,
                    w[1].distance_km,
                    w[1].score
                );
            }
        }
    }
    assert!(nearby_matches > 100, "the radius cases found too little to compare: {nearby_matches}");
}

#[test]
fn a_radius_finds_exactly_the_services_within_it() {
    let idx = generated(3000);
    let centers = [MILANO, GeoPoint::new(41.8931, 12.4828), GeoPoint::new(45.05, 7.65), GeoPoint::new(37.5, 15.09)];
    for c in centers {
        for r in [0.5, 3.0, 12.5, 40.0, 300.0, 5000.0] {
            let mut q = SearchQuery::new();
            q.near = Some(c);
            q.radius_km = Some(r);
            let expected = idx.docs.iter().filter(|d| d.point.is_some_and(|p| c.distance_km(&p) <= r)).count();
            assert_eq!(search(&idx, &q, tuesday_10()).total, expected, "within {r} km of {c:?}");
        }
    }
}

/// The demo directory (`helpline directory generate`'s 8,000 services) and the HSDS example,
/// indexed once for every test that reads it; and the example's service ids.
fn demo() -> &'static (Arc<DirectoryIndex>, Vec<String>) {
    static DEMO: std::sync::OnceLock<(Arc<DirectoryIndex>, Vec<String>)> = std::sync::OnceLock::new();
    DEMO.get_or_init(|| {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/directory/good");
        let (docs, example) = super::eval::eval_docs(&fixture).unwrap();
        (Arc::new(DirectoryIndex::build(docs).unwrap()), example)
    })
}

fn first_names(idx: &Arc<DirectoryIndex>, q: &SearchQuery, n: usize) -> Vec<String> {
    search(idx, q, tuesday_10()).hits.into_iter().take(n).map(|h| format!("{} ({})", h.name, h.town)).collect()
}

#[test]
fn half_typed_names_put_the_intended_service_first() {
    let (idx, _) = demo();
    // The word being typed is a prefix, and an exact prefix outranks a fuzzy match ("coma" is
    // not a typo of "Como").
    let top = first_names(idx, &text("cpia coma"), 5);
    assert_eq!(top[0], "CPIA Comacchio (Comacchio)", "{top:?}");
    // A slip in the first four letters of the word being typed: one typo in a prefix; the
    // service named so outranks those whose organization is (CPIA di Ancona).
    let top = first_names(idx, &text("cpia ance"), 5);
    assert_eq!(top[0], "CPIA Ancona (Ancona)", "{top:?}");
    // "pont" begins three towns with a "Spazio famiglie e minori": those three first, the names
    // holding every word before the ones whose organization is "Ponti"…
    let top = first_names(idx, &text("spazio famiglie e minori pont"), 3);
    let mut sorted = top.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "Spazio famiglie e minori Ponte (Ponte)",
            "Spazio famiglie e minori Pontecagnano Faiano (Pontecagnano Faiano)",
            "Spazio famiglie e minori Pontecurone (Pontecurone)"
        ],
        "{top:?}"
    );
    // … and with the caller's place (the console fills it in from the call), the nearest.
    let mut q = text("spazio famiglie e minori pont");
    q.near = Some(Gazetteer::embedded().comune_by_name("Tortona")[0].point);
    let top = first_names(idx, &q, 5);
    assert_eq!(top[0], "Spazio famiglie e minori Pontecurone (Pontecurone)", "{top:?}");
}

#[test]
fn the_evaluation_keeps_its_floor() {
    use super::eval::{queries, run, scores, Kind, SEED};
    let (idx, example) = demo();
    let qs = queries(&idx.docs, example, 100, SEED);
    let ranks = run(idx, &qs, tuesday_10());
    let table = scores(&qs, &ranks);
    let mut report = String::new();
    for (kind, s) in &table {
        report += &format!(
            "{:<40} {:>4} queries  recall@1 {:.3}  recall@5 {:.3}  MRR {:.3}\n",
            kind.label(),
            s.queries,
            s.recall_1,
            s.recall_5,
            s.mrr
        );
    }
    for (q, r) in qs.iter().zip(&ranks) {
        if r.is_none_or(|r| r > 5) {
            let mut sq = text(&q.text);
            sq.near = q.near;
            let top = first_names(idx, &sq, 5);
            let wanted: Vec<&str> =
                q.relevant.iter().filter_map(|id| idx.get(id)).map(|d| d.name.as_str()).take(3).collect();
            report += &format!("  missed {:?} {:?} near {:?}: want {wanted:?}, got {top:?}\n", q.kind, q.text, q.near);
        }
    }
    eprintln!("{report}");
    assert_eq!(table.len(), Kind::ALL.len(), "every kind has queries\n{report}");
    for (kind, s) in &table {
        assert!(s.queries >= 50, "{kind:?}: only {} queries", s.queries);
        assert!(s.recall_5 >= 0.99, "{kind:?}: recall@5 {:.3} under the floor 0.99\n{report}", s.recall_5);
    }
    // The example's services are among the targets.
    let from_example = qs.iter().filter(|q| q.relevant.iter().any(|id| example.contains(id))).count();
    assert!(from_example >= example.len(), "{from_example}");
}
