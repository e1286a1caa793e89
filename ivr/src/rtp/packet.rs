//! The RTP fixed header (RFC 3550 §5.1): encode what we send, decode what we receive while
//! tolerating CSRCs, header extensions (§5.3.1) and padding.

/// Why a datagram is not an RTP packet we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("packet shorter than its header ({0} bytes)")]
    TooShort(usize),
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("padding length larger than the payload")]
    BadPadding,
}

/// The RTP header fields (version is always 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrcs: Vec<u32>,
}

/// A decoded packet borrowing its payload from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    /// The payload without header, extension and padding.
    pub payload: &'a [u8],
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

impl<'a> RtpPacket<'a> {
    /// Decodes one datagram.
    pub fn decode(data: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        let short = || RtpError::TooShort(data.len());
        if data.len() < 12 {
            return Err(short());
        }
        let version = data[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let padding = data[0] & 0x20 != 0;
        let extension = data[0] & 0x10 != 0;
        let cc = usize::from(data[0] & 0x0F);
        let mut offset = 12 + 4 * cc;
        if data.len() < offset {
            return Err(short());
        }
        let csrcs = (0..cc).filter_map(|i| be32(data, 12 + 4 * i)).collect();
        if extension {
            let len_words = data.get(offset + 2..offset + 4).ok_or_else(short)?;
            let len = usize::from(u16::from_be_bytes([len_words[0], len_words[1]]));
            offset += 4 + 4 * len;
            if data.len() < offset {
                return Err(short());
            }
        }
        let mut end = data.len();
        if padding {
            let pad = usize::from(data[end - 1]);
            if pad == 0 || end - offset < pad {
                return Err(RtpError::BadPadding);
            }
            end -= pad;
        }
        Ok(RtpPacket {
            header: RtpHeader {
                marker: data[1] & 0x80 != 0,
                payload_type: data[1] & 0x7F,
                sequence: u16::from_be_bytes([data[2], data[3]]),
                timestamp: be32(data, 4).ok_or_else(short)?,
                ssrc: be32(data, 8).ok_or_else(short)?,
                csrcs,
            },
            payload: &data[offset..end],
        })
    }
}

impl RtpHeader {
    /// Encodes the header (no padding, no extension; at most 15 CSRCs) followed by `payload`.
    pub fn encode(&self, payload: &[u8]) -> Vec<u8> {
        let csrcs = &self.csrcs[..self.csrcs.len().min(15)];
        let mut out = Vec::with_capacity(12 + 4 * csrcs.len() + payload.len());
        out.push(0x80 | csrcs.len() as u8);
        out.push(if self.marker { 0x80 } else { 0 } | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for c in csrcs {
            out.extend_from_slice(&c.to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 65535,
            timestamp: 0xDEADBEEF,
            ssrc: 7,
            csrcs: vec![1, 2],
        };
        let bytes = h.encode(&[1, 2, 3]);
        assert_eq!(bytes[0], 0x82);
        assert_eq!(bytes[1], 0x88);
        let p = RtpPacket::decode(&bytes).unwrap();
        assert_eq!((p.header, p.payload), (h, &[1u8, 2, 3][..]));
    }

    #[test]
    fn tolerates_extension_and_padding() {
        let mut b = vec![0xB0, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
        b.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0]); // one-word extension
        b.extend_from_slice(&[0xFF, 0xFF, 0, 0, 3]); // payload + 3 bytes of padding
        let p = RtpPacket::decode(&b).unwrap();
        assert_eq!(p.payload, &[0xFF, 0xFF]);
        assert_eq!((p.header.sequence, p.header.timestamp, p.header.ssrc), (1, 160, 9));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics_and_reencodes(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Ok(p) = RtpPacket::decode(&data) {
                if p.header.csrcs.len() < 16 {
                    let bytes = p.header.encode(p.payload);
                    let again = RtpPacket::decode(&bytes).unwrap();
                    proptest::prop_assert_eq!(again, p);
                }
            }
        }
    }

    #[test]
    fn rejects_bad_packets() {
        assert_eq!(RtpPacket::decode(&[0x80; 5]), Err(RtpError::TooShort(5)));
        assert_eq!(RtpPacket::decode(&[0x40; 12]), Err(RtpError::BadVersion(1)));
        let mut b = vec![0xA0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9];
        assert_eq!(RtpPacket::decode(&b), Err(RtpError::BadPadding));
        b[12] = 0;
        assert_eq!(RtpPacket::decode(&b), Err(RtpError::BadPadding));
        assert_eq!(RtpPacket::decode(&[0x8F, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]), Err(RtpError::TooShort(12)));
        assert_eq!(
            RtpPacket::decode(&[0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5]),
            Err(RtpError::TooShort(16))
        );
    }
}
