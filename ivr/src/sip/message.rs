//! SIP message grammar (RFC 3261 §7, §18.3, §25): one UDP datagram in, a [`Message`] out, and
//! back to bytes. No sockets, no transactions: the server feeds bytes, the state machines feed on
//! messages.
//!
//! Architecture invariant: [`parse`] never panics, whatever the bytes.

use super::header_values::{CSeq, NameAddr, Via};
use super::headers::{canonical_name, is_list_header, split_commas, Headers};
use super::method::{is_token_byte, Method};

/// Most header lines we accept in one message; more is an attack or a loop.
pub const MAX_HEADERS: usize = 200;

/// Why a datagram is not a SIP message we can use. The server answers a request that fails to
/// parse with [`ParseError::status_code`] and [`ParseError::reason_phrase`] (`400 Missing Call-ID`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty datagram (or only CRLF keep-alives)")]
    Empty,
    #[error("message head is not valid UTF-8")]
    NotUtf8,
    #[error("malformed start line")]
    BadStartLine,
    #[error("unsupported SIP version {0:?}")]
    UnsupportedVersion(String),
    #[error("malformed header line {0}")]
    BadHeaderLine(usize),
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("malformed {0} header")]
    MalformedHeader(&'static str),
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    #[error("Content-Length is not a number")]
    BadContentLength,
    #[error("body is {actual} bytes, shorter than Content-Length {expected}")]
    BodyTooShort { expected: usize, actual: usize },
}

impl ParseError {
    /// The status code to answer a request that failed to parse with.
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::UnsupportedVersion(_) => 505,
            _ => 400,
        }
    }

    /// A short reason phrase naming the problem, for the status line (`400 Missing Call-ID`).
    pub fn reason_phrase(&self) -> String {
        match self {
            ParseError::Empty => "Empty Message".into(),
            ParseError::NotUtf8 => "Invalid Header Encoding".into(),
            ParseError::BadStartLine => "Malformed Request-Line".into(),
            ParseError::UnsupportedVersion(_) => "Version Not Supported".into(),
            ParseError::BadHeaderLine(_) => "Malformed Header Line".into(),
            ParseError::TooManyHeaders => "Too Many Headers".into(),
            ParseError::MissingHeader(h) => format!("Missing {h}"),
            ParseError::MalformedHeader(h) => format!("Malformed {h}"),
            ParseError::CSeqMethodMismatch => "CSeq Method Mismatch".into(),
            ParseError::BadContentLength => "Bad Content-Length".into(),
            ParseError::BodyTooShort { .. } => "Body Shorter Than Content-Length".into(),
        }
    }
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The Request-URI, as written.
    pub uri: String,
    /// Every header but `Content-Length`, which is derived from the body on output.
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Every header but `Content-Length`, which is derived from the body on output.
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

enum StartLine {
    Request(Method, String),
    Response(u16, String),
}

/// A message split into start line, headers and body, before the mandatory headers are checked.
struct Raw {
    start: StartLine,
    headers: Headers,
    body: Vec<u8>,
}

/// Parses one datagram into a validated [`Message`]: mandatory headers present and well formed
/// (Via, From, To, Call-ID, CSeq; CSeq method equal to the request method), Content-Length
/// honoured (a shorter body is an error, extra bytes are ignored, RFC 3261 §18.3).
pub fn parse(datagram: &[u8]) -> Result<Message, ParseError> {
    let raw = parse_raw(datagram, Mode::Strict)?;
    validate(&raw.headers)?;
    Ok(match raw.start {
        StartLine::Request(method, uri) => {
            let cseq = CSeq::parse(raw.headers.get("CSeq").unwrap_or_default())?;
            if cseq.method != method {
                return Err(ParseError::CSeqMethodMismatch);
            }
            Message::Request(Request { method, uri, headers: raw.headers, body: raw.body })
        }
        StartLine::Response(status, reason) => {
            Message::Response(Response { status, reason, headers: raw.headers, body: raw.body })
        }
    })
}

fn validate(h: &Headers) -> Result<(), ParseError> {
    let vias: Vec<&str> = h.get_all("Via").collect();
    if vias.is_empty() {
        return Err(ParseError::MissingHeader("Via"));
    }
    for v in vias {
        Via::parse(v)?;
    }
    for name in ["From", "To"] {
        let v = h.get(name).ok_or(ParseError::MissingHeader(name))?;
        NameAddr::parse(v, name)?;
    }
    let call_id = h.get("Call-ID").ok_or(ParseError::MissingHeader("Call-ID"))?;
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err(ParseError::MalformedHeader("Call-ID"));
    }
    CSeq::parse(h.get("CSeq").ok_or(ParseError::MissingHeader("CSeq"))?)?;
    if let Some(mf) = h.get("Max-Forwards") {
        if mf.parse::<u8>().is_err() {
            return Err(ParseError::MalformedHeader("Max-Forwards"));
        }
    }
    Ok(())
}

/// `Strict` for [`parse`]. `Salvage` reads what it can of a broken request so that it can be
/// answered: any SIP version, bad header lines and body errors skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Strict,
    Salvage,
}

fn parse_raw(datagram: &[u8], mode: Mode) -> Result<Raw, ParseError> {
    let salvage = mode == Mode::Salvage;
    // RFC 3261 §7.5: CRLFs before the start line are ignored (they are keep-alives on their own).
    let start = datagram.iter().position(|b| *b != b'\r' && *b != b'\n').ok_or(ParseError::Empty)?;
    let data = &datagram[start..];
    let (head, body_start) = split_head(data);
    let head = std::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = parse_start_line(lines.next().unwrap_or_default(), mode)?;

    let mut headers = Headers::new();
    let mut pending: Option<(String, String)> = None;
    let mut count = 0usize;
    for (i, line) in lines.enumerate() {
        if line.starts_with([' ', '\t']) {
            // Folded continuation (RFC 3261 §7.3.1): joins the previous line with one space.
            match pending.as_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                None if salvage => {}
                None => return Err(ParseError::BadHeaderLine(i + 2)),
            }
            continue;
        }
        if let Some((name, value)) = pending.take() {
            match push_header(&mut headers, &name, &value, &mut count) {
                Err(_) if salvage => break,
                other => other?,
            }
        }
        let parsed = line
            .split_once(':')
            .map(|(name, value)| (name.trim_end_matches([' ', '\t']), value))
            .filter(|(name, _)| !name.is_empty() && name.bytes().all(is_token_byte));
        match parsed {
            Some((name, value)) => pending = Some((name.to_owned(), value.trim().to_owned())),
            None if salvage => {}
            None => return Err(ParseError::BadHeaderLine(i + 2)),
        }
    }
    if let Some((name, value)) = pending.take() {
        match push_header(&mut headers, &name, &value, &mut count) {
            Err(_) if salvage => {}
            other => other?,
        }
    }
    if salvage {
        headers.remove("Content-Length");
        return Ok(Raw { start, headers, body: Vec::new() });
    }

    let rest = &data[body_start.min(data.len())..];
    let body = match headers.get("Content-Length") {
        Some(cl) => {
            if cl.is_empty() || cl.len() > 10 || !cl.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::BadContentLength);
            }
            let expected: usize = cl.parse().map_err(|_| ParseError::BadContentLength)?;
            if rest.len() < expected {
                return Err(ParseError::BodyTooShort { expected, actual: rest.len() });
            }
            rest[..expected].to_vec()
        }
        // Over UDP the body runs to the end of the datagram when Content-Length is absent (§18.3).
        None => rest.to_vec(),
    };
    if headers.get_all("Content-Length").nth(1).is_some() {
        return Err(ParseError::BadContentLength);
    }
    headers.remove("Content-Length");
    Ok(Raw { start, headers, body })
}

fn push_header(h: &mut Headers, name: &str, value: &str, count: &mut usize) -> Result<(), ParseError> {
    let name = canonical_name(name);
    let value = value.trim();
    let values = if is_list_header(&name) { split_commas(value) } else { vec![value] };
    for v in values {
        *count += 1;
        if *count > MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
        h.push(&name, v);
    }
    Ok(())
}

/// Splits at the empty line ending the head; returns the head and where the body starts.
/// Accepts bare LF line ends as well as CRLF.
fn split_head(data: &[u8]) -> (&[u8], usize) {
    let mut i = 0;
    while let Some(off) = data[i..].iter().position(|b| *b == b'\n') {
        let nl = i + off;
        let next = nl + 1;
        if data.get(next) == Some(&b'\n') {
            return (&data[..nl], next + 1);
        }
        if data.get(next) == Some(&b'\r') && data.get(next + 1) == Some(&b'\n') {
            return (&data[..nl], next + 2);
        }
        i = next;
    }
    (data, data.len())
}

fn parse_start_line(line: &str, mode: Mode) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let (version, rest) = rest.split_once(' ').ok_or(ParseError::BadStartLine)?;
        if version != "2.0" {
            return Err(ParseError::UnsupportedVersion(format!("SIP/{version}")));
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::BadStartLine);
        }
        let code: u16 = code.parse().map_err(|_| ParseError::BadStartLine)?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::BadStartLine);
        }
        return Ok(StartLine::Response(code, reason.trim().to_owned()));
    }
    let mut parts = line.split(' ');
    let (method, uri, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(u), Some(v), None) => (m, u, v),
        _ => return Err(ParseError::BadStartLine),
    };
    let method = Method::from_token(method).ok_or(ParseError::BadStartLine)?;
    if uri.is_empty() || !uri.contains(':') || uri.contains(|c: char| c.is_control()) {
        return Err(ParseError::BadStartLine);
    }
    if version != "SIP/2.0" {
        if version.starts_with("SIP/") && mode == Mode::Salvage {
            return Ok(StartLine::Request(method, uri.to_owned()));
        }
        if version.starts_with("SIP/") {
            return Err(ParseError::UnsupportedVersion(version.to_owned()));
        }
        return Err(ParseError::BadStartLine);
    }
    Ok(StartLine::Request(method, uri.to_owned()))
}

/// For a request that failed to parse: the error response to send (`400 Missing Call-ID`,
/// `505 Version Not Supported`), copying whatever Via, From, To, Call-ID and CSeq could be read.
/// `None` when no answer is possible or allowed: not a request, an ACK (never answered), or no
/// Via to send the answer along.
pub fn reject_unparseable(datagram: &[u8], err: &ParseError) -> Option<Response> {
    let raw = match parse_raw(datagram, Mode::Salvage) {
        Ok(raw) => raw,
        // Without headers there is no Via to answer along.
        Err(_) => return None,
    };
    match &raw.start {
        StartLine::Request(Method::Ack, _) | StartLine::Response(..) => return None,
        StartLine::Request(..) => {}
    }
    // The answer goes where the top Via says: without a readable one there is nowhere to send it.
    raw.headers.top_via().ok()?;
    let mut headers = Headers::new();
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for v in raw.headers.get_all(name) {
            headers.push(name, v);
        }
    }
    Some(Response { status: err.status_code(), reason: err.reason_phrase(), headers, body: Vec::new() })
}

fn write_headers(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    for h in headers.iter() {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
}

impl Request {
    /// A request with no headers yet.
    pub fn new(method: Method, uri: impl Into<String>) -> Request {
        Request { method, uri: uri.into(), headers: Headers::new(), body: Vec::new() }
    }

    /// The wire form, with `Content-Length` computed from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} SIP/2.0\r\n", self.method, self.uri).into_bytes();
        write_headers(&mut out, &self.headers, &self.body);
        out
    }
}

impl Response {
    /// The wire form, with `Content-Length` computed from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("SIP/2.0 {} {}\r\n", self.status, self.reason).into_bytes();
        write_headers(&mut out, &self.headers, &self.body);
        out
    }

    /// `1xx`.
    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }

    /// `2xx`.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

/// Typed accessors shared by requests and responses. Each re-reads the header text, so it also
/// works on messages built in code; on a message from [`parse`] the mandatory ones are `Ok`.
impl Headers {
    /// Every Via, topmost first.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.get_all("Via").map(Via::parse).collect()
    }

    /// The topmost Via: where the answer goes, and the transaction's branch.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        Via::parse(self.get("Via").ok_or(ParseError::MissingHeader("Via"))?)
    }

    pub fn from_addr(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.get("From").ok_or(ParseError::MissingHeader("From"))?, "From")
    }

    pub fn to_addr(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.get("To").ok_or(ParseError::MissingHeader("To"))?, "To")
    }

    pub fn call_id(&self) -> Result<&str, ParseError> {
        self.get("Call-ID").ok_or(ParseError::MissingHeader("Call-ID"))
    }

    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        CSeq::parse(self.get("CSeq").ok_or(ParseError::MissingHeader("CSeq"))?)
    }

    /// The first Contact (`Ok(None)` when absent).
    pub fn contact(&self) -> Result<Option<NameAddr>, ParseError> {
        self.get("Contact").map(|v| NameAddr::parse(v, "Contact")).transpose()
    }

    /// `Max-Forwards` (`Ok(None)` when absent).
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.get("Max-Forwards").map(|v| v.parse().map_err(|_| ParseError::MalformedHeader("Max-Forwards"))).transpose()
    }

    /// The media type of the body, lower-cased and without parameters (`application/sdp`).
    pub fn content_type(&self) -> Option<String> {
        self.get("Content-Type").map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
    }

    /// Every Record-Route entry, in order.
    pub fn record_route(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.get_all("Record-Route").map(|v| NameAddr::parse(v, "Record-Route")).collect()
    }

    /// `Refer-To` (`Ok(None)` when absent).
    pub fn refer_to(&self) -> Result<Option<NameAddr>, ParseError> {
        self.get("Refer-To").map(|v| NameAddr::parse(v, "Refer-To")).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the INVITE sipp's default `uac` scenario sends.
    pub(crate) const SIPP_INVITE: &str = "INVITE sip:service@127.0.0.1:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-12345-1-0;rport\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=12345SIPpTag001\r\n\
To: service <sip:service@127.0.0.1:5080>\r\n\
Call-ID: 1-12345@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@127.0.0.1:5061\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Type: application/sdp\r\n\
Content-Length:   129\r\n\
\r\n\
v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

    fn req(text: &str) -> Request {
        match parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn parses_sipp_invite() {
        assert_eq!(SIPP_INVITE.split("\r\n\r\n").nth(1).map(str::len), Some(129));
        let r = req(SIPP_INVITE);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.uri, "sip:service@127.0.0.1:5080");
        let via = r.headers.top_via().unwrap();
        assert_eq!(via.branch(), Some("z9hG4bK-12345-1-0"));
        assert_eq!(via.rport(), Some(None));
        assert_eq!(via.sent_by(), "127.0.0.1:5061");
        assert_eq!(r.headers.from_addr().unwrap().tag(), Some("12345SIPpTag001"));
        assert_eq!(r.headers.to_addr().unwrap().tag(), None);
        assert_eq!(r.headers.call_id().unwrap(), "1-12345@127.0.0.1");
        assert_eq!(r.headers.cseq().unwrap(), CSeq { seq: 1, method: Method::Invite });
        assert_eq!(r.headers.contact().unwrap().unwrap().uri, "sip:sipp@127.0.0.1:5061");
        assert_eq!(r.headers.max_forwards().unwrap(), Some(70));
        assert_eq!(r.headers.content_type().as_deref(), Some("application/sdp"));
        assert!(r.body.starts_with(b"v=0\r\n") && r.body.ends_with(b"PCMU/8000\r\n"));
        assert_eq!(r.headers.get("Content-Length"), None, "derived from the body on output");
    }

    #[test]
    fn compact_forms_and_folding() {
        let text = "BYE sip:a@b SIP/2.0\r\n\
v: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/UDP h2:5062\r\n\t ;branch=z9hG4bK2\r\n\
f: <sip:x@y>;tag=1\r\nt: <sip:a@b>;tag=2\r\ni: cid\r\nCSeq: 2 BYE\r\n\
Subject: first\r\n  second line\r\nl: 0\r\n\r\n";
        let r = req(text);
        let vias = r.headers.vias().unwrap();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[1].branch(), Some("z9hG4bK2"));
        assert_eq!(vias[1].port, Some(5062));
        assert_eq!(r.headers.get("Subject"), Some("first second line"));
        assert_eq!(r.headers.call_id().unwrap(), "cid");
    }

    #[test]
    fn missing_and_bad_headers_are_named() {
        let base = SIPP_INVITE.replace("Call-ID: 1-12345@127.0.0.1\r\n", "");
        let err = parse(base.as_bytes()).unwrap_err();
        assert_eq!(err, ParseError::MissingHeader("Call-ID"));
        assert_eq!(format!("{} {}", err.status_code(), err.reason_phrase()), "400 Missing Call-ID");
        let resp = reject_unparseable(base.as_bytes(), &err).unwrap();
        assert_eq!(resp.reason, "Missing Call-ID");
        assert_eq!(resp.headers.get("Via"), Some("SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-12345-1-0;rport"));

        let cases = [
            ("CSeq: 1 INVITE", "CSeq: one INVITE", ParseError::MalformedHeader("CSeq")),
            ("CSeq: 1 INVITE", "CSeq: 1 BYE", ParseError::CSeqMethodMismatch),
            ("Via: SIP/2.0/UDP 127.0.0.1:5061;", "Via: garbage;", ParseError::MalformedHeader("Via")),
            ("Content-Length:   129", "Content-Length: 130", ParseError::BodyTooShort { expected: 130, actual: 129 }),
            ("Content-Length:   129", "Content-Length: -1", ParseError::BadContentLength),
            ("Max-Forwards: 70", "Max-Forwards: 700", ParseError::MalformedHeader("Max-Forwards")),
            ("SIP/2.0\r\nVia", "SIP/3.0\r\nVia", ParseError::UnsupportedVersion("SIP/3.0".into())),
            ("From: sipp <sip:sipp@127.0.0.1:5061>", "From: sipp <sip:sipp@127", ParseError::MalformedHeader("From")),
            ("Subject: Performance Test", "Subject Performance Test", ParseError::BadHeaderLine(9)),
        ];
        for (from, to, want) in cases {
            let text = SIPP_INVITE.replacen(from, to, 1);
            assert_ne!(text, SIPP_INVITE, "{from}");
            let err = parse(text.as_bytes()).unwrap_err();
            assert_eq!(err, want, "{to}");
            // Each can still be answered, with the reason named, except without a usable Via.
            let resp = reject_unparseable(text.as_bytes(), &err);
            if want == ParseError::MalformedHeader("Via") {
                assert_eq!(resp, None);
                continue;
            }
            let resp = resp.unwrap();
            assert_eq!((resp.status, resp.reason.clone()), (err.status_code(), err.reason_phrase()), "{to}");
            assert!(resp.headers.top_via().is_ok(), "{to}");
        }
        assert_eq!(ParseError::UnsupportedVersion("SIP/3.0".into()).status_code(), 505);
    }

    #[test]
    fn content_length_extra_bytes_ignored_and_absent_means_rest() {
        let text = SIPP_INVITE.replace("Content-Length:   129", "Content-Length: 4");
        assert_eq!(req(&text).body, b"v=0\r");
        let text = SIPP_INVITE.replace("Content-Length:   129\r\n", "");
        assert_eq!(req(&text).body.len(), 129);
    }

    #[test]
    fn header_line_limits() {
        let fold_first = SIPP_INVITE.replacen("Via:", " Via:", 1);
        assert_eq!(parse(fold_first.as_bytes()), Err(ParseError::BadHeaderLine(2)));
        let many = SIPP_INVITE.replacen("Subject: Performance Test\r\n", &"X-A: 1\r\n".repeat(MAX_HEADERS), 1);
        assert_eq!(parse(many.as_bytes()), Err(ParseError::TooManyHeaders));
        let twice = SIPP_INVITE.replacen("Subject: Performance Test", "l: 129", 1);
        assert_eq!(parse(twice.as_bytes()), Err(ParseError::BadContentLength));
        let bad_name = SIPP_INVITE.replacen("Subject:", "Sub ject:", 1);
        assert_eq!(parse(bad_name.as_bytes()), Err(ParseError::BadHeaderLine(9)));
    }

    #[test]
    fn keepalives_and_garbage() {
        assert_eq!(parse(b"\r\n\r\n"), Err(ParseError::Empty));
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"hello"), Err(ParseError::BadStartLine));
        assert_eq!(parse(b"\xff\xfe"), Err(ParseError::NotUtf8));
        assert!(reject_unparseable(b"hello", &ParseError::BadStartLine).is_none());
    }

    #[test]
    fn parses_response_and_bare_lf() {
        let text = "SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\nFrom: <sip:a@b>;tag=1\n\
To: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 5 INVITE\n\n";
        match parse(text.as_bytes()).unwrap() {
            Message::Response(r) => {
                assert_eq!((r.status, r.reason.as_str()), (180, "Ringing"));
                assert!(r.is_provisional() && !r.is_success());
                assert!(r.body.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn serialize_round_trips() {
        let m = parse(SIPP_INVITE.as_bytes()).unwrap();
        let bytes = m.to_bytes();
        assert_eq!(parse(&bytes).unwrap(), m);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("Content-Length: 129\r\n\r\nv=0"));
    }
}
