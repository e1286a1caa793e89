//! From the HSDS tables to one flat record per service, the shape the search needs: name,
//! organization, description, street address and town, position, areas, languages (codes, and
//! the names and notes an operator may type), first phone and weekly hours. Positions missing
//! from the data are taken from the gazetteer (postal code, then town).

use super::builder::language_name;
use super::dataset::{parse_byday, time_minutes, Dataset};
use super::opening::{Range, WeeklyHours};
use super::schema::{self, Table};
use ivr::domain::{Cap, ServiceArea};
use ivr::geo::{CapLocation, Gazetteer, GeoPoint};
use std::collections::HashMap;

/// One service as the search sees it.
#[derive(Debug, Clone)]
pub struct ServiceDoc {
    pub id: String,
    pub name: String,
    pub organization: String,
    pub description: String,
    /// The street address (`Via Gramsci 17`), empty when the data has none.
    pub address: String,
    pub town: String,
    pub postal_code: String,
    pub point: Option<GeoPoint>,
    /// Bit `i` set when the service is in `ServiceArea::ALL[i]`.
    pub areas: u8,
    /// Language codes spoken (`it`, `ar`, …).
    pub languages: Vec<String>,
    /// What the language rows say in words: the names of the languages spoken besides Italian
    /// (`arabo`; the code's Italian name when the row has none) and every note (`mediatrice il
    /// martedì`). Italian is left out: every service speaks it, so the word `italiano` would
    /// match them all instead of the Italian courses.
    pub language_text: String,
    pub phone: String,
    pub hours: WeeklyHours,
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
    let svc = Cols(&schema::SERVICE);
    let org = Cols(&schema::ORGANIZATION);
    let loc = Cols(&schema::LOCATION);
    let sal = Cols(&schema::SERVICE_AT_LOCATION);
    let adr = Cols(&schema::ADDRESS);
    let ph = Cols(&schema::PHONE);
    let sch = Cols(&schema::SCHEDULE);
    let lang = Cols(&schema::LANGUAGE);
    let term = Cols(&schema::TAXONOMY_TERM);
    let attr = Cols(&schema::ATTRIBUTE);

    let orgs: HashMap<&str, &str> =
        data.rows("organization").iter().filter_map(|r| Some((r.get(0)?, r.get(org.ix("name"))?))).collect();
    let locations: HashMap<&str, &super::dataset::Row> =
        data.rows("location").iter().filter_map(|r| Some((r.get(0)?, r))).collect();
    let mut address_of: HashMap<&str, &super::dataset::Row> = HashMap::new();
    for r in data.rows("address") {
        if let Some(l) = r.get(adr.ix("location_id")) {
            address_of.entry(l).or_insert(r);
        }
    }
    let mut location_of: HashMap<&str, &str> = HashMap::new();
    let mut sal_to_service: HashMap<&str, &str> = HashMap::new();
    for r in data.rows("service_at_location") {
        if let (Some(id), Some(s), Some(l)) = (r.get(0), r.get(sal.ix("service_id")), r.get(sal.ix("location_id"))) {
            location_of.entry(s).or_insert(l);
            sal_to_service.insert(id, s);
        }
    }
    let service_of = |r: &super::dataset::Row, c: &Cols| -> Option<String> {
        r.get(c.ix("service_id"))
            .or_else(|| r.get(c.ix("service_at_location_id")).and_then(|s| sal_to_service.get(s).copied()))
            .map(str::to_owned)
    };
    let mut phone_of: HashMap<String, &str> = HashMap::new();
    for r in data.rows("phone") {
        if let (Some(s), Some(n)) = (service_of(r, &ph), r.get(ph.ix("number"))) {
            phone_of.entry(s).or_insert(n);
        }
    }
    let mut location_phone: HashMap<&str, &str> = HashMap::new();
    for r in data.rows("phone") {
        if let (Some(l), Some(n)) = (r.get(ph.ix("location_id")), r.get(ph.ix("number"))) {
            location_phone.entry(l).or_insert(n);
        }
    }
    let mut hours_of: HashMap<String, WeeklyHours> = HashMap::new();
    for r in data.rows("schedule") {
        let Some(s) = service_of(r, &sch) else { continue };
        let (Some(open), Some(close)) =
            (r.get(sch.ix("opens_at")).and_then(time_minutes), r.get(sch.ix("closes_at")).and_then(time_minutes))
        else {
            continue;
        };
        let h = hours_of.entry(s).or_default();
        if let Some(tz) = r.get(sch.ix("timezone")).and_then(|t| t.parse().ok()) {
            h.tz = tz;
        }
        let date = |c: &str| r.get(sch.ix(c)).and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        if let Some(d) = date("valid_from") {
            h.valid_from = Some(d);
        }
        if let Some(d) = date("valid_to") {
            h.valid_to = Some(d);
        }
        let days: Vec<u8> = match r.get(sch.ix("byday")) {
            Some(b) => b.split(',').filter_map(|d| parse_byday(d.trim())).collect(),
            None => (0..7).collect(),
        };
        for day in days {
            h.ranges.push(Range { day, open, close: if close == 1440 { 1440 } else { close } });
        }
    }
    let mut languages_of: HashMap<&str, Vec<String>> = HashMap::new();
    let mut language_text_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for r in data.rows("language") {
        if let (Some(s), Some(code)) = (r.get(lang.ix("service_id")), r.get(lang.ix("code"))) {
            let code = code.to_ascii_lowercase();
            let words = language_text_of.entry(s).or_default();
            if code != "it" {
                words.push(r.get(lang.ix("name")).unwrap_or_else(|| language_name(&code)));
            }
            words.extend(r.get(lang.ix("note")));
            languages_of.entry(s).or_default().push(code);
        }
    }
    let area_terms: HashMap<&str, u8> = data
        .rows("taxonomy_term")
        .iter()
        .filter_map(|r| {
            let area = ServiceArea::parse(r.get(term.ix("code"))?).ok()?;
            Some((r.get(0)?, area_bit(area)))
        })
        .collect();
    let mut areas_of: HashMap<&str, u8> = HashMap::new();
    for r in data.rows("attribute") {
        if r.get(attr.ix("link_entity")) != Some("service") {
            continue;
        }
        if let (Some(s), Some(bit)) =
            (r.get(attr.ix("link_id")), r.get(attr.ix("taxonomy_term_id")).and_then(|t| area_terms.get(t)))
        {
            *areas_of.entry(s).or_default() |= bit;
        }
    }

    let mut docs: Vec<ServiceDoc> = data
        .rows("service")
        .iter()
        .filter(|r| r.get(svc.ix("status")).is_none_or(|s| s == "active"))
        .filter_map(|r| {
            let id = r.get(0)?;
            let location_id = location_of.get(id).copied();
            let location = location_id.and_then(|l| locations.get(l));
            let address = location_id.and_then(|l| address_of.get(l));
            let town = address.and_then(|a| a.get(adr.ix("city"))).unwrap_or("").to_owned();
            let street = address.and_then(|a| a.get(adr.ix("address_1"))).unwrap_or("").to_owned();
            let postal_code = address.and_then(|a| a.get(adr.ix("postal_code"))).unwrap_or("").to_owned();
            let stored = location.and_then(|l| {
                let lat = l.get(loc.ix("latitude"))?.parse().ok()?;
                let lng = l.get(loc.ix("longitude"))?.parse().ok()?;
                Some(GeoPoint::new(lat, lng))
            });
            let point = stored.or_else(|| geocode(gazetteer, &postal_code, &town));
            let phone = phone_of
                .get(id)
                .copied()
                .or_else(|| location_id.and_then(|l| location_phone.get(l).copied()))
                .unwrap_or("")
                .to_owned();
            Some(ServiceDoc {
                id: id.to_owned(),
                name: r.get(svc.ix("name")).unwrap_or("").to_owned(),
                organization: r
                    .get(svc.ix("organization_id"))
                    .and_then(|o| orgs.get(o))
                    .copied()
                    .unwrap_or("")
                    .to_owned(),
                description: r.get(svc.ix("description")).unwrap_or("").to_owned(),
                address: street,
                town,
                postal_code,
                point,
                areas: areas_of.get(id).copied().unwrap_or(0),
                languages: languages_of.remove(id).unwrap_or_default(),
                language_text: language_text_of.remove(id).unwrap_or_default().join(" "),
                phone,
                hours: hours_of.remove(id).unwrap_or_default(),
            })
        })
        .collect();
    docs.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    docs
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
