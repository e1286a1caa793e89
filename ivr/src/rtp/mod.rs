//! RTP media for the helpline's calls, as pure code: packet encoding and decoding (RFC 3550),
//! G.711 (ITU-T G.711), 20 ms packetization and pacing, RFC 4733 DTMF events (plus SIP INFO
//! DTMF bodies), and the bridge that forwards a call's RTP between two legs. The server owns the
//! UDP sockets and the clock.

mod bridge;
mod dtmf;
mod g711;
mod packet;
mod packetizer;

pub use bridge::{
    Bridge, BridgeError, DropReason, Forward, ForwardStats, Forwarder, LegPayloads, Side, StreamStart, Verdict,
    LIVE_SOURCE_SILENCE, MAX_DROPOUT, MAX_MISORDER, REORDER_WINDOW, RETIRED_SOURCE_GRACE,
};
pub use dtmf::{
    parse_info_dtmf, DtmfReceiver, DtmfSender, InfoDtmfError, TelephoneEvent, TelephoneEventError,
    TelephoneEventPacket, DEFAULT_EVENT_TIMEOUT,
};
pub use g711::{alaw_to_linear, decode, encode, linear_to_alaw, linear_to_ulaw, silence, ulaw_to_linear};
pub use packet::{RtpError, RtpHeader, RtpPacket};
pub use packetizer::{Pacer, Packetizer, PACKET_INTERVAL, SAMPLES_PER_PACKET, SAMPLE_RATE};
