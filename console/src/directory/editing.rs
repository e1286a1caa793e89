//! Keeping the directory true between imports: operators flag what is wrong with a service
//! during a call, organisation editors change their own organisation's services (proposals), and
//! editors change any service, accept or reject proposals, confirm a service unchanged and restore
//! an earlier version.
//!
//! A service is changed as one **record**: its own HSDS fields, its locations with their
//! addresses, its phones and its schedules ([`ServiceRecord`]). A record is checked by the
//! import's own rules (`dataset::check_cell` for every cell, the same "no location has id …" for
//! a dangling reference), each problem named by its field (`locations[0].latitude`), and written
//! in one transaction that bumps `dir_meta.version`, so every node's index follows.
//!
//! Every version is kept in `dir_changes`: the record a change wrote and the one it replaced, who
//! proposed it, who reviewed it, when and why. HSDS's `last_modified` is set on every write,
//! `assured_date` when an editor applies, accepts or confirms. Imports add a row of their own.
//! Every change, review and flag writes `audit_log` in its transaction.

use super::dataset::check_cell;
use super::schema::{self, Kind, Table};
use super::store;
use crate::clock::rfc3339;
use crate::db::audit::{self, Actor, AuditAction};
use crate::db::users::{Role, User};
use crate::db::{Db, DbError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row as _};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One row's fields, column name → value (text; numbers are accepted as numbers on the way in).
pub type Fields = BTreeMap<String, Value>;

/// The service columns the server keeps itself: never part of a record.
const MAINTAINED: [&str; 2] = ["last_modified", "assured_date"];

/// The longest reason, note or single value accepted.
pub const MAX_TEXT: usize = 2_000;
/// The most locations, addresses per location, phones and schedules a record may hold.
pub const MAX_ROWS: usize = 50;

/// One service as it is edited: its fields, its locations (with their addresses), its phones
/// and its schedules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRecord {
    pub service: Fields,
    #[serde(default)]
    pub locations: Vec<LocationRecord>,
    #[serde(default)]
    pub phones: Vec<Fields>,
    #[serde(default)]
    pub schedules: Vec<Fields>,
}

/// A location's fields and its addresses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LocationRecord {
    #[serde(flatten)]
    pub fields: Fields,
    #[serde(default)]
    pub addresses: Vec<Fields>,
}

/// A problem with one field: `phones[0].number`, and the import's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the record has {} problem(s)", .0.len())]
    Invalid(Vec<FieldError>),
}

impl From<sqlx::Error> for EditError {
    fn from(e: sqlx::Error) -> Self {
        EditError::Db(e.into())
    }
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Edit,
    Restore,
    Confirm,
    Import,
    Export,
}

/// Where a change stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    Proposed,
    Applied,
    Rejected,
}

fn kind_str(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Edit => "edit",
        ChangeKind::Restore => "restore",
        ChangeKind::Confirm => "confirm",
        ChangeKind::Import => "import",
        ChangeKind::Export => "export",
    }
}

fn status_str(s: ChangeStatus) -> &'static str {
    match s {
        ChangeStatus::Proposed => "proposed",
        ChangeStatus::Applied => "applied",
        ChangeStatus::Rejected => "rejected",
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(what: &str, s: &str) -> Result<T, DbError> {
    serde_json::from_str(s).map_err(|e| DbError::Corrupt(format!("{what}: {e}")))
}

/// One field that differs between two versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffLine {
    /// `service.name`, `phone <id>.number`, `location <id>.latitude`…
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A version of a service (or an import), as the history and the review list show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub id: i64,
    pub service_id: Option<String>,
    pub organization_id: Option<String>,
    pub kind: ChangeKind,
    pub status: ChangeStatus,
    pub reason: String,
    /// The record the change writes (for an import: what was imported).
    pub record: Value,
    /// The record it replaced (when applied; when proposed, the record as it was then).
    pub previous: Option<Value>,
    pub proposed_by: String,
    pub proposed_at: String,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<String>,
    pub applied_at: Option<String>,
    /// `previous` → `record`, field by field.
    pub diff: Vec<DiffLine>,
}

/// Why an operator flagged a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagReason {
    PhoneWrong,
    Closed,
    Moved,
    HoursWrong,
    Other,
}

impl FlagReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagReason::PhoneWrong => "phone_wrong",
            FlagReason::Closed => "closed",
            FlagReason::Moved => "moved",
            FlagReason::HoursWrong => "hours_wrong",
            FlagReason::Other => "other",
        }
    }
}

/// An operator's report that a service is wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub id: i64,
    pub service_id: String,
    pub service_name: Option<String>,
    pub call_id: Option<String>,
    pub reason: FlagReason,
    pub note: String,
    pub flagged_by: String,
    pub flagged_at: String,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<String>,
}

/// The service's row facts a change needs besides the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceMeta {
    pub id: String,
    pub name: String,
    pub organization_id: String,
    pub last_modified: Option<String>,
    pub assured_date: Option<String>,
}

fn fields_of(table: &Table, row: &super::dataset::Row, skip: &[&str]) -> Fields {
    let mut f = Fields::new();
    for (c, column) in table.columns.iter().enumerate() {
        if skip.contains(&column.name) {
            continue;
        }
        if let Some(v) = row.get(c) {
            f.insert(column.name.to_owned(), Value::String(v.to_owned()));
        }
    }
    f
}

fn text(f: &Fields, key: &str) -> Option<String> {
    match f.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// The service's record and facts as stored now; `None` when no service has this id.
pub async fn load_record(db: &Db, id: &str) -> Result<Option<(ServiceRecord, ServiceMeta)>, DbError> {
    let Some(row) = store::rows_where(db, &schema::SERVICE, "id", id).await?.into_iter().next() else {
        return Ok(None);
    };
    let col = |name: &str| schema::SERVICE.column_index(name).and_then(|c| row.get(c)).map(str::to_owned);
    let meta = ServiceMeta {
        id: id.to_owned(),
        name: col("name").unwrap_or_default(),
        organization_id: col("organization_id").unwrap_or_default(),
        last_modified: col("last_modified"),
        assured_date: col("assured_date"),
    };
    let mut record = ServiceRecord { service: fields_of(&schema::SERVICE, &row, &MAINTAINED), ..Default::default() };
    for sal in store::rows_where(db, &schema::SERVICE_AT_LOCATION, "service_id", id).await? {
        let Some(loc_id) = schema::SERVICE_AT_LOCATION.column_index("location_id").and_then(|c| sal.get(c)) else {
            continue;
        };
        if let Some(l) = store::rows_where(db, &schema::LOCATION, "id", loc_id).await?.first() {
            let addresses = store::rows_where(db, &schema::ADDRESS, "location_id", loc_id)
                .await?
                .iter()
                .map(|a| fields_of(&schema::ADDRESS, a, &["location_id"]))
                .collect();
            record.locations.push(LocationRecord { fields: fields_of(&schema::LOCATION, l, &[]), addresses });
        }
    }
    record.phones = store::rows_where(db, &schema::PHONE, "service_id", id)
        .await?
        .iter()
        .map(|r| fields_of(&schema::PHONE, r, &["service_id"]))
        .collect();
    record.schedules = store::rows_where(db, &schema::SCHEDULE, "service_id", id)
        .await?
        .iter()
        .map(|r| fields_of(&schema::SCHEDULE, r, &["service_id"]))
        .collect();
    Ok(Some((record, meta)))
}

/// Whether a directory organization has this id.
pub async fn organization_exists(db: &Db, id: &str) -> Result<bool, DbError> {
    exists(db, "organization", id).await
}

async fn exists(db: &Db, table: &str, id: &str) -> Result<bool, DbError> {
    let sql = format!("SELECT 1 FROM dir_{table} WHERE id = $1");
    Ok(sqlx::query(&sql).bind(id.to_owned()).fetch_optional(db.pool()).await?.is_some())
}

/// A fresh row id (128 random bits, hex).
fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// One row of the record being checked: its table, its path (`phones[0]`) and its fields.
struct Part<'a> {
    table: &'static Table,
    path: String,
    fields: &'a mut Fields,
    /// Columns the server sets (the service's id on its phones…): value, and whether a
    /// different value given is an error.
    forced: Vec<(&'static str, String)>,
}

/// Checks `record` as the new version of service `service_id`, with the import's rules; fills in
/// the ids of new rows and normalizes every value to text. Every problem is returned, each
/// named by its field.
pub async fn check(db: &Db, service_id: &str, mut record: ServiceRecord) -> Result<ServiceRecord, EditError> {
    let mut errors = Vec::new();
    let too_many = |n: usize, what: &str, errors: &mut Vec<FieldError>| {
        if n > MAX_ROWS {
            errors.push(FieldError { field: what.to_owned(), reason: format!("at most {MAX_ROWS} rows") });
        }
    };
    too_many(record.locations.len(), "locations", &mut errors);
    too_many(record.phones.len(), "phones", &mut errors);
    too_many(record.schedules.len(), "schedules", &mut errors);
    for (i, l) in record.locations.iter().enumerate() {
        too_many(l.addresses.len(), &format!("locations[{i}].addresses"), &mut errors);
    }
    if !errors.is_empty() {
        return Err(EditError::Invalid(errors));
    }
    for m in MAINTAINED {
        record.service.remove(m);
    }
    // New rows get their ids first, so addresses can name their location.
    for l in &mut record.locations {
        if text(&l.fields, "id").is_none() {
            l.fields.insert("id".into(), Value::String(new_id()));
        }
    }
    let mut parts: Vec<Part<'_>> = Vec::new();
    parts.push(Part {
        table: &schema::SERVICE,
        path: "service".into(),
        fields: &mut record.service,
        forced: vec![("id", service_id.to_owned())],
    });
    for (i, l) in record.locations.iter_mut().enumerate() {
        let loc_id = text(&l.fields, "id").unwrap_or_default();
        parts.push(Part {
            table: &schema::LOCATION,
            path: format!("locations[{i}]"),
            fields: &mut l.fields,
            forced: vec![],
        });
        for (j, a) in l.addresses.iter_mut().enumerate() {
            parts.push(Part {
                table: &schema::ADDRESS,
                path: format!("locations[{i}].addresses[{j}]"),
                fields: a,
                forced: vec![("location_id", loc_id.clone())],
            });
        }
    }
    for (i, p) in record.phones.iter_mut().enumerate() {
        parts.push(Part {
            table: &schema::PHONE,
            path: format!("phones[{i}]"),
            fields: p,
            forced: vec![("service_id", service_id.to_owned())],
        });
    }
    for (i, s) in record.schedules.iter_mut().enumerate() {
        parts.push(Part {
            table: &schema::SCHEDULE,
            path: format!("schedules[{i}]"),
            fields: s,
            forced: vec![("service_id", service_id.to_owned())],
        });
    }
    // Cells: known columns, the import's checks, text only.
    let mut ids: HashMap<&'static str, HashSet<String>> = HashMap::new();
    let mut refs: Vec<(String, &'static str, String)> = Vec::new();
    let mut owned: Vec<(String, &'static Table, String, &'static str, String)> = Vec::new();
    for part in &mut parts {
        let mut normalized = Fields::new();
        for (key, value) in part.fields.iter() {
            let field = format!("{}.{key}", part.path);
            if part.table.column_index(key).is_none() {
                errors.push(FieldError { field, reason: format!("{key:?} is not a column of {}", part.table.name) });
                continue;
            }
            let v = match value {
                Value::Null => None,
                Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
                Value::Number(n) => Some(n.to_string()),
                _ => {
                    errors.push(FieldError { field, reason: "must be text or a number".into() });
                    continue;
                }
            };
            if v.as_ref().is_some_and(|v| v.chars().count() > MAX_TEXT) {
                errors.push(FieldError { field, reason: format!("longer than {MAX_TEXT} characters") });
                continue;
            }
            if let Some(v) = v {
                normalized.insert(key.clone(), Value::String(v));
            }
        }
        for (column, value) in &part.forced {
            if let Some(given) = text(&normalized, column) {
                if &given != value && part.table.name == "service" {
                    errors.push(FieldError {
                        field: format!("{}.{column}", part.path),
                        reason: format!("the service's id is {value:?}; it cannot change"),
                    });
                }
            }
            normalized.insert((*column).to_owned(), Value::String(value.clone()));
        }
        if text(&normalized, "id").is_none() {
            normalized.insert("id".into(), Value::String(new_id()));
        }
        for column in part.table.columns {
            if MAINTAINED.contains(&column.name) && part.table.name == "service" {
                continue;
            }
            let v = text(&normalized, column.name);
            if let Some(reason) = check_cell(column.kind, column.required, v.as_deref()) {
                errors.push(FieldError { field: format!("{}.{}", part.path, column.name), reason });
            }
            if let (Kind::Ref(target), Some(v)) = (column.kind, v) {
                if !(part.table.name == "service" && column.name == "id") {
                    refs.push((format!("{}.{}", part.path, column.name), target, v));
                }
            }
        }
        let id = text(&normalized, "id").unwrap_or_default();
        if !ids.entry(part.table.name).or_default().insert(id.clone()) {
            errors.push(FieldError { field: format!("{}.id", part.path), reason: format!("duplicate id {id:?}") });
        }
        match part.table.name {
            "phone" | "schedule" => {
                owned.push((format!("{}.id", part.path), part.table, id, "service_id", service_id.to_owned()))
            }
            "address" => {
                let loc = text(&normalized, "location_id").unwrap_or_default();
                owned.push((format!("{}.id", part.path), part.table, id, "location_id", loc));
            }
            _ => {}
        }
        *part.fields = normalized;
    }
    drop(parts);
    // References: to a row of the record, else to a stored one — the import's message otherwise.
    for (field, target, v) in refs {
        let in_record = ids.get(target).is_some_and(|s| s.contains(&v));
        if !in_record && !exists(db, target, &v).await? {
            errors.push(FieldError { field, reason: format!("no {target} has id {v:?}") });
        }
    }
    // A row id already used by another service's phone (or another location's address).
    for (field, table, id, column, owner) in owned {
        if let Some(row) = store::rows_where(db, table, "id", &id).await?.first() {
            let stored = table.column_index(column).and_then(|c| row.get(c));
            if stored != Some(owner.as_str()) {
                errors.push(FieldError { field, reason: format!("id {id:?} is another row's ({})", table.name) });
            }
        }
    }
    if errors.is_empty() {
        Ok(record)
    } else {
        Err(EditError::Invalid(errors))
    }
}

/// Whether `user` may change this service (its organisation now, and the one the record gives).
pub fn may_change(user: &User, current_org: &str, record: Option<&ServiceRecord>) -> bool {
    if user.role.includes(Role::Editor) {
        return true;
    }
    if user.role != Role::OrgEditor {
        return false;
    }
    let Some(mine) = user.organization_id.as_deref() else { return false };
    if current_org != mine {
        return false;
    }
    match record {
        None => true,
        Some(r) => {
            text(&r.service, "organization_id").is_none_or(|o| o == mine)
                && r.locations.iter().all(|l| text(&l.fields, "organization_id").is_none_or(|o| o == mine))
        }
    }
}

fn forbidden(user: &User) -> EditError {
    EditError::Forbidden(format!(
        "{} may change only the services of organization {:?}",
        user.name,
        user.organization_id.as_deref().unwrap_or("(none)")
    ))
}

type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

fn bind_cell<'q>(q: AnyQuery<'q>, kind: Kind, v: Option<String>) -> AnyQuery<'q> {
    match kind {
        Kind::Float { .. } => q.bind(v.and_then(|s| s.parse::<f64>().ok())),
        Kind::Int => q.bind(v.and_then(|s| s.parse::<i64>().ok())),
        _ => q.bind(v),
    }
}

/// Updates the row with the record's id, or inserts it: every column the record does not give
/// becomes NULL (except the maintained ones of a service).
async fn upsert(tx: &mut sqlx::Transaction<'_, Any>, table: &Table, f: &Fields) -> Result<(), DbError> {
    let columns: Vec<_> =
        table.columns.iter().filter(|c| !(table.name == "service" && MAINTAINED.contains(&c.name))).collect();
    let sets: Vec<String> =
        columns.iter().skip(1).enumerate().map(|(i, c)| format!("\"{}\" = ${}", c.name, i + 2)).collect();
    let sql = format!("UPDATE dir_{} SET {} WHERE id = $1", table.name, sets.join(", "));
    let mut q = sqlx::query(&sql).bind(text(f, "id"));
    for c in columns.iter().skip(1) {
        q = bind_cell(q, c.kind, text(f, c.name));
    }
    if q.execute(&mut **tx).await?.rows_affected() > 0 {
        return Ok(());
    }
    let names: Vec<String> = columns.iter().map(|c| format!("\"{}\"", c.name)).collect();
    let params: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let sql = format!("INSERT INTO dir_{} ({}) VALUES ({})", table.name, names.join(", "), params.join(", "));
    let mut q = sqlx::query(&sql);
    for c in &columns {
        q = bind_cell(q, c.kind, text(f, c.name));
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

async fn ids_where(
    tx: &mut sqlx::Transaction<'_, Any>,
    table: &str,
    column: &str,
    value: &str,
) -> Result<Vec<String>, DbError> {
    let sql = format!("SELECT id FROM dir_{table} WHERE {column} = $1 ORDER BY id");
    let rows = sqlx::query(&sql).bind(value.to_owned()).fetch_all(&mut **tx).await?;
    Ok(rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<_, _>>()?)
}

async fn exec(tx: &mut sqlx::Transaction<'_, Any>, sql: &str, v: &str) -> Result<(), DbError> {
    sqlx::query(sql).bind(v.to_owned()).execute(&mut **tx).await?;
    Ok(())
}

/// Writes a checked record as service `id`'s current version, sets `last_modified` (and
/// `assured_date` when `assured`), and bumps the directory's version.
async fn write_record(
    tx: &mut sqlx::Transaction<'_, Any>,
    id: &str,
    record: &ServiceRecord,
    now: DateTime<Utc>,
    assured: bool,
) -> Result<(), DbError> {
    upsert(tx, &schema::SERVICE, &record.service).await?;
    let modified = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    sqlx::query("UPDATE dir_service SET last_modified = $2 WHERE id = $1")
        .bind(id.to_owned())
        .bind(modified)
        .execute(&mut **tx)
        .await?;
    if assured {
        sqlx::query("UPDATE dir_service SET assured_date = $2 WHERE id = $1")
            .bind(id.to_owned())
            .bind(rome_date(now))
            .execute(&mut **tx)
            .await?;
    }
    // Locations and their addresses; the service's links to them.
    let keep: HashSet<String> = record.locations.iter().filter_map(|l| text(&l.fields, "id")).collect();
    for l in &record.locations {
        upsert(tx, &schema::LOCATION, &l.fields).await?;
        let loc = text(&l.fields, "id").unwrap_or_default();
        let mine: HashSet<String> = l.addresses.iter().filter_map(|a| text(a, "id")).collect();
        for old in ids_where(tx, "address", "location_id", &loc).await? {
            if !mine.contains(&old) {
                exec(tx, "DELETE FROM dir_address WHERE id = $1", &old).await?;
            }
        }
        for a in &l.addresses {
            upsert(tx, &schema::ADDRESS, a).await?;
        }
    }
    let sals = sqlx::query("SELECT id, location_id FROM dir_service_at_location WHERE service_id = $1")
        .bind(id.to_owned())
        .fetch_all(&mut **tx)
        .await?;
    let mut linked = HashSet::new();
    for r in &sals {
        let (sal, loc): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        if keep.contains(&loc) {
            linked.insert(loc);
        } else {
            exec(tx, "UPDATE dir_phone SET service_at_location_id = NULL WHERE service_at_location_id = $1", &sal)
                .await?;
            exec(tx, "UPDATE dir_schedule SET service_at_location_id = NULL WHERE service_at_location_id = $1", &sal)
                .await?;
            exec(tx, "DELETE FROM dir_service_at_location WHERE id = $1", &sal).await?;
        }
    }
    for loc in &keep {
        if !linked.contains(loc) {
            sqlx::query("INSERT INTO dir_service_at_location (id, service_id, location_id) VALUES ($1, $2, $3)")
                .bind(format!("{id}@{loc}"))
                .bind(id.to_owned())
                .bind(loc.clone())
                .execute(&mut **tx)
                .await?;
        }
    }
    // Phones and schedules: the record's, and no other.
    for (table, rows) in [(&schema::PHONE, &record.phones), (&schema::SCHEDULE, &record.schedules)] {
        let mine: HashSet<String> = rows.iter().filter_map(|r| text(r, "id")).collect();
        for old in ids_where(tx, table.name, "service_id", id).await? {
            if !mine.contains(&old) {
                if table.name == "phone" {
                    exec(tx, "UPDATE dir_language SET phone_id = NULL WHERE phone_id = $1", &old).await?;
                }
                exec(tx, &format!("DELETE FROM dir_{} WHERE id = $1", table.name), &old).await?;
            }
        }
        for r in rows {
            upsert(tx, table, r).await?;
        }
    }
    sqlx::query("UPDATE dir_meta SET value = value + 1 WHERE key = 'version'").execute(&mut **tx).await?;
    Ok(())
}

/// Today's date in Rome, `YYYY-MM-DD` (HSDS's `assured_date`).
pub fn rome_date(now: DateTime<Utc>) -> String {
    now.with_timezone(&chrono_tz::Europe::Rome).format("%Y-%m-%d").to_string()
}

fn to_value(r: &ServiceRecord) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

async fn insert_change(
    tx: &mut sqlx::Transaction<'_, Any>,
    c: NewChange<'_>,
    now: DateTime<Utc>,
) -> Result<i64, DbError> {
    let now_ms = now.timestamp_millis();
    let reviewed = c.status != ChangeStatus::Proposed;
    let row = sqlx::query(
        "INSERT INTO dir_changes (service_id, organization_id, kind, status, reason, record, previous, \
         proposed_by, proposed_by_name, proposed_at, reviewed_by, reviewed_by_name, reviewed_at, applied_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
    )
    .bind(c.service_id.map(str::to_owned))
    .bind(c.organization_id.map(str::to_owned))
    .bind(kind_str(c.kind))
    .bind(status_str(c.status))
    .bind(c.reason.to_owned())
    .bind(c.record.to_string())
    .bind(c.previous.map(|p| p.to_string()))
    .bind(c.actor.user_id)
    .bind(c.actor.name.clone())
    .bind(now_ms)
    .bind(if reviewed { c.actor.user_id } else { None })
    .bind(if reviewed { Some(c.actor.name.clone()) } else { None })
    .bind(if reviewed { Some(now_ms) } else { None })
    .bind(if c.status == ChangeStatus::Applied { Some(now_ms) } else { None })
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

struct NewChange<'a> {
    service_id: Option<&'a str>,
    organization_id: Option<&'a str>,
    kind: ChangeKind,
    status: ChangeStatus,
    reason: &'a str,
    record: &'a Value,
    previous: Option<&'a Value>,
    actor: &'a Actor,
}

fn check_reason(reason: &str) -> Result<(), EditError> {
    if reason.chars().count() > MAX_TEXT {
        return Err(EditError::BadRequest(format!("reason: longer than {MAX_TEXT} characters")));
    }
    Ok(())
}

fn actor(user: &User) -> Actor {
    Actor::user(user.id, &user.name)
}

/// What [`submit`] did: applied at once (an editor's change) or stored as a proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub change: Change,
    /// The directory changed: the caller refreshes its index.
    pub applied: bool,
}

/// A change to service `id` by `user`: an editor's is applied at once, an organisation editor's
/// (of their own organisation only) is stored as a proposal.
pub async fn submit(
    db: &Db,
    user: &User,
    id: &str,
    record: ServiceRecord,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Submitted, EditError> {
    check_reason(reason)?;
    let Some((current, meta)) = load_record(db, id).await? else {
        return Err(EditError::NotFound(format!("no service has id {id:?}")));
    };
    if !may_change(user, &meta.organization_id, Some(&record)) {
        return Err(forbidden(user));
    }
    let record = check(db, id, record).await?;
    let org = text(&record.service, "organization_id").unwrap_or(meta.organization_id.clone());
    let value = to_value(&record);
    let before = to_value(&current);
    let who = actor(user);
    let apply = user.role.includes(Role::Editor);
    let _turn = db.lock_turn().await;
    let mut tx = db.pool().begin().await?;
    if apply {
        write_record(&mut tx, id, &record, now, true).await?;
    }
    let status = if apply { ChangeStatus::Applied } else { ChangeStatus::Proposed };
    let change_id = insert_change(
        &mut tx,
        NewChange {
            service_id: Some(id),
            organization_id: Some(&org),
            kind: ChangeKind::Edit,
            status,
            reason,
            record: &value,
            previous: Some(&before),
            actor: &who,
        },
        now,
    )
    .await?;
    let action = if apply { AuditAction::ApplyDirectoryChange } else { AuditAction::ProposeDirectoryChange };
    let detail = serde_json::json!({ "service_id": id, "change_id": change_id }).to_string();
    audit::record(&mut *tx, now.timestamp_millis(), &who, action, None, &detail).await?;
    tx.commit().await?;
    let change = change_by_id(db, change_id).await?.ok_or_else(|| DbError::Corrupt("the change vanished".into()))?;
    Ok(Submitted { change, applied: apply })
}

/// An editor accepts a proposal: checked again against the directory as it is now, then applied.
pub async fn accept(db: &Db, user: &User, change_id: i64, now: DateTime<Utc>) -> Result<Change, EditError> {
    let change = proposal(db, change_id).await?;
    let id = change.service_id.clone().unwrap_or_default();
    let Some((current, _)) = load_record(db, &id).await? else {
        return Err(EditError::NotFound(format!("no service has id {id:?}")));
    };
    let record: ServiceRecord = serde_json::from_value(change.record.clone())
        .map_err(|e| DbError::Corrupt(format!("change {change_id}: {e}")))?;
    let record = check(db, &id, record).await?;
    let who = actor(user);
    let _turn = db.lock_turn().await;
    let mut tx = db.pool().begin().await?;
    let now_ms = now.timestamp_millis();
    let updated = sqlx::query(
        "UPDATE dir_changes SET status = 'applied', previous = $2, reviewed_by = $3, reviewed_by_name = $4, \
         reviewed_at = $5, applied_at = $5 WHERE id = $1 AND status = 'proposed'",
    )
    .bind(change_id)
    .bind(to_value(&current).to_string())
    .bind(who.user_id)
    .bind(who.name.clone())
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(EditError::Conflict(format!("change {change_id} was reviewed meanwhile")));
    }
    write_record(&mut tx, &id, &record, now, true).await?;
    let detail = serde_json::json!({ "service_id": id, "change_id": change_id }).to_string();
    audit::record(&mut *tx, now_ms, &who, AuditAction::AcceptDirectoryChange, None, &detail).await?;
    tx.commit().await?;
    Ok(change_by_id(db, change_id).await?.ok_or_else(|| DbError::Corrupt("the change vanished".into()))?)
}

/// An editor rejects a proposal.
pub async fn reject(
    db: &Db,
    user: &User,
    change_id: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Change, EditError> {
    check_reason(reason)?;
    let change = proposal(db, change_id).await?;
    let who = actor(user);
    let _turn = db.lock_turn().await;
    let mut tx = db.pool().begin().await?;
    let now_ms = now.timestamp_millis();
    let updated = sqlx::query(
        "UPDATE dir_changes SET status = 'rejected', reviewed_by = $2, reviewed_by_name = $3, reviewed_at = $4 \
         WHERE id = $1 AND status = 'proposed'",
    )
    .bind(change_id)
    .bind(who.user_id)
    .bind(who.name.clone())
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(EditError::Conflict(format!("change {change_id} was reviewed meanwhile")));
    }
    let detail =
        serde_json::json!({ "service_id": change.service_id, "change_id": change_id, "reason": reason }).to_string();
    audit::record(&mut *tx, now_ms, &who, AuditAction::RejectDirectoryChange, None, &detail).await?;
    tx.commit().await?;
    Ok(change_by_id(db, change_id).await?.ok_or_else(|| DbError::Corrupt("the change vanished".into()))?)
}

async fn proposal(db: &Db, change_id: i64) -> Result<Change, EditError> {
    let Some(change) = change_by_id(db, change_id).await? else {
        return Err(EditError::NotFound(format!("no change has id {change_id}")));
    };
    if change.status != ChangeStatus::Proposed {
        return Err(EditError::Conflict(format!("change {change_id} is not a proposal waiting for review")));
    }
    Ok(change)
}

/// An editor brings back the version a change replaced, as a new version (checked again).
pub async fn restore(
    db: &Db,
    user: &User,
    id: &str,
    change_id: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Change, EditError> {
    check_reason(reason)?;
    let Some((current, meta)) = load_record(db, id).await? else {
        return Err(EditError::NotFound(format!("no service has id {id:?}")));
    };
    let old = match change_by_id(db, change_id).await? {
        Some(c) if c.service_id.as_deref() == Some(id) && c.status == ChangeStatus::Applied => c.previous,
        _ => None,
    };
    let Some(old) = old else {
        return Err(EditError::NotFound(format!("service {id:?} has no applied change {change_id} to restore")));
    };
    let record: ServiceRecord =
        serde_json::from_value(old).map_err(|e| DbError::Corrupt(format!("change {change_id}: {e}")))?;
    let record = check(db, id, record).await?;
    let value = to_value(&record);
    let before = to_value(&current);
    let who = actor(user);
    let _turn = db.lock_turn().await;
    let mut tx = db.pool().begin().await?;
    write_record(&mut tx, id, &record, now, true).await?;
    let reason =
        if reason.is_empty() { format!("restored the version change {change_id} replaced") } else { reason.to_owned() };
    let new_id = insert_change(
        &mut tx,
        NewChange {
            service_id: Some(id),
            organization_id: Some(&meta.organization_id),
            kind: ChangeKind::Restore,
            status: ChangeStatus::Applied,
            reason: &reason,
            record: &value,
            previous: Some(&before),
            actor: &who,
        },
        now,
    )
    .await?;
    let detail = serde_json::json!({ "service_id": id, "change_id": new_id, "restored_from": change_id }).to_string();
    audit::record(&mut *tx, now.timestamp_millis(), &who, AuditAction::RestoreDirectoryVersion, None, &detail).await?;
    tx.commit().await?;
    Ok(change_by_id(db, new_id).await?.ok_or_else(|| DbError::Corrupt("the change vanished".into()))?)
}

/// An editor confirms that a service is still right as it is: `assured_date` becomes today.
pub async fn confirm(db: &Db, user: &User, id: &str, now: DateTime<Utc>) -> Result<Change, EditError> {
    let Some((current, meta)) = load_record(db, id).await? else {
        return Err(EditError::NotFound(format!("no service has id {id:?}")));
    };
    let value = to_value(&current);
    let who = actor(user);
    let _turn = db.lock_turn().await;
    let mut tx = db.pool().begin().await?;
    sqlx::query("UPDATE dir_service SET assured_date = $2 WHERE id = $1")
        .bind(id.to_owned())
        .bind(rome_date(now))
        .execute(&mut *tx)
        .await?;
    let new_id = insert_change(
        &mut tx,
        NewChange {
            service_id: Some(id),
            organization_id: Some(&meta.organization_id),
            kind: ChangeKind::Confirm,
            status: ChangeStatus::Applied,
            reason: "confirmed unchanged",
            record: &value,
            previous: Some(&value),
            actor: &who,
        },
        now,
    )
    .await?;
    let detail = serde_json::json!({ "service_id": id, "change_id": new_id }).to_string();
    audit::record(&mut *tx, now.timestamp_millis(), &who, AuditAction::ConfirmDirectoryService, None, &detail).await?;
    tx.commit().await?;
    Ok(change_by_id(db, new_id).await?.ok_or_else(|| DbError::Corrupt("the change vanished".into()))?)
}

/// Records an import in the history (in the import's own transaction).
pub async fn record_import(
    tx: &mut sqlx::Transaction<'_, Any>,
    source: &str,
    services: usize,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let who = Actor::system("helpline directory import");
    let record = serde_json::json!({ "source": source, "services": services });
    insert_change(
        tx,
        NewChange {
            service_id: None,
            organization_id: None,
            kind: ChangeKind::Import,
            status: ChangeStatus::Applied,
            reason: "import",
            record: &record,
            previous: None,
            actor: &who,
        },
        now,
    )
    .await?;
    audit::record(&mut **tx, now.timestamp_millis(), &who, AuditAction::ImportDirectory, None, &record.to_string())
        .await?;
    Ok(())
}

/// Records an export in the history (it changes nothing: a row of its own, applied).
pub async fn record_export(db: &Db, target: &str, services: usize, now: DateTime<Utc>) -> Result<(), DbError> {
    let who = Actor::system("helpline directory export");
    let record = serde_json::json!({ "target": target, "services": services });
    let _turn = db.lock_turn().await;
    let mut tx = db.pool().begin().await?;
    insert_change(
        &mut tx,
        NewChange {
            service_id: None,
            organization_id: None,
            kind: ChangeKind::Export,
            status: ChangeStatus::Applied,
            reason: "export",
            record: &record,
            previous: None,
            actor: &who,
        },
        now,
    )
    .await?;
    audit::record(&mut *tx, now.timestamp_millis(), &who, AuditAction::ExportDirectory, None, &record.to_string())
        .await?;
    tx.commit().await?;
    Ok(())
}

const CHANGE_COLUMNS: &str = "id, service_id, organization_id, kind, status, reason, record, previous, \
     proposed_by_name, proposed_at, reviewed_by_name, reviewed_at, applied_at";

type ChangeRow = (
    i64,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

fn change_from(row: ChangeRow) -> Result<Change, DbError> {
    let (id, service_id, organization_id, kind, status, reason, record, previous, by, at, rby, rat, applied) = row;
    let kind: ChangeKind = parse_json("change kind", &format!("\"{kind}\""))?;
    let status: ChangeStatus = parse_json("change status", &format!("\"{status}\""))?;
    let record: Value = parse_json("change record", &record)?;
    let previous: Option<Value> = previous.map(|p| parse_json("change previous", &p)).transpose()?;
    let diff = match (&previous, kind) {
        (_, ChangeKind::Import | ChangeKind::Export) => Vec::new(),
        (p, _) => diff(p.as_ref(), &record),
    };
    Ok(Change {
        id,
        service_id,
        organization_id,
        kind,
        status,
        reason,
        record,
        previous,
        proposed_by: by,
        proposed_at: rfc3339(at),
        reviewed_by: rby,
        reviewed_at: rat.map(rfc3339),
        applied_at: applied.map(rfc3339),
        diff,
    })
}

pub async fn change_by_id(db: &Db, id: i64) -> Result<Option<Change>, DbError> {
    let row: Option<ChangeRow> = sqlx::query_as(&format!("SELECT {CHANGE_COLUMNS} FROM dir_changes WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.map(change_from).transpose()
}

/// Every version of a service, newest first (proposals and rejections included).
pub async fn history(db: &Db, service_id: &str) -> Result<Vec<Change>, DbError> {
    let rows: Vec<ChangeRow> = sqlx::query_as(&format!(
        "SELECT {CHANGE_COLUMNS} FROM dir_changes WHERE service_id = $1 ORDER BY id DESC LIMIT 500"
    ))
    .bind(service_id.to_owned())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(change_from).collect()
}

/// The changes with this status (newest first): an organisation editor sees their
/// organisation's only. Imports are listed with status `applied` to editors.
pub async fn changes(db: &Db, user: &User, status: ChangeStatus) -> Result<Vec<Change>, DbError> {
    let scoped = !user.role.includes(Role::Editor);
    let rows: Vec<ChangeRow> = sqlx::query_as(&format!(
        "SELECT {CHANGE_COLUMNS} FROM dir_changes WHERE status = $1 AND ($2 = 0 OR organization_id = $3) \
         ORDER BY id DESC LIMIT 500"
    ))
    .bind(status_str(status))
    .bind(i64::from(scoped))
    .bind(user.organization_id.clone().unwrap_or_default())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(change_from).collect()
}

fn flatten(record: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(r) = serde_json::from_value::<ServiceRecord>(record.clone()) else { return out };
    let mut put = |prefix: String, f: &Fields, skip: &[&str]| {
        for (k, v) in f {
            if skip.contains(&k.as_str()) {
                continue;
            }
            if let Some(t) = text(f, k).or_else(|| v.as_str().map(str::to_owned)) {
                out.insert(format!("{prefix}.{k}"), t);
            }
        }
    };
    put("service".into(), &r.service, &[]);
    for l in &r.locations {
        let id = text(&l.fields, "id").unwrap_or_default();
        put(format!("location {id}"), &l.fields, &["id"]);
        for a in &l.addresses {
            put(format!("address {}", text(a, "id").unwrap_or_default()), a, &["id", "location_id"]);
        }
    }
    for p in &r.phones {
        put(format!("phone {}", text(p, "id").unwrap_or_default()), p, &["id", "service_id"]);
    }
    for s in &r.schedules {
        put(format!("schedule {}", text(s, "id").unwrap_or_default()), s, &["id", "service_id"]);
    }
    out
}

/// The fields that differ between two records.
pub fn diff(before: Option<&Value>, after: &Value) -> Vec<DiffLine> {
    let a = before.map(flatten).unwrap_or_default();
    let b = flatten(after);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| DiffLine { field: k.clone(), before: a.get(k).cloned(), after: b.get(k).cloned() })
        .collect()
}

// ---- flags ----------------------------------------------------------------------------------

/// An operator flags service `id`, during call `call_id` when given.
pub async fn flag(
    db: &Db,
    user: &User,
    id: &str,
    call_id: Option<&str>,
    reason: FlagReason,
    note: &str,
    now: DateTime<Utc>,
) -> Result<Flag, EditError> {
    if note.chars().count() > MAX_TEXT {
        return Err(EditError::BadRequest(format!("note: longer than {MAX_TEXT} characters")));
    }
    if !exists(db, "service", id).await? {
        return Err(EditError::NotFound(format!("no service has id {id:?}")));
    }
    let call_id = call_id.map(str::trim).filter(|c| !c.is_empty());
    if let Some(c) = call_id {
        let known = sqlx::query("SELECT 1 FROM calls WHERE call_id = $1")
            .bind(c.to_owned())
            .fetch_optional(db.pool())
            .await?
            .is_some();
        if !known {
            return Err(EditError::BadRequest(format!("call_id: no call has id {c:?}")));
        }
    }
    let who = actor(user);
    let now_ms = now.timestamp_millis();
    let _turn = db.lock_turn().await;
    let mut tx = db.pool().begin().await?;
    let row = sqlx::query(
        "INSERT INTO dir_flags (service_id, call_id, reason, note, flagged_by, flagged_by_name, flagged_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(id.to_owned())
    .bind(call_id.map(str::to_owned))
    .bind(reason.as_str())
    .bind(note.trim().to_owned())
    .bind(who.user_id)
    .bind(who.name.clone())
    .bind(now_ms)
    .fetch_one(&mut *tx)
    .await?;
    let flag_id: i64 = row.try_get(0)?;
    // The note may name the caller's situation: the audit keeps the facts only.
    let detail = serde_json::json!({ "service_id": id, "flag_id": flag_id, "reason": reason.as_str() }).to_string();
    audit::record(&mut *tx, now_ms, &who, AuditAction::FlagService, call_id, &detail).await?;
    tx.commit().await?;
    Ok(flag_by_id(db, flag_id).await?.ok_or_else(|| DbError::Corrupt("the flag vanished".into()))?)
}

/// An editor marks a flag resolved.
pub async fn resolve_flag(db: &Db, user: &User, flag_id: i64, now: DateTime<Utc>) -> Result<Flag, EditError> {
    let Some(flag) = flag_by_id(db, flag_id).await? else {
        return Err(EditError::NotFound(format!("no flag has id {flag_id}")));
    };
    if flag.resolved_at.is_some() {
        return Err(EditError::Conflict(format!("flag {flag_id} is already resolved")));
    }
    let who = actor(user);
    let now_ms = now.timestamp_millis();
    let _turn = db.lock_turn().await;
    let mut tx = db.pool().begin().await?;
    let updated = sqlx::query(
        "UPDATE dir_flags SET resolved_by = $2, resolved_by_name = $3, resolved_at = $4 \
         WHERE id = $1 AND resolved_at IS NULL",
    )
    .bind(flag_id)
    .bind(who.user_id)
    .bind(who.name.clone())
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(EditError::Conflict(format!("flag {flag_id} is already resolved")));
    }
    let detail = serde_json::json!({ "service_id": flag.service_id, "flag_id": flag_id }).to_string();
    audit::record(&mut *tx, now_ms, &who, AuditAction::ResolveFlag, flag.call_id.as_deref(), &detail).await?;
    tx.commit().await?;
    Ok(flag_by_id(db, flag_id).await?.ok_or_else(|| DbError::Corrupt("the flag vanished".into()))?)
}

const FLAG_COLUMNS: &str = "f.id, f.service_id, s.name, f.call_id, f.reason, f.note, f.flagged_by_name, \
     f.flagged_at, f.resolved_by_name, f.resolved_at";

type FlagRow = (i64, String, Option<String>, Option<String>, String, String, String, i64, Option<String>, Option<i64>);

fn flag_from(row: FlagRow) -> Result<Flag, DbError> {
    let (id, service_id, service_name, call_id, reason, note, by, at, rby, rat) = row;
    Ok(Flag {
        id,
        service_id,
        service_name,
        call_id,
        reason: parse_json("flag reason", &format!("\"{reason}\""))?,
        note,
        flagged_by: by,
        flagged_at: rfc3339(at),
        resolved_by: rby,
        resolved_at: rat.map(rfc3339),
    })
}

async fn flag_by_id(db: &Db, id: i64) -> Result<Option<Flag>, DbError> {
    let row: Option<FlagRow> = sqlx::query_as(&format!(
        "SELECT {FLAG_COLUMNS} FROM dir_flags f LEFT JOIN dir_service s ON s.id = f.service_id WHERE f.id = $1"
    ))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.map(flag_from).transpose()
}

/// The flags not yet resolved, newest first: an organisation editor sees their organisation's.
pub async fn open_flags(db: &Db, user: &User, service_id: Option<&str>) -> Result<Vec<Flag>, DbError> {
    let scoped = !user.role.includes(Role::Editor);
    let rows: Vec<FlagRow> = sqlx::query_as(&format!(
        "SELECT {FLAG_COLUMNS} FROM dir_flags f LEFT JOIN dir_service s ON s.id = f.service_id \
         WHERE f.resolved_at IS NULL AND ($1 = 0 OR s.organization_id = $2) AND ($3 = '' OR f.service_id = $3) \
         ORDER BY f.id DESC LIMIT 500"
    ))
    .bind(i64::from(scoped))
    .bind(user.organization_id.clone().unwrap_or_default())
    .bind(service_id.unwrap_or_default().to_owned())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(flag_from).collect()
}

/// The services with a flag not yet resolved.
pub async fn flagged_services(db: &Db) -> Result<HashSet<String>, DbError> {
    let rows =
        sqlx::query("SELECT DISTINCT service_id FROM dir_flags WHERE resolved_at IS NULL").fetch_all(db.pool()).await?;
    Ok(rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<_, _>>()?)
}

// ---- the editors' list ----------------------------------------------------------------------

/// A service as the editors' list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceListItem {
    pub id: String,
    pub name: String,
    pub organization_id: String,
    pub organization: String,
    pub last_modified: Option<String>,
    pub assured_date: Option<String>,
    pub open_flags: i64,
    pub proposals: i64,
    /// Whether the asking user may change it.
    pub editable: bool,
}

/// What the editors' list is filtered by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    /// Part of the service's or its organisation's name (case-insensitive).
    pub q: String,
    /// Only services not confirmed (`assured_date`) within this many months.
    pub unconfirmed_months: Option<u32>,
    /// Only services with an open flag.
    pub flagged: bool,
    /// Only the asking organisation editor's organisation (always so for them).
    pub mine: bool,
    pub page: u32,
}

/// The most services one page of the list holds.
pub const LIST_PAGE: i64 = 50;

pub async fn list_services(
    db: &Db,
    user: &User,
    q: &ListQuery,
    now: DateTime<Utc>,
) -> Result<Vec<ServiceListItem>, DbError> {
    let cutoff = match q.unconfirmed_months {
        Some(m) => now
            .with_timezone(&chrono_tz::Europe::Rome)
            .date_naive()
            .checked_sub_months(chrono::Months::new(m))
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        None => String::new(),
    };
    let org = if q.mine { user.organization_id.clone().unwrap_or_default() } else { String::new() };
    let like = format!("%{}%", q.q.trim().to_lowercase().replace(['%', '_'], ""));
    let rows = sqlx::query(
        "SELECT s.id, s.name, s.organization_id, o.name, s.last_modified, s.assured_date, \
           (SELECT COUNT(*) FROM dir_flags f WHERE f.service_id = s.id AND f.resolved_at IS NULL), \
           (SELECT COUNT(*) FROM dir_changes c WHERE c.service_id = s.id AND c.status = 'proposed') \
         FROM dir_service s JOIN dir_organization o ON o.id = s.organization_id \
         WHERE (LOWER(s.name) LIKE $1 OR LOWER(o.name) LIKE $1) \
           AND ($2 = '' OR s.assured_date IS NULL OR s.assured_date < $2) \
           AND ($3 = '' OR s.organization_id = $3) \
           AND ($4 = 0 OR EXISTS (SELECT 1 FROM dir_flags f WHERE f.service_id = s.id AND f.resolved_at IS NULL)) \
         ORDER BY s.name, s.id LIMIT $5 OFFSET $6",
    )
    .bind(like)
    .bind(cutoff)
    .bind(org)
    .bind(i64::from(q.flagged))
    .bind(LIST_PAGE)
    .bind(i64::from(q.page.saturating_sub(1)) * LIST_PAGE)
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let organization_id: String = r.try_get(2)?;
        out.push(ServiceListItem {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            editable: may_change(user, &organization_id, None),
            organization_id,
            organization: r.try_get(3)?,
            last_modified: r.try_get(4)?,
            assured_date: r.try_get(5)?,
            open_flags: r.try_get(6)?,
            proposals: r.try_get(7)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_names_the_fields_that_changed() {
        let before = serde_json::json!({"service": {"id": "s", "name": "A"}, "phones": [{"id": "p", "number": "1"}]});
        let after = serde_json::json!({"service": {"id": "s", "name": "A"}, "phones": [{"id": "p", "number": "2"}]});
        let d = diff(Some(&before), &after);
        assert_eq!(
            d,
            vec![DiffLine { field: "phone p.number".into(), before: Some("1".into()), after: Some("2".into()) }]
        );
    }

    #[test]
    fn roles_may_change_what_they_should() {
        let user = |role, org: Option<&str>| User {
            id: 1,
            name: "u".into(),
            role,
            languages: vec![],
            areas: vec![],
            sip_target: None,
            created_at: 0,
            disabled: false,
            must_change_password: false,
            organization_id: org.map(str::to_owned),
            mediator: false,
        };
        assert!(may_change(&user(Role::Editor, None), "o1", None));
        assert!(may_change(&user(Role::Admin, None), "o1", None));
        assert!(may_change(&user(Role::OrgEditor, Some("o1")), "o1", None));
        assert!(!may_change(&user(Role::OrgEditor, Some("o1")), "o2", None));
        assert!(!may_change(&user(Role::OrgEditor, None), "o1", None));
        assert!(!may_change(&user(Role::Supervisor, None), "o1", None));
        let mut moved = ServiceRecord::default();
        moved.service.insert("organization_id".into(), Value::String("o2".into()));
        assert!(!may_change(&user(Role::OrgEditor, Some("o1")), "o1", Some(&moved)));
    }
}
