//! The state every handler shares: one `Clone` struct of cheap handles.

use crate::config::Settings;
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
    /// The services directory and its search index (issue 5).
    pub directory: crate::directory::Directory,
}
