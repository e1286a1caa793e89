//! `ivr` — the helpline's voice-menu engine and everything it speaks of.
//!
//! This crate knows nothing of HTTP, SQL or sockets. It holds the domain types that can only be
//! built valid ([`domain`]), the pure engine that turns a call's state and an event into a new state
//! and a list of actions ([`engine`]) running menus kept as data ([`flow`]), the reference data it
//! consults ([`geo`], [`hours`]), the prompt tooling ([`prompts`]) and the telephony protocols as pure
//! code ([`sip`], [`sdp`], [`rtp`]).

pub mod domain;
pub mod engine;
pub mod error;
pub mod flow;
pub mod geo;
pub mod hours;
pub mod prompts;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod sms;

pub use error::DomainError;
