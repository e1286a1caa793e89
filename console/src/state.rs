//! The state every handler shares: one `Arc` around the server's handles, so the clone that each
//! `State` extractor makes is one reference count, not one per handle (a request extracts it two
//! or three times; cloning and dropping the dozen handles was ≈ 3 % of the webhook's CPU,
//! BENCHMARKS.md "The floor").

use crate::calls::CallRuntime;
use crate::clock::Clock;
use crate::config::Settings;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::voice::Voice;
use ivr::domain::ServerSecret;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState(Arc<Handles>);

impl AppState {
    pub fn new(handles: Handles) -> AppState {
        AppState(Arc::new(handles))
    }
}

impl std::ops::Deref for AppState {
    type Target = Handles;
    fn deref(&self) -> &Handles {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Handles {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub secret: Arc<ServerSecret>,
    pub metrics: Arc<Metrics>,
    /// Runs calls for every telephony adapter.
    pub calls: CallRuntime,
    /// The menus and the prompt texts.
    pub voice: Voice,
    /// Runtime texts spoken on demand (queue positions, service names, slow prompts).
    pub tts: Arc<ivr::prompts::Tts>,
    /// What time it is (injected: tests move it).
    pub clock: Arc<dyn Clock>,
    /// The services directory and its search index (issue 5).
    pub directory: crate::directory::Directory,
    /// Failed sign-ins per name and address (in memory, per node).
    pub sign_in_limiter: Arc<crate::auth::SignInLimiter>,
    /// The operator console: its message hub, settings and sockets (issue 7).
    pub console: crate::operators::Console,
    /// The wallboards' shared snapshot (one database read a second, however many are open).
    pub wallboard: crate::supervisor::wallboard::Feed,
}
