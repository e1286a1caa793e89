//! Searching the index: free text (folded, stemmed in four languages, one typo allowed in words of
//! five letters or more, the word being typed matched as a prefix, with one typo from four
//! letters), filters (area, language spoken, open now, within R km), ranking (exact before fuzzy,
//! the service's name before its description, then distance), counts per area for the filter
//! chips; and the IVR's "nearest services in this area".
//!
//! Everything here is synchronous and takes the clock as a parameter: a websocket handler or the
//! IVR calls it directly on a shared `Arc<DirectoryIndex>`.
//!
//! How a search runs: the text becomes one clause per word, each a set of alternatives (the
//! folded word, the word in names, its four stems, its one-typo and prefix expansions over the
//! term dictionary), each alternative saying what its match means: exact or fuzzy, in the
//! service's names, in its own name; a radius becomes runs of document ids
//! ([`SegmentData::ranges_within`]). The posting lists are walked over those runs only, a window
//! of document ids at a time, adding BM25 scores (tantivy's formula and statistics) and counting,
//! per document, the required words it has and how each matched; a document with all of them
//! goes through the other filters (arrays by document id), is counted for its areas, and joins
//! the matches. When no service has every word, the walk runs again and keeps those with the
//! most. The matches are ranked ([`TextRank`], then distance, then BM25) and only the requested
//! page is turned into answers.

use super::documents::area_bit;
use super::index::{arc_km, chord_km, to_xyz, DirectoryIndex, SegmentData, FIRST_STEMMED, NAMES, RAW};
use super::opening::LocalNow;
use chrono::{DateTime, Utc};
use ivr::domain::ServiceArea;
use ivr::geo::GeoPoint;
use levenshtein_automata::{Distance, LevenshteinAutomatonBuilder, DFA, SINK_STATE};
use serde::Serialize;
use std::sync::{Arc, OnceLock};
use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::{Postings, SegmentPostings, TermInfo};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, DocSet};

/// The largest page size the search returns.
pub const MAX_PAGE_SIZE: usize = 100;

/// What to look for, valid: built from a page's [`super::SearchParams`] (the HTTP query string
/// or the console socket's `search`) or by Rust callers. The time the search is judged at ("open
/// now", today's hours) is not part of it: [`search`] takes it from the caller's injected clock.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub text: String,
    /// Any of these areas (none: all areas).
    pub areas: Vec<ServiceArea>,
    /// A language spoken (`ar`, `fr`…), lower-case.
    pub language: Option<String>,
    pub near: Option<GeoPoint>,
    /// Only services within this distance of `near`.
    pub radius_km: Option<f64>,
    pub open_now: bool,
    /// 1-based.
    pub page: usize,
    pub size: usize,
}

impl SearchQuery {
    /// Everything, first page of 20.
    pub fn new() -> SearchQuery {
        SearchQuery {
            text: String::new(),
            areas: Vec::new(),
            language: None,
            near: None,
            radius_km: None,
            open_now: false,
            page: 1,
            size: 20,
        }
    }
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery::new()
    }
}

/// One service found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SearchHit {
    pub id: String,
    pub name: String,
    pub organization: String,
    /// The street address, empty when unknown.
    pub address: String,
    pub town: String,
    pub postal_code: String,
    pub areas: Vec<ServiceArea>,
    pub languages: Vec<String>,
    pub phone: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// Kilometres from the query's point, when it has one.
    pub distance_km: Option<f64>,
    pub open_now: bool,
    /// Today's opening hours, `09:00-13:00, 14:30-17:00`; empty when closed today.
    pub hours_today: String,
    /// How well the text matched (the first key of the ranking).
    pub rank: TextRank,
    /// BM25 relevance (the last key of the ranking).
    pub score: f32,
    /// An operator flagged it and no editor has resolved the flag yet (set by
    /// `Directory::search` from the open flags, not by the index).
    pub reported: bool,
}

/// How well a service matched the text, compared field by field, greater first: the words it
/// matched exactly (the word itself, its stem when the word is complete, or a completion of
/// the word being typed — not a word within one typo), then where they all are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TextRank {
    pub exact_words: u8,
    pub place: MatchPlace,
}

/// Where every matched word of the query was found, best last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchPlace {
    /// Some word only in the description (or the languages).
    #[default]
    Description,
    /// Every word in the service's name, its organization's or its town's.
    Names,
    /// Every word in the service's own name.
    Name,
}

impl TextRank {
    /// The rank of a document whose required words matched `exact` times exactly, found at
    /// `place`.
    fn new(exact: u8, place: MatchPlace) -> TextRank {
        TextRank { exact_words: exact, place }
    }
}

/// One page of results: what the HTTP search (`directory::http`) and the console socket's
/// `search_results` are both built from.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SearchResponse {
    /// Services matching every filter.
    pub total: usize,
    /// 1-based.
    pub page: usize,
    pub size: usize,
    /// `total / size`, rounded up (0 when nothing matched).
    pub total_pages: usize,
    pub hits: Vec<SearchHit>,
    /// For each area, how many services match every other filter (the filter chips).
    pub area_counts: Vec<(ServiceArea, usize)>,
}

/// What the IVR reads back: the nearest services of an area.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServiceSummary {
    pub id: String,
    pub name: String,
    /// The street address, empty when unknown.
    pub address: String,
    pub town: String,
    pub phone: String,
    /// Today's opening hours, `09:00-13:00`; empty when closed today.
    pub hours_today: String,
    pub distance_km: f64,
}

/// Past this distance from the radius's edge (km), the chord of `f32` positions decides; within
/// it, the exact haversine distance of the stored position does.
const EDGE_KM: f64 = 0.005;

/// A radius, as chord lengths around its edge.
struct Radius {
    km: f64,
    inner: f64,
    outer: f64,
}

struct Geo {
    center: GeoPoint,
    xyz: [f64; 3],
    radius: Option<Radius>,
}

/// The filters, precomputed once per query.
struct Filter {
    area_mask: u8,
    language_mask: Option<u64>,
    /// A code without a bit of its own: checked against the service's list.
    language_exact: Option<String>,
    geo: Option<Geo>,
    open: Option<LocalNow>,
    now: DateTime<Utc>,
}

impl Filter {
    fn new(index: &DirectoryIndex, q: &SearchQuery, now: DateTime<Utc>) -> Filter {
        Filter {
            area_mask: q.areas.iter().fold(0, |m, a| m | area_bit(*a)),
            // A language past the first 63 codes shares one bit and is checked exactly.
            language_mask: q
                .language
                .as_ref()
                .map(|l| index.language_bits.get(l).copied().unwrap_or(super::index::OTHER_LANGUAGES)),
            language_exact: q.language.clone().filter(|l| !index.language_bits.contains_key(l)),
            geo: q.near.map(|center| Geo {
                center,
                xyz: to_xyz(&center),
                radius: q.radius_km.map(|km| {
                    let chord = chord_km(km);
                    Radius { km, inner: chord - EDGE_KM, outer: chord + EDGE_KM }
                }),
            }),
            open: q.open_now.then(|| LocalNow::new(now, chrono_tz::Europe::Rome)),
            now,
        }
    }

    /// Every filter but the area, on document `doc` of `seg`: `Some(distance)` when it passes.
    #[inline]
    fn check(&self, index: &DirectoryIndex, seg: &SegmentData, doc: usize) -> Option<Option<f64>> {
        if let Some(mask) = self.language_mask {
            if seg.languages[doc] & mask == 0 {
                return None;
            }
            if let Some(code) = &self.language_exact {
                if !index.docs[seg.ords[doc] as usize].languages.contains(code) {
                    return None;
                }
            }
        }
        let distance = match &self.geo {
            None => None,
            Some(g) => {
                let p = seg.xyz[doc];
                if p[0].is_nan() {
                    if g.radius.is_some() {
                        return None;
                    }
                    None
                } else {
                    let (dx, dy, dz) =
                        (f64::from(p[0]) - g.xyz[0], f64::from(p[1]) - g.xyz[1], f64::from(p[2]) - g.xyz[2]);
                    let chord = (dx * dx + dy * dy + dz * dz).sqrt();
                    match &g.radius {
                        Some(r) if chord > r.outer => return None,
                        Some(r) if chord >= r.inner => {
                            let exact = index.docs[seg.ords[doc] as usize].point.map(|p| g.center.distance_km(&p))?;
                            if exact > r.km {
                                return None;
                            }
                            Some(exact)
                        }
                        _ => Some(arc_km(chord)),
                    }
                }
            }
        };
        if let Some(local) = &self.open {
            let hours = &index.docs[seg.ords[doc] as usize].hours;
            let open = if hours.tz == local.tz { hours.is_open_local(local) } else { hours.is_open_at(self.now) };
            if !open {
                return None;
            }
        }
        Some(distance)
    }
}

/// One service found: its ordinal, text score, distance and text rank.
#[derive(Debug, Clone, Copy)]
struct Match {
    ord: u32,
    score: f32,
    distance: Option<f64>,
    rank: TextRank,
}

/// Matches found and the per-area counts. Only the matches of the most required words seen so
/// far are kept: a strict walk sees only documents with all of them; a relaxed one (no service
/// had them all) keeps the best level.
#[derive(Default)]
struct Found {
    matches: Vec<Match>,
    area_counts: [usize; 6],
    /// Required words the kept matches have.
    level: u32,
}

impl Found {
    /// Document `doc` of segment `s`, yielded by the walk of `plan` (none: no text).
    #[inline]
    fn consider(
        &mut self,
        index: &DirectoryIndex,
        filter: &Filter,
        plan: Option<&Plan>,
        s: usize,
        doc: DocId,
        hit: Hit,
    ) {
        let seg = &index.segments[s];
        let level = hit.matched.count_ones();
        if level < self.level {
            return;
        }
        let doc = doc as usize;
        let Some(distance) = filter.check(index, seg, doc) else { return };
        if level > self.level {
            self.level = level;
            self.matches.clear();
            self.area_counts = [0; 6];
        }
        let areas = seg.areas[doc];
        for (i, count) in self.area_counts.iter_mut().enumerate() {
            *count += usize::from((areas >> i) & 1);
        }
        if filter.area_mask == 0 || areas & filter.area_mask != 0 {
            let place = plan.map_or(MatchPlace::Description, |p| p.place(seg, s, doc, hit.matched));
            self.matches.push(Match {
                ord: seg.ords[doc],
                score: hit.score,
                distance,
                rank: TextRank::new(hit.exact, place),
            });
        }
    }
}

/// Walks every segment over the query's radius: the text plan's documents (`Walk::Strict`:
/// those with every required word; `Walk::Relaxed`: those with the most), or every document.
fn walk(index: &DirectoryIndex, q: &SearchQuery, filter: &Filter, plan: Option<&Plan>, mode: Walk) -> Found {
    let mut found = Found::default();
    let mut scratch = Scratch::default();
    for (s, seg) in index.segments.iter().enumerate() {
        let ranges = match (q.near, q.radius_km) {
            (Some(c), Some(r)) => seg.ranges_within(&c, r),
            _ => vec![(0, seg.max_doc)],
        };
        match plan {
            Some(plan) => {
                let mut clauses = plan.cursors(index, s);
                scratch.run(&mut clauses, &ranges, mode, |doc, hit| {
                    found.consider(index, filter, Some(plan), s, doc, hit)
                });
            }
            None => {
                for &(a, b) in &ranges {
                    for doc in a..b {
                        found.consider(index, filter, None, s, doc, Hit { score: 0.0, matched: 0, exact: 0 });
                    }
                }
            }
        }
    }
    found
}

/// Runs a search, judging "open now" and today's hours at `now` (the caller's injected clock).
/// Never fails: a query that cannot match finds nothing.
///
/// The order: [`TextRank`] (words matched exactly, then where they all are), then — when the
/// query has a place — distance, then BM25 relevance, then the listing order. Without text:
/// nearest first, or the listing order.
pub fn search(index: &Arc<DirectoryIndex>, q: &SearchQuery, now: DateTime<Utc>) -> SearchResponse {
    let filter = Filter::new(index, q, now);
    let plan = Plan::build(index, &q.text);
    let mut found = walk(index, q, &filter, plan.as_ref(), Walk::Strict);
    // No service has every word (and passes the other filters): those with the most words.
    if let Some(plan) = &plan {
        if found.matches.is_empty() && found.area_counts == [0; 6] && plan.required() > 1 {
            found = walk(index, q, &filter, Some(plan), Walk::Relaxed);
        }
    }
    let size = q.size.clamp(1, MAX_PAGE_SIZE);
    let page = q.page.max(1);
    let total = found.matches.len();
    let end = (page.saturating_mul(size)).min(total);
    let start = ((page - 1).saturating_mul(size)).min(end);
    let by_distance = q.near.is_some();
    let distance = |m: &Match| m.distance.unwrap_or(f64::INFINITY);
    let cmp = |a: &Match, b: &Match| {
        b.rank
            .cmp(&a.rank)
            .then_with(|| if by_distance { distance(a).total_cmp(&distance(b)) } else { std::cmp::Ordering::Equal })
            .then_with(|| b.score.total_cmp(&a.score))
            .then(a.ord.cmp(&b.ord))
    };
    if end > 0 && end < total {
        found.matches.select_nth_unstable_by(end - 1, cmp);
        found.matches.truncate(end);
    }
    found.matches.sort_unstable_by(cmp);
    let local = LocalNow::new(now, chrono_tz::Europe::Rome);
    let hits = found.matches[start..end].iter().map(|m| hit(index, m, m.distance.and(q.near), now, &local)).collect();
    SearchResponse {
        total,
        page,
        size,
        total_pages: total.div_ceil(size),
        hits,
        area_counts: ServiceArea::ALL.iter().enumerate().map(|(i, a)| (*a, found.area_counts[i])).collect(),
    }
}

/// One answer; `near` is the query's point when the service has a distance.
fn hit(index: &DirectoryIndex, m: &Match, near: Option<GeoPoint>, now: DateTime<Utc>, local: &LocalNow) -> SearchHit {
    let d = &index.docs[m.ord as usize];
    let distance = near.zip(d.point).map(|(c, p)| c.distance_km(&p));
    let (open_now, hours_today) = if d.hours.tz == local.tz {
        (d.hours.is_open_local(local), d.hours.today_text_local(local))
    } else {
        (d.hours.is_open_at(now), d.hours.today_text(now))
    };
    SearchHit {
        id: d.id.clone(),
        name: d.name.clone(),
        organization: d.organization.to_string(),
        address: d.address.to_string(),
        town: d.town.to_string(),
        postal_code: d.postal_code.to_string(),
        areas: d.area_list(),
        languages: d.languages.to_vec(),
        phone: d.phone.clone(),
        latitude: d.point.map(|p| p.lat),
        longitude: d.point.map(|p| p.lng),
        distance_km: distance.map(|x| (x * 1000.0).round() / 1000.0),
        open_now,
        hours_today,
        rank: m.rank,
        score: m.score,
        reported: false,
    }
}

/// The nearest active services of `area` to `point`, nearest first, skipping `offset`.
pub fn nearest_services(
    index: &DirectoryIndex,
    area: ServiceArea,
    point: GeoPoint,
    offset: usize,
    limit: usize,
    now: DateTime<Utc>,
) -> Vec<ServiceSummary> {
    let bit = area_bit(area);
    index
        .rtree
        .nearest_neighbor_iter(&to_xyz(&point))
        .filter_map(|p| index.docs.get(p.data as usize))
        .filter(|d| d.areas & bit != 0)
        .skip(offset)
        .take(limit)
        .map(|d| ServiceSummary {
            id: d.id.clone(),
            name: d.name.clone(),
            address: d.address.to_string(),
            town: d.town.to_string(),
            phone: d.phone.clone(),
            hours_today: d.hours.today_text(now),
            distance_km: d.point.map(|p| point.distance_km(&p)).unwrap_or(f64::INFINITY),
        })
        .collect()
}

/// Words shorter than this are optional (articles, prepositions) unless they are all there is.
const MIN_REQUIRED_WORD: usize = 3;
/// Whole words this long or longer tolerate one typo.
const MIN_FUZZY_WORD: usize = 5;
/// The word being typed, this long or longer, also matches with one typo in it (a fuzzy prefix).
const MIN_FUZZY_PREFIX: usize = 4;
/// Words past this many are ignored (a bound on the work one query can ask for).
const MAX_WORDS: usize = 32;

/// Boosts of the alternatives of a word (BM25 ones multiply the term's BM25; the others are
/// constant scores).
const BOOST_NAMES: f32 = 2.0;
const BOOST_STEM: f32 = 0.5;
const BOOST_TYPO: f32 = 0.5;
const BOOST_PREFIX: f32 = 0.7;
const BOOST_TYPO_PREFIX: f32 = 0.3;

/// The one-typo automata (a transposition counts as one typo).
fn one_typo() -> &'static LevenshteinAutomatonBuilder {
    static BUILDER: OnceLock<LevenshteinAutomatonBuilder> = OnceLock::new();
    BUILDER.get_or_init(|| LevenshteinAutomatonBuilder::new(1, true))
}

/// A Levenshtein automaton walking tantivy's term dictionary.
struct Lev<'a>(&'a DFA);

impl tantivy_fst::Automaton for Lev<'_> {
    type State = u32;

    fn start(&self) -> u32 {
        self.0.initial_state()
    }

    fn is_match(&self, state: &u32) -> bool {
        matches!(self.0.distance(*state), Distance::Exact(_))
    }

    fn can_match(&self, state: &u32) -> bool {
        *state != SINK_STATE
    }

    fn accept(&self, state: &u32, byte: u8) -> u32 {
        self.0.transition(*state, byte)
    }
}

/// How one alternative of a word finds its terms.
#[derive(Clone, Copy)]
enum Lookup<'a> {
    /// The exact term.
    Term(&'a str),
    /// Every term within one typo.
    Typo(&'a DFA),
    /// Every term starting with the word.
    Prefix(&'a str),
    /// Every term starting with the word give or take one typo.
    TypoPrefix(&'a DFA),
}

/// How an alternative scores a document it matches.
#[derive(Clone, Copy)]
enum Weight {
    /// BM25 of its one term, times this boost.
    Bm25(f32),
    /// This, once, for a document having any of its terms.
    Constant(f32),
}

/// One alternative of a word, resolved against the index: its terms in each segment.
struct Alternative {
    slot: usize,
    weight: Weight,
    /// Whether its matches are exact (the word, its stem, a completion) or fuzzy.
    exact: bool,
    /// By segment: the terms, and their ordinals in the segment's dictionary.
    terms: Vec<Vec<(TermInfo, u64)>>,
    /// Over the whole index (for BM25).
    doc_freq: u64,
}

struct Clause {
    required: bool,
    alternatives: Vec<Alternative>,
    /// By segment, a bit per raw term: the raw terms the word matched (the words of a
    /// service's names are looked up in it).
    raw_terms: Vec<Vec<u64>>,
}

/// The text part of a search.
struct Plan {
    clauses: Vec<Clause>,
}

fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The terms of a dictionary stream, with their ordinals.
fn drain<A: tantivy_fst::Automaton>(
    found: &mut Vec<(TermInfo, u64)>,
    stream: std::io::Result<tantivy::termdict::TermStreamer<'_, A>>,
) {
    match stream {
        Ok(mut s) => {
            while s.advance() {
                found.push((s.value().clone(), s.term_ord()));
            }
        }
        Err(e) => tracing::warn!(error = %e, "directory term dictionary unreadable"),
    }
}

impl Alternative {
    fn resolve(index: &DirectoryIndex, slot: usize, weight: Weight, exact: bool, lookup: Lookup<'_>) -> Alternative {
        let mut terms = Vec::with_capacity(index.segments.len());
        for seg in &index.segments {
            let dict = seg.inverted[slot].terms();
            let mut found = Vec::new();
            match lookup {
                Lookup::Term(t) => match (dict.term_ord(t.as_bytes()), dict.get(t.as_bytes())) {
                    (Ok(Some(ord)), Ok(Some(info))) => found.push((info, ord)),
                    (Ok(_), Ok(_)) => {}
                    (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "directory term dictionary unreadable"),
                },
                Lookup::Typo(dfa) | Lookup::TypoPrefix(dfa) => drain(&mut found, dict.search(Lev(dfa)).into_stream()),
                Lookup::Prefix(p) => {
                    let builder = dict.range().ge(p.as_bytes());
                    let builder = match prefix_end(p.as_bytes()) {
                        Some(end) => builder.lt(end),
                        None => builder,
                    };
                    drain(&mut found, builder.into_stream());
                }
            }
            terms.push(found);
        }
        let doc_freq = terms.iter().flatten().map(|(t, _)| u64::from(t.doc_freq)).sum();
        Alternative { slot, weight, exact, terms, doc_freq }
    }
}

impl Plan {
    /// The plan of `text`, `None` when it has no words.
    ///
    /// Each word's alternatives: the word itself in all the text (BM25) and in the names (BM25
    /// ×2); its stems (BM25 ×0.5; exact only when the word is complete); from five letters, the
    /// words within one typo; and for the word being typed (the last, unless the text ends
    /// with a space) its completions, and from four letters its completions within one typo.
    fn build(index: &DirectoryIndex, text: &str) -> Option<Plan> {
        let mut words = index.tokens(RAW, text);
        if words.is_empty() {
            return None;
        }
        let prefix_last = !text.ends_with(char::is_whitespace) && words.len() <= MAX_WORDS;
        words.truncate(MAX_WORDS);
        let all_short = words.iter().all(|w| w.chars().count() < MIN_REQUIRED_WORD);
        let stems: Vec<Vec<String>> = (0..4).map(|s| index.tokens(FIRST_STEMMED + s, text)).collect();
        let mut clauses = Vec::with_capacity(words.len());
        for (i, word) in words.iter().enumerate() {
            let typed = prefix_last && i + 1 == words.len();
            let len = word.chars().count();
            let mut alternatives = vec![
                Alternative::resolve(index, RAW, Weight::Bm25(1.0), true, Lookup::Term(word)),
                Alternative::resolve(index, NAMES, Weight::Bm25(BOOST_NAMES), true, Lookup::Term(word)),
            ];
            let mut seen: Vec<(usize, &str)> = Vec::new();
            for (s, stemmed) in stems.iter().enumerate() {
                if let Some(stem) = stemmed.get(i) {
                    let slot = FIRST_STEMMED + s;
                    if !seen.contains(&(slot, stem.as_str())) {
                        seen.push((slot, stem.as_str()));
                        // The stem of a word not finished yet says little ("coma" is not "Como").
                        let weight = Weight::Bm25(BOOST_STEM);
                        alternatives.push(Alternative::resolve(index, slot, weight, !typed, Lookup::Term(stem)));
                    }
                }
            }
            if len >= MIN_FUZZY_WORD {
                let dfa = one_typo().build_dfa(word);
                let weight = Weight::Constant(BOOST_TYPO);
                alternatives.push(Alternative::resolve(index, RAW, weight, false, Lookup::Typo(&dfa)));
            }
            if typed {
                let weight = Weight::Constant(BOOST_PREFIX);
                alternatives.push(Alternative::resolve(index, RAW, weight, true, Lookup::Prefix(word)));
                if len >= MIN_FUZZY_PREFIX {
                    let dfa = one_typo().build_prefix_dfa(word);
                    let weight = Weight::Constant(BOOST_TYPO_PREFIX);
                    alternatives.push(Alternative::resolve(index, RAW, weight, false, Lookup::TypoPrefix(&dfa)));
                }
            }
            alternatives.retain(|a| a.doc_freq > 0);
            let raw_terms = index
                .segments
                .iter()
                .enumerate()
                .map(|(s, seg)| {
                    let mut bits = vec![0u64; seg.inverted[RAW].terms().num_terms().div_ceil(64)];
                    for a in alternatives.iter().filter(|a| a.slot == RAW) {
                        for &(_, ord) in &a.terms[s] {
                            bits[(ord >> 6) as usize] |= 1 << (ord & 63);
                        }
                    }
                    bits
                })
                .collect();
            let required = all_short || typed || len >= MIN_REQUIRED_WORD;
            clauses.push(Clause { required, alternatives, raw_terms });
        }
        Some(Plan { clauses })
    }

    /// How many words are required.
    fn required(&self) -> usize {
        self.clauses.iter().filter(|c| c.required).count()
    }

    /// Where the required words of `matched` (a bit per clause) are in document `doc` of
    /// segment `s`: each (the word, a completion or a typo of it) among its own name's words,
    /// else among its names' words, else neither (its description, its languages, or a stem).
    fn place(&self, seg: &SegmentData, s: usize, doc: usize, matched: u32) -> MatchPlace {
        let (own, other) = seg.names.of(doc);
        let has = |bits: &[u64], words: &[u32]| {
            words.iter().any(|&o| bits.get((o >> 6) as usize).is_some_and(|w| (w >> (o & 63)) & 1 == 1))
        };
        let mut place = MatchPlace::Name;
        let mut m = matched;
        while m != 0 {
            let bits = &self.clauses[m.trailing_zeros() as usize].raw_terms[s];
            m &= m - 1;
            if has(bits, own) {
                continue;
            }
            if !has(bits, other) {
                return MatchPlace::Description;
            }
            place = MatchPlace::Names;
        }
        place
    }

    /// The plan's posting lists in segment `s`.
    fn cursors<'a>(&self, index: &'a DirectoryIndex, s: usize) -> Vec<ClauseCursors<'a>> {
        let seg = &index.segments[s];
        self.clauses
            .iter()
            .map(|clause| ClauseCursors {
                required: clause.required,
                cursors: clause
                    .alternatives
                    .iter()
                    .filter_map(|a| {
                        let inverted = &seg.inverted[a.slot];
                        let option = match a.weight {
                            Weight::Bm25(_) => IndexRecordOption::WithFreqs,
                            Weight::Constant(_) => IndexRecordOption::Basic,
                        };
                        let postings: Vec<SegmentPostings> = a.terms[s]
                            .iter()
                            .filter_map(|(t, _)| match inverted.read_postings_from_terminfo(t, option) {
                                Ok(p) => Some(p),
                                Err(e) => {
                                    tracing::warn!(error = %e, "directory postings unreadable");
                                    None
                                }
                            })
                            .collect();
                        if postings.is_empty() {
                            return None;
                        }
                        let kind = match a.weight {
                            Weight::Bm25(boost) => CursorKind::Scored {
                                postings: postings.into_iter().next()?,
                                weight: index.stats.weight(a.doc_freq, boost),
                                norms: &index.stats.norms[a.slot],
                                fieldnorms: &seg.fieldnorms[a.slot],
                            },
                            Weight::Constant(score) => CursorKind::Constant { postings, score },
                        };
                        Some(Cursor { kind, exact: a.exact })
                    })
                    .collect(),
            })
            .collect()
    }
}

/// A word's alternative in one segment, and whether its matches are exact.
struct Cursor<'a> {
    kind: CursorKind<'a>,
    exact: bool,
}

/// (A query holds a few of these; boxing the large variant would cost an allocation per term and
/// segment for no memory that matters.)
#[allow(clippy::large_enum_variant)]
enum CursorKind<'a> {
    /// One term: score = weight · tf / (tf + norm of the field's length).
    Scored { postings: SegmentPostings, weight: f32, norms: &'a [f32; 256], fieldnorms: &'a FieldNormReader },
    /// Several terms: `score` once for a document having any of them.
    Constant { postings: Vec<SegmentPostings>, score: f32 },
}

struct ClauseCursors<'a> {
    required: bool,
    cursors: Vec<Cursor<'a>>,
}

/// Which documents a walk yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Those with every required word.
    Strict,
    /// Those with at least one required word (and which: [`Found`] keeps those with the most).
    Relaxed,
}

/// A document the walk yields: its BM25 score, its required words (a bit per clause) and how
/// many of them matched exactly.
#[derive(Debug, Clone, Copy)]
struct Hit {
    score: f32,
    matched: u32,
    exact: u8,
}

/// Documents handled at once.
const WINDOW: u32 = 4096;
const WINDOW_WORDS: usize = WINDOW as usize / 64;

/// Per-window buffers, reused across windows.
struct Scratch {
    score: Vec<f32>,
    matched: Vec<u32>,
    exact: Vec<u8>,
    /// This clause's documents matched fuzzily, and exactly.
    clause: Vec<u64>,
    clause_exact: Vec<u64>,
    /// One alternative's documents.
    hits: Vec<u64>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            score: vec![0.0; WINDOW as usize],
            matched: vec![0; WINDOW as usize],
            exact: vec![0; WINDOW as usize],
            clause: vec![0; WINDOW_WORDS],
            clause_exact: vec![0; WINDOW_WORDS],
            hits: vec![0; WINDOW_WORDS],
        }
    }
}

/// Marks in `bits` the documents of `postings` in `[a, b)` (bit `doc - a`).
#[inline]
fn mark(postings: &mut SegmentPostings, a: DocId, b: DocId, bits: &mut [u64]) {
    let mut d = postings.doc();
    if d < a {
        d = postings.seek(a);
    }
    while d < b {
        let i = (d - a) as usize;
        bits[i >> 6] |= 1 << (i & 63);
        d = postings.advance();
    }
}

impl Scratch {
    /// Walks `ranges` (ascending) window by window; calls `emit` for each document having every
    /// required word (`Walk::Strict`) or some (`Walk::Relaxed`), with its score and words.
    fn run(
        &mut self,
        clauses: &mut [ClauseCursors<'_>],
        ranges: &[(DocId, DocId)],
        mode: Walk,
        mut emit: impl FnMut(DocId, Hit),
    ) {
        let all: u32 = clauses.iter().enumerate().filter(|(_, c)| c.required).fold(0, |m, (i, _)| m | 1 << i);
        // A required word with no term in the index: nothing has every word.
        if mode == Walk::Strict && clauses.iter().any(|c| c.required && c.cursors.is_empty()) {
            return;
        }
        for &(start, end) in ranges {
            let mut a = start;
            while a < end {
                let b = end.min(a.saturating_add(WINDOW));
                let len = (b - a) as usize;
                let words = len.div_ceil(64);
                self.score[..len].fill(0.0);
                self.matched[..len].fill(0);
                self.exact[..len].fill(0);
                let mut possible = true;
                for (c, clause) in clauses.iter_mut().enumerate() {
                    self.clause[..words].fill(0);
                    self.clause_exact[..words].fill(0);
                    for cursor in clause.cursors.iter_mut() {
                        self.hits[..words].fill(0);
                        match &mut cursor.kind {
                            CursorKind::Scored { postings, weight, norms, fieldnorms } => {
                                let mut d = postings.doc();
                                if d < a {
                                    d = postings.seek(a);
                                }
                                while d < b {
                                    let i = (d - a) as usize;
                                    let tf = postings.term_freq() as f32;
                                    let norm = norms[usize::from(fieldnorms.fieldnorm_id(d))];
                                    self.score[i] += *weight * (tf / (tf + norm));
                                    self.hits[i >> 6] |= 1 << (i & 63);
                                    d = postings.advance();
                                }
                            }
                            CursorKind::Constant { postings, score } => {
                                for p in postings.iter_mut() {
                                    mark(p, a, b, &mut self.hits);
                                }
                                for (w, &word) in self.hits[..words].iter().enumerate() {
                                    let mut m = word;
                                    while m != 0 {
                                        self.score[w * 64 + m.trailing_zeros() as usize] += *score;
                                        m &= m - 1;
                                    }
                                }
                            }
                        }
                        let bits = if cursor.exact { &mut self.clause_exact } else { &mut self.clause };
                        for (b, h) in bits[..words].iter_mut().zip(&self.hits[..words]) {
                            *b |= h;
                        }
                    }
                    if clause.required {
                        let mut some = false;
                        for (w, (&fuzzy, &exact)) in self.clause[..words].iter().zip(&self.clause_exact).enumerate() {
                            let mut m = fuzzy | exact;
                            some |= m != 0;
                            while m != 0 {
                                let bit = m.trailing_zeros();
                                let i = w * 64 + bit as usize;
                                self.matched[i] |= 1 << c;
                                self.exact[i] += ((exact >> bit) & 1) as u8;
                                m &= m - 1;
                            }
                        }
                        if !some && mode == Walk::Strict {
                            possible = false;
                            break;
                        }
                    }
                }
                if possible {
                    for i in 0..len {
                        let matched = self.matched[i];
                        let yield_it = match mode {
                            Walk::Strict => matched == all,
                            Walk::Relaxed => matched != 0,
                        };
                        if yield_it {
                            emit(a + i as DocId, Hit { score: self.score[i], matched, exact: self.exact[i] });
                        }
                    }
                }
                a = b;
            }
        }
    }
}
