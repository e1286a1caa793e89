//! Tags, branches and Call-IDs we generate (RFC 3261 §19.3, §8.1.1.7). Pure: the server seeds the
//! generator once from its random source at start-up, so this code needs no RNG of its own.

use super::header_values::BRANCH_MAGIC_COOKIE;

/// A SplitMix64 stream: fast, well mixed, and deterministic for tests. With a seed from a CSPRNG
/// its outputs are unguessable enough for tags and branches (RFC 3261 asks for 32 random bits).
#[derive(Debug, Clone)]
pub struct IdGen {
    state: u64,
}

impl IdGen {
    pub fn new(seed: u64) -> IdGen {
        IdGen { state: seed }
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A From/To tag: 16 hex digits.
    pub fn tag(&mut self) -> String {
        format!("{:016x}", self.next_u64())
    }

    /// A Via branch with the RFC 3261 magic cookie.
    pub fn branch(&mut self) -> String {
        format!("{BRANCH_MAGIC_COOKIE}{:016x}", self.next_u64())
    }

    /// A Call-ID `<hex>@<host>` for calls we originate.
    pub fn call_id(&mut self, host: &str) -> String {
        format!("{:016x}{:08x}@{host}", self.next_u64(), self.next_u64() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_well_formed() {
        let mut g = IdGen::new(42);
        let (a, b) = (g.tag(), g.tag());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(g.branch().starts_with("z9hG4bK"));
        assert!(g.call_id("10.0.0.1").ends_with("@10.0.0.1"));
    }
}
