//! One way in for files: a datapackage folder (or its `datapackage.json`), or a flat
//! one-row-per-service CSV detected by its header. The result is a validated [`Dataset`] or the
//! complete list of rejected rows.

use super::dataset::{Dataset, RowError};
use super::{datapackage, flat_csv};
use ivr::geo::Gazetteer;
use std::path::Path;

/// What was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Datapackage,
    FlatCsv,
}

/// Reads and validates `path`.
pub fn read_path(path: &Path) -> Result<(SourceKind, Dataset), Vec<RowError>> {
    let name = path.display().to_string();
    if path.is_dir() {
        return datapackage::read(path).map(|d| (SourceKind::Datapackage, d));
    }
    if path.file_name().is_some_and(|f| f == "datapackage.json") {
        let dir = path.parent().unwrap_or(Path::new("."));
        return datapackage::read(dir).map(|d| (SourceKind::Datapackage, d));
    }
    let header = csv::ReaderBuilder::new().from_path(path).and_then(|mut r| r.headers().cloned());
    match header {
        Ok(h) if flat_csv::looks_flat(&h) => {
            flat_csv::read(path, Gazetteer::embedded()).map(|d| (SourceKind::FlatCsv, d))
        }
        Ok(_) => Err(vec![RowError {
            file: name,
            row: 1,
            column: String::new(),
            reason: "not a flat services CSV (needs a name column and no id column); for HSDS tables give the datapackage folder".into(),
        }]),
        Err(e) => Err(vec![RowError { file: name, row: 0, column: String::new(), reason: format!("cannot read: {e}") }]),
    }
}
