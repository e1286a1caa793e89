//! The HTTP routes. `router(state)` is kept apart from `main` so tests drive the real app.

mod assets;
mod health;
pub mod prompts;
pub mod session;
pub mod speech;

use crate::error::AppError;
use crate::metrics::HttpLabels;
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use std::time::Instant;
use tower_http::trace::TraceLayer;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(assets::routes())
        .merge(health::routes())
        .merge(session::routes())
        .merge(prompts::routes())
        .merge(speech::routes())
        .merge(crate::webhook::routes())
        .merge(crate::directory::routes())
        .merge(crate::supervisor::routes())
        .merge(crate::operators::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), crate::auth::resolve_session))
        .layer(middleware::from_fn_with_state(state.clone(), record_metrics))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "(unmatched)".to_owned());
            tracing::info_span!("http", method = %req.method(), route)
        }))
        .with_state(state)
}

async fn not_found(req: Request) -> AppError {
    AppError::NotFound(format!("no route for {} {}", req.method(), req.uri().path()))
}

/// Counts every request by method, matched route and status, and times it.
async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let response = next.run(req).await;
    let labels = HttpLabels { method, route, status: response.status().as_u16() };
    state.metrics.http_requests.get_or_create(&labels).inc();
    state.metrics.http_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    response
}
