//! Accounts, as an admin runs them over HTTP (the same changes as `helpline user …`):
//! `GET /api/users` lists them, `PATCH /api/users/{name}` disables or enables one, resets their
//! password (to be changed at their next sign-in), changes their role, languages, areas, SIP
//! target, or whether they are a mediator. Admins only. A change that ends the user's sessions
//! (disabled, a new password, another role) closes their open pages on every node at once.

use crate::auth::{AsAdmin, SessionRevoker};
use crate::clock::Clock;
use crate::db::audit::Actor;
use crate::db::users::{self, Password, Role, User, UserChange};
use crate::db::{sessions, Db};
use crate::error::AppError;
use crate::extract::JsonBody;
use axum::extract::{FromRef, Path, State};
use axum::routing::get;
use axum::{Json, Router};
use ivr::domain::{Language, ServiceArea};
use serde::Deserialize;
use std::sync::Arc;

/// What the accounts API needs.
pub struct AccountsState {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    /// Closes the sockets of a user whose sessions ended, on every node.
    pub revoker: Arc<dyn SessionRevoker>,
}

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<AccountsState>: FromRef<S>,
{
    Router::new().route("/api/users", get(list)).route("/api/users/{name}", get(one).patch(change))
}

async fn list(_: AsAdmin, State(state): State<Arc<AccountsState>>) -> Result<Json<Vec<User>>, AppError> {
    Ok(Json(users::list_users(&state.db).await?))
}

async fn one(
    _: AsAdmin,
    State(state): State<Arc<AccountsState>>,
    Path(name): Path<String>,
) -> Result<Json<User>, AppError> {
    users::find_user(&state.db, &name).await?.map(Json).ok_or_else(|| no_such_user(&name))
}

fn no_such_user(name: &str) -> AppError {
    AppError::NotFound(format!("no user named {name:?}"))
}

/// `PATCH /api/users/{name}`: any of these fields; all are checked before any is applied.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Changes {
    disabled: Option<bool>,
    /// A new password chosen by the admin: the user must change it at their next sign-in.
    password: Option<String>,
    role: Option<Role>,
    languages: Option<Vec<String>>,
    areas: Option<Vec<String>>,
    /// A SIP URI or number; `null` (or empty) for none.
    #[serde(default, deserialize_with = "present")]
    sip_target: Option<Option<String>>,
    /// Trained for intercultural mediation (offered by "Add mediator", the ACD's fallback).
    mediator: Option<bool>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl Changes {
    /// The changes in the order they apply, each validated; a bad field is a 400 naming it.
    fn validate(self) -> Result<Vec<UserChange>, AppError> {
        let bad = |field: &str, why: String| AppError::BadRequest(format!("{field}: {why}"));
        let mut out = Vec::new();
        if let Some(d) = self.disabled {
            out.push(UserChange::Disabled(d));
        }
        if let Some(p) = self.password {
            let password = Password::parse(&p).map_err(|e| bad("password", e))?;
            out.push(UserChange::Password { password, must_change: true });
        }
        if let Some(r) = self.role {
            out.push(UserChange::Role(r));
        }
        if let Some(l) = self.languages {
            let parsed = l.iter().map(|c| Language::parse(c)).collect::<Result<Vec<_>, _>>();
            out.push(UserChange::Languages(parsed.map_err(|e| bad("languages", e.to_string()))?));
        }
        if let Some(a) = self.areas {
            let parsed = a.iter().map(|c| ServiceArea::parse(c)).collect::<Result<Vec<_>, _>>();
            out.push(UserChange::Areas(parsed.map_err(|e| bad("areas", e.to_string()))?));
        }
        if let Some(t) = self.sip_target {
            out.push(UserChange::SipTarget(t.filter(|t| !t.trim().is_empty())));
        }
        if let Some(m) = self.mediator {
            out.push(UserChange::Mediator(m));
        }
        if out.is_empty() {
            return Err(AppError::BadRequest(
                "nothing to change: give disabled, password, role, languages, areas, sip_target or mediator".into(),
            ));
        }
        Ok(out)
    }
}

async fn change(
    AsAdmin(admin): AsAdmin,
    State(state): State<Arc<AccountsState>>,
    Path(name): Path<String>,
    JsonBody(changes): JsonBody<Changes>,
) -> Result<Json<User>, AppError> {
    let changes = changes.validate()?;
    let target = users::find_user(&state.db, &name).await?.ok_or_else(|| no_such_user(&name))?;
    // An admin cannot take their own admin rights away: the helpline would be left without one.
    let locks_out_self = |c: &UserChange| {
        matches!(c, UserChange::Disabled(true)) || matches!(c, UserChange::Role(r) if *r != Role::Admin)
    };
    if target.id == admin.user.id && changes.iter().any(locks_out_self) {
        return Err(AppError::Conflict("you cannot disable your own account or take away your own admin role".into()));
    }
    let mut user = target;
    let mut sessions_end = false;
    for change in &changes {
        let now = state.clock.now().timestamp_millis();
        let actor = Actor::user(admin.user.id, &admin.user.name);
        user = users::change_user(&state.db, &name, change, now, &actor).await?.ok_or_else(|| no_such_user(&name))?;
        tracing::info!(admin = %admin.user.name, user = %name, change = %change.describe(), "account changed");
        sessions_end |= change.ends_sessions();
    }
    if sessions_end {
        let ended = sessions::delete_user_sessions(&state.db, user.id).await?;
        state.revoker.sessions_revoked(user.id).await?;
        tracing::info!(user = %name, sessions = ended, "sessions ended by an account change");
    }
    Ok(Json(user))
}
