//! One call's media task: owns its RTP socket, streams the queued clips as G.711 packets on a
//! fixed 20 ms grid (`Pacer`: packet *n* due at start + n·20 ms, never accumulated), and reads the
//! caller's packets for RFC 4733 DTMF and for symmetric RTP (answer to where their packets come
//! from once they arrive, else to the SDP address).
//!
//! It is apart from the call's control task so that a slow database write never delays a packet.
//! Between prompts nothing is sent (the timestamp still advances over the gap, RFC 3550 §5.1);
//! each prompt starts a talkspurt (marker bit).

use super::audio::{hold_tone, Clip};
use crate::metrics::{DtmfLabels, Metrics};
use ivr::domain::DtmfDigit;
use ivr::rtp::{DtmfReceiver, Pacer, Packetizer, RtpPacket, DEFAULT_EVENT_TIMEOUT, SAMPLES_PER_PACKET};
use ivr::sdp::Codec;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// A packet sent later than this after its grid slot counts as late.
pub const LATE_AFTER_MICROS: i64 = 5_000;
/// At most this many overdue packets are sent in one burst; beyond, the stream skips ahead.
const MAX_BURST: u32 = 5;

/// What the call's control task asks of its media.
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

/// What the media reports to the control task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// A key, from the caller's RFC 4733 telephone-events.
    Digit(DtmfDigit),
    /// Every clip queued so far (`played` of them) has played or was dropped.
    Idle { played: u64 },
}

/// How the call's audio was negotiated.
pub struct MediaSetup {
    /// The call's RTP socket, non-blocking; registered with the runtime in the task.
    pub socket: std::net::UdpSocket,
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
    pub remote: Option<SocketAddr>,
    pub sending: bool,
    pub metrics: Arc<Metrics>,
    pub call_id: String,
}

struct Current {
    clip: Clip,
    pos: usize,
    hold: bool,
}

/// Starts the media task; it ends when the command sender is dropped or on `MediaCmd::Stop`.
pub fn spawn(setup: MediaSetup, events: mpsc::UnboundedSender<MediaEvent>) -> mpsc::UnboundedSender<MediaCmd> {
    let (tx, rx) = mpsc::unbounded_channel();
    let span = tracing::info_span!("media", call_id = %setup.call_id);
    tokio::spawn(tracing::Instrument::instrument(run(setup, rx, events), span));
    tx
}

async fn run(setup: MediaSetup, mut cmds: mpsc::UnboundedReceiver<MediaCmd>, events: mpsc::UnboundedSender<MediaEvent>) {
    static HOLD: OnceLock<Clip> = OnceLock::new();
    let hold_clip = HOLD.get_or_init(hold_tone).clone();
    let MediaSetup { socket, codec, payload_type, telephone_event, mut remote, mut sending, metrics, .. } = setup;
    let socket = match UdpSocket::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot use the RTP socket: no audio for this call");
            return;
        }
    };
    let mut packetizer = Packetizer::new(codec, payload_type, rand::random(), rand::random(), rand::random());
    let mut dtmf = telephone_event.map(|pt| DtmfReceiver::new(pt, DEFAULT_EVENT_TIMEOUT));
    let mut latched = false;
    let mut pacer: Option<Pacer> = None;
    let mut next_index: u32 = 0;
    // Index of the last packet sent (timestamps advance over slots not sent).
    let mut last_index: Option<u32> = None;
    let mut queue: VecDeque<Clip> = VecDeque::new();
    let mut current: Option<Current> = None;
    let mut hold = false;
    let mut queued: u64 = 0;
    let mut done: u64 = 0;
    let mut buf = vec![0u8; 2048];

    loop {
        let has_audio = current.is_some() || !queue.is_empty() || hold;
        let due = match (&pacer, has_audio) {
            (Some(p), true) => {
                if current.is_none() {
                    // Resuming after a gap: the next free slot of the grid.
                    let now_slot = u32::try_from(p.packets_due(Instant::now())).unwrap_or(u32::MAX);
                    next_index = next_index.max(now_slot);
                }
                Some(p.send_at(next_index))
            }
            _ => None,
        };
        let dtmf_deadline = dtmf.as_ref().and_then(DtmfReceiver::deadline);
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None | Some(MediaCmd::Stop) => break,
                Some(MediaCmd::Start) => {
                    if pacer.is_none() {
                        pacer = Some(Pacer::new(Instant::now()));
                    }
                }
                Some(MediaCmd::Play(clip)) => {
                    queued += 1;
                    if current.as_ref().is_some_and(|c| c.hold) {
                        current = None;
                        let _ = packetizer.flush();
                    }
                    queue.push_back(clip);
                }
                Some(MediaCmd::StopAudio) => {
                    let _ = packetizer.flush();
                    current = None;
                    queue.clear();
                    if done != queued {
                        done = queued;
                        let _ = events.send(MediaEvent::Idle { played: done });
                    }
                }
                Some(MediaCmd::Hold(on)) => hold = on,
                Some(MediaCmd::Remote { addr, sending: s }) => {
                    if addr.is_some() && addr != remote {
                        remote = addr;
                        latched = false;
                    }
                    sending = s;
                }
            },
            r = socket.recv_from(&mut buf) => {
                let Ok((len, source)) = r else { continue };
                if !latched {
                    remote = Some(source);
                    latched = true;
                }
                if let (Some(rx), Ok(packet)) = (dtmf.as_mut(), RtpPacket::decode(&buf[..len])) {
                    if let Some(digit) = rx.on_packet(&packet.header, packet.payload, Instant::now()) {
                        metrics.dtmf_received.get_or_create(&DtmfLabels { source: "rfc4733".into() }).inc();
                        let _ = events.send(MediaEvent::Digit(digit));
                    }
                }
            }
            _ = sleep_until_opt(due) => {
                let Some(p) = pacer else { continue };
                let now = Instant::now();
                let overdue = u32::try_from(p.packets_due(now)).unwrap_or(u32::MAX).saturating_sub(next_index);
                if overdue > MAX_BURST {
                    // Stalled (the machine was starved): skip ahead rather than burst.
                    next_index += overdue - MAX_BURST;
                }
                while p.send_at(next_index) <= now {
                    if current.is_none() && queue.is_empty() && !hold {
                        break;
                    }
                    if let Some(last) = last_index {
                        // Slots left empty since the last packet: keep the timestamp on the clock.
                        packetizer_skip(&mut packetizer, next_index.saturating_sub(last).saturating_sub(1));
                    }
                    last_index = Some(next_index);
                    let Some(packet) = next_frame(&mut packetizer, &mut current, &mut queue, hold, &hold_clip, &mut done, queued, &events) else { break };
                    if let (true, Some(to)) = (sending, remote) {
                        let deviation = p.deviation_micros(next_index, Instant::now());
                        if socket.send_to(&packet, to).await.is_ok() {
                            metrics.rtp_packets_sent.inc();
                            metrics.rtp_send_deviation.observe(deviation.max(0) as f64 / 1e6);
                            if deviation > LATE_AFTER_MICROS {
                                metrics.rtp_late_packets.inc();
                            }
                        }
                    }
                    next_index += 1;
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

fn packetizer_skip(p: &mut Packetizer, slots: u32) {
    p.skip_silence(slots.saturating_mul(SAMPLES_PER_PACKET as u32));
}

/// The next 20 ms packet of what is playing, starting the next clip (with a marker) as needed.
#[allow(clippy::too_many_arguments)]
fn next_frame(
    packetizer: &mut Packetizer,
    current: &mut Option<Current>,
    queue: &mut VecDeque<Clip>,
    hold: bool,
    hold_clip: &Clip,
    done: &mut u64,
    queued: u64,
    events: &mpsc::UnboundedSender<MediaEvent>,
) -> Option<Vec<u8>> {
    loop {
        if current.is_none() {
            if let Some(clip) = queue.pop_front() {
                *current = Some(Current { clip, pos: 0, hold: false });
            } else if hold {
                *current = Some(Current { clip: hold_clip.clone(), pos: 0, hold: true });
            } else {
                return None;
            }
            packetizer.start_talkspurt();
        }
        let cur = current.as_mut()?;
        let end = (cur.pos + SAMPLES_PER_PACKET).min(cur.clip.len());
        let mut packets = packetizer.push(&cur.clip[cur.pos..end]);
        cur.pos = end;
        if cur.pos >= cur.clip.len() {
            let finished_hold = cur.hold;
            *current = None;
            packets.extend(packetizer.flush());
            if !finished_hold {
                *done += 1;
                if queue.is_empty() && *done == queued {
                    let _ = events.send(MediaEvent::Idle { played: *done });
                }
            }
        }
        if let Some(p) = packets.into_iter().next() {
            return Some(p);
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
