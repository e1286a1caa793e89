//! From the HSDS tables to one flat record per service, the shape the search needs: name,
//! organization, description, street address and town, position, areas, languages (codes, and
//! the names and notes an operator may type), first phone and weekly hours. Positions missing
//! from the data are taken from the gazetteer (postal code, then town).

use super::builder::language_name;
use super::dataset::{parse_byday, time_minutes, Dataset, Row};
use super::opening::{Range, WeeklyHours};
use super::schema::{Table, TABLES};
use ivr::domain::{Cap, ServiceArea};
use ivr::geo::{CapLocation, Gazetteer, GeoPoint};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One service as the search sees it. The texts many services share (an organization, a town,
/// a description, a set of languages, opening hours) are shared in memory too: one copy each,
/// however many services say it (BENCHMARKS.md, "Memory").
#[derive(Debug, Clone)]
pub struct ServiceDoc {
    pub id: String,
    pub name: String,
    pub organization: Arc<str>,
    pub description: Arc<str>,
    /// The street address (`Via Gramsci 17`), empty when the data has none.
    pub address: Arc<str>,
    pub town: Arc<str>,
    pub postal_code: Arc<str>,
    pub point: Option<GeoPoint>,
    /// Bit `i` set when the service is in `ServiceArea::ALL[i]`.
    pub areas: u8,
    /// Language codes spoken (`it`, `ar`, …).
    pub languages: Arc<[String]>,
    /// What the language rows say in words: the names of the languages spoken besides Italian
    /// (`arabo`; the code's Italian name when the row has none) and every note (`mediatrice il
    /// martedì`). Italian is left out: every service speaks it, so the word `italiano` would
    /// match them all instead of the Italian courses.
    pub language_text: Arc<str>,
    pub phone: String,
    pub hours: Arc<WeeklyHours>,
}

impl ServiceDoc {
    /// Everything the text search reads: name, organization, description, town and languages.
    pub fn search_text(&self) -> String {
        format!("{} {} {} {} {}", self.name, self.organization, self.description, self.town, self.language_text)
    }

    /// The service's names: its own, its organization's and its town's.
    pub fn names_text(&self) -> String {
        format!("{} {} {}", self.name, self.organization, self.town)
    }

    pub fn area_list(&self) -> Vec<ServiceArea> {
        ServiceArea::ALL.iter().enumerate().filter(|(i, _)| self.areas & (1 << i) != 0).map(|(_, a)| *a).collect()
    }
}

pub fn area_bit(area: ServiceArea) -> u8 {
    1 << ServiceArea::ALL.iter().position(|a| *a == area).unwrap_or(0)
}

/// Column accessor for one table.
struct Cols(&'static Table);

impl Cols {
    fn ix(&self, name: &str) -> usize {
        self.0.column_index(name).unwrap_or(usize::MAX)
    }
}

/// One [`ServiceDoc`] per active service, sorted by name then id.
pub fn service_docs(data: &Dataset, gazetteer: &Gazetteer) -> Vec<ServiceDoc> {
    let mut docs = DocsBuilder::new(gazetteer);
    for (t, rows) in data.tables.iter().enumerate() {
        for r in rows {
            docs.add(t, r);
        }
    }
    docs.finish()
}

/// A service while its rows come in.
struct Partial {
    id: String,
    name: String,
    organization: Arc<str>,
    description: Arc<str>,
    areas: u8,
    languages: Vec<String>,
    hours: WeeklyHours,
    active: bool,
    /// Its first location (through `service_at_location`).
    location: Option<u32>,
    /// The names of the languages spoken (not Italian) and the notes of its language rows.
    language_words: Vec<String>,
    /// Its first phone.
    phone: Option<String>,
}

/// What a service takes from its location: the first address and the first phone.
#[derive(Default)]
struct Place {
    stored: Option<GeoPoint>,
    /// Street, town, postal code.
    address: Option<(Arc<str>, Arc<str>, Arc<str>)>,
    phone: Option<String>,
}

/// Builds the [`ServiceDoc`]s from the HSDS rows, fed one row at a time, table by table in the
/// order of [`TABLES`](super::schema::TABLES) (a table's rows may refer to those of the tables
/// before it): so the server builds its index from rows streamed from the database without
/// holding the whole directory's rows at once (≈ 4.4 KB of rows per service; BENCHMARKS.md,
/// "Memory"). What it keeps meanwhile is the services themselves and, per location and per
/// organization, only what a service takes from them.
pub struct DocsBuilder<'g> {
    gazetteer: &'g Gazetteer,
    orgs: HashMap<String, String>,
    services: Vec<Partial>,
    service_ix: HashMap<String, u32>,
    places: Vec<Place>,
    location_ix: HashMap<String, u32>,
    sal_to_service: HashMap<String, u32>,
    area_terms: HashMap<String, u8>,
    shared: Shared,
}

/// One copy of each text (and language list, and weekly hours) the services share.
#[derive(Default)]
struct Shared {
    texts: HashSet<Arc<str>>,
    languages: HashSet<Arc<[String]>>,
    hours: HashMap<WeeklyHoursKey, Arc<WeeklyHours>>,
}

/// Weekly hours as a map key (their time zone by name).
#[derive(PartialEq, Eq, Hash)]
struct WeeklyHoursKey(Vec<(u8, u16, u16)>, Option<chrono::NaiveDate>, Option<chrono::NaiveDate>, &'static str);

impl Shared {
    fn text(&mut self, s: &str) -> Arc<str> {
        if let Some(t) = self.texts.get(s) {
            return t.clone();
        }
        let t: Arc<str> = s.into();
        self.texts.insert(t.clone());
        t
    }

    fn languages(&mut self, codes: Vec<String>) -> Arc<[String]> {
        if let Some(l) = self.languages.get(codes.as_slice()) {
            return l.clone();
        }
        let l: Arc<[String]> = codes.into();
        self.languages.insert(l.clone());
        l
    }

    fn hours(&mut self, h: WeeklyHours) -> Arc<WeeklyHours> {
        let key = WeeklyHoursKey(
            h.ranges.iter().map(|r| (r.day, r.open, r.close)).collect(),
            h.valid_from,
            h.valid_to,
            h.tz.name(),
        );
        self.hours.entry(key).or_insert_with(|| Arc::new(h)).clone()
    }
}

impl<'g> DocsBuilder<'g> {
    pub fn new(gazetteer: &'g Gazetteer) -> DocsBuilder<'g> {
        DocsBuilder {
            gazetteer,
            orgs: HashMap::new(),
            services: Vec::new(),
            service_ix: HashMap::new(),
            places: Vec::new(),
            location_ix: HashMap::new(),
            sal_to_service: HashMap::new(),
            area_terms: HashMap::new(),
            shared: Shared::default(),
        }
    }

    /// The service a row of `c`'s table belongs to: its `service_id`, else its
    /// `service_at_location_id`'s.
    fn service_of(&self, r: &Row, c: &Cols) -> Option<u32> {
        match r.get(c.ix("service_id")) {
            Some(s) => self.service_ix.get(s).copied(),
            None => r.get(c.ix("service_at_location_id")).and_then(|s| self.sal_to_service.get(s).copied()),
        }
    }

    /// The place of a location id, made if new.
    fn place(&mut self, id: &str) -> usize {
        match self.location_ix.get(id) {
            Some(&l) => l as usize,
            None => {
                self.location_ix.insert(id.to_owned(), self.places.len() as u32);
                self.places.push(Place::default());
                self.places.len() - 1
            }
        }
    }

    /// One row of the table `TABLES[table]`.
    pub fn add(&mut self, table: usize, r: &Row) {
        let Some(t) = TABLES.get(table) else { return };
        let c = Cols(t);
        match t.name {
            "organization" => {
                if let (Some(id), Some(name)) = (r.get(0), r.get(c.ix("name"))) {
                    self.orgs.insert(id.to_owned(), name.to_owned());
                }
            }
            "service" => {
                let Some(id) = r.get(0) else { return };
                let organization =
                    r.get(c.ix("organization_id")).and_then(|o| self.orgs.get(o)).map(String::as_str).unwrap_or("");
                let organization = self.shared.text(organization);
                let description = self.shared.text(r.get(c.ix("description")).unwrap_or(""));
                self.service_ix.insert(id.to_owned(), self.services.len() as u32);
                self.services.push(Partial {
                    id: id.to_owned(),
                    name: r.get(c.ix("name")).unwrap_or("").to_owned(),
                    organization,
                    description,
                    areas: 0,
                    languages: Vec::new(),
                    hours: WeeklyHours::default(),
                    active: r.get(c.ix("status")).is_none_or(|s| s == "active"),
                    location: None,
                    language_words: Vec::new(),
                    phone: None,
                });
            }
            "location" => {
                let Some(id) = r.get(0) else { return };
                let stored = (|| {
                    let lat = r.get(c.ix("latitude"))?.parse().ok()?;
                    let lng = r.get(c.ix("longitude"))?.parse().ok()?;
                    Some(GeoPoint::new(lat, lng))
                })();
                let l = self.place(id);
                self.places[l].stored = stored;
            }
            "service_at_location" => {
                if let (Some(id), Some(s), Some(l)) = (r.get(0), r.get(c.ix("service_id")), r.get(c.ix("location_id")))
                {
                    let Some(&s) = self.service_ix.get(s) else { return };
                    let l = self.place(l) as u32;
                    self.services[s as usize].location.get_or_insert(l);
                    self.sal_to_service.insert(id.to_owned(), s);
                }
            }
            "address" => {
                if let Some(l) = r.get(c.ix("location_id")) {
                    let l = self.place(l);
                    if self.places[l].address.is_none() {
                        let shared = &mut self.shared;
                        let mut text = |name: &str| shared.text(r.get(c.ix(name)).unwrap_or(""));
                        let address = (text("address_1"), text("city"), text("postal_code"));
                        self.places[l].address = Some(address);
                    }
                }
            }
            "phone" => {
                let Some(number) = r.get(c.ix("number")) else { return };
                if let Some(s) = self.service_of(r, &c) {
                    self.services[s as usize].phone.get_or_insert_with(|| number.to_owned());
                }
                if let Some(l) = r.get(c.ix("location_id")) {
                    let l = self.place(l);
                    self.places[l].phone.get_or_insert_with(|| number.to_owned());
                }
            }
            "schedule" => {
                let Some(s) = self.service_of(r, &c) else { return };
                let (Some(open), Some(close)) =
                    (r.get(c.ix("opens_at")).and_then(time_minutes), r.get(c.ix("closes_at")).and_then(time_minutes))
                else {
                    return;
                };
                let h = &mut self.services[s as usize].hours;
                if let Some(tz) = r.get(c.ix("timezone")).and_then(|t| t.parse().ok()) {
                    h.tz = tz;
                }
                let date =
                    |col: &str| r.get(c.ix(col)).and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
                if let Some(d) = date("valid_from") {
                    h.valid_from = Some(d);
                }
                if let Some(d) = date("valid_to") {
                    h.valid_to = Some(d);
                }
                let days: Vec<u8> = match r.get(c.ix("byday")) {
                    Some(b) => b.split(',').filter_map(|d| parse_byday(d.trim())).collect(),
                    None => (0..7).collect(),
                };
                for day in days {
                    h.ranges.push(Range { day, open, close: if close == 1440 { 1440 } else { close } });
                }
            }
            "language" => {
                let (Some(s), Some(code)) = (r.get(c.ix("service_id")), r.get(c.ix("code"))) else { return };
                let Some(&s) = self.service_ix.get(s) else { return };
                let code = code.to_ascii_lowercase();
                let service = &mut self.services[s as usize];
                if code != "it" {
                    service.language_words.push(r.get(c.ix("name")).unwrap_or_else(|| language_name(&code)).to_owned());
                }
                service.language_words.extend(r.get(c.ix("note")).map(str::to_owned));
                service.languages.push(code);
            }
            "taxonomy_term" => {
                if let (Some(id), Some(Ok(area))) = (r.get(0), r.get(c.ix("code")).map(ServiceArea::parse)) {
                    self.area_terms.insert(id.to_owned(), area_bit(area));
                }
            }
            "attribute" => {
                if r.get(c.ix("link_entity")) != Some("service") {
                    return;
                }
                if let (Some(&s), Some(&bit)) = (
                    r.get(c.ix("link_id")).and_then(|s| self.service_ix.get(s)),
                    r.get(c.ix("taxonomy_term_id")).and_then(|t| self.area_terms.get(t)),
                ) {
                    self.services[s as usize].areas |= bit;
                }
            }
            _ => {}
        }
    }

    /// The active services' records, sorted by name then id.
    pub fn finish(self) -> Vec<ServiceDoc> {
        let DocsBuilder { gazetteer, services, places, mut shared, .. } = self;
        let empty = shared.text("");
        let mut docs: Vec<ServiceDoc> = services
            .into_iter()
            .filter(|p| p.active)
            .map(|p| {
                let place = p.location.map(|l| &places[l as usize]);
                let (address, town, postal_code) = match place.and_then(|p| p.address.as_ref()) {
                    Some(a) => a.clone(),
                    None => (empty.clone(), empty.clone(), empty.clone()),
                };
                let point = place.and_then(|p| p.stored).or_else(|| geocode(gazetteer, &postal_code, &town));
                let phone = p.phone.as_ref().or(place.and_then(|p| p.phone.as_ref())).cloned().unwrap_or_default();
                ServiceDoc {
                    id: p.id,
                    name: p.name,
                    organization: p.organization,
                    description: p.description,
                    address,
                    town,
                    postal_code,
                    point,
                    areas: p.areas,
                    languages: shared.languages(p.languages),
                    language_text: shared.text(&p.language_words.join(" ")),
                    phone,
                    hours: shared.hours(p.hours),
                }
            })
            .collect();
        docs.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        docs
    }
}

/// The position of a postal code (exact or its area), else of a town by name.
pub fn geocode(gazetteer: &Gazetteer, postal_code: &str, town: &str) -> Option<GeoPoint> {
    if let Ok(cap) = Cap::parse(postal_code) {
        match gazetteer.locate_cap(&cap) {
            CapLocation::Exact { comuni } => {
                if let Some(c) = comuni.iter().find(|c| c.name.eq_ignore_ascii_case(town)).or(comuni.first()) {
                    return Some(c.point);
                }
            }
            CapLocation::PrefixArea { centroid, .. } => {
                if let Some(c) = gazetteer.comune_by_name(town).first() {
                    return Some(c.point);
                }
                return Some(centroid);
            }
            CapLocation::Unknown => {}
        }
    }
    gazetteer.comune_by_name(town).first().map(|c| c.point)
}
