//! The voice-menu engine: `step(flow, state, event, now) → (state, actions)`.
//!
//! Architecture invariant: the engine does no I/O. It reads no clock (the instant comes in as
//! `now`), draws no random number, touches no socket, file or database, and never panics on any
//! event in any state: a stale or unexpected event is logged and ignored. Telephony adapters (SIP,
//! webhook, TwiML) translate to and from [`Event`] and [`Action`]; the server stores [`CallState`]
//! as JSON between events and writes every [`Action::Log`] to the call log. Folding a call's
//! recorded `(event, now)` pairs through [`step`] from [`CallState::initial`] reproduces its final
//! state exactly.

mod action;
mod event;
mod log;
mod state;
mod step;

pub use action::{Action, Lookup, Outcome, Pace, SayArg};
pub use event::{Channel, Event, ServiceSummary};
pub use log::LogEntry;
pub use state::{CallState, Place, QueueStatus, Wait};
pub use step::{replay, step, Step};
