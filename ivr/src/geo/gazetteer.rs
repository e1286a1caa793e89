//! The gazetteer: the 7,896 Italian municipalities shipped in `ivr/data/comuni-ita/comuni.json`,
//! indexed by postal code (CAP), CAP area (first three digits), telephone area code (prefisso) and
//! name.

use super::GeoPoint;
use crate::domain::Cap;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The municipalities data compiled into the binary (ISTAT via the Comuni-ITA project, MIT).
const EMBEDDED_COMUNI: &str = include_str!("../../data/comuni-ita/comuni.json");

/// Why municipalities data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("municipalities data is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
}

/// A province (or metropolitan city).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct Province {
    pub nome: String,
    pub sigla: String,
    pub codice: String,
    pub regione: String,
}

/// One municipality.
#[derive(Debug, Clone, PartialEq)]
pub struct Comune {
    /// ISTAT code, e.g. `013075` for Como.
    pub code: String,
    pub name: String,
    /// The one CAP the data lists (big cities have more, not listed). `None` when the data's
    /// value is not a valid CAP (one record, Ozzano dell'Emilia, has `8604`).
    pub cap: Option<Cap>,
    /// Telephone area code with its leading 0 (`031`), empty when unknown.
    pub prefisso: String,
    pub province: Province,
    pub population: u32,
    pub point: GeoPoint,
}

/// Where a CAP is.
#[derive(Debug, Clone, PartialEq)]
pub enum CapLocation<'a> {
    /// The CAP is listed: these municipalities have it, most populous first.
    Exact { comuni: Vec<&'a Comune> },
    /// The CAP is not listed but its first three digits are: the CAP area, named after its most
    /// populous municipality, with its population-weighted centroid.
    PrefixArea { label: &'a str, centroid: GeoPoint, province: &'a Province },
    /// Neither the CAP nor its area exists in the data.
    Unknown,
}

/// The province a landline area code most likely belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvinceGuess {
    /// The matched area code (`031`).
    pub prefisso: String,
    /// The most populous province among those sharing the area code.
    pub province: Province,
    /// The province's most populous municipality with this area code (`Como`), a good label.
    pub main_comune: String,
    /// Population-weighted centroid of the province's municipalities with this area code.
    pub centroid: GeoPoint,
    /// The other provinces sharing the area code (sigle, most populous first): the guess is
    /// uncertain when this is not empty.
    pub shared_with: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawComune {
    codice: String,
    nome: String,
    cap: String,
    #[serde(default)]
    prefisso: Option<String>,
    provincia: Province,
    #[serde(default)]
    popolazione: Option<u64>,
    coordinate: RawPoint,
}

#[derive(Debug, Deserialize)]
struct RawPoint {
    lat: f64,
    lng: f64,
}

#[derive(Debug, Clone)]
struct PrefixArea {
    label_ix: usize,
    centroid: GeoPoint,
}

/// Municipalities and their indexes. Build one with [`Gazetteer::from_json`] or use the embedded
/// data through [`Gazetteer::embedded`].
#[derive(Debug, Default)]
pub struct Gazetteer {
    comuni: Vec<Comune>,
    by_cap: HashMap<Cap, Vec<usize>>,
    by_cap_area: HashMap<String, PrefixArea>,
    by_prefisso: HashMap<String, ProvinceGuess>,
    by_name: HashMap<String, Vec<usize>>,
}

/// Population-weighted centroid (plain mean when every weight is 0).
fn centroid<'a>(items: impl Iterator<Item = &'a Comune> + Clone) -> GeoPoint {
    let total: f64 = items.clone().map(|c| f64::from(c.population)).sum();
    let (mut lat, mut lng, mut n) = (0.0, 0.0, 0.0);
    for c in items {
        let w = if total > 0.0 { f64::from(c.population) } else { 1.0 };
        lat += c.point.lat * w;
        lng += c.point.lng * w;
        n += w;
    }
    if n > 0.0 {
        GeoPoint::new(lat / n, lng / n)
    } else {
        GeoPoint::new(0.0, 0.0)
    }
}

fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

impl Gazetteer {
    /// The embedded municipalities, parsed once. Should the embedded data ever fail to parse (a
    /// test guards against it), an empty gazetteer is returned rather than a panic: every CAP is
    /// then unknown and callers are asked again or routed to an operator.
    pub fn embedded() -> &'static Gazetteer {
        static EMBEDDED: OnceLock<Gazetteer> = OnceLock::new();
        EMBEDDED.get_or_init(|| Gazetteer::from_json(EMBEDDED_COMUNI).unwrap_or_default())
    }

    /// Parses municipalities in the Comuni-ITA JSON shape and builds the indexes.
    pub fn from_json(json: &str) -> Result<Gazetteer, GeoError> {
        let raw: Vec<RawComune> = serde_json::from_str(json)?;
        let mut comuni = Vec::with_capacity(raw.len());
        for r in raw {
            comuni.push(Comune {
                code: r.codice,
                name: r.nome,
                cap: Cap::parse(&r.cap).ok(),
                prefisso: r.prefisso.unwrap_or_default(),
                province: r.provincia,
                population: u32::try_from(r.popolazione.unwrap_or(0)).unwrap_or(u32::MAX),
                point: GeoPoint::new(r.coordinate.lat, r.coordinate.lng),
            });
        }
        Ok(Gazetteer::from_comuni(comuni))
    }

    /// Builds the indexes over already-parsed municipalities.
    pub fn from_comuni(comuni: Vec<Comune>) -> Gazetteer {
        // Most populous first everywhere, so "the first" is always the best label.
        let mut order: Vec<usize> = (0..comuni.len()).collect();
        order.sort_by(|&a, &b| {
            comuni[b].population.cmp(&comuni[a].population).then(comuni[a].code.cmp(&comuni[b].code))
        });

        let mut by_cap: HashMap<Cap, Vec<usize>> = HashMap::new();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut area_members: HashMap<String, Vec<usize>> = HashMap::new();
        let mut prefisso_members: HashMap<String, Vec<usize>> = HashMap::new();
        for &i in &order {
            let c = &comuni[i];
            by_name.entry(name_key(&c.name)).or_default().push(i);
            if let Some(cap) = c.cap {
                by_cap.entry(cap).or_default().push(i);
                area_members.entry(cap.prefix3().to_owned()).or_default().push(i);
            }
            if !c.prefisso.is_empty() {
                prefisso_members.entry(c.prefisso.clone()).or_default().push(i);
            }
        }

        let by_cap_area = area_members
            .into_iter()
            .map(|(prefix, members)| {
                let area = PrefixArea { label_ix: members[0], centroid: centroid(members.iter().map(|&i| &comuni[i])) };
                (prefix, area)
            })
            .collect();

        let by_prefisso = prefisso_members
            .into_iter()
            .map(|(prefisso, members)| {
                // Population of each province within this area code.
                let mut provinces: Vec<(String, u64)> = Vec::new();
                for &i in &members {
                    let c = &comuni[i];
                    match provinces.iter_mut().find(|(s, _)| *s == c.province.sigla) {
                        Some((_, pop)) => *pop += u64::from(c.population),
                        None => provinces.push((c.province.sigla.clone(), u64::from(c.population))),
                    }
                }
                provinces.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                let winner = provinces[0].0.clone();
                let in_winner: Vec<&Comune> =
                    members.iter().map(|&i| &comuni[i]).filter(|c| c.province.sigla == winner).collect();
                let guess = ProvinceGuess {
                    prefisso: prefisso.clone(),
                    province: in_winner[0].province.clone(),
                    main_comune: in_winner[0].name.clone(),
                    centroid: centroid(in_winner.iter().copied()),
                    shared_with: provinces.into_iter().skip(1).map(|(s, _)| s).collect(),
                };
                (prefisso, guess)
            })
            .collect();

        Gazetteer { comuni, by_cap, by_cap_area, by_prefisso, by_name }
    }

    /// All municipalities, in data order.
    pub fn comuni(&self) -> &[Comune] {
        &self.comuni
    }

    /// Places a CAP: listed exactly, else by its three-digit area, else unknown.
    pub fn locate_cap(&self, cap: &Cap) -> CapLocation<'_> {
        if let Some(ixs) = self.by_cap.get(cap) {
            return CapLocation::Exact { comuni: ixs.iter().map(|&i| &self.comuni[i]).collect() };
        }
        match self.by_cap_area.get(cap.prefix3()) {
            Some(area) => {
                let c = &self.comuni[area.label_ix];
                CapLocation::PrefixArea { label: &c.name, centroid: area.centroid, province: &c.province }
            }
            None => CapLocation::Unknown,
        }
    }

    /// The province of a landline from its leading digits (`031`, `0312`, `02`…): the longest
    /// area code that prefixes them. Several provinces can share an area code (02 covers Milano,
    /// Monza, parts of Como, Varese…); the most populous one is returned and the others are
    /// listed in [`ProvinceGuess::shared_with`].
    pub fn landline_province(&self, area_digits: &str) -> Option<&ProvinceGuess> {
        if !area_digits.starts_with('0') || !area_digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        (2..=area_digits.len().min(4)).rev().find_map(|n| self.by_prefisso.get(&area_digits[..n]))
    }

    /// Municipalities with this name (case-insensitive, surrounding spaces ignored), most populous
    /// first. Several comuni can share a name (Samone, Castro, Livo…).
    pub fn comune_by_name(&self, name: &str) -> Vec<&Comune> {
        self.by_name.get(&name_key(name)).map(|ixs| ixs.iter().map(|&i| &self.comuni[i]).collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> &'static Gazetteer {
        Gazetteer::embedded()
    }

    fn cap(s: &str) -> Cap {
        Cap::parse(s).unwrap()
    }

    #[test]
    fn embedded_data_parses_completely() {
        let parsed = Gazetteer::from_json(EMBEDDED_COMUNI).expect("embedded data parses");
        assert_eq!(parsed.comuni().len(), 7896);
        assert_eq!(g().comuni().len(), 7896);
    }

    #[test]
    fn como_cap_is_exact() {
        match g().locate_cap(&cap("22100")) {
            CapLocation::Exact { comuni } => {
                assert_eq!(comuni[0].name, "Como");
                assert_eq!(comuni[0].province.sigla, "CO");
                assert_eq!(comuni[0].prefisso, "031");
            }
            other => panic!("22100: {other:?}"),
        }
    }

    #[test]
    fn shared_cap_lists_most_populous_first() {
        let shared = g().comuni().iter().filter_map(|c| c.cap).find_map(|cap| match g().locate_cap(&cap) {
            CapLocation::Exact { comuni } if comuni.len() > 1 => Some(comuni),
            _ => None,
        });
        let comuni = shared.expect("547 CAPs are shared");
        assert!(comuni.windows(2).all(|w| w[0].population >= w[1].population));
        assert!(comuni.iter().all(|c| c.cap.is_some() && c.cap == comuni[0].cap));
    }

    #[test]
    fn unlisted_big_city_caps_fall_back_to_their_area() {
        // Roma is listed with 00186 only; 00118 is a real Roma CAP in area 001.
        match g().locate_cap(&cap("00118")) {
            CapLocation::PrefixArea { label, province, centroid } => {
                assert_eq!(label, "Roma");
                assert_eq!(province.sigla, "RM");
                assert!(centroid.distance_km(&GeoPoint::new(41.8931, 12.4828)) < 1.0);
            }
            other => panic!("00118: {other:?}"),
        }
        // Milano is listed with 20126 only; 20121 (Brera) is in area 201.
        match g().locate_cap(&cap("20121")) {
            CapLocation::PrefixArea { label, province, .. } => {
                assert_eq!((label, province.sigla.as_str()), ("Milano", "MI"));
            }
            other => panic!("20121: {other:?}"),
        }
    }

    #[test]
    fn area_centroid_is_population_weighted() {
        // Area 200 has 132 comuni around Milano; the weighted centroid is pulled to the big ones.
        match g().locate_cap(&cap("20099")) {
            CapLocation::PrefixArea { centroid, .. } => {
                let members: Vec<&Comune> =
                    g().comuni().iter().filter(|c| c.cap.is_some_and(|k| k.prefix3() == "200")).collect();
                assert!(members.len() > 100);
                let expected = centroid_of(&members);
                assert!(centroid.distance_km(&expected) < 1e-6);
            }
            CapLocation::Exact { .. } => {}
            CapLocation::Unknown => panic!("area 200 exists"),
        }
    }

    fn centroid_of(members: &[&Comune]) -> GeoPoint {
        let total: f64 = members.iter().map(|c| f64::from(c.population)).sum();
        let lat = members.iter().map(|c| c.point.lat * f64::from(c.population)).sum::<f64>() / total;
        let lng = members.iter().map(|c| c.point.lng * f64::from(c.population)).sum::<f64>() / total;
        GeoPoint::new(lat, lng)
    }

    #[test]
    fn unknown_area_is_unknown() {
        assert_eq!(g().locate_cap(&cap("99999")), CapLocation::Unknown);
        assert_eq!(g().locate_cap(&cap("99001")), CapLocation::Unknown);
    }

    #[test]
    fn landline_codes_pick_the_longest_match_and_the_biggest_province() {
        let como = g().landline_province("0312").expect("031");
        assert_eq!((como.prefisso.as_str(), como.province.sigla.as_str()), ("031", "CO"));
        assert_eq!(como.main_comune, "Como");
        assert_eq!(como.shared_with, vec!["LC".to_owned()]);

        let lecco = g().landline_province("0341").expect("0341");
        assert_eq!((lecco.prefisso.as_str(), lecco.province.sigla.as_str()), ("0341", "LC"));
        assert!(lecco.shared_with.is_empty());

        let milano = g().landline_province("0212").expect("02");
        assert_eq!((milano.prefisso.as_str(), milano.main_comune.as_str()), ("02", "Milano"));
        assert!(milano.shared_with.contains(&"MB".to_owned()));

        let roma = g().landline_province("06").expect("06");
        assert_eq!(roma.province.sigla, "RM");

        for bad in ["", "0", "3331", "0a1", "+3931"] {
            assert!(g().landline_province(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn comuni_by_name() {
        let como = g().comune_by_name(" como ");
        assert_eq!(como.len(), 1);
        assert_eq!(como[0].cap, Some(cap("22100")));
        let ozzano = g().comune_by_name("Ozzano dell'Emilia");
        assert_eq!(ozzano[0].cap, None, "the data's CAP 8604 is invalid and dropped");
        assert!(g().comune_by_name("Atlantide").is_empty());
    }

    #[test]
    fn bad_data_is_an_error_not_a_panic() {
        assert!(Gazetteer::from_json("{").is_err());
        assert!(Gazetteer::from_json(r#"[{"nome":"X"}]"#).is_err());
        let bad_cap = r#"[{"codice":"1","nome":"X","cap":"1","prefisso":"01","provincia":{"nome":"P","sigla":"PP","codice":"1","regione":"R"},"popolazione":1,"coordinate":{"lat":1,"lng":1}}]"#;
        let g = Gazetteer::from_json(bad_cap).unwrap();
        assert_eq!(g.comuni()[0].cap, None);
        assert_eq!(g.landline_province("01").map(|p| p.province.sigla.as_str()), Some("PP"));
    }
}
