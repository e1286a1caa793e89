//! The supervisors' HTTP API: the call log and one call's timeline (operators: their own calls;
//! supervisors and admins: all), KPIs, the CSV exports, the audit log (admins).

use super::audit::{self, Actor, AuditAction};
use super::export;
use super::filter::{day_range, LogQuery};
use super::kpi::{self, Grouping};
use super::log::{self, Scope};
use super::monitor;
use super::SupervisorState;
use super::{store, timeline, DEFINITIONS};
use crate::auth::{AsAdmin, AsOperator, AsSupervisor, Authenticated};
use crate::db::users::Role;
use crate::error::AppError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<SupervisorState>: FromRef<S>,
{
    Router::new()
        .route("/api/calls", get(list_calls))
        .route("/api/calls.csv", get(calls_csv))
        .route("/api/calls/{id}", get(get_call))
        .route("/api/kpis", get(kpis))
        .route("/api/kpis.csv", get(kpis_csv))
        .route("/api/audit", get(audit_log))
        .route("/ws/wallboard", get(super::wallboard::handler))
        .route("/api/calls/{id}/monitor", post(monitor::start).put(monitor::switch).delete(monitor::end))
        .route("/api/recordings/{id}", get(recording))
}

fn scope_of(auth: &Authenticated) -> Scope {
    if auth.user.role.includes(Role::Supervisor) {
        Scope::All
    } else {
        Scope::Operator(auth.user.id)
    }
}

pub(super) fn actor(auth: &Authenticated) -> Actor {
    Actor { user_id: Some(auth.user.id), name: auth.user.name.clone() }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, AppError> {
    q.map(|Query(v)| v).map_err(|e| AppError::BadRequest(e.body_text()))
}

/// `GET /api/calls`
pub async fn list_calls(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<SupervisorState>>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<log::Page>, AppError> {
    let filter = query(q)?.parse().map_err(AppError::BadRequest)?;
    let now = state.clock.now().timestamp_millis();
    Ok(Json(log::page(&state.db, &filter, scope_of(&auth), now).await?))
}

/// `GET /api/calls/{id}`: the call and its timeline; writes an audit row.
pub async fn get_call(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<SupervisorState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let now = state.clock.now().timestamp_millis();
    let Some(call) = log::one(&state.db, &id, scope_of(&auth), now).await? else {
        return Err(AppError::NotFound(format!("no call {id:?} among the calls you may see")));
    };
    audit::record(state.db.pool(), now, &actor(&auth), AuditAction::OpenCall, Some(&call.call_id), "").await?;
    let timeline = timeline::timeline(&state.db, &call.call_id, call.started_ms).await?;
    // The call's recordings, for supervisors only (operators see their calls, not the audio).
    let recordings =
        if auth.user.role.includes(Role::Supervisor) { recordings(&state, &call.call_id).await? } else { Vec::new() };
    Ok(Json(json!({ "call": call, "timeline": timeline, "recordings": recordings })))
}

/// One recording of a call, as the call's record lists it (`/api/recordings/{id}` plays it).
#[derive(Debug, Clone, serde::Serialize, Deserialize, PartialEq)]
pub struct RecordingInfo {
    pub id: String,
    pub started_at: String,
    /// `null` while it is under way.
    pub ended_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub started_by: Option<String>,
}

/// A recording's row: id, started_at, ended_at, duration_ms, who started it.
type RecordingRow = (String, i64, Option<i64>, Option<i64>, Option<String>);

async fn recordings(state: &SupervisorState, call_id: &str) -> Result<Vec<RecordingInfo>, AppError> {
    let rows: Vec<RecordingRow> = sqlx::query_as(
        "SELECT r.id, r.started_at, r.ended_at, r.duration_ms, u.name FROM recordings r \
         LEFT JOIN users u ON u.id = r.started_by WHERE r.call_id = $1 ORDER BY r.started_at, r.id",
    )
    .bind(call_id)
    .fetch_all(state.db.pool())
    .await
    .map_err(crate::db::DbError::from)?;
    Ok(rows
        .into_iter()
        .map(|(id, started, ended, duration_ms, started_by)| RecordingInfo {
            id,
            started_at: crate::clock::rfc3339(started),
            ended_at: ended.map(crate::clock::rfc3339),
            duration_ms,
            started_by,
        })
        .collect())
}

/// `GET /api/recordings/{id}`: a call's recording as `audio/wav`, for supervisors. Every playing
/// is written to the audit log first, in the transaction that reads it.
pub async fn recording(
    AsSupervisor(auth): AsSupervisor,
    State(state): State<Arc<SupervisorState>>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let db_error = crate::db::DbError::from;
    let now = state.clock.now().timestamp_millis();
    let _turn = state.db.lock_turn().await;
    let mut tx = state.db.pool().begin().await.map_err(db_error)?;
    let row: Option<(String, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT call_id, audio FROM recordings WHERE id = $1 AND ended_at IS NOT NULL")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
    let Some((call_id, Some(audio))) = row else {
        tx.rollback().await.map_err(db_error)?;
        return Err(AppError::NotFound("no such recording, or it is still under way".into()));
    };
    audit::record(&mut *tx, now, &actor(&auth), AuditAction::PlayRecording, Some(&call_id), &id).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(([(header::CONTENT_TYPE, "audio/wav"), (header::CACHE_CONTROL, "no-store")], audio).into_response())
}

/// `GET /api/calls.csv`: the filtered log, streamed; writes an audit row.
pub async fn calls_csv(
    AsOperator(auth): AsOperator,
    State(state): State<Arc<SupervisorState>>,
    q: Result<Query<LogQuery>, QueryRejection>,
    uri: axum::http::Uri,
) -> Result<Response, AppError> {
    let filter = query(q)?.parse().map_err(AppError::BadRequest)?;
    let now = state.clock.now().timestamp_millis();
    let detail = uri.query().unwrap_or("").to_owned();
    audit::record(state.db.pool(), now, &actor(&auth), AuditAction::ExportCalls, None, &detail).await?;
    let body = export::calls_csv(state.db.clone(), filter, scope_of(&auth), now);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"calls.csv\""),
        ],
        body,
    )
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct KpiQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub group: Option<String>,
}

async fn kpi_rows(
    state: &SupervisorState,
    q: KpiQuery,
) -> Result<(i64, i64, Grouping, Vec<kpi::KpiRow>, kpi::KpiRow), AppError> {
    let now = state.clock.now().timestamp_millis();
    let (from, to) = day_range(q.from.as_deref(), q.to.as_deref(), now).map_err(AppError::BadRequest)?;
    let group =
        Grouping::parse(q.group.as_deref().filter(|g| !g.is_empty()).unwrap_or("day")).map_err(AppError::BadRequest)?;
    let buckets = store::buckets(&state.db, from, to, group).await?;
    let (rows, total) = kpi::group(&buckets, group);
    Ok((from, to, group, rows, total))
}

/// `GET /api/kpis`
pub async fn kpis(
    AsSupervisor(_): AsSupervisor,
    State(state): State<Arc<SupervisorState>>,
    q: Result<Query<KpiQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let (from, to, group, rows, total) = kpi_rows(&state, query(q)?).await?;
    Ok(Json(json!({
        "from": crate::clock::rfc3339(from),
        "to": crate::clock::rfc3339(to),
        "group": group,
        "rows": rows,
        "total": total,
        "definitions": DEFINITIONS.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
    })))
}

/// `GET /api/kpis.csv`
pub async fn kpis_csv(
    AsSupervisor(_): AsSupervisor,
    State(state): State<Arc<SupervisorState>>,
    q: Result<Query<KpiQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let (_, _, _, rows, total) = kpi_rows(&state, query(q)?).await?;
    let body = export::kpis_csv(&rows, &total).map_err(|e| AppError::Internal(e.into()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"kpis.csv\""),
        ],
        body,
    )
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    pub before: Option<i64>,
    pub limit: Option<usize>,
    pub call_id: Option<String>,
}

/// `GET /api/audit` (admins)
pub async fn audit_log(
    AsAdmin(_): AsAdmin,
    State(state): State<Arc<SupervisorState>>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<audit::AuditPage>, AppError> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::BadRequest("`limit`: a number from 1 to 1000".into()));
    }
    Ok(Json(audit::list(&state.db, q.before, limit, q.call_id.as_deref()).await?))
}
