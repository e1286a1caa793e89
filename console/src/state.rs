//! The state every handler shares: one `Clone` struct of cheap handles.

use crate::calls::CallRuntime;
use crate::clock::Clock;
use crate::config::Settings;
use crate::voice::Voice;
use crate::db::Db;
use crate::metrics::Metrics;
use ivr::domain::ServerSecret;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
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
    pub console: crate::console::Console,
}
