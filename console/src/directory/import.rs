//! One way in for files: a datapackage folder (or its `datapackage.json`), or a flat
//! one-row-per-service CSV detected by its header. The result is a validated [`Dataset`] or the
//! complete list of rejected rows.

use super::dataset::{Dataset, RowError};
use super::partial::{self, Salvaged};
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
            resource: String::new(),
            row: 1,
            column: String::new(),
            reason: "not a flat services CSV (needs a name column and no id column); for HSDS tables give the datapackage folder".into(),
        }]),
        Err(e) => Err(vec![RowError { file: name, resource: String::new(), row: 0, column: String::new(), reason: format!("cannot read: {e}") }]),
    }
}

/// Reads `path` for a partial import: its valid rows (see [`partial`]), every problem, and what
/// was left out. `Err` only when nothing can be read (no manifest, not a CSV, no header).
pub fn read_path_partial(path: &Path) -> Result<(SourceKind, Salvaged), Vec<RowError>> {
    let dir = if path.is_dir() {
        Some(path)
    } else if path.file_name().is_some_and(|f| f == "datapackage.json") {
        Some(path.parent().unwrap_or(Path::new(".")))
    } else {
        None
    };
    if let Some(dir) = dir {
        let (data, problems) = datapackage::read_all(dir)?;
        let salvaged = partial::salvage(data, problems);
        // What is kept must pass a whole import's checks.
        let left: Vec<RowError> =
            salvaged.dataset.check_cells().into_iter().chain(salvaged.dataset.check_references()).collect();
        if !left.is_empty() {
            return Err(left);
        }
        return Ok((SourceKind::Datapackage, salvaged));
    }
    // A flat CSV: each row is one service, left out whole when it has a problem.
    match read_path(path) {
        Ok((kind, dataset)) => Ok((kind, Salvaged { dataset, problems: vec![], skipped: vec![], cleared: vec![] })),
        Err(_) if flat_looking(path) => {
            let (dataset, problems) = flat_csv::read_valid(path, Gazetteer::embedded())?;
            let mut lines: Vec<&RowError> = problems.iter().filter(|p| p.row >= 2).collect();
            lines.dedup_by_key(|p| p.row);
            let skipped = lines
                .into_iter()
                .map(|p| partial::Skipped {
                    file: p.file.clone(),
                    resource: String::new(),
                    row: p.row,
                    id: None,
                    reason: format!("column {}: {}", p.column, p.reason),
                })
                .collect();
            Ok((SourceKind::FlatCsv, Salvaged { dataset, problems, skipped, cleared: vec![] }))
        }
        Err(e) => Err(e),
    }
}

fn flat_looking(path: &Path) -> bool {
    csv::ReaderBuilder::new()
        .from_path(path)
        .and_then(|mut r| r.headers().cloned())
        .is_ok_and(|h| flat_csv::looks_flat(&h))
}
