//! The directory's HTTP API: `GET /api/services/search` and `GET /api/services/{id}`, answering
//! in the HSDS API's shapes (a paginated `{total_items, total_pages, page_number, size,
//! first_page, last_page, empty, contents}` and the nested service), plus area counts and
//! distances. Operators and up (the console's search).

use super::schema::{self, Kind, Table};
use super::search::{SearchHit, SearchQuery, MAX_PAGE_SIZE};
use super::store;
use super::DirectoryState;
use crate::error::AppError;
use axum::extract::{FromRef, Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use ivr::domain::{Cap, ServiceArea};
use ivr::geo::{CapLocation, Gazetteer, GeoPoint};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<DirectoryState>: FromRef<S>,
{
    Router::new().route("/api/services/search", get(search)).route("/api/services/{id}", get(service))
}

/// The longest free text accepted.
const MAX_TEXT: usize = 200;
const DEFAULT_PAGE_SIZE: usize = 20;
/// The largest radius accepted, in km (Italy is about 1,300 km long).
const MAX_RADIUS_KM: f64 = 2_000.0;

fn bad(param: &str, why: impl std::fmt::Display) -> AppError {
    AppError::BadRequest(format!("parameter {param}: {why}"))
}

/// Where `near` points: `lat,lng`, a CAP or a comune's name.
pub fn resolve_near(text: &str, gazetteer: &Gazetteer) -> Result<(GeoPoint, String), String> {
    let t = text.trim();
    if let Some((a, b)) = t.split_once(',') {
        if let (Ok(lat), Ok(lng)) = (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lng) {
                return Err(format!("{t:?} is outside latitude -90..90, longitude -180..180"));
            }
            return Ok((GeoPoint::new(lat, lng), format!("{lat},{lng}")));
        }
    }
    if t.len() == 5 && t.bytes().all(|b| b.is_ascii_digit()) {
        let cap = Cap::parse(t).map_err(|e| e.to_string())?;
        return match gazetteer.locate_cap(&cap) {
            CapLocation::Exact { comuni } => match comuni.first() {
                Some(c) => Ok((c.point, c.name.clone())),
                None => Err(format!("CAP {t} is unknown")),
            },
            CapLocation::PrefixArea { label, centroid, .. } => Ok((centroid, label.to_owned())),
            CapLocation::Unknown => Err(format!("CAP {t} is unknown")),
        };
    }
    match gazetteer.comune_by_name(t).first() {
        Some(c) => Ok((c.point, c.name.clone())),
        None => Err(format!("{t:?} is neither lat,lng nor a known CAP or comune")),
    }
}

/// Turns the query string into a search, or a 400 naming the parameter.
pub fn parse_query(
    params: &HashMap<String, String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<SearchQuery, AppError> {
    let mut q = SearchQuery::new(now);
    let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    if let Some(text) = params.get("q") {
        if text.chars().count() > MAX_TEXT {
            return Err(bad("q", format!("longer than {MAX_TEXT} characters")));
        }
        q.text = text.clone();
    }
    if let Some(areas) = get("area") {
        for a in areas.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            let area = ServiceArea::parse(a).map_err(|_| {
                bad("area", format!("{a:?} is not one of lingua, lavoro, casa, salute, minori, mediazione"))
            })?;
            q.areas.push(area);
        }
    }
    if let Some(lang) = get("lang") {
        let code = lang.to_ascii_lowercase();
        if !(2..=3).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(bad("lang", format!("{lang:?} is not a language code (it, en, ar…)")));
        }
        q.language = Some(code);
    }
    if let Some(near) = get("near") {
        q.near = Some(resolve_near(near, Gazetteer::embedded()).map_err(|e| bad("near", e))?.0);
    }
    if let Some(r) = get("radius_km") {
        let radius: f64 = r.parse().map_err(|_| bad("radius_km", format!("{r:?} is not a number")))?;
        if !(radius > 0.0 && radius <= MAX_RADIUS_KM) {
            return Err(bad("radius_km", format!("must be more than 0 and at most {MAX_RADIUS_KM}")));
        }
        if q.near.is_none() {
            return Err(bad("radius_km", "needs near (lat,lng, a CAP or a comune)"));
        }
        q.radius_km = Some(radius);
    }
    if let Some(o) = get("open_now") {
        q.open_now = match o {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(bad("open_now", format!("{o:?} is not true or false"))),
        };
    }
    if let Some(p) = get("page") {
        q.page = p
            .parse::<usize>()
            .ok()
            .filter(|&p| p >= 1)
            .ok_or_else(|| bad("page", format!("{p:?} is not a page number (1, 2, …)")))?;
    }
    q.size = DEFAULT_PAGE_SIZE;
    if let Some(s) = get("per_page").or_else(|| get("size")) {
        q.size = s
            .parse::<usize>()
            .ok()
            .filter(|&s| (1..=MAX_PAGE_SIZE).contains(&s))
            .ok_or_else(|| bad("per_page", format!("{s:?} is not a page size 1..{MAX_PAGE_SIZE}")))?;
    }
    Ok(q)
}

/// A hit as an HSDS service (the fields the index holds) with the search's extras.
fn hit_json(h: &SearchHit) -> Value {
    json!({
        "id": h.id,
        "name": h.name,
        "status": "active",
        "organization": { "name": h.organization },
        "phones": if h.phone.is_empty() { json!([]) } else { json!([{ "number": h.phone }]) },
        "languages": h.languages.iter().map(|c| json!({ "code": c })).collect::<Vec<_>>(),
        "attributes": h.areas.iter().map(|a| json!({ "taxonomy_term": { "id": schema::area_term_id(*a), "code": a.as_str() } })).collect::<Vec<_>>(),
        "service_at_locations": [{
            "location": {
                "latitude": h.latitude,
                "longitude": h.longitude,
                "addresses": [{ "city": h.town, "postal_code": h.postal_code }],
            }
        }],
        "areas": h.areas.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "town": h.town,
        "distance_km": h.distance_km,
        "open_now": h.open_now,
        "hours_today": h.hours_today,
        "score": h.score,
    })
}

async fn search(
    _: crate::auth::AsOperator,
    State(state): State<Arc<DirectoryState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(search_json(&state.directory, &params, state.clock.now())?))
}

/// A search as `GET /api/services/search` answers it (also the console socket's `search`).
pub fn search_json(
    directory: &super::Directory,
    params: &HashMap<String, String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Value, AppError> {
    let q = parse_query(params, now)?;
    let r = directory.search(&q);
    let total_pages = r.total.div_ceil(r.size);
    let counts: Map<String, Value> = r.area_counts.iter().map(|(a, n)| (a.as_str().to_owned(), json!(n))).collect();
    Ok(json!({
        "total_items": r.total,
        "total_pages": total_pages,
        "page_number": r.page,
        "size": r.size,
        "first_page": r.page == 1,
        "last_page": r.page >= total_pages,
        "empty": r.hits.is_empty(),
        "contents": r.hits.iter().map(hit_json).collect::<Vec<_>>(),
        "area_counts": counts,
    }))
}

/// A stored row as a JSON object (numbers as numbers, empty values left out).
fn row_json(table: &Table, row: &super::dataset::Row) -> Map<String, Value> {
    let mut m = Map::new();
    for (c, column) in table.columns.iter().enumerate() {
        let Some(v) = row.get(c) else { continue };
        let value = match column.kind {
            Kind::Float { .. } => v.parse::<f64>().map(|x| json!(x)).unwrap_or(json!(v)),
            Kind::Int => v.parse::<i64>().map(|x| json!(x)).unwrap_or(json!(v)),
            _ => json!(v),
        };
        m.insert(column.name.to_owned(), value);
    }
    m
}

async fn service(
    _: crate::auth::AsOperator,
    State(state): State<Arc<DirectoryState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let db = state.directory.db();
    let rows = store::rows_where(db, &schema::SERVICE, "id", &id).await?;
    let Some(row) = rows.first() else {
        return Err(AppError::NotFound(format!("no service has id {id:?}")));
    };
    let mut out = row_json(&schema::SERVICE, row);
    if let Some(org_id) = row.get(schema::SERVICE.column_index("organization_id").unwrap_or(0)) {
        if let Some(org) = store::rows_where(db, &schema::ORGANIZATION, "id", org_id).await?.first() {
            out.insert("organization".into(), Value::Object(row_json(&schema::ORGANIZATION, org)));
        }
    }
    for (key, table) in [("phones", &schema::PHONE), ("schedules", &schema::SCHEDULE), ("languages", &schema::LANGUAGE)]
    {
        let list = store::rows_where(db, table, "service_id", &id).await?;
        out.insert(key.into(), Value::Array(list.iter().map(|r| Value::Object(row_json(table, r))).collect()));
    }
    let mut attributes = Vec::new();
    for a in store::rows_where(db, &schema::ATTRIBUTE, "link_id", &id).await? {
        let mut obj = row_json(&schema::ATTRIBUTE, &a);
        if let Some(term_id) = a.get(schema::ATTRIBUTE.column_index("taxonomy_term_id").unwrap_or(0)) {
            if let Some(t) = store::rows_where(db, &schema::TAXONOMY_TERM, "id", term_id).await?.first() {
                obj.insert("taxonomy_term".into(), Value::Object(row_json(&schema::TAXONOMY_TERM, t)));
            }
        }
        attributes.push(Value::Object(obj));
    }
    out.insert("attributes".into(), Value::Array(attributes));
    let mut sals = Vec::new();
    for s in store::rows_where(db, &schema::SERVICE_AT_LOCATION, "service_id", &id).await? {
        let mut obj = row_json(&schema::SERVICE_AT_LOCATION, &s);
        if let Some(loc_id) = s.get(schema::SERVICE_AT_LOCATION.column_index("location_id").unwrap_or(0)) {
            if let Some(l) = store::rows_where(db, &schema::LOCATION, "id", loc_id).await?.first() {
                let mut loc = row_json(&schema::LOCATION, l);
                let addresses = store::rows_where(db, &schema::ADDRESS, "location_id", loc_id).await?;
                loc.insert(
                    "addresses".into(),
                    Value::Array(addresses.iter().map(|a| Value::Object(row_json(&schema::ADDRESS, a))).collect()),
                );
                obj.insert("location".into(), Value::Object(loc));
            }
        }
        sals.push(Value::Object(obj));
    }
    out.insert("service_at_locations".into(), Value::Array(sals));
    Ok(Json(Value::Object(out)))
}
