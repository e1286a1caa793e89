//! Strict RTP: whose packets are a call's media. Only packets from the hosts the call's
//! signalling named — the SDP's connection address, and the host the INVITE came from (a phone
//! behind NAT writes its private address in the SDP; its packets come from the NAT's) — are
//! the caller's; the first of them latches its exact address, and from then on only that
//! address is. A re-INVITE that names a new address starts over. Everything else (a scanner
//! spraying telephone-events over the port range, another call's stray packets) is dropped and
//! counted, so it can neither type keys into a call nor steer where its audio goes.
//!
//! Pure: the receive task asks, nothing here touches a socket.

use std::net::{IpAddr, SocketAddr};

/// What a packet's source is to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The caller's first packet: its address is latched now (tell the sender: symmetric RTP).
    Latched,
    /// The caller, at the latched address.
    Caller,
    /// Someone else: drop the packet.
    Foreign,
}

/// The call's idea of where its media comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpSource {
    hosts: Vec<IpAddr>,
    latched: Option<SocketAddr>,
}

fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl RtpSource {
    /// `hosts`: the SDP's address (if any) and the INVITE's source host.
    pub fn new(hosts: impl IntoIterator<Item = IpAddr>) -> RtpSource {
        let mut h: Vec<IpAddr> = hosts.into_iter().map(plain).filter(|ip| !ip.is_unspecified()).collect();
        h.dedup();
        RtpSource { hosts: h, latched: None }
    }

    /// Judges a packet from `from`.
    pub fn judge(&mut self, from: SocketAddr) -> Source {
        let from = SocketAddr::new(plain(from.ip()), from.port());
        match self.latched {
            Some(addr) if addr == from => Source::Caller,
            Some(_) => Source::Foreign,
            None if self.hosts.contains(&from.ip()) => {
                self.latched = Some(from);
                Source::Latched
            }
            None => Source::Foreign,
        }
    }

    /// The caller's address, once a packet from it has been latched.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// A re-INVITE named `addr` for the media: packets from its host are the caller's again
    /// (latched anew).
    pub fn renegotiated(&mut self, addr: SocketAddr) {
        let ip = plain(addr.ip());
        if !ip.is_unspecified() && !self.hosts.contains(&ip) {
            self.hosts.push(ip);
        }
        self.latched = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_the_signalled_hosts_are_latched_and_then_only_the_latched_address() {
        let mut s = RtpSource::new(["192.0.2.10".parse().unwrap(), "198.51.100.1".parse().unwrap()]);
        assert_eq!(s.judge(a("203.0.113.66:4000")), Source::Foreign, "a stranger does not latch");
        assert_eq!(s.judge(a("198.51.100.1:31000")), Source::Latched, "the INVITE's host (NAT)");
        assert_eq!(s.judge(a("198.51.100.1:31000")), Source::Caller);
        assert_eq!(s.judge(a("198.51.100.1:31002")), Source::Foreign, "latched once: another port is not it");
        assert_eq!(s.judge(a("192.0.2.10:4000")), Source::Foreign, "nor the other host, once latched");
        assert_eq!(s.judge(a("[::ffff:198.51.100.1]:31000")), Source::Caller, "IPv4-mapped is the same");
    }

    #[test]
    fn a_reinvite_to_a_new_address_latches_anew() {
        let mut s = RtpSource::new(["192.0.2.10".parse().unwrap()]);
        assert_eq!(s.judge(a("192.0.2.10:4000")), Source::Latched);
        s.renegotiated(a("192.0.2.20:5000"));
        assert_eq!(s.judge(a("192.0.2.20:5000")), Source::Latched);
        assert_eq!(s.judge(a("192.0.2.10:4000")), Source::Foreign);
        assert_eq!(RtpSource::new(["0.0.0.0".parse().unwrap()]).judge(a("192.0.2.1:1")), Source::Foreign);
    }
}
