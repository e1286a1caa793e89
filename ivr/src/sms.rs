//! How a text message goes over the air: in the GSM 7-bit default alphabet (3GPP TS 23.038) when
//! every character is in it, else in UCS-2; and in how many segments. A single message carries
//! 160 GSM-7 septets or 70 UCS-2 units; a longer one is split into concatenated segments whose
//! user-data header leaves 153 septets or 67 units each. A character of the GSM-7 extension table
//! (`€`, `[`, `{`, …) takes two septets (escape and code) and is never split between segments;
//! nor is a UTF-16 surrogate pair (an emoji, a rare CJK character).
//!
//! Pure: the server uses it to log the segment count and encoding of each message it sends
//! (the carrier or trunk does the encoding itself).

use serde::{Deserialize, Serialize};

/// The alphabet a message is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }
}

/// What a text costs to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub encoding: Encoding,
    /// Segments (1 for a text that fits one message; 0 for an empty text).
    pub segments: u32,
    /// Septets (GSM-7) or UTF-16 units (UCS-2) in all.
    pub units: u32,
}

/// The GSM 7-bit default alphabet, but the escape (0x1B).
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                     ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The default alphabet's extension table: each is an escape and a code, two septets.
const EXTENSION: &str = "\u{0C}^{}\\[~]|€";

/// Septets of `c` in GSM-7, or `None` when it is not in the alphabet.
fn septets(c: char) -> Option<u32> {
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Whether the whole text can go in GSM-7.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| septets(c).is_some())
}

/// Segments of `costs` (each character's units, never split) packed `per` to a segment.
fn pack(costs: impl Iterator<Item = u32>, per: u32) -> u32 {
    let (mut segments, mut used) = (1, 0);
    for cost in costs {
        if used + cost > per {
            segments += 1;
            used = 0;
        }
        used += cost;
    }
    segments
}

/// The encoding and the number of segments of `text`.
pub fn plan(text: &str) -> Plan {
    let (encoding, single, multi, costs): (_, u32, u32, Vec<u32>) = if is_gsm7(text) {
        (Encoding::Gsm7, 160, 153, text.chars().filter_map(septets).collect())
    } else {
        (Encoding::Ucs2, 70, 67, text.chars().map(|c| c.len_utf16() as u32).collect())
    };
    let units = costs.iter().sum();
    let segments = match units {
        0 => 0,
        u if u <= single => 1,
        _ => pack(costs.into_iter(), multi),
    };
    Plan { encoding, segments, units }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_has_127_characters_and_10_extensions() {
        assert_eq!(BASIC.chars().count(), 127);
        assert_eq!(EXTENSION.chars().count(), 10);
    }

    #[test]
    fn plain_italian_goes_in_gsm7_one_segment_up_to_160() {
        let text = "Sportello immigrati, via Roma 1, Como. Tel 031 123456. Oggi 9-13. perché è così";
        let p = plan(text);
        assert_eq!(p.encoding, Encoding::Gsm7);
        assert_eq!((p.segments, p.units), (1, text.chars().count() as u32));
        assert_eq!(plan(&"a".repeat(160)).segments, 1);
        assert_eq!(plan(&"a".repeat(161)).segments, 2);
        assert_eq!(plan(&"a".repeat(306)).segments, 2);
        assert_eq!(plan(&"a".repeat(307)).segments, 3);
    }

    #[test]
    fn extension_characters_take_two_septets_and_are_never_split() {
        assert_eq!(plan("€").units, 2);
        assert_eq!(plan(&"€".repeat(80)).segments, 1, "160 septets");
        assert_eq!(plan(&"€".repeat(81)).segments, 2);
        // 152 septets, then a two-septet euro that does not fit the first segment's last septet.
        let p = plan(&format!("{}€", "a".repeat(152)));
        assert_eq!((p.units, p.segments), (154, 1), "fits the single message");
        let p = plan(&format!("{}€{}", "a".repeat(152), "a".repeat(10)));
        assert_eq!((p.units, p.segments), (164, 2));
        let p = plan(&format!("{}€{}", "a".repeat(152), "a".repeat(152)));
        assert_eq!((p.units, p.segments), (306, 3), "the euro moves to the second segment, which then overflows");
    }

    #[test]
    fn arabic_chinese_and_a_capital_e_grave_need_ucs2() {
        let arabic = "مكتب الهجرة، شارع روما ١، كومو. هاتف ٠٣١ ١٢٣٤٥٦";
        let p = plan(arabic);
        assert_eq!(p.encoding, Encoding::Ucs2);
        assert_eq!(p.units, arabic.chars().count() as u32);
        assert_eq!(p.segments, 1);
        let chinese = "移民服务处，罗马路1号，科莫。电话031 123456。今天9点到13点。".repeat(3);
        let p = plan(&chinese);
        assert_eq!(p.encoding, Encoding::Ucs2);
        assert_eq!(p.segments, p.units.div_ceil(67), "{p:?}");
        assert!(p.segments >= 2);
        assert_eq!(plan("È aperto").encoding, Encoding::Ucs2);
    }

    #[test]
    fn a_surrogate_pair_counts_two_units_and_is_not_split() {
        let p = plan(&format!("{}😀", "ж".repeat(69)));
        assert_eq!((p.units, p.segments), (71, 2));
        let p = plan(&format!("{}😀{}", "ж".repeat(66), "ж".repeat(10)));
        assert_eq!((p.units, p.segments), (78, 2), "the pair starts the second segment");
    }

    #[test]
    fn an_empty_text_is_no_segment() {
        assert_eq!(plan("").segments, 0);
    }
}
