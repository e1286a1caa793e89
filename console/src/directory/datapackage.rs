//! Reading and writing an HSDS tabular datapackage: a folder with `datapackage.json` (Frictionless
//! Data, one resource per table) and one CSV per table, ids as foreign keys. Reading collects
//! every bad cell and every malformed line instead of stopping at the first.

use super::dataset::{check_cell, Dataset, Row, RowError};
use super::schema::{Kind, TABLES};
use serde_json::{json, Value};
use std::path::Path;

/// Why a datapackage could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Csv { path: String, source: csv::Error },
}

/// Reads the datapackage in `dir`. Tables the helpline does not keep (contact, funding…) and
/// columns it does not keep are skipped; a known table that is absent is empty.
pub fn read(dir: &Path) -> Result<Dataset, Vec<RowError>> {
    match read_all(dir)? {
        (data, problems) if problems.is_empty() => Ok(data),
        (_, problems) => Err(problems),
    }
}

/// Reads the datapackage in `dir`: every row that could be read (bad cells included, as they
/// are) and every problem, each naming the file as the package names it and its resource. `Err`
/// when the manifest cannot be read.
pub fn read_all(dir: &Path) -> Result<(Dataset, Vec<RowError>), Vec<RowError>> {
    let manifest_path = dir.join("datapackage.json");
    let manifest: Value = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return Err(vec![file_error("datapackage.json", 0, format!("not valid JSON: {e}"))]),
        },
        Err(e) => return Err(vec![file_error("datapackage.json", 0, format!("cannot read: {e}"))]),
    };
    let Some(resources) = manifest.get("resources").and_then(Value::as_array) else {
        return Err(vec![file_error("datapackage.json", 0, "no \"resources\" list".into())]);
    };
    let mut dataset = Dataset::default();
    let mut errors = Vec::new();
    // Each table's file as the package names it (`organizations.csv` for `organization`).
    let mut files: Vec<String> = TABLES.iter().map(|t| format!("{}.csv", t.name)).collect();
    for resource in resources {
        let Some(name) = resource.get("name").and_then(Value::as_str) else { continue };
        let Some(t) = TABLES.iter().position(|t| t.name == name) else { continue };
        let rel = resource.get("path").and_then(Value::as_str).map(str::to_owned).unwrap_or(format!("{name}.csv"));
        files[t].clone_from(&rel);
        match read_table(&dir.join(&rel), &rel, t, &mut errors) {
            Some(rows) => dataset.tables[t] = rows,
            None => continue,
        }
    }
    for e in dataset.check_references() {
        let file = TABLES.iter().position(|t| t.name == e.resource).map(|t| files[t].clone());
        errors.push(match file {
            Some(f) => e.in_file(&f),
            None => e,
        });
    }
    Ok((dataset, errors))
}

fn file_error(file: &str, row: usize, reason: String) -> RowError {
    RowError { file: file.to_owned(), resource: String::new(), row, column: String::new(), reason }
}

fn table_error(file: &str, t: usize, row: usize, reason: String) -> RowError {
    RowError { file: file.to_owned(), resource: TABLES[t].name.to_owned(), row, column: String::new(), reason }
}

/// Reads one table's CSV, checking every cell; problems go to `errors` with the CSV's file name.
pub(crate) fn read_table(path: &Path, file: &str, t: usize, errors: &mut Vec<RowError>) -> Option<Vec<Row>> {
    let table = &TABLES[t];
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            errors.push(table_error(file, t, 0, format!("cannot read: {e}")));
            return None;
        }
    };
    let lines = LineIndex::new(&bytes);
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes.as_slice());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            errors.push(table_error(file, t, 1, format!("bad header: {e}")));
            return None;
        }
    };
    // CSV column → table column.
    let map: Vec<Option<usize>> =
        headers.iter().map(|h| table.column_index(h.trim().trim_start_matches('\u{feff}'))).collect();
    let mut missing = false;
    for (c, column) in table.columns.iter().enumerate() {
        if column.required && !map.contains(&Some(c)) {
            errors.push(RowError {
                file: file.into(),
                resource: table.name.into(),
                row: 1,
                column: column.name.into(),
                reason: "required column is missing".into(),
            });
            missing = true;
        }
    }
    if missing {
        return None;
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = lines.line_of(record.as_ref().ok().and_then(|r| r.position()), i);
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(table_error(file, t, line, format!("malformed CSV: {e}")));
                continue;
            }
        };
        if record.len() != headers.len() {
            errors.push(table_error(
                file,
                t,
                line,
                format!("{} fields, the header has {}", record.len(), headers.len()),
            ));
            continue;
        }
        let mut values = vec![None; table.columns.len()];
        for (field, target) in record.iter().zip(&map) {
            if let Some(c) = target {
                let v = field.trim();
                if !v.is_empty() {
                    values[*c] = Some(v.to_owned());
                }
            }
        }
        for (c, column) in table.columns.iter().enumerate() {
            if let Some(reason) = check_cell(column.kind, column.required, values[c].as_deref()) {
                errors.push(RowError {
                    file: file.into(),
                    resource: table.name.into(),
                    row: line,
                    column: column.name.into(),
                    reason,
                });
            }
        }
        rows.push(Row { values, line });
    }
    Some(rows)
}

/// The line numbers of a file's records, from their byte offsets: the csv crate's own count
/// misses the lines of files with CRLF endings (the HSDS examples have them).
pub(crate) struct LineIndex {
    newlines: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(bytes: &[u8]) -> LineIndex {
        LineIndex { newlines: bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i).collect() }
    }

    /// The 1-based line where a record starts (the header is line 1); record `i` (0-based, after
    /// the header) on line `i + 2` when the reader gave no position.
    pub(crate) fn line_of(&self, position: Option<&csv::Position>, i: usize) -> usize {
        match position {
            // After a CRLF the reader's position is the `\n` itself: it belongs to the line before.
            Some(p) => 1 + self.newlines.partition_point(|&n| (n as u64) <= p.byte()),
            None => i + 2,
        }
    }
}

/// Writes `dataset` as a datapackage into `dir` (created when absent).
pub fn write(dataset: &Dataset, dir: &Path) -> Result<(), WriteError> {
    std::fs::create_dir_all(dir).map_err(|source| WriteError::Io { path: dir.display().to_string(), source })?;
    let mut resources = Vec::new();
    for (t, table) in TABLES.iter().enumerate() {
        let file = format!("{}.csv", table.name);
        let path = dir.join(&file);
        let csv_err = |source| WriteError::Csv { path: path.display().to_string(), source };
        let mut w = csv::Writer::from_path(&path).map_err(csv_err)?;
        w.write_record(table.columns.iter().map(|c| c.name)).map_err(csv_err)?;
        for row in &dataset.tables[t] {
            w.write_record(row.values.iter().map(|v| v.as_deref().unwrap_or(""))).map_err(csv_err)?;
        }
        w.flush().map_err(|source| WriteError::Io { path: path.display().to_string(), source })?;
        let fields: Vec<Value> = table
            .columns
            .iter()
            .map(|c| {
                let ty = match c.kind {
                    Kind::Float { .. } => "number",
                    Kind::Int => "integer",
                    Kind::Time => "time",
                    Kind::Date => "date",
                    _ => "string",
                };
                let mut f = json!({ "name": c.name, "type": ty });
                if c.required {
                    f["constraints"] = json!({ "required": true });
                }
                if let Kind::Enum(values) = c.kind {
                    f["constraints"]["enum"] = json!(values);
                }
                f
            })
            .collect();
        let foreign_keys: Vec<Value> = table
            .columns
            .iter()
            .filter_map(|c| match c.kind {
                Kind::Ref(target) => {
                    Some(json!({ "fields": c.name, "reference": { "resource": target, "fields": "id" } }))
                }
                _ => None,
            })
            .collect();
        resources.push(json!({
            "name": table.name,
            "path": file,
            "profile": "tabular-data-resource",
            "schema": { "fields": fields, "primaryKey": "id", "foreignKeys": foreign_keys },
        }));
    }
    let manifest = json!({
        "name": "helpline-directory",
        "title": "Helpline services directory (Open Referral HSDS 3.0)",
        "profile": "tabular-data-package",
        "resources": resources,
    });
    let path = dir.join("datapackage.json");
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    std::fs::write(&path, text).map_err(|source| WriteError::Io { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::LineIndex;

    #[test]
    fn records_are_numbered_by_their_line_with_lf_or_crlf_endings() {
        for text in ["a,b\n1,2\n\"x\ny\",3\n4,5\n", "a,b\r\n1,2\r\n\"x\r\ny\",3\r\n4,5\r\n"] {
            let bytes = text.as_bytes();
            let index = LineIndex::new(bytes);
            let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
            let lines: Vec<usize> =
                reader.records().enumerate().map(|(i, r)| index.line_of(r.unwrap().position(), i)).collect();
            assert_eq!(lines, [2, 3, 5], "{text:?}");
        }
    }
}
