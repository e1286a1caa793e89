//! Storage through sqlx: one pool over SQLite (the embedded default) or PostgreSQL (the scale-out
//! store), chosen by the database URL. Queries are written once in the SQL both backends accept
//! (`$1` placeholders, BIGINT epoch milliseconds, TEXT ids); the schema lives in
//! `migrations/<backend>/` because DDL differs.

pub mod audit;
pub mod listen;
pub mod pg_tls;
pub mod secrets;
pub mod sessions;
pub mod turns;
pub mod users;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Connection, Executor};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use turns::{LockTurns, Turn};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Why storage failed. Messages never include the database password.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot create the database folder {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    #[error("cannot connect to the {backend} database at {url}: {reason}")]
    Connect { backend: &'static str, url: String, reason: String },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// From the calls' SQLite writer thread, which talks to SQLite directly (`calls::sqlite`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// From the calls' PostgreSQL writers, which have connections of their own (`calls::pg`).
    #[error("database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

/// The connection pool and its backend. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// The SQLite database file (none for PostgreSQL or an in-memory SQLite database).
    sqlite_file: Option<std::path::PathBuf>,
    /// The PostgreSQL URL (none for SQLite): the calls' writers open their own connections.
    postgres_url: Option<String>,
    /// Turns at SQLite's write lock between the pool's writers and the calls' writer thread.
    turns: Arc<LockTurns>,
}

impl DbError {
    /// SQLite's "database is locked" (`SQLITE_BUSY` and its extended codes): another connection
    /// held the write lock past the busy timeout. Trying again later may succeed.
    pub fn is_busy(&self) -> bool {
        match self {
            DbError::Query(sqlx::Error::Database(e)) => {
                e.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| c & 0xff == 5)
            }
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => e.code == rusqlite::ErrorCode::DatabaseBusy,
            _ => false,
        }
    }
}

impl Db {
    /// Connects (creating the SQLite file and its folder when needed). Fails within a few seconds
    /// when the server does not answer.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(DbError::UnsupportedUrl(redact(url)));
        };
        let (url, sqlite_file) = match backend {
            Backend::Sqlite => sqlite_url(url)?,
            // libpq's sslmode and sslrootcert, as sqlx should read them (`pg_tls`).
            Backend::Postgres => (
                pg_tls::sqlx_url(url).map_err(|reason| DbError::Connect {
                    backend: backend.name(),
                    url: redact(url),
                    reason,
                })?,
                None,
            ),
        };
        let connect_err =
            |e: sqlx::Error| DbError::Connect { backend: backend.name(), url: redact(&url), reason: e.to_string() };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(connect_err)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        // One direct connection first: a pool would hide the reason behind "timed out".
        match tokio::time::timeout(Duration::from_secs(5), sqlx::AnyConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => drop(conn),
            Ok(Err(e)) => return Err(connect_err(e)),
            Err(_) => return Err(connect_err(sqlx::Error::PoolTimedOut)),
        }
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                // One writer at a time in SQLite; a few readers beside it in WAL mode.
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(5))
            // No `SELECT 1`-style ping on every checkout: it doubled the round trips of short
            // transactions. A connection found broken fails its statement and is replaced.
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // page_size applies only to a new, empty database (before WAL): 2 KiB
                        // pages halve what a commit of a few scattered rows writes to the WAL
                        // (BENCHMARKS.md, webhook decisions), and still hold a call's row and a
                        // call-log step with its answer without overflow pages. secure_delete:
                        // what the pool deletes (the retention purge's notes and call logs,
                        // sessions) is overwritten in the file, not left in free space for a copy
                        // of the file to show.
                        conn.execute(
                            "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA secure_delete = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        let postgres_url = (backend == Backend::Postgres).then_some(url);
        Ok(Db { pool, backend, sqlite_file, postgres_url, turns: Arc::default() })
    }

    /// Applies the pending migrations of this backend.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        if self.backend == Backend::Sqlite {
            widen_sqlite_roles(&self.pool).await?;
        }
        Ok(())
    }

    /// `SELECT 1`, for readiness.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A turn at the write lock, for a write through the pool that must not wait behind the
    /// calls' writer under load: keep it until the statement (or the transaction's first write)
    /// has run. See [`turns`].
    pub async fn lock_turn(&self) -> Turn<'_> {
        self.turns.take().await
    }

    /// Runs one write statement through the pool in a [lock turn](Db::lock_turn).
    pub async fn with_lock_turn<T>(&self, write: impl std::future::Future<Output = T>) -> T {
        let _turn = self.lock_turn().await;
        write.await
    }

    /// The turns, for the calls' SQLite writer thread.
    pub(crate) fn turns(&self) -> Arc<LockTurns> {
        self.turns.clone()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The SQLite database file, when the database is one.
    pub fn sqlite_file(&self) -> Option<&Path> {
        self.sqlite_file.as_deref()
    }

    /// The PostgreSQL URL, for connections outside the pool (none for SQLite).
    pub fn postgres_url(&self) -> Option<&str> {
        self.postgres_url.as_deref()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `sqlite://data/helpline.db` → the same URL with `mode=rwc`, after creating `data/`, and the
/// database file.
fn sqlite_url(url: &str) -> Result<(String, Option<std::path::PathBuf>), DbError> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory") {
        return Ok((url.to_owned(), None));
    }
    if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|source| DbError::CreateDir { path: parent.display().to_string(), source })?;
    }
    let mut query = query.to_owned();
    if !query.split('&').any(|kv| kv.starts_with("mode=")) {
        query = if query.is_empty() { "mode=rwc".into() } else { format!("{query}&mode=rwc") };
    }
    Ok((format!("sqlite://{path}?{query}"), Some(path.into())))
}

/// The URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The roles a user may have, as the SQLite `users.role` CHECK lists them since the directory's
/// editors (migration 0016). PostgreSQL's migration changes its constraint in place.
const SQLITE_USERS: &str = "CREATE TABLE users_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('operator', 'supervisor', 'admin', 'editor', 'org_editor')),
    languages     TEXT NOT NULL DEFAULT '',
    areas         TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    sip_target    TEXT,
    created_at    BIGINT NOT NULL,
    mediator      INTEGER NOT NULL DEFAULT 0,
    disabled_at   BIGINT,
    must_change_password BIGINT NOT NULL DEFAULT 0,
    organization_id TEXT
);
INSERT INTO users_new (id, name, role, languages, areas, password_hash, sip_target, created_at, mediator,
                       disabled_at, must_change_password, organization_id)
    SELECT id, name, role, languages, areas, password_hash, sip_target, created_at, mediator,
           disabled_at, must_change_password, organization_id FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;";

/// SQLite cannot change a CHECK constraint in place: once, after migration 0016, `users` is
/// rebuilt with the directory's roles in its CHECK. Its rows, ids and sequence are kept. The
/// foreign keys are off meanwhile (outside any transaction, the only place SQLite lets them be
/// switched), so dropping the old table neither cascades to the sessions nor empties the calls'
/// operators, and the other tables' references, which name `users`, find the new table.
async fn widen_sqlite_roles(pool: &AnyPool) -> Result<(), DbError> {
    let sql: Option<String> =
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'users'")
            .fetch_optional(pool)
            .await?;
    if sql.is_none_or(|s| s.contains("org_editor")) {
        return Ok(());
    }
    let mut conn = pool.acquire().await?;
    (&mut *conn).execute("PRAGMA foreign_keys = OFF").await?;
    let rebuilt = async {
        let mut tx = conn.begin().await?;
        // Another process may have done it meanwhile.
        let sql: String = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'users'")
            .fetch_one(&mut *tx)
            .await?;
        if !sql.contains("org_editor") {
            tx.execute(SQLITE_USERS).await?;
        }
        tx.commit().await
    }
    .await;
    (&mut *conn).execute("PRAGMA foreign_keys = ON").await?;
    rebuilt?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.db");
        let (url, file) = sqlite_url(&format!("sqlite://{}", p.display())).unwrap();
        assert!(url.ends_with("?mode=rwc"), "{url}");
        assert_eq!(file.as_deref(), Some(p.as_path()));
        assert!(p.parent().unwrap().is_dir());
        assert_eq!(sqlite_url("sqlite://a.db?mode=ro").unwrap().0, "sqlite://a.db?mode=ro");
        assert_eq!(sqlite_url("sqlite::memory:").unwrap().1, None);
    }

    /// A write while another connection holds SQLite's write lock fails as busy; other errors
    /// are not.
    #[tokio::test]
    async fn a_write_lock_held_elsewhere_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/busy.db?mode=rwc", dir.path().display());
        sqlx::any::install_default_drivers();
        let mut a = sqlx::AnyConnection::connect(&url).await.unwrap();
        let mut b = sqlx::AnyConnection::connect(&url).await.unwrap();
        a.execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)").await.unwrap();
        b.execute("PRAGMA busy_timeout = 0").await.unwrap();
        a.execute("BEGIN IMMEDIATE").await.unwrap();
        let e = DbError::from(b.execute("INSERT INTO t VALUES (1)").await.unwrap_err());
        assert!(e.is_busy(), "{e}");
        a.execute("ROLLBACK").await.unwrap();
        b.execute("INSERT INTO t VALUES (1)").await.unwrap();
        let e = DbError::from(b.execute("INSERT INTO nowhere VALUES (1)").await.unwrap_err());
        assert!(!e.is_busy(), "{e}");
    }
}
