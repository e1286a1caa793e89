//! `console` — the helpline's server: health and metrics, the carriers' webhooks and the SIP
//! adapter, the operator console, the services directory and the supervisors' views; and the
//! `helpline` command line.

pub mod acd;
pub mod auth;
pub mod calls;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod directory;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod operators;
pub mod routes;
pub mod schedule;
pub mod sip;
pub mod startup;
pub mod state;
pub mod supervisor;
pub mod telemetry;
pub mod voice;
pub mod webhook;
