//! RTP media for the helpline's calls, as pure code: packet encoding and decoding (RFC 3550),
//! G.711 (ITU-T G.711), 20 ms packetization and pacing, and RFC 4733 DTMF events (plus SIP INFO
//! DTMF bodies). The server owns the UDP socket and the clock.

mod dtmf;
mod g711;
mod packet;
mod packetizer;

pub use dtmf::{
    parse_info_dtmf, DtmfReceiver, DtmfSender, InfoDtmfError, TelephoneEvent, TelephoneEventError,
    TelephoneEventPacket, DEFAULT_EVENT_TIMEOUT,
};
pub use g711::{alaw_to_linear, decode, encode, linear_to_alaw, linear_to_ulaw, silence, ulaw_to_linear};
pub use packet::{RtpError, RtpHeader, RtpPacket};
pub use packetizer::{Pacer, Packetizer, PACKET_INTERVAL, SAMPLES_PER_PACKET, SAMPLE_RATE};
