//! The SIP edge's admission checks, made before a request reaches the transaction layer (so a
//! refused request leaves no transaction behind and its answer is sent once, never
//! retransmitted) and before any RTP port or call row is taken:
//!
//! - who may send at all: `sip_allow`, CIDRs of the trunks and proxies (empty: anyone) → `403`;
//!   with `sip_auth_user`/`sip_auth_password` set, a source outside it (any source when it is
//!   empty) may still call by digest authentication (`ivr::sip::DigestVerifier`): a new INVITE
//!   or out-of-dialog request without credentials → `401` with a challenge, wrong ones → `403`;
//! - how many new INVITEs a second a source may send: `sip_rate`, a token bucket per source
//!   address → `503` with `Retry-After`;
//! - how many other requests a second a source may send outside the calls this node holds
//!   (OPTIONS, REGISTER, MESSAGE, stray BYE/INFO…): `sip_request_rate`, another bucket → `503`;
//! - how many calls this node holds at once: `sip_max_calls` → `503` with `Retry-After`;
//! - how big a datagram may be ([`MAX_MESSAGE`]) and how many server transactions may be live
//!   ([`MAX_TRANSACTIONS`]).
//!
//! Pure: the time is passed in, nothing here touches a socket.

use ivr::sip::{DigestCheck, DigestVerifier};
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

/// What a request is to the edge (the signalling task knows the calls and dialogs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new INVITE: no To tag, and a Call-ID no call of this node has.
    NewInvite,
    /// Part of a call this node holds (its Call-ID): a retransmitted INVITE, its ACK or CANCEL,
    /// an in-dialog request.
    OfACall,
    /// An ACK for no call of this node (e.g. the ACK of a refused INVITE's final answer).
    StrayAck,
    /// Anything else. `authenticable`: outside any dialog (no To tag) and not a CANCEL, so that a
    /// digest challenge can be answered (RFC 3261 §22.1: CANCEL and ACK cannot be challenged).
    Other { authenticable: bool },
}

/// A request as the edge sees it.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub source: IpAddr,
    pub kind: Kind,
    /// The request's method (the digest answer covers it).
    pub method: &'a str,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
}

/// What the edge says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// Not in `sip_allow` (and no digest authentication configured, or a request that cannot be
    /// authenticated): `403`.
    Forbidden,
    /// Outside `sip_allow`, must authenticate: `401` with this `WWW-Authenticate`.
    Challenge(String),
    /// Wrong digest credentials: `403`.
    AuthFailed,
    /// Over `sip_rate`: `503`, try again after this many seconds.
    RateLimited {
        retry_after: u32,
    },
    /// Over `sip_request_rate`: `503`, try again after this many seconds.
    RequestRateLimited {
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
            Verdict::Challenge(_) => "unauthenticated",
            Verdict::AuthFailed => "auth_failed",
            Verdict::RateLimited { .. } => "rate",
            Verdict::RequestRateLimited { .. } => "request_rate",
            Verdict::Busy { .. } => "max_calls",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per source address, each holding one second's worth of `rate`, bounded to
/// [`MAX_SOURCES`] sources.
#[derive(Debug)]
struct Buckets {
    /// Per second; 0: no limit.
    rate: u32,
    map: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

impl Buckets {
    fn new(rate: u32) -> Buckets {
        Buckets { rate, map: HashMap::new(), last_sweep: None }
    }

    /// Takes a token of `source`'s; `Err(seconds until one is back)` when there is none.
    fn take(&mut self, source: IpAddr, now: Instant) -> Result<(), u32> {
        if self.rate == 0 {
            return Ok(());
        }
        let rate = f64::from(self.rate);
        // The bucket holds one second of requests: a trunk's burst passes, a flood does not.
        let capacity = rate.max(1.0);
        if !self.map.contains_key(&source) && self.map.len() >= MAX_SOURCES {
            self.sweep(now, rate, capacity);
            if self.map.len() >= MAX_SOURCES {
                return Err(1);
            }
        }
        let bucket = self.map.entry(source).or_insert(Bucket { tokens: capacity, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / rate;
            Err((wait.ceil() as u32).max(1))
        }
    }

    /// Forgets the sources whose bucket has refilled (they start full again anyway).
    fn sweep(&mut self, now: Instant, rate: f64, capacity: f64) {
        if self.last_sweep.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1)) {
            return;
        }
        self.last_sweep = Some(now);
        self.map.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < capacity);
    }
}

/// The admission state of one SIP server.
#[derive(Debug)]
pub struct Admission {
    allow: AllowList,
    /// Digest authentication for sources outside `allow`; `None`: they are refused.
    auth: Option<DigestVerifier>,
    /// Calls at once; 0: no limit.
    max_calls: usize,
    /// New INVITEs per second per source.
    invites: Buckets,
    /// Other requests outside this node's calls per second per source.
    requests: Buckets,
}

impl Admission {
    pub fn new(allow: AllowList, rate: u32, max_calls: usize) -> Admission {
        Admission { allow, auth: None, max_calls, invites: Buckets::new(rate), requests: Buckets::new(0) }
    }

    /// Limits the requests other than INVITE, ACK and CANCEL outside this node's calls to
    /// `rate` a second per source (0: no limit).
    pub fn with_request_rate(mut self, rate: u32) -> Admission {
        self.requests = Buckets::new(rate);
        self
    }

    /// Lets sources outside the allow-list (every source, when it is empty) in by digest
    /// authentication.
    pub fn with_digest(mut self, verifier: DigestVerifier) -> Admission {
        self.auth = Some(verifier);
        self
    }

    /// Whether `source` is let in by its address alone: in a non-empty allow-list, or anyone when
    /// the list is empty and no digest authentication is asked for.
    fn trusted(&self, source: IpAddr) -> bool {
        if self.allow.is_empty() {
            self.auth.is_none()
        } else {
            self.allow.permits(source)
        }
    }

    /// Whether `source` may send SIP at all: trusted by address, or able to authenticate.
    pub fn permits(&self, source: IpAddr) -> bool {
        self.auth.is_some() || self.allow.permits(source)
    }

    /// The verdict on a request while `calls_up` calls are held.
    pub fn admit(&mut self, req: &Arrival<'_>, calls_up: usize, now: Instant) -> Verdict {
        let trusted = self.trusted(req.source);
        if !trusted && self.auth.is_none() {
            return Verdict::Forbidden;
        }
        match req.kind {
            // The call got in; its requests follow it.
            Kind::OfACall => Verdict::Admit,
            Kind::StrayAck if trusted => Verdict::Admit,
            Kind::StrayAck => Verdict::Forbidden,
            Kind::NewInvite => {
                if !trusted && req.authorization.is_none() {
                    return self.challenge(req.source, now, false);
                }
                if self.max_calls > 0 && calls_up >= self.max_calls {
                    return Verdict::Busy { retry_after: 5 };
                }
                // A guess at the password costs a token too.
                if let Err(retry_after) = self.invites.take(req.source, now) {
                    return Verdict::RateLimited { retry_after };
                }
                if trusted {
                    Verdict::Admit
                } else {
                    self.authenticate(req, now)
                }
            }
            Kind::Other { authenticable } => {
                if let Err(retry_after) = self.requests.take(req.source, now) {
                    return Verdict::RequestRateLimited { retry_after };
                }
                match (trusted, authenticable) {
                    (true, _) => Verdict::Admit,
                    (false, false) => Verdict::Forbidden,
                    (false, true) => self.authenticate(req, now),
                }
            }
        }
    }

    fn authenticate(&mut self, req: &Arrival<'_>, now: Instant) -> Verdict {
        let Some(auth) = self.auth.as_mut() else { return Verdict::Forbidden };
        match auth.verify(req.authorization, req.method, req.source, now) {
            DigestCheck::Authenticated => Verdict::Admit,
            DigestCheck::Challenge { stale } => self.challenge(req.source, now, stale),
            DigestCheck::Failed => Verdict::AuthFailed,
        }
    }

    fn challenge(&mut self, source: IpAddr, now: Instant, stale: bool) -> Verdict {
        match self.auth.as_mut() {
            Some(auth) => Verdict::Challenge(auth.challenge(source, now, stale)),
            None => Verdict::Forbidden,
        }
    }

    /// Sources whose INVITE rate is tracked (for tests: bounded).
    pub fn tracked_sources(&self) -> usize {
        self.invites.map.len()
    }

    /// Sources whose other requests' rate is tracked (for tests: bounded).
    pub fn tracked_request_sources(&self) -> usize {
        self.requests.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ivr::sip::{Challenge, DigestCredentials};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn arrival<'a>(source: &str, kind: Kind, method: &'a str, authorization: Option<&'a str>) -> Arrival<'a> {
        Arrival { source: ip(source), kind, method, authorization }
    }

    fn invite(a: &mut Admission, source: IpAddr, calls_up: usize, now: Instant) -> Verdict {
        a.admit(&Arrival { source, kind: Kind::NewInvite, method: "INVITE", authorization: None }, calls_up, now)
    }

    fn digest(a: Admission, t0: Instant) -> Admission {
        let creds = DigestCredentials { username: "trunk".into(), password: "pw-pw-pw-pw".into() };
        a.with_digest(DigestVerifier::new("helpline", &creds, [3; 32], t0))
    }

    /// The trunk's answer to the `401` of `v`.
    fn answer(v: &Verdict, password: &str, method: &str) -> String {
        let Verdict::Challenge(header) = v else { panic!("a challenge expected, got {v:?}") };
        let creds = DigestCredentials { username: "trunk".into(), password: password.into() };
        Challenge::parse(header).unwrap().authorization(&creds, method, "sip:803001@192.0.2.10", "c0ffee", 1)
    }

    #[test]
    fn outside_the_allow_list_a_trunk_gets_in_by_digest_and_only_with_the_right_password() {
        let t0 = Instant::now();
        let mut a = digest(Admission::new(AllowList::parse("192.0.2.0/24").unwrap(), 100, 0), t0);
        let invite_from = |auth| arrival("198.51.100.9", Kind::NewInvite, "INVITE", auth);
        // The allowed network is not challenged.
        assert_eq!(invite(&mut a, ip("192.0.2.5"), 0, t0), Verdict::Admit);
        let first = a.admit(&invite_from(None), 0, t0);
        assert_eq!(first.reason(), "unauthenticated");
        let good = answer(&first, "pw-pw-pw-pw", "INVITE");
        assert_eq!(a.admit(&invite_from(Some(&good)), 0, t0), Verdict::Admit);
        // The same answer again (a replay) is challenged anew, with stale=true.
        let Verdict::Challenge(again) = a.admit(&invite_from(Some(&good)), 0, t0) else { panic!() };
        assert!(again.contains("stale=true"), "{again}");
        let wrong = answer(&a.admit(&invite_from(None), 0, t0), "guess", "INVITE");
        assert_eq!(a.admit(&invite_from(Some(&wrong)), 0, t0), Verdict::AuthFailed);
        // Out of a dialog, an OPTIONS is challenged too; a stray BYE or CANCEL cannot be: 403.
        let options = a.admit(&arrival("198.51.100.9", Kind::Other { authenticable: true }, "OPTIONS", None), 0, t0);
        let options_auth = answer(&options, "pw-pw-pw-pw", "OPTIONS");
        let authed = arrival("198.51.100.9", Kind::Other { authenticable: true }, "OPTIONS", Some(&options_auth));
        assert_eq!(a.admit(&authed, 0, t0), Verdict::Admit);
        let stray = arrival("198.51.100.9", Kind::Other { authenticable: false }, "BYE", None);
        assert_eq!(a.admit(&stray, 0, t0), Verdict::Forbidden);
        assert_eq!(a.admit(&arrival("198.51.100.9", Kind::StrayAck, "ACK", None), 0, t0), Verdict::Forbidden);
        // The requests of a call that got in pass.
        assert_eq!(a.admit(&arrival("198.51.100.9", Kind::OfACall, "BYE", None), 0, t0), Verdict::Admit);
        assert!(a.permits(ip("203.0.113.1")), "anyone may try to authenticate");
    }

    #[test]
    fn with_digest_and_an_empty_allow_list_everyone_authenticates() {
        let t0 = Instant::now();
        let mut a = digest(Admission::new(AllowList::default(), 100, 0), t0);
        assert_eq!(invite(&mut a, ip("127.0.0.1"), 0, t0).reason(), "unauthenticated");
        // Without digest, an empty list lets anyone in and a non-empty one refuses the others.
        let mut open = Admission::new(AllowList::default(), 100, 0);
        assert_eq!(invite(&mut open, ip("203.0.113.1"), 0, t0), Verdict::Admit);
        let mut closed = Admission::new(AllowList::parse("192.0.2.1").unwrap(), 100, 0);
        assert_eq!(invite(&mut closed, ip("203.0.113.1"), 0, t0), Verdict::Forbidden);
        assert!(!closed.permits(ip("203.0.113.1")));
    }

    #[test]
    fn password_guesses_cost_invite_tokens() {
        let t0 = Instant::now();
        let mut a = digest(Admission::new(AllowList::parse("192.0.2.0/24").unwrap(), 3, 0), t0);
        let mut refused = Vec::new();
        for _ in 0..5 {
            let challenge = a.admit(&arrival("198.51.100.9", Kind::NewInvite, "INVITE", None), 0, t0);
            let wrong = answer(&challenge, "guess", "INVITE");
            refused.push(a.admit(&arrival("198.51.100.9", Kind::NewInvite, "INVITE", Some(&wrong)), 0, t0).reason());
        }
        assert_eq!(refused, ["auth_failed", "auth_failed", "auth_failed", "rate", "rate"]);
    }

    #[test]
    fn other_requests_have_their_own_bucket_and_the_calls_requests_none() {
        let t0 = Instant::now();
        let mut a = Admission::new(AllowList::default(), 100, 0).with_request_rate(10);
        let options = arrival("192.0.2.1", Kind::Other { authenticable: true }, "OPTIONS", None);
        let verdicts: Vec<&str> = (0..15).map(|_| a.admit(&options, 0, t0).reason()).collect();
        assert_eq!(verdicts.iter().filter(|r| **r == "admitted").count(), 10);
        assert_eq!(a.admit(&options, 0, t0), Verdict::RequestRateLimited { retry_after: 1 });
        // INVITEs and the requests of calls held are not counted against it.
        assert_eq!(invite(&mut a, ip("192.0.2.1"), 0, t0), Verdict::Admit);
        assert_eq!(a.admit(&arrival("192.0.2.1", Kind::OfACall, "INFO", None), 0, t0), Verdict::Admit);
        assert_eq!(a.admit(&arrival("192.0.2.1", Kind::StrayAck, "ACK", None), 0, t0), Verdict::Admit);
        // Another source has its own bucket; a tenth of a second gives one back.
        assert_eq!(
            a.admit(&arrival("192.0.2.2", Kind::Other { authenticable: false }, "BYE", None), 0, t0),
            Verdict::Admit
        );
        assert_eq!(a.admit(&options, 0, t0 + Duration::from_millis(100)), Verdict::Admit);
        // Spoofed sources: bounded like the INVITE buckets.
        for i in 0..(MAX_SOURCES as u32 + 10) {
            let source = IpAddr::from((0x0A00_0000u32 + i).to_be_bytes());
            a.admit(
                &Arrival { source, kind: Kind::Other { authenticable: true }, method: "OPTIONS", authorization: None },
                0,
                t0,
            );
        }
        assert_eq!(a.tracked_request_sources(), MAX_SOURCES);
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
            assert_eq!(invite(&mut a, ip("192.0.2.1"), 0, t0), Verdict::Admit);
        }
        assert_eq!(invite(&mut a, ip("192.0.2.1"), 0, t0), Verdict::RateLimited { retry_after: 1 });
        assert_eq!(invite(&mut a, ip("192.0.2.2"), 0, t0), Verdict::Admit, "another source has its own bucket");
        // 200 ms later one token has come back, and only one.
        let t1 = t0 + Duration::from_millis(200);
        assert_eq!(invite(&mut a, ip("192.0.2.1"), 0, t1), Verdict::Admit);
        assert!(matches!(invite(&mut a, ip("192.0.2.1"), 0, t1), Verdict::RateLimited { .. }));
        // A long pause refills to the capacity, not beyond it.
        let t2 = t1 + Duration::from_secs(60);
        let admitted = (0..20).filter(|_| invite(&mut a, ip("192.0.2.1"), 0, t2) == Verdict::Admit).count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn forbidden_before_busy_before_rate() {
        let t0 = Instant::now();
        let mut a = Admission::new(AllowList::parse("192.0.2.0/24").unwrap(), 1, 2);
        assert_eq!(invite(&mut a, ip("198.51.100.1"), 0, t0), Verdict::Forbidden);
        assert_eq!(invite(&mut a, ip("192.0.2.1"), 2, t0), Verdict::Busy { retry_after: 5 });
        assert_eq!(invite(&mut a, ip("192.0.2.1"), 1, t0), Verdict::Admit);
        assert!(matches!(invite(&mut a, ip("192.0.2.1"), 1, t0), Verdict::RateLimited { .. }));
        assert_eq!(a.tracked_sources(), 1, "refused sources take no bucket");
    }

    #[test]
    fn tracked_sources_stay_bounded_under_spoofed_addresses() {
        let t0 = Instant::now();
        let mut a = Admission::new(AllowList::default(), 1, 0);
        for i in 0..(MAX_SOURCES as u32 + 1000) {
            invite(&mut a, IpAddr::from((0x0A00_0000u32 + i).to_be_bytes()), 0, t0);
        }
        assert_eq!(a.tracked_sources(), MAX_SOURCES);
        // Two seconds on, every bucket is full again: the next new source makes room.
        assert_eq!(invite(&mut a, ip("192.0.2.1"), 0, t0 + Duration::from_secs(2)), Verdict::Admit);
        assert_eq!(a.tracked_sources(), 1);
    }
}
