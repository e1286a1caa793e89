//! The SDP session description (RFC 4566 §5): the lines we read and write, kept as a typed model
//! with a tolerant parser (unknown lines and attributes are kept aside, never an error).

use std::fmt::Write as _;
use std::net::IpAddr;

/// Why an SDP body is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP is not UTF-8 text")]
    NotUtf8,
    #[error("SDP does not start with v=0")]
    BadVersion,
    #[error("malformed SDP line {0:?}")]
    BadLine(String),
    #[error("missing o= line")]
    MissingOrigin,
    #[error("malformed {0} line")]
    Malformed(&'static str),
}

/// `o=<username> <sess-id> <sess-version> IN IP4 <address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: u64,
    pub session_version: u64,
    pub address_type: String,
    pub address: String,
}

/// `c=IN IP4 <address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub address_type: String,
    /// The address without a TTL/count suffix; `None` if it is a host name we do not resolve.
    pub address: Option<IpAddr>,
}

/// `a=sendrecv|sendonly|recvonly|inactive` (RFC 4566 §6; sendrecv when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attr(a: &str) -> Option<Direction> {
        Some(match a {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answer takes for this offered direction (RFC 3264 §6.1).
    pub fn mirrored(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u8>,
}

/// One `m=` section with the attributes we understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, …
    pub media: String,
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, …
    pub protocol: String,
    /// Formats in the offerer's order of preference (payload type numbers for RTP).
    pub formats: Vec<String>,
    pub connection: Option<Connection>,
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp:<pt> <params>`.
    pub fmtps: Vec<(u8, String)>,
    pub direction: Option<Direction>,
    pub ptime: Option<u32>,
    /// Other `a=` lines, verbatim (without `a=`).
    pub other_attributes: Vec<String>,
}

impl MediaDescription {
    /// The rtpmap of payload type `pt`, if present.
    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.payload_type == pt)
    }
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    pub connection: Option<Connection>,
    /// Session-level direction attribute, the default for every media section.
    pub direction: Option<Direction>,
    pub media: Vec<MediaDescription>,
}

fn parse_connection(v: &str) -> Result<Connection, SdpError> {
    let mut it = v.split_ascii_whitespace();
    let (net, addr_type, addr) = (it.next(), it.next(), it.next());
    match (net, addr_type, addr) {
        (Some("IN"), Some(t), Some(a)) => {
            let a = a.split('/').next().unwrap_or_default();
            Ok(Connection { address_type: t.to_owned(), address: a.parse().ok() })
        }
        _ => Err(SdpError::Malformed("c=")),
    }
}

impl SessionDescription {
    /// Parses an SDP body. Lines may end in CRLF or LF; unknown line types are skipped.
    pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        let mut lines = text.lines().map(str::trim_end).filter(|l| !l.is_empty());
        if lines.next() != Some("v=0") {
            return Err(SdpError::BadVersion);
        }
        let mut origin = None;
        let mut session_name = String::new();
        let mut connection = None;
        let mut direction = None;
        let mut media: Vec<MediaDescription> = Vec::new();
        for line in lines {
            let (kind, value) = match line.split_once('=') {
                Some((k, v)) if k.len() == 1 => (k, v),
                _ => return Err(SdpError::BadLine(line.chars().take(80).collect())),
            };
            match (kind, media.last_mut()) {
                ("o", None) => {
                    let f: Vec<&str> = value.split_ascii_whitespace().collect();
                    let [user, id, version, "IN", addr_type, address] = f[..] else {
                        return Err(SdpError::Malformed("o="));
                    };
                    origin = Some(Origin {
                        username: user.to_owned(),
                        session_id: id.parse().map_err(|_| SdpError::Malformed("o="))?,
                        session_version: version.parse().map_err(|_| SdpError::Malformed("o="))?,
                        address_type: addr_type.to_owned(),
                        address: address.to_owned(),
                    });
                }
                ("s", None) => session_name = value.to_owned(),
                ("c", None) => connection = Some(parse_connection(value)?),
                ("c", Some(m)) => m.connection = Some(parse_connection(value)?),
                ("m", _) => {
                    let mut it = value.split_ascii_whitespace();
                    let kind = it.next().ok_or(SdpError::Malformed("m="))?;
                    let port = it.next().ok_or(SdpError::Malformed("m="))?;
                    let port = port.split('/').next().unwrap_or_default();
                    let protocol = it.next().ok_or(SdpError::Malformed("m="))?;
                    media.push(MediaDescription {
                        media: kind.to_owned(),
                        port: port.parse().map_err(|_| SdpError::Malformed("m="))?,
                        protocol: protocol.to_owned(),
                        formats: it.map(str::to_owned).collect(),
                        connection: None,
                        rtpmaps: Vec::new(),
                        fmtps: Vec::new(),
                        direction: None,
                        ptime: None,
                        other_attributes: Vec::new(),
                    });
                }
                ("a", None) => {
                    if let Some(d) = Direction::from_attr(value) {
                        direction = Some(d);
                    }
                }
                ("a", Some(m)) => parse_media_attribute(m, value)?,
                _ => {}
            }
        }
        Ok(SessionDescription {
            origin: origin.ok_or(SdpError::MissingOrigin)?,
            session_name,
            connection,
            direction,
            media,
        })
    }

    /// The SDP text, CRLF line ends, in RFC 4566 order.
    pub fn to_sdp(&self) -> String {
        let mut s = String::new();
        let o = &self.origin;
        let _ = write!(
            s,
            "v=0\r\no={} {} {} IN {} {}\r\ns={}\r\n",
            o.username,
            o.session_id,
            o.session_version,
            o.address_type,
            o.address,
            if self.session_name.is_empty() { "-" } else { &self.session_name }
        );
        let write_c = |s: &mut String, c: &Connection| {
            let addr = c.address.map(|a| a.to_string()).unwrap_or_else(|| "0.0.0.0".into());
            let _ = write!(s, "c=IN {} {addr}\r\n", c.address_type);
        };
        if let Some(c) = &self.connection {
            write_c(&mut s, c);
        }
        s.push_str("t=0 0\r\n");
        if let Some(d) = self.direction {
            let _ = write!(s, "a={}\r\n", d.as_str());
        }
        for m in &self.media {
            let _ = write!(s, "m={} {} {}", m.media, m.port, m.protocol);
            for f in &m.formats {
                let _ = write!(s, " {f}");
            }
            s.push_str("\r\n");
            if let Some(c) = &m.connection {
                write_c(&mut s, c);
            }
            for r in &m.rtpmaps {
                let _ = write!(s, "a=rtpmap:{} {}/{}", r.payload_type, r.encoding, r.clock_rate);
                if let Some(ch) = r.channels {
                    let _ = write!(s, "/{ch}");
                }
                s.push_str("\r\n");
            }
            for (pt, p) in &m.fmtps {
                let _ = write!(s, "a=fmtp:{pt} {p}\r\n");
            }
            if let Some(p) = m.ptime {
                let _ = write!(s, "a=ptime:{p}\r\n");
            }
            for a in &m.other_attributes {
                let _ = write!(s, "a={a}\r\n");
            }
            if let Some(d) = m.direction {
                let _ = write!(s, "a={}\r\n", d.as_str());
            }
        }
        s
    }
}

fn parse_media_attribute(m: &mut MediaDescription, value: &str) -> Result<(), SdpError> {
    if let Some(d) = Direction::from_attr(value) {
        m.direction = Some(d);
    } else if let Some(v) = value.strip_prefix("rtpmap:") {
        let (pt, rest) = v.split_once(' ').ok_or(SdpError::Malformed("a=rtpmap"))?;
        let mut parts = rest.trim().split('/');
        let encoding = parts.next().unwrap_or_default();
        let clock_rate = parts.next().and_then(|c| c.parse().ok());
        let channels = parts.next().and_then(|c| c.parse().ok());
        match (pt.parse::<u8>(), clock_rate) {
            (Ok(pt), Some(clock_rate)) if pt < 128 && !encoding.is_empty() => {
                m.rtpmaps.push(RtpMap { payload_type: pt, encoding: encoding.to_owned(), clock_rate, channels })
            }
            _ => return Err(SdpError::Malformed("a=rtpmap")),
        }
    } else if let Some(v) = value.strip_prefix("fmtp:") {
        let (pt, params) = v.split_once(' ').unwrap_or((v, ""));
        let pt = pt.parse::<u8>().map_err(|_| SdpError::Malformed("a=fmtp"))?;
        m.fmtps.push((pt, params.trim().to_owned()));
    } else if let Some(v) = value.strip_prefix("ptime:") {
        m.ptime = v.trim().parse().ok();
    } else {
        m.other_attributes.push(value.to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const OFFER: &str = "v=0\r\no=- 3917 3917 IN IP4 192.0.2.10\r\ns=call\r\nc=IN IP4 192.0.2.10\r\n\
t=0 0\r\nm=audio 40000 RTP/AVP 8 0 96\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\na=ptime:20\r\na=sendrecv\r\na=rtcp:40001\r\n";

    #[test]
    fn parses_offer() {
        let sd = SessionDescription::parse(OFFER.as_bytes()).unwrap();
        assert_eq!(sd.origin.session_id, 3917);
        assert_eq!(sd.connection.as_ref().unwrap().address, Some("192.0.2.10".parse().unwrap()));
        let m = &sd.media[0];
        assert_eq!((m.media.as_str(), m.port, m.protocol.as_str()), ("audio", 40000, "RTP/AVP"));
        assert_eq!(m.formats, ["8", "0", "96"]);
        assert_eq!(m.rtpmap(96).unwrap().encoding, "telephone-event");
        assert_eq!(m.fmtps, [(96, "0-16".to_owned())]);
        assert_eq!((m.ptime, m.direction), (Some(20), Some(Direction::SendRecv)));
        assert_eq!(m.other_attributes, ["rtcp:40001"]);
        let again = SessionDescription::parse(sd.to_sdp().as_bytes()).unwrap();
        assert_eq!(again, sd);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(SessionDescription::parse(b"v=1\r\n"), Err(SdpError::BadVersion));
        assert_eq!(SessionDescription::parse(b"v=0\r\ns=x\r\n"), Err(SdpError::MissingOrigin));
        assert_eq!(SessionDescription::parse(b"v=0\r\nhello\r\n"), Err(SdpError::BadLine("hello".into())));
        assert_eq!(
            SessionDescription::parse(b"v=0\r\no=a 1 1 IN IP4 h\r\nm=audio x RTP/AVP 0\r\n"),
            Err(SdpError::Malformed("m="))
        );
        assert_eq!(SessionDescription::parse(b"\xff"), Err(SdpError::NotUtf8));
    }
}
