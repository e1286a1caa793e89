//! Searching the index: free text (folded, stemmed in four languages, one typo allowed in words of
//! five letters or more, the last word matched as a prefix), filters (area, language spoken, open
//! now, within R km), ranking by relevance and distance, counts per area for the filter chips;
//! and the IVR's "nearest services in this area".
//!
//! Everything here is synchronous and takes the clock as a parameter: a websocket handler or the
//! IVR calls it directly on a shared `Arc<DirectoryIndex>`.

use super::docs::{area_bit, ServiceDoc};
use super::index::{cell_key, cell_of, chord_km, to_xyz, DirectoryIndex};
use super::opening::LocalNow;
use chrono::{DateTime, Utc};
use ivr::domain::ServiceArea;
use ivr::geo::GeoPoint;
use serde::Serialize;
use std::sync::Arc;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader, Term};

/// Kilometres per degree of latitude on the sphere the gazetteer uses.
const KM_PER_DEGREE_LAT: f64 = GeoPoint::EARTH_RADIUS_KM * std::f64::consts::PI / 180.0;

/// The largest page size the search returns.
pub const MAX_PAGE_SIZE: usize = 100;

/// What to look for. Built valid by the HTTP layer or by Rust callers.
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
    /// The clock: "open now" and today's hours are judged at this instant.
    pub now: DateTime<Utc>,
    /// 1-based.
    pub page: usize,
    pub size: usize,
}

impl SearchQuery {
    pub fn new(now: DateTime<Utc>) -> SearchQuery {
        SearchQuery {
            text: String::new(),
            areas: Vec::new(),
            language: None,
            near: None,
            radius_km: None,
            open_now: false,
            now,
            page: 1,
            size: 20,
        }
    }
}

/// One service found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SearchHit {
    pub id: String,
    pub name: String,
    pub organization: String,
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
    pub score: f32,
}

/// One page of results.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SearchResults {
    pub total: usize,
    pub page: usize,
    pub size: usize,
    pub hits: Vec<SearchHit>,
    /// For each area, how many services match every other filter (the filter chips).
    pub area_counts: Vec<(ServiceArea, usize)>,
}

/// What the IVR reads back: the nearest services of an area.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServiceSummary {
    pub id: String,
    pub name: String,
    pub town: String,
    pub phone: String,
    /// Today's opening hours, `09:00-13:00`; empty when closed today.
    pub hours_today: String,
    pub distance_km: f64,
}

/// The filters, precomputed once per query.
struct Filter {
    area_mask: u8,
    language_mask: Option<u64>,
    center: Option<GeoPoint>,
    radius_km: Option<f64>,
    open: Option<LocalNow>,
    now: DateTime<Utc>,
}

impl Filter {
    fn new(index: &DirectoryIndex, q: &SearchQuery) -> Filter {
        Filter {
            area_mask: q.areas.iter().fold(0, |m, a| m | area_bit(*a)),
            // A language nobody speaks matches nothing (mask 0).
            language_mask: q.language.as_ref().map(|l| index.language_bits.get(l).copied().unwrap_or(0)),
            center: q.near,
            radius_km: q.radius_km,
            open: q.open_now.then(|| LocalNow::new(q.now, chrono_tz::Europe::Rome)),
            now: q.now,
        }
    }

    /// Every filter but the area: `Some(distance)` when the service passes.
    fn check(&self, doc: &ServiceDoc, languages: u64) -> Option<Option<f64>> {
        if let Some(mask) = self.language_mask {
            if languages & mask == 0 {
                return None;
            }
        }
        if let Some(local) = &self.open {
            let open =
                if doc.hours.tz == local.tz { doc.hours.is_open_local(local) } else { doc.hours.is_open_at(self.now) };
            if !open {
                return None;
            }
        }
        if let (Some(c), Some(p), Some(r)) = (&self.center, doc.point, self.radius_km) {
            // Cheap latitude band first: a degree of latitude is 111.19 km everywhere.
            if (p.lat - c.lat).abs() > r / KM_PER_DEGREE_LAT + 1e-9 {
                return None;
            }
        }
        let distance = match (&self.center, doc.point) {
            (Some(c), Some(p)) => Some(c.distance_km(&p)),
            (Some(_), None) if self.radius_km.is_some() => return None,
            _ => None,
        };
        if let (Some(r), Some(d)) = (self.radius_km, distance) {
            if d > r {
                return None;
            }
        }
        Some(distance)
    }

    fn area_ok(&self, doc: &ServiceDoc) -> bool {
        self.area_mask == 0 || doc.areas & self.area_mask != 0
    }
}

/// Matches found: (doc ordinal, text score, distance), and the per-area counts.
#[derive(Default)]
struct Found {
    matches: Vec<(u32, f32, Option<f64>)>,
    area_counts: [usize; 6],
}

impl Found {
    fn consider(&mut self, index: &DirectoryIndex, filter: &Filter, ord: u32, score: f32) {
        let Some(doc) = index.docs.get(ord as usize) else { return };
        let Some(distance) = filter.check(doc, index.doc_languages[ord as usize]) else { return };
        for (i, count) in self.area_counts.iter_mut().enumerate() {
            if doc.areas & (1 << i) != 0 {
                *count += 1;
            }
        }
        if filter.area_ok(doc) {
            self.matches.push((ord, score, distance));
        }
    }
}

/// Runs a search. Never fails: a query that cannot match finds nothing.
pub fn search(index: &Arc<DirectoryIndex>, q: &SearchQuery) -> SearchResults {
    let filter = Filter::new(index, q);
    let text_query = build_text_query(index, &q.text).map(|text| match cells_clause(index, q) {
        Some(cells) => Box::new(BooleanQuery::new(vec![(Occur::Must, text), (Occur::Must, cells)])) as Box<dyn Query>,
        None => text,
    });
    let mut found = match text_query {
        Some(query) => {
            let collector = FilterCollector { index: Arc::clone(index), filter: Arc::new(filter) };
            let searcher = index.reader.searcher();
            searcher.search(&*query, &collector).unwrap_or_default()
        }
        None => {
            let mut found = Found::default();
            match (filter.center, filter.radius_km) {
                (Some(c), Some(r)) => {
                    let reach = chord_km(r + 0.01);
                    for p in index.rtree.locate_within_distance(to_xyz(&c), reach * reach) {
                        found.consider(index, &filter, p.data, 0.0);
                    }
                }
                _ => {
                    for ord in 0..index.docs.len() as u32 {
                        found.consider(index, &filter, ord, 0.0);
                    }
                }
            }
            found
        }
    };
    let ranked = |m: &(u32, f32, Option<f64>)| -> f64 {
        match m.2 {
            // Relevance, damped by distance: 10 km halves the text score.
            Some(d) if !q.text.trim().is_empty() => f64::from(m.1) / (1.0 + d / 10.0),
            Some(d) => -d,
            None => f64::from(m.1),
        }
    };
    let size = q.size.clamp(1, MAX_PAGE_SIZE);
    let page = q.page.max(1);
    let total = found.matches.len();
    let end = (page.saturating_mul(size)).min(total);
    let start = ((page - 1).saturating_mul(size)).min(end);
    let cmp = |a: &(u32, f32, Option<f64>), b: &(u32, f32, Option<f64>)| {
        ranked(b).total_cmp(&ranked(a)).then(a.0.cmp(&b.0))
    };
    if end > 0 && end < total {
        found.matches.select_nth_unstable_by(end - 1, cmp);
        found.matches.truncate(end);
    }
    found.matches.sort_unstable_by(cmp);
    let hits = found.matches[start..end].iter().map(|&(ord, score, distance)| hit(index, ord, score, distance, q.now)).collect();
    SearchResults {
        total,
        page,
        size,
        hits,
        area_counts: ServiceArea::ALL.iter().enumerate().map(|(i, a)| (*a, found.area_counts[i])).collect(),
    }
}

fn hit(index: &DirectoryIndex, ord: u32, score: f32, distance: Option<f64>, now: DateTime<Utc>) -> SearchHit {
    let d = &index.docs[ord as usize];
    SearchHit {
        id: d.id.clone(),
        name: d.name.clone(),
        organization: d.organization.clone(),
        town: d.town.clone(),
        postal_code: d.postal_code.clone(),
        areas: d.area_list(),
        languages: d.languages.clone(),
        phone: d.phone.clone(),
        latitude: d.point.map(|p| p.lat),
        longitude: d.point.map(|p| p.lng),
        distance_km: distance.map(|x| (x * 1000.0).round() / 1000.0),
        open_now: d.hours.is_open_at(now),
        hours_today: d.hours.today_text(now),
        score,
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
            town: d.town.clone(),
            phone: d.phone.clone(),
            hours_today: d.hours.today_text(now),
            distance_km: d.point.map(|p| point.distance_km(&p)).unwrap_or(f64::INFINITY),
        })
        .collect()
}

/// The most grid cells a radius may turn into a query clause; past it the radius is checked
/// only on the matches.
const MAX_CELLS: i64 = 256;

/// "In one of the grid cells the circle touches": a constant-score clause that lets tantivy
/// skip the text matches far away. The exact distance is still checked on every match.
fn cells_clause(index: &DirectoryIndex, q: &SearchQuery) -> Option<Box<dyn Query>> {
    let (c, r) = (q.near?, q.radius_km?);
    let dlat = r / KM_PER_DEGREE_LAT;
    let max_lat = (c.lat.abs() + dlat).min(89.0);
    let dlng = r / (KM_PER_DEGREE_LAT * max_lat.to_radians().cos());
    let lo = cell_of(&GeoPoint::new(c.lat - dlat, c.lng - dlng));
    let hi = cell_of(&GeoPoint::new(c.lat + dlat, c.lng + dlng));
    let count = (i64::from(hi.0) - i64::from(lo.0) + 1) * (i64::from(hi.1) - i64::from(lo.1) + 1);
    if count > MAX_CELLS || hi.1 < lo.1 {
        return None;
    }
    let mut cells: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for a in lo.0..=hi.0 {
        for b in lo.1..=hi.1 {
            let term = Term::from_field_text(index.fields.cell, &cell_key(a, b));
            cells.push((Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
        }
    }
    Some(Box::new(tantivy::query::ConstScoreQuery::new(Box::new(BooleanQuery::new(cells)), 0.0)))
}

/// Words shorter than this are optional (articles, prepositions) unless they are all there is.
const MIN_REQUIRED_WORD: usize = 3;
/// Words this long or longer tolerate one typo.
const MIN_FUZZY_WORD: usize = 5;

/// The text part of a search, `None` when the text has no words.
fn build_text_query(index: &DirectoryIndex, text: &str) -> Option<Box<dyn Query>> {
    let f = index.fields;
    let words = index.tokens(f.raw, text);
    if words.is_empty() {
        return None;
    }
    let prefix_last = !text.ends_with(char::is_whitespace);
    let all_short = words.iter().all(|w| w.chars().count() < MIN_REQUIRED_WORD);
    let stems: Vec<Vec<String>> = f.stemmed.iter().map(|&field| index.tokens(field, text)).collect();
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let term = |field, t: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(Term::from_field_text(field, t), IndexRecordOption::WithFreqs))
        };
        alternatives.push((Occur::Should, term(f.raw, word)));
        alternatives.push((Occur::Should, Box::new(BoostQuery::new(term(f.name, word), 2.0))));
        let mut seen: Vec<(tantivy::schema::Field, &str)> = Vec::new();
        for (s, field) in f.stemmed.iter().enumerate() {
            if let Some(stem) = stems[s].get(i) {
                if !seen.contains(&(*field, stem.as_str())) {
                    seen.push((*field, stem.as_str()));
                    alternatives.push((Occur::Should, Box::new(BoostQuery::new(term(*field, stem), 0.5))));
                }
            }
        }
        let long = word.chars().count() >= MIN_FUZZY_WORD;
        if long {
            let fuzzy = FuzzyTermQuery::new(Term::from_field_text(f.raw, word), 1, true);
            alternatives.push((Occur::Should, Box::new(BoostQuery::new(Box::new(fuzzy), 0.5))));
        }
        let is_prefix = prefix_last && i + 1 == words.len();
        if is_prefix {
            let prefix = FuzzyTermQuery::new_prefix(Term::from_field_text(f.raw, word), u8::from(long), true);
            alternatives.push((Occur::Should, Box::new(BoostQuery::new(Box::new(prefix), 0.7))));
        }
        let required = all_short || is_prefix || word.chars().count() >= MIN_REQUIRED_WORD;
        let occur = if required { Occur::Must } else { Occur::Should };
        clauses.push((occur, Box::new(BooleanQuery::new(alternatives))));
    }
    Some(Box::new(BooleanQuery::new(clauses)))
}

/// Collects every text match that passes the filters, with its score, and counts areas.
struct FilterCollector {
    index: Arc<DirectoryIndex>,
    filter: Arc<Filter>,
}

struct FilterSegment {
    index: Arc<DirectoryIndex>,
    filter: Arc<Filter>,
    ords: Column<u64>,
    found: Found,
}

impl Collector for FilterCollector {
    type Fruit = Found;
    type Child = FilterSegment;

    fn for_segment(&self, _: SegmentOrdinal, segment: &SegmentReader) -> tantivy::Result<FilterSegment> {
        Ok(FilterSegment {
            index: Arc::clone(&self.index),
            filter: Arc::clone(&self.filter),
            ords: segment.fast_fields().u64("ord")?,
            found: Found::default(),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, fruits: Vec<Found>) -> tantivy::Result<Found> {
        let mut all = Found::default();
        for f in fruits {
            all.matches.extend(f.matches);
            for i in 0..6 {
                all.area_counts[i] += f.area_counts[i];
            }
        }
        Ok(all)
    }
}

impl SegmentCollector for FilterSegment {
    type Fruit = Found;

    fn collect(&mut self, doc: DocId, score: Score) {
        if let Some(ord) = self.ords.first(doc) {
            self.found.consider(&self.index, &self.filter, ord as u32, score);
        }
    }

    fn harvest(self) -> Found {
        self.found
    }
}
