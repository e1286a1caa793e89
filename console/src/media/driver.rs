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
//! Legs are found by the datagram's source address (learned from the first datagram a leg
//! accepts: STUN carries the leg's ICE username), and timeouts are kept in a heap, so the cost
//! per datagram does not grow with the number of calls.

use super::webrtc::{LegEvent, LegOutput, WebRtcLeg};
use ivr::rtp::Forward;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// The largest datagram read: above any RTP, RTCP, STUN or DTLS packet a leg gets.
const MAX_DATAGRAM: usize = 2048;

enum Command {
    Add(u64, Box<WebRtcLeg>, mpsc::UnboundedSender<LegEvent>),
    Send(u64, Forward, Arc<[u8]>),
    Close(u64),
}

/// The running driver: hand it legs, get a [`LegHandle`] for each. The thread ends once this and
/// every handle are dropped.
#[derive(Clone)]
pub struct WebRtcMedia {
    tx: mpsc::UnboundedSender<Command>,
    local: SocketAddr,
    next_id: Arc<AtomicU64>,
}

impl WebRtcMedia {
    /// Starts the driver on `socket` (bound by the caller, port 0 allowed).
    pub fn start(socket: std::net::UdpSocket) -> std::io::Result<WebRtcMedia> {
        let local = socket.local_addr()?;
        socket.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new().name("webrtc-media".into()).spawn(move || {
            runtime.block_on(async move {
                match UdpSocket::from_std(socket) {
                    Ok(socket) => Driver::new(socket, local).run(rx).await,
                    Err(e) => tracing::error!(error = %e, "cannot use the WebRTC media socket"),
                }
            })
        })?;
        Ok(WebRtcMedia { tx, local, next_id: Arc::new(AtomicU64::new(1)) })
    }

    /// The socket's address (the candidate to announce, unless a public address is set).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
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
    /// Sends one forwarded packet to the browser (dropped unless the leg is connected).
    pub fn send(&self, packet: Forward, payload: Arc<[u8]>) {
        let _ = self.tx.send(Command::Send(self.id, packet, payload));
    }

    /// Hangs up the leg (RTCP BYE, DTLS close).
    pub fn close(&self) {
        let _ = self.tx.send(Command::Close(self.id));
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
}

struct Driver {
    socket: UdpSocket,
    local: SocketAddr,
    legs: HashMap<u64, Entry>,
    by_source: HashMap<SocketAddr, u64>,
    timeouts: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Driver {
    fn new(socket: UdpSocket, local: SocketAddr) -> Driver {
        Driver { socket, local, legs: HashMap::new(), by_source: HashMap::new(), timeouts: BinaryHeap::new() }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        tracing::info!(addr = %self.local, "WebRTC media listening");
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let next = self.next_timeout();
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, source)) => self.receive(Instant::now(), source, &buf[..len]),
                    // ICMP port-unreachable from a browser that went away, and the like.
                    Err(e) => tracing::debug!(error = %e, "WebRTC socket read"),
                },
                command = rx.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                _ = sleep_until(next) => self.timeouts_due(Instant::now()),
            }
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
                self.legs.insert(id, Entry { leg: *leg, events, timeout: None, sources: Vec::new() });
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
        }
    }

    /// Sends what leg `id` has to send, hands over its events, files its next timeout; removes
    /// it once it is over.
    fn flush(&mut self, id: u64) {
        let Some(entry) = self.legs.get_mut(&id) else { return };
        loop {
            match entry.leg.poll_output() {
                LegOutput::Transmit { destination, contents } => {
                    // Never wait for the socket: a datagram that does not fit is lost, as on the wire.
                    if let Err(e) = self.socket.try_send_to(&contents, destination) {
                        tracing::debug!(error = %e, %destination, "WebRTC datagram not sent");
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
        if !entry.leg.is_alive() {
            if let Some(entry) = self.legs.remove(&id) {
                for source in entry.sources {
                    self.by_source.remove(&source);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
