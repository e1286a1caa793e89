//! Operators, supervisors and admins: who may sign in, with which role and skills. Passwords are
//! stored only as argon2id hashes.

use super::audit::{Actor, AuditAction};
use super::{Db, DbError};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use ivr::domain::{Language, ServiceArea};
use serde::{Deserialize, Serialize};

/// What a user may do. Supervisors can do all operators can; admins all supervisors can. The
/// directory's roles stand beside them: an `org_editor` changes one organisation's services (its
/// changes are proposals), an `editor` reviews and changes every service; admins can do all an
/// editor can. Neither directory role takes calls. Ask [`Role::includes`], not the order: the
/// order only keeps the directory roles below every console role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    OrgEditor,
    Editor,
    Operator,
    Supervisor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::OrgEditor => "org_editor",
            Role::Editor => "editor",
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "org_editor" => Some(Role::OrgEditor),
            "editor" => Some(Role::Editor),
            "operator" => Some(Role::Operator),
            "supervisor" => Some(Role::Supervisor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether this role may do what `needed` may.
    pub fn includes(self, needed: Role) -> bool {
        use Role::*;
        match needed {
            Operator => matches!(self, Operator | Supervisor | Admin),
            Supervisor => matches!(self, Supervisor | Admin),
            Admin => self == Admin,
            Editor => matches!(self, Editor | Admin),
            OrgEditor => matches!(self, OrgEditor | Editor | Admin),
        }
    }
}

/// A user name: 1 to 64 characters among letters, digits and `. _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct UserName(String);

impl UserName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok =
            !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(UserName(s.to_owned()))
        } else {
            Err(format!("invalid user name {s:?}: use 1 to 64 letters, digits, '.', '_' or '-'"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password good enough to protect personal data: at least 12 characters.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_LEN: usize = 12;

    pub fn parse(s: &str) -> Result<Self, String> {
        if s.chars().count() < Self::MIN_LEN {
            return Err(format!("the password must be at least {} characters long", Self::MIN_LEN));
        }
        Ok(Password(s.to_owned()))
    }

    fn hash(&self) -> Result<String, DbError> {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(self.0.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| DbError::Corrupt(format!("password hashing failed: {e}")))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: UserName,
    pub role: Role,
    pub languages: Vec<Language>,
    pub areas: Vec<ServiceArea>,
    pub password: Password,
    pub sip_target: Option<String>,
    /// The one organisation (a directory `organization.id`) an `org_editor` may change.
    pub organization_id: Option<String>,
}

/// A stored user (without the password hash).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub languages: Vec<Language>,
    pub areas: Vec<ServiceArea>,
    pub sip_target: Option<String>,
    pub created_at: i64,
    /// Disabled users cannot sign in; their calls and notes keep their name.
    pub disabled: bool,
    /// Their password was chosen by someone else (the first admin's, an admin's reset): the page
    /// asks for a new one before anything else.
    pub must_change_password: bool,
    /// The one organisation an `org_editor` may change.
    pub organization_id: Option<String>,
    /// Trained for intercultural mediation: the ACD's fallback, and invited into calls by
    /// operators ("Add mediator").
    pub mediator: bool,
}

type UserRow = (i64, String, String, String, String, Option<String>, i64, Option<i64>, i64, Option<String>, i64);

fn user_from_row(row: UserRow) -> Result<User, DbError> {
    let (id, name, role, languages, areas, sip_target, created_at, disabled_at, must_change, organization_id, mediator) =
        row;
    let role = Role::parse(&role).ok_or_else(|| DbError::Corrupt(format!("user {name}: role {role:?}")))?;
    let languages =
        split_codes(&languages, Language::parse).map_err(|e| DbError::Corrupt(format!("user {name}: {e}")))?;
    let areas = split_codes(&areas, ServiceArea::parse).map_err(|e| DbError::Corrupt(format!("user {name}: {e}")))?;
    Ok(User {
        id,
        name,
        role,
        languages,
        areas,
        sip_target,
        created_at,
        disabled: disabled_at.is_some(),
        must_change_password: must_change != 0,
        organization_id,
        mediator: mediator != 0,
    })
}

/// Parses a comma-separated list of codes with the given parser.
pub fn split_codes<T, E: std::fmt::Display>(s: &str, parse: impl Fn(&str) -> Result<T, E>) -> Result<Vec<T>, String> {
    s.split(',').map(str::trim).filter(|c| !c.is_empty()).map(|c| parse(c).map_err(|e| e.to_string())).collect()
}

fn join_codes<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

/// Creates a user at `now` (epoch ms), and its audit row (`create_user`, by `actor`) in the same
/// transaction. A taken name is a [`DbError::Conflict`].
pub async fn add_user(db: &Db, user: &NewUser, now: i64, actor: &Actor) -> Result<User, DbError> {
    let hash = user.password.hash()?;
    let mut tx = {
        let _turn = db.lock_turn().await;
        let mut tx = db.pool().begin().await?;
        let result = sqlx::query(
            "INSERT INTO users (name, role, languages, areas, password_hash, sip_target, created_at, organization_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING",
        )
        .bind(user.name.as_str())
        .bind(user.role.as_str())
        .bind(join_codes(&user.languages))
        .bind(join_codes(&user.areas))
        .bind(hash)
        .bind(user.sip_target.clone())
        .bind(now)
        .bind(user.organization_id.clone())
        .execute(&mut *tx)
        .await?;
        if result.rows_affected() == 0 {
            // Ended here, not by a drop, which only queues the rollback.
            tx.rollback().await?;
            return Err(DbError::Conflict(format!("a user named {:?} already exists", user.name.as_str())));
        }
        tx
    };
    let detail = serde_json::json!({
        "name": user.name.as_str(),
        "role": user.role.as_str(),
        "languages": join_codes(&user.languages),
        "areas": join_codes(&user.areas),
        "organization_id": user.organization_id,
    });
    super::audit::record(&mut *tx, now, actor, AuditAction::CreateUser, None, &detail.to_string()).await?;
    tx.commit().await?;
    find_user(db, user.name.as_str()).await?.ok_or_else(|| DbError::Corrupt("the new user vanished".into()))
}

const USER_COLUMNS: &str = "id, name, role, languages, areas, sip_target, created_at, disabled_at, \
     must_change_password, organization_id, mediator";

pub async fn find_user(db: &Db, name: &str) -> Result<Option<User>, DbError> {
    let row: Option<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
        .bind(name)
        .fetch_optional(db.pool())
        .await?;
    row.map(user_from_row).transpose()
}

pub async fn find_user_by_id(db: &Db, id: i64) -> Result<Option<User>, DbError> {
    let row: Option<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.map(user_from_row).transpose()
}

pub async fn list_users(db: &Db) -> Result<Vec<User>, DbError> {
    let rows: Vec<UserRow> =
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name")).fetch_all(db.pool()).await?;
    rows.into_iter().map(user_from_row).collect()
}

pub async fn count_users(db: &Db) -> Result<i64, DbError> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(db.pool()).await?;
    Ok(n)
}

/// Checks a password; `None` for an unknown user or a wrong password (the same answer for both,
/// and the same work: an unknown user still costs one hash verification).
pub async fn verify_password(db: &Db, name: &str, password: &str) -> Result<Option<User>, DbError> {
    let row: Option<(String, Option<i64>)> =
        sqlx::query_as("SELECT password_hash, disabled_at FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(db.pool())
            .await?;
    // An unknown user is verified against a throwaway hash, so both answers cost the same.
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| Password(random_password()).hash().unwrap_or_default());
    let stored = row.as_ref().map(|(h, _)| h.clone()).unwrap_or_else(|| dummy.clone());
    let password = password.to_owned();
    // Argon2 takes tens of milliseconds of CPU by design: on a blocking thread, not on the
    // runtime's workers that answer webhooks and SIP.
    let enabled = row.as_ref().is_some_and(|(_, disabled_at)| disabled_at.is_none());
    let ok = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
    })
    .await
    .map_err(|e| DbError::Corrupt(format!("password verification failed: {e}")))?;
    if ok && enabled {
        find_user(db, name).await
    } else {
        Ok(None)
    }
}

/// One change an admin makes to an account.
#[derive(Debug, Clone)]
pub enum UserChange {
    /// Disable (`true`: cannot sign in) or enable again.
    Disabled(bool),
    /// A new password; `must_change` when someone other than the user chose it.
    Password {
        password: Password,
        must_change: bool,
    },
    Role(Role),
    Languages(Vec<Language>),
    Areas(Vec<ServiceArea>),
    SipTarget(Option<String>),
    /// Trained for intercultural mediation, or no longer.
    Mediator(bool),
}

impl UserChange {
    /// Whether the user's sessions must end with this change (they can no longer, or no longer
    /// should, act with what they signed in with).
    pub fn ends_sessions(&self) -> bool {
        matches!(self, UserChange::Disabled(true) | UserChange::Password { .. } | UserChange::Role(_))
    }

    /// How the audit log names this change.
    pub fn audit_action(&self) -> AuditAction {
        match self {
            UserChange::Disabled(true) => AuditAction::DisableUser,
            UserChange::Disabled(false) => AuditAction::EnableUser,
            UserChange::Password { .. } => AuditAction::SetPassword,
            UserChange::Role(_) => AuditAction::ChangeRole,
            UserChange::Languages(_) | UserChange::Areas(_) | UserChange::SipTarget(_) | UserChange::Mediator(_) => {
                AuditAction::ChangeUser
            }
        }
    }

    /// What changed, for the audit log (never a password).
    pub fn describe(&self) -> String {
        match self {
            UserChange::Disabled(true) => "disabled".into(),
            UserChange::Disabled(false) => "enabled".into(),
            UserChange::Password { must_change: true, .. } => "password reset (to be changed at sign-in)".into(),
            UserChange::Password { must_change: false, .. } => "password changed".into(),
            UserChange::Role(r) => format!("role {}", r.as_str()),
            UserChange::Languages(l) => format!("languages {}", join_codes(l)),
            UserChange::Areas(a) => format!("areas {}", join_codes(a)),
            UserChange::SipTarget(t) => format!("sip_target {}", t.as_deref().unwrap_or("(none)")),
            UserChange::Mediator(m) => format!("mediator {m}"),
        }
    }
}

/// Applies `change` to the user named `name` at `now` (epoch ms), written to the audit log as done
/// by `actor` in the same transaction, and returns the user as they are now; `Ok(None)` when
/// there is no such user. The caller ends their sessions when [`UserChange::ends_sessions`] says so.
pub async fn change_user(
    db: &Db,
    name: &str,
    change: &UserChange,
    now: i64,
    actor: &Actor,
) -> Result<Option<User>, DbError> {
    if let UserChange::Role(Role::OrgEditor) = change {
        // An organisation editor without an organisation could change nothing.
        if find_user(db, name).await?.is_some_and(|u| u.organization_id.is_none()) {
            return Err(DbError::Conflict(format!(
                "{name} has no organization: an org_editor is created with `helpline user add --role org_editor \
                 --organization ID`"
            )));
        }
    }
    let query = match change {
        UserChange::Disabled(true) => {
            sqlx::query("UPDATE users SET disabled_at = COALESCE(disabled_at, $2) WHERE name = $1").bind(name).bind(now)
        }
        UserChange::Disabled(false) => sqlx::query("UPDATE users SET disabled_at = NULL WHERE name = $1").bind(name),
        UserChange::Password { password, must_change } => {
            let password = password.clone();
            let hash = tokio::task::spawn_blocking(move || password.hash())
                .await
                .map_err(|e| DbError::Corrupt(format!("password hashing failed: {e}")))??;
            sqlx::query("UPDATE users SET password_hash = $2, must_change_password = $3 WHERE name = $1")
                .bind(name)
                .bind(hash)
                .bind(i64::from(*must_change))
        }
        UserChange::Role(role) => {
            sqlx::query("UPDATE users SET role = $2 WHERE name = $1").bind(name).bind(role.as_str())
        }
        UserChange::Languages(l) => {
            sqlx::query("UPDATE users SET languages = $2 WHERE name = $1").bind(name).bind(join_codes(l))
        }
        UserChange::Areas(a) => {
            sqlx::query("UPDATE users SET areas = $2 WHERE name = $1").bind(name).bind(join_codes(a))
        }
        UserChange::SipTarget(t) => {
            sqlx::query("UPDATE users SET sip_target = $2 WHERE name = $1").bind(name).bind(t.clone())
        }
        UserChange::Mediator(m) => {
            sqlx::query("UPDATE users SET mediator = $2 WHERE name = $1").bind(name).bind(i64::from(*m))
        }
    };
    let mut tx = {
        let _turn = db.lock_turn().await;
        let mut tx = db.pool().begin().await?;
        if query.execute(&mut *tx).await?.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        tx
    };
    let detail = serde_json::json!({ "name": name, "change": change.describe() });
    super::audit::record(&mut *tx, now, actor, change.audit_action(), None, &detail.to_string()).await?;
    tx.commit().await?;
    find_user(db, name).await
}

/// On a database with no users, creates `admin` with a random password and returns the password
/// (to be shown once). `None` when users exist or another node created the first admin first.
pub async fn ensure_first_admin(
    db: &Db,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<(String, String)>, DbError> {
    if count_users(db).await? > 0 {
        return Ok(None);
    }
    let password = random_password();
    let user = NewUser {
        name: UserName::parse("admin").map_err(DbError::Corrupt)?,
        role: Role::Admin,
        languages: vec![Language::It, Language::En],
        areas: Vec::new(),
        password: Password::parse(&password).map_err(DbError::Corrupt)?,
        sip_target: None,
        organization_id: None,
    };
    match add_user(db, &user, now.timestamp_millis(), &Actor::system("first start")).await {
        Ok(_) => {
            // Shown once, outside the database: its user must choose their own.
            sqlx::query("UPDATE users SET must_change_password = 1 WHERE name = 'admin'").execute(db.pool()).await?;
            Ok(Some(("admin".to_owned(), password)))
        }
        Err(DbError::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20).map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())])).collect()
}
