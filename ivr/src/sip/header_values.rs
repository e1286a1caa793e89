//! Typed views of the header values a UAS needs: `Via`, name-addr headers (`From`, `To`,
//! `Contact`, `Record-Route`, `Refer-To`), `CSeq`. Parsed on demand from the stored text, so the
//! text stays the single source of truth and serialization is byte-faithful.

use super::method::Method;
use super::ParseError;

/// `;name=value` or `;name` parameters, in order, names compared case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    /// Parses `;a=1;b;c="x;y"` (leading `;` optional).
    pub fn parse(s: &str) -> Params {
        let mut out = Vec::new();
        for part in split_outside_quotes(s, ';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            match part.split_once('=') {
                Some((k, v)) => out.push((k.trim().to_owned(), Some(v.trim().to_owned()))),
                None => out.push((part.to_owned(), None)),
            }
        }
        Params(out)
    }

    /// `Some(Some(v))` for `;name=v`, `Some(None)` for a bare `;name`, `None` if absent.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref())
    }

    /// The value of `;name=value`, if present with a value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }
}

/// Splits on `sep` outside double-quoted strings.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_quotes, mut escaped, mut start) = (false, false, 0);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == sep && !in_quotes => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// One `Via` value: `SIP/2.0/UDP host:port;branch=…;rport;received=…` (RFC 3261 §20.42, RFC 3581).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, `TLS`… (upper-cased).
    pub transport: String,
    /// The sent-by host (an IPv6 reference keeps its brackets).
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

/// The RFC 3261 branch prefix ("magic cookie", §8.1.1.7).
pub const BRANCH_MAGIC_COOKIE: &str = "z9hG4bK";

impl Via {
    pub fn parse(value: &str) -> Result<Via, ParseError> {
        let bad = || ParseError::MalformedHeader("Via");
        let mut parts = value.trim().splitn(3, '/');
        let (name, version, rest) = (
            parts.next().ok_or_else(bad)?.trim(),
            parts.next().ok_or_else(bad)?.trim(),
            parts.next().ok_or_else(bad)?.trim_start(),
        );
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return Err(bad());
        }
        let split = rest.find(|c: char| c.is_ascii_whitespace()).ok_or_else(bad)?;
        let (transport, rest) = rest.split_at(split);
        let rest = rest.trim();
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (rest[..i].trim(), &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(sent_by).ok_or_else(bad)?;
        if transport.is_empty() || !transport.bytes().all(super::method::is_token_byte) {
            return Err(bad());
        }
        Ok(Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_owned(),
            port,
            params: Params::parse(params),
        })
    }

    /// The `branch` parameter, the transaction id of RFC 3261 (§17.2.3).
    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// The `received` parameter: the source address a previous hop saw.
    pub fn received(&self) -> Option<&str> {
        self.params.value("received")
    }

    /// The `rport` parameter (RFC 3581): `Some(None)` when the client asks for it (bare
    /// `;rport`), `Some(Some(port))` once filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params.get("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// `host:port` as written in sent-by (port omitted when absent).
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

/// Splits `host[:port]`, `[v6]` or `[v6]:port`. The host must be non-empty and free of spaces.
pub fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let host = &s[..=end];
        match &s[end + 1..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '<' || c == '>') {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.trim().parse::<u16>().ok()?),
        None => None,
    };
    Some((host, port))
}

/// The host and port of a `sip:`/`sips:` URI (`sip:user@host:port;params?headers`), for the
/// server to resolve where an in-dialog request goes. `None` for other schemes or a bad host.
pub fn uri_host_port(uri: &str) -> Option<(&str, Option<u16>)> {
    let rest = uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("sips:"))?;
    let rest = rest.split(['?']).next().unwrap_or_default();
    let hostport = rest.rsplit('@').next().unwrap_or_default();
    // Parameters follow the host part; an IPv6 reference contains no ';'.
    let hostport = hostport.split(';').next().unwrap_or_default();
    split_host_port(hostport)
}

/// A `name-addr` or `addr-spec` header value with its parameters: `From`, `To`, `Contact`,
/// `Route`, `Record-Route`, `Refer-To` (RFC 3261 §20.10, §25.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name without quotes, if any.
    pub display_name: Option<String>,
    /// The URI, without angle brackets.
    pub uri: String,
    /// Header parameters (after `>` or, for a bare addr-spec, after the URI).
    pub params: Params,
}

impl NameAddr {
    /// Parses a name-addr; `header` names the header in the error.
    pub fn parse(value: &str, header: &'static str) -> Result<NameAddr, ParseError> {
        let bad = || ParseError::MalformedHeader(header);
        let v = value.trim();
        let (display_name, rest) = if let Some(after) = v.strip_prefix('"') {
            let mut end = None;
            let mut escaped = false;
            for (i, c) in after.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or_else(bad)?;
            let name = after[..end].replace("\\\"", "\"").replace("\\\\", "\\");
            (Some(name), after[end + 1..].trim_start())
        } else {
            (None, v)
        };
        let (display_name, uri, params) = match rest.find('<') {
            Some(lt) => {
                let token_name = rest[..lt].trim();
                let close = rest[lt..].find('>').ok_or_else(bad)? + lt;
                let display = match display_name {
                    Some(n) if token_name.is_empty() => Some(n),
                    Some(_) => return Err(bad()),
                    None if token_name.is_empty() => None,
                    None => Some(token_name.to_owned()),
                };
                let rest_params = rest[close + 1..].trim();
                if !rest_params.is_empty() && !rest_params.starts_with(';') {
                    return Err(bad());
                }
                (display, &rest[lt + 1..close], rest_params)
            }
            None if display_name.is_some() => return Err(bad()),
            None => match rest.find(';') {
                Some(i) => (None, &rest[..i], &rest[i..]),
                None => (None, rest, ""),
            },
        };
        let uri = uri.trim();
        if uri.is_empty() || uri.contains(|c: char| c.is_whitespace() || c == '<' || c == '>') {
            return Err(bad());
        }
        if uri != "*" && !uri.contains(':') {
            return Err(bad());
        }
        Ok(NameAddr { display_name, uri: uri.to_owned(), params: Params::parse(params) })
    }

    /// The `tag` parameter (dialog identity, RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }
}

/// `CSeq: <number> <method>` (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(value: &str) -> Result<CSeq, ParseError> {
        let bad = || ParseError::MalformedHeader("CSeq");
        let mut it = value.split_ascii_whitespace();
        let seq = it.next().ok_or_else(bad)?;
        let method = it.next().ok_or_else(bad)?;
        if it.next().is_some() || seq.len() > 10 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let seq: u32 = seq.parse().map_err(|_| bad())?;
        if seq >= 1 << 31 {
            return Err(bad());
        }
        Ok(CSeq { seq, method: Method::from_token(method).ok_or_else(bad)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_rport_and_ipv6() {
        let v = Via::parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1;rport").unwrap();
        assert_eq!((v.transport.as_str(), v.host.as_str(), v.port), ("UDP", "10.0.0.1", Some(5060)));
        assert_eq!(v.branch(), Some("z9hG4bK-1"));
        assert_eq!(v.rport(), Some(None));
        let v = Via::parse("SIP / 2.0 / udp [2001:db8::1]:5070 ;received=1.2.3.4;rport=4000").unwrap();
        assert_eq!((v.host.as_str(), v.port), ("[2001:db8::1]", Some(5070)));
        assert_eq!(v.rport(), Some(Some(4000)));
        assert_eq!(v.received(), Some("1.2.3.4"));
        assert_eq!(v.sent_by(), "[2001:db8::1]:5070");
        for bad in ["", "SIP/2.0/UDP", "SIP/3.0/UDP a", "SIP/2.0/UDP a:99999", "SIP/2.0/UDP :5"] {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(r#""Rossi \"Mario\"" <sip:mario@example.it>;tag=abc"#, "From").unwrap();
        assert_eq!(n.display_name.as_deref(), Some(r#"Rossi "Mario""#));
        assert_eq!(n.uri, "sip:mario@example.it");
        assert_eq!(n.tag(), Some("abc"));
        let n = NameAddr::parse("sip:service@127.0.0.1:5080;tag=7", "To").unwrap();
        assert_eq!((n.uri.as_str(), n.tag()), ("sip:service@127.0.0.1:5080", Some("7")));
        let n = NameAddr::parse("Anonymous <sip:anon@x;user=phone>", "From").unwrap();
        assert_eq!(n.display_name.as_deref(), Some("Anonymous"));
        assert_eq!(n.uri, "sip:anon@x;user=phone");
        assert_eq!(n.tag(), None);
        for bad in ["", "<sip:a", "\"x <sip:a>", "noscheme", "<sip:a> junk"] {
            assert!(NameAddr::parse(bad, "To").is_err(), "{bad}");
        }
    }

    #[test]
    fn uri_host_and_port() {
        assert_eq!(uri_host_port("sip:sipp@127.0.0.1:5061"), Some(("127.0.0.1", Some(5061))));
        assert_eq!(uri_host_port("sip:h.example;transport=udp"), Some(("h.example", None)));
        assert_eq!(uri_host_port("sips:a@[::1]:5061;lr?x=y"), Some(("[::1]", Some(5061))));
        assert_eq!(uri_host_port("tel:+39061234"), None);
    }

    #[test]
    fn cseq() {
        assert_eq!(CSeq::parse("314159 INVITE").unwrap(), CSeq { seq: 314159, method: Method::Invite });
        for bad in ["", "1", "x INVITE", "1 INVITE extra", "4294967296 BYE", "2147483648 BYE"] {
            assert!(CSeq::parse(bad).is_err(), "{bad}");
        }
    }
}
