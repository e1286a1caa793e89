//! The operator console's server side: the durable message hub and `/ws`, presence,
//! the queue service (ACD), the screen-pop, notes, referrals, dispositions, callbacks, and the
//! console's HTTP endpoints. The contract with the page is `docs/console-protocol.md`; the
//! websocket's messages are the types of [`protocol`].

pub mod config;
pub mod handover;
pub mod http;
pub mod hub;
pub mod interpreter;
pub mod mediation;
pub mod pop;
pub mod presence;
pub mod protocol;
pub mod queue_service;
pub mod recording;
pub mod sms;
pub mod socket;
pub mod work;

use crate::auth::SessionRevoker;
use crate::calls::CallRuntime;
use crate::clock::Clock;
use crate::config::Settings;
use crate::db::{Db, DbError};
use crate::directory::Directory;
use crate::error::AppError;
use crate::media::Phone;
use crate::metrics::Metrics;
use crate::tasks::Tasks;
use config::ConsoleConfig;
use protocol::ErrorCode;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What the console's handlers, sockets and queue service need.
pub struct OperatorsState {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    /// The message hub, the console's settings and this node's open sockets.
    pub console: Console,
    /// Searched from the sockets.
    pub directory: Directory,
    /// The calls the console offers and ends.
    pub calls: CallRuntime,
    pub metrics: Arc<Metrics>,
    /// The browser phones' media on this node (the SIP calls it carries).
    pub phone: Phone,
    /// The recordings under way on this node.
    pub recordings: recording::Recordings,
    /// Operators' "Send by SMS" (`None`: this server sends no texts).
    pub texts: Option<crate::texts::Texts>,
    /// The SIP trunk outside interpreters are dialled through (`None`: none configured).
    pub trunk: Option<crate::sip::trunk::Trunk>,
    /// Seals an outside interpreter's number on its way to the node that dials it.
    pub seal: crate::calls::sealed::NumberSeal,
    /// The outside interpreters' calls under way on this node.
    pub interpreters: interpreter::Interpreters,
}

/// Why a console request was refused. `code()` is what the page gets in an `error` message.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("this offer is no longer open")]
    OfferGone,
    #[error("no such offer for you")]
    NotYourOffer,
    #[error("you have no SIP target or number to transfer calls to; ask an admin")]
    NoTarget,
    #[error("this call cannot be answered in the browser here (its carrier or its media is elsewhere); answer it on your phone")]
    PhoneUnavailable,
    #[error("not possible while you have an offer or a call")]
    Busy,
    #[error("this is not your call")]
    NotYourCall,
    #[error("unknown disposition code {0:?}")]
    UnknownDisposition(String),
    #[error("unknown service {0:?}")]
    UnknownService(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("no such callback, or not yours")]
    NoSuchCallback,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for ConsoleError {
    fn from(e: sqlx::Error) -> Self {
        ConsoleError::Db(DbError::Query(e))
    }
}

impl ConsoleError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ConsoleError::OfferGone => ErrorCode::OfferGone,
            ConsoleError::NotYourOffer => ErrorCode::NotYourOffer,
            ConsoleError::NoTarget => ErrorCode::NoTarget,
            ConsoleError::PhoneUnavailable => ErrorCode::PhoneUnavailable,
            ConsoleError::Busy => ErrorCode::Busy,
            ConsoleError::NotYourCall => ErrorCode::NotYourCall,
            ConsoleError::UnknownDisposition(_) => ErrorCode::UnknownDisposition,
            ConsoleError::UnknownService(_) => ErrorCode::UnknownService,
            ConsoleError::BadRequest(_) => ErrorCode::BadMessage,
            // Callbacks are HTTP only (a 404 there, see `From<ConsoleError> for AppError`); the
            // socket never refuses with it.
            ConsoleError::NoSuchCallback => ErrorCode::Internal,
            ConsoleError::Db(_) => ErrorCode::Internal,
        }
    }
}

impl From<ConsoleError> for AppError {
    fn from(e: ConsoleError) -> Self {
        match e {
            ConsoleError::Db(e) => AppError::from(e),
            ConsoleError::NoSuchCallback => AppError::NotFound(e.to_string()),
            other => AppError::Conflict(other.to_string()),
        }
    }
}

struct Inner {
    hub: hub::Hub,
    config: ConsoleConfig,
    /// Wakes the queue service (the call runtime's queue notifications, and console actions).
    wake: Arc<Notify>,
    /// Open sockets per user on this node.
    connected: Mutex<HashMap<i64, usize>>,
    /// When `operator_state.seen_at` was last refreshed for them (clock ms).
    seen_refreshed: Mutex<i64>,
}

/// The console's shared handle (in `OperatorsState`). Cheap to clone.
#[derive(Clone)]
pub struct Console(Arc<Inner>);

impl Console {
    pub fn new(db: Db, config: ConsoleConfig, wake: Arc<Notify>) -> Console {
        Console(Arc::new(Inner {
            hub: hub::Hub::new(db),
            config,
            wake,
            connected: Mutex::new(HashMap::new()),
            seen_refreshed: Mutex::new(i64::MIN),
        }))
    }

    /// Starts the hub's pump (and LISTEN on PostgreSQL) and the queue service.
    pub fn start(state: &Arc<OperatorsState>, tasks: &Tasks) {
        state.console.hub().start(&state.settings.database_url, tasks);
        tasks.spawn_until_stopped("queue service", queue_service::run(state.clone()));
    }

    pub fn hub(&self) -> &hub::Hub {
        &self.0.hub
    }

    pub fn config(&self) -> &ConsoleConfig {
        &self.0.config
    }

    pub fn wake(&self) -> Arc<Notify> {
        self.0.wake.clone()
    }

    /// Asks the queue service for a pass now.
    pub fn kick(&self) {
        self.0.wake.notify_one();
    }

    /// Every session of this user was deleted: close their sockets, on every node.
    pub async fn sessions_revoked(&self, user_id: i64) -> Result<(), DbError> {
        self.0.hub.revoke_sessions(user_id).await
    }

    /// Whether the open sockets' `seen_at` should be refreshed now (every 5 s of clock time; a
    /// new socket sets its own on `hello`).
    pub fn seen_due(&self, now_ms: i64) -> bool {
        let Ok(mut last) = self.0.seen_refreshed.lock() else { return true };
        if now_ms.saturating_sub(*last) >= SEEN_REFRESH_MS || now_ms < *last {
            *last = now_ms;
            true
        } else {
            false
        }
    }

    pub fn connected_users(&self) -> Vec<i64> {
        self.0.connected.lock().map(|m| m.keys().copied().collect()).unwrap_or_default()
    }

    fn socket_opened(&self, user_id: i64) {
        if let Ok(mut m) = self.0.connected.lock() {
            *m.entry(user_id).or_default() += 1;
        }
    }

    fn socket_closed(&self, user_id: i64) {
        if let Ok(mut m) = self.0.connected.lock() {
            if let Some(n) = m.get_mut(&user_id) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&user_id);
                }
            }
        }
    }
}

impl SessionRevoker for Console {
    fn sessions_revoked(&self, user_id: i64) -> Pin<Box<dyn Future<Output = Result<(), DbError>> + Send + '_>> {
        Box::pin(Console::sessions_revoked(self, user_id))
    }
}

/// How often (clock time) open sockets refresh their users' `seen_at`; well under the 30 s lapse.
const SEEN_REFRESH_MS: i64 = 5_000;

/// The console's routes: `/ws`, `/api/console/config`, `/api/operators`, `/api/callbacks…`.
pub fn routes<S>() -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<OperatorsState>: axum::extract::FromRef<S>,
{
    http::routes()
        .merge(socket::routes())
        .merge(mediation::routes())
        .merge(interpreter::routes())
        .merge(handover::routes())
        .merge(recording::routes())
        .merge(sms::routes())
}
