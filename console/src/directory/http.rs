//! The directory's HTTP API: `GET /api/services/search` and `GET /api/services/{id}`, answering
//! in the HSDS API's shapes (a paginated `{total_items, total_pages, page_number, size,
//! first_page, last_page, empty, contents}` and the nested service), plus area counts and
//! distances. Operators and up (the console's search). The query string becomes a
//! [`SearchParams`], then the one [`SearchQuery`]; the answer is built from the one
//! [`SearchResponse`], as the console socket's `search_results` are.

use super::schema::{self, Kind, Table};
use super::search::{SearchHit, SearchQuery, SearchResponse, MAX_PAGE_SIZE};
use super::store;
use super::DirectoryState;
use crate::error::AppError;
use axum::extract::{FromRef, Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use ivr::domain::{Cap, ServiceArea};
use ivr::geo::{CapLocation, Gazetteer, GeoPoint};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<DirectoryState>: FromRef<S>,
{
    Router::new()
        .route("/api/services/search", get(search))
        .route("/api/services/{id}", get(service))
        .merge(super::review::routes())
}

/// The longest free text accepted.
const MAX_TEXT: usize = 200;
const DEFAULT_PAGE_SIZE: usize = 20;
/// The largest radius accepted, in km (Italy is about 1,300 km long).
const MAX_RADIUS_KM: f64 = 2_000.0;

fn bad(param: &'static str, why: impl std::fmt::Display) -> SearchError {
    SearchError { param, why: why.to_string() }
}

/// A search parameter that is not valid: `parameter <param>: <why>`. A 400 over HTTP, a
/// `bad_search` error on the console socket.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("parameter {param}: {why}")]
pub struct SearchError {
    pub param: &'static str,
    pub why: String,
}

impl From<SearchError> for AppError {
    fn from(e: SearchError) -> Self {
        AppError::BadRequest(e.to_string())
    }
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

/// A search as a page asks for it, not yet validated: the query string of
/// `GET /api/services/search` ([`SearchParams::from_query`]) or the console socket's `search`
/// message. [`SearchParams::query`] turns either into the one [`SearchQuery`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchParams {
    /// Free text (at most 200 characters).
    pub q: String,
    /// Areas, comma-separated (`casa,lavoro`); empty: every area.
    pub area: Option<String>,
    /// A language spoken (`ar`, `fr`…).
    pub lang: Option<String>,
    /// `lat,lng`, a CAP or a comune's name.
    pub near: Option<String>,
    /// Only services within this many km of `near`.
    pub radius_km: Option<f64>,
    pub open_now: bool,
    /// 1-based.
    pub page: Option<u64>,
    /// Results per page (default 20, at most [`MAX_PAGE_SIZE`]).
    pub per_page: Option<u64>,
}

impl SearchParams {
    /// The HTTP query string's parameters (`per_page` also as `size`; empty values are absent).
    pub fn from_query(params: &HashMap<String, String>) -> Result<SearchParams, SearchError> {
        let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let radius_km = match get("radius_km") {
            Some(r) => Some(r.parse::<f64>().map_err(|_| bad("radius_km", format!("{r:?} is not a number")))?),
            None => None,
        };
        let open_now = match get("open_now") {
            None | Some("false" | "0" | "no") => false,
            Some("true" | "1" | "yes") => true,
            Some(o) => return Err(bad("open_now", format!("{o:?} is not true or false"))),
        };
        let page = match get("page") {
            Some(p) => {
                Some(p.parse::<u64>().map_err(|_| bad("page", format!("{p:?} is not a page number (1, 2, …)")))?)
            }
            None => None,
        };
        let per_page = match get("per_page").or_else(|| get("size")) {
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| bad("per_page", format!("{s:?} is not a page size 1..{MAX_PAGE_SIZE}")))?,
            ),
            None => None,
        };
        Ok(SearchParams {
            q: params.get("q").cloned().unwrap_or_default(),
            area: get("area").map(str::to_owned),
            lang: get("lang").map(str::to_owned),
            near: get("near").map(str::to_owned),
            radius_km,
            open_now,
            page,
            per_page,
        })
    }

    /// The search to run, or the first parameter that is not valid.
    pub fn query(&self) -> Result<SearchQuery, SearchError> {
        let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let mut q = SearchQuery::new();
        if self.q.chars().count() > MAX_TEXT {
            return Err(bad("q", format!("longer than {MAX_TEXT} characters")));
        }
        q.text = self.q.clone();
        if let Some(areas) = given(&self.area) {
            for a in areas.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                let area = ServiceArea::parse(a).map_err(|_| {
                    bad("area", format!("{a:?} is not one of lingua, lavoro, casa, salute, minori, mediazione"))
                })?;
                q.areas.push(area);
            }
        }
        if let Some(lang) = given(&self.lang) {
            let code = lang.to_ascii_lowercase();
            if !(2..=3).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_lowercase()) {
                return Err(bad("lang", format!("{lang:?} is not a language code (it, en, ar…)")));
            }
            q.language = Some(code);
        }
        if let Some(near) = given(&self.near) {
            q.near = Some(resolve_near(&near, Gazetteer::embedded()).map_err(|e| bad("near", e))?.0);
        }
        if let Some(radius) = self.radius_km {
            if !(radius > 0.0 && radius <= MAX_RADIUS_KM) {
                return Err(bad("radius_km", format!("must be more than 0 and at most {MAX_RADIUS_KM}")));
            }
            if q.near.is_none() {
                return Err(bad("radius_km", "needs near (lat,lng, a CAP or a comune)"));
            }
            q.radius_km = Some(radius);
        }
        q.open_now = self.open_now;
        if let Some(p) = self.page {
            q.page = usize::try_from(p)
                .ok()
                .filter(|&p| p >= 1)
                .ok_or_else(|| bad("page", format!("{p} is not a page number (1, 2, …)")))?;
        }
        q.size = DEFAULT_PAGE_SIZE;
        if let Some(s) = self.per_page {
            q.size = usize::try_from(s)
                .ok()
                .filter(|&s| (1..=MAX_PAGE_SIZE).contains(&s))
                .ok_or_else(|| bad("per_page", format!("{s} is not a page size 1..{MAX_PAGE_SIZE}")))?;
        }
        Ok(q)
    }
}

/// A page of `GET /api/services/search`, in the HSDS API's shape, with the area counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    pub total_items: usize,
    pub total_pages: usize,
    pub page_number: usize,
    pub size: usize,
    pub first_page: bool,
    pub last_page: bool,
    pub empty: bool,
    pub contents: Vec<ServiceHit>,
    /// For each area, the services matching every other filter.
    pub area_counts: BTreeMap<ServiceArea, usize>,
}

impl SearchPage {
    pub fn new(r: &SearchResponse) -> SearchPage {
        SearchPage {
            total_items: r.total,
            total_pages: r.total_pages,
            page_number: r.page,
            size: r.size,
            first_page: r.page == 1,
            last_page: r.page >= r.total_pages,
            empty: r.hits.is_empty(),
            contents: r.hits.iter().map(ServiceHit::new).collect(),
            area_counts: area_counts(r),
        }
    }
}

/// The response's counts per area, as the pages show them (`{"casa": 12, …}`).
pub fn area_counts(r: &SearchResponse) -> BTreeMap<ServiceArea, usize> {
    r.area_counts.iter().copied().collect()
}

/// A service found, as an HSDS service (the fields the index holds) with the search's extras
/// (`areas`, `town`, `distance_km`, `open_now`, `hours_today`, `score`): the HTTP page's
/// `contents` and the console socket's `search_results.results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceHit {
    pub id: String,
    pub name: String,
    /// Always `active` (the index holds active services only).
    pub status: String,
    pub organization: HitOrganization,
    pub phones: Vec<HitPhone>,
    pub languages: Vec<HitLanguage>,
    pub attributes: Vec<HitAttribute>,
    pub service_at_locations: Vec<HitServiceAtLocation>,
    pub areas: Vec<ServiceArea>,
    pub town: String,
    pub distance_km: Option<f64>,
    pub open_now: bool,
    /// Today's opening hours, `09:00-13:00, 14:30-17:00`; empty when closed today.
    pub hours_today: String,
    pub score: f64,
    /// An operator flagged it ("Report a problem") and no editor has resolved the flag yet.
    #[serde(default)]
    pub reported: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitOrganization {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitPhone {
    pub number: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitLanguage {
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitAttribute {
    pub taxonomy_term: HitTaxonomyTerm,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitTaxonomyTerm {
    pub id: String,
    pub code: ServiceArea,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitServiceAtLocation {
    pub location: HitLocation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitLocation {
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub addresses: Vec<HitAddress>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitAddress {
    pub city: String,
    pub postal_code: String,
}

impl ServiceHit {
    pub fn new(h: &SearchHit) -> ServiceHit {
        ServiceHit {
            id: h.id.clone(),
            name: h.name.clone(),
            status: "active".into(),
            organization: HitOrganization { name: h.organization.clone() },
            phones: if h.phone.is_empty() { Vec::new() } else { vec![HitPhone { number: h.phone.clone() }] },
            languages: h.languages.iter().map(|c| HitLanguage { code: c.clone() }).collect(),
            attributes: h
                .areas
                .iter()
                .map(|a| HitAttribute { taxonomy_term: HitTaxonomyTerm { id: schema::area_term_id(*a), code: *a } })
                .collect(),
            service_at_locations: vec![HitServiceAtLocation {
                location: HitLocation {
                    latitude: h.latitude,
                    longitude: h.longitude,
                    addresses: vec![HitAddress { city: h.town.clone(), postal_code: h.postal_code.clone() }],
                },
            }],
            areas: h.areas.clone(),
            town: h.town.clone(),
            distance_km: h.distance_km,
            open_now: h.open_now,
            hours_today: h.hours_today.clone(),
            // As f64, as the score always went out (an f32 widened).
            score: f64::from(h.score),
            reported: h.reported,
        }
    }
}

/// `GET /api/services/search`: "open now" and today's hours at the server's clock.
async fn search(
    _: crate::auth::AsOperator,
    State(state): State<Arc<DirectoryState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<SearchPage>, AppError> {
    let q = SearchParams::from_query(&params)?.query()?;
    let r = state.directory.search(&q, state.clock.now());
    Ok(Json(SearchPage::new(&r)))
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
