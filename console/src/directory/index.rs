//! The in-memory search index over the directory: a tantivy index in RAM for the text, an R-tree
//! of the services' positions for distance, and the flat service records for filters and answers.
//! Built whole from a [`Dataset`](super::dataset::Dataset) (the database is the source of truth)
//! and swapped atomically by [`Directory`](super::Directory) when the data changes.

use super::docs::ServiceDoc;
use ivr::geo::GeoPoint;
use rstar::primitives::GeomWithData;
use rstar::RTree;
use std::collections::HashMap;
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STRING};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language as StemLanguage, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer,
};
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument};

/// Why the index could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
}

/// The four stemmed text fields, one per language the helpline speaks.
pub(crate) const STEMMED: [(&str, StemLanguage); 4] = [
    ("text_it", StemLanguage::Italian),
    ("text_en", StemLanguage::English),
    ("text_fr", StemLanguage::French),
    ("text_es", StemLanguage::Spanish),
];

pub(crate) type IndexedPoint = GeomWithData<[f64; 3], u32>;

/// The tantivy fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    /// Name, organization, description and town; folded, not stemmed: typos and prefixes.
    pub raw: Field,
    /// Service and organization name, folded: a name match ranks higher.
    pub name: Field,
    pub stemmed: [Field; 4],
    /// The grid cell of the position ([`cell_key`]): lets a radius narrow the text matches
    /// inside tantivy instead of after it.
    pub cell: Field,
}

/// Grid cell size in degrees (about 28 km north–south, 20 km east–west in Italy).
pub(crate) const CELL_DEGREES: f64 = 0.25;

/// The grid cell key of a position.
pub(crate) fn cell_key(lat_cell: i32, lng_cell: i32) -> String {
    format!("{lat_cell}:{lng_cell}")
}

pub(crate) fn cell_of(p: &GeoPoint) -> (i32, i32) {
    ((p.lat / CELL_DEGREES).floor() as i32, (p.lng / CELL_DEGREES).floor() as i32)
}

/// The searchable directory at one moment. Cheap to share (`Arc<DirectoryIndex>`), searched
/// synchronously from any thread.
pub struct DirectoryIndex {
    pub(crate) docs: Vec<ServiceDoc>,
    pub(crate) by_id: HashMap<String, u32>,
    pub(crate) rtree: RTree<IndexedPoint>,
    pub(crate) fields: Fields,
    pub(crate) index: Index,
    pub(crate) reader: IndexReader,
    /// Language codes → bit, for the "language spoken" filter.
    pub(crate) language_bits: HashMap<String, u64>,
    pub(crate) doc_languages: Vec<u64>,
}

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
        let name = sb.add_text_field("name", text("folded"));
        let stemmed = STEMMED.map(|(f, _)| sb.add_text_field(f, text(f)));
        let cell = sb.add_text_field("cell", STRING);
        let index = Index::create_in_ram(sb.build());
        index.tokenizers().register("folded", analyzer(None));
        for (f, lang) in STEMMED {
            index.tokenizers().register(f, analyzer(Some(lang)));
        }
        let fields = Fields { raw, name, stemmed, cell };
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4);
        let mut writer = index.writer_with_num_threads::<TantivyDocument>(threads, 50_000_000 * threads)?;
        let mut language_bits: HashMap<String, u64> = HashMap::new();
        let mut doc_languages = Vec::with_capacity(docs.len());
        let mut points = Vec::with_capacity(docs.len());
        let mut by_id = HashMap::with_capacity(docs.len());
        for (i, d) in docs.iter().enumerate() {
            let mut doc = TantivyDocument::default();
            doc.add_u64(ord, i as u64);
            let all = format!("{} {} {} {}", d.name, d.organization, d.description, d.town);
            doc.add_text(raw, &all);
            doc.add_text(name, format!("{} {}", d.name, d.organization));
            for f in stemmed {
                doc.add_text(f, &all);
            }
            if let Some(p) = d.point {
                let (a, b) = cell_of(&p);
                doc.add_text(cell, cell_key(a, b));
            }
            writer.add_document(doc)?;
            let mut mask = 0u64;
            for code in &d.languages {
                let next = language_bits.len();
                if let Some(bit) = language_bits.get(code) {
                    mask |= bit;
                } else if next < 64 {
                    language_bits.insert(code.clone(), 1 << next);
                    mask |= 1 << next;
                }
            }
            doc_languages.push(mask);
            if let Some(p) = d.point {
                points.push(GeomWithData::new(to_xyz(&p), i as u32));
            }
            by_id.insert(d.id.clone(), i as u32);
        }
        writer.commit()?;
        // One segment: every query walks each segment's term dictionary (fuzzy and prefix terms
        // most of all), so one is faster than the few the indexing threads leave.
        let segments = index.searchable_segment_ids()?;
        if segments.len() > 1 {
            writer.merge(&segments).wait()?;
        }
        writer.wait_merging_threads()?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(DirectoryIndex {
            docs,
            by_id,
            rtree: RTree::bulk_load(points),
            fields,
            index,
            reader,
            language_bits,
            doc_languages,
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
        self.by_id.get(id).map(|&i| &self.docs[i as usize])
    }

    /// Tokens of `text` as the field `field` indexes them.
    pub(crate) fn tokens(&self, field: Field, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(mut a) = self.index.tokenizer_for_field(field) {
            let mut stream = a.token_stream(text);
            while stream.advance() {
                out.push(stream.token().text.clone());
            }
        }
        out
    }
}
