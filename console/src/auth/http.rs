//! Signing in and out: `POST /api/session` (name and password → session cookie and CSRF token),
//! `GET /api/session` (who am I), `DELETE /api/session` (sign out), `POST /api/session/everywhere`
//! (sign out on every device). Sign-in attempts are rate-limited per name and per client address
//! ([`crate::auth::SignInLimiter`], counted from when they begin; a refusal's answer is held
//! back up to [`REFUSAL_HOLD`], so a guesser is paced rather than served), and passwords are verified on
//! blocking threads, a few at a time; the cookie is HttpOnly, SameSite=Strict, `Secure` when the
//! server's public URL is https (or it serves HTTPS itself), and lasts one session TTL.

use super::{AsSignedIn, AuthState, Authenticated};
use crate::db::audit::{self, Actor};
use crate::db::{sessions, users};
use crate::error::AppError;
use crate::extract::JsonBody;
use axum::extract::{ConnectInfo, FromRef, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "helpline_session";

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<AuthState>: FromRef<S>,
{
    Router::new()
        .route("/api/session", post(sign_in).get(whoami).delete(sign_out))
        .route("/api/session/everywhere", post(sign_out_everywhere))
        .route("/api/session/password", post(change_password))
}

/// The client's address as the socket saw it (behind a reverse proxy, the proxy's: the limit per
/// name still applies).
pub struct ClientAddr(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let addr = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
        Ok(ClientAddr(addr.unwrap_or_else(|| "unknown".into())))
    }
}

fn session_cookie(state: &AuthState, token: String) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.public_url.starts_with("https://") || !state.settings.tls_cert.as_os_str().is_empty())
        .max_age(cookie::time::Duration::milliseconds(sessions::SESSION_TTL_MS))
        .path("/")
        .build()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    name: String,
    password: String,
}

async fn sign_in(
    State(state): State<Arc<AuthState>>,
    ClientAddr(addr): ClientAddr,
    jar: CookieJar,
    JsonBody(creds): JsonBody<Credentials>,
) -> Result<(CookieJar, Json<Value>), AppError> {
    let limiter = &state.sign_in_limiter;
    let attempt = match limiter.begin(&creds.name, &addr, state.clock.now().timestamp_millis()) {
        Ok(attempt) => attempt,
        Err(wait) => {
            tracing::debug!(name = %creds.name, %addr, "sign-in refused: too many attempts");
            return Err(refused(wait).await);
        }
    };
    let verified = {
        let _turn = state.verifications.acquire().await.map_err(|e| AppError::Internal(e.into()))?;
        users::verify_password(&state.db, &creds.name, &creds.password).await?
    };
    let Some(user) = verified else {
        tracing::warn!(name = %creds.name, %addr, "failed sign-in");
        audit::sign_in_failed(&state.db, state.clock.now(), &creds.name, &addr).await?;
        return Err(AppError::BadCredentials);
    };
    limiter.succeeded(attempt);
    let now = state.clock.now().timestamp_millis();
    let session = sessions::create_session(&state.db, user.id, now).await?;
    let cookie = session_cookie(&state, session.token);
    tracing::info!(user = %user.name, role = user.role.as_str(), "signed in");
    audit::signed_in(&state.db, state.clock.now(), &Actor::user(user.id, &user.name), &addr).await?;
    Ok((jar.add(cookie), Json(json!({ "user": user, "csrf_token": session.csrf_token }))))
}

/// The longest a refused attempt's answer is held back. A guesser that waits for its answers
/// before sending more (every browser, most scripts: 100 guesses in flight stay 100) is slowed to
/// a hundred refusals a second instead of having the server do the HTTP work of tens of thousands
/// — the work that slowed the webhooks on the same cores. Real time, not the injected clock: it
/// paces a connection, it is not part of the limit (which the `Retry-After` states).
pub const REFUSAL_HOLD: std::time::Duration = std::time::Duration::from_secs(1);

/// A refused attempt, answered (429 with `Retry-After: wait_secs`) once it has been held for
/// [`REFUSAL_HOLD`] or the wait, whichever is shorter. Refusals are counted by the HTTP metrics
/// (`status="429"`), not logged one by one: a flood of them would flood the log.
async fn refused(wait_secs: u64) -> AppError {
    tokio::time::sleep(REFUSAL_HOLD.min(std::time::Duration::from_secs(wait_secs))).await;
    AppError::RateLimited(wait_secs)
}

async fn whoami(auth: Authenticated) -> Json<Value> {
    Json(json!({ "user": auth.user, "csrf_token": auth.csrf_token }))
}

async fn sign_out(State(state): State<Arc<AuthState>>, jar: CookieJar) -> Result<(CookieJar, StatusCode), AppError> {
    if let Some(c) = jar.get(SESSION_COOKIE) {
        sessions::delete_session(&state.db, c.value()).await?;
    }
    Ok((jar.remove(Cookie::build(SESSION_COOKIE).path("/")), StatusCode::NO_CONTENT))
}

async fn sign_out_everywhere(
    State(state): State<Arc<AuthState>>,
    AsSignedIn(auth): AsSignedIn,
    jar: CookieJar,
) -> Result<(CookieJar, Json<Value>), AppError> {
    let ended = sessions::delete_user_sessions(&state.db, auth.user.id).await?;
    tracing::info!(user = %auth.user.name, sessions = ended, "signed out everywhere");
    state.revoker.sessions_revoked(auth.user.id).await?;
    Ok((jar.remove(Cookie::build(SESSION_COOKIE).path("/")), Json(json!({ "sessions_ended": ended }))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// `POST /api/session/password {current_password, new_password}`: a signed-in user chooses their
/// own password (the only thing a user whose password someone else chose may do, besides reading
/// and ending their session). The current password is checked like a sign-in (rate-limited); the
/// user's other sessions end, this one lives on.
async fn change_password(
    State(state): State<Arc<AuthState>>,
    ClientAddr(addr): ClientAddr,
    auth: Authenticated,
    JsonBody(change): JsonBody<PasswordChange>,
) -> Result<StatusCode, AppError> {
    let new = users::Password::parse(&change.new_password).map_err(AppError::BadRequest)?;
    if change.new_password == change.current_password {
        return Err(AppError::BadRequest("the new password must differ from the current one".into()));
    }
    let attempt = match state.sign_in_limiter.begin(&auth.user.name, &addr, state.clock.now().timestamp_millis()) {
        Ok(attempt) => attempt,
        Err(wait) => return Err(refused(wait).await),
    };
    let verified = {
        let _turn = state.verifications.acquire().await.map_err(|e| AppError::Internal(e.into()))?;
        users::verify_password(&state.db, &auth.user.name, &change.current_password).await?
    };
    if verified.is_none() {
        tracing::warn!(user = %auth.user.name, %addr, "password change with a wrong current password");
        return Err(AppError::BadCredentials);
    }
    state.sign_in_limiter.succeeded(attempt);
    let now = state.clock.now().timestamp_millis();
    let change = users::UserChange::Password { password: new, must_change: false };
    let actor = crate::db::audit::Actor::user(auth.user.id, &auth.user.name);
    users::change_user(&state.db, &auth.user.name, &change, now, &actor).await?;
    sessions::delete_other_sessions(&state.db, auth.user.id, &auth.token_hash).await?;
    tracing::info!(user = %auth.user.name, "password changed by its user");
    Ok(StatusCode::NO_CONTENT)
}
