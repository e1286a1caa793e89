//! The SIP signalling task: one UDP socket, one `ServerTransactions` table, the dialogs of the
//! calls in progress and the BYE/REFER client transactions we started. It parses each datagram
//! (`ivr::sip::parse`), lets the transaction layer absorb retransmissions and run the RFC 3261
//! timers, and hands each new request to the user-agent logic below: INVITE (answer after the call
//! is recorded), ACK, BYE, CANCEL, OPTIONS, INFO (DTMF), re-INVITE (hold), NOTIFY (transfer
//! progress). Nothing here waits on the database.

use super::admission::{self, Admission, Arrival, Kind, Verdict};
use super::call::{self, CallMsg, CallSetup, SigCmd};
use super::drain::{Drain, Phase, BYE_GRACE};
use super::media::{Media, MediaClock, MediaCmd, MediaSetup};
use super::operator_leg::{operator_token, OperatorLegSetup};
use super::SipState;
use super::{PromptAudio, RtpPorts};
use crate::calls::sealed::{NumberSeal, SealedNumber};
use crate::metrics::{DtmfLabels, SipMethodLabels, SipRefusedLabels, SipStatusLabels};
use ivr::domain::{CallId, Caller, PhoneNumber};
use ivr::rtp::parse_info_dtmf;
use ivr::sdp::{negotiate_body, LocalMedia};
use ivr::sip::{
    engine_call_id, invite_ok, options_response, parse, policy_response, refer_progress, reject_unparseable,
    require_response, response_to, response_with_reason, stamp_received, uri_host_port, ClientOutput, Dialog, IdGen,
    LocalVia, Message, Method, NameAddr, NonInviteClientTransaction, ParseError, Request, Response, ServerOutput,
    ServerTransactions, Timers, TxKey,
};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::Instrument;

/// How often the queue is checked for operators assigned to our calls.
const ASSIGNMENT_POLL: Duration = Duration::from_millis(250);
/// Every how many assignment polls the calls ended elsewhere are looked up (2 s).
const ENDED_POLL_TICKS: u64 = 8;
/// How often the SIP timers are checked.
const TIMER_TICK: Duration = Duration::from_millis(10);
/// Datagrams taken from the socket in one go.
const RECV_BATCH: usize = 64;

/// A call in progress, by SIP Call-ID.
struct CallEntry {
    call_id: CallId,
    invite: Request,
    invite_tx: TxKey,
    local_tag: String,
    answer_sdp: String,
    local_media: LocalMedia,
    dialog: Dialog,
    /// Where the INVITE came from: in-dialog requests go there when the target is not an address.
    source: SocketAddr,
    control: mpsc::UnboundedSender<CallMsg>,
    media: Media,
    answered: bool,
    /// The caller's number sealed for this call (an operator's text request opens it).
    sealed_number: Option<SealedNumber>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ClientKind {
    Bye,
    Refer { sip_call_id: String },
}

struct Client {
    tx: NonInviteClientTransaction,
    to: SocketAddr,
    kind: ClientKind,
    /// A final response came (the transaction only absorbs retransmissions now).
    answered: bool,
}

struct Signalling {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    /// The address written in SDP and Contact (the bound one, or loopback when bound to any).
    advertised: IpAddr,
    ports: RtpPorts,
    clock: MediaClock,
    state: Arc<SipState>,
    audio: Arc<PromptAudio>,
    sig_tx: mpsc::UnboundedSender<SigCmd>,
    layer: ServerTransactions<SocketAddr>,
    ids: IdGen,
    calls: HashMap<String, CallEntry>,
    /// Engine call ids of our calls, shared with the assignment poller, with each caller's
    /// sealed number (for operators' text requests).
    local_ids: Arc<Mutex<LocalCalls>>,
    clients: Vec<Client>,
    /// Who may send, how fast, how many calls (`admission.rs`).
    edge: Admission,
    /// Serving, or draining towards a stop (`drain.rs`).
    phase: Phase,
}

pub(super) async fn run(
    server: super::SipServer,
    drain: Drain,
    state: Arc<SipState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let super::SipServer { socket, local, ports, clock, admission: edge } = server;
    let audio =
        Arc::new(PromptAudio::new(state.voice.prompts.clone(), state.voice.catalog.clone(), Some(state.tts.clone())));
    let (sig_tx, mut sig_rx) = mpsc::unbounded_channel();
    let advertised = if local.ip().is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { local.ip() };
    let local_ids = Arc::new(Mutex::new(LocalCalls::new()));
    let poller = tokio::spawn(poll_assignments(state.clone(), local_ids.clone(), sig_tx.clone()));
    let mut s = Signalling {
        socket: socket.clone(),
        local,
        advertised,
        ports,
        clock,
        state,
        audio,
        sig_tx,
        layer: ServerTransactions::new(Timers::default(), rand::random()).with_grouping(admission::source_group),
        ids: IdGen::new(rand::random()),
        calls: HashMap::new(),
        local_ids,
        clients: Vec::new(),
        edge,
        phase: Phase::Serving,
    };
    tracing::info!(addr = %local, "SIP server listening (UDP)");
    tokio::pin!(shutdown);
    let mut buf = vec![0u8; 65_535];
    // SIP timers (T1 = 500 ms and up) are checked on a 10 ms tick: one sweep of the transaction
    // table per tick rather than one search for the next deadline per datagram.
    let mut tick = tokio::time::interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = socket.recv_from(&mut buf) => {
                match r {
                    Ok((n, source)) => s.on_datagram(&buf[..n], source),
                    Err(e) => tracing::debug!(error = %e, "SIP socket receive error"),
                }
                // Take whatever else is already waiting before anything else.
                for _ in 0..RECV_BATCH {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, source)) => s.on_datagram(&buf[..n], source),
                        Err(_) => break,
                    }
                }
            }
            Some(cmd) = sig_rx.recv() => s.on_cmd(cmd),
            _ = drain.start.cancelled(), if s.phase == Phase::Serving => {
                tracing::info!(calls = s.calls.len(), within_secs = drain.within.as_secs(), "SIP draining: new calls refused");
                s.phase = Phase::Draining { until: Instant::now() + drain.within };
            }
            _ = tick.tick() => {
                if s.drain_step(Instant::now()) {
                    drain.done.cancel();
                }
                s.state.metrics.sip_transactions.set(i64::try_from(s.layer.len()).unwrap_or(i64::MAX));
                if s.next_deadline().is_some_and(|d| d <= Instant::now()) {
                    s.on_timers();
                }
            }
        }
    }
    poller.abort();
    s.hang_up_all();
    tracing::info!("SIP server stopped");
}

impl Signalling {
    fn contact(&self) -> String {
        format!("sip:helpline@{}", SocketAddr::new(self.advertised, self.local.port()))
    }

    fn next_deadline(&self) -> Option<Instant> {
        let clients = self.clients.iter().filter_map(|c| c.tx.deadline()).min();
        match (self.layer.next_deadline(), clients) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn send_bytes(&self, bytes: &[u8], to: SocketAddr) {
        if let Err(e) = self.socket.try_send_to(bytes, to) {
            tracing::debug!(error = %e, %to, "SIP send failed");
        }
    }

    fn send_response(&self, response: &Response, to: SocketAddr) {
        self.state.metrics.sip_responses.get_or_create(&SipStatusLabels { status: response.status }).inc();
        self.send_bytes(&response.to_bytes(), to);
    }

    fn on_datagram(&mut self, bytes: &[u8], source: SocketAddr) {
        if bytes.len() > admission::MAX_MESSAGE {
            return self.on_oversized(bytes, source);
        }
        match parse(bytes) {
            Err(ParseError::Empty) => {}
            Err(e) => {
                self.count_request("malformed");
                tracing::debug!(error = %e, %source, "malformed SIP message");
                if let Some(response) = reject_unparseable(bytes, &e) {
                    self.send_response(&response, source);
                }
            }
            Ok(Message::Response(r)) => self.on_response(r),
            Ok(Message::Request(mut req)) => {
                self.count_request(req.method.as_str());
                if !self.admit(&req, source) {
                    return;
                }
                if let Err(e) = stamp_received(&mut req, source) {
                    if let Some(response) = reject_unparseable(bytes, &e) {
                        self.send_response(&response, source);
                    }
                    return;
                }
                match self.layer.on_request(req, source, Instant::now()) {
                    Ok(outputs) => self.process(outputs, source),
                    Err(e) => tracing::debug!(error = %e, "request not matched to a transaction"),
                }
            }
        }
    }

    /// The edge's checks, before the request reaches the transaction layer: a refused request is
    /// answered once (statelessly: no transaction kept, nothing retransmitted) and takes no port
    /// and no row. The requests of calls this node holds (retransmitted INVITEs, ACKs, CANCELs,
    /// in-dialog requests) pass the rate checks; a new INVITE or out-of-dialog request from a
    /// source outside the allow-list is challenged when digest authentication is set (`401`).
    fn admit(&mut self, req: &Request, source: SocketAddr) -> bool {
        if !self.edge.permits(source.ip()) {
            self.count_refused(Verdict::Forbidden.reason());
            self.refuse(req, 403, "Forbidden", None, source);
            return false;
        }
        let of_a_call = req.headers.call_id().ok().is_some_and(|id| self.calls.contains_key(id));
        let in_dialog = req.headers.to_addr().ok().is_some_and(|to| to.tag().is_some());
        let kind = match req.method {
            Method::Ack if !of_a_call => Kind::StrayAck,
            _ if of_a_call => Kind::OfACall,
            Method::Invite if !in_dialog => Kind::NewInvite,
            Method::Cancel => Kind::Other { authenticable: false },
            _ => Kind::Other { authenticable: !in_dialog },
        };
        if self.phase != Phase::Serving
            && (kind == Kind::NewInvite || (req.method == Method::Options && kind != Kind::OfACall))
        {
            self.count_refused("draining");
            self.refuse(req, 503, "Draining", Some(60), source);
            return false;
        }
        if req.method != Method::Ack
            && req.method != Method::Cancel
            && (self.layer.len() >= admission::MAX_TRANSACTIONS
                || self.layer.live_in_group_of(&source) >= admission::MAX_TRANSACTIONS_PER_SOURCE)
        {
            self.count_refused("transactions");
            self.refuse(req, 503, "Service Unavailable", Some(1), source);
            return false;
        }
        let arrival = Arrival {
            source: source.ip(),
            kind,
            method: req.method.as_str(),
            authorization: req.headers.get("Authorization"),
        };
        let verdict = self.edge.admit(&arrival, self.calls.len(), Instant::now());
        match &verdict {
            Verdict::Admit => return true,
            Verdict::Forbidden => self.refuse(req, 403, "Forbidden", None, source),
            Verdict::AuthFailed => self.refuse(req, 403, "Wrong Credentials", None, source),
            Verdict::Challenge(challenge) => {
                self.refuse_with(req, 401, "Unauthorized", ("WWW-Authenticate", challenge), source)
            }
            Verdict::RateLimited { retry_after } => {
                self.refuse(req, 503, "Too Many Calls From This Source", Some(*retry_after), source)
            }
            Verdict::RequestRateLimited { retry_after } => {
                self.refuse(req, 503, "Too Many Requests From This Source", Some(*retry_after), source)
            }
            Verdict::Busy { retry_after } => self.refuse(req, 503, "Too Many Calls", Some(*retry_after), source),
        }
        self.count_refused(verdict.reason());
        false
    }

    /// Answers `req` once with one extra header, outside any transaction (an ACK gets nothing).
    fn refuse_with(&mut self, req: &Request, status: u16, reason: &str, header: (&str, &str), source: SocketAddr) {
        if req.method == Method::Ack {
            return;
        }
        let tag = self.ids.tag();
        let mut response = response_with_reason(req, status, reason, &tag);
        response.headers.push(header.0, header.1.to_owned());
        self.send_response(&response, source);
    }

    /// Answers `req` once, outside any transaction (an ACK gets nothing).
    fn refuse(&mut self, req: &Request, status: u16, reason: &str, retry_after: Option<u32>, source: SocketAddr) {
        if req.method == Method::Ack {
            return;
        }
        let tag = self.ids.tag();
        let mut response = response_with_reason(req, status, reason, &tag);
        if let Some(secs) = retry_after {
            response.headers.push("Retry-After", secs.to_string());
        }
        self.send_response(&response, source);
    }

    /// A datagram over [`admission::MAX_MESSAGE`]: dropped and counted; a request from an
    /// allowed source that still parses gets `513` once.
    fn on_oversized(&mut self, bytes: &[u8], source: SocketAddr) {
        self.count_refused("oversized");
        tracing::debug!(%source, len = bytes.len(), "oversized SIP datagram dropped");
        if !self.edge.permits(source.ip()) {
            return;
        }
        if let Ok(Message::Request(req)) = parse(bytes) {
            self.refuse(&req, 513, "Message Too Large", None, source);
        }
    }

    /// One step of the drain (on the timer tick); `true` once it is over.
    fn drain_step(&mut self, now: Instant) -> bool {
        match self.phase {
            Phase::Serving | Phase::Done => false,
            Phase::Draining { .. } if self.calls.is_empty() => {
                self.phase = Phase::Ending { until: now + BYE_GRACE };
                false
            }
            Phase::Draining { until } if now >= until => {
                tracing::info!(calls = self.calls.len(), "drain time over: goodbye and BYE to every call");
                for entry in self.calls.values() {
                    let _ = entry.control.send(CallMsg::Drain);
                }
                self.phase = Phase::Ending { until: now + BYE_GRACE };
                false
            }
            Phase::Draining { .. } => false,
            Phase::Ending { until }
                if (self.calls.is_empty() && self.clients.iter().all(|c| c.answered)) || now >= until =>
            {
                self.phase = Phase::Done;
                tracing::info!(left = self.calls.len(), "SIP drained");
                true
            }
            Phase::Ending { .. } => false,
        }
    }

    fn count_refused(&self, reason: &str) {
        self.state.metrics.sip_refused.get_or_create(&SipRefusedLabels { reason: reason.to_owned() }).inc();
    }

    fn count_request(&self, method: &str) {
        let method = match method {
            "INVITE" | "ACK" | "BYE" | "CANCEL" | "OPTIONS" | "INFO" | "REFER" | "NOTIFY" | "malformed" => method,
            _ => "other",
        };
        self.state.metrics.sip_requests.get_or_create(&SipMethodLabels { method: method.to_owned() }).inc();
    }

    fn process(&mut self, outputs: Vec<ServerOutput<SocketAddr>>, source: SocketAddr) {
        for out in outputs {
            match out {
                ServerOutput::Send { to, response } => self.send_response(&response, to),
                ServerOutput::Request { tx, request, local_tag } => self.on_request(tx, request, local_tag, source),
                ServerOutput::Ack { ack, .. } => {
                    if let Some(entry) = ack.headers.call_id().ok().and_then(|id| self.calls.get(id)) {
                        let _ = entry.control.send(CallMsg::Ack);
                    }
                }
                ServerOutput::Cancelled { tx } => {
                    if let Some(id) = self.call_by_invite(&tx) {
                        tracing::info!(call_id = %id, "call cancelled before the answer");
                        self.drop_call(&id, false);
                    }
                }
                ServerOutput::NoAck { tx, status } => {
                    if let Some(id) = self.call_by_invite(&tx) {
                        tracing::warn!(call_id = %id, status, "our answer was never acknowledged: hanging up");
                        self.drop_call(&id, (200..300).contains(&status));
                    }
                }
            }
        }
    }

    fn call_by_invite(&self, tx: &TxKey) -> Option<String> {
        self.calls.iter().find(|(_, e)| &e.invite_tx == tx).map(|(id, _)| id.clone())
    }

    fn respond(&mut self, tx: &TxKey, response: Response) {
        match self.layer.respond(tx, response, Instant::now()) {
            Ok(outputs) => {
                for out in outputs {
                    if let ServerOutput::Send { to, response } = out {
                        self.send_response(&response, to);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "response not sent"),
        }
    }

    fn on_request(&mut self, tx: TxKey, req: Request, tag: String, source: SocketAddr) {
        if let Some(r) = require_response(&req, &tag) {
            return self.respond(&tx, r);
        }
        let in_dialog = req.headers.to_addr().ok().is_some_and(|to| to.tag().is_some());
        match (&req.method, in_dialog) {
            (Method::Options, _) => {
                let r = options_response(&req, &tag);
                self.respond(&tx, r)
            }
            (Method::Invite, false) => self.new_call(tx, req, tag, source),
            (Method::Invite | Method::Bye | Method::Info | Method::Notify | Method::Refer, true) => {
                self.in_dialog(tx, req, tag)
            }
            (Method::Bye | Method::Info | Method::Notify | Method::Refer, false) => {
                let r = response_to(&req, 481, &tag);
                self.respond(&tx, r)
            }
            _ => {
                let r = policy_response(&req, &tag).unwrap_or_else(|| response_to(&req, 405, &tag));
                self.respond(&tx, r)
            }
        }
    }

    fn new_call(&mut self, tx: TxKey, req: Request, tag: String, source: SocketAddr) {
        let Ok(sip_call_id) = req.headers.call_id().map(str::to_owned) else {
            return self.respond(&tx, response_with_reason(&req, 400, "Missing Call-ID", &tag));
        };
        if self.calls.contains_key(&sip_call_id) {
            return self.respond(&tx, response_to(&req, 482, &tag));
        }
        // A carrier's transfer to a browser operator: the operator leg of a call, not a caller.
        // Or a carrier's `<Dial><Sip>` claiming a callback's browser leg (its law only).
        let mut callback = None;
        let operator_leg = match operator_token(&req.uri) {
            Some(token) => match self.state.phone.take_transfer(token) {
                Some(call_id) => Some(call_id),
                None => match self.state.phone.take_callback(token) {
                    Some(claim) => {
                        let call_id = claim.call_id.clone();
                        callback = Some(claim);
                        Some(call_id)
                    }
                    // Nobody else can ring an operator.
                    None => {
                        return self.respond(&tx, response_with_reason(&req, 404, "No Such Operator Transfer", &tag))
                    }
                },
            },
            None => None,
        };
        let engine_id = match &operator_leg {
            Some(call_id) => CallId::parse(call_id).map_err(|_| ()),
            None => engine_call_id(&sip_call_id, &self.state.secret).map_err(|_| ()),
        };
        let Ok(call_id) = engine_id else {
            return self.respond(&tx, response_with_reason(&req, 400, "Bad Call-ID", &tag));
        };
        let rtp = match self.bind_rtp() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "no RTP port available");
                return self.respond(&tx, response_with_reason(&req, 503, "No Media Port Available", &tag));
            }
        };
        let rtp_port = rtp.local_addr().map(|a| a.port()).unwrap_or_default();
        let mut local_media = LocalMedia::new(self.advertised, rtp_port, u64::from(rand::random::<u32>()));
        if let Some(claim) = &callback {
            local_media = local_media.only(claim.codec);
        }
        let negotiated = match negotiate_body(&req.body, &local_media) {
            Ok(n) => n,
            Err(e) => {
                tracing::info!(error = %e, "offer refused");
                return self.respond(&tx, response_with_reason(&req, e.status_code(), e.reason_phrase(), &tag));
            }
        };
        let dialog = match Dialog::new_uas(&req, &tag, &self.contact()) {
            Ok(d) => d,
            Err(e) => return self.respond(&tx, response_with_reason(&req, e.status_code(), &e.reason_phrase(), &tag)),
        };
        let number = req.headers.from_addr().ok().and_then(|f| uri_user(&f).and_then(|u| PhoneNumber::parse(&u).ok()));
        let caller = number.as_ref().map(|n| Caller::from_number(n, &self.state.secret));
        let sealed_number = number.as_ref().map(|n| NumberSeal::new(&self.state.secret).seal(&call_id, n));
        let called = req.headers.to_addr().ok().and_then(|t| uri_user(&t));
        self.respond(&tx, response_to(&req, 180, &tag));

        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let media = self.clock.add(
            MediaSetup {
                socket: rtp,
                codec: negotiated.codec,
                payload_type: negotiated.codec_payload_type,
                telephone_event: negotiated.telephone_event_payload_type,
                remote: negotiated.remote_rtp,
                sending: negotiated.we_send(),
                metrics: self.state.metrics.clone(),
                call_id: call_id.as_str().to_owned(),
                rtp_timeout: (self.state.settings.rtp_timeout_secs > 0)
                    .then(|| Duration::from_secs(self.state.settings.rtp_timeout_secs)),
                source: crate::media::strict::RtpSource::new(
                    negotiated.remote_rtp.map(|a| a.ip()).into_iter().chain([source.ip()]),
                ),
            },
            events_tx,
        );
        if operator_leg.is_some() {
            let control = super::operator_leg::spawn(OperatorLegSetup {
                sip_call_id: sip_call_id.clone(),
                call_id: call_id.as_str().to_owned(),
                media: media.clone(),
                signalling: self.sig_tx.clone(),
                phone: self.state.phone.clone(),
                callback,
            });
            self.calls.insert(
                sip_call_id,
                CallEntry {
                    call_id,
                    answer_sdp: negotiated.answer_sdp(),
                    invite: req,
                    invite_tx: tx,
                    local_tag: tag,
                    local_media,
                    dialog,
                    source,
                    control,
                    media,
                    answered: false,
                    sealed_number: None,
                },
            );
            return;
        }
        let control = call::spawn(CallSetup {
            sip_call_id: sip_call_id.clone(),
            call_id: call_id.clone(),
            caller,
            sealed_number: sealed_number.clone(),
            called,
            runtime: self.state.calls.clone(),
            clock: self.state.clock.clone(),
            audio: self.audio.clone(),
            media: media.clone(),
            media_events: events_rx,
            signalling: self.sig_tx.clone(),
            phone: self.state.phone.clone(),
            voicemail_max: Duration::from_secs(u64::from(self.state.settings.voicemail_max_secs)),
            db: self.state.db.clone(),
            node: self.state.node.clone(),
            texts: self.state.texts.clone(),
        });
        self.calls.insert(
            sip_call_id,
            CallEntry {
                call_id,
                answer_sdp: negotiated.answer_sdp(),
                invite: req,
                invite_tx: tx,
                local_tag: tag,
                local_media,
                dialog,
                source,
                control,
                media,
                answered: false,
                sealed_number,
            },
        );
    }

    fn bind_rtp(&self) -> std::io::Result<std::net::UdpSocket> {
        let socket = self.ports.bind_std(self.local.ip())?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    }

    fn in_dialog(&mut self, tx: TxKey, req: Request, tag: String) {
        let sip_call_id = req.headers.call_id().unwrap_or_default().to_owned();
        let Some(entry) = self.calls.get_mut(&sip_call_id) else {
            return self.respond(&tx, response_to(&req, 481, &tag));
        };
        if let Err(e) = entry.dialog.on_remote_request(&req) {
            let r = response_with_reason(&req, e.status_code(), &e.reason_phrase(), &tag);
            return self.respond(&tx, r);
        }
        let tag = entry.local_tag.clone();
        match req.method {
            Method::Bye => {
                let r = response_to(&req, 200, &tag);
                self.respond(&tx, r);
                tracing::info!(call_id = %entry_id(&self.calls, &sip_call_id), "caller hung up (BYE)");
                self.drop_call(&sip_call_id, false);
            }
            Method::Info => {
                let ct = req.headers.content_type().unwrap_or_default();
                let r = match parse_info_dtmf(&ct, &req.body) {
                    Ok(digit) => {
                        self.state.metrics.dtmf_received.get_or_create(&DtmfLabels { source: "info".into() }).inc();
                        let _ = entry.control.send(CallMsg::Digit(digit));
                        response_to(&req, 200, &tag)
                    }
                    Err(e) => response_with_reason(&req, 415, &e.to_string().replace(['\r', '\n'], " "), &tag),
                };
                self.respond(&tx, r);
            }
            Method::Notify => {
                let r = match refer_progress(&req) {
                    Some(p) => {
                        let _ = entry.control.send(CallMsg::ReferProgress(p));
                        response_to(&req, 200, &tag)
                    }
                    None => response_to(&req, 489, &tag),
                };
                self.respond(&tx, r);
            }
            Method::Invite => {
                entry.local_media.bump_version();
                let r = match negotiate_body(&req.body, &entry.local_media) {
                    Ok(n) => {
                        let _ = entry.media.send(MediaCmd::Remote { addr: n.remote_rtp, sending: n.we_send() });
                        tracing::info!(sending = n.we_send(), "re-INVITE (hold/resume)");
                        let contact = format!("sip:helpline@{}", SocketAddr::new(self.advertised, self.local.port()));
                        invite_ok(&req, &tag, &contact, &n.answer_sdp())
                    }
                    Err(e) => response_with_reason(&req, e.status_code(), e.reason_phrase(), &tag),
                };
                self.respond(&tx, r);
            }
            _ => {
                let r = response_to(&req, 403, &tag);
                self.respond(&tx, r);
            }
        }
    }

    fn on_response(&mut self, response: Response) {
        let now = Instant::now();
        let Some(i) = self.clients.iter().position(|c| c.tx.matches(&response)) else { return };
        let kind = self.clients[i].kind.clone();
        if let Some(ClientOutput::Final(r)) = self.clients[i].tx.on_response(response, now) {
            self.clients[i].answered = true;
            if let ClientKind::Refer { sip_call_id } = kind {
                if let Some(entry) = self.calls.get(&sip_call_id) {
                    let accepted = r.is_success();
                    let _ = entry
                        .control
                        .send(CallMsg::ReferAnswered { accepted, reason: format!("SIP {} {}", r.status, r.reason) });
                }
            }
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        let outputs = self.layer.on_timeout(now);
        self.process(outputs, SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut failed_refers = Vec::new();
        for c in &mut self.clients {
            for out in c.tx.on_timeout(now) {
                match out {
                    ClientOutput::Send(bytes) => {
                        if let Err(e) = self.socket.try_send_to(&bytes, c.to) {
                            tracing::debug!(error = %e, "SIP resend failed");
                        }
                    }
                    ClientOutput::TimedOut => {
                        if let ClientKind::Refer { sip_call_id } = &c.kind {
                            failed_refers.push(sip_call_id.clone());
                        }
                    }
                    ClientOutput::Provisional(_) | ClientOutput::Final(_) => {}
                }
            }
        }
        self.clients.retain(|c| !c.tx.is_terminated());
        for id in failed_refers {
            if let Some(entry) = self.calls.get(&id) {
                let _ =
                    entry.control.send(CallMsg::ReferAnswered { accepted: false, reason: "REFER timed out".into() });
            }
        }
    }

    fn on_cmd(&mut self, cmd: SigCmd) {
        match cmd {
            SigCmd::Answer { sip_call_id } => {
                let contact = self.contact();
                let Some(entry) = self.calls.get_mut(&sip_call_id) else { return };
                entry.answered = true;
                // Known to this node (its assignments claimed here) only once it is recorded.
                let id = entry.call_id.as_str().to_owned();
                let sealed = entry.sealed_number.clone();
                self.lock_ids().insert(id, sealed);
                let Some(entry) = self.calls.get_mut(&sip_call_id) else { return };
                let ok = invite_ok(&entry.invite, &entry.local_tag, &contact, &entry.answer_sdp);
                let tx = entry.invite_tx.clone();
                self.respond(&tx, ok);
            }
            SigCmd::Reject { sip_call_id, status } => {
                if let Some(entry) = self.calls.remove(&sip_call_id) {
                    self.lock_ids().remove(entry.call_id.as_str());
                    let r = response_to(&entry.invite, status, &entry.local_tag);
                    self.respond(&entry.invite_tx, r);
                }
            }
            SigCmd::Hangup { sip_call_id } => {
                if let Some(entry) = self.calls.remove(&sip_call_id) {
                    self.lock_ids().remove(entry.call_id.as_str());
                    self.send_bye(entry);
                }
            }
            SigCmd::Refer { sip_call_id, target } => {
                let via = self.local_via();
                let branch = self.ids.branch();
                let Some(entry) = self.calls.get_mut(&sip_call_id) else { return };
                let refer = entry.dialog.refer(&via, &branch, &target);
                let to = next_hop(&entry.dialog, entry.source);
                self.start_client(&refer, to, ClientKind::Refer { sip_call_id });
            }
            SigCmd::EndedByServer { call_id } => {
                let sip_id = self.calls.iter().find(|(_, e)| e.call_id.as_str() == call_id).map(|(id, _)| id.clone());
                if let Some(sip_id) = sip_id {
                    tracing::warn!(call_id, "the call was ended by the server (quiet): BYE");
                    self.drop_call(&sip_id, true);
                }
            }
            SigCmd::Deliver { call_id, event } => {
                if let Some(entry) = self.calls.values().find(|e| e.call_id.as_str() == call_id) {
                    let _ = entry.control.send(CallMsg::Event(event));
                }
            }
        }
    }

    fn local_via(&self) -> LocalVia {
        LocalVia { sent_by: SocketAddr::new(self.advertised, self.local.port()).to_string() }
    }

    fn start_client(&mut self, request: &Request, to: SocketAddr, kind: ClientKind) {
        let (tx, first) = NonInviteClientTransaction::start(request, Timers::default(), Instant::now());
        if let ClientOutput::Send(bytes) = first {
            self.send_bytes(&bytes, to);
        }
        self.clients.push(Client { tx, to, kind, answered: false });
    }

    /// Ends our side: BYE if the call was answered (`bye`), media stopped at once, the control
    /// task told the caller is gone.
    fn drop_call(&mut self, sip_call_id: &str, bye: bool) {
        let Some(entry) = self.calls.remove(sip_call_id) else { return };
        self.lock_ids().remove(entry.call_id.as_str());
        let _ = entry.media.send(MediaCmd::Stop);
        let _ = entry.control.send(CallMsg::Gone);
        if bye {
            self.send_bye(entry);
        }
    }

    fn send_bye(&mut self, mut entry: CallEntry) {
        let _ = entry.media.send(MediaCmd::Stop);
        if !entry.answered {
            let r = response_to(&entry.invite, 480, &entry.local_tag);
            self.respond(&entry.invite_tx, r);
            return;
        }
        let via = self.local_via();
        let branch = self.ids.branch();
        let bye = entry.dialog.bye(&via, &branch);
        let to = next_hop(&entry.dialog, entry.source);
        self.start_client(&bye, to, ClientKind::Bye);
    }

    /// At shutdown: every answered call gets a BYE (once), every media stream stops.
    fn hang_up_all(&mut self) {
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            self.drop_call(&id, true);
        }
    }

    fn lock_ids(&self) -> std::sync::MutexGuard<'_, LocalCalls> {
        self.local_ids.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// This node's recorded calls, by engine call id, each with its caller's sealed number.
type LocalCalls = HashMap<String, Option<SealedNumber>>;

fn entry_id(calls: &HashMap<String, CallEntry>, sip_call_id: &str) -> String {
    calls.get(sip_call_id).map(|e| e.call_id.as_str().to_owned()).unwrap_or_default()
}

/// The user part of a SIP URI (`sip:+393331234567@host` → `+393331234567`).
fn uri_user(addr: &NameAddr) -> Option<String> {
    let rest = addr
        .uri
        .strip_prefix("sip:")
        .or_else(|| addr.uri.strip_prefix("sips:"))
        .or_else(|| addr.uri.strip_prefix("tel:"))?;
    let user = rest.split(['@', ';']).next()?;
    (!user.is_empty()).then(|| user.to_owned())
}

/// Where an in-dialog request goes: the next hop's address when it is an IP literal, otherwise
/// where the INVITE came from (we do no DNS).
fn next_hop(dialog: &Dialog, source: SocketAddr) -> SocketAddr {
    let uri = dialog.next_hop_uri();
    uri_host_port(&uri)
        .and_then(|(host, port)| {
            let ip: IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
            Some(SocketAddr::new(ip, port.unwrap_or(5060)))
        })
        .unwrap_or(source)
}

/// Hands operators assigned to our waiting calls (`queue_entries.status = 'assigned'`, set by the
/// ACD on any node) to those calls as `OperatorAssigned`, marking the entry `answered` first so
/// that exactly one node delivers it.
async fn poll_assignments(state: Arc<SipState>, local: Arc<Mutex<LocalCalls>>, sig: mpsc::UnboundedSender<SigCmd>) {
    let mut tick = tokio::time::interval(ASSIGNMENT_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        ticks += 1;
        let ours: Vec<String> = local.lock().map(|l| l.keys().cloned().collect()).unwrap_or_default();
        if ours.is_empty() {
            continue;
        }
        // Every 2 s: calls of ours the server ended in the call log (the quiet sweep, on any
        // node) get their BYE from here — looked up by id (the primary key), never by a scan.
        // Only those whose end is a `hung_up` event: an engine's own hang-up is carried out by
        // the call after its goodbye, never cut short from here.
        if ticks >= ENDED_POLL_TICKS {
            ticks = 0;
            for chunk in ours.chunks(500) {
                let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                let sql = format!(
                    "SELECT c.call_id FROM calls c WHERE c.call_id IN ({}) AND c.ended_at IS NOT NULL AND EXISTS \
                     (SELECT 1 FROM call_events e WHERE e.call_id = c.call_id AND e.kind = 'hung_up')",
                    marks.join(", ")
                );
                let mut query = sqlx::query_as::<_, (String,)>(&sql);
                for id in chunk {
                    query = query.bind(id);
                }
                for (call_id,) in query.fetch_all(state.db.pool()).await.unwrap_or_default() {
                    if sig.send(SigCmd::EndedByServer { call_id }).is_err() {
                        return;
                    }
                }
            }
        }
        carry_out_texts(&state, &local, &ours).await;
        let rows: Vec<(String, Option<String>, Option<String>)> =
            match sqlx::query_as("SELECT call_id, operator, target FROM queue_entries WHERE status = 'assigned'")
                .fetch_all(state.db.pool())
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::debug!(error = %e, "queue poll failed");
                    continue;
                }
            };
        for (call_id, operator, target) in rows {
            let ours = local.lock().map(|l| l.contains_key(&call_id)).unwrap_or(false);
            let (Some(operator), Some(target), true) = (operator, target, ours) else { continue };
            let claimed = state.db.with_lock_turn(sqlx::query(
                "UPDATE queue_entries SET status = 'answered', updated_at = $2 WHERE call_id = $1 AND status = 'assigned'",
            )
            .bind(&call_id)
            .bind(state.clock.now().timestamp_millis())
            .execute(state.db.pool()))
            .await
            .map(|r| r.rows_affected() == 1)
            .unwrap_or(false);
            if claimed
                && sig
                    .send(SigCmd::Deliver { call_id, event: ivr::engine::Event::OperatorAssigned { operator, target } })
                    .is_err()
            {
                return;
            }
        }
    }
}

/// Operators' text requests for our calls (`text_messages` rows left `pending` by the node the
/// operator's page is on; `operators::sms`): each claimed (`sending`, so exactly one node sends
/// it) and carried out off this loop with the caller's sealed number, which only this node has.
async fn carry_out_texts(state: &Arc<SipState>, local: &Mutex<LocalCalls>, ours: &[String]) {
    if !state.texts.sends() {
        return;
    }
    for chunk in ours.chunks(500) {
        let marks: Vec<String> = (2..=chunk.len() + 1).map(|i| format!("${i}")).collect();
        let sql =
            format!("SELECT id, call_id FROM text_messages WHERE status = $1 AND call_id IN ({})", marks.join(", "));
        let mut query = sqlx::query_as::<_, (i64, String)>(&sql).bind(crate::calls::texts::PENDING);
        for id in chunk {
            query = query.bind(id);
        }
        let pending = match query.fetch_all(state.db.pool()).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(error = %e, "text request poll failed");
                return;
            }
        };
        for (request, call_id) in pending {
            let claimed = state
                .db
                .with_lock_turn(
                    sqlx::query("UPDATE text_messages SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4")
                        .bind(crate::calls::texts::SENDING)
                        .bind(state.clock.now().timestamp_millis())
                        .bind(request)
                        .bind(crate::calls::texts::PENDING)
                        .execute(state.db.pool()),
                )
                .await
                .map(|r| r.rows_affected() == 1)
                .unwrap_or(false);
            if !claimed {
                continue;
            }
            let number = local.lock().ok().and_then(|l| l.get(&call_id).cloned());
            let (Some(number), Ok(id)) = (number, CallId::parse(&call_id)) else {
                // The call ended between the look and the claim: say so in the request's row.
                let ended = sqlx::query(
                    "UPDATE text_messages SET status = 'failed', detail = 'the call has ended', updated_at = $1 \
                     WHERE id = $2",
                )
                .bind(state.clock.now().timestamp_millis())
                .bind(request)
                .execute(state.db.pool());
                if let Err(e) = state.db.with_lock_turn(ended).await {
                    tracing::warn!(error = %e, "a text request's end not recorded");
                }
                continue;
            };
            let sending = state.texts.carry_out(request, id, number);
            tokio::spawn(sending.instrument(tracing::info_span!("text_request", call_id)));
        }
    }
}
