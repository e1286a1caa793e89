//! The flat CSV most organizations keep: one row per service with its name, organization,
//! description, areas, address, town, CAP, phone, e-mail, website, languages and opening hours in
//! readable form (`lun-ven 09:00-13:00; mar,gio 14:30-17:00`). Headers may be English or Italian.
//! Rows become HSDS rows through [`Builder`]; ids are derived from the content, so importing the
//! same file twice gives the same directory. Positions come from the gazetteer.

use super::builder::{Builder, FlatService};
use super::dataset::{Dataset, RowError};
use super::opening::parse_readable;
use ivr::domain::{Cap, ServiceArea};
use ivr::geo::{CapLocation, Comune, Gazetteer};
use std::collections::HashSet;
use std::path::Path;

/// The columns, with the header names accepted for each.
const COLUMNS: &[(&str, &[&str])] = &[
    ("name", &["name", "nome", "servizio"]),
    ("organization", &["organization", "organizzazione", "ente"]),
    ("description", &["description", "descrizione"]),
    ("areas", &["areas", "area", "aree"]),
    ("address", &["address", "indirizzo"]),
    ("town", &["town", "comune", "city", "citta", "città"]),
    ("cap", &["cap", "postal_code", "postcode"]),
    ("phone", &["phone", "telefono"]),
    ("email", &["email", "e-mail"]),
    ("website", &["website", "sito", "url"]),
    ("languages", &["languages", "lingue"]),
    ("hours", &["hours", "orari", "opening_hours"]),
];

/// HSDS requires a street address (`address.address_1`) wherever it has a town: a row without one
/// is refused here with its line, not by the database's `NOT NULL` after the checks.
const REQUIRED: &[&str] = &["name", "organization", "areas", "address", "town"];

/// Whether a CSV header looks like the flat form (it has a name column and no `id`).
pub fn looks_flat(header: &csv::StringRecord) -> bool {
    let names: Vec<String> = header.iter().map(|h| h.trim().trim_start_matches('\u{feff}').to_lowercase()).collect();
    !names.iter().any(|n| n == "id") && names.iter().any(|n| COLUMNS[0].1.contains(&n.as_str()))
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Reads a flat CSV into a dataset, or every problem found.
pub fn read(path: &Path, gazetteer: &Gazetteer) -> Result<Dataset, Vec<RowError>> {
    match read_valid(path, gazetteer)? {
        (data, problems) if problems.is_empty() => Ok(data),
        (_, problems) => Err(problems),
    }
}

/// Reads a flat CSV: the dataset of its valid rows and every problem of the others (a row with a
/// problem is left out whole: each row is one service). `Err` when the file cannot be read at all.
pub fn read_valid(path: &Path, gazetteer: &Gazetteer) -> Result<(Dataset, Vec<RowError>), Vec<RowError>> {
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "input.csv".into());
    let err = |row: usize, column: &str, reason: String| RowError {
        file: file.clone(),
        resource: String::new(),
        row,
        column: column.into(),
        reason,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Err(vec![err(0, "", format!("cannot read: {e}"))]),
    };
    let lines = super::datapackage::LineIndex::new(&bytes);
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes.as_slice());
    let header = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(vec![err(1, "", format!("bad header: {e}"))]),
    };
    let position: Vec<Option<usize>> = COLUMNS
        .iter()
        .map(|(_, aliases)| {
            header
                .iter()
                .position(|h| aliases.contains(&h.trim().trim_start_matches('\u{feff}').to_lowercase().as_str()))
        })
        .collect();
    let mut errors = Vec::new();
    for (i, (name, _)) in COLUMNS.iter().enumerate() {
        if REQUIRED.contains(name) && position[i].is_none() {
            errors.push(err(1, name, "required column is missing".into()));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Ids from content: the same row always gets the same ids.
    let mut seed = String::new();
    let mut counter = 0u32;
    let mut services = Vec::new();
    let mut seen = HashSet::new();
    for (i, record) in reader.records().enumerate() {
        let line = lines.line_of(record.as_ref().ok().and_then(|r| r.position()), i);
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(err(line, "", format!("malformed CSV: {e}")));
                continue;
            }
        };
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if record.len() != header.len() {
            errors.push(err(
                line,
                "",
                format!("{} fields, the header has {} (quote values containing commas)", record.len(), header.len()),
            ));
            continue;
        }
        let get = |name: &str| -> String {
            COLUMNS
                .iter()
                .position(|(n, _)| *n == name)
                .and_then(|c| position[c])
                .and_then(|p| record.get(p))
                .unwrap_or("")
                .trim()
                .to_owned()
        };
        let before = errors.len();
        for name in REQUIRED {
            if get(name).is_empty() {
                errors.push(err(line, name, "required value is missing".into()));
            }
        }
        let mut areas = Vec::new();
        for a in get("areas").split([',', ';', '|']).map(str::trim).filter(|a| !a.is_empty()) {
            match ServiceArea::parse(a) {
                Ok(area) if !areas.contains(&area) => areas.push(area),
                Ok(_) => {}
                Err(_) => errors.push(err(
                    line,
                    "areas",
                    format!("{a:?} is not an area (lingua, lavoro, casa, salute, minori, mediazione)"),
                )),
            }
        }
        let cap_text = get("cap");
        let cap = if cap_text.is_empty() {
            None
        } else {
            match Cap::parse(&cap_text) {
                Ok(c) => Some(c),
                Err(_) => {
                    errors.push(err(line, "cap", format!("{cap_text:?} is not a CAP (five digits)")));
                    None
                }
            }
        };
        let town = get("town");
        let comune = find_comune(gazetteer, &town, cap.as_ref());
        if comune.is_none() && !town.is_empty() {
            errors.push(err(line, "town", format!("{town:?} is not an Italian comune")));
        }
        let postal_code =
            cap.map(|c| c.as_str().to_owned()).or(comune.and_then(|c| c.cap).map(|c| c.as_str().to_owned()));
        if comune.is_some() && postal_code.is_none() {
            errors.push(err(line, "cap", "required here: the comune's CAP is not known".into()));
        }
        let mut languages = Vec::new();
        for l in get("languages").split([',', ';', ' ']).map(str::trim).filter(|l| !l.is_empty()) {
            let code = l.to_lowercase();
            if (2..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase()) {
                if !languages.contains(&code) {
                    languages.push(code);
                }
            } else {
                errors.push(err(line, "languages", format!("{l:?} is not a language code (it, en, ar…)")));
            }
        }
        let hours = match parse_readable(&get("hours")) {
            Ok(h) => h,
            Err(reason) => {
                errors.push(err(line, "hours", reason));
                Vec::new()
            }
        };
        let email = get("email");
        if !email.is_empty() && !email.contains('@') {
            errors.push(err(line, "email", format!("{email:?} is not an e-mail address")));
        }
        let key = (get("organization").to_lowercase(), get("name").to_lowercase(), town.to_lowercase());
        if !seen.insert(key) {
            errors.push(err(
                line,
                "name",
                "the same service of the same organization in the same town is listed twice".into(),
            ));
        }
        if errors.len() > before {
            continue;
        }
        let Some(comune) = comune else { continue };
        seed.push_str(&format!("{}|{}|{}\n", get("organization"), get("name"), town));
        services.push(FlatService {
            organization: get("organization"),
            name: get("name"),
            description: get("description"),
            areas,
            address: get("address"),
            town: comune.name.clone(),
            postal_code: postal_code.unwrap_or_default(),
            province: comune.province.sigla.clone(),
            region: comune.province.regione.clone(),
            point: Some(comune.point),
            phone: get("phone"),
            email,
            website: get("website"),
            languages,
            hours,
        });
    }
    let base = fnv(&seed);
    let mut builder = Builder::new(move || {
        counter += 1;
        format!("{:016x}-{:06}", base, counter)
    });
    // Ids depend on the row's content and position.
    for s in &services {
        builder.add(s);
    }
    Ok((builder.data, errors))
}

/// The comune named `town`, preferring the one with this CAP; or the comune of the CAP when the
/// town is empty.
fn find_comune<'g>(g: &'g Gazetteer, town: &str, cap: Option<&Cap>) -> Option<&'g Comune> {
    let by_cap: Vec<&Comune> = match cap.map(|c| g.locate_cap(c)) {
        Some(CapLocation::Exact { comuni }) => comuni,
        _ => Vec::new(),
    };
    let by_name = g.comune_by_name(town);
    by_name.iter().find(|c| by_cap.iter().any(|b| b.code == c.code)).or(by_name.first()).copied().or_else(|| {
        if town.is_empty() {
            by_cap.first().copied()
        } else {
            None
        }
    })
}
