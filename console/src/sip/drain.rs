//! Graceful drain: on SIGTERM a node stops taking SIP calls (new INVITEs and OPTIONS get `503`,
//! so a proxy's dispatcher moves to the other nodes) and keeps the calls it holds up to
//! `drain_secs`; then each hears the goodbye prompt and gets a BYE (retransmitted until
//! answered), and the node stops once every BYE is answered or has timed out. Queued callers
//! are still offered to operators meanwhile (this node keeps polling its assignments).

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How a SIP server is told to drain, and tells that it has.
#[derive(Clone, Debug, Default)]
pub struct Drain {
    /// Cancelled when the drain begins.
    pub start: CancellationToken,
    /// Cancelled by the SIP server when no call is left (or the drain gave up).
    pub done: CancellationToken,
    /// How long live calls are kept.
    pub within: Duration,
}

/// Where a draining server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Serving,
    /// Refusing new calls; the live ones run until `until`.
    Draining {
        until: Instant,
    },
    /// Goodbyes said and BYEs sent; waiting for their answers until `until`.
    Ending {
        until: Instant,
    },
    Done,
}

/// After the goodbyes, how long BYEs may take (their client transactions end in 32 s).
pub(super) const BYE_GRACE: Duration = Duration::from_secs(40);
