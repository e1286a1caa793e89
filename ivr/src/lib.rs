//! `ivr` — the helpline's voice-menu engine and everything it speaks of.
//!
//! This crate knows nothing of HTTP, SQL or sockets. It holds the domain types that can only be
//! built valid ([`domain`]), and (in later modules) the pure engine that turns a call's state and
//! an event into a new state and a list of actions.

pub mod domain;
pub mod engine;
pub mod error;
pub mod flow;
pub mod geo;
pub mod hours;
pub mod prompts;

pub use error::DomainError;
