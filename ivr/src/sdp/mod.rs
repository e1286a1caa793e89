//! SDP for audio calls: parse the caller's offer (RFC 4566) and build our answer (RFC 3264) —
//! G.711 in the caller's order of preference, `telephone-event` at the caller's payload type,
//! direction mirrored. Pure text in, text out.

mod negotiate;
mod session;

pub use negotiate::{negotiate, negotiate_body, Codec, LocalMedia, NegotiatedAudio, NegotiationError};
pub use session::{Connection, Direction, MediaDescription, Origin, RtpMap, SdpError, SessionDescription};
