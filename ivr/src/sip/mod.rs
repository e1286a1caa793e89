//! SIP for the helpline's own UDP server: message grammar, response builders, transactions and
//! dialogs, as pure code. The server owns sockets and the clock; this module turns bytes and
//! instants into messages, bytes to send and timers to set.
//!
//! Architecture invariant: nothing here does I/O, spawns, sleeps or reads the clock.
//! Modeled on ezk's `sip-types`/`sip-core`: parsing apart from transport, transactions apart from
//! the user agent.

mod builder;
#[cfg(test)]
mod call_flow_tests;
mod client_transaction;
mod dialog;
mod digest;
mod digest_verify;
mod header_values;
mod headers;
mod ids;
mod message;
mod method;
#[cfg(test)]
mod parser_properties;
mod response_routing;
mod transaction;

pub use builder::{
    default_reason, invite_ok, options_response, policy_response, require_response, response_to, response_with_reason,
};
pub use client_transaction::{ClientOutput, NonInviteClientTransaction};
pub use dialog::{engine_call_id, refer_progress, Dialog, DialogError, DialogId, LocalVia, ReferProgress};
pub use digest::{Challenge, DigestAlgorithm, DigestCredentials, DigestError};
pub use digest_verify::{DigestCheck, DigestVerifier, MAX_USED_NONCES, NONCE_LIFETIME};
pub use header_values::{split_host_port, uri_host_port, CSeq, NameAddr, Params, Via, BRANCH_MAGIC_COOKIE};
pub use headers::{canonical_name, Header, Headers};
pub use ids::IdGen;
pub use message::{parse, reject_unparseable, Message, ParseError, Request, Response, MAX_HEADERS};
pub use method::{allow_header_value, policy, Method, MethodPolicy, ACCEPT_HEADER_VALUE, SUPPORTED_METHODS};
pub use response_routing::{response_target, stamp_received};
pub use transaction::{ServerOutput, ServerTransactions, Timers, TransactionError, TxKey};
