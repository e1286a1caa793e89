//! The HTTP API of keeping the directory true (`editing.rs` does the work): operators flag a
//! service from a call, organisation editors and editors change services, editors review
//! proposals, read the history, restore and confirm. The `/directory` page speaks it.
//!
//! | route | who |
//! |---|---|
//! | `POST /api/services/{id}/flags` | operators (and up) |
//! | `GET /api/directory/flags`, `GET /api/directory/services`, `GET/PUT /api/directory/services/{id}`, `GET /api/directory/services/{id}/history`, `GET /api/directory/changes` | organisation editors (their organisation's, for what they change or see of proposals and flags), editors, admins |
//! | `POST /api/directory/flags/{id}/resolve`, `POST /api/directory/services/{id}/restore`, `POST /api/directory/services/{id}/confirm`, `POST /api/directory/changes/{id}/accept`, `…/reject` | editors, admins |

use super::editing::{self, Change, ChangeStatus, EditError, Flag, FlagReason, ListQuery, ServiceRecord};
use super::DirectoryState;
use crate::auth::{AsDirectoryEditor, AsEditor, AsOperator};
use crate::error::AppError;
use crate::extract::JsonBody;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<DirectoryState>: FromRef<S>,
{
    Router::new()
        .route("/api/services/{id}/flags", post(flag))
        .route("/api/directory/flags", get(flags))
        .route("/api/directory/flags/{id}/resolve", post(resolve))
        .route("/api/directory/services", get(list))
        .route("/api/directory/services/{id}", get(record).put(edit))
        .route("/api/directory/services/{id}/history", get(history))
        .route("/api/directory/services/{id}/restore", post(restore))
        .route("/api/directory/services/{id}/confirm", post(confirm))
        .route("/api/directory/changes", get(changes))
        .route("/api/directory/changes/{id}/accept", post(accept))
        .route("/api/directory/changes/{id}/reject", post(reject))
}

impl From<EditError> for AppError {
    fn from(e: EditError) -> Self {
        match e {
            EditError::Db(e) => e.into(),
            EditError::NotFound(m) => AppError::NotFound(m),
            EditError::Forbidden(m) => AppError::Forbidden(m),
            EditError::Conflict(m) => AppError::Conflict(m),
            EditError::BadRequest(m) => AppError::BadRequest(m),
            EditError::Invalid(fields) => {
                let message =
                    fields.iter().map(|f| format!("{}: {}", f.field, f.reason)).collect::<Vec<_>>().join("; ");
                AppError::Invalid { message, fields: serde_json::to_value(&fields).unwrap_or_default() }
            }
        }
    }
}

fn change_id(raw: &str) -> Result<i64, AppError> {
    raw.parse::<i64>().map_err(|_| AppError::NotFound(format!("no change or flag has id {raw:?}")))
}

/// `POST /api/services/{id}/flags`: "Report a problem" on a search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagRequest {
    pub reason: FlagReason,
    #[serde(default)]
    pub note: String,
    /// The call the operator is in, when there is one.
    #[serde(default)]
    pub call_id: Option<String>,
}

async fn flag(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<DirectoryState>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<FlagRequest>,
) -> Result<(StatusCode, Json<Flag>), AppError> {
    let db = state.directory.db();
    let f =
        editing::flag(db, &auth.user, &id, req.call_id.as_deref(), req.reason, &req.note, state.clock.now()).await?;
    state.directory.refresh_flags().await.map_err(|e| AppError::Internal(e.into()))?;
    Ok((StatusCode::CREATED, Json(f)))
}

/// The open flags (`?service_id=` for one service's).
async fn flags(
    AsDirectoryEditor(auth): AsDirectoryEditor,
    State(state): State<Arc<DirectoryState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<Flag>>, AppError> {
    Ok(Json(editing::open_flags(state.directory.db(), &auth.user, q.get("service_id").map(String::as_str)).await?))
}

async fn resolve(
    AsEditor(auth): AsEditor,
    State(state): State<Arc<DirectoryState>>,
    Path(id): Path<String>,
) -> Result<Json<Flag>, AppError> {
    let f = editing::resolve_flag(state.directory.db(), &auth.user, change_id(&id)?, state.clock.now()).await?;
    state.directory.refresh_flags().await.map_err(|e| AppError::Internal(e.into()))?;
    Ok(Json(f))
}

/// `GET /api/directory/services?q=&unconfirmed_months=12&flagged=true&mine=true&page=1`: every
/// service (each with whether the asking user may change it), or only the asking organisation
/// editor's organisation's (`mine`).
async fn list(
    AsDirectoryEditor(auth): AsDirectoryEditor,
    State(state): State<Arc<DirectoryState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<editing::ServiceListItem>>, AppError> {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let flag = |k: &'static str| match get(k) {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(v) => Err(AppError::BadRequest(format!("parameter {k}: {v:?} is not true or false"))),
    };
    let text = get("q").unwrap_or_default();
    if text.chars().count() > 200 {
        return Err(AppError::BadRequest("parameter q: longer than 200 characters".into()));
    }
    let unconfirmed_months = match get("unconfirmed_months") {
        None => None,
        Some(m) => Some(
            m.parse::<u32>()
                .ok()
                .filter(|m| (1..=600).contains(m))
                .ok_or_else(|| AppError::BadRequest(format!("parameter unconfirmed_months: {m:?} is not 1..600")))?,
        ),
    };
    let page = match get("page") {
        None => 1,
        Some(p) => p
            .parse::<u32>()
            .ok()
            .filter(|p| (1..=100_000).contains(p))
            .ok_or_else(|| AppError::BadRequest(format!("parameter page: {p:?} is not a page number")))?,
    };
    let lq = ListQuery { q: text.to_owned(), unconfirmed_months, flagged: flag("flagged")?, mine: flag("mine")?, page };
    Ok(Json(editing::list_services(state.directory.db(), &auth.user, &lq, state.clock.now()).await?))
}

/// One service as the editing page needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordView {
    pub record: ServiceRecord,
    pub meta: editing::ServiceMeta,
    /// The asking user may change it (an organisation editor: their organisation's only).
    pub editable: bool,
    /// The asking user reviews (an editor or an admin).
    pub reviewer: bool,
    pub open_flags: Vec<Flag>,
    pub proposals: Vec<Change>,
}

async fn record(
    AsDirectoryEditor(auth): AsDirectoryEditor,
    State(state): State<Arc<DirectoryState>>,
    Path(id): Path<String>,
) -> Result<Json<RecordView>, AppError> {
    let db = state.directory.db();
    let Some((record, meta)) = editing::load_record(db, &id).await? else {
        return Err(AppError::NotFound(format!("no service has id {id:?}")));
    };
    let editable = editing::may_change(&auth.user, &meta.organization_id, None);
    let open_flags = editing::open_flags(db, &auth.user, Some(&id)).await?;
    let proposals = if editable {
        editing::history(db, &id).await?.into_iter().filter(|c| c.status == ChangeStatus::Proposed).collect()
    } else {
        Vec::new()
    };
    Ok(Json(RecordView {
        record,
        meta,
        editable,
        reviewer: auth.user.role.includes(crate::db::users::Role::Editor),
        open_flags,
        proposals,
    }))
}

/// `PUT /api/directory/services/{id}`: the new version of the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    pub record: ServiceRecord,
    /// Why (shown in the history).
    #[serde(default)]
    pub reason: String,
}

async fn edit(
    AsDirectoryEditor(auth): AsDirectoryEditor,
    State(state): State<Arc<DirectoryState>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<EditRequest>,
) -> Result<(StatusCode, Json<Change>), AppError> {
    let done =
        editing::submit(state.directory.db(), &auth.user, &id, req.record, &req.reason, state.clock.now()).await?;
    if done.applied {
        refresh(&state).await?;
        Ok((StatusCode::OK, Json(done.change)))
    } else {
        Ok((StatusCode::ACCEPTED, Json(done.change)))
    }
}

async fn refresh(state: &DirectoryState) -> Result<(), AppError> {
    state.directory.refresh().await.map_err(|e| AppError::Internal(e.into()))?;
    Ok(())
}

async fn history(
    AsDirectoryEditor(_): AsDirectoryEditor,
    State(state): State<Arc<DirectoryState>>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Change>>, AppError> {
    let db = state.directory.db();
    if editing::load_record(db, &id).await?.is_none() {
        return Err(AppError::NotFound(format!("no service has id {id:?}")));
    }
    Ok(Json(editing::history(db, &id).await?))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The applied change whose replaced version comes back.
    pub change_id: i64,
    #[serde(default)]
    pub reason: String,
}

async fn restore(
    AsEditor(auth): AsEditor,
    State(state): State<Arc<DirectoryState>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<RestoreRequest>,
) -> Result<Json<Change>, AppError> {
    let c =
        editing::restore(state.directory.db(), &auth.user, &id, req.change_id, &req.reason, state.clock.now()).await?;
    refresh(&state).await?;
    Ok(Json(c))
}

async fn confirm(
    AsEditor(auth): AsEditor,
    State(state): State<Arc<DirectoryState>>,
    Path(id): Path<String>,
) -> Result<Json<Change>, AppError> {
    Ok(Json(editing::confirm(state.directory.db(), &auth.user, &id, state.clock.now()).await?))
}

/// `GET /api/directory/changes?status=proposed|applied|rejected` (default `proposed`).
async fn changes(
    AsDirectoryEditor(auth): AsDirectoryEditor,
    State(state): State<Arc<DirectoryState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<Change>>, AppError> {
    let status = match q.get("status").map(String::as_str) {
        None | Some("" | "proposed") => ChangeStatus::Proposed,
        Some("applied") => ChangeStatus::Applied,
        Some("rejected") => ChangeStatus::Rejected,
        Some(s) => {
            return Err(AppError::BadRequest(format!(
                "parameter status: {s:?} is not one of proposed, applied, rejected"
            )))
        }
    };
    Ok(Json(editing::changes(state.directory.db(), &auth.user, status).await?))
}

async fn accept(
    AsEditor(auth): AsEditor,
    State(state): State<Arc<DirectoryState>>,
    Path(id): Path<String>,
) -> Result<Json<Change>, AppError> {
    let c = editing::accept(state.directory.db(), &auth.user, change_id(&id)?, state.clock.now()).await?;
    refresh(&state).await?;
    Ok(Json(c))
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    #[serde(default)]
    pub reason: String,
}

async fn reject(
    AsEditor(auth): AsEditor,
    State(state): State<Arc<DirectoryState>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ReviewRequest>,
) -> Result<Json<Change>, AppError> {
    Ok(Json(editing::reject(state.directory.db(), &auth.user, change_id(&id)?, &req.reason, state.clock.now()).await?))
}
