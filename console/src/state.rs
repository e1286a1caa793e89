//! The state every handler shares: one `Clone` struct of cheap handles.

use crate::calls::CallRuntime;
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
}
