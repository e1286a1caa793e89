//! The WebRTC media driver: the one UDP socket every browser leg uses (`HELPLINE_WEBRTC_ADDR`),
//! read and written on a thread of its own, `webrtc-media`, that feeds the legs their datagrams
//! and their timeouts.
//!
//! Why a dedicated thread running a **current-thread tokio runtime**, rather than a task on the
//! server's runtime or a plain blocking loop: media must not wait behind the request runtime's
//! work (HTTP, the database, the call runtime), as the SIP media clock must not; and unlike a
//! blocking `recv_from` with a read timeout (str0m's examples), the runtime wakes at once on
//! whichever comes first — a datagram, a command from another thread (a packet to send, a new
//! leg, a hang-up) or the earliest leg's timeout — with no polling interval added to the audio's
//! delay. It also lets the SIP side of a bridged call (its RTP socket) be read on this same
//! thread later, so a packet crosses the bridge without changing threads.
//!
//! A leg may be **bridged** to a call's SIP leg ([`LegHandle::bridge`]): the call's RTP socket is
//! then read on this thread too, and each packet crosses `ivr::rtp::Bridge` here, in both
//! directions, without changing threads; hold stops the forwarding both ways (the caller hears
//! the SIP side's hold audio instead).
//!
//! A bridged call becomes a **conference** when another leg joins it ([`LegHandle::join`]: a
//! supervisor listening, whispering or barging in, a mediator): from then on every party's
//! audio goes into the call's [`Mixer`] and each party gets its mix on this thread's 20 ms tick
//! (the same grid the SIP media clock keeps); when the last guest leaves, the call goes back to
//! the plain bridge, each stream continuing where the mixer left it. A guest may also be a call
//! this node placed through the SIP trunk (an outside interpreter, [`WebRtcMedia::join_trunk`]):
//! its RTP socket is read on this thread too, and it is a party everyone hears and who hears
//! everyone else. A two-party call never
//! decodes a sample and the tick runs only while some call is mixed.
//!
//! Legs are found by the datagram's source address (learned from the first datagram a leg
//! accepts: STUN carries the leg's ICE username), and timeouts are kept in a heap, so the cost
//! per datagram does not grow with the number of calls.

use super::mixer::{Audience, Mixed, Mixer, PartyConfig, PartyId};
use super::strict::{RtpSource, Source};
use super::webrtc::{LegEvent, LegOutput, ReceivedRtp, WebRtcError, WebRtcLeg};
use crate::metrics::{DirectionLabels, Metrics, RtpForeignLabels};
use ivr::rtp::{
    Bridge, Forward, LegPayloads, RtpPacket, Side, StreamStart, Verdict, PACKET_INTERVAL, SAMPLES_PER_PACKET,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// The largest datagram read: above any RTP, RTCP, STUN or DTLS packet a leg gets.
const MAX_DATAGRAM: usize = 2048;

enum Command {
    Add(u64, Box<WebRtcLeg>, mpsc::UnboundedSender<LegEvent>),
    Send(u64, Forward, Arc<[u8]>),
    Close(u64),
    Bridge(u64, Box<SipSide>),
    Unbridge(u64),
    Hold(u64, bool),
    Reoffer(u64, String, oneshot::Sender<Result<String, WebRtcError>>),
    /// (host, guest, audience): the guest leg joins the host's bridged call.
    Join(u64, u64, Audience),
    /// (host, guest, audience): who hears the guest now.
    Audience(u64, u64, Audience),
    /// (host, guest): the guest leaves the host's call.
    Leave(u64, u64),
    /// (host, guest): the host leg leaves its call and the guest carries it on (an operator who
    /// leaves a mediator with the caller).
    HandOver(u64, u64),
    /// (host, at most this many 20 ms frames, where the audio goes): record the call of leg
    /// `host`.
    Record(u64, usize, oneshot::Sender<RecordedAudio>),
    /// (host): stop recording the call of leg `host` (its audio goes where `Record` said).
    StopRecording(u64),
    /// (host, party, its RTP): a call placed through the SIP trunk (an outside interpreter)
    /// joins the host's bridged call as a party everyone hears and who hears everyone else.
    JoinTrunk(u64, u64, Box<SipSide>),
    Stop,
}

/// The caller's party id in a conference (legs' ids start at 1).
const CALLER: PartyId = 0;
/// The recorder's party id in a conference: a party nobody hears, which hears everyone the
/// caller and the operator hear (never a whispering or listening supervisor).
const RECORDER: PartyId = u64::MAX;

/// A call's recorded audio: G.711 of `codec`, 8,000 bytes a second, from the start to the stop
/// (or the end of the call's bridge, or the length limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedAudio {
    pub codec: ivr::sdp::Codec,
    pub g711: Vec<u8>,
}

impl RecordedAudio {
    /// The audio as 16-bit samples at 8 kHz.
    pub fn samples(&self) -> Vec<i16> {
        let decode = match self.codec {
            ivr::sdp::Codec::Pcma => ivr::rtp::alaw_to_linear,
            _ => ivr::rtp::ulaw_to_linear,
        };
        self.g711.iter().map(|&b| decode(b)).collect()
    }
}

/// A recording under way, in a call's conference: its audio goes to whoever waits for it when it
/// is dropped (stopped, or the bridge ended with the call).
struct Recording {
    audio: RecordedAudio,
    max_bytes: usize,
    done: Option<oneshot::Sender<RecordedAudio>>,
}

impl Recording {
    fn push(&mut self, payload: &[u8]) {
        let room = self.max_bytes.saturating_sub(self.audio.g711.len());
        self.audio.g711.extend_from_slice(&payload[..payload.len().min(room)]);
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let codec = self.audio.codec;
            let _ = done.send(std::mem::replace(&mut self.audio, RecordedAudio { codec, g711: Vec::new() }));
        }
    }
}

/// The SIP side of a bridged call: its RTP socket (a clone; the SIP adapter stops reading it
/// while bridged), where the caller's RTP goes, and what the call negotiated.
#[derive(Debug)]
pub struct SipSide {
    pub socket: std::net::UdpSocket,
    /// The caller's RTP address from its SDP; the source of the caller's packets wins once one
    /// arrives (symmetric RTP).
    pub remote: Option<SocketAddr>,
    pub payloads: LegPayloads,
    /// Strict RTP, shared with the SIP adapter's receive task: only the caller's packets cross
    /// the bridge (a re-INVITE's new address applies here too).
    pub source: Arc<std::sync::Mutex<RtpSource>>,
    /// Counts the caller's packets read here, so the SIP adapter's RTP timeout (no ghost calls)
    /// still runs while the bridge, not it, reads the socket.
    pub heard: Arc<AtomicU64>,
}

/// The running driver: hand it legs, get a [`LegHandle`] for each. The thread ends once this and
/// every handle are dropped.
#[derive(Clone)]
pub struct WebRtcMedia {
    tx: mpsc::UnboundedSender<Command>,
    local: SocketAddr,
    next_id: Arc<AtomicU64>,
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl WebRtcMedia {
    /// Starts the driver on `socket` (bound by the caller, port 0 allowed).
    pub fn start(socket: std::net::UdpSocket, metrics: Arc<Metrics>) -> std::io::Result<WebRtcMedia> {
        let local = socket.local_addr()?;
        socket.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new().name("webrtc-media".into()).spawn(move || {
            runtime.block_on(async move {
                match UdpSocket::from_std(socket) {
                    Ok(socket) => Driver::new(socket, local, metrics).run(rx).await,
                    Err(e) => tracing::error!(error = %e, "cannot use the WebRTC media socket"),
                }
            })
        })?;
        Ok(WebRtcMedia {
            tx,
            local,
            next_id: Arc::new(AtomicU64::new(1)),
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
        })
    }

    /// Closes every leg and ends the thread; the handle to join it (once: later calls get none).
    pub fn stop(&self) -> Option<std::thread::JoinHandle<()>> {
        let _ = self.tx.send(Command::Stop);
        self.thread.lock().ok().and_then(|mut t| t.take())
    }

    /// The socket's address (the candidate to announce, unless a public address is set).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `guest` joins the bridged call of leg `host` (its audio mixed from now on); `audience`
    /// says who hears it.
    pub fn join(&self, host: u64, guest: &LegHandle, audience: Audience) {
        let _ = self.tx.send(Command::Join(host, guest.id, audience));
    }

    /// Who hears `guest`, which joined the call of leg `host`, from now on.
    pub fn set_audience(&self, host: u64, guest: &LegHandle, audience: Audience) {
        let _ = self.tx.send(Command::Audience(host, guest.id, audience));
    }

    /// `guest` leaves the call of leg `host` (which goes back to the plain bridge when it was
    /// the last guest).
    pub fn leave(&self, host: u64, guest: &LegHandle) {
        let _ = self.tx.send(Command::Leave(host, guest.id));
    }

    /// The host leg leaves its bridged call and `guest`, which joined it, carries it from now
    /// on: the caller's RTP, the mixer (while other guests remain) or the plain bridge. The host
    /// leg is not closed here (its handle's owner drops it).
    pub fn hand_over(&self, host: u64, guest: &LegHandle) {
        let _ = self.tx.send(Command::HandOver(host, guest.id));
    }

    /// Records the bridged call of leg `host` (at most `max_secs`): its mixed audio arrives on
    /// the returned receiver once [`WebRtcMedia::stop_recording`] is called or the call's bridge
    /// ends. The receiver errs when the leg is not bridged (nothing to record).
    pub fn record(&self, host: u64, max_secs: u32) -> oneshot::Receiver<RecordedAudio> {
        let (done, audio) = oneshot::channel();
        let frames = usize::try_from(max_secs).unwrap_or(usize::MAX).saturating_mul(50);
        let _ = self.tx.send(Command::Record(host, frames, done));
        audio
    }

    /// Stops recording the call of leg `host`.
    pub fn stop_recording(&self, host: u64) {
        let _ = self.tx.send(Command::StopRecording(host));
    }

    /// A call this node placed through the SIP trunk (an outside interpreter) joins the bridged
    /// call of leg `host`: its RTP socket is read on this thread, its audio is heard by everyone
    /// and it hears everyone else. The party's id, for [`WebRtcMedia::leave_party`].
    pub fn join_trunk(&self, host: u64, sip: SipSide) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Command::JoinTrunk(host, id, Box::new(sip)));
        id
    }

    /// The party `party` (a trunk call joined with [`WebRtcMedia::join_trunk`]) leaves the
    /// call of leg `host`; its socket is no longer read.
    pub fn leave_party(&self, host: u64, party: u64) {
        let _ = self.tx.send(Command::Leave(host, party));
    }

    /// Runs `leg` (built from an offer with [`WebRtcLeg::accept_offer`] on the caller's thread,
    /// so certificate generation never holds up the media) until it fails or closes.
    pub fn add(&self, leg: WebRtcLeg) -> LegHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (events_tx, events) = mpsc::unbounded_channel();
        let _ = self.tx.send(Command::Add(id, Box::new(leg), events_tx));
        LegHandle { id, tx: self.tx.clone(), events }
    }
}

/// One leg's handle: its events (media states, received RTP) and the packets to send it. The
/// events end after the leg's last state (`Failed` or `Closed`); dropping the handle closes it.
pub struct LegHandle {
    id: u64,
    tx: mpsc::UnboundedSender<Command>,
    pub events: mpsc::UnboundedReceiver<LegEvent>,
}

impl LegHandle {
    /// The leg's id on the driver (a party's id in a conference).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends one forwarded packet to the browser (dropped unless the leg is connected).
    pub fn send(&self, packet: Forward, payload: Arc<[u8]>) {
        let _ = self.tx.send(Command::Send(self.id, packet, payload));
    }

    /// Hangs up the leg (RTCP BYE, DTLS close).
    pub fn close(&self) {
        let _ = self.tx.send(Command::Close(self.id));
    }

    /// Bridges the leg to a call's SIP side: from now on the browser's RTP goes to the caller and
    /// the caller's to the browser, on the media thread (no `Rtp` events any more).
    pub fn bridge(&self, sip: SipSide) {
        let _ = self.tx.send(Command::Bridge(self.id, Box::new(sip)));
    }

    /// Stops the bridge (the SIP side's socket is no longer read here).
    pub fn unbridge(&self) {
        let _ = self.tx.send(Command::Unbridge(self.id));
    }

    /// Hold: nothing forwarded either way until released.
    pub fn hold(&self, on: bool) {
        let _ = self.tx.send(Command::Hold(self.id, on));
    }

    /// The same browser's new offer (ICE restart): the answer, or why not.
    pub async fn reoffer(&self, offer: String) -> Result<String, WebRtcError> {
        let (reply, answer) = oneshot::channel();
        let _ = self.tx.send(Command::Reoffer(self.id, offer, reply));
        answer.await.unwrap_or(Err(WebRtcError::Ended))
    }
}

impl std::fmt::Debug for LegHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegHandle").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Drop for LegHandle {
    fn drop(&mut self) {
        self.close();
    }
}

struct Entry {
    leg: WebRtcLeg,
    events: mpsc::UnboundedSender<LegEvent>,
    /// The instant of the leg's live entry in the timeout heap (entries with another are stale).
    timeout: Option<Instant>,
    /// Source addresses routed to this leg.
    sources: Vec<SocketAddr>,
    bridged: Option<Bridged>,
    /// The host leg whose call this leg joined as a guest.
    joined: Option<u64>,
}

/// A leg's bridge to its call's SIP side.
struct Bridged {
    socket: Arc<UdpSocket>,
    /// The leg that carries the call now (the reader tags the caller's datagrams with it; a
    /// hand-over changes it).
    owner: Arc<AtomicU64>,
    remote: Option<SocketAddr>,
    source: Arc<std::sync::Mutex<RtpSource>>,
    heard: Arc<AtomicU64>,
    /// `helpline_rtp_foreign_packets_total{kind="other"}`: packets from anyone but the caller.
    foreign: Counter,
    bridge: Bridge,
    held: bool,
    reader: tokio::task::JoinHandle<()>,
    /// Scratch for the packet written to the caller.
    out: Vec<u8>,
    /// The last packets sent each way (a conference's streams continue them, and the other way).
    last_to_caller: Option<Forward>,
    last_to_browser: Option<Forward>,
    /// Set while other legs have joined the call.
    conference: Option<Conference>,
    /// What the call's SIP side negotiated.
    sip_payloads: LegPayloads,
    to_browser: Counter,
    to_caller: Counter,
    /// `helpline_browser_bridges`, one less when this bridge ends.
    up: Gauge,
}

impl Drop for Bridged {
    fn drop(&mut self) {
        self.reader.abort();
        self.up.dec();
    }
}

/// A bridged call with guests or a recording: its mixer (the caller is party [`CALLER`], each
/// leg its id, the recorder [`RECORDER`]).
struct Conference {
    mixer: Mixer,
    /// The guests' party ids: legs, and the trunk calls of `trunks`.
    guests: Vec<u64>,
    /// The guests that are calls placed through the SIP trunk (outside interpreters).
    trunks: Vec<TrunkGuest>,
    recording: Option<Recording>,
    /// `helpline_conferences`, one less when this conference ends.
    up: Gauge,
}

impl Drop for Conference {
    fn drop(&mut self) {
        self.up.dec();
    }
}

/// A datagram from a bridged call's SIP socket: (leg, source, datagram).
type SipDatagram = (u64, SocketAddr, Vec<u8>);

/// A datagram from a trunk guest's socket: (the leg carrying the call, the party, source,
/// datagram).
type TrunkDatagram = (u64, u64, SocketAddr, Vec<u8>);

/// A call placed through the SIP trunk, a guest of a conference: its RTP socket, read by a
/// small task on this thread.
struct TrunkGuest {
    id: u64,
    socket: Arc<UdpSocket>,
    remote: Option<SocketAddr>,
    source: Arc<std::sync::Mutex<RtpSource>>,
    heard: Arc<AtomicU64>,
    audio: u8,
    /// The leg carrying the call (a hand-over changes it).
    owner: Arc<AtomicU64>,
    reader: tokio::task::JoinHandle<()>,
    out: Vec<u8>,
}

impl Drop for TrunkGuest {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

struct Driver {
    socket: UdpSocket,
    local: SocketAddr,
    legs: HashMap<u64, Entry>,
    by_source: HashMap<SocketAddr, u64>,
    timeouts: BinaryHeap<Reverse<(Instant, u64)>>,
    sip_tx: mpsc::UnboundedSender<SipDatagram>,
    sip_rx: mpsc::UnboundedReceiver<SipDatagram>,
    trunk_tx: mpsc::UnboundedSender<TrunkDatagram>,
    trunk_rx: mpsc::UnboundedReceiver<TrunkDatagram>,
    metrics: Arc<Metrics>,
    /// Calls being mixed (the tick runs while there are any).
    conferences: usize,
    mixed: Vec<Mixed>,
}

impl Driver {
    fn new(socket: UdpSocket, local: SocketAddr, metrics: Arc<Metrics>) -> Driver {
        let (sip_tx, sip_rx) = mpsc::unbounded_channel();
        let (trunk_tx, trunk_rx) = mpsc::unbounded_channel();
        Driver {
            trunk_tx,
            trunk_rx,
            metrics,
            socket,
            local,
            legs: HashMap::new(),
            by_source: HashMap::new(),
            timeouts: BinaryHeap::new(),
            sip_tx,
            sip_rx,
            conferences: 0,
            mixed: Vec::new(),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        tracing::info!(addr = %self.local, "WebRTC media listening");
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut tick = tokio::time::interval(PACKET_INTERVAL);
        let mut mixing = false;
        loop {
            let next = self.next_timeout();
            if !mixing && self.conferences > 0 {
                // The grid starts with the first conference: an interval idle since the thread
                // started would otherwise fire every tick it missed at once.
                tick.reset_immediately();
            }
            mixing = self.conferences > 0;
            tokio::select! {
                at = tick.tick(), if self.conferences > 0 => self.mix(at.into_std()),
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, source)) => self.receive(Instant::now(), source, &buf[..len]),
                    // ICMP port-unreachable from a browser that went away, and the like.
                    Err(e) => tracing::debug!(error = %e, "WebRTC socket read"),
                },
                Some((id, source, datagram)) = self.sip_rx.recv() => self.caller_datagram(Instant::now(), id, source, &datagram),
                Some((host, party, source, datagram)) = self.trunk_rx.recv() => self.trunk_datagram(host, party, source, &datagram),
                command = rx.recv() => match command {
                    Some(Command::Stop) | None => break,
                    Some(command) => self.command(command),
                },
                _ = sleep_until(next) => self.timeouts_due(Instant::now()),
            }
        }
        let now = Instant::now();
        let ids: Vec<u64> = self.legs.keys().copied().collect();
        for id in ids {
            if let Some(entry) = self.legs.get_mut(&id) {
                entry.leg.close(now);
                self.flush(id);
            }
        }
        tracing::info!("WebRTC media stopped");
    }

    /// A packet from a bridged call's caller: across the bridge to the browser.
    fn caller_datagram(&mut self, now: Instant, id: u64, source: SocketAddr, datagram: &[u8]) {
        let Some(entry) = self.legs.get_mut(&id) else { return };
        let Some(b) = entry.bridged.as_mut() else { return };
        let Ok(packet) = RtpPacket::decode(datagram) else { return };
        if b.source.lock().unwrap_or_else(|p| p.into_inner()).judge(source) == Source::Foreign {
            b.foreign.inc();
            return;
        }
        b.remote = Some(source);
        b.heard.fetch_add(1, Ordering::Relaxed);
        if b.held {
            return;
        }
        if let Some(c) = b.conference.as_mut() {
            if packet.header.payload_type == b.sip_payloads.audio {
                c.mixer.push(CALLER, packet.payload);
            }
            return;
        }
        if let Verdict::Forward(f) = b.bridge.forward(Side::A, &packet.header, packet.payload, now) {
            b.last_to_browser = Some(f);
            b.to_browser.inc();
            entry.leg.send_rtp(now, &f, packet.payload);
            self.flush(id);
        }
    }

    /// A packet from a trunk guest (an outside interpreter): into its conference's mixer.
    fn trunk_datagram(&mut self, host: u64, party: u64, source: SocketAddr, datagram: &[u8]) {
        let Some(c) = self.legs.get_mut(&host).and_then(|e| e.bridged.as_mut()).and_then(|b| b.conference.as_mut())
        else {
            return;
        };
        let Some(t) = c.trunks.iter_mut().find(|t| t.id == party) else { return };
        let Ok(packet) = RtpPacket::decode(datagram) else { return };
        if t.source.lock().unwrap_or_else(|p| p.into_inner()).judge(source) == Source::Foreign {
            return;
        }
        t.remote = Some(source);
        t.heard.fetch_add(1, Ordering::Relaxed);
        if packet.header.payload_type == t.audio {
            c.mixer.push(party, packet.payload);
        }
    }

    fn next_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, id))) = self.timeouts.peek().copied() {
            match self.legs.get(&id) {
                Some(e) if e.timeout == Some(at) => return Some(at),
                _ => {
                    self.timeouts.pop();
                }
            }
        }
        None
    }

    fn timeouts_due(&mut self, now: Instant) {
        // Take every due entry first: a leg's next timeout, filed while handling this one, waits
        // for the next turn of the loop even if it is already due.
        let mut due = Vec::new();
        while let Some(Reverse((at, id))) = self.timeouts.peek().copied() {
            if at > now {
                break;
            }
            self.timeouts.pop();
            if let Some(entry) = self.legs.get_mut(&id) {
                if entry.timeout == Some(at) {
                    entry.timeout = None;
                    due.push(id);
                }
            }
        }
        for id in due {
            if let Some(entry) = self.legs.get_mut(&id) {
                entry.leg.handle_timeout(now);
                self.flush(id);
            }
        }
    }

    fn receive(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        let id = match self.by_source.get(&source) {
            Some(id) => *id,
            None => {
                let Some((id, entry)) = self.legs.iter_mut().find(|(_, e)| e.leg.accepts(now, source, datagram)) else {
                    tracing::debug!(%source, "datagram for no WebRTC leg");
                    return;
                };
                entry.sources.push(source);
                self.by_source.insert(source, *id);
                *id
            }
        };
        if let Some(entry) = self.legs.get_mut(&id) {
            entry.leg.handle_receive(now, source, datagram);
            self.flush(id);
        }
    }

    fn command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Add(id, leg, events) => {
                self.legs.insert(
                    id,
                    Entry { leg: *leg, events, timeout: None, sources: Vec::new(), bridged: None, joined: None },
                );
                self.flush(id);
            }
            Command::Send(id, packet, payload) => {
                if let Some(entry) = self.legs.get_mut(&id) {
                    entry.leg.send_rtp(now, &packet, payload);
                    self.flush(id);
                }
            }
            Command::Close(id) => {
                if let Some(entry) = self.legs.get_mut(&id) {
                    entry.leg.close(now);
                    self.flush(id);
                }
            }
            Command::Bridge(id, sip) => {
                let Some(entry) = self.legs.get_mut(&id) else { return };
                match bridged(id, &entry.leg, *sip, self.sip_tx.clone(), &self.metrics) {
                    Ok(b) => entry.bridged = Some(b),
                    Err(e) => tracing::error!(error = %e, "cannot bridge the call to the browser"),
                }
            }
            Command::Unbridge(id) => {
                if let Some(entry) = self.legs.get_mut(&id) {
                    if let Some(c) = entry.bridged.take().and_then(|mut b| b.conference.take()) {
                        self.conferences -= 1;
                        for guest in c.guests.clone() {
                            if let Some(g) = self.legs.get_mut(&guest) {
                                g.joined = None;
                            }
                        }
                    }
                }
            }
            Command::Join(host, guest, audience) => self.join(host, guest, audience),
            Command::Audience(host, guest, audience) => {
                if let Some(c) =
                    self.legs.get_mut(&host).and_then(|e| e.bridged.as_mut()).and_then(|b| b.conference.as_mut())
                {
                    c.mixer.set_audience(guest, audience);
                }
            }
            Command::Leave(host, guest) => self.leave(host, guest),
            Command::HandOver(host, guest) => self.hand_over(host, guest),
            Command::Record(host, frames, done) => self.record(host, frames, done),
            Command::StopRecording(host) => self.stop_recording(host),
            Command::JoinTrunk(host, party, sip) => self.join_trunk(host, party, *sip),
            Command::Hold(id, on) => {
                if let Some(b) = self.legs.get_mut(&id).and_then(|e| e.bridged.as_mut()) {
                    b.held = on;
                }
            }
            Command::Reoffer(id, offer, reply) => {
                let answer = match self.legs.get_mut(&id) {
                    Some(entry) => entry.leg.accept_reoffer(&offer, now),
                    None => Err(WebRtcError::Ended),
                };
                let _ = reply.send(answer);
                self.flush(id);
            }
            Command::Stop => {}
        }
    }

    /// Sends what leg `id` has to send, hands over its events, files its next timeout; removes
    /// it once it is over.
    fn flush(&mut self, id: u64) {
        let Some(entry) = self.legs.get_mut(&id) else { return };
        let mut to_host: Vec<Vec<u8>> = Vec::new();
        loop {
            match entry.leg.poll_output() {
                LegOutput::Transmit { destination, contents } => {
                    // Never wait for the socket: a datagram that does not fit is lost, as on the wire.
                    if let Err(e) = self.socket.try_send_to(&contents, destination) {
                        tracing::debug!(error = %e, %destination, "WebRTC datagram not sent");
                    }
                }
                LegOutput::Event(LegEvent::Quality(q)) => {
                    let direction =
                        DirectionLabels { direction: if q.to_browser { "to_browser" } else { "from_browser" }.into() };
                    if let Some(loss) = q.loss {
                        self.metrics.browser_leg_loss.get_or_create(&direction).observe(f64::from(loss));
                    }
                    self.metrics.browser_leg_jitter.get_or_create(&direction).observe(q.jitter.as_secs_f64());
                }
                LegOutput::Event(LegEvent::Rtp(rtp)) if entry.joined.is_some() => {
                    if rtp.header.payload_type == entry.leg.payloads().audio {
                        to_host.push(rtp.payload.to_vec());
                    }
                }
                LegOutput::Event(LegEvent::Rtp(rtp)) if entry.bridged.is_some() => {
                    let audio = entry.leg.payloads().audio;
                    if let Some(b) = entry.bridged.as_mut() {
                        match b.conference.as_mut() {
                            Some(c) if rtp.header.payload_type == audio => c.mixer.push(id, &rtp.payload),
                            Some(_) => {}
                            None => to_caller(b, &rtp),
                        }
                    }
                }
                LegOutput::Event(event) => {
                    let _ = entry.events.send(event);
                }
                LegOutput::Timeout(at) => {
                    if entry.timeout != Some(at) {
                        entry.timeout = Some(at);
                        self.timeouts.push(Reverse((at, id)));
                    }
                    break;
                }
            }
        }
        let alive = entry.leg.is_alive();
        let joined = entry.joined;
        if let Some(host) = joined {
            if let Some(c) =
                self.legs.get_mut(&host).and_then(|e| e.bridged.as_mut()).and_then(|b| b.conference.as_mut())
            {
                for payload in &to_host {
                    c.mixer.push(id, payload);
                }
            }
        }
        if !alive {
            if let Some(host) = joined {
                self.leave(host, id);
            }
            if let Some(entry) = self.legs.remove(&id) {
                if entry.bridged.is_some_and(|b| b.conference.is_some()) {
                    self.conferences -= 1;
                }
                for source in entry.sources {
                    self.by_source.remove(&source);
                }
            }
        }
    }

    /// `guest` joins `host`'s bridged call: the call becomes a conference if it was not one.
    fn join(&mut self, host: u64, guest: u64, audience: Audience) {
        let Some(guest_config) = self.legs.get(&guest).map(|g| PartyConfig {
            codec: g.leg.payloads().codec,
            payload_type: g.leg.payloads().audio,
            ssrc: g.leg.tx_ssrc(),
            // Below 2^15, so the SRTP rollover counter starts at 0.
            sequence: u64::from(rand::random::<u16>() >> 1),
            timestamp: rand::random(),
        }) else {
            return;
        };
        if !self.conference(host) {
            tracing::warn!("a leg cannot join a call whose operator leg is not bridged");
            return;
        }
        let Some(c) = self.legs.get_mut(&host).and_then(|e| e.bridged.as_mut()).and_then(|b| b.conference.as_mut())
        else {
            return;
        };
        if c.mixer.join(guest, guest_config, audience).is_ok() {
            c.guests.push(guest);
            if let Some(g) = self.legs.get_mut(&guest) {
                g.joined = Some(host);
            }
        }
    }

    /// A trunk call (`party`) joins `host`'s bridged call, heard by everyone: the call becomes a
    /// conference if it was not one, and a small task on this thread reads the party's socket.
    fn join_trunk(&mut self, host: u64, party: u64, sip: SipSide) {
        if !self.conference(host) {
            tracing::warn!("a trunk call cannot join a call whose operator leg is not bridged");
            return;
        }
        let socket = match sip.socket.set_nonblocking(true).and_then(|()| UdpSocket::from_std(sip.socket)) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the trunk call's RTP socket");
                return;
            }
        };
        let config = PartyConfig {
            codec: sip.payloads.codec,
            payload_type: sip.payloads.audio,
            ssrc: rand::random(),
            sequence: u64::from(rand::random::<u16>()),
            timestamp: rand::random(),
        };
        let Some(c) = self.legs.get_mut(&host).and_then(|e| e.bridged.as_mut()).and_then(|b| b.conference.as_mut())
        else {
            return;
        };
        if c.mixer.join(party, config, Audience::Everyone).is_err() {
            return;
        }
        let owner = Arc::new(AtomicU64::new(host));
        let (read, reader_owner, datagrams) = (socket.clone(), owner.clone(), self.trunk_tx.clone());
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                match read.recv_from(&mut buf).await {
                    Ok((len, source)) => {
                        let host = reader_owner.load(Ordering::Relaxed);
                        if datagrams.send((host, party, source, buf[..len].to_vec())).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "trunk guest's RTP socket read"),
                }
            }
        });
        let latched = sip.source.lock().unwrap_or_else(|p| p.into_inner()).latched();
        c.guests.push(party);
        c.trunks.push(TrunkGuest {
            id: party,
            socket,
            remote: latched.or(sip.remote),
            source: sip.source,
            heard: sip.heard,
            audio: sip.payloads.audio,
            owner,
            reader,
            out: Vec::with_capacity(12 + 160),
        });
    }

    /// Starts recording `host`'s bridged call: the recorder joins its conference (the call
    /// becomes one if it was not). A call already recorded keeps its recording (the new receiver
    /// gets nothing).
    fn record(&mut self, host: u64, frames: usize, done: oneshot::Sender<RecordedAudio>) {
        if !self.conference(host) {
            tracing::warn!("a call whose operator leg is not bridged cannot be recorded");
            return;
        }
        let Some(b) = self.legs.get_mut(&host).and_then(|e| e.bridged.as_mut()) else { return };
        let codec = b.sip_payloads.codec;
        let Some(c) = b.conference.as_mut() else { return };
        if c.recording.is_some() {
            return;
        }
        let config = PartyConfig { codec, payload_type: 0, ssrc: 0, sequence: 0, timestamp: 0 };
        if c.mixer.join(RECORDER, config, Audience::Nobody).is_ok() {
            c.recording = Some(Recording {
                audio: RecordedAudio { codec, g711: Vec::with_capacity(160 * 50 * 60) },
                max_bytes: frames.saturating_mul(SAMPLES_PER_PACKET),
                done: Some(done),
            });
        }
    }

    /// Stops recording `host`'s call (the audio goes to its receiver); the call goes back to the
    /// plain bridge when no guest is left.
    fn stop_recording(&mut self, host: u64) {
        let Some(c) = self.legs.get_mut(&host).and_then(|e| e.bridged.as_mut()).and_then(|b| b.conference.as_mut())
        else {
            return;
        };
        c.mixer.leave(RECORDER);
        c.recording = None;
        if c.guests.is_empty() {
            self.unmix(host);
        }
    }

    /// Makes `host`'s bridged call a conference if it is not one; false when the leg is not
    /// bridged.
    fn conference(&mut self, host: u64) -> bool {
        let Some(entry) = self.legs.get_mut(&host) else { return false };
        let Some(b) = entry.bridged.as_mut() else { return false };
        if b.conference.is_none() {
            let next = |last: Option<Forward>, ssrc: u32| match last {
                Some(f) => (f.ssrc, f.sequence + 1, f.timestamp.wrapping_add(SAMPLES_PER_PACKET as u32)),
                None => (ssrc, u64::from(rand::random::<u16>() >> 1), rand::random()),
            };
            let (ssrc, sequence, timestamp) = next(b.last_to_caller, b.bridge.towards(Side::A).ssrc());
            let caller = PartyConfig {
                codec: b.sip_payloads.codec,
                payload_type: b.sip_payloads.audio,
                ssrc,
                sequence,
                timestamp,
            };
            let (_, sequence, timestamp) = next(b.last_to_browser, entry.leg.tx_ssrc());
            let operator = PartyConfig {
                codec: entry.leg.payloads().codec,
                payload_type: entry.leg.payloads().audio,
                ssrc: entry.leg.tx_ssrc(),
                sequence,
                timestamp,
            };
            let mut mixer = Mixer::new();
            let _ = mixer.join(CALLER, caller, Audience::Everyone);
            let _ = mixer.join(host, operator, Audience::Everyone);
            self.metrics.conferences.inc();
            b.conference = Some(Conference {
                mixer,
                guests: Vec::new(),
                trunks: Vec::new(),
                recording: None,
                up: self.metrics.conferences.clone(),
            });
            self.conferences += 1;
        }
        true
    }

    /// `guest` leaves `host`'s call; the last guest out puts the call back on the plain bridge,
    /// each stream continuing from where the mixer left it.
    fn leave(&mut self, host: u64, guest: u64) {
        if let Some(g) = self.legs.get_mut(&guest) {
            if g.joined == Some(host) {
                g.joined = None;
            }
        }
        let Some(c) = self.legs.get_mut(&host).and_then(|e| e.bridged.as_mut()).and_then(|b| b.conference.as_mut())
        else {
            return;
        };
        c.mixer.leave(guest);
        c.guests.retain(|g| *g != guest);
        c.trunks.retain(|t| t.id != guest);
        if c.guests.is_empty() && c.recording.is_none() {
            self.unmix(host);
        }
    }

    /// The host leg leaves the call it carries; `guest`, one of its conference's guests, takes
    /// the bridge and the conference over (the guests left join it), or goes back to the plain
    /// bridge with the caller when it was the only guest.
    fn hand_over(&mut self, host: u64, guest: u64) {
        let Some(entry) = self.legs.get_mut(&host) else { return };
        let is_guest =
            entry.bridged.as_ref().and_then(|b| b.conference.as_ref()).is_some_and(|c| c.guests.contains(&guest));
        if !is_guest || !self.legs.contains_key(&guest) {
            tracing::warn!(host, guest, "a hand-over to a leg that has not joined the call");
            return;
        }
        let Some(mut b) = self.legs.get_mut(&host).and_then(|e| e.bridged.take()) else { return };
        b.owner.store(guest, Ordering::Relaxed);
        let mut remaining = Vec::new();
        let mut recording = false;
        if let Some(c) = b.conference.as_mut() {
            c.mixer.leave(host);
            c.guests.retain(|g| *g != guest);
            remaining = c.guests.clone();
            recording = c.recording.is_some();
            for t in &c.trunks {
                t.owner.store(guest, Ordering::Relaxed);
            }
        }
        for g in &remaining {
            if let Some(e) = self.legs.get_mut(g) {
                e.joined = Some(guest);
            }
        }
        if let Some(e) = self.legs.get_mut(&guest) {
            e.joined = None;
            e.bridged = Some(b);
        }
        if remaining.is_empty() && !recording {
            self.unmix(guest);
        }
    }

    /// The call leg `host` carries goes back from its conference to the plain bridge, each stream
    /// continuing from where the mixer left it.
    fn unmix(&mut self, host: u64) {
        let Some(entry) = self.legs.get_mut(&host) else { return };
        let tx_ssrc = entry.leg.tx_ssrc();
        let browser_payloads = entry.leg.payloads();
        let Some(b) = entry.bridged.as_mut() else { return };
        let Some(c) = b.conference.as_mut() else { return };
        let caller_ssrc = b.bridge.towards(Side::A).ssrc();
        let (Some(to_caller), Some(to_browser)) = (c.mixer.position(CALLER), c.mixer.position(host)) else { return };
        let start =
            |ssrc: u32, (sequence, timestamp): (u64, u32)| StreamStart { ssrc, sequence: sequence as u16, timestamp };
        match Bridge::new(b.sip_payloads, browser_payloads, start(caller_ssrc, to_caller), start(tx_ssrc, to_browser)) {
            Ok(bridge) => b.bridge = bridge,
            Err(e) => tracing::error!(error = %e, "cannot go back to the plain bridge"),
        }
        b.conference = None;
        b.last_to_caller = None;
        b.last_to_browser = None;
        self.conferences -= 1;
    }

    /// The 20 ms tick: every conference's mixes, sent to their parties.
    fn mix(&mut self, due: Instant) {
        let mut to_guests: Vec<(u64, Forward, Vec<u8>)> = Vec::new();
        let mut hosts = Vec::new();
        for (id, entry) in self.legs.iter_mut() {
            let Some(b) = entry.bridged.as_mut() else { continue };
            let Some(c) = b.conference.as_mut() else { continue };
            self.mixed.clear();
            c.mixer.tick(&mut self.mixed);
            let now = Instant::now();
            for m in self.mixed.drain(..) {
                if m.to == RECORDER {
                    if let Some(r) = c.recording.as_mut() {
                        r.push(&m.payload);
                    }
                } else if m.to == CALLER {
                    if b.held {
                        continue;
                    }
                    if let Some(remote) = b.remote {
                        m.packet.write(&m.payload, &mut b.out);
                        b.to_caller.inc();
                        if let Err(e) = b.socket.try_send_to(&b.out, remote) {
                            tracing::debug!(error = %e, %remote, "mixed RTP to the caller not sent");
                        }
                    }
                } else if m.to == *id {
                    entry.leg.send_rtp(now, &m.packet, m.payload);
                } else if let Some(t) = c.trunks.iter_mut().find(|t| t.id == m.to) {
                    if let Some(remote) = t.remote {
                        m.packet.write(&m.payload, &mut t.out);
                        if let Err(e) = t.socket.try_send_to(&t.out, remote) {
                            tracing::debug!(error = %e, %remote, "mixed RTP to a trunk guest not sent");
                        }
                    }
                } else {
                    to_guests.push((m.to, m.packet, m.payload));
                }
            }
            hosts.push(*id);
            self.metrics.mixing_delay.observe(due.elapsed().as_secs_f64());
        }
        let now = Instant::now();
        for (guest, packet, payload) in to_guests {
            if let Some(g) = self.legs.get_mut(&guest) {
                g.leg.send_rtp(now, &packet, payload);
                hosts.push(guest);
            }
        }
        hosts.sort_unstable();
        hosts.dedup();
        for id in hosts {
            self.flush(id);
        }
    }
}

/// A packet from the browser: across the bridge to the caller (never waiting for the socket).
fn to_caller(b: &mut Bridged, rtp: &ReceivedRtp) {
    if b.held {
        return;
    }
    let Some(remote) = b.remote else { return };
    if let Verdict::Forward(f) = b.bridge.forward(Side::B, &rtp.header, &rtp.payload, rtp.arrival) {
        b.last_to_caller = Some(f);
        b.to_caller.inc();
        f.write(&rtp.payload, &mut b.out);
        if let Err(e) = b.socket.try_send_to(&b.out, remote) {
            tracing::debug!(error = %e, %remote, "RTP to the caller not sent");
        }
    }
}

/// Sets up a bridge (on the media thread: the SIP socket is registered with its runtime, and a
/// small task on it reads the socket).
fn bridged(
    id: u64,
    leg: &WebRtcLeg,
    sip: SipSide,
    datagrams: mpsc::UnboundedSender<SipDatagram>,
    metrics: &Metrics,
) -> std::io::Result<Bridged> {
    sip.socket.set_nonblocking(true)?;
    let socket = Arc::new(UdpSocket::from_std(sip.socket)?);
    // Both outgoing streams start at random points (RFC 3550 §5.1), the browser's below 2^15 so
    // that its SRTP rollover counter starts at 0.
    let to_caller = StreamStart { ssrc: rand::random(), sequence: rand::random(), timestamp: rand::random() };
    let to_browser =
        StreamStart { ssrc: leg.tx_ssrc(), sequence: rand::random::<u16>() >> 1, timestamp: rand::random() };
    let bridge = Bridge::new(sip.payloads, leg.payloads(), to_caller, to_browser)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let read = socket.clone();
    let owner = Arc::new(AtomicU64::new(id));
    let reader_owner = owner.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match read.recv_from(&mut buf).await {
                Ok((len, source)) => {
                    let id = reader_owner.load(Ordering::Relaxed);
                    if datagrams.send((id, source, buf[..len].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "caller's RTP socket read"),
            }
        }
    });
    let direction =
        |d: &str| metrics.bridge_packets.get_or_create(&DirectionLabels { direction: d.to_owned() }).clone();
    metrics.browser_bridges.inc();
    let latched = sip.source.lock().unwrap_or_else(|p| p.into_inner()).latched();
    Ok(Bridged {
        foreign: metrics.rtp_foreign_packets.get_or_create(&RtpForeignLabels { kind: "other".into() }).clone(),
        to_browser: direction("to_browser"),
        to_caller: direction("to_caller"),
        up: metrics.browser_bridges.clone(),
        socket,
        owner,
        remote: latched.or(sip.remote),
        source: sip.source,
        heard: sip.heard,
        bridge,
        held: false,
        reader,
        out: Vec::with_capacity(12 + 160),
        last_to_caller: None,
        last_to_browser: None,
        conference: None,
        sip_payloads: sip.payloads,
    })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
