//! The console's typed settings, from `config/console.toml` (`HELPLINE_CONSOLE_FILE`): the
//! disposition codes with their Italian and English labels, the wrap-up time and the ACD timings.

use crate::acd::AcdConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleConfigError {
    #[error("cannot read the console settings {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid console settings {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// One way a call can be closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disposition {
    pub code: String,
    pub it: String,
    pub en: String,
}

/// The ACD's timings, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcdTimings {
    pub drop_area_after_secs: u32,
    pub fallback_after_secs: u32,
    pub offer_timeout_secs: u32,
}

impl Default for AcdTimings {
    fn default() -> Self {
        AcdTimings { drop_area_after_secs: 60, fallback_after_secs: 180, offer_timeout_secs: 20 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    pub wrap_up_secs: u32,
    pub acd: AcdTimings,
    pub dispositions: Vec<Disposition>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        let d = |code: &str, it: &str, en: &str| Disposition { code: code.into(), it: it.into(), en: en.into() };
        ConsoleConfig {
            wrap_up_secs: 60,
            acd: AcdTimings::default(),
            dispositions: vec![
                d("info", "Informazioni date", "Information given"),
                d("referral", "Inviato a un servizio", "Referred to a service"),
                d("emergency", "Emergenza: 112 / servizi di emergenza", "Emergency: 112 / emergency services"),
                d("callback", "Da richiamare", "Call back"),
                d("wrong_number", "Numero errato", "Wrong number"),
                d("silent", "Chiamata muta o interrotta", "Silent or dropped call"),
            ],
        }
    }
}

impl ConsoleConfig {
    /// Reads the file; an absent file gives the defaults.
    pub fn load(path: &Path) -> Result<ConsoleConfig, ConsoleConfigError> {
        let p = path.display().to_string();
        let src = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConsoleConfig::default()),
            Err(source) => return Err(ConsoleConfigError::Read { path: p, source }),
        };
        ConsoleConfig::parse(&src).map_err(|reason| ConsoleConfigError::Invalid { path: p, reason })
    }

    pub fn parse(src: &str) -> Result<ConsoleConfig, String> {
        let cfg: ConsoleConfig = toml::from_str(src).map_err(|e| e.to_string())?;
        if cfg.dispositions.is_empty() {
            return Err("at least one disposition is needed".into());
        }
        let mut seen = std::collections::HashSet::new();
        for d in &cfg.dispositions {
            let ok = !d.code.is_empty()
                && d.code.len() <= 32
                && d.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit());
            if !ok {
                return Err(format!("disposition code {:?}: use 1 to 32 of a-z, 0-9, _", d.code));
            }
            if !seen.insert(d.code.clone()) {
                return Err(format!("disposition code {:?} appears twice", d.code));
            }
        }
        if cfg.acd.offer_timeout_secs == 0 {
            return Err("acd.offer_timeout_secs must be at least 1".into());
        }
        Ok(cfg)
    }

    pub fn acd(&self) -> AcdConfig {
        AcdConfig {
            drop_area_after: chrono::Duration::seconds(self.acd.drop_area_after_secs.into()),
            fallback_after: chrono::Duration::seconds(self.acd.fallback_after_secs.into()),
            offer_timeout: chrono::Duration::seconds(self.acd.offer_timeout_secs.into()),
        }
    }

    pub fn has_disposition(&self, code: &str) -> bool {
        self.dispositions.iter().any(|d| d.code == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_parses_and_matches_the_defaults() {
        let src = include_str!("../../../config/console.toml");
        assert_eq!(ConsoleConfig::parse(src).unwrap(), ConsoleConfig::default());
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        assert!(ConsoleConfig::parse("wrap_up_secs = 5\ndispositions = []").unwrap_err().contains("at least one"));
        let dup = "[[dispositions]]\ncode='a'\nit='x'\nen='y'\n[[dispositions]]\ncode='a'\nit='x'\nen='y'";
        assert!(ConsoleConfig::parse(dup).unwrap_err().contains("twice"));
        assert!(ConsoleConfig::parse("wrap_up = 5").is_err(), "unknown keys are refused");
    }
}
