//! Who is asking, and may they: the session behind a request, role extractors, CSRF protection and
//! sign-in rate limiting.
//!
//! One middleware ([`resolve_session`]) runs on every request: it resolves the session cookie once
//! (the database holds only the token's hash), puts the [`Authenticated`] user in the request's
//! extensions, and refuses a state-changing request (POST, PUT, PATCH, DELETE) made with a session
//! cookie unless it carries the session's `X-CSRF-Token`. Handlers then ask for a role with an
//! extractor: [`AsOperator`], [`AsSupervisor`], [`AsAdmin`] (401 without a session, 403 with too
//! low a role; 403 `password_change_required` until a user whose password someone else chose has
//! chosen their own, `POST /api/session/password`). Architecture invariant: a handler that touches personal data or changes anything
//! takes one of these extractors (the authz table test in `tests/e2e/authz.rs` walks every route).
//!
//! `http.rs` signs in and out. Closing the sockets of a user whose sessions were all revoked is
//! the console's business: it reaches it through [`SessionRevoker`], so this module imports no
//! feature.

pub mod http;

pub use http::{REFUSAL_HOLD, SESSION_COOKIE};

use crate::clock::Clock;
use crate::config::Settings;
use crate::db::users::{Role, User};
use crate::db::{sessions, Db, DbError};
use crate::error::AppError;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What resolving sessions and signing in need.
pub struct AuthState {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    /// Sign-in attempts per name and address (in memory, per node).
    pub sign_in_limiter: SignInLimiter,
    /// Password verifications running at once (argon2 on blocking threads, never on the threads
    /// that answer webhooks and SIP).
    pub verifications: tokio::sync::Semaphore,
    /// Closes a user's open sockets on every node when all their sessions end.
    pub revoker: Arc<dyn SessionRevoker>,
}

/// Told when every session of a user was deleted (sign out everywhere), so that whoever holds
/// long-lived connections for that user closes them, on every node.
pub trait SessionRevoker: Send + Sync {
    fn sessions_revoked(&self, user_id: i64) -> Pin<Box<dyn Future<Output = Result<(), DbError>> + Send + '_>>;
}

/// The header a page sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A signed-in user and their session.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    /// The SHA-256 of the session token (what the `sessions` table keys on).
    pub token_hash: String,
    pub csrf_token: String,
}

/// The session cookie's value, if any.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// Requests that change state without a session cookie's authority: signing in (there is no
/// session yet) and the carriers' webhooks (signed with HMAC instead).
fn csrf_exempt(method: &Method, path: &str) -> bool {
    (method == Method::POST && path == "/api/session") || path.starts_with("/voice/") || path.starts_with("/twiml/")
}

fn changes_state(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a websocket upgrade comes from our own pages: browsers send no custom headers on the
/// upgrade, so the `Origin` is what stands in for the CSRF token. It must be the configured public
/// URL, or (none configured) `http(s)://<Host>`. No `Origin` at all means not a browser: allowed,
/// the session cookie still decides.
pub fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) else { return true };
    let origin = origin.trim_end_matches('/');
    let public = public_url.trim_end_matches('/');
    if !public.is_empty() {
        return origin.eq_ignore_ascii_case(public);
    }
    let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("");
    !host.is_empty()
        && ["http://", "https://"].iter().any(|scheme| origin.eq_ignore_ascii_case(&format!("{scheme}{host}")))
}

/// Resolves the session cookie into [`Authenticated`] (in the request's extensions) and enforces
/// CSRF on state-changing requests made with it.
pub async fn resolve_session(State(state): State<Arc<AuthState>>, mut req: Request, next: Next) -> Response {
    if let Some(token) = session_token(req.headers()) {
        let now = state.clock.now().timestamp_millis();
        match sessions::session_user(&state.db, &token, now).await {
            Ok(Some((user, csrf_token))) => {
                let auth = Authenticated { user, token_hash: sessions::token_hash(&token), csrf_token };
                if changes_state(req.method()) && !csrf_exempt(req.method(), req.uri().path()) {
                    let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
                    if !constant_time_eq(sent, &auth.csrf_token) {
                        tracing::warn!(user = %auth.user.name, path = req.uri().path(), "request without a valid CSRF token");
                        return AppError::Csrf.into_response();
                    }
                }
                req.extensions_mut().insert(auth);
            }
            Ok(None) => {}
            Err(e) => return AppError::from(e).into_response(),
        }
    }
    next.run(req).await
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Authenticated>().cloned().ok_or(AppError::Unauthorized)
    }
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Authenticated);

        impl<S: Send + Sync> FromRequestParts<S> for $name {
            type Rejection = AppError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
                let auth = Authenticated::from_request_parts(parts, state).await?;
                if auth.user.must_change_password {
                    return Err(AppError::PasswordChangeRequired);
                }
                if !auth.user.role.includes($role) {
                    return Err(AppError::Forbidden(format!(
                        "this needs the {} role; {} is {}",
                        $role.as_str(),
                        auth.user.name,
                        auth.user.role.as_str()
                    )));
                }
                Ok($name(auth))
            }
        }
    };
}

role_extractor!(
    /// Operators, supervisors and admins (not the directory's editors, who take no calls).
    AsOperator,
    Role::Operator
);
role_extractor!(
    /// Supervisors and admins.
    AsSupervisor,
    Role::Supervisor
);
role_extractor!(
    /// Admins only.
    AsAdmin,
    Role::Admin
);
role_extractor!(
    /// The directory's editors (and admins): review and change every service.
    AsEditor,
    Role::Editor
);
role_extractor!(
    /// Whoever may change the directory at all: organisation editors (their own organisation's
    /// services, as proposals), editors and admins.
    AsDirectoryEditor,
    Role::OrgEditor
);

/// Any signed-in user, whatever the role (their own session: who they are, signing out
/// everywhere), once they have chosen their own password.
#[derive(Debug, Clone)]
pub struct AsSignedIn(pub Authenticated);

impl<S: Send + Sync> FromRequestParts<S> for AsSignedIn {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Authenticated::from_request_parts(parts, state).await?;
        if auth.user.must_change_password {
            return Err(AppError::PasswordChangeRequired);
        }
        Ok(AsSignedIn(auth))
    }
}

/// Sign-in rate limiting per user name and per client address, by a **growing delay** rather than
/// a lockout: a name (or address) has a few free attempts within the window; past them, each
/// attempt must wait longer after the one before (1 s, 2 s, 4 s … at most [`MAX_DELAY_MS`]). So a
/// guesser gets a handful of guesses a minute, and cannot lock "admin" out: once the guessing
/// stops, the right password works after at most the longest delay.
///
/// An attempt counts from the moment it begins, before its password is verified, so a hundred
/// guesses sent at once are refused past the free ones instead of all passing a check that ran
/// before any of them failed. A success takes its own attempt back and clears the name's. Times
/// are the injected clock's (epoch ms). Kept in memory per node (a node that restarts forgets;
/// each node limits on its own).
#[derive(Debug)]
pub struct SignInLimiter {
    window_ms: i64,
    per_name: usize,
    per_addr: usize,
    attempts: Mutex<HashMap<String, VecDeque<i64>>>,
}

/// The first delay past the free attempts; each further attempt doubles it.
pub const FIRST_DELAY_MS: i64 = 1_000;
/// The longest a name or address is made to wait between attempts.
pub const MAX_DELAY_MS: i64 = 30_000;

/// An attempt that [`SignInLimiter::begin`] let through: a failure unless
/// [`SignInLimiter::succeeded`] says otherwise.
#[derive(Debug)]
pub struct Attempt {
    name_key: String,
    addr_key: String,
    at: i64,
}

impl Default for SignInLimiter {
    fn default() -> Self {
        SignInLimiter::new(Duration::from_secs(300), 5, 20)
    }
}

impl SignInLimiter {
    pub fn new(window: Duration, per_name: usize, per_addr: usize) -> Self {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        SignInLimiter { window_ms, per_name, per_addr, attempts: Mutex::new(HashMap::new()) }
    }

    fn keys(name: &str, addr: &str) -> [String; 2] {
        [format!("name:{}", name.to_lowercase()), format!("addr:{addr}")]
    }

    /// Registers an attempt at `now_ms`, or `Err(seconds to wait)` when this name or address must
    /// wait longer after its previous attempts (attempts in flight included).
    pub fn begin(&self, name: &str, addr: &str, now_ms: i64) -> Result<Attempt, u64> {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if attempts.len() > 100_000 {
            // Bounded memory under a flood of made-up names: forget the quiet keys.
            attempts.retain(|_, t| t.back().is_some_and(|last| now_ms - last < self.window_ms));
        }
        let [name_key, addr_key] = Self::keys(name, addr);
        let wait_ms = [(&name_key, self.per_name), (&addr_key, self.per_addr)]
            .into_iter()
            .filter_map(|(key, free)| {
                let times = attempts.get_mut(key)?;
                while times.front().is_some_and(|t| now_ms - t >= self.window_ms) {
                    times.pop_front();
                }
                let over = times.len().checked_sub(free)?;
                let delay = FIRST_DELAY_MS.saturating_mul(1 << over.min(16)).min(MAX_DELAY_MS);
                let ready = times.back()? + delay;
                (now_ms < ready).then_some(ready - now_ms)
            })
            .max();
        if let Some(wait_ms) = wait_ms {
            return Err(u64::try_from(wait_ms).unwrap_or(1).div_ceil(1000).max(1));
        }
        for key in [&name_key, &addr_key] {
            attempts.entry(key.clone()).or_default().push_back(now_ms);
        }
        Ok(Attempt { name_key, addr_key, at: now_ms })
    }

    /// The attempt's password was right: it does not count against the address, and the name's
    /// attempts are forgotten.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        attempts.remove(&attempt.name_key);
        if let Some(times) = attempts.get_mut(&attempt.addr_key) {
            if let Some(i) = times.iter().position(|t| *t == attempt.at) {
                times.remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_free_attempts_each_waits_longer_up_to_the_cap() {
        let limiter = SignInLimiter::new(Duration::from_secs(300), 3, 1000);
        let mut now = 1_000_000;
        for i in 0..3 {
            limiter.begin("anna", "1.2.3.4", now).unwrap_or_else(|w| panic!("free attempt {i} refused for {w} s"));
        }
        // The fourth waits 1 s after the third, the fifth 2 s after the fourth, then 4, 8, 16, 30, 30 s.
        for (i, delay) in [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000].into_iter().enumerate() {
            let wait = limiter.begin("ANNA", "5.6.7.8", now + 1).expect_err("too early, by name");
            assert!(limiter.begin("anna", "5.6.7.8", now + delay - 1).is_err(), "still too early");
            assert_eq!(wait, u64::try_from(delay / 1000).unwrap().max(1), "attempt {}", i + 4);
            now += delay;
            limiter.begin("anna", "5.6.7.8", now).unwrap_or_else(|w| panic!("attempt {} refused for {w} s", i + 4));
        }
        assert!(limiter.begin("bruno", "1.2.3.4", now).is_ok(), "another name is not delayed");
    }

    #[test]
    fn attempts_in_flight_count_before_they_fail() {
        // A hundred guesses begun at once, none verified yet: only the name's free ones get through.
        let limiter = SignInLimiter::new(Duration::from_secs(60), 5, 1000);
        let through = (0..100).filter(|i| limiter.begin("admin", &format!("10.0.0.{i}"), 0).is_ok()).count();
        assert_eq!(through, 5);
    }

    #[test]
    fn the_right_password_works_once_the_guessing_stops() {
        let limiter = SignInLimiter::new(Duration::from_secs(300), 5, 20);
        let mut now = 0;
        // An hour of guessing as fast as the limiter allows, from many addresses.
        let mut guesses = 0;
        while now < 3_600_000 {
            if limiter.begin("admin", &format!("10.0.{}.{}", guesses / 250, guesses % 250), now).is_ok() {
                guesses += 1;
            }
            now += 500;
        }
        assert!(guesses < 5 + 3_600 / 30 + 10, "{guesses} guesses in an hour");
        // The owner, after the longest delay.
        let attempt = limiter.begin("admin", "192.0.2.1", now + MAX_DELAY_MS).expect("not locked out");
        limiter.succeeded(attempt);
    }

    #[test]
    fn limiter_counts_per_address_across_names() {
        let limiter = SignInLimiter::new(Duration::from_secs(60), 100, 4);
        for name in ["a", "b", "c", "d"] {
            limiter.begin(name, "9.9.9.9", 0).unwrap();
        }
        assert!(limiter.begin("e", "9.9.9.9", 0).is_err());
        assert!(limiter.begin("e", "8.8.8.8", 0).is_ok());
        assert!(limiter.begin("e", "9.9.9.9", FIRST_DELAY_MS).is_ok(), "after the delay");
    }

    #[test]
    fn success_clears_the_names_attempts_and_takes_its_own_back() {
        let limiter = SignInLimiter::new(Duration::from_secs(60), 2, 2);
        limiter.begin("anna", "1.1.1.1", 0).unwrap();
        let attempt = limiter.begin("anna", "1.1.1.1", 1).unwrap();
        limiter.succeeded(attempt);
        assert!(limiter.begin("anna", "1.1.1.1", 2).is_ok(), "the name's attempts are cleared");
        assert!(limiter.begin("bruno", "1.1.1.1", 3).is_err(), "the address keeps its failures");
    }

    #[test]
    fn csrf_exemptions_are_narrow() {
        assert!(csrf_exempt(&Method::POST, "/api/session"));
        assert!(!csrf_exempt(&Method::DELETE, "/api/session"));
        assert!(!csrf_exempt(&Method::POST, "/api/session/everywhere"));
        assert!(csrf_exempt(&Method::POST, "/voice/events"));
        assert!(csrf_exempt(&Method::POST, "/twiml/voice"));
        assert!(!csrf_exempt(&Method::POST, "/api/callbacks/1/claim"));
    }

    #[test]
    fn websocket_origins_must_be_our_own() {
        let mut h = HeaderMap::new();
        h.insert("host", "127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h, ""), "no Origin: not a browser");
        h.insert("origin", "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h, ""));
        assert!(!same_origin(&h, "https://helpline.example.org"), "a public URL replaces the Host");
        h.insert("origin", "ftp://127.0.0.1:8080".parse().unwrap());
        assert!(!same_origin(&h, ""));
        h.insert("origin", "http://evil.example".parse().unwrap());
        assert!(!same_origin(&h, ""));
        h.insert("origin", "https://helpline.example.org".parse().unwrap());
        assert!(same_origin(&h, "https://helpline.example.org/"));
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
        assert!(!constant_time_eq("", "a"));
    }
}
