//! The UAS side of a SIP dialog (RFC 3261 §12): its identity (Call-ID and both tags), both CSeq
//! counters, the route set and the remote target, and the in-dialog requests we send (BYE, REFER).
//! Also reads the progress NOTIFYs of a REFER (RFC 3515 §2.4.5, `message/sipfrag`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::builder::with_tag;
use super::message::{ParseError, Request};
use super::method::Method;
use crate::domain::{CallId, ServerSecret};
use crate::DomainError;

/// Why a request cannot start or continue a dialog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("request is malformed: {0}")]
    Malformed(#[from] ParseError),
    #[error("INVITE has no Contact, so the dialog has no remote target")]
    MissingContact,
    #[error("request does not belong to this dialog")]
    NotInDialog,
    /// RFC 3261 §12.2.2: answer `500 Server Internal Error`.
    #[error("CSeq {got} is not above the last remote CSeq {last}")]
    CSeqOutOfOrder { got: u32, last: u32 },
}

impl DialogError {
    /// The status to answer the offending request with.
    pub fn status_code(&self) -> u16 {
        match self {
            DialogError::Malformed(e) => e.status_code(),
            DialogError::MissingContact => 400,
            DialogError::NotInDialog => 481,
            DialogError::CSeqOutOfOrder { .. } => 500,
        }
    }

    /// The reason phrase for that status.
    pub fn reason_phrase(&self) -> String {
        match self {
            DialogError::Malformed(e) => e.reason_phrase(),
            DialogError::MissingContact => "Missing Contact".into(),
            DialogError::NotInDialog => "Call/Transaction Does Not Exist".into(),
            DialogError::CSeqOutOfOrder { .. } => "CSeq Out Of Order".into(),
        }
    }
}

/// Call-ID, local tag and remote tag (RFC 3261 §12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

/// What to put in the Via of requests we send: our address as the peer should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalVia {
    /// `host:port` of our SIP socket.
    pub sent_by: String,
}

/// A dialog we accepted as UAS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    id: DialogId,
    /// Our From in requests we send: the INVITE's To with our tag.
    local_addr: String,
    /// Their address with their tag: the INVITE's From.
    remote_addr: String,
    local_seq: u32,
    remote_seq: u32,
    remote_target: String,
    route_set: Vec<String>,
    local_contact: String,
}

impl Dialog {
    /// The dialog an INVITE creates when we answer it with a 2xx carrying `local_tag`
    /// (RFC 3261 §12.1.1): route set from Record-Route, remote target from Contact.
    /// `local_contact` is our Contact URI (`sip:helpline@203.0.113.5:5060`).
    pub fn new_uas(invite: &Request, local_tag: &str, local_contact: &str) -> Result<Dialog, DialogError> {
        let h = &invite.headers;
        let remote_tag = h.from_addr()?.tag().unwrap_or_default().to_owned();
        let remote_target = h.contact()?.ok_or(DialogError::MissingContact)?.uri;
        let route_set = h.get_all("Record-Route").map(str::to_owned).collect();
        Ok(Dialog {
            id: DialogId { call_id: h.call_id()?.to_owned(), local_tag: local_tag.to_owned(), remote_tag },
            local_addr: with_tag(h.get("To").unwrap_or_default(), local_tag),
            remote_addr: h.get("From").unwrap_or_default().to_owned(),
            local_seq: 0,
            remote_seq: h.cseq()?.seq,
            remote_target,
            route_set,
            local_contact: local_contact.to_owned(),
        })
    }

    pub fn id(&self) -> &DialogId {
        &self.id
    }

    /// The URI in-dialog requests are sent to (the peer's Contact).
    pub fn remote_target(&self) -> &str {
        &self.remote_target
    }

    /// The Record-Route entries, in the order they are used as Route.
    pub fn route_set(&self) -> &[String] {
        &self.route_set
    }

    /// Where to send our next request: the first route's URI if there is a route set (loose
    /// routing), otherwise the remote target.
    pub fn next_hop_uri(&self) -> String {
        self.route_set
            .first()
            .and_then(|r| super::header_values::NameAddr::parse(r, "Route").ok())
            .map(|n| n.uri)
            .unwrap_or_else(|| self.remote_target.clone())
    }

    /// Whether `req` belongs to this dialog: same Call-ID, To tag ours, From tag theirs.
    pub fn matches(&self, req: &Request) -> bool {
        let h = &req.headers;
        h.call_id().ok() == Some(self.id.call_id.as_str())
            && h.to_addr().ok().and_then(|t| t.tag().map(str::to_owned)).as_deref() == Some(self.id.local_tag.as_str())
            && h.from_addr().ok().map(|f| f.tag().unwrap_or_default().to_owned()).as_deref()
                == Some(self.id.remote_tag.as_str())
    }

    /// Accounts for an in-dialog request from the peer (RFC 3261 §12.2.2): its CSeq must grow
    /// (ACK and CANCEL reuse their INVITE's), and a re-INVITE with Contact refreshes the target.
    pub fn on_remote_request(&mut self, req: &Request) -> Result<(), DialogError> {
        if !self.matches(req) {
            return Err(DialogError::NotInDialog);
        }
        let seq = req.headers.cseq()?.seq;
        if !matches!(req.method, Method::Ack | Method::Cancel) {
            if seq <= self.remote_seq {
                return Err(DialogError::CSeqOutOfOrder { got: seq, last: self.remote_seq });
            }
            self.remote_seq = seq;
        }
        if req.method == Method::Invite {
            if let Some(contact) = req.headers.contact()? {
                self.remote_target = contact.uri;
            }
        }
        Ok(())
    }

    /// A new in-dialog request (RFC 3261 §12.2.1.1): Request-URI the remote target, Route from
    /// the route set, From/To/Call-ID of the dialog, next local CSeq, Via with `branch` and rport.
    pub fn request(&mut self, method: Method, via: &LocalVia, branch: &str) -> Request {
        self.local_seq = self.local_seq.wrapping_add(1) % (1 << 31);
        let mut r = Request::new(method.clone(), self.remote_target.clone())
            .with_header("Via", format!("SIP/2.0/UDP {};branch={branch};rport", via.sent_by))
            .with_header("Max-Forwards", "70");
        for route in &self.route_set {
            r.headers.push("Route", route.as_str());
        }
        r.with_header("From", self.local_addr.clone())
            .with_header("To", self.remote_addr.clone())
            .with_header("Call-ID", self.id.call_id.clone())
            .with_header("CSeq", format!("{} {method}", self.local_seq))
            .with_header("Contact", format!("<{}>", self.local_contact))
    }

    /// `BYE` ending the call.
    pub fn bye(&mut self, via: &LocalVia, branch: &str) -> Request {
        self.request(Method::Bye, via, branch)
    }

    /// `REFER` asking the caller to call `refer_to` (blind transfer to an operator, RFC 3515).
    pub fn refer(&mut self, via: &LocalVia, branch: &str, refer_to: &str) -> Request {
        let refer_to = refer_to.replace(['\r', '\n', '<', '>'], "");
        let referred_by = format!("<{}>", self.local_contact);
        self.request(Method::Refer, via, branch)
            .with_header("Refer-To", format!("<{refer_to}>"))
            .with_header("Referred-By", referred_by)
    }
}

/// The engine's [`CallId`] for a SIP Call-ID: `sip-` and 32 hex digits of the Call-ID's
/// HMAC-SHA256 under the server key. SIP calls have ids of their own: a caller cannot choose a
/// Call-ID that becomes another call's id (a carrier's predictable `call_id` in the JSON API, or
/// another SIP call's), and any characters and length SIP allows map to a valid id.
pub fn engine_call_id(sip_call_id: &str, secret: &ServerSecret) -> Result<CallId, DomainError> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose()).expect("HMAC takes a key of any length");
    mac.update(sip_call_id.as_bytes());
    let digest = mac.finalize().into_bytes();
    CallId::parse(&format!("sip-{}", hex::encode(&digest[..16])))
}

/// The progress a REFER's NOTIFY reports (RFC 3515 §2.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferProgress {
    /// Status of the transferred call (`100` trying, `200` answered, `486` busy…).
    pub status: u16,
    /// `Subscription-State: terminated`: no more NOTIFYs will come.
    pub terminated: bool,
}

/// Reads a NOTIFY for a REFER (`Event: refer`, body `message/sipfrag` such as `SIP/2.0 200 OK`).
/// `None` when it is not one. The server answers the NOTIFY itself with `200 OK`.
pub fn refer_progress(notify: &Request) -> Option<ReferProgress> {
    if notify.method != Method::Notify {
        return None;
    }
    let event = notify.headers.get("Event")?;
    if !event.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("refer") {
        return None;
    }
    let body = std::str::from_utf8(&notify.body).ok()?;
    let status_line = body.lines().next()?.trim();
    let status = status_line.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
    let terminated = notify
        .headers
        .get("Subscription-State")
        .is_some_and(|s| s.trim_start().to_ascii_lowercase().starts_with("terminated"));
    Some(ReferProgress { status, terminated })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse, Message};

    const INVITE: &str = "INVITE sip:service@10.0.0.2 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKp, SIP/2.0/UDP 10.0.0.1:5061;branch=z9hG4bKc\r\n\
Record-Route: <sip:10.0.0.9;lr>\r\nRecord-Route: <sip:edge.example;lr>\r\n\
From: \"Caller\" <sip:+391234@carrier>;tag=rt\r\nTo: <sip:service@10.0.0.2>\r\n\
Call-ID: dlg-1\r\nCSeq: 10 INVITE\r\nContact: <sip:+391234@10.0.0.1:5061>\r\n\r\n";

    fn req(text: &str) -> Request {
        match parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!("request expected"),
        }
    }

    fn dialog() -> Dialog {
        Dialog::new_uas(&req(INVITE), "lt", "sip:helpline@10.0.0.2:5060").unwrap()
    }

    #[test]
    fn builds_from_invite() {
        let d = dialog();
        assert_eq!(d.id(), &DialogId { call_id: "dlg-1".into(), local_tag: "lt".into(), remote_tag: "rt".into() });
        assert_eq!(d.remote_target(), "sip:+391234@10.0.0.1:5061");
        assert_eq!(d.route_set(), ["<sip:10.0.0.9;lr>", "<sip:edge.example;lr>"]);
        assert_eq!(d.next_hop_uri(), "sip:10.0.0.9;lr");
        let no_contact = INVITE.replace("Contact: <sip:+391234@10.0.0.1:5061>\r\n", "");
        assert_eq!(Dialog::new_uas(&req(&no_contact), "lt", "sip:h@x"), Err(DialogError::MissingContact));
    }

    #[test]
    fn bye_and_refer_are_in_dialog() {
        let mut d = dialog();
        let via = LocalVia { sent_by: "10.0.0.2:5060".into() };
        let bye = d.bye(&via, "z9hG4bKbye");
        let text = String::from_utf8(bye.to_bytes()).unwrap();
        assert!(text.starts_with("BYE sip:+391234@10.0.0.1:5061 SIP/2.0\r\n"), "{text}");
        let parsed = match parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!(),
        };
        assert_eq!(parsed.headers.from_addr().unwrap().tag(), Some("lt"));
        assert_eq!(parsed.headers.to_addr().unwrap().tag(), Some("rt"));
        assert_eq!(parsed.headers.cseq().unwrap().seq, 1);
        assert_eq!(parsed.headers.get_all("Route").collect::<Vec<_>>(), d.route_set());
        assert_eq!(parsed.headers.top_via().unwrap().branch(), Some("z9hG4bKbye"));
        let refer = d.refer(&via, "z9hG4bKref", "sip:operator@10.0.0.50");
        assert_eq!(refer.headers.cseq().unwrap().seq, 2);
        assert_eq!(refer.headers.refer_to().unwrap().unwrap().uri, "sip:operator@10.0.0.50");
    }

    #[test]
    fn remote_cseq_must_grow_and_reinvite_refreshes_target() {
        let mut d = dialog();
        let in_dialog = INVITE.replace("To: <sip:service@10.0.0.2>", "To: <sip:service@10.0.0.2>;tag=lt");
        let reinvite = in_dialog.replace("10 INVITE", "11 INVITE").replace("10.0.0.1:5061>", "10.0.0.7:5061>");
        assert_eq!(d.on_remote_request(&req(&reinvite)), Ok(()));
        assert_eq!(d.remote_target(), "sip:+391234@10.0.0.7:5061");
        assert_eq!(d.on_remote_request(&req(&reinvite)), Err(DialogError::CSeqOutOfOrder { got: 11, last: 11 }));
        let ack = in_dialog.replace("INVITE sip", "ACK sip").replace("10 INVITE", "11 ACK");
        assert_eq!(d.on_remote_request(&req(&ack)), Ok(()));
        assert_eq!(d.on_remote_request(&req(INVITE)), Err(DialogError::NotInDialog));
    }

    #[test]
    fn engine_call_ids() {
        let key = ServerSecret::new(vec![7u8; 32]).unwrap();
        let plain = engine_call_id("1-4242@127.0.0.1", &key).unwrap();
        assert!(plain.as_str().starts_with("sip-") && plain.as_str().len() == 36, "{}", plain.as_str());
        assert_ne!(engine_call_id("sip-0123", &key).unwrap().as_str(), "sip-0123", "a Call-ID cannot name its id");
        let odd = engine_call_id("a/b+c%d", &key).unwrap();
        assert!(odd.as_str().starts_with("sip-") && odd.as_str().len() == 36);
        assert_eq!(engine_call_id("a/b+c%d", &key).unwrap(), odd, "stable");
        let other = ServerSecret::new(vec![8u8; 32]).unwrap();
        assert_ne!(engine_call_id("a/b+c%d", &other).unwrap(), odd, "keyed: not computable without the key");
    }

    #[test]
    fn reads_refer_notify() {
        let notify = "NOTIFY sip:helpline@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKn\r\n\
From: <sip:+391234@carrier>;tag=rt\r\nTo: <sip:service@10.0.0.2>;tag=lt\r\nCall-ID: dlg-1\r\n\
CSeq: 11 NOTIFY\r\nEvent: refer;id=2\r\nSubscription-State: terminated;reason=noresource\r\n\
Content-Type: message/sipfrag;version=2.0\r\n\r\nSIP/2.0 200 OK\r\n";
        assert_eq!(refer_progress(&req(notify)), Some(ReferProgress { status: 200, terminated: true }));
        let trying = notify.replace("terminated;reason=noresource", "active").replace("200 OK", "100 Trying");
        assert_eq!(refer_progress(&req(&trying)), Some(ReferProgress { status: 100, terminated: false }));
        assert_eq!(refer_progress(&req(&notify.replace("Event: refer", "Event: dialog"))), None);
    }
}
