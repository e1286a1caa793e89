//! Turns the simple description of one service (what an organization's spreadsheet row says, or
//! what the demo generator draws) into HSDS rows: organization, service, location, service at
//! location, address, phone, schedules, languages and area attributes.

use super::dataset::Dataset;
use super::opening::{byday, hhmm, HoursGroup};
use super::schema::{self, area_term_id, AREA_TAXONOMY_ID};
use ivr::domain::ServiceArea;
use ivr::geo::GeoPoint;
use std::collections::HashMap;

/// One service, flat.
#[derive(Debug, Clone, Default)]
pub struct FlatService {
    pub organization: String,
    pub name: String,
    pub description: String,
    pub areas: Vec<ServiceArea>,
    pub address: String,
    pub town: String,
    pub postal_code: String,
    /// Province code (`MI`).
    pub province: String,
    pub region: String,
    pub point: Option<GeoPoint>,
    pub phone: String,
    pub email: String,
    pub website: String,
    /// Codes (`it`, `ar`…).
    pub languages: Vec<String>,
    pub hours: Vec<HoursGroup>,
}

/// Adds the area taxonomy (one taxonomy, six terms) to `data`.
pub fn add_area_taxonomy(data: &mut Dataset) {
    data.push(
        &schema::TAXONOMY,
        &[
            ("id", AREA_TAXONOMY_ID),
            ("name", "Helpline service areas"),
            ("description", "The six service areas of the Portale Integrazione Migranti"),
            ("version", "1"),
        ],
    );
    for area in ServiceArea::ALL {
        let (name, description) = match area {
            ServiceArea::Lingua => ("Lingua italiana", "Corsi di italiano per stranieri"),
            ServiceArea::Lavoro => ("Lavoro", "Lavoro, orientamento e formazione"),
            ServiceArea::Casa => ("Casa", "Alloggio e accoglienza abitativa"),
            ServiceArea::Salute => ("Salute", "Servizi sanitari e socio-sanitari"),
            ServiceArea::Minori => ("Minori e seconde generazioni", "Minori, famiglie e seconde generazioni"),
            ServiceArea::Mediazione => ("Mediazione interculturale", "Mediazione linguistico-culturale"),
        };
        let id = area_term_id(area);
        data.push(
            &schema::TAXONOMY_TERM,
            &[
                ("id", &id),
                ("code", area.as_str()),
                ("name", name),
                ("description", description),
                ("taxonomy_id", AREA_TAXONOMY_ID),
                ("language", "it"),
            ],
        );
    }
}

/// Adds services to a dataset, sharing organizations by name.
pub struct Builder<'a> {
    pub data: Dataset,
    orgs: HashMap<String, String>,
    new_id: Box<dyn FnMut() -> String + 'a>,
}

impl<'a> Builder<'a> {
    /// A dataset with the area taxonomy; `new_id` gives every new row its id.
    pub fn new(new_id: impl FnMut() -> String + 'a) -> Builder<'a> {
        let mut data = Dataset::default();
        add_area_taxonomy(&mut data);
        Builder { data, orgs: HashMap::new(), new_id: Box::new(new_id) }
    }

    /// Adds one service; returns its id.
    pub fn add(&mut self, s: &FlatService) -> String {
        let org_id = match self.orgs.get(&s.organization) {
            Some(id) => id.clone(),
            None => {
                let id = (self.new_id)();
                self.data.push(&schema::ORGANIZATION, &[("id", &id), ("name", &s.organization)]);
                self.orgs.insert(s.organization.clone(), id.clone());
                id
            }
        };
        let service_id = (self.new_id)();
        self.data.push(
            &schema::SERVICE,
            &[
                ("id", &service_id),
                ("organization_id", &org_id),
                ("name", &s.name),
                ("description", &s.description),
                ("url", &s.website),
                ("email", &s.email),
                ("status", "active"),
            ],
        );
        let location_id = (self.new_id)();
        let (lat, lng) = s.point.map(|p| (format!("{:.6}", p.lat), format!("{:.6}", p.lng))).unwrap_or_default();
        self.data.push(
            &schema::LOCATION,
            &[
                ("id", &location_id),
                ("location_type", "physical"),
                ("organization_id", &org_id),
                ("name", &s.name),
                ("latitude", &lat),
                ("longitude", &lng),
            ],
        );
        let sal_id = (self.new_id)();
        self.data.push(
            &schema::SERVICE_AT_LOCATION,
            &[("id", &sal_id), ("service_id", &service_id), ("location_id", &location_id)],
        );
        let address_id = (self.new_id)();
        self.data.push(
            &schema::ADDRESS,
            &[
                ("id", &address_id),
                ("location_id", &location_id),
                ("address_1", &s.address),
                ("city", &s.town),
                ("region", &s.region),
                ("state_province", &s.province),
                ("postal_code", &s.postal_code),
                ("country", "IT"),
                ("address_type", "physical"),
            ],
        );
        if !s.phone.is_empty() {
            let phone_id = (self.new_id)();
            self.data.push(
                &schema::PHONE,
                &[("id", &phone_id), ("service_id", &service_id), ("number", &s.phone), ("type", "voice")],
            );
        }
        for (days, ranges) in &s.hours {
            for &(open, close) in ranges {
                let id = (self.new_id)();
                let (o, c) = (hhmm(open), hhmm(close));
                self.data.push(
                    &schema::SCHEDULE,
                    &[
                        ("id", &id),
                        ("service_id", &service_id),
                        ("timezone", "Europe/Rome"),
                        ("freq", "WEEKLY"),
                        ("byday", &byday(days)),
                        ("opens_at", &o),
                        ("closes_at", &c),
                    ],
                );
            }
        }
        for code in &s.languages {
            let id = (self.new_id)();
            let name = language_name(code);
            self.data
                .push(&schema::LANGUAGE, &[("id", &id), ("service_id", &service_id), ("code", code), ("name", name)]);
        }
        for area in &s.areas {
            let id = (self.new_id)();
            self.data.push(
                &schema::ATTRIBUTE,
                &[
                    ("id", &id),
                    ("link_id", &service_id),
                    ("link_entity", "service"),
                    ("link_type", "service_area"),
                    ("taxonomy_term_id", &area_term_id(*area)),
                ],
            );
        }
        service_id
    }
}

/// The Italian name of a language code, empty when unknown.
pub fn language_name(code: &str) -> &'static str {
    match code {
        "it" => "italiano",
        "en" => "inglese",
        "fr" => "francese",
        "es" => "spagnolo",
        "ar" => "arabo",
        "zh" => "cinese",
        "ro" => "rumeno",
        "sq" => "albanese",
        "uk" => "ucraino",
        "ru" => "russo",
        "bn" => "bengalese",
        "ur" => "urdu",
        "pa" => "punjabi",
        "ti" => "tigrino",
        "wo" => "wolof",
        "pt" => "portoghese",
        "tl" => "tagalog",
        "hi" => "hindi",
        "fa" => "persiano",
        "de" => "tedesco",
        _ => "",
    }
}
