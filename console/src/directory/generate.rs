//! The demo directory: a deterministic generator of N services across Italy, placed in real
//! comuni with probability proportional to their population, in all six areas, with plausible
//! Italian names, addresses, phone numbers with the comune's real area code, opening hours and
//! languages spoken. The same seed and count always give the same directory.

use super::builder::{Builder, FlatService};
use super::dataset::Dataset;
use super::opening::parse_readable;
use ivr::domain::ServiceArea;
use ivr::geo::{Comune, Gazetteer, GeoPoint};
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The default number of demo services (the Portale maps 8,000+).
pub const DEFAULT_COUNT: usize = 8_000;
pub const DEFAULT_SEED: u64 = 2026;

const STREETS: &[&str] = &[
    "Via Roma",
    "Via Garibaldi",
    "Via Mazzini",
    "Via Dante Alighieri",
    "Via Giuseppe Verdi",
    "Via Cavour",
    "Via Matteotti",
    "Via Marconi",
    "Via XX Settembre",
    "Via della Repubblica",
    "Via San Francesco",
    "Via Vittorio Emanuele II",
    "Via Aldo Moro",
    "Via Gramsci",
    "Via dei Mille",
    "Via Manzoni",
    "Viale Europa",
    "Viale della Libertà",
    "Corso Italia",
    "Corso Umberto I",
    "Piazza Municipio",
    "Piazza del Popolo",
    "Piazza della Libertà",
    "Piazza Garibaldi",
    "Largo Santa Chiara",
    "Via Nazionale",
];

const ASSOCIATION_WORDS: &[&str] = &[
    "Arcobaleno",
    "Ponti",
    "Insieme",
    "Porte Aperte",
    "Il Mosaico",
    "Nuovi Orizzonti",
    "Babele",
    "Mondo Unito",
    "Terra Comune",
    "La Rete",
    "Il Girasole",
    "Passaparola",
    "Approdi",
    "Radici e Ali",
    "L'Incontro",
    "Mille Lingue",
    "Casa dei Popoli",
    "Il Faro",
    "Crocevia",
    "Solidarietà",
];

const EXTRA_LANGUAGES: &[(&str, u32)] = &[
    ("en", 40),
    ("fr", 25),
    ("ar", 25),
    ("es", 15),
    ("ro", 12),
    ("zh", 8),
    ("sq", 8),
    ("uk", 8),
    ("bn", 5),
    ("ur", 5),
    ("pa", 4),
    ("ti", 3),
    ("wo", 3),
    ("pt", 4),
    ("ru", 5),
    ("tl", 3),
    ("fa", 2),
];

const HOURS: &[(&str, u32)] = &[
    ("lun-ven 09:00-13:00", 20),
    ("lun-ven 09:00-13:00; mar,gio 14:30-17:00", 20),
    ("lun,mer,ven 09:30-12:30", 10),
    ("lun-ven 08:30-12:30, 14:00-17:00", 15),
    ("lun-sab 08:00-14:00", 8),
    ("mar-gio 15:00-19:00", 8),
    ("lun-ven 14:00-18:00; sab 09:00-12:00", 8),
    ("lun-dom 00:00-24:00", 2),
    ("ven,sab 20:00-02:00", 2),
    ("lun-ven 10:00-16:00", 7),
];

/// What a service of an area is called, what it does and who usually runs it.
fn templates(area: ServiceArea) -> (&'static [&'static str], &'static [&'static str]) {
    match area {
        ServiceArea::Lingua => (
            &["CPIA {c}", "Scuola di italiano per stranieri {c}", "Corso di italiano L2 {a}", "Italiano per tutti {c}"],
            &[
                "Corsi gratuiti di lingua italiana per adulti stranieri, dal livello A1 al B1; certificazione per il permesso di soggiorno. Free Italian courses for adults.",
                "Scuola di italiano con mediatori, corsi serali e per donne con bambini. Cours d'italien gratuits.",
            ],
        ),
        ServiceArea::Lavoro => (
            &["Centro per l'impiego di {c}", "Sportello Lavoro {c}", "Orientamento al lavoro {a}", "Sportello orientamento e formazione {c}"],
            &[
                "Iscrizione al collocamento, ricerca di lavoro, curriculum, tirocini e corsi di formazione professionale. Job search help and CV writing.",
                "Orientamento al lavoro, bilancio di competenze, riconoscimento dei titoli di studio. Ayuda para buscar empleo.",
            ],
        ),
        ServiceArea::Casa => (
            &["Sportello Casa {c}", "Agenzia sociale per la casa di {c}", "Accoglienza abitativa {a}", "Sportello affitti {c}"],
            &[
                "Informazioni su affitti, case popolari, contratti di locazione e contributi per l'alloggio. Help with housing and rent.",
                "Accoglienza temporanea e ricerca di una casa, mediazione con i proprietari. Aide pour trouver un logement.",
            ],
        ),
        ServiceArea::Salute => (
            &["Consultorio familiare {c}", "Ambulatorio STP per stranieri {c}", "Centro salute migranti {c}", "Poliambulatorio solidale {a}"],
            &[
                "Assistenza sanitaria, iscrizione al Servizio sanitario nazionale, tessera STP, vaccinazioni e visite. Health care for migrants.",
                "Consultorio per donne, gravidanza, salute dei bambini e contraccezione, con mediatrici culturali. Santé des femmes et des enfants.",
            ],
        ),
        ServiceArea::Minori => (
            &["Spazio famiglie e minori {c}", "Doposcuola multiculturale {a}", "Centro giovani seconde generazioni {c}", "Servizio minori stranieri {c}"],
            &[
                "Doposcuola, sostegno allo studio e attività per ragazzi e seconde generazioni; iscrizione a scuola. After-school help for children.",
                "Accoglienza e tutela dei minori stranieri non accompagnati, sostegno alle famiglie. Apoyo a familias y menores.",
            ],
        ),
        ServiceArea::Mediazione => (
            &["Servizio di mediazione interculturale {c}", "Sportello mediatori culturali {c}", "Centro interculturale {c}", "Mediazione linguistico-culturale {a}"],
            &[
                "Mediatori e mediatrici interculturali per colloqui con uffici, scuole e ospedali; traduzioni e interpretariato. Intercultural mediators and interpreters.",
                "Centro interculturale: sportello informativo, mediazione dei conflitti, corsi e incontri. Médiation interculturelle.",
            ],
        ),
    }
}

fn organization(rng: &mut StdRng, area: ServiceArea, c: &Comune, assoc: &str) -> String {
    let p = &c.province.nome;
    let choices: Vec<String> = match area {
        ServiceArea::Lingua => {
            vec![format!("CPIA di {p}"), format!("Associazione {assoc}"), format!("Comune di {}", c.name)]
        }
        ServiceArea::Lavoro => vec![
            format!("Regione {}", c.province.regione),
            format!("Comune di {}", c.name),
            format!("Cooperativa sociale {assoc}"),
        ],
        ServiceArea::Casa => vec![
            format!("Comune di {}", c.name),
            format!("Caritas diocesana di {p}"),
            format!("Cooperativa sociale {assoc}"),
        ],
        ServiceArea::Salute => {
            vec![format!("ASL {p}"), format!("Azienda sanitaria di {p}"), format!("Associazione {assoc}")]
        }
        ServiceArea::Minori => vec![
            format!("Comune di {}", c.name),
            format!("Cooperativa sociale {assoc}"),
            format!("Associazione {assoc}"),
        ],
        ServiceArea::Mediazione => vec![
            format!("Associazione {assoc}"),
            format!("Cooperativa sociale {assoc}"),
            format!("Comune di {}", c.name),
        ],
    };
    choices.choose(rng).cloned().unwrap_or_default()
}

fn phone(rng: &mut StdRng, c: &Comune) -> String {
    if c.prefisso.len() >= 2 {
        let digits = 10usize.saturating_sub(c.prefisso.len()).max(4);
        let rest: String = (0..digits).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect();
        format!("+39 {} {}", c.prefisso, rest)
    } else {
        format!("+39 3{:02} {:07}", rng.gen_range(20..99), rng.gen_range(0..10_000_000))
    }
}

fn uuid(rng: &mut StdRng) -> String {
    let v: u128 = rng.gen();
    let v = (v & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{v:032x}");
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// `count` services drawn with `seed`.
pub fn generate(count: usize, seed: u64, gazetteer: &Gazetteer) -> Dataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let comuni = gazetteer.comuni();
    // Comuni without a valid CAP in the data (one) are left out: an address needs one.
    let weights: Vec<u32> = comuni.iter().map(|c| if c.cap.is_some() { c.population.max(1) } else { 0 }).collect();
    let Ok(pick_comune) = WeightedIndex::new(&weights) else { return Dataset::default() };
    let Ok(pick_lang) = WeightedIndex::new(EXTRA_LANGUAGES.iter().map(|l| l.1)) else { return Dataset::default() };
    let Ok(pick_hours) = WeightedIndex::new(HOURS.iter().map(|h| h.1)) else { return Dataset::default() };
    let hours: Vec<_> = HOURS.iter().map(|(h, _)| parse_readable(h).unwrap_or_default()).collect();
    let mut id_rng = StdRng::seed_from_u64(seed ^ 0x05ee_d1d5);
    let mut builder = Builder::new(move || uuid(&mut id_rng));
    for i in 0..count {
        let c = &comuni[pick_comune.sample(&mut rng)];
        let area = ServiceArea::ALL[i % 6];
        let mut areas = vec![area];
        if rng.gen_bool(0.2) {
            let other = ServiceArea::ALL[rng.gen_range(0..6)];
            if other != area {
                areas.push(other);
            }
        }
        let assoc = ASSOCIATION_WORDS.choose(&mut rng).copied().unwrap_or("Insieme");
        let (names, descriptions) = templates(area);
        let name = names
            .choose(&mut rng)
            .copied()
            .unwrap_or("{c}")
            .replace("{c}", &c.name)
            .replace("{a}", &format!("{assoc} – {}", c.name));
        let mut languages = vec!["it".to_owned()];
        for _ in 0..rng.gen_range(0..=3) {
            let code = EXTRA_LANGUAGES[pick_lang.sample(&mut rng)].0.to_owned();
            if !languages.contains(&code) {
                languages.push(code);
            }
        }
        let jitter = |rng: &mut StdRng| rng.gen_range(-0.012..0.012);
        let point = GeoPoint::new(c.point.lat + jitter(&mut rng), c.point.lng + jitter(&mut rng));
        let street = STREETS.choose(&mut rng).copied().unwrap_or("Via Roma");
        let service = FlatService {
            organization: organization(&mut rng, area, c, assoc),
            name,
            description: descriptions.choose(&mut rng).copied().unwrap_or("").to_owned(),
            areas,
            address: format!("{street} {}", rng.gen_range(1..180)),
            town: c.name.clone(),
            postal_code: c.cap.map(|x| x.as_str().to_owned()).unwrap_or_default(),
            province: c.province.sigla.clone(),
            region: c.province.regione.clone(),
            point: Some(point),
            phone: phone(&mut rng, c),
            email: String::new(),
            website: String::new(),
            languages,
            hours: hours[pick_hours.sample(&mut rng)].clone(),
        };
        builder.add(&service);
    }
    builder.data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_directory_and_all_areas() {
        let g = Gazetteer::embedded();
        let a = generate(300, 7, g);
        let b = generate(300, 7, g);
        assert_eq!(a, b);
        assert_ne!(a, generate(300, 8, g));
        assert_eq!(a.rows("service").len(), 300);
        assert!(a.check_references().is_empty(), "{:?}", a.check_references().first());
        assert!(a.check_cells().is_empty(), "{:?}", a.check_cells().first());
        let docs = super::super::documents::service_docs(&a, g);
        for area in ServiceArea::ALL {
            assert!(docs.iter().filter(|d| d.area_list().contains(&area)).count() >= 50, "{area:?}");
        }
        assert!(docs.iter().all(|d| d.point.is_some() && d.phone.starts_with("+39 ")));
    }
}
