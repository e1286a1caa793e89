//! The search's own evaluation: labelled queries as operators type them, built deterministically
//! from a directory (the demo's and the HSDS example's services), and how well a search answers
//! them — recall@1, recall@5 and the mean reciprocal rank, per kind of query.
//!
//! Each query is made from one service, the *target*, and labelled with every service that is as
//! right an answer as the target given what was typed: for a (misspelt) name, the services with
//! that same name; for a half-typed name, the services whose name begins with the typed text; for a
//! need ("corso italiano donne") typed with the caller's place, the services within 2 km of the
//! place that meet it. A query is answered when one of them is in the first 20 results; its
//! rank is the first one's. The labels never come from a search engine: names are compared as
//! words, needs are substrings of the services' text and their languages.
//!
//! `helpline directory bench` prints the table next to PostgreSQL's answers to the same queries;
//! the unit tests assert a floor on it (`tests::the_evaluation_keeps_its_floor`).

use super::dataset::RowError;
use super::documents::{geocode, ServiceDoc};
use super::index::DirectoryIndex;
use super::search::{search, SearchQuery};
use chrono::{DateTime, Utc};
use ivr::geo::{Gazetteer, GeoPoint};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The seed of the query set the bench and the tests use.
pub const SEED: u64 = 26;
/// How deep a query's answer is looked at (one page of the console).
pub const DEPTH: usize = 20;
/// Services within this distance of a need's place meet it as well as the target.
const NEED_RADIUS_KM: f64 = 2.0;

/// What kind of typing a query stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A service's name with one typo (a letter dropped, doubled, swapped with the next, or a
    /// neighbouring key) in a word of five letters or more, accents dropped.
    OneTypo,
    /// The same with two typos, in two words.
    TwoTypos,
    /// A name with accents, typed without them.
    NoAccents,
    /// A name whose last word (longer than four letters) is cut to four: still being typed.
    HalfTyped,
    /// One typo in an earlier word and the last word cut to four letters.
    TypoHalfTyped,
    /// The last word cut to four to seven letters with one typo in it (`cpia ance`).
    SlipInTypedWord,
    /// A need in Italian words, typed with the caller's place (`corso italiano donne`).
    NeedItalian,
    /// A need in the callers' languages, alone or mixed with Italian service words (`cours
    /// italien`, `consultorio femmes`), with the caller's place.
    NeedMixed,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::OneTypo,
        Kind::TwoTypos,
        Kind::NoAccents,
        Kind::HalfTyped,
        Kind::TypoHalfTyped,
        Kind::SlipInTypedWord,
        Kind::NeedItalian,
        Kind::NeedMixed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::OneTypo => "name, one typo",
            Kind::TwoTypos => "name, two typos",
            Kind::NoAccents => "name without accents",
            Kind::HalfTyped => "name, last word half-typed",
            Kind::TypoHalfTyped => "name, one typo + last word half-typed",
            Kind::SlipInTypedWord => "name, a slip in the half-typed word",
            Kind::NeedItalian => "need in Italian + place",
            Kind::NeedMixed => "need in callers' languages + place",
        }
    }
}

/// One query and the services that answer it.
#[derive(Debug, Clone)]
pub struct LabelledQuery {
    pub kind: Kind,
    /// As typed: lower case, no accents, no trailing space.
    pub text: String,
    /// The caller's place, when the query has one.
    pub near: Option<GeoPoint>,
    /// Ids of the services that answer it (the target among them).
    pub relevant: HashSet<String>,
}

/// A need: the words typed, and what a service's text must hold (folded substrings, all of them)
/// and which language it must speak to meet it.
struct Need {
    words: &'static str,
    holds: &'static [&'static str],
    speaks: Option<&'static str>,
}

const fn need(words: &'static str, holds: &'static [&'static str], speaks: Option<&'static str>) -> Need {
    Need { words, holds, speaks }
}

/// Needs as an Italian operator types them.
const NEEDS_ITALIAN: &[Need] = &[
    need("corso italiano donne", &["italiano", "corsi", "donne"], None),
    need("mediatrice arabo", &["mediatric"], Some("ar")),
    need("avvocato permesso soggiorno", &["permesso di soggiorno"], None),
    need("tessera stp", &["tessera stp"], None),
    need("case popolari", &["case popolari"], None),
    need("doposcuola ragazzi", &["doposcuola", "ragazzi"], None),
    need("minori non accompagnati", &["minori stranieri non accompagnati"], None),
    need("riconoscimento titolo di studio", &["riconoscimento dei titoli di studio"], None),
    need("interprete ospedale", &["interpretariato", "ospedali"], None),
    need("gravidanza consultorio", &["gravidanza", "consultorio"], None),
    need("contratto affitto", &["affitti", "contratti di locazione"], None),
    need("curriculum lavoro", &["curriculum", "lavoro"], None),
    need("iscrizione scuola", &["iscrizione a scuola"], None),
    need("mediatore cinese", &["mediator"], Some("zh")),
];

/// Needs in the callers' languages, alone or mixed with the Italian words of services.
const NEEDS_MIXED: &[Need] = &[
    need("cours italien", &["cours d'italien"], None),
    need("italian courses", &["italian courses"], None),
    need("job search", &["job search"], None),
    need("buscar empleo", &["buscar empleo"], None),
    need("aide logement", &["aide pour trouver un logement"], None),
    need("housing rent", &["housing and rent"], None),
    need("sante femmes", &["sante des femmes"], None),
    need("health care migrants", &["health care for migrants"], None),
    need("after school", &["after-school"], None),
    need("apoyo familias", &["apoyo a familias"], None),
    need("mediators interpreters", &["mediators and interpreters"], None),
    need("mediation arabo", &["mediation interculturelle"], Some("ar")),
    need("consultorio femmes", &["consultorio per donne", "femmes"], None),
    need("centro impiego job", &["centro per l'impiego", "job"], None),
    need("sportello casa housing", &["sportello casa", "housing"], None),
    need("scuola italiano cours", &["scuola di italiano", "cours d'italien"], None),
];

/// Lower case without accents, as the index folds (and as operators type).
pub fn fold(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ä' => 'a',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ò' | 'ó' | 'ô' | 'ö' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            other => other,
        })
        .collect()
}

/// The words of a name as an operator types them: folded, split at anything but letters and
/// digits (`Centro per l'impiego – Roma` → `centro per l impiego roma`).
fn words(name: &str) -> Vec<String> {
    fold(name).split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

/// The keys next to each letter on an Italian (QWERTY) keyboard.
fn neighbours(c: char) -> &'static str {
    match c {
        'q' => "wa",
        'w' => "qes",
        'e' => "wrd",
        'r' => "etf",
        't' => "ryg",
        'y' => "tuh",
        'u' => "yij",
        'i' => "uok",
        'o' => "ipl",
        'p' => "ol",
        'a' => "qsz",
        's' => "adwx",
        'd' => "sfec",
        'f' => "dgrv",
        'g' => "fhtb",
        'h' => "gjyn",
        'j' => "hkum",
        'k' => "jli",
        'l' => "ko",
        'z' => "xa",
        'x' => "zcs",
        'c' => "xvd",
        'v' => "cbf",
        'b' => "vng",
        'n' => "bmh",
        'm' => "nj",
        _ => "",
    }
}

/// One typo in `word` (ASCII letters): a letter dropped (only when at least `min_len` letters
/// remain), doubled, swapped with the next, or replaced by a neighbouring key.
fn typo(word: &str, min_len: usize, rng: &mut StdRng) -> Option<String> {
    let w: Vec<char> = word.chars().collect();
    for _ in 0..20 {
        let i = rng.gen_range(0..w.len());
        let mut t = w.clone();
        match rng.gen_range(0..4) {
            0 if w.len() > min_len => {
                t.remove(i);
            }
            1 => t.insert(i, w[i]),
            2 if i + 1 < w.len() && w[i] != w[i + 1] => t.swap(i, i + 1),
            3 => {
                let keys: Vec<char> = neighbours(w[i]).chars().collect();
                t[i] = *keys.choose(rng)?;
            }
            _ => continue,
        }
        return Some(t.into_iter().collect());
    }
    None
}

/// A word a typo may go in: five letters or more, letters only (shorter words are matched
/// exactly by design: `casa` and `cosa` are both words).
fn typo_prone(w: &str) -> bool {
    w.len() >= 5 && w.chars().all(|c| c.is_ascii_lowercase())
}

/// The demo directory's services and the HSDS example's (their ids are apart): what the bench
/// and the tests evaluate on. `fixture` is the HSDS example datapackage folder.
/// Returns the services and the example's ids.
pub fn eval_docs(fixture: &std::path::Path) -> Result<(Vec<ServiceDoc>, Vec<String>), Vec<RowError>> {
    let g = Gazetteer::embedded();
    let demo = super::generate::generate(super::generate::DEFAULT_COUNT, super::generate::DEFAULT_SEED, g);
    let (_, example) = super::import::read_path(fixture)?;
    let mut docs = super::documents::service_docs(&demo, g);
    let example = super::documents::service_docs(&example, g);
    let example_ids = example.iter().map(|d| d.id.clone()).collect();
    docs.extend(example);
    Ok((docs, example_ids))
}

/// `per_kind` queries of each kind (fewer when the directory has too few fitting services), made
/// from `first` (ids, e.g. the HSDS example's services) and then from services drawn with
/// `seed`.
pub fn queries(docs: &[ServiceDoc], first: &[String], per_kind: usize, seed: u64) -> Vec<LabelledQuery> {
    let g = Gazetteer::embedded();
    let names: Vec<Vec<String>> = docs.iter().map(|d| words(&d.name)).collect();
    let texts: Vec<String> = docs.iter().map(|d| fold(&d.search_text())).collect();
    // Names by all their words but the last: the services of a name.
    let mut by_head: HashMap<&[String], Vec<usize>> = HashMap::new();
    for (i, n) in names.iter().enumerate() {
        if let Some((_, head)) = n.split_last() {
            by_head.entry(head).or_default().push(i);
        }
    }
    let id = |i: usize| docs[i].id.clone();
    let same_name = |n: &[String]| -> HashSet<String> {
        n.split_last()
            .and_then(|(_, head)| by_head.get(head))
            .into_iter()
            .flatten()
            .filter(|&&j| names[j] == n)
            .map(|&j| id(j))
            .collect()
    };
    // The services whose name begins with `head` then a word beginning with `typed`.
    let completing = |head: &[String], typed: &str| -> HashSet<String> {
        (0..docs.len())
            .filter(|&j| {
                let n = &names[j];
                n.len() > head.len() && n.starts_with(head) && n[head.len()].starts_with(typed)
            })
            .map(id)
            .collect()
    };
    let meets = |j: usize, need: &Need| {
        need.holds.iter().all(|h| texts[j].contains(h))
            && need.speaks.is_none_or(|l| docs[j].languages.iter().any(|c| c == l))
    };

    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..docs.len()).collect();
    order.shuffle(&mut rng);
    let firsts: Vec<usize> = first.iter().filter_map(|f| docs.iter().position(|d| &d.id == f)).collect();
    order.retain(|i| !firsts.contains(i));
    let order: Vec<usize> = firsts.into_iter().chain(order).collect();

    let mut out = Vec::new();
    for kind in Kind::ALL {
        let mut made = 0;
        'targets: for &t in &order {
            if made == per_kind {
                break;
            }
            let n = &names[t];
            let Some((last, head)) = n.split_last() else { continue };
            let query = match kind {
                Kind::OneTypo | Kind::TwoTypos => {
                    let mut prone: Vec<usize> = (0..n.len()).filter(|&i| typo_prone(&n[i])).collect();
                    let k = if kind == Kind::OneTypo { 1 } else { 2 };
                    if prone.len() < k {
                        continue;
                    }
                    prone.shuffle(&mut rng);
                    let mut typed = n.clone();
                    for &i in &prone[..k] {
                        match typo(&n[i], 5, &mut rng) {
                            Some(w) => typed[i] = w,
                            None => continue 'targets,
                        }
                    }
                    LabelledQuery { kind, text: typed.join(" "), near: None, relevant: same_name(n) }
                }
                Kind::NoAccents => {
                    if fold(&docs[t].name) == docs[t].name.to_lowercase() {
                        continue;
                    }
                    LabelledQuery { kind, text: n.join(" "), near: None, relevant: same_name(n) }
                }
                Kind::HalfTyped | Kind::TypoHalfTyped => {
                    if last.chars().count() <= 4 || !last.chars().all(|c| c.is_alphanumeric()) {
                        continue;
                    }
                    let cut: String = last.chars().take(4).collect();
                    let mut typed: Vec<String> = head.to_vec();
                    if kind == Kind::TypoHalfTyped {
                        let prone: Vec<usize> = (0..head.len()).filter(|&i| typo_prone(&head[i])).collect();
                        let Some(&i) = prone.choose(&mut rng) else { continue };
                        let Some(w) = typo(&head[i], 5, &mut rng) else { continue };
                        typed[i] = w;
                    }
                    typed.push(cut.clone());
                    LabelledQuery { kind, text: typed.join(" "), near: None, relevant: completing(head, &cut) }
                }
                Kind::SlipInTypedWord => {
                    let len = last.chars().count();
                    if len < 6 || !typo_prone(last) {
                        continue;
                    }
                    let cut: String = last.chars().take(rng.gen_range(4..=(len - 1).min(7))).collect();
                    let Some(slip) = typo(&cut, 4, &mut rng) else { continue };
                    let mut typed = head.to_vec();
                    typed.push(slip);
                    LabelledQuery { kind, text: typed.join(" "), near: None, relevant: completing(head, &cut) }
                }
                Kind::NeedItalian | Kind::NeedMixed => {
                    let needs = if kind == Kind::NeedItalian { NEEDS_ITALIAN } else { NEEDS_MIXED };
                    let fitting: Vec<&Need> = needs.iter().filter(|need| meets(t, need)).collect();
                    let Some(need) = fitting.choose(&mut rng) else { continue };
                    let d = &docs[t];
                    let Some(place) = geocode(g, &d.postal_code, &d.town) else { continue };
                    let Some(at) = d.point else { continue };
                    let radius = NEED_RADIUS_KM.max(place.distance_km(&at) + 0.5);
                    let relevant = (0..docs.len())
                        .filter(|&j| docs[j].point.is_some_and(|p| place.distance_km(&p) <= radius) && meets(j, need))
                        .map(id)
                        .collect();
                    LabelledQuery { kind, text: need.words.to_owned(), near: Some(place), relevant }
                }
            };
            debug_assert!(query.relevant.contains(&docs[t].id), "{query:?}");
            out.push(query);
            made += 1;
        }
    }
    out
}

/// Where the first relevant service is in an answer (1-based), `None` when not in it.
pub fn first_relevant<'a>(answer: impl IntoIterator<Item = &'a str>, q: &LabelledQuery) -> Option<usize> {
    answer.into_iter().take(DEPTH).position(|id| q.relevant.contains(id)).map(|p| p + 1)
}

/// Our search's answer to each query: where its first relevant service is.
pub fn run(index: &Arc<DirectoryIndex>, queries: &[LabelledQuery], now: DateTime<Utc>) -> Vec<Option<usize>> {
    queries
        .iter()
        .map(|q| {
            let mut sq = SearchQuery::new();
            sq.text = q.text.clone();
            sq.near = q.near;
            sq.size = DEPTH;
            let r = search(index, &sq, now);
            first_relevant(r.hits.iter().map(|h| h.id.as_str()), q)
        })
        .collect()
}

/// recall@1, recall@5 and MRR of one kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub queries: usize,
    pub recall_1: f64,
    pub recall_5: f64,
    pub mrr: f64,
}

/// The scores per kind of `ranks` (one per query, in the queries' order).
pub fn scores(queries: &[LabelledQuery], ranks: &[Option<usize>]) -> Vec<(Kind, Scores)> {
    Kind::ALL
        .iter()
        .filter_map(|&kind| {
            let of: Vec<Option<usize>> =
                queries.iter().zip(ranks).filter(|(q, _)| q.kind == kind).map(|(_, r)| *r).collect();
            if of.is_empty() {
                return None;
            }
            let n = of.len() as f64;
            let within = |k: usize| of.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n;
            let mrr = of.iter().map(|r| r.map_or(0.0, |r| 1.0 / r as f64)).sum::<f64>() / n;
            Some((kind, Scores { queries: of.len(), recall_1: within(1), recall_5: within(5), mrr }))
        })
        .collect()
}
