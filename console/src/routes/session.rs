//! Signing in and out: `POST /api/session` (name and password → session cookie and CSRF token),
//! `GET /api/session` (who am I), `DELETE /api/session` (sign out).

use crate::db::{sessions, users};
use crate::error::AppError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;
use serde_json::{json, Value};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "helpline_session";

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/session", post(sign_in).get(whoami).delete(sign_out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    name: String,
    password: String,
}

async fn sign_in(
    State(state): State<AppState>,
    jar: CookieJar,
    JsonBody(creds): JsonBody<Credentials>,
) -> Result<(CookieJar, Json<Value>), AppError> {
    let Some(user) = users::verify_password(&state.db, &creds.name, &creds.password).await? else {
        tracing::warn!(name = %creds.name, "failed sign-in");
        return Err(AppError::BadCredentials);
    };
    let now = chrono::Utc::now().timestamp_millis();
    let session = sessions::create_session(&state.db, user.id, now).await?;
    let cookie = Cookie::build((SESSION_COOKIE, session.token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .build();
    tracing::info!(user = %user.name, role = user.role.as_str(), "signed in");
    Ok((jar.add(cookie), Json(json!({ "user": user, "csrf_token": session.csrf_token }))))
}

async fn whoami(State(state): State<AppState>, jar: CookieJar) -> Result<Json<Value>, AppError> {
    let token = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()).ok_or(AppError::Unauthorized)?;
    let now = chrono::Utc::now().timestamp_millis();
    let (user, csrf) = sessions::session_user(&state.db, &token, now).await?.ok_or(AppError::Unauthorized)?;
    Ok(Json(json!({ "user": user, "csrf_token": csrf })))
}

async fn sign_out(State(state): State<AppState>, jar: CookieJar) -> Result<(CookieJar, StatusCode), AppError> {
    if let Some(c) = jar.get(SESSION_COOKIE) {
        sessions::delete_session(&state.db, c.value()).await?;
    }
    Ok((jar.remove(Cookie::build(SESSION_COOKIE).path("/")), StatusCode::NO_CONTENT))
}
