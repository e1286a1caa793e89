//! The supervisors' views (`docs/supervisors.md`): the call log with keyset paging,
//! per-call timelines, contact-centre KPIs, CSV exports, the live wallboard, the audit log, and
//! retention (the purge of per-call detail after `retention_days`, with KPI roll-ups kept).
//!
//! - `filter.rs`: query string → validated filter; the opaque keyset cursor.
//! - `log.rs`: the log's rows and pages (operators see only their own calls).
//! - `timeline.rs`: one call's steps, offers, notes and referrals in time order.
//! - `kpi.rs`: the KPI definitions as pure functions over additive counts.
//! - `store.rs`: the counts out of SQL (per UTC hour × language × area) and the `kpi_hourly` roll-up.
//! - `export.rs`: streamed CSV of the log, CSV of the KPIs.
//! - `wallboard.rs`: `GET /ws/wallboard`.
//! - `audit.rs`: the audit log as admins read it (every feature writes it through `db::audit`).
//! - `settle.rs`: the KPI counts of ended calls into the roll-up, once; scheduled in `serve`.
//! - `retention.rs`: roll up, then purge (ended calls, expired sessions, old audit rows, old
//!   speech); scheduled in `serve`, `helpline retention run`.
//! - `bench.rs`: `helpline supervisors bench` (a million generated calls, query timings).
//! - `monitor.rs`: a supervisor listening to, whispering into or barging into a live call
//!   (`/api/calls/{id}/monitor`), audited; the media is `media::Phone`'s.
//! - `http.rs`: the routes and their handlers.

pub mod audit;
pub mod bench;
pub mod export;
pub mod filter;
pub mod http;
pub mod kpi;
pub mod log;
pub mod monitor;
pub mod retention;
pub mod settle;
pub mod store;
pub mod timeline;
pub mod wallboard;

pub use http::routes;

use crate::clock::Clock;
use crate::config::Settings;
use crate::db::Db;
use crate::metrics::Metrics;
use std::sync::Arc;

/// What the supervisors' views and their background jobs need.
pub struct SupervisorState {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// The wallboards' shared snapshot (one database read a second, however many are open).
    pub wallboard: wallboard::Feed,
    /// The browser phones' media: supervisors' legs join calls there.
    pub phone: crate::media::Phone,
}

/// The KPI definitions, as the API, the CSV and the page state them.
pub const DEFINITIONS: &[(&str, &str)] = &[
    ("queued", "calls that entered the operator queue (offered)"),
    ("answered", "queued calls an operator took; their wait runs from entering the queue to being answered"),
    ("abandoned", "queued calls whose caller hung up while waiting; short abandons hung up within 5 s"),
    (
        "service_level",
        "answered within 20 s of entering the queue ÷ (answered + abandoned after more than 5 s); \
         abandons within 5 s are left out, longer abandons count against the service level",
    ),
    ("asa_secs", "average speed of answer: total queue wait of answered calls ÷ answered calls"),
    ("abandonment_rate", "abandoned calls (short ones included) ÷ queued calls"),
    ("self_service_rate", "calls that heard nearby services read back (outcome self_service) ÷ all calls"),
    ("day_and_hour", "days and hours are Europe/Rome local time; a call counts in the hour it started"),
    (
        "callbacks",
        "callback: calls that ended with a callback request (in the call's hour); callbacks_reached and \
         callbacks_unreachable: callbacks that reached the person, or were closed after callback_max_attempts \
         attempts, counted in the hour that happened",
    ),
];

/// One line for the KPI CSV.
pub const DEFINITIONS_SHORT: &str = "service_level = answered within 20 s / (answered + abandoned after 5 s); \
    asa = queue wait of answered / answered; abandonment = abandoned / queued; self_service = self_service / calls; \
    Europe/Rome days and hours";
