//! The in-memory search index over the directory: a tantivy index in RAM for the text, the
//! services laid out in space inside it, an R-tree of the positions for "nearest", and the flat
//! service records for filters and answers. Built whole from a [`Dataset`](super::dataset::Dataset)
//! (the database is the source of truth) and swapped atomically by
//! [`Directory`](super::Directory) when the data changes.
//!
//! Layout: documents enter tantivy sorted by a spatial key (a 0.05° band of latitude, then
//! longitude), so the services within R km of a point are a few runs of consecutive document
//! ids, one per band the circle crosses. A search walks only those runs of each posting list
//! (see [`super::search`]); the filters read small arrays indexed by document id, in the same
//! order, rather than the service records.

use super::documents::ServiceDoc;
use ivr::geo::GeoPoint;
use rstar::primitives::GeomWithData;
use rstar::RTree;
use std::collections::HashMap;
use std::sync::Arc;
use tantivy::fieldnorm::FieldNormReader;
use tantivy::index::InvertedIndexReader;
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language as StemLanguage, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer,
};
use tantivy::{DocId, Index, ReloadPolicy, TantivyDocument};

/// Why the index could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("search index: {0}")]
    Io(#[from] std::io::Error),
}

/// The four stemmed text fields, one per language the helpline speaks.
pub(crate) const STEMMED: [(&str, StemLanguage); 4] = [
    ("text_it", StemLanguage::Italian),
    ("text_en", StemLanguage::English),
    ("text_fr", StemLanguage::French),
    ("text_es", StemLanguage::Spanish),
];

pub(crate) type IndexedPoint = GeomWithData<[f64; 3], u32>;

/// The text fields, by slot: raw, names, then the four stemmed ones.
pub(crate) const TEXT_FIELDS: usize = 6;
pub(crate) const RAW: usize = 0;
pub(crate) const NAMES: usize = 1;
pub(crate) const FIRST_STEMMED: usize = 2;

/// The tantivy fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    /// By slot ([`RAW`], [`NAMES`], [`FIRST_STEMMED`]…): raw is everything searched
    /// ([`ServiceDoc::search_text`]: name, organization, description, town, languages), folded,
    /// not stemmed (typos and prefixes); names is the service's, its organization's and its
    /// town's names, folded (a match there scores ×2); then the stemmed texts.
    pub text: [Field; TEXT_FIELDS],
}

/// Height of a band of the spatial layout, in degrees of latitude (5.6 km).
pub(crate) const BAND_DEGREES: f64 = 0.05;

fn band_of(lat: f64) -> i64 {
    (lat / BAND_DEGREES).floor() as i64
}

/// `f32` bits in an order that sorts like the numbers.
fn ordered_bits(x: f32) -> u32 {
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

fn spatial_key(band: i64, lng: f32) -> u64 {
    (((band + (1 << 31)) as u64) << 32) | u64::from(ordered_bits(lng))
}

/// The layout key of a service: band, then longitude; services without a position last.
fn key_of(p: Option<GeoPoint>) -> u64 {
    match p {
        Some(p) => spatial_key(band_of(p.lat), p.lng as f32),
        None => u64::MAX,
    }
}

/// BM25's constants, as tantivy has them.
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// One tantivy segment with what a search reads of it, all indexed by document id.
pub(crate) struct SegmentData {
    /// By text field slot.
    pub inverted: Vec<Arc<InvertedIndexReader>>,
    pub fieldnorms: Vec<FieldNormReader>,
    pub max_doc: DocId,
    /// Document id → position in [`DirectoryIndex::docs`].
    pub ords: Vec<u32>,
    pub areas: Vec<u8>,
    pub languages: Vec<u64>,
    /// Position on the sphere ([`to_xyz`]), NaN when the service has none.
    pub xyz: Vec<[f32; 3]>,
    /// The words of each service's names, as ordinals of the raw field's terms.
    pub names: NameTerms,
    keys: Vec<u64>,
    /// Maximal runs of document ids whose keys ascend (one per segment tantivy's writer
    /// made before the merge).
    runs: Vec<(DocId, DocId)>,
}

/// The words of each document's names, as ordinals of its segment's raw terms: its own name's
/// words first, then its organization's and its town's. A search tells where a query word matched
/// from them (the ordinals of the terms the word matched), for the documents it shows.
#[derive(Default)]
pub(crate) struct NameTerms {
    /// Document id → start in `ords` (one more entry: the end).
    starts: Vec<u32>,
    /// Document id → how many of its words are its own name's.
    own_lens: Vec<u8>,
    ords: Vec<u32>,
}

impl NameTerms {
    /// Document `doc`'s own name's words, and its organization's and town's.
    #[inline]
    pub(crate) fn of(&self, doc: usize) -> (&[u32], &[u32]) {
        let words = &self.ords[self.starts[doc] as usize..self.starts[doc + 1] as usize];
        words.split_at(usize::from(self.own_lens[doc]).min(words.len()))
    }
}

impl SegmentData {
    /// Runs of document ids holding every service within `radius_km` of `center` (and some
    /// more: the exact distance is checked on each), ascending and disjoint.
    pub(crate) fn ranges_within(&self, center: &GeoPoint, radius_km: f64) -> Vec<(DocId, DocId)> {
        let delta = radius_km / GeoPoint::EARTH_RADIUS_KM;
        if delta.is_nan() || delta >= std::f64::consts::PI {
            return vec![(0, self.max_doc)];
        }
        // Exact bounds of a spherical cap: |Δlat| ≤ δ; |Δlng| ≤ asin(sin δ / cos lat) unless a
        // pole is inside. A margin covers the f32 longitudes of the keys.
        const MARGIN: f64 = 1e-4;
        let dlat = delta.to_degrees();
        let (lat_lo, lat_hi) = (center.lat - dlat - MARGIN, center.lat + dlat + MARGIN);
        let s = delta.sin() / center.lat.to_radians().cos();
        let lngs: Vec<(f64, f64)> = if lat_hi >= 90.0 || lat_lo <= -90.0 || s.is_nan() || s >= 1.0 {
            vec![(-181.0, 181.0)]
        } else {
            let dlng = s.asin().to_degrees() + MARGIN;
            let (lo, hi) = (center.lng - dlng, center.lng + dlng);
            if lo < -180.0 {
                vec![(-181.0, hi), (lo + 360.0, 181.0)]
            } else if hi > 180.0 {
                vec![(-181.0, hi - 360.0), (lo, 181.0)]
            } else {
                vec![(lo, hi)]
            }
        };
        let mut out = Vec::new();
        for band in band_of(lat_lo.max(-90.0))..=band_of(lat_hi.min(90.0)) {
            for &(lo, hi) in &lngs {
                let (k0, k1) = (spatial_key(band, lo as f32), spatial_key(band, hi as f32));
                for &(s, e) in &self.runs {
                    let keys = &self.keys[s as usize..e as usize];
                    let a = s + keys.partition_point(|&k| k < k0) as DocId;
                    let b = s + keys.partition_point(|&k| k <= k1) as DocId;
                    if a < b {
                        out.push((a, b));
                    }
                }
            }
        }
        out.sort_unstable();
        out
    }
}

/// BM25 statistics of the whole index, per text field.
pub(crate) struct TextStats {
    pub total_docs: u64,
    /// `K1 · (1 − B + B · fieldnorm / average)` for each fieldnorm id: tantivy's own cache.
    pub norms: [[f32; 256]; TEXT_FIELDS],
}

impl TextStats {
    /// The BM25 weight of a term found in `doc_freq` documents, boosted: score =
    /// weight · tf / (tf + norm).
    pub(crate) fn weight(&self, doc_freq: u64, boost: f32) -> f32 {
        let n = self.total_docs.max(doc_freq);
        let x = ((n - doc_freq) as f32 + 0.5) / (doc_freq as f32 + 0.5);
        (1.0 + x).ln() * (1.0 + K1) * boost
    }
}

/// The searchable directory at one moment. Cheap to share (`Arc<DirectoryIndex>`), searched
/// synchronously from any thread.
pub struct DirectoryIndex {
    pub(crate) docs: Vec<ServiceDoc>,
    /// Positions in `docs`, sorted by their services' ids (a binary search finds one: no second
    /// copy of every id).
    pub(crate) by_id: Vec<u32>,
    pub(crate) rtree: RTree<IndexedPoint>,
    pub(crate) fields: Fields,
    pub(crate) index: Index,
    pub(crate) segments: Vec<SegmentData>,
    pub(crate) stats: TextStats,
    /// Language codes → bit, for the "language spoken" filter: the first 63 codes met have a bit
    /// of their own; any other ISO 639 code shares [`OTHER_LANGUAGES`], and the filter then checks
    /// the service's own list.
    pub(crate) language_bits: HashMap<String, u64>,
}

/// The index writer's heap per thread: tantivy's minimum.
const WRITER_HEAP_PER_THREAD: usize = 15_000_000;

/// The bit of every language code past the 63 with a bit of their own.
pub(crate) const OTHER_LANGUAGES: u64 = 1 << 63;

fn analyzer(stem: Option<StemLanguage>) -> TextAnalyzer {
    let base = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter);
    match stem {
        Some(l) => base.filter(Stemmer::new(l)).build(),
        None => base.build(),
    }
}

/// A point on the unit sphere scaled to the Earth's radius: straight-line (chord) distance grows
/// with great-circle distance, so an R-tree over these answers "within R km" exactly.
pub(crate) fn to_xyz(p: &GeoPoint) -> [f64; 3] {
    let (lat, lng) = (p.lat.to_radians(), p.lng.to_radians());
    let r = GeoPoint::EARTH_RADIUS_KM;
    [r * lat.cos() * lng.cos(), r * lat.cos() * lng.sin(), r * lat.sin()]
}

/// The chord length of a great-circle distance.
pub(crate) fn chord_km(distance_km: f64) -> f64 {
    let r = GeoPoint::EARTH_RADIUS_KM;
    2.0 * r * (distance_km.min(std::f64::consts::PI * r) / (2.0 * r)).sin()
}

/// The great-circle distance of a chord length.
pub(crate) fn arc_km(chord_km: f64) -> f64 {
    let r = GeoPoint::EARTH_RADIUS_KM;
    2.0 * r * (chord_km / (2.0 * r)).min(1.0).asin()
}

impl DirectoryIndex {
    /// Indexes `docs` (kept in their order: the order of listings without text or position).
    pub fn build(docs: Vec<ServiceDoc>) -> Result<DirectoryIndex, IndexError> {
        let mut sb = Schema::builder();
        let text = |tokenizer: &str| {
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default().set_tokenizer(tokenizer).set_index_option(IndexRecordOption::WithFreqs),
            )
        };
        let ord = sb.add_u64_field("ord", FAST);
        let raw = sb.add_text_field("text_raw", text("folded"));
        let names = sb.add_text_field("names", text("folded"));
        let stemmed = STEMMED.map(|(f, _)| sb.add_text_field(f, text(f)));
        let index = Index::create_in_ram(sb.build());
        index.tokenizers().register("folded", analyzer(None));
        for (f, lang) in STEMMED {
            index.tokenizers().register(f, analyzer(Some(lang)));
        }
        let fields = Fields { text: [raw, names, stemmed[0], stemmed[1], stemmed[2], stemmed[3]] };
        // One indexing thread with tantivy's smallest heap: it flushes a segment each time its heap
        // is full, and the segments are merged into one below. Each thread more would add its own
        // heap and term table to the start-up and re-index peaks (so a peak growing with the
        // server's cores), and more heap would mean fewer merges but a peak that grows with the
        // directory (50 MB a thread doubled the resident set while a 100,000-service index was
        // built; BENCHMARKS.md, "Memory").
        let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, WRITER_HEAP_PER_THREAD)?;
        // The one merge below, of every segment at once: none in the background meanwhile.
        writer.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
        let mut language_bits: HashMap<String, u64> = HashMap::new();
        let mut points = Vec::with_capacity(docs.len());
        // Spatial order; equal keys keep the listing order.
        let mut layout: Vec<u32> = (0..docs.len() as u32).collect();
        layout.sort_by_cached_key(|&i| key_of(docs[i as usize].point));
        for &i in &layout {
            let d = &docs[i as usize];
            let mut doc = TantivyDocument::default();
            doc.add_u64(ord, u64::from(i));
            let all = d.search_text();
            doc.add_text(raw, &all);
            doc.add_text(names, d.names_text());
            for f in stemmed {
                doc.add_text(f, &all);
            }
            writer.add_document(doc)?;
        }
        let mut doc_languages = Vec::with_capacity(docs.len());
        for (i, d) in docs.iter().enumerate() {
            let mut mask = 0u64;
            for code in d.languages.iter() {
                let next = language_bits.len();
                if let Some(bit) = language_bits.get(code) {
                    mask |= bit;
                } else if next < 63 {
                    language_bits.insert(code.clone(), 1 << next);
                    mask |= 1 << next;
                } else {
                    mask |= OTHER_LANGUAGES;
                }
            }
            doc_languages.push(mask);
            if let Some(p) = d.point {
                points.push(GeomWithData::new(to_xyz(&p), i as u32));
            }
        }
        let mut by_id: Vec<u32> = (0..docs.len() as u32).collect();
        by_id.sort_unstable_by(|&a, &b| docs[a as usize].id.cmp(&docs[b as usize].id));
        writer.commit()?;
        // One segment: every query looks each term up in each segment's dictionary.
        let segments = index.searchable_segment_ids()?;
        if segments.len() > 1 {
            writer.merge(&segments).wait()?;
        }
        writer.wait_merging_threads()?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let searcher = reader.searcher();
        let mut segment_data = Vec::new();
        let mut total_docs = 0u64;
        let mut tokens = [0u64; TEXT_FIELDS];
        for seg in searcher.segment_readers() {
            let column = seg.fast_fields().u64("ord")?;
            let max_doc = seg.max_doc();
            let mut data = SegmentData {
                inverted: fields.text.iter().map(|f| seg.inverted_index(*f)).collect::<Result<_, _>>()?,
                fieldnorms: fields.text.iter().map(|f| seg.get_fieldnorms_reader(*f)).collect::<Result<_, _>>()?,
                max_doc,
                ords: Vec::with_capacity(max_doc as usize),
                areas: Vec::with_capacity(max_doc as usize),
                languages: Vec::with_capacity(max_doc as usize),
                xyz: Vec::with_capacity(max_doc as usize),
                names: NameTerms::default(),
                keys: Vec::with_capacity(max_doc as usize),
                runs: Vec::new(),
            };
            for (slot, inverted) in data.inverted.iter().enumerate() {
                tokens[slot] += inverted.total_num_tokens();
            }
            total_docs += u64::from(max_doc);
            // The raw terms' ordinals, by term.
            let mut ord_of: HashMap<String, u32> = HashMap::new();
            {
                let mut terms = data.inverted[RAW].terms().stream()?;
                while terms.advance() {
                    if let Ok(t) = std::str::from_utf8(terms.key()) {
                        ord_of.insert(t.to_owned(), terms.term_ord() as u32);
                    }
                }
            }
            let mut folded = index.tokenizer_for_field(raw)?;
            let mut words = |text: &str, out: &mut Vec<u32>| {
                let mut stream = folded.token_stream(text);
                while stream.advance() {
                    out.extend(ord_of.get(&stream.token().text));
                }
            };
            data.names.starts.push(0);
            for doc in 0..max_doc {
                let o = column.first(doc).unwrap_or(0) as u32;
                let d = &docs[o as usize];
                let names = &mut data.names;
                words(&d.name, &mut names.ords);
                let own_len = names.ords.len() - *names.starts.last().unwrap_or(&0) as usize;
                names.own_lens.push(own_len.min(255) as u8);
                words(&d.organization, &mut names.ords);
                words(&d.town, &mut names.ords);
                names.starts.push(names.ords.len() as u32);
                data.ords.push(o);
                data.areas.push(d.areas);
                data.languages.push(doc_languages[o as usize]);
                data.xyz.push(match d.point {
                    Some(p) => to_xyz(&p).map(|v| v as f32),
                    None => [f32::NAN; 3],
                });
                data.keys.push(key_of(d.point));
            }
            let mut start = 0;
            for doc in 1..=max_doc {
                if doc == max_doc || data.keys[doc as usize] < data.keys[doc as usize - 1] {
                    data.runs.push((start, doc));
                    start = doc;
                }
            }
            segment_data.push(data);
        }
        let mut norms = [[0f32; 256]; TEXT_FIELDS];
        for (slot, cache) in norms.iter_mut().enumerate() {
            let average = tokens[slot] as f32 / total_docs.max(1) as f32;
            for (id, v) in cache.iter_mut().enumerate() {
                let fieldnorm = FieldNormReader::id_to_fieldnorm(id as u8) as f32;
                *v = K1 * (1.0 - B + B * fieldnorm / average);
            }
        }
        tracing::debug!(
            segments = segment_data.len(),
            runs = segment_data.iter().map(|s| s.runs.len()).sum::<usize>(),
            "directory index laid out"
        );
        Ok(DirectoryIndex {
            docs,
            by_id,
            rtree: RTree::bulk_load(points),
            fields,
            index,
            segments: segment_data,
            stats: TextStats { total_docs, norms },
            language_bits,
        })
    }

    /// An index of nothing.
    pub fn empty() -> Result<DirectoryIndex, IndexError> {
        DirectoryIndex::build(Vec::new())
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The indexed record of a service.
    pub fn get(&self, id: &str) -> Option<&ServiceDoc> {
        let i = self.by_id.binary_search_by(|&i| self.docs[i as usize].id.as_str().cmp(id)).ok()?;
        Some(&self.docs[self.by_id[i] as usize])
    }

    /// How many runs of document ids the layout has (one per segment the writer made):
    /// a radius becomes this many ranges per band.
    pub fn layout_runs(&self) -> usize {
        self.segments.iter().map(|s| s.runs.len()).sum()
    }

    /// Tokens of `text` as the text field in `slot` indexes them.
    pub(crate) fn tokens(&self, slot: usize, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(mut a) = self.index.tokenizer_for_field(self.fields.text[slot]) {
            let mut stream = a.token_stream(text);
            while stream.advance() {
                out.push(stream.token().text.clone());
            }
        }
        out
    }
}

impl DirectoryIndex {
    /// What the index holds, part by part, in lines of text (`examples/dirmem.rs` prints them).
    pub fn memory_report(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mib = |b: usize| b as f64 / 1048576.0;
        if let Ok(reader) = self.index.reader() {
            if let Ok(u) = reader.searcher().space_usage() {
                out.push(format!("tantivy total {:.1} MiB", mib(u.total().get_bytes() as usize)));
                for s in u.segments() {
                    out.push(format!(
                        "  segment docs {} termdict {:.1} postings {:.1} positions {:.1} fast {:.1} fieldnorms {:.1} store {:.1}",
                        s.num_docs(),
                        mib(s.termdict().total().get_bytes() as usize),
                        mib(s.postings().total().get_bytes() as usize),
                        mib(s.positions().total().get_bytes() as usize),
                        mib(s.fast_fields().total().get_bytes() as usize),
                        mib(s.fieldnorms().total().get_bytes() as usize),
                        mib(s.store().total().get_bytes() as usize),
                    ));
                    for (f, fu) in s.postings().fields() {
                        out.push(format!(
                            "    postings {:?} {:.1}",
                            self.index.schema().get_field_name(*f),
                            mib(fu.total().get_bytes() as usize)
                        ));
                    }
                    for (f, fu) in s.termdict().fields() {
                        out.push(format!(
                            "    termdict {:?} {:.1}",
                            self.index.schema().get_field_name(*f),
                            mib(fu.total().get_bytes() as usize)
                        ));
                    }
                }
            }
        }
        let dir = self.index.directory();
        let mut files = 0usize;
        for p in dir.list_managed_files() {
            if let Ok(f) = tantivy::Directory::open_read(dir, &p) {
                files += tantivy::HasLen::len(&f);
            }
        }
        out.push(format!("ram directory files {:.1} MiB", mib(files)));
        let seg: usize = self
            .segments
            .iter()
            .map(|s| {
                s.ords.capacity() * 4
                    + s.areas.capacity()
                    + s.languages.capacity() * 8
                    + s.xyz.capacity() * 12
                    + s.keys.capacity() * 8
                    + s.names.ords.capacity() * 4
                    + s.names.starts.capacity() * 4
                    + s.names.own_lens.capacity()
            })
            .sum();
        out.push(format!("segment columns {:.1} MiB", mib(seg)));
        out.push(format!("rtree points {} (~{:.1} MiB)", self.rtree.size(), mib(self.rtree.size() * 32 * 2)));
        out.push(format!("by_id {} entries", self.by_id.len()));
        let mut texts = std::collections::HashSet::new();
        let mut uniq = 0usize;
        for d in &self.docs {
            for t in [&d.organization, &d.description, &d.address, &d.town, &d.postal_code, &d.language_text] {
                if texts.insert(std::sync::Arc::as_ptr(t) as *const u8 as usize) {
                    uniq += t.len();
                }
            }
        }
        out.push(format!("distinct shared texts {} ({:.1} MiB)", texts.len(), mib(uniq)));
        out
    }
}
