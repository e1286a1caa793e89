//! A partial import (`helpline directory import --partial`): what a real, messy datapackage
//! still holds once its bad rows are set aside. The rules:
//!
//! - a row with a bad or missing **required** value (its id, a required column, a duplicate id, a
//!   required reference to a row that is not in the package) is **skipped**;
//! - a bad **optional** value (a latitude out of range, a time zone nobody knows, an optional
//!   reference to a row that is not in the package, such as a parent organization kept elsewhere)
//!   is **cleared**: the row is kept without it;
//! - a row that refers to a skipped row — through any reference, required or not: a service of a
//!   skipped organization, a skipped location's phone or address, an attribute of a skipped
//!   service — is skipped too, and so on down.
//!
//! What is left passes every check of a whole import, and is checked again before it is stored.

use super::dataset::{Dataset, RowError};
use super::schema::{Kind, ATTRIBUTE, TABLES};
use std::collections::{HashMap, HashSet};

/// A row left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub file: String,
    pub resource: String,
    pub row: usize,
    /// The row's id, when it has one.
    pub id: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = RowError {
            file: self.file.clone(),
            resource: self.resource.clone(),
            row: self.row,
            column: String::new(),
            reason: String::new(),
        }
        .place();
        match &self.id {
            Some(id) => write!(f, "{place} (id {id:?}): {}", self.reason),
            None => write!(f, "{place}: {}", self.reason),
        }
    }
}

/// What a partial import keeps, and what it left out.
#[derive(Debug, Clone)]
pub struct Salvaged {
    pub dataset: Dataset,
    /// Every problem of the package, as a whole import reports them.
    pub problems: Vec<RowError>,
    /// The rows left out.
    pub skipped: Vec<Skipped>,
    /// The optional values cleared (the rows are kept).
    pub cleared: Vec<RowError>,
}

/// Sets aside the rows `problems` make invalid, and those that depend on them (see the module's
/// comment). `files[t]` is the file of table `t` as the package names it.
pub fn salvage(mut data: Dataset, problems: Vec<RowError>) -> Salvaged {
    let mut files: Vec<String> = TABLES.iter().map(|t| format!("{}.csv", t.name)).collect();
    // Lines to skip per table, with the first reason; cells to clear.
    let mut skip: Vec<HashMap<usize, String>> = TABLES.iter().map(|_| HashMap::new()).collect();
    let mut skipped = Vec::new();
    let mut cleared = Vec::new();
    for p in &problems {
        let Some(t) = TABLES.iter().position(|t| t.name == p.resource) else { continue };
        files[t].clone_from(&p.file);
        let Some(row) = data.tables[t].iter_mut().find(|r| r.line == p.row && p.row >= 2) else {
            // Not read at all (a malformed line; a file or a header that could not be read).
            if p.row >= 2 {
                skipped.push(Skipped {
                    file: p.file.clone(),
                    resource: p.resource.clone(),
                    row: p.row,
                    id: None,
                    reason: p.reason.clone(),
                });
            }
            continue;
        };
        let table = &TABLES[t];
        match table.column_index(&p.column) {
            Some(c) if c != 0 && !table.columns[c].required => {
                row.values[c] = None;
                cleared.push(p.clone());
            }
            _ => {
                skip[t].entry(p.row).or_insert_with(|| format!("column {}: {}", p.column, p.reason));
            }
        }
    }

    // Down the references: a row referring to a skipped row is skipped.
    let mut removed: HashMap<&str, HashSet<String>> = HashMap::new();
    let mut changed = true;
    while changed {
        changed = false;
        // Ids gone: those of skipped rows that no kept row still holds (a duplicate's first row).
        removed.clear();
        for (t, table) in TABLES.iter().enumerate() {
            let kept: HashSet<&str> =
                data.tables[t].iter().filter(|r| !skip[t].contains_key(&r.line)).filter_map(|r| r.get(0)).collect();
            let gone = removed.entry(table.name).or_default();
            for r in data.tables[t].iter().filter(|r| skip[t].contains_key(&r.line)) {
                if let Some(id) = r.get(0).filter(|id| !kept.contains(id)) {
                    gone.insert(id.to_owned());
                }
            }
        }
        for (t, table) in TABLES.iter().enumerate() {
            for r in &data.tables[t] {
                if skip[t].contains_key(&r.line) {
                    continue;
                }
                let mut depends = table.columns.iter().enumerate().find_map(|(c, col)| match col.kind {
                    Kind::Ref(target) => r
                        .get(c)
                        .filter(|v| removed.get(target).is_some_and(|g| g.contains(*v)))
                        .map(|v| format!("depends on {target} {v:?}, which is skipped")),
                    _ => None,
                });
                if table.name == ATTRIBUTE.name && depends.is_none() {
                    let (link, entity) = (ATTRIBUTE.column_index("link_id"), ATTRIBUTE.column_index("link_entity"));
                    if let (Some(link), Some(entity)) = (link.and_then(|c| r.get(c)), entity.and_then(|c| r.get(c))) {
                        if removed.get(entity).is_some_and(|g| g.contains(link)) {
                            depends = Some(format!("depends on {entity} {link:?}, which is skipped"));
                        }
                    }
                }
                if let Some(reason) = depends {
                    skip[t].insert(r.line, reason);
                    changed = true;
                }
            }
        }
    }

    for (t, table) in TABLES.iter().enumerate() {
        let rows = std::mem::take(&mut data.tables[t]);
        for r in rows {
            match skip[t].remove(&r.line) {
                Some(reason) => skipped.push(Skipped {
                    file: files[t].clone(),
                    resource: table.name.to_owned(),
                    row: r.line,
                    id: r.get(0).map(str::to_owned),
                    reason,
                }),
                None => data.tables[t].push(r),
            }
        }
    }
    skipped.sort_by(|a, b| (&a.file, a.row).cmp(&(&b.file, b.row)));
    Salvaged { dataset: data, problems, skipped, cleared }
}
