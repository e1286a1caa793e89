//! Liveness, readiness and metrics: what a load balancer and Prometheus ask.

use crate::db::Db;
use crate::error::AppError;
use crate::metrics::Metrics;
use axum::extract::{FromRef, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// What health and metrics need.
pub struct HealthState {
    pub db: Db,
    pub metrics: Arc<Metrics>,
}

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<HealthState>: FromRef<S>,
{
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

/// The process is up and answering.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers within two seconds.
async fn readyz(State(state): State<Arc<HealthState>>) -> Result<Json<serde_json::Value>, AppError> {
    match tokio::time::timeout(Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({ "status": "ready", "database": state.db.backend().name() }))),
        Ok(Err(e)) => Err(AppError::Unavailable(format!("database unreachable: {e}"))),
        Err(_) => Err(AppError::Unavailable("database did not answer within 2 s".into())),
    }
}

async fn metrics(State(state): State<Arc<HealthState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
}
