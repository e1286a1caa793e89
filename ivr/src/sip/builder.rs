//! Building responses to requests (RFC 3261 §8.2.6) and the stock answers of our method policy
//! (`OPTIONS` 200 with Allow/Accept, `405` with Allow, `501`).

use super::message::{Request, Response};
use super::method::{allow_header_value, policy, MethodPolicy, ACCEPT_HEADER_VALUE};

/// The usual reason phrase of a status code.
pub fn default_reason(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        420 => "Bad Extension",
        415 => "Unsupported Media Type",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        603 => "Decline",
        s if s < 200 => "Session Progress",
        s if s < 300 => "OK",
        s if s < 400 => "Redirection",
        s if s < 500 => "Client Error",
        s if s < 600 => "Server Error",
        _ => "Global Failure",
    }
}

/// Appends `;tag=<tag>` to a From/To value that has no tag yet.
pub(crate) fn with_tag(value: &str, tag: &str) -> String {
    match super::header_values::NameAddr::parse(value, "To") {
        Ok(n) if n.tag().is_some() => value.to_owned(),
        _ => format!("{value};tag={tag}"),
    }
}

/// A response to `req` (RFC 3261 §8.2.6): every Via in order, From, To, Call-ID and CSeq copied;
/// the To tag `local_tag` added unless the request already had one or the status is `100`.
pub fn response_to(req: &Request, status: u16, local_tag: &str) -> Response {
    response_with_reason(req, status, default_reason(status), local_tag)
}

/// Like [`response_to`] with a chosen reason phrase (CR/LF are replaced by spaces).
pub fn response_with_reason(req: &Request, status: u16, reason: &str, local_tag: &str) -> Response {
    let mut resp =
        Response { status, reason: reason.replace(['\r', '\n'], " "), headers: Default::default(), body: Vec::new() };
    for v in req.headers.get_all("Via") {
        resp.headers.push("Via", v);
    }
    if let Some(v) = req.headers.get("From") {
        resp.headers.push("From", v);
    }
    if let Some(v) = req.headers.get("To") {
        let v = if status == 100 || local_tag.is_empty() { v.to_owned() } else { with_tag(v, local_tag) };
        resp.headers.push("To", v);
    }
    for name in ["Call-ID", "CSeq"] {
        if let Some(v) = req.headers.get(name) {
            resp.headers.push(name, v);
        }
    }
    resp
}

impl Response {
    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push(name, value);
        self
    }

    /// Sets the body and its `Content-Type`.
    pub fn with_body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        self.headers.set("Content-Type", content_type);
        self.body = body.into();
        self
    }
}

impl Request {
    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Request {
        self.headers.push(name, value);
        self
    }

    /// Sets the body and its `Content-Type`.
    pub fn with_body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Request {
        self.headers.set("Content-Type", content_type);
        self.body = body.into();
        self
    }
}

/// The `200 OK` accepting an INVITE (or re-INVITE): Contact (required in a 2xx to INVITE,
/// RFC 3261 §13.3.1.4), Allow, and the SDP answer.
pub fn invite_ok(invite: &Request, local_tag: &str, contact_uri: &str, sdp_answer: &str) -> Response {
    let contact_uri = contact_uri.replace(['<', '>'], "");
    let mut ok = response_to(invite, 200, local_tag);
    // RFC 3261 §12.1.1: the answer that makes the dialog carries the request's Record-Route, in
    // order, so the caller's ACK and BYE pass the proxies that asked to stay in the path.
    for rr in invite.headers.get_all("Record-Route") {
        ok.headers.push("Record-Route", rr);
    }
    ok.with_header("Contact", format!("<{contact_uri}>"))
        .with_header("Allow", allow_header_value())
        .with_body("application/sdp", sdp_answer.as_bytes().to_vec())
}

/// Our answer to `OPTIONS` (RFC 3261 §11.2): 200 with Allow and Accept.
pub fn options_response(req: &Request, local_tag: &str) -> Response {
    response_to(req, 200, local_tag)
        .with_header("Allow", allow_header_value())
        .with_header("Accept", ACCEPT_HEADER_VALUE)
}

/// The answer our method policy dictates for a method we do not handle: `405` with Allow for a
/// known method, `501` for an unknown one; `None` when the method is supported.
pub fn policy_response(req: &Request, local_tag: &str) -> Option<Response> {
    match policy(&req.method) {
        MethodPolicy::Supported => None,
        MethodPolicy::NotAllowed => Some(response_to(req, 405, local_tag).with_header("Allow", allow_header_value())),
        MethodPolicy::NotImplemented => Some(response_to(req, 501, local_tag)),
    }
}

/// `420 Bad Extension` with `Unsupported` when the request `Require`s an option tag: we support
/// none (no 100rel, no session timers). `None` when nothing is required, or for ACK and CANCEL,
/// which are never rejected for this (RFC 3261 §8.2.2.3).
pub fn require_response(req: &Request, local_tag: &str) -> Option<Response> {
    if matches!(req.method, super::Method::Ack | super::Method::Cancel) {
        return None;
    }
    let required: Vec<&str> = req.headers.get_all("Require").collect();
    if required.is_empty() {
        return None;
    }
    Some(response_to(req, 420, local_tag).with_header("Unsupported", required.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse, Message, Method};

    fn invite() -> Request {
        let text = "INVITE sip:s@h SIP/2.0\r\nVia: SIP/2.0/UDP p1;branch=z9hG4bKa\r\n\
Via: SIP/2.0/UDP c:5060;branch=z9hG4bKb;received=1.1.1.1\r\nFrom: <sip:c@h>;tag=ft\r\n\
To: \"S\" <sip:s@h>\r\nCall-ID: k\r\nCSeq: 9 INVITE\r\nSubject: x\r\n\r\n";
        match parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!("request expected"),
        }
    }

    #[test]
    fn response_copies_headers_and_adds_tag() {
        let r = response_to(&invite(), 180, "ourtag");
        assert_eq!(r.headers.get_all("Via").count(), 2);
        assert_eq!(r.headers.get("To"), Some("\"S\" <sip:s@h>;tag=ourtag"));
        assert_eq!(r.headers.get("From"), Some("<sip:c@h>;tag=ft"));
        assert_eq!(r.headers.get("CSeq"), Some("9 INVITE"));
        assert_eq!(r.headers.get("Subject"), None);
        let trying = response_to(&invite(), 100, "ourtag");
        assert_eq!(trying.headers.to_addr().unwrap().tag(), None);
        let bytes = r.to_bytes();
        assert!(bytes.starts_with(b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP p1;branch=z9hG4bKa\r\n"));
        assert!(matches!(parse(&bytes), Ok(Message::Response(_))));
    }

    #[test]
    fn invite_ok_copies_the_record_route_in_order() {
        let mut inv = invite();
        inv.headers.push("Record-Route", "<sip:10.0.0.1;lr;ftag=a>");
        inv.headers.push("Record-Route", "<sip:edge.example;lr>");
        let ok = invite_ok(&inv, "t", "sip:helpline@10.0.0.2:5060", "v=0\r\n");
        let rr: Vec<&str> = ok.headers.get_all("Record-Route").collect();
        assert_eq!(rr, ["<sip:10.0.0.1;lr;ftag=a>", "<sip:edge.example;lr>"]);
        assert!(invite_ok(&invite(), "t", "sip:h@10.0.0.2", "").headers.get("Record-Route").is_none());
    }

    #[test]
    fn invite_ok_has_contact_allow_and_sdp() {
        let ok = invite_ok(&invite(), "t", "sip:helpline@10.0.0.2:5060", "v=0\r\n");
        assert_eq!(ok.headers.get("Contact"), Some("<sip:helpline@10.0.0.2:5060>"));
        assert_eq!(ok.headers.content_type().as_deref(), Some("application/sdp"));
        assert!(ok.headers.get("Allow").is_some());
        assert_eq!(ok.body, b"v=0\r\n");
        assert!(String::from_utf8(ok.to_bytes()).unwrap().contains("Content-Length: 5\r\n\r\nv=0"));
    }

    #[test]
    fn existing_to_tag_is_kept() {
        let mut req = invite();
        req.headers.set("To", "<sip:s@h>;tag=dialog");
        assert_eq!(response_to(&req, 200, "other").headers.get("To"), Some("<sip:s@h>;tag=dialog"));
    }

    #[test]
    fn policy_answers() {
        let mut req = invite();
        req.method = Method::Options;
        let ok = options_response(&req, "t");
        assert_eq!(ok.status, 200);
        assert!(ok.headers.get("Allow").unwrap().contains("REFER"));
        assert!(ok.headers.get("Accept").unwrap().contains("application/sdp"));
        assert!(policy_response(&req, "t").is_none());
        req.method = Method::Subscribe;
        let r = policy_response(&req, "t").unwrap();
        assert_eq!((r.status, r.headers.get("Allow").is_some()), (405, true));
        req.method = Method::Other("FOO".into());
        assert_eq!(policy_response(&req, "t").unwrap().status, 501);
        assert_eq!(response_with_reason(&req, 400, "Bad\r\nX", "t").reason, "Bad  X");
    }
}
