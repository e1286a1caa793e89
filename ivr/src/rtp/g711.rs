//! G.711 μ-law and A-law companding (ITU-T G.711), by the bit manipulations of the reference
//! implementation: 16-bit linear PCM in, one byte per sample out, and back.

use crate::sdp::Codec;

/// Encodes one 16-bit linear sample as μ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84 >> 2;
    const CLIP: i32 = 8159;
    let mut pcm = i32::from(sample) >> 2; // 14-bit magnitude range
    let mask: u8 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    pcm = pcm.min(CLIP) + BIAS;
    // Segment: the first s with pcm <= (0x40 << s) - 1 (pcm is in 33..=8192).
    let seg = (0..8).find(|s| pcm < (0x40 << s)).unwrap_or(8);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let uval = (seg << 4) | ((pcm >> (seg + 1)) & 0x0F);
    (uval as u8) ^ mask
}

/// Decodes one μ-law byte to 16-bit linear.
pub fn ulaw_to_linear(code: u8) -> i16 {
    const BIAS: i32 = 0x84;
    let u = !code;
    let mut t = (i32::from(u & 0x0F) << 3) + BIAS;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 { BIAS - t } else { t - BIAS }) as i16
}

/// Encodes one 16-bit linear sample as A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample) >> 3; // 13-bit range
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let seg = (0..8).find(|s| pcm < (0x20 << s)).unwrap_or(8);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mut aval = seg << 4;
    aval |= if seg < 2 { (pcm >> 1) & 0x0F } else { (pcm >> seg) & 0x0F };
    (aval as u8) ^ mask
}

/// Decodes one A-law byte to 16-bit linear.
pub fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = i32::from(a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// Encodes samples with `codec`.
pub fn encode(codec: Codec, samples: &[i16]) -> Vec<u8> {
    let f = match codec {
        Codec::Pcmu => linear_to_ulaw,
        Codec::Pcma => linear_to_alaw,
    };
    samples.iter().map(|s| f(*s)).collect()
}

/// The code of a zero sample (digital silence): 0xFF in μ-law, 0xD5 in A-law.
pub fn silence(codec: Codec) -> u8 {
    match codec {
        Codec::Pcmu => linear_to_ulaw(0),
        Codec::Pcma => linear_to_alaw(0),
    }
}

/// Decodes bytes with `codec`.
pub fn decode(codec: Codec, bytes: &[u8]) -> Vec<i16> {
    let f = match codec {
        Codec::Pcmu => ulaw_to_linear,
        Codec::Pcma => alaw_to_linear,
    };
    bytes.iter().map(|b| f(*b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(linear_to_ulaw(-8), 0x7E);
        assert_eq!(linear_to_ulaw(1000), 0xCE);
        assert_eq!(linear_to_alaw(1000), 0xFA);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(code)), code, "A-law {code:#04x}");
            if code != 0x7F {
                // 0x7F is μ-law's negative zero; it decodes to 0, which encodes as 0xFF.
                assert_eq!(linear_to_ulaw(ulaw_to_linear(code)), code, "μ-law {code:#04x}");
            }
        }
    }

    #[test]
    fn round_trip_error_is_within_one_quantization_step() {
        for x in (i16::MIN..=i16::MAX).step_by(7) {
            let bound = (i32::from(x).abs() / 16).max(16);
            let eu = (i32::from(ulaw_to_linear(linear_to_ulaw(x))) - i32::from(x)).abs();
            let ea = (i32::from(alaw_to_linear(linear_to_alaw(x))) - i32::from(x)).abs();
            assert!(eu <= bound, "μ-law {x}: error {eu}");
            assert!(ea <= bound, "A-law {x}: error {ea}");
        }
    }

    #[test]
    fn decoding_is_monotonic() {
        let mu: Vec<i16> = (0..128u8).rev().map(|c| ulaw_to_linear(c | 0x80)).collect();
        assert!(mu.windows(2).all(|w| w[0] < w[1]));
        let a: Vec<i16> = (0..128u8).map(|c| alaw_to_linear((c | 0x80) ^ 0x55)).collect();
        assert!(a.windows(2).all(|w| w[0] < w[1]), "{a:?}");
    }
}
