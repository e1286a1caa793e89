//! The calls' media: one shared **media clock** sends every call's RTP, and one small receive task
//! per call reads the caller's packets (RFC 4733 DTMF, symmetric RTP).
//!
//! The clock is a dedicated OS thread (not a tokio task), so the runtime's work — SIP parsing,
//! database writes, HTTP — never delays a packet, and a thousand calls cost one timer rather than
//! a thousand. It wakes every millisecond on an absolute schedule (`origin + k · 1 ms`, never
//! accumulated) and walks a wheel of 20 slots: a call is put in the least-loaded slot when its
//! audio starts, and its packet *n* is due at that slot's tick + n · 20 ms (`Pacer`), so the
//! calls' sends are spread evenly over each 20 ms instead of bunching on one tick. Each visit
//! copies 160 bytes of G.711 encoded once per prompt (`Clip::encoded`) behind a 12-byte header
//! and sends it with a plain `send_to` on the call's non-blocking socket.
//!
//! Calls talk to the clock through a channel (`Media` handles); the clock waits on that channel
//! with a timeout of the next tick's deadline, so a command (a new prompt, barge-in, BYE) is
//! applied at once, not at the next tick. Between prompts nothing is sent (the timestamp still
//! advances over the gap, RFC 3550 §5.1); each prompt starts a talkspurt (marker bit).
//!
//! The send deviation reported in `helpline_rtp_send_deviation_seconds` is measured here, at the
//! sender, just before each `send_to`, against the packet's slot on its call's grid.

use super::audio::{hold_tone, Clip};
use crate::media::strict::{RtpSource, Source};
use crate::media::SipSide;
use crate::metrics::{DtmfLabels, Metrics, RtpForeignLabels};
use ivr::domain::DtmfDigit;
use ivr::rtp::{DtmfReceiver, LegPayloads, Pacer, Packetizer, RtpPacket, DEFAULT_EVENT_TIMEOUT, SAMPLES_PER_PACKET};
use ivr::sdp::Codec;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// A packet sent later than this after its grid slot counts as late.
pub const LATE_AFTER_MICROS: i64 = 5_000;
/// At most this many overdue packets of one call are sent in one burst; beyond, it skips ahead.
const MAX_BURST: u32 = 5;
/// The clock's tick, in microseconds.
const TICK_MICROS: u64 = 1_000;
/// Ticks in one 20 ms packet interval: the wheel's slots.
const SLOTS: u64 = 20;

/// What a call asks of its media.
#[derive(Debug)]
pub enum MediaCmd {
    /// The call is up (ACK): start the clock.
    Start,
    /// Queue a clip after those already queued.
    Play(Clip),
    /// Barge-in: drop the clip playing and everything queued.
    StopAudio,
    /// Hold audio whenever nothing else plays (in the queue).
    Hold(bool),
    /// A re-INVITE changed where to send, or whether to send at all (hold).
    Remote { addr: Option<SocketAddr>, sending: bool },
    /// The call is over: stop at once.
    Stop,
}

/// What the media reports to the call's control task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// A key, from the caller's RFC 4733 telephone-events.
    Digit(DtmfDigit),
    /// Every clip queued so far (`played` of them) has played or was dropped.
    Idle { played: u64 },
    /// No RTP from the caller for the whole `MediaSetup::rtp_timeout` (reported once).
    NoRtp,
}

/// How the call's audio was negotiated.
pub struct MediaSetup {
    /// The call's RTP socket, non-blocking.
    pub socket: std::net::UdpSocket,
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
    pub remote: Option<SocketAddr>,
    pub sending: bool,
    pub metrics: Arc<Metrics>,
    pub call_id: String,
    /// Report [`MediaEvent::NoRtp`] after this long without a packet from the caller.
    pub rtp_timeout: Option<Duration>,
    /// Whose packets are the caller's (strict RTP, `strict.rs`).
    pub source: RtpSource,
}

/// What reaches the clock thread.
enum Msg {
    Add(u64, Box<Stream>),
    Cmd(u64, MediaCmd),
    /// The caller's first packet came from here (symmetric RTP).
    Latch(u64, SocketAddr),
}

/// The server's media clock: a handle to its thread. The thread ends once every handle (this one
/// and every call's `Media`) is dropped.
#[derive(Clone)]
pub struct MediaClock {
    tx: std_mpsc::Sender<Msg>,
    next_id: Arc<AtomicU64>,
}

impl MediaClock {
    pub fn start() -> std::io::Result<MediaClock> {
        let (tx, rx) = std_mpsc::channel();
        std::thread::Builder::new().name("rtp-clock".into()).spawn(move || run_clock(rx))?;
        Ok(MediaClock { tx, next_id: Arc::new(AtomicU64::new(1)) })
    }

    /// Registers a call's media with the clock and starts its receive task (call from within the
    /// tokio runtime). Audio flows after `MediaCmd::Start`.
    pub fn add(&self, setup: MediaSetup, events: mpsc::UnboundedSender<MediaEvent>) -> Media {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stop = Arc::new(Notify::new());
        let paused = Arc::new(AtomicBool::new(false));
        let resume = Arc::new(Notify::new());
        let bridge_socket = setup.socket.try_clone().ok();
        let needs_latch = Arc::new(AtomicBool::new(true));
        let span = tracing::info_span!("media", call_id = %setup.call_id);
        let source = Arc::new(Mutex::new(setup.source));
        let heard = Arc::new(AtomicU64::new(0));
        let recording = Arc::new(Mutex::new(None));
        match setup.socket.try_clone() {
            Ok(send_socket) => {
                let stream = Stream {
                    socket: send_socket,
                    metrics: setup.metrics.clone(),
                    remote: setup.remote,
                    latched: false,
                    sending: setup.sending,
                    needs_latch: needs_latch.clone(),
                    slot: None,
                    playout: Playout::new(setup.codec, setup.payload_type, events.clone()),
                };
                let _ = self.tx.send(Msg::Add(id, Box::new(stream)));
            }
            Err(e) => tracing::error!(parent: &span, error = %e, "cannot use the RTP socket: no audio for this call"),
        }
        let receiver = Receiver {
            id,
            clock: self.tx.clone(),
            telephone_event: setup.telephone_event,
            audio: setup.payload_type,
            recording: recording.clone(),
            needs_latch,
            events,
            metrics: setup.metrics,
            stop: stop.clone(),
            paused: paused.clone(),
            resume: resume.clone(),
            rtp_timeout: setup.rtp_timeout,
            source: source.clone(),
            heard_bridged: heard.clone(),
        };
        tokio::spawn(tracing::Instrument::instrument(receiver.run(setup.socket), span));
        let mut payloads = LegPayloads { codec: setup.codec, audio: setup.payload_type, telephone_event: None };
        if let Some(pt) = setup.telephone_event {
            payloads = payloads.with_telephone_event(pt);
        }
        Media(Arc::new(MediaInner {
            id,
            codec: setup.codec,
            tx: self.tx.clone(),
            stop,
            payloads,
            remote: setup.remote,
            bridge_socket,
            paused,
            resume,
            source,
            heard,
            recording,
        }))
    }
}

/// One call's handle on its media; clones share it, and the media stops when the last is dropped.
#[derive(Clone)]
pub struct Media(Arc<MediaInner>);

struct MediaInner {
    id: u64,
    codec: Codec,
    tx: std_mpsc::Sender<Msg>,
    stop: Arc<Notify>,
    /// What the call negotiated, for a bridge.
    payloads: LegPayloads,
    remote: Option<SocketAddr>,
    /// A clone of the RTP socket, for the WebRTC media thread when the call is bridged.
    bridge_socket: Option<std::net::UdpSocket>,
    /// While bridged the receive task leaves the socket to the media thread.
    paused: Arc<AtomicBool>,
    resume: Arc<Notify>,
    /// Strict RTP: where the caller's packets may come from.
    source: Arc<Mutex<RtpSource>>,
    /// The caller's packets the bridge read (for the RTP timeout while bridged).
    heard: Arc<AtomicU64>,
    /// The caller's audio being recorded (a voice message), if it is.
    recording: Arc<Mutex<Option<Recording>>>,
}

/// The caller's G.711 audio payloads as they arrived, up to `max` bytes (8 bytes a millisecond).
#[derive(Debug, Default)]
struct Recording {
    audio: Vec<u8>,
    max: usize,
}

impl Media {
    /// Sends a command; `false` when the clock is gone (the server is stopping).
    pub fn send(&self, cmd: MediaCmd) -> bool {
        match &cmd {
            // Encode here, on the caller's thread, so the clock only ever copies bytes.
            MediaCmd::Play(clip) => drop(clip.encoded(self.0.codec)),
            MediaCmd::Stop => self.0.stop.notify_one(),
            MediaCmd::Remote { addr: Some(addr), .. } => {
                self.0.source.lock().unwrap_or_else(|p| p.into_inner()).renegotiated(*addr)
            }
            _ => {}
        }
        self.0.tx.send(Msg::Cmd(self.0.id, cmd)).is_ok()
    }
}

impl Media {
    /// The codec of the call.
    pub fn codec(&self) -> Codec {
        self.0.codec
    }

    /// The call's RTP side for a bridge: a clone of its socket, the caller's address, its
    /// payload types. While the bridge reads it, [`Media::bridged`] keeps this side off it.
    pub fn sip_side(&self) -> std::io::Result<SipSide> {
        let socket = match &self.0.bridge_socket {
            Some(s) => s.try_clone()?,
            None => return Err(std::io::Error::other("no RTP socket")),
        };
        Ok(SipSide {
            socket,
            remote: self.0.remote,
            payloads: self.0.payloads,
            source: self.0.source.clone(),
            heard: self.0.heard.clone(),
        })
    }

    /// Starts keeping the caller's audio (at most `max` long), from the next packet on.
    pub fn start_recording(&self, max: Duration) {
        let max = usize::try_from(max.as_millis().saturating_mul(8)).unwrap_or(usize::MAX);
        let rec = Recording { audio: Vec::with_capacity(max.min(8 * 60_000)), max };
        *self.0.recording.lock().unwrap_or_else(|p| p.into_inner()) = Some(rec);
    }

    /// Stops recording; the caller's audio so far, in the call's codec.
    pub fn take_recording(&self) -> Vec<u8> {
        self.0.recording.lock().unwrap_or_else(|p| p.into_inner()).take().map(|r| r.audio).unwrap_or_default()
    }

    /// While `on`, the receive task stops reading the RTP socket (the bridge reads it), and the
    /// clock sends nothing but hold audio when asked.
    pub fn bridged(&self, on: bool) {
        self.0.paused.store(on, Ordering::SeqCst);
        self.0.resume.notify_one();
    }
}

impl Drop for MediaInner {
    fn drop(&mut self) {
        self.stop.notify_one();
        let _ = self.tx.send(Msg::Cmd(self.id, MediaCmd::Stop));
    }
}

/// One call's receive side, a tokio task: DTMF events and the address to answer to.
struct Receiver {
    id: u64,
    clock: std_mpsc::Sender<Msg>,
    telephone_event: Option<u8>,
    /// The payload type of the call's G.711 audio.
    audio: u8,
    recording: Arc<Mutex<Option<Recording>>>,
    needs_latch: Arc<AtomicBool>,
    events: mpsc::UnboundedSender<MediaEvent>,
    metrics: Arc<Metrics>,
    stop: Arc<Notify>,
    paused: Arc<AtomicBool>,
    resume: Arc<Notify>,
    rtp_timeout: Option<Duration>,
    source: Arc<Mutex<RtpSource>>,
    /// The caller's packets read by the bridge while this task is paused.
    heard_bridged: Arc<AtomicU64>,
}

impl Receiver {
    async fn run(self, socket: std::net::UdpSocket) {
        let socket = match tokio::net::UdpSocket::from_std(socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the RTP socket: no DTMF by RFC 4733 for this call");
                return;
            }
        };
        let mut dtmf = self.telephone_event.map(|pt| DtmfReceiver::new(pt, DEFAULT_EVENT_TIMEOUT));
        let mut buf = vec![0u8; 2048];
        // When the caller's silence ends the call (no ghost calls): pushed on by every packet.
        let mut silent_until = self.rtp_timeout.map(|t| Instant::now() + t);
        // The bridge's count of the caller's packets when `silent_until` was last set.
        let mut heard_at_deadline = 0;
        loop {
            if self.paused.load(Ordering::SeqCst) {
                // Bridged: the media thread reads the caller and counts its packets; the
                // silence is judged by that count, so a caller gone quiet mid-conversation is
                // still hung up.
                tokio::select! {
                    _ = self.stop.notified() => break,
                    _ = self.resume.notified() => {
                        // Back from the bridge (or bridged anew): the silence counts from here.
                        if let (Some(t), Some(_)) = (self.rtp_timeout, silent_until) {
                            silent_until = Some(Instant::now() + t);
                            heard_at_deadline = self.heard_bridged.load(Ordering::Relaxed);
                        }
                        continue;
                    }
                    _ = sleep_until_opt(silent_until) => {
                        let t = self.rtp_timeout.expect("a deadline only with a timeout");
                        let heard = self.heard_bridged.load(Ordering::Relaxed);
                        if heard != heard_at_deadline {
                            heard_at_deadline = heard;
                            silent_until = Some(Instant::now() + t);
                        } else {
                            silent_until = None;
                            let _ = self.events.send(MediaEvent::NoRtp);
                        }
                    }
                }
                continue;
            }
            let dtmf_deadline = dtmf.as_ref().and_then(DtmfReceiver::deadline);
            tokio::select! {
                _ = self.stop.notified() => break,
                _ = self.resume.notified() => {
                    // Bridged from now on (or back): the silence counts from here.
                    if let (Some(t), Some(_)) = (self.rtp_timeout, silent_until) {
                        silent_until = Some(Instant::now() + t);
                        heard_at_deadline = self.heard_bridged.load(Ordering::Relaxed);
                    }
                    continue;
                }
                _ = sleep_until_opt(silent_until) => {
                    silent_until = None;
                    let _ = self.events.send(MediaEvent::NoRtp);
                }
                r = socket.recv_from(&mut buf) => {
                    let Ok((len, source)) = r else { continue };
                    if !self.is_callers(source, &buf[..len]) {
                        continue;
                    }
                    if let (Some(t), Some(_)) = (self.rtp_timeout, silent_until) {
                        silent_until = Some(Instant::now() + t);
                    }
                    if self.needs_latch.load(Ordering::Relaxed) && self.needs_latch.swap(false, Ordering::Relaxed) {
                        let _ = self.clock.send(Msg::Latch(self.id, source));
                    }
                    self.record(&buf[..len]);
                    if let (Some(rx), Ok(packet)) = (dtmf.as_mut(), RtpPacket::decode(&buf[..len])) {
                        if let Some(digit) = rx.on_packet(&packet.header, packet.payload, Instant::now()) {
                            self.metrics.dtmf_received.get_or_create(&DtmfLabels { source: "rfc4733".into() }).inc();
                            let _ = self.events.send(MediaEvent::Digit(digit));
                        }
                    }
                }
                _ = sleep_until_opt(dtmf_deadline) => {
                    if let Some(rx) = dtmf.as_mut() {
                        rx.on_timeout(Instant::now());
                    }
                }
            }
        }
    }
}

impl Receiver {
    /// Keeps the packet's audio while a voice message is being recorded.
    fn record(&self, packet: &[u8]) {
        let mut rec = self.recording.lock().unwrap_or_else(|p| p.into_inner());
        let Some(rec) = rec.as_mut() else { return };
        if let Ok(p) = RtpPacket::decode(packet) {
            if p.header.payload_type == self.audio {
                let room = rec.max.saturating_sub(rec.audio.len());
                rec.audio.extend_from_slice(&p.payload[..p.payload.len().min(room)]);
            }
        }
    }

    /// Strict RTP: whether a packet from `source` is the caller's; others are dropped and
    /// counted (telephone-events apart, so keys sprayed at the port show).
    fn is_callers(&self, source: SocketAddr, packet: &[u8]) -> bool {
        let judged = self.source.lock().unwrap_or_else(|p| p.into_inner()).judge(source);
        if judged != Source::Foreign {
            return true;
        }
        let dtmf = self.telephone_event.is_some()
            && RtpPacket::decode(packet).is_ok_and(|p| Some(p.header.payload_type) == self.telephone_event);
        let kind = if dtmf { "dtmf" } else { "other" };
        self.metrics.rtp_foreign_packets.get_or_create(&RtpForeignLabels { kind: kind.into() }).inc();
        false
    }
}

/// One call on the clock: where its packets go, and what it plays.
struct Stream {
    socket: std::net::UdpSocket,
    metrics: Arc<Metrics>,
    remote: Option<SocketAddr>,
    latched: bool,
    sending: bool,
    needs_latch: Arc<AtomicBool>,
    /// The wheel slot, once started.
    slot: Option<usize>,
    playout: Playout,
}

impl Stream {
    /// Sends what is due at `now`.
    fn tick(&mut self, now: Instant, buf: &mut Vec<u8>) {
        let Stream { socket, metrics, remote, sending, playout, .. } = self;
        playout.tick(now, buf, |packet, due| {
            let (true, Some(to)) = (*sending, *remote) else { return };
            let at = Instant::now();
            let deviation = at.saturating_duration_since(due).as_micros();
            if socket.send_to(packet, to).is_ok() {
                metrics.rtp_packets_sent.inc();
                metrics.rtp_send_deviation.observe(deviation as f64 / 1e6);
                if deviation > LATE_AFTER_MICROS as u128 {
                    metrics.rtp_late_packets.inc();
                }
            }
        });
    }

    fn remote(&mut self, addr: Option<SocketAddr>, sending: bool) {
        if addr.is_some() && addr != self.remote {
            self.remote = addr;
            self.latched = false;
            self.needs_latch.store(true, Ordering::Relaxed);
        }
        self.sending = sending;
    }

    fn latch(&mut self, source: SocketAddr) {
        if !self.latched {
            self.remote = Some(source);
            self.latched = true;
        }
    }
}

/// The clock thread: commands in, packets out on the 1 ms wheel.
fn run_clock(rx: std_mpsc::Receiver<Msg>) {
    let origin = Instant::now();
    let ticks_at =
        |t: Instant| u64::try_from(t.saturating_duration_since(origin).as_micros()).unwrap_or(u64::MAX) / TICK_MICROS;
    let mut streams: HashMap<u64, Stream> = HashMap::new();
    let mut wheel: Vec<Vec<u64>> = vec![Vec::new(); SLOTS as usize];
    let mut started = 0usize;
    // The next tick to run.
    let mut tick = 0u64;
    let mut buf = Vec::with_capacity(12 + SAMPLES_PER_PACKET);
    loop {
        if started == 0 {
            // Nothing to send: sleep until a command comes.
            let Ok(msg) = rx.recv() else { return };
            apply(msg, &mut streams, &mut wheel, &mut started, &origin, ticks_at(Instant::now()) + 1);
            tick = ticks_at(Instant::now()) + 1;
            continue;
        }
        let deadline = tick_instant(origin, tick);
        // Take commands until the tick is due.
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(msg) => apply(msg, &mut streams, &mut wheel, &mut started, &origin, tick),
                Err(std_mpsc::RecvTimeoutError::Timeout) => break,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        let now = Instant::now();
        let current = ticks_at(now);
        // After a stall longer than a packet interval, visit each slot once, not once per tick.
        tick = tick.max((current + 1).saturating_sub(SLOTS));
        while tick <= current {
            for id in &wheel[(tick % SLOTS) as usize] {
                if let Some(stream) = streams.get_mut(id) {
                    stream.tick(now, &mut buf);
                }
            }
            tick += 1;
        }
    }
}

fn tick_instant(origin: Instant, tick: u64) -> Instant {
    origin + Duration::from_micros(tick.saturating_mul(TICK_MICROS))
}

/// Applies one message; `next_tick` is the first tick a newly started stream may use.
fn apply(
    msg: Msg,
    streams: &mut HashMap<u64, Stream>,
    wheel: &mut [Vec<u64>],
    started: &mut usize,
    origin: &Instant,
    next_tick: u64,
) {
    match msg {
        Msg::Add(id, stream) => {
            streams.insert(id, *stream);
        }
        Msg::Latch(id, source) => {
            if let Some(s) = streams.get_mut(&id) {
                s.latch(source);
            }
        }
        Msg::Cmd(id, cmd) => {
            let Some(s) = streams.get_mut(&id) else { return };
            match cmd {
                MediaCmd::Start => {
                    if s.slot.is_none() {
                        // The least-loaded slot among the next 20 ticks (the earliest on a tie).
                        let first = (0..SLOTS)
                            .map(|k| next_tick + k)
                            .min_by_key(|t| wheel[(t % SLOTS) as usize].len())
                            .unwrap_or(next_tick);
                        let slot = (first % SLOTS) as usize;
                        wheel[slot].push(id);
                        s.slot = Some(slot);
                        *started += 1;
                        s.playout.start(Pacer::new(tick_instant(*origin, first)));
                    }
                }
                MediaCmd::Play(clip) => s.playout.play(clip),
                MediaCmd::StopAudio => s.playout.stop_audio(),
                MediaCmd::Hold(on) => s.playout.hold = on,
                MediaCmd::Remote { addr, sending } => s.remote(addr, sending),
                MediaCmd::Stop => {
                    if let Some(s) = streams.remove(&id) {
                        if let Some(slot) = s.slot {
                            wheel[slot].retain(|x| *x != id);
                            *started -= 1;
                        }
                    }
                }
            }
        }
    }
}

struct Current {
    payload: Arc<[u8]>,
    pos: usize,
    hold: bool,
}

/// What one call plays, packet by packet on its grid: the queued clips, then hold audio if asked.
/// Pure (the instant and the send are passed in), so its rules are unit-tested apart from sockets.
struct Playout {
    codec: Codec,
    packetizer: Packetizer,
    events: mpsc::UnboundedSender<MediaEvent>,
    grid: Option<Pacer>,
    next_index: u32,
    /// Index of the last packet made (timestamps advance over slots not sent).
    last_index: Option<u32>,
    queue: VecDeque<Clip>,
    current: Option<Current>,
    hold: bool,
    queued: u64,
    done: u64,
}

impl Playout {
    fn new(codec: Codec, payload_type: u8, events: mpsc::UnboundedSender<MediaEvent>) -> Playout {
        Playout {
            codec,
            packetizer: Packetizer::new(codec, payload_type, rand::random(), rand::random(), rand::random()),
            events,
            grid: None,
            next_index: 0,
            last_index: None,
            queue: VecDeque::new(),
            current: None,
            hold: false,
            queued: 0,
            done: 0,
        }
    }

    fn start(&mut self, grid: Pacer) {
        self.grid.get_or_insert(grid);
    }

    fn play(&mut self, clip: Clip) {
        self.queued += 1;
        if self.current.as_ref().is_some_and(|c| c.hold) {
            self.current = None;
        }
        self.queue.push_back(clip);
    }

    fn stop_audio(&mut self) {
        self.current = None;
        self.queue.clear();
        if self.done != self.queued {
            self.done = self.queued;
            let _ = self.events.send(MediaEvent::Idle { played: self.done });
        }
    }

    fn has_audio(&self) -> bool {
        self.current.is_some() || !self.queue.is_empty() || self.hold
    }

    /// Makes every packet due at `now` and hands each to `send` with its grid instant.
    fn tick(&mut self, now: Instant, buf: &mut Vec<u8>, mut send: impl FnMut(&[u8], Instant)) {
        let Some(grid) = self.grid else { return };
        if !self.has_audio() {
            return;
        }
        let due = u32::try_from(grid.packets_due(now)).unwrap_or(u32::MAX);
        if due == 0 {
            return;
        }
        if self.current.is_none() {
            // Resuming after a gap: from the slot due now.
            self.next_index = self.next_index.max(due - 1);
        }
        let overdue = due.saturating_sub(self.next_index);
        if overdue > MAX_BURST {
            // Stalled (the machine was starved): skip ahead rather than burst.
            self.next_index += overdue - MAX_BURST;
        }
        while self.next_index < due {
            if !self.next_packet(buf) {
                break;
            }
            send(buf, grid.send_at(self.next_index));
            self.next_index += 1;
        }
    }

    /// Writes the packet for `next_index` into `buf`, starting the next clip (with a marker) as
    /// needed; `false` when there is nothing to play.
    fn next_packet(&mut self, buf: &mut Vec<u8>) -> bool {
        static HOLD: OnceLock<Clip> = OnceLock::new();
        loop {
            if self.current.is_none() {
                if let Some(clip) = self.queue.pop_front() {
                    self.current = Some(Current { payload: clip.encoded(self.codec), pos: 0, hold: false });
                } else if self.hold {
                    let payload = HOLD.get_or_init(hold_tone).encoded(self.codec);
                    self.current = Some(Current { payload, pos: 0, hold: true });
                } else {
                    return false;
                }
                self.packetizer.start_talkspurt();
            }
            let Some(cur) = self.current.as_mut() else { return false };
            if cur.pos < cur.payload.len() {
                if let Some(last) = self.last_index {
                    // Slots left empty since the last packet: keep the timestamp on the clock.
                    let gap = self.next_index.saturating_sub(last).saturating_sub(1);
                    self.packetizer.skip_silence(gap.saturating_mul(SAMPLES_PER_PACKET as u32));
                }
                self.last_index = Some(self.next_index);
                let end = (cur.pos + SAMPLES_PER_PACKET).min(cur.payload.len());
                self.packetizer.write_encoded(&cur.payload[cur.pos..end], buf);
                cur.pos = end;
                if cur.pos >= cur.payload.len() {
                    self.finish_clip();
                }
                return true;
            }
            self.finish_clip();
        }
    }

    fn finish_clip(&mut self) {
        let Some(cur) = self.current.take() else { return };
        if !cur.hold {
            self.done += 1;
            if self.queue.is_empty() && self.done == self.queued {
                let _ = self.events.send(MediaEvent::Idle { played: self.done });
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(samples: usize) -> Clip {
        Clip::new(Arc::new(vec![1000; samples]))
    }

    /// (index of the grid slot, marker, sequence, timestamp, payload length) of each packet sent.
    fn run(p: &mut Playout, grid: Pacer, from: u32, to: u32) -> Vec<(u32, bool, u16, u32)> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for n in from..to {
            p.tick(grid.send_at(n), &mut buf, |packet, due| {
                let d = RtpPacket::decode(packet).expect("rtp");
                assert_eq!(d.payload.len(), 160);
                let slot = ((due - grid.send_at(0)).as_millis() / 20) as u32;
                out.push((slot, d.header.marker, d.header.sequence, d.header.timestamp));
            });
        }
        out
    }

    #[test]
    fn prompts_on_the_grid_with_markers_and_timestamps_across_gaps() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut p = Playout::new(Codec::Pcmu, 0, tx);
        let grid = Pacer::new(Instant::now());
        p.start(grid);
        p.play(clip(400)); // 3 packets, the last padded
        let first = run(&mut p, grid, 0, 5);
        assert_eq!(first.len(), 3);
        assert_eq!(rx.try_recv(), Ok(MediaEvent::Idle { played: 1 }));
        let (_, m0, s0, t0) = first[0];
        assert!(m0 && !first[1].1 && !first[2].1);
        assert_eq!(first.iter().map(|f| f.0).collect::<Vec<_>>(), [0, 1, 2]);
        // A second prompt after a gap: a new talkspurt, the sequence goes on, the timestamp
        // follows the grid (slot 7 → 7 · 160 after the first).
        p.play(clip(160));
        let second = run(&mut p, grid, 7, 9);
        assert_eq!(second, [(7, true, s0.wrapping_add(3), t0.wrapping_add(7 * 160))]);
        assert_eq!(rx.try_recv(), Ok(MediaEvent::Idle { played: 2 }));
    }

    #[test]
    fn barge_in_drops_the_prompts_and_hold_loops_until_a_prompt() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut p = Playout::new(Codec::Pcma, 8, tx);
        let grid = Pacer::new(Instant::now());
        p.start(grid);
        p.play(clip(8000));
        p.play(clip(8000));
        assert_eq!(run(&mut p, grid, 0, 3).len(), 3);
        p.stop_audio();
        assert_eq!(rx.try_recv(), Ok(MediaEvent::Idle { played: 2 }));
        assert!(run(&mut p, grid, 3, 10).is_empty(), "nothing after barge-in");
        p.hold = true;
        let held = run(&mut p, grid, 10, 20);
        assert_eq!(held.len(), 10);
        assert!(held[0].1, "hold audio starts a talkspurt");
        p.play(clip(160));
        let announced = run(&mut p, grid, 20, 21);
        assert!(announced[0].1, "the announcement cuts the hold tone");
        assert_eq!(rx.try_recv(), Ok(MediaEvent::Idle { played: 3 }));
    }

    #[test]
    fn a_stall_sends_a_short_burst_then_skips_ahead() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut p = Playout::new(Codec::Pcmu, 0, tx);
        let grid = Pacer::new(Instant::now());
        p.start(grid);
        p.play(clip(160 * 100));
        run(&mut p, grid, 0, 1);
        let mut buf = Vec::new();
        let mut slots = Vec::new();
        // 100 ms late: slots 1..=6 are due; only the last MAX_BURST are sent.
        p.tick(grid.send_at(6), &mut buf, |_, due| slots.push(((due - grid.send_at(0)).as_millis() / 20) as u32));
        assert_eq!(slots, [2, 3, 4, 5, 6]);
    }

    /// While bridged, the media thread reads the caller and counts its packets: the RTP timeout
    /// (no ghost calls) goes on judging by that count — quiet only once the count stops.
    #[tokio::test]
    async fn a_bridged_call_is_still_timed_out_once_its_caller_goes_quiet() {
        let clock = MediaClock::start().unwrap();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let (events, mut rx) = mpsc::unbounded_channel();
        let timeout = Duration::from_millis(300);
        let media = clock.add(
            MediaSetup {
                socket,
                codec: Codec::Pcmu,
                payload_type: 0,
                telephone_event: None,
                remote: None,
                sending: false,
                metrics: Arc::new(Metrics::new()),
                call_id: "t".into(),
                rtp_timeout: Some(timeout),
                source: RtpSource::new(["127.0.0.1".parse().unwrap()]),
            },
            events,
        );
        let side = media.sip_side().unwrap();
        media.bridged(true);
        // The bridge hears the caller every 20 ms for four timeouts: no NoRtp meanwhile.
        let talking = Instant::now() + 4 * timeout;
        let mut last = Instant::now();
        while Instant::now() < talking {
            side.heard.fetch_add(1, Ordering::Relaxed);
            last = Instant::now();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(rx.try_recv().is_err(), "NoRtp while the bridge heard the caller");
        }
        // Quiet from the last packet on: NoRtp within two timeouts of it (the count is looked
        // at once a timeout), never before one.
        let event = tokio::time::timeout(3 * timeout, rx.recv()).await.expect("NoRtp once quiet");
        assert_eq!(event, Some(MediaEvent::NoRtp));
        assert!(last.elapsed() >= timeout, "not before a whole timeout of silence: {:?}", last.elapsed());
    }
}
