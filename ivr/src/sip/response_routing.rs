//! Where responses go over UDP (RFC 3261 §18.2.1-§18.2.2, RFC 3581 `rport`): the server stamps
//! the top Via of each request with the address it really came from, and sends responses there.
//! Pure: addresses in, addresses out.

use std::net::{IpAddr, SocketAddr};

use super::header_values::{Params, Via};
use super::message::{ParseError, Request};

/// Adds `received=<source ip>` to the top Via when sent-by differs from the packet's source (or
/// is a name), and fills a bare `rport` with the source port (RFC 3581 §4). Call on every
/// request as it arrives, before handing it to the transaction layer, so every response copies
/// the stamped Via.
pub fn stamp_received(req: &mut Request, source: SocketAddr) -> Result<(), ParseError> {
    let mut via = req.headers.top_via()?;
    let sent_by_ip: Option<IpAddr> = via.host.trim_start_matches('[').trim_end_matches(']').parse().ok();
    let wants_rport = via.rport().is_some();
    let mut params: Vec<(String, Option<String>)> = via
        .params
        .0
        .into_iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("received") && !k.eq_ignore_ascii_case("rport"))
        .collect();
    if wants_rport {
        params.push(("rport".into(), Some(source.port().to_string())));
    }
    if wants_rport || sent_by_ip != Some(source.ip()) {
        params.push(("received".into(), Some(source.ip().to_string())));
    }
    via.params = Params(params);
    req.headers.set_first("Via", via_to_string(&via));
    Ok(())
}

fn via_to_string(via: &Via) -> String {
    let mut s = format!("SIP/2.0/{} {}", via.transport, via.sent_by());
    for (k, v) in &via.params.0 {
        s.push(';');
        s.push_str(k);
        if let Some(v) = v {
            s.push('=');
            s.push_str(v);
        }
    }
    s
}

/// Where to send a response over UDP: with `rport`, back to the exact source address and port;
/// otherwise to `received` (or sent-by) at the sent-by port, default 5060 (RFC 3261 §18.2.2).
/// `source` is where the request came from; it is also the fallback when sent-by is a host name
/// (this code resolves no names).
pub fn response_target(top_via: &Via, source: SocketAddr) -> SocketAddr {
    if top_via.rport().is_some() {
        return source;
    }
    let ip = top_via
        .received()
        .and_then(|r| r.parse::<IpAddr>().ok())
        .or_else(|| top_via.host.trim_start_matches('[').trim_end_matches(']').parse().ok())
        .unwrap_or(source.ip());
    SocketAddr::new(ip, top_via.port.unwrap_or(5060))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse, response_to, Message};

    fn req(via: &str) -> Request {
        let text = format!(
            "OPTIONS sip:s@h SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP proxy;branch=z9hG4bKp\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:s@h>\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\n\r\n"
        );
        match parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!(),
        }
    }

    #[test]
    fn rport_is_filled_and_used() {
        let mut r = req("SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKa;rport");
        let src: SocketAddr = "198.51.100.7:40123".parse().unwrap();
        stamp_received(&mut r, src).unwrap();
        let vias: Vec<&str> = r.headers.get_all("Via").collect();
        assert_eq!(
            vias,
            [
                "SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKa;rport=40123;received=198.51.100.7",
                "SIP/2.0/UDP proxy;branch=z9hG4bKp"
            ]
        );
        let resp = response_to(&r, 200, "t");
        assert_eq!(resp.headers.get("Via"), Some(vias[0]));
        assert_eq!(response_target(&r.headers.top_via().unwrap(), src), src);
    }

    #[test]
    fn without_rport_received_ip_and_via_port() {
        let mut r = req("SIP/2.0/UDP pbx.example:5070;branch=z9hG4bKa");
        let src: SocketAddr = "198.51.100.7:40123".parse().unwrap();
        stamp_received(&mut r, src).unwrap();
        let via = r.headers.top_via().unwrap();
        assert_eq!(via.received(), Some("198.51.100.7"));
        assert_eq!(response_target(&via, src), "198.51.100.7:5070".parse().unwrap());
        let mut same = req("SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKa");
        stamp_received(&mut same, src).unwrap();
        let via = same.headers.top_via().unwrap();
        assert_eq!(via.received(), None, "sent-by already right");
        assert_eq!(response_target(&via, src), "198.51.100.7:5060".parse().unwrap());
    }
}
