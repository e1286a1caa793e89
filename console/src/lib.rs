//! `console` — the helpline's server: the telephony adapters (SIP, the JSON and TwiML webhooks),
//! the operator console, the supervisors' views, the services directory, health and metrics; and
//! the `helpline` command line.
//!
//! Dependencies point one way (ARCHITECTURE.md, checked by `tests/e2e/layers.rs`): `cli` →
//! `startup` → the features → the infrastructure.

// Infrastructure: knows no feature.
pub mod carrier;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod listener;
pub mod metrics;
pub mod tasks;
pub mod telemetry;

// Features, and the services they share.
pub mod accounts;
pub mod acd;
pub mod auth;
pub mod callback;
pub mod calls;
pub mod directory;
pub mod health;
pub mod media;
pub mod operators;
pub mod pages;
pub mod sip;
pub mod supervisor;
pub mod texts;
pub mod voice;
pub mod webhook;

// Assembly.
pub mod cli;
pub mod startup;
