//! The SIP edge's admission checks, made before a request reaches the transaction layer (so a
//! refused request leaves no transaction behind and its answer is sent once, never
//! retransmitted) and before any RTP port or call row is taken:
//!
//! - who may send at all: `sip_allow`, CIDRs of the trunks and proxies (empty: anyone) → `403`;
//! - how many new INVITEs a second a source may send: `sip_rate`, a token bucket per source
//!   address → `503` with `Retry-After`;
//! - how many calls this node holds at once: `sip_max_calls` → `503` with `Retry-After`;
//! - how big a datagram may be ([`MAX_MESSAGE`]) and how many server transactions may be live
//!   ([`MAX_TRANSACTIONS`]).
//!
//! Pure: the time is passed in, nothing here touches a socket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The largest SIP datagram handled; larger ones are dropped and counted (`513` when they parse
/// as a request). INVITEs from trunks are 1-3 KB; 8 KiB leaves room for long Via/Record-Route
/// chains.
pub const MAX_MESSAGE: usize = 8 * 1024;
/// Live server transactions at most (each is kept up to 32 s after its answer, RFC 3261's
/// Timer J and RFC 6026's Accepted state); past it new requests get a stateless `503`.
pub const MAX_TRANSACTIONS: usize = 16 * 1024;
/// Live server transactions of one source address at most: a trunk at 100 calls a second keeps
/// about 6,400 (INVITEs and BYEs, 32 s each); an OPTIONS flood with unique branches stops here.
pub const MAX_TRANSACTIONS_PER_SOURCE: usize = 8 * 1024;

/// The group of a source address for counting its transactions: the IP without the port.
pub fn source_group(peer: &std::net::SocketAddr) -> u64 {
    match peer.ip() {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            (bits >> 64) as u64 ^ bits as u64 ^ (1 << 63)
        }
    }
}
/// Sources whose rate is tracked at once; past it the full buckets are forgotten (at most once
/// a second), and an unknown source is refused until room is made.
const MAX_SOURCES: usize = 64 * 1024;

/// Why the settings of the SIP edge are wrong.
#[derive(Debug, thiserror::Error)]
#[error("HELPLINE_SIP_ALLOW: {entry:?} is not an IP address or CIDR (e.g. 192.0.2.0/24, 2001:db8::/32)")]
pub struct AllowError {
    entry: String,
}

/// One allowed network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.trim(), Some(p.trim())),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr { net, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 source on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `sip_allow`: the networks that may send SIP; empty allows every source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<Cidr>);

impl AllowList {
    /// Comma-separated addresses or CIDRs; blanks are ignored.
    pub fn parse(s: &str) -> Result<AllowList, AllowError> {
        s.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| Cidr::parse(e).ok_or_else(|| AllowError { entry: e.to_owned() }))
            .collect::<Result<Vec<_>, _>>()
            .map(AllowList)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        self.0.is_empty() || self.0.iter().any(|c| c.contains(ip))
    }
}

/// What the edge says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// Not in `sip_allow`: `403`.
    Forbidden,
    /// Over `sip_rate`: `503`, try again after this many seconds.
    RateLimited {
        retry_after: u32,
    },
    /// `sip_max_calls` calls are up: `503`.
    Busy {
        retry_after: u32,
    },
}

impl Verdict {
    /// The metric label of a refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Admit => "admitted",
            Verdict::Forbidden => "forbidden",
            Verdict::RateLimited { .. } => "rate",
            Verdict::Busy { .. } => "max_calls",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The admission state of one SIP server.
#[derive(Debug)]
pub struct Admission {
    allow: AllowList,
    /// New INVITEs per second per source; 0: no limit.
    rate: u32,
    /// Calls at once; 0: no limit.
    max_calls: usize,
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

impl Admission {
    pub fn new(allow: AllowList, rate: u32, max_calls: usize) -> Admission {
        Admission { allow, rate, max_calls, buckets: HashMap::new(), last_sweep: None }
    }

    /// Whether `source` may send SIP at all.
    pub fn permits(&self, source: IpAddr) -> bool {
        self.allow.permits(source)
    }

    /// A new INVITE (not a retransmission, not in a dialog) from `source` while `calls_up` calls
    /// are held.
    pub fn admit_invite(&mut self, source: IpAddr, calls_up: usize, now: Instant) -> Verdict {
        if !self.allow.permits(source) {
            return Verdict::Forbidden;
        }
        if self.max_calls > 0 && calls_up >= self.max_calls {
            return Verdict::Busy { retry_after: 5 };
        }
        if self.rate == 0 {
            return Verdict::Admit;
        }
        let rate = f64::from(self.rate);
        // The bucket holds one second of calls: a trunk's burst passes, a flood does not.
        let capacity = rate.max(1.0);
        if !self.buckets.contains_key(&source) && self.buckets.len() >= MAX_SOURCES {
            self.sweep(now, rate, capacity);
            if self.buckets.len() >= MAX_SOURCES {
                return Verdict::RateLimited { retry_after: 1 };
            }
        }
        let bucket = self.buckets.entry(source).or_insert(Bucket { tokens: capacity, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Verdict::Admit
        } else {
            let wait = (1.0 - bucket.tokens) / rate;
            Verdict::RateLimited { retry_after: (wait.ceil() as u32).max(1) }
        }
    }

    /// Forgets the sources whose bucket has refilled (they start full again anyway).
    fn sweep(&mut self, now: Instant, rate: f64, capacity: f64) {
        if self.last_sweep.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1)) {
            return;
        }
        self.last_sweep = Some(now);
        self.buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < capacity);
    }

    /// Sources tracked (for tests: bounded).
    pub fn tracked_sources(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn allow_lists_match_their_networks_only() {
        let allow = AllowList::parse(" 192.0.2.0/24, 10.1.2.3 ,2001:db8::/32,").unwrap();
        assert!(allow.permits(ip("192.0.2.77")));
        assert!(allow.permits(ip("::ffff:192.0.2.1")), "IPv4-mapped sources match IPv4 networks");
        assert!(!allow.permits(ip("192.0.3.1")));
        assert!(allow.permits(ip("10.1.2.3")));
        assert!(!allow.permits(ip("10.1.2.4")));
        assert!(allow.permits(ip("2001:db8:ffff::1")));
        assert!(!allow.permits(ip("2001:db9::1")));
        assert!(AllowList::parse("").unwrap().permits(ip("203.0.113.9")), "empty allows anyone");
        assert!(AllowList::parse("0.0.0.0/0").unwrap().permits(ip("203.0.113.9")));
        for bad in ["10.0.0.0/33", "example.org", "10.0.0/8", "::/129", "1.2.3.4/x"] {
            let err = AllowList::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("HELPLINE_SIP_ALLOW:") && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn the_rate_is_a_token_bucket_per_source() {
        let t0 = Instant::now();
        let mut a = Admission::new(AllowList::default(), 5, 0);
        for _ in 0..5 {
            assert_eq!(a.admit_invite(ip("192.0.2.1"), 0, t0), Verdict::Admit);
        }
        assert_eq!(a.admit_invite(ip("192.0.2.1"), 0, t0), Verdict::RateLimited { retry_after: 1 });
        assert_eq!(a.admit_invite(ip("192.0.2.2"), 0, t0), Verdict::Admit, "another source has its own bucket");
        // 200 ms later one token has come back, and only one.
        let t1 = t0 + Duration::from_millis(200);
        assert_eq!(a.admit_invite(ip("192.0.2.1"), 0, t1), Verdict::Admit);
        assert!(matches!(a.admit_invite(ip("192.0.2.1"), 0, t1), Verdict::RateLimited { .. }));
        // A long pause refills to the capacity, not beyond it.
        let t2 = t1 + Duration::from_secs(60);
        let admitted = (0..20).filter(|_| a.admit_invite(ip("192.0.2.1"), 0, t2) == Verdict::Admit).count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn forbidden_before_busy_before_rate() {
        let t0 = Instant::now();
        let mut a = Admission::new(AllowList::parse("192.0.2.0/24").unwrap(), 1, 2);
        assert_eq!(a.admit_invite(ip("198.51.100.1"), 0, t0), Verdict::Forbidden);
        assert_eq!(a.admit_invite(ip("192.0.2.1"), 2, t0), Verdict::Busy { retry_after: 5 });
        assert_eq!(a.admit_invite(ip("192.0.2.1"), 1, t0), Verdict::Admit);
        assert!(matches!(a.admit_invite(ip("192.0.2.1"), 1, t0), Verdict::RateLimited { .. }));
        assert_eq!(a.tracked_sources(), 1, "refused sources take no bucket");
    }

    #[test]
    fn tracked_sources_stay_bounded_under_spoofed_addresses() {
        let t0 = Instant::now();
        let mut a = Admission::new(AllowList::default(), 1, 0);
        for i in 0..(MAX_SOURCES as u32 + 1000) {
            a.admit_invite(IpAddr::from((0x0A00_0000u32 + i).to_be_bytes()), 0, t0);
        }
        assert_eq!(a.tracked_sources(), MAX_SOURCES);
        // Two seconds on, every bucket is full again: the next new source makes room.
        assert_eq!(a.admit_invite(ip("192.0.2.1"), 0, t0 + Duration::from_secs(2)), Verdict::Admit);
        assert_eq!(a.tracked_sources(), 1);
    }
}
