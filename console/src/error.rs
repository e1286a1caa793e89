//! One error type at the HTTP edge. Every failure becomes a status and a JSON body
//! `{"error": "<code>", "message": "<what is wrong>"}`; internals are logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("sign in first")]
    Unauthorized,
    #[error("wrong user name or password")]
    BadCredentials,
    #[error("{0}")]
    Forbidden(String),
    #[error("missing or wrong X-CSRF-Token header: send the csrf_token from POST /api/session")]
    Csrf,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("choose your own password first: POST /api/session/password")]
    PasswordChangeRequired,
    #[error("too many failed sign-ins; try again in {0} seconds")]
    RateLimited(u64),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A request well-formed but with invalid values: 422, every problem named by its field
    /// (`fields`: `[{"field": …, "reason": …}]`).
    #[error("{message}")]
    Invalid { message: String, fields: serde_json::Value },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unavailable(String),
    /// Another system (the SIP trunk, the carrier) refused or failed what was asked of it: 502.
    #[error("{0}")]
    BadGateway(String),
    /// Overloaded for now: 503 with `Retry-After` (seconds).
    #[error("{message}")]
    Busy { message: String, retry_after_secs: u64 },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AppError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::BadCredentials => (StatusCode::UNAUTHORIZED, "bad_credentials"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::Csrf => (StatusCode::FORBIDDEN, "csrf"),
            AppError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            AppError::PasswordChangeRequired => (StatusCode::FORBIDDEN, "password_change_required"),
            AppError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AppError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            AppError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AppError::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            AppError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let AppError::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "internal error");
        }
        let mut body = json!({ "error": code, "message": self.to_string() });
        if let AppError::Invalid { fields, .. } = &self {
            body["fields"] = fields.clone();
        }
        let mut response = (status, Json(body)).into_response();
        if let AppError::RateLimited(secs) | AppError::Busy { retry_after_secs: secs, .. } = &self {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(*secs));
        }
        response
    }
}

impl From<crate::db::DbError> for AppError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Conflict(m) => AppError::Conflict(m),
            other => AppError::Internal(other.into()),
        }
    }
}

/// The answer to a path no route matches.
pub async fn not_found(req: axum::extract::Request) -> AppError {
    AppError::NotFound(format!("no route for {} {}", req.method(), req.uri().path()))
}

/// The largest request body accepted (axum's default limit), in bytes.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Middleware: the answers axum's extractors give on their own (a body over the limit: plain
/// text) become the same JSON error as everything else.
pub async fn json_rejections(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        return AppError::PayloadTooLarge(format!(
            "the request body is larger than this endpoint accepts ({BODY_LIMIT} bytes; the call-event API's \
             is in docs/webhooks.md)"
        ))
        .into_response();
    }
    response
}
