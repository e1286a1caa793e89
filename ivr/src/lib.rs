//! `ivr` — the helpline's voice-menu engine and everything it speaks of.
//!
//! This crate knows nothing of HTTP, SQL or sockets. It holds the domain types that can only be
//! built valid ([`domain`]), the telephony protocols as pure code ([`sip`], [`sdp`], [`rtp`]), and
//! (in later modules) the pure engine that turns a call's state and an event into a new state and
//! a list of actions.

pub mod domain;
pub mod error;
pub mod prompts;
pub mod rtp;
pub mod sdp;
pub mod sip;

pub use error::DomainError;
