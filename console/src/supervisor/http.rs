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
    Ok(Json(json!({ "call": call, "timeline": timeline })))
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
