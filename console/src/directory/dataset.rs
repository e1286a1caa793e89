//! A whole directory in memory, table by table, as the HSDS columns' text: what an import reads,
//! what the store writes and loads, what an export writes. Validation lives here so every way in
//! (datapackage, flat CSV, generator) is checked by the same rules, and it reports every problem,
//! not just the first.

use super::schema::{Kind, Table, TABLES};
use chrono::{NaiveDate, NaiveTime};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// One row: one optional text per column of its table, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub values: Vec<Option<String>>,
    /// The 1-based line of the source file (the header is line 1), 0 when made in memory.
    pub line: usize,
}

impl Row {
    pub fn new(values: Vec<Option<String>>) -> Row {
        Row { values, line: 0 }
    }

    pub fn get(&self, ix: usize) -> Option<&str> {
        self.values.get(ix).and_then(|v| v.as_deref())
    }
}

/// Every table's rows, in the order of [`TABLES`].
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub tables: Vec<Vec<Row>>,
}

impl Default for Dataset {
    fn default() -> Self {
        Dataset { tables: TABLES.iter().map(|_| Vec::new()).collect() }
    }
}

impl Dataset {
    pub fn rows(&self, table: &str) -> &[Row] {
        match TABLES.iter().position(|t| t.name == table) {
            Some(i) => &self.tables[i],
            None => &[],
        }
    }

    /// Appends a row given as `(column, value)` pairs; unknown columns are ignored, empty values
    /// become `None`.
    pub fn push(&mut self, table: &Table, pairs: &[(&str, &str)]) {
        let mut values = vec![None; table.columns.len()];
        for (name, value) in pairs {
            if let Some(ix) = table.column_index(name) {
                if !value.is_empty() {
                    values[ix] = Some((*value).to_owned());
                }
            }
        }
        if let Some(t) = TABLES.iter().position(|t| t.name == table.name) {
            self.tables[t].push(Row::new(values));
        }
    }

    pub fn total_rows(&self) -> usize {
        self.tables.iter().map(Vec::len).sum()
    }

    /// Rows sorted by id in every table: two datasets with the same content compare equal.
    pub fn canonical(mut self) -> Dataset {
        for rows in &mut self.tables {
            for r in rows.iter_mut() {
                r.line = 0;
            }
            rows.sort_by(|a, b| a.values.first().cmp(&b.values.first()));
        }
        self
    }

    /// Checks every cell against its column ([`check_cell`]): for datasets made in memory.
    pub fn check_cells(&self) -> Vec<RowError> {
        let mut errors = Vec::new();
        for (t, table) in TABLES.iter().enumerate() {
            for row in &self.tables[t] {
                for (c, column) in table.columns.iter().enumerate() {
                    if let Some(reason) = check_cell(column.kind, column.required, row.get(c)) {
                        errors.push(RowError::new(table.name, row.line, column.name, reason));
                    }
                }
            }
        }
        errors
    }

    /// Checks uniqueness of ids and every foreign key; cell formats are checked when read
    /// ([`check_cell`]). Returns every problem found.
    pub fn check_references(&self) -> Vec<RowError> {
        let mut errors = Vec::new();
        let mut ids: HashMap<&str, HashSet<&str>> = HashMap::new();
        for (t, table) in TABLES.iter().enumerate() {
            let set = ids.entry(table.name).or_default();
            for row in &self.tables[t] {
                if let Some(id) = row.get(0) {
                    if !set.insert(id) {
                        errors.push(RowError::new(table.name, row.line, "id", format!("duplicate id {id:?}")));
                    }
                }
            }
        }
        for (t, table) in TABLES.iter().enumerate() {
            for (c, column) in table.columns.iter().enumerate() {
                let Kind::Ref(target) = column.kind else { continue };
                let Some(targets) = ids.get(target) else { continue };
                for row in &self.tables[t] {
                    if let Some(v) = row.get(c) {
                        if !targets.contains(v) {
                            errors.push(RowError::new(
                                table.name,
                                row.line,
                                column.name,
                                format!("no {target} has id {v:?}"),
                            ));
                        }
                    }
                }
            }
        }
        // attribute.link_id points at the table named by link_entity.
        if let (Some(attr_t), Some(link_c), Some(entity_c)) = (
            TABLES.iter().position(|t| t.name == "attribute"),
            super::schema::ATTRIBUTE.column_index("link_id"),
            super::schema::ATTRIBUTE.column_index("link_entity"),
        ) {
            for row in &self.tables[attr_t] {
                if let (Some(link), Some(entity)) = (row.get(link_c), row.get(entity_c)) {
                    if ids.get(entity).is_some_and(|s| !s.contains(link)) {
                        errors.push(RowError::new(
                            "attribute",
                            row.line,
                            "link_id",
                            format!("no {entity} has id {link:?}"),
                        ));
                    }
                }
            }
        }
        errors
    }
}

/// One rejected row: which file (as named on disk), which resource of the package, which line,
/// which column and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub file: String,
    /// The datapackage resource (the HSDS table, `organization`) the file holds; empty for a flat
    /// CSV or the manifest.
    pub resource: String,
    pub row: usize,
    pub column: String,
    pub reason: String,
}

impl RowError {
    /// An error on a table's row; the file is `<table>.csv` until the reader names the file the
    /// package gives for it ([`RowError::in_file`]).
    pub fn new(table: &str, row: usize, column: &str, reason: String) -> RowError {
        RowError { file: format!("{table}.csv"), resource: table.to_owned(), row, column: column.to_owned(), reason }
    }

    /// The same error, in the file `file`.
    pub fn in_file(mut self, file: &str) -> RowError {
        file.clone_into(&mut self.file);
        self
    }

    /// Where: `FILE: row N` — with `(resource R)` after the file when its name is not `R.csv`
    /// (`organizations.csv (resource organization)`).
    pub fn place(&self) -> String {
        let resource = &self.resource;
        if resource.is_empty() || self.file == format!("{resource}.csv") {
            format!("{}: row {}", self.file, self.row)
        } else {
            format!("{} (resource {resource}): row {}", self.file, self.row)
        }
    }
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: column {}: {}", self.place(), self.column, self.reason)
    }
}

/// Checks one cell against its column; `None` when it is acceptable.
pub fn check_cell(kind: Kind, required: bool, value: Option<&str>) -> Option<String> {
    let Some(v) = value else {
        return required.then(|| "required value is missing".to_owned());
    };
    match kind {
        Kind::Id | Kind::Text | Kind::Ref(_) => None,
        Kind::Float { min, max } => match v.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= min && x <= max => None,
            Ok(_) => Some(format!("{v:?} is out of range {min}..{max}")),
            Err(_) => Some(format!("{v:?} is not a number")),
        },
        Kind::Int => v.parse::<i64>().err().map(|_| format!("{v:?} is not a whole number")),
        Kind::Time => parse_time(v).is_none().then(|| format!("{v:?} is not a time HH:MM")),
        Kind::Date => NaiveDate::parse_from_str(v, "%Y-%m-%d").err().map(|_| format!("{v:?} is not a date YYYY-MM-DD")),
        Kind::Enum(allowed) => (!allowed.contains(&v)).then(|| format!("{v:?} is not one of {}", allowed.join(", "))),
        Kind::ByDay => v
            .split(',')
            .find(|d| parse_byday(d.trim()).is_none())
            .map(|d| format!("{d:?} is not a day (MO,TU,WE,TH,FR,SA,SU)")),
        Kind::TimeZone => v.parse::<chrono_tz::Tz>().err().map(|_| format!("{v:?} is not a time zone name")),
    }
}

/// `HH:MM` or `HH:MM:SS`; `24:00` is accepted as the end of the day and returned as `None`-free
/// minutes via [`time_minutes`].
pub fn parse_time(v: &str) -> Option<NaiveTime> {
    if v == "24:00" || v == "24:00:00" {
        return NaiveTime::from_hms_opt(23, 59, 59);
    }
    NaiveTime::parse_from_str(v, "%H:%M").or_else(|_| NaiveTime::parse_from_str(v, "%H:%M:%S")).ok()
}

/// Minutes since midnight of an `HH:MM` text (`24:00` → 1440).
pub fn time_minutes(v: &str) -> Option<u16> {
    if v == "24:00" || v == "24:00:00" {
        return Some(1440);
    }
    use chrono::Timelike;
    parse_time(v).map(|t| (t.hour() * 60 + t.minute()) as u16)
}

/// RRULE day code → weekday number (Monday = 0).
pub fn parse_byday(d: &str) -> Option<u8> {
    ["MO", "TU", "WE", "TH", "FR", "SA", "SU"].iter().position(|x| *x == d).map(|p| p as u8)
}
