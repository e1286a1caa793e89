//! Offer/answer for our one audio stream (RFC 3264 §6): pick G.711 as the caller prefers it, keep
//! `telephone-event` at the caller's payload type, mirror the direction, reject what we cannot do.

use std::net::{IpAddr, SocketAddr};

use super::session::{Connection, Direction, MediaDescription, Origin, RtpMap, SdpError, SessionDescription};

/// The two codecs we speak (ITU-T G.711).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// μ-law, static payload type 0.
    Pcmu,
    /// A-law, static payload type 8.
    Pcma,
}

impl Codec {
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The static RTP payload type (RFC 3551).
    pub fn static_payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }
}

/// Why we cannot answer an offer. The server answers [`NegotiationError::status_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("offer has no active RTP/AVP audio stream")]
    NoAudio,
    #[error("offer lists neither PCMU nor PCMA")]
    NoCommonCodec,
    #[error("offer is not valid SDP: {0}")]
    Sdp(#[from] SdpError),
}

impl NegotiationError {
    /// `488 Not Acceptable Here` for an offer we understand but cannot accept, `400` for bad SDP.
    pub fn status_code(&self) -> u16 {
        match self {
            NegotiationError::Sdp(_) => 400,
            _ => 488,
        }
    }

    pub fn reason_phrase(&self) -> &'static str {
        match self {
            NegotiationError::Sdp(_) => "Malformed SDP",
            _ => "Not Acceptable Here",
        }
    }
}

/// Our side of the media session: where we receive RTP, and the `o=` identity whose version
/// grows with every new answer in the dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    pub address: IpAddr,
    pub rtp_port: u16,
    pub session_id: u64,
    pub session_version: u64,
    /// The one law accepted, when the other side of a bridge already speaks it (a leg built
    /// before the call arrived); `None`: the first G.711 law offered.
    pub only: Option<Codec>,
}

impl LocalMedia {
    pub fn new(address: IpAddr, rtp_port: u16, session_id: u64) -> LocalMedia {
        LocalMedia { address, rtp_port, session_id, session_version: session_id, only: None }
    }

    /// The same, accepting `codec` only (an offer without it gets no common codec).
    pub fn only(self, codec: Codec) -> LocalMedia {
        LocalMedia { only: Some(codec), ..self }
    }

    /// Call before answering a re-INVITE: the new answer is a new version (RFC 3264 §8).
    pub fn bump_version(&mut self) {
        self.session_version = self.session_version.wrapping_add(1);
    }
}

/// The outcome of a successful negotiation: what the media path must do, and the answer to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedAudio {
    pub codec: Codec,
    /// The payload type for the codec (as offered; normally 0 or 8).
    pub codec_payload_type: u8,
    /// The caller's payload type for RFC 4733 events, if offered.
    pub telephone_event_payload_type: Option<u8>,
    /// Where to send RTP; `None` when the offer holds the call with `c=0.0.0.0` or names a host.
    pub remote_rtp: Option<SocketAddr>,
    /// Our direction, as written in the answer.
    pub direction: Direction,
    /// The caller's packet time preference, if any (we send 20 ms).
    pub remote_ptime: Option<u32>,
    pub answer: SessionDescription,
}

impl NegotiatedAudio {
    /// The answer body, for a 200 OK with `Content-Type: application/sdp`.
    pub fn answer_sdp(&self) -> String {
        self.answer.to_sdp()
    }

    /// Whether we should be sending audio now (not on hold).
    pub fn we_send(&self) -> bool {
        matches!(self.direction, Direction::SendRecv | Direction::SendOnly) && self.remote_rtp.is_some()
    }
}

fn codec_of(m: &MediaDescription, pt: u8) -> Option<Codec> {
    match m.rtpmap(pt) {
        Some(RtpMap { encoding, clock_rate: 8000, .. }) if encoding.eq_ignore_ascii_case("PCMU") => Some(Codec::Pcmu),
        Some(RtpMap { encoding, clock_rate: 8000, .. }) if encoding.eq_ignore_ascii_case("PCMA") => Some(Codec::Pcma),
        Some(_) => None,
        None => match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        },
    }
}

/// Parses an SDP body and answers it: [`negotiate`] for the bytes of an INVITE body.
pub fn negotiate_body(body: &[u8], local: &LocalMedia) -> Result<NegotiatedAudio, NegotiationError> {
    negotiate(&SessionDescription::parse(body)?, local)
}

/// Answers `offer` from `local` (RFC 3264 §6.1). The first active `m=audio … RTP/AVP` stream is
/// accepted; any other stream is declined with port 0.
pub fn negotiate(offer: &SessionDescription, local: &LocalMedia) -> Result<NegotiatedAudio, NegotiationError> {
    let audio_index = offer
        .media
        .iter()
        .position(|m| m.media == "audio" && m.port != 0 && m.protocol.eq_ignore_ascii_case("RTP/AVP"))
        .ok_or(NegotiationError::NoAudio)?;
    let m = &offer.media[audio_index];
    let pts: Vec<u8> = m.formats.iter().filter_map(|f| f.parse().ok()).filter(|pt| *pt < 128).collect();
    let accepted = |c: &Codec| local.only.is_none_or(|only| only == *c);
    let (codec_pt, codec) = pts
        .iter()
        .find_map(|pt| codec_of(m, *pt).filter(accepted).map(|c| (*pt, c)))
        .ok_or(NegotiationError::NoCommonCodec)?;
    let te = pts.iter().copied().find(|pt| {
        m.rtpmap(*pt).is_some_and(|r| r.encoding.eq_ignore_ascii_case("telephone-event") && r.clock_rate == 8000)
    });
    let offered_direction = m.direction.or(offer.direction).unwrap_or(Direction::SendRecv);
    let direction = offered_direction.mirrored();
    let remote_ip = m.connection.as_ref().or(offer.connection.as_ref()).and_then(|c| c.address);
    let remote_rtp = remote_ip.filter(|ip| !ip.is_unspecified()).map(|ip| SocketAddr::new(ip, m.port));

    let addr_type = if local.address.is_ipv4() { "IP4" } else { "IP6" };
    let mut formats = vec![codec_pt.to_string()];
    let mut rtpmaps = vec![RtpMap {
        payload_type: codec_pt,
        encoding: codec.encoding_name().to_owned(),
        clock_rate: 8000,
        channels: None,
    }];
    let mut fmtps = Vec::new();
    if let Some(te) = te {
        formats.push(te.to_string());
        rtpmaps.push(RtpMap {
            payload_type: te,
            encoding: "telephone-event".to_owned(),
            clock_rate: 8000,
            channels: None,
        });
        fmtps.push((te, "0-15".to_owned()));
    }
    let media = offer
        .media
        .iter()
        .enumerate()
        .map(|(i, offered)| {
            if i == audio_index {
                MediaDescription {
                    media: "audio".into(),
                    port: local.rtp_port,
                    protocol: "RTP/AVP".into(),
                    formats: formats.clone(),
                    connection: None,
                    rtpmaps: rtpmaps.clone(),
                    fmtps: fmtps.clone(),
                    direction: Some(direction),
                    ptime: Some(20),
                    other_attributes: Vec::new(),
                }
            } else {
                // Declined (RFC 3264 §6): same media and protocol, port 0, one format.
                MediaDescription {
                    media: offered.media.clone(),
                    port: 0,
                    protocol: offered.protocol.clone(),
                    formats: offered.formats.iter().take(1).cloned().collect(),
                    connection: None,
                    rtpmaps: Vec::new(),
                    fmtps: Vec::new(),
                    direction: None,
                    ptime: None,
                    other_attributes: Vec::new(),
                }
            }
        })
        .collect();
    let answer = SessionDescription {
        origin: Origin {
            username: "helpline".into(),
            session_id: local.session_id,
            session_version: local.session_version,
            address_type: addr_type.into(),
            address: local.address.to_string(),
        },
        session_name: "helpline".into(),
        connection: Some(Connection { address_type: addr_type.into(), address: Some(local.address) }),
        direction: None,
        media,
    };
    Ok(NegotiatedAudio {
        codec,
        codec_payload_type: codec_pt,
        telephone_event_payload_type: te,
        remote_rtp,
        direction,
        remote_ptime: m.ptime,
        answer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalMedia {
        LocalMedia::new("203.0.113.5".parse().unwrap(), 20000, 777)
    }

    fn offer(m_line: &str, attrs: &str) -> SessionDescription {
        let text = format!(
            "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{m_line}\r\n{attrs}"
        );
        SessionDescription::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn sipp_offer_gets_pcmu() {
        let n = negotiate(&offer("m=audio 6000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000\r\n"), &local()).unwrap();
        assert_eq!((n.codec, n.codec_payload_type, n.telephone_event_payload_type), (Codec::Pcmu, 0, None));
        assert_eq!(n.remote_rtp, Some("127.0.0.1:6000".parse().unwrap()));
        assert_eq!(
            n.answer_sdp(),
            "v=0\r\no=helpline 777 777 IN IP4 203.0.113.5\r\ns=helpline\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
m=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
        );
        assert!(n.we_send());
    }

    #[test]
    fn a_restricted_side_takes_its_law_wherever_offered_or_none() {
        let o = offer("m=audio 6000 RTP/AVP 0 8", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n");
        let n = negotiate(&o, &local().only(Codec::Pcma)).unwrap();
        assert_eq!((n.codec, n.codec_payload_type), (Codec::Pcma, 8));
        assert!(n.answer_sdp().contains("m=audio 20000 RTP/AVP 8\r\n"), "{}", n.answer_sdp());
        let o = offer("m=audio 6000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000\r\n");
        assert_eq!(negotiate(&o, &local().only(Codec::Pcma)).unwrap_err(), NegotiationError::NoCommonCodec);
    }

    #[test]
    fn pcma_first_wins_and_telephone_event_at_96() {
        let n = negotiate(
            &offer(
                "m=audio 40000 RTP/AVP 8 0 96",
                "a=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\n",
            ),
            &local(),
        )
        .unwrap();
        assert_eq!((n.codec, n.codec_payload_type, n.telephone_event_payload_type), (Codec::Pcma, 8, Some(96)));
        let sdp = n.answer_sdp();
        assert!(sdp.contains("m=audio 20000 RTP/AVP 8 96\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n"), "{sdp}");
        assert!(!sdp.contains("101"));
    }

    #[test]
    fn caller_preference_order_and_static_types_without_rtpmap() {
        let n = negotiate(&offer("m=audio 4000 RTP/AVP 18 0 8 101", "a=rtpmap:101 telephone-event/8000\r\n"), &local())
            .unwrap();
        assert_eq!((n.codec, n.telephone_event_payload_type), (Codec::Pcmu, Some(101)));
    }

    #[test]
    fn no_g711_is_488() {
        let err = negotiate(&offer("m=audio 4000 RTP/AVP 18 9", "a=rtpmap:9 G722/8000\r\n"), &local()).unwrap_err();
        assert_eq!((err.clone(), err.status_code()), (NegotiationError::NoCommonCodec, 488));
        let err = negotiate(&offer("m=video 4000 RTP/AVP 31", ""), &local()).unwrap_err();
        assert_eq!((err.clone(), err.status_code()), (NegotiationError::NoAudio, 488));
        let err = negotiate(&offer("m=audio 4000 RTP/SAVP 0", ""), &local()).unwrap_err();
        assert_eq!(err, NegotiationError::NoAudio);
    }

    #[test]
    fn hold_reinvite_sendonly_answered_recvonly_with_new_version() {
        let mut l = local();
        negotiate(&offer("m=audio 6000 RTP/AVP 0", ""), &l).unwrap();
        l.bump_version();
        let n = negotiate(&offer("m=audio 6000 RTP/AVP 0", "a=sendonly\r\n"), &l).unwrap();
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(!n.we_send());
        let sdp = n.answer_sdp();
        assert!(sdp.contains("o=helpline 777 778 IN IP4"), "{sdp}");
        assert!(sdp.contains("a=recvonly\r\n"));
        let n = negotiate(&offer("m=audio 6000 RTP/AVP 0", "a=inactive\r\n"), &l).unwrap();
        assert_eq!(n.direction, Direction::Inactive);
        let text = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
        let n = negotiate(&SessionDescription::parse(text.as_bytes()).unwrap(), &l).unwrap();
        assert_eq!(n.remote_rtp, None, "RFC 2543 hold");
    }

    #[test]
    fn bad_sdp_body_is_400() {
        let err = negotiate_body(b"hello", &local()).unwrap_err();
        assert_eq!((err.status_code(), err.reason_phrase()), (400, "Malformed SDP"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_body(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = negotiate_body(&body, &local());
        }

        #[test]
        fn never_panics_on_sdp_like_lines(lines in proptest::collection::vec("[vocstmab]=[ -~]{0,40}", 0..20)) {
            let body = format!("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n{}", lines.join("\r\n"));
            if let Ok(n) = negotiate_body(body.as_bytes(), &local()) {
                let again = SessionDescription::parse(n.answer_sdp().as_bytes());
                proptest::prop_assert_eq!(again, Ok(n.answer));
            }
        }
    }

    #[test]
    fn extra_streams_declined_with_port_zero() {
        let text = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=audio 6000 RTP/AVP 0\r\n";
        let n = negotiate(&SessionDescription::parse(text.as_bytes()).unwrap(), &local()).unwrap();
        let sdp = n.answer_sdp();
        assert!(sdp.contains("m=video 0 RTP/AVP 96\r\nm=audio 20000 RTP/AVP 0\r\n"), "{sdp}");
    }
}
