//! The SIP trunk the helpline calls out through (`HELPLINE_TRUNK_URI`, `HELPLINE_TRUNK_USER`,
//! `HELPLINE_TRUNK_PASSWORD`, `HELPLINE_TRUNK_CALLER_ID`), and one outgoing call over it: the
//! user agent client of a callback. Kept apart from the SIP server's signalling task (which
//! answers calls) so that other outgoing uses of the trunk (an SMS's `MESSAGE`) reuse
//! [`Trunk`] and its digest handling without the server's transaction layer.
//!
//! Each outgoing call has its own UDP socket, connected to the trunk (only the trunk's datagrams
//! reach it), so the call's signalling needs no routing through the server's socket. The INVITE
//! goes to `sip:<E.164 number>@<trunk host>` from `<sip:<caller id>@<trunk host>>`; a `401` or
//! `407` challenge is answered once per kind (`ivr::sip::Challenge`, `Authorization` or
//! `Proxy-Authorization`); the same challenge again means wrong credentials. The INVITE is
//! retransmitted (RFC 3261 timer A) until a response, and given up after 32 s (timer B). A call
//! that rings longer than the ring timeout is cancelled (`CANCEL`, then the `487` acknowledged).
//! Once answered: `ACK` (again for every retransmitted `200`), and `BYE` either way.
//!
//! The number is a `PhoneNumber` (masked in `Debug`/`Display`): it is written into the SIP
//! messages and nowhere else; no log line here names it.

use crate::config::{SecretString, Settings};
use ivr::domain::PhoneNumber;
use ivr::sdp::Codec;
use ivr::sip::{Challenge, DigestCredentials, Message, Method, Request, Response};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// RFC 3261's T1.
const T1: Duration = Duration::from_millis(500);
/// Timer B: no response to the INVITE at all.
const TIMER_B: Duration = Duration::from_secs(32);
/// How long a BYE or CANCEL waits for its answer.
const NON_INVITE_TIMEOUT: Duration = Duration::from_secs(4);

/// Why the trunk settings are unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrunkError {
    #[error("HELPLINE_TRUNK_URI must look like sip:host[:port], not {0:?}")]
    Uri(String),
    #[error("HELPLINE_TRUNK_CALLER_ID must be set with HELPLINE_TRUNK_URI (digits, optionally after +)")]
    CallerId,
}

/// The trunk's settings, validated.
#[derive(Clone)]
pub struct Trunk {
    host: String,
    port: u16,
    credentials: Option<DigestCredentials>,
    caller_id: String,
}

impl std::fmt::Debug for Trunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trunk")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("credentials", &self.credentials)
            .field("caller_id", &self.caller_id)
            .finish()
    }
}

impl Trunk {
    /// The trunk of the settings, `None` when `trunk_uri` is empty.
    pub fn from_settings(settings: &Settings) -> Result<Option<Trunk>, TrunkError> {
        Trunk::parse(&settings.trunk_uri, &settings.trunk_user, &settings.trunk_password, &settings.trunk_caller_id)
    }

    pub fn parse(uri: &str, user: &str, password: &SecretString, caller_id: &str) -> Result<Option<Trunk>, TrunkError> {
        let uri = uri.trim();
        if uri.is_empty() {
            return Ok(None);
        }
        let bad = || TrunkError::Uri(uri.to_owned());
        let rest = uri.strip_prefix("sip:").ok_or_else(bad)?;
        let rest = rest.split(';').next().unwrap_or_default();
        if rest.contains('@') || rest.is_empty() {
            return Err(bad());
        }
        let (host, port) = match ivr::sip::split_host_port(rest).ok_or_else(bad)? {
            (h, Some(p)) => (h.to_owned(), p),
            (h, None) => (h.to_owned(), 5060),
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(bad());
        }
        let caller_id = caller_id.trim();
        let digits = caller_id.strip_prefix('+').unwrap_or(caller_id);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TrunkError::CallerId);
        }
        let credentials = (!user.is_empty())
            .then(|| DigestCredentials { username: user.to_owned(), password: password.expose().to_owned() });
        Ok(Some(Trunk { host, port, credentials, caller_id: caller_id.to_owned() }))
    }

    /// The trunk's host as written in `HELPLINE_TRUNK_URI` (the request URIs' host).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The request URI that reaches `number` through the trunk: `sip:<E.164>@<trunk host>`.
    pub fn request_uri(&self, number: &PhoneNumber) -> String {
        format!("sip:{}@{}", number.e164(), self.host)
    }

    /// The trunk's address (resolved now: a trunk named by DNS may move).
    pub async fn resolve(&self) -> std::io::Result<SocketAddr> {
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "the trunk's host has no address"))
    }

    /// The header answering a `401`/`407` response `r` to `method` on `uri` (`Authorization` or
    /// `Proxy-Authorization`); `None` when it must not be answered: no credentials, no usable
    /// challenge, or the same kind of challenge again (wrong credentials). Each kind answered is
    /// added to `challenged`. Shared by calls (INVITE) and texts (MESSAGE).
    pub fn answer_challenge(
        &self,
        r: &Response,
        method: &str,
        uri: &str,
        challenged: &mut Vec<u16>,
    ) -> Option<(&'static str, String)> {
        let (header, answer) = match r.status {
            401 => ("WWW-Authenticate", "Authorization"),
            407 => ("Proxy-Authenticate", "Proxy-Authorization"),
            _ => return None,
        };
        let creds = self.credentials.as_ref()?;
        let challenge = r.headers.get(header).and_then(|v| Challenge::parse(v).ok())?;
        if challenged.contains(&r.status) {
            return None;
        }
        challenged.push(r.status);
        Some((answer, challenge.authorization(creds, method, uri, &token(), 1)))
    }

    /// A UDP socket connected to the trunk, on the local address that routes to it.
    pub async fn connect(&self) -> std::io::Result<(UdpSocket, SocketAddr)> {
        let remote = self.resolve().await?;
        let any: SocketAddr = if remote.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let socket = UdpSocket::bind(any).await?;
        socket.connect(remote).await?;
        Ok((socket, remote))
    }
}

/// How an outgoing call ended before it was answered (or why it could not start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialFailure {
    /// `486` or `600`.
    Busy(u16),
    /// Rang for the whole ring timeout (cancelled), or the trunk said `408`/`480`/`487`.
    NoAnswer(Option<u16>),
    /// `403`, `404` and other refusals.
    Refused(u16),
    /// `503` and other server failures.
    Unavailable(u16),
    /// Challenged again after our credentials, or challenged with no credentials set.
    AuthFailed(u16),
    /// No response at all, or the trunk cannot be reached.
    Unreachable,
    /// The answer's SDP has no audio we offered.
    BadAnswer,
    /// We hung up before it was answered.
    Cancelled,
}

impl DialFailure {
    /// The attempt's result, as logged (`callback_attempts.result`).
    pub fn result(&self) -> &'static str {
        match self {
            DialFailure::Busy(_) => "busy",
            DialFailure::NoAnswer(_) => "no_answer",
            DialFailure::Refused(_) => "refused",
            DialFailure::Unavailable(_) => "unavailable",
            DialFailure::AuthFailed(_) => "auth_failed",
            DialFailure::Unreachable => "unreachable",
            DialFailure::BadAnswer => "bad_answer",
            DialFailure::Cancelled => "operator_left",
        }
    }

    /// The trunk's status code, when it gave one.
    pub fn status(&self) -> Option<u16> {
        match self {
            DialFailure::Busy(s)
            | DialFailure::Refused(s)
            | DialFailure::Unavailable(s)
            | DialFailure::AuthFailed(s) => Some(*s),
            DialFailure::NoAnswer(s) => *s,
            _ => None,
        }
    }
}

/// What an outgoing call reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// `180`/`183`; with the early media's address when the response had SDP.
    Ringing {
        early_media: Option<SocketAddr>,
    },
    /// `200 OK`, acknowledged: the callee's RTP address.
    Answered {
        remote: Option<SocketAddr>,
    },
    Failed(DialFailure),
    /// The call was answered and is over (`by_callee`: the callee's BYE).
    Ended {
        by_callee: bool,
    },
}

/// What the owner asks of an outgoing call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Cancel it while it rings, or send BYE once answered.
    Hangup,
}

/// One outgoing call: where its RTP is and what it offers.
pub struct Dial {
    pub number: PhoneNumber,
    /// Our RTP socket's address as the trunk should see it (its port; the IP is the signalling
    /// socket's when unspecified).
    pub rtp_port: u16,
    pub codec: Codec,
    pub ring_timeout: Duration,
}

/// Places the call and runs it to its end, reporting on `progress`.
pub async fn run(
    trunk: Trunk,
    dial: Dial,
    progress: mpsc::UnboundedSender<Progress>,
    control: mpsc::UnboundedReceiver<Control>,
) {
    let (socket, _remote) = match trunk.connect().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot reach the SIP trunk");
            let _ = progress.send(Progress::Failed(DialFailure::Unreachable));
            return;
        }
    };
    let local = match socket.local_addr() {
        Ok(l) => l,
        Err(_) => {
            let _ = progress.send(Progress::Failed(DialFailure::Unreachable));
            return;
        }
    };
    let mut call = Outgoing::new(trunk, dial, socket, local);
    call.run(progress, control).await;
}

struct Outgoing {
    trunk: Trunk,
    dial: Dial,
    socket: UdpSocket,
    local: SocketAddr,
    call_id: String,
    from_tag: String,
    cseq: u32,
    branch: String,
    /// `Authorization` / `Proxy-Authorization` headers to send.
    auth: Vec<(&'static str, String)>,
    uri: String,
}

fn token() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

impl Outgoing {
    fn new(trunk: Trunk, dial: Dial, socket: UdpSocket, local: SocketAddr) -> Outgoing {
        let uri = trunk.request_uri(&dial.number);
        Outgoing {
            call_id: format!("{}@{}", token(), local.ip()),
            from_tag: token(),
            cseq: 1,
            branch: format!("{}{}", ivr::sip::BRANCH_MAGIC_COOKIE, token()),
            auth: Vec::new(),
            trunk,
            dial,
            socket,
            local,
            uri,
        }
    }

    fn local_ip(&self) -> IpAddr {
        self.local.ip()
    }

    fn sdp(&self) -> String {
        let ip = self.local_ip();
        let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let pt = self.dial.codec.static_payload_type();
        let name = self.dial.codec.encoding_name();
        let session = rand::random::<u32>();
        format!(
            "v=0\r\no=helpline {session} 1 IN {family} {ip}\r\ns=helpline\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
             m=audio {} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\na=ptime:20\r\na=sendrecv\r\n",
            self.dial.rtp_port
        )
    }

    fn common(&self, request: &mut Request, branch: &str, cseq: u32, method: &str, to: &str) {
        let h = &mut request.headers;
        h.push("Via", format!("SIP/2.0/UDP {};branch={branch};rport", self.local));
        h.push("Max-Forwards", "70");
        h.push("From", format!("<sip:{}@{}>;tag={}", self.trunk.caller_id, self.trunk.host, self.from_tag));
        h.push("To", to.to_owned());
        h.push("Call-ID", self.call_id.clone());
        h.push("CSeq", format!("{cseq} {method}"));
    }

    fn invite(&self) -> Request {
        let mut r = Request::new(Method::Invite, self.uri.clone());
        self.common(&mut r, &self.branch, self.cseq, "INVITE", &format!("<{}>", self.uri));
        r.headers.push("Contact", format!("<sip:{}@{}>", self.trunk.caller_id, self.local));
        for (name, value) in &self.auth {
            r.headers.push(name, value.clone());
        }
        r.headers.push("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS");
        r.headers.push("User-Agent", "helpline");
        r.headers.push("Content-Type", "application/sdp");
        r.body = self.sdp().into_bytes();
        r
    }

    /// The ACK of a non-2xx final response (same transaction: the INVITE's branch).
    fn ack_failure(&self, response: &Response) -> Request {
        let mut r = Request::new(Method::Ack, self.uri.clone());
        let to = response.headers.get("To").unwrap_or_default().to_owned();
        self.common(&mut r, &self.branch, self.cseq, "ACK", &to);
        r
    }

    fn cancel(&self) -> Request {
        let mut r = Request::new(Method::Cancel, self.uri.clone());
        self.common(&mut r, &self.branch, self.cseq, "CANCEL", &format!("<{}>", self.uri));
        r
    }

    /// A request within the dialog the 200 made (ACK, BYE).
    fn in_dialog(&self, dialog: &Dialog, method: Method, name: &str, cseq: u32) -> Request {
        let mut r = Request::new(method, dialog.target.clone());
        let branch = format!("{}{}", ivr::sip::BRANCH_MAGIC_COOKIE, token());
        self.common(&mut r, &branch, cseq, name, &dialog.to);
        for route in &dialog.routes {
            r.headers.push("Route", route.clone());
        }
        r
    }

    async fn send(&self, bytes: &[u8]) {
        if let Err(e) = self.socket.send(bytes).await {
            tracing::debug!(error = %e, "SIP to the trunk not sent");
        }
    }

    async fn recv(&self, buf: &mut [u8]) -> Option<Message> {
        match self.socket.recv(buf).await {
            Ok(n) => ivr::sip::parse(&buf[..n]).ok(),
            Err(_) => None,
        }
    }

    async fn run(&mut self, progress: mpsc::UnboundedSender<Progress>, mut control: mpsc::UnboundedReceiver<Control>) {
        let report = |p: Progress| {
            let _ = progress.send(p);
        };
        let mut buf = vec![0u8; 65_536];
        let mut challenged: Vec<u16> = Vec::new();
        'invite: loop {
            let invite = self.invite().to_bytes();
            self.send(&invite).await;
            let started = tokio::time::Instant::now();
            let mut retransmit = Some(started + T1);
            let mut interval = T1;
            let mut ring_deadline: Option<tokio::time::Instant> = None;
            let mut cancelled = false;
            let mut control_open = true;
            loop {
                let give_up =
                    if ring_deadline.is_none() && retransmit.is_some() { Some(started + TIMER_B) } else { None };
                tokio::select! {
                    message = self.recv(&mut buf) => {
                        let Some(Message::Response(r)) = message else { continue };
                        if r.headers.get("CSeq").is_some_and(|c| !c.trim_end().ends_with("INVITE")) {
                            continue; // the CANCEL's 200
                        }
                        if r.headers.get("Call-ID").is_none_or(|c| c != self.call_id) {
                            continue;
                        }
                        retransmit = None;
                        match r.status {
                            100 => {}
                            101..=199 => {
                                if ring_deadline.is_none() {
                                    ring_deadline = Some(tokio::time::Instant::now() + self.dial.ring_timeout);
                                }
                                let early_media = if r.body.is_empty() { None } else { remote_rtp(&r.body, self.local_ip()) };
                                report(Progress::Ringing { early_media });
                                if cancelled {
                                    self.send(&self.cancel().to_bytes()).await;
                                }
                            }
                            200..=299 => {
                                let dialog = Dialog::of(&r, &self.uri);
                                let ack = self.in_dialog(&dialog, Method::Ack, "ACK", self.cseq).to_bytes();
                                self.send(&ack).await;
                                if cancelled {
                                    // Answered while we cancelled: end it at once.
                                    self.bye(&dialog, &mut buf).await;
                                    report(Progress::Failed(DialFailure::Cancelled));
                                    return;
                                }
                                // No SDP: the early media's address stands (or symmetric RTP finds it).
                                let remote = remote_rtp(&r.body, self.local_ip());
                                if remote.is_none() && !r.body.is_empty() {
                                    self.bye(&dialog, &mut buf).await;
                                    report(Progress::Failed(DialFailure::BadAnswer));
                                    return;
                                }
                                report(Progress::Answered { remote });
                                self.answered(dialog, ack, &mut buf, &progress, &mut control).await;
                                return;
                            }
                            status @ (401 | 407) => {
                                self.send(&self.ack_failure(&r).to_bytes()).await;
                                let answered = if cancelled { None } else { self.trunk.answer_challenge(&r, "INVITE", &self.uri, &mut challenged) };
                                let Some(header) = answered else {
                                    tracing::warn!(status, "the trunk refused our credentials (or sent no usable challenge)");
                                    report(Progress::Failed(if cancelled { DialFailure::Cancelled } else { DialFailure::AuthFailed(status) }));
                                    return;
                                };
                                self.auth.retain(|(n, _)| *n != header.0);
                                self.auth.push(header);
                                self.cseq += 1;
                                self.branch = format!("{}{}", ivr::sip::BRANCH_MAGIC_COOKIE, token());
                                continue 'invite;
                            }
                            status => {
                                self.send(&self.ack_failure(&r).to_bytes()).await;
                                let failure = match status {
                                    _ if cancelled => DialFailure::Cancelled,
                                    486 | 600 => DialFailure::Busy(status),
                                    408 | 480 | 487 => DialFailure::NoAnswer(Some(status)),
                                    500..=599 => DialFailure::Unavailable(status),
                                    _ => DialFailure::Refused(status),
                                };
                                tracing::info!(status, "the callback was not answered");
                                report(Progress::Failed(failure));
                                return;
                            }
                        }
                    }
                    _ = sleep_until(retransmit) => {
                        self.send(&invite).await;
                        interval = (interval * 2).min(Duration::from_secs(4));
                        retransmit = Some(tokio::time::Instant::now() + interval);
                    }
                    _ = sleep_until(give_up) => {
                        report(Progress::Failed(if cancelled { DialFailure::Cancelled } else { DialFailure::Unreachable }));
                        return;
                    }
                    _ = sleep_until(ring_deadline.filter(|_| !cancelled)) => {
                        // Rang too long: cancel, then the 487 ends it (as no answer).
                        self.send(&self.cancel().to_bytes()).await;
                        let r = self.await_final(&mut buf).await;
                        if let Some(r) = &r {
                            if r.is_success() {
                                let dialog = Dialog::of(r, &self.uri);
                                self.send(&self.in_dialog(&dialog, Method::Ack, "ACK", self.cseq).to_bytes()).await;
                                self.bye(&dialog, &mut buf).await;
                            } else {
                                self.send(&self.ack_failure(r).to_bytes()).await;
                            }
                        }
                        report(Progress::Failed(DialFailure::NoAnswer(None)));
                        return;
                    }
                    c = control.recv(), if control_open => match c {
                        Some(Control::Hangup) | None => {
                            control_open = false;
                            if !cancelled {
                                cancelled = true;
                                // A CANCEL only after a provisional response (RFC 3261 §9.1).
                                if ring_deadline.is_some() {
                                    self.send(&self.cancel().to_bytes()).await;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Waits (bounded) for the INVITE's final response after a CANCEL.
    async fn await_final(&self, buf: &mut [u8]) -> Option<Response> {
        let until = tokio::time::Instant::now() + NON_INVITE_TIMEOUT;
        loop {
            let message = tokio::time::timeout_at(until, self.recv(buf)).await.ok()?;
            if let Some(Message::Response(r)) = message {
                let invite = r.headers.get("CSeq").is_some_and(|c| c.trim_end().ends_with("INVITE"));
                if invite && r.status >= 200 {
                    return Some(r);
                }
            }
        }
    }

    /// The call is up: until either side hangs up.
    async fn answered(
        &mut self,
        dialog: Dialog,
        ack: Vec<u8>,
        buf: &mut [u8],
        progress: &mpsc::UnboundedSender<Progress>,
        control: &mut mpsc::UnboundedReceiver<Control>,
    ) {
        loop {
            tokio::select! {
                message = self.recv(buf) => match message {
                    Some(Message::Response(r)) if r.is_success() && r.headers.get("CSeq").is_some_and(|c| c.trim_end().ends_with("INVITE")) => {
                        // The 200 again: our ACK was lost.
                        self.send(&ack).await;
                    }
                    Some(Message::Request(req)) if req.method == Method::Bye => {
                        let mut ok = ivr::sip::response_to(&req, 200, &self.from_tag);
                        ok.headers.remove("Contact");
                        self.send(&ok.to_bytes()).await;
                        let _ = progress.send(Progress::Ended { by_callee: true });
                        return;
                    }
                    Some(Message::Request(req)) if req.method != Method::Ack => {
                        let status = if req.method == Method::Options { 200 } else { 501 };
                        self.send(&ivr::sip::response_to(&req, status, &self.from_tag).to_bytes()).await;
                    }
                    _ => {}
                },
                _ = control.recv() => {
                    self.bye(&dialog, buf).await;
                    let _ = progress.send(Progress::Ended { by_callee: false });
                    return;
                }
            }
        }
    }

    /// Sends BYE (retransmitted) and waits, bounded, for its answer.
    async fn bye(&mut self, dialog: &Dialog, buf: &mut [u8]) {
        self.cseq += 1;
        let bye = self.in_dialog(dialog, Method::Bye, "BYE", self.cseq).to_bytes();
        let until = tokio::time::Instant::now() + NON_INVITE_TIMEOUT;
        let mut interval = T1;
        loop {
            self.send(&bye).await;
            let wait = (tokio::time::Instant::now() + interval).min(until);
            match tokio::time::timeout_at(wait, self.recv(buf)).await {
                Ok(Some(Message::Response(r)))
                    if r.headers.get("CSeq").is_some_and(|c| c.trim_end().ends_with("BYE")) =>
                {
                    return
                }
                Ok(_) => {}
                Err(_) if tokio::time::Instant::now() >= until => return,
                Err(_) => interval = (interval * 2).min(Duration::from_secs(4)),
            }
        }
    }
}

/// The dialog a 2xx made: where in-dialog requests go and how they name the callee.
struct Dialog {
    target: String,
    to: String,
    routes: Vec<String>,
}

impl Dialog {
    fn of(r: &Response, uri: &str) -> Dialog {
        let target = r.headers.contact().ok().flatten().map(|c| c.uri.clone()).unwrap_or_else(|| uri.to_owned());
        let mut routes: Vec<String> = r.headers.get_all("Record-Route").map(str::to_owned).collect();
        routes.reverse();
        Dialog { target, to: r.headers.get("To").unwrap_or_default().to_owned(), routes }
    }
}

/// The RTP address in an SDP body (the first audio stream's), if any.
fn remote_rtp(body: &[u8], local: IpAddr) -> Option<SocketAddr> {
    let local = ivr::sdp::LocalMedia::new(local, 9, 1);
    ivr::sdp::negotiate_body(body, &local).ok().and_then(|n| n.remote_rtp)
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How long a `MESSAGE` may take in all (retransmissions and challenges included): a caller
/// waits on the line for it, so shorter than RFC 3261's timer F (32 s).
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(8);

/// Why the trunk did not take a text message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageFailure {
    /// A final non-2xx answer (`403`, `404`, `488`, `503`, …) with its reason phrase.
    #[error("the trunk refused it: {0} {1}")]
    Refused(u16, String),
    /// Challenged again after our credentials, or challenged with none set.
    #[error("the trunk refused our credentials ({0})")]
    AuthFailed(u16),
    /// No final answer within [`MESSAGE_TIMEOUT`].
    #[error("the trunk did not answer")]
    Timeout,
    /// The trunk's host cannot be resolved or reached.
    #[error("the trunk cannot be reached")]
    Unreachable,
}

/// One text message through the trunk (RFC 3428): `MESSAGE sip:<E.164>@<trunk host>` from
/// `<sip:<sender>@<trunk host>>`, `Content-Type: text/plain;charset=UTF-8`, a `401`/`407`
/// challenge answered once per kind as calls do ([`Trunk::answer_challenge`]), retransmitted
/// (timer E: T1 doubling to 4 s) until a final answer or [`MESSAGE_TIMEOUT`]. Returns the 2xx
/// status (`200`, or `202 Accepted` from a store-and-forward trunk). The number goes into the
/// request and nowhere else.
pub async fn send_message(
    trunk: &Trunk,
    number: &PhoneNumber,
    sender: &str,
    body: &str,
) -> Result<u16, MessageFailure> {
    let (socket, _remote) = trunk.connect().await.map_err(|e| {
        tracing::warn!(error = %e, "cannot reach the SIP trunk for a text");
        MessageFailure::Unreachable
    })?;
    let local = socket.local_addr().map_err(|_| MessageFailure::Unreachable)?;
    let uri = trunk.request_uri(number);
    let (call_id, from_tag) = (format!("{}@helpline", token()), token());
    let mut auth: Vec<(&'static str, String)> = Vec::new();
    let mut challenged = Vec::new();
    let mut cseq = 1u32;
    let until = tokio::time::Instant::now() + MESSAGE_TIMEOUT;
    let mut buf = vec![0u8; 65_536];
    loop {
        let branch = format!("{}{}", ivr::sip::BRANCH_MAGIC_COOKIE, token());
        let mut r = Request::new(Method::Message, uri.clone());
        let h = &mut r.headers;
        h.push("Via", format!("SIP/2.0/UDP {local};branch={branch};rport"));
        h.push("Max-Forwards", "70");
        h.push("From", format!("<sip:{sender}@{}>;tag={from_tag}", trunk.host));
        h.push("To", format!("<{uri}>"));
        h.push("Call-ID", call_id.clone());
        h.push("CSeq", format!("{cseq} MESSAGE"));
        for (name, value) in &auth {
            h.push(name, value.clone());
        }
        h.push("User-Agent", "helpline");
        h.push("Content-Type", "text/plain;charset=UTF-8");
        r.body = body.as_bytes().to_vec();
        let bytes = r.to_bytes();
        let mut interval = T1;
        let mut next = tokio::time::Instant::now();
        let response = loop {
            let now = tokio::time::Instant::now();
            if now >= until {
                tracing::info!("the trunk did not answer a text in time");
                return Err(MessageFailure::Timeout);
            }
            if now >= next {
                if let Err(e) = socket.send(&bytes).await {
                    tracing::debug!(error = %e, "MESSAGE to the trunk not sent");
                }
                next = now + interval;
                interval = (interval * 2).min(Duration::from_secs(4));
            }
            let wait = next.min(until);
            let Ok(Ok(n)) = tokio::time::timeout_at(wait, socket.recv(&mut buf)).await else { continue };
            let Ok(Message::Response(resp)) = ivr::sip::parse(&buf[..n]) else { continue };
            let ours = resp.headers.get("Call-ID") == Some(call_id.as_str())
                && resp.headers.get("CSeq").is_some_and(|c| c.trim() == format!("{cseq} MESSAGE"));
            if ours && resp.status >= 200 {
                break resp;
            }
            if ours {
                // A provisional answer: the trunk has it; stop retransmitting (timer E stops).
                next = until;
            }
        };
        match response.status {
            status @ 200..=299 => return Ok(status),
            status @ (401 | 407) => {
                let Some(header) = trunk.answer_challenge(&response, "MESSAGE", &uri, &mut challenged) else {
                    tracing::warn!(
                        status,
                        "the trunk refused our credentials for a text (or sent no usable challenge)"
                    );
                    return Err(MessageFailure::AuthFailed(status));
                };
                auth.retain(|(n, _)| *n != header.0);
                auth.push(header);
                cseq += 1;
            }
            status => {
                tracing::info!(status, "the trunk refused a text");
                return Err(MessageFailure::Refused(status, response.reason.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trunk_uri_and_caller_id_are_checked() {
        let pw = SecretString::new("pw");
        let t = Trunk::parse("sip:trunk.example.org:5060", "803001", &pw, "803001").unwrap().unwrap();
        assert_eq!((t.host(), t.port), ("trunk.example.org", 5060));
        let n = PhoneNumber::parse("+393331234567").unwrap();
        assert_eq!(t.request_uri(&n), "sip:+393331234567@trunk.example.org");
        assert!(!format!("{t:?}").contains("pw\""), "{t:?}");
        assert_eq!(Trunk::parse("sip:trunk.example.org", "", &pw, "+39803001").unwrap().unwrap().port, 5060);
        assert_eq!(Trunk::parse("", "", &pw, "").unwrap().map(|t| t.port), None);
        assert!(matches!(Trunk::parse("http://x", "", &pw, "1"), Err(TrunkError::Uri(_))));
        assert!(matches!(Trunk::parse("sip:a@b", "", &pw, "1"), Err(TrunkError::Uri(_))));
        assert_eq!(Trunk::parse("sip:t", "", &pw, "").unwrap_err(), TrunkError::CallerId);
        assert_eq!(Trunk::parse("sip:t", "", &pw, "80a").unwrap_err(), TrunkError::CallerId);
    }
}
