//! Concurrent three-party conferences next to as many two-party bridged calls, on one media
//! thread (BENCHMARKS.md, "Conferences").
//!
//! What a conference costs is the mixer's: every 20 ms, each party's G.711 frame decoded
//! ([`Mixer::push`]), each party's mix of the others summed and encoded again
//! ([`Mixer::tick`]), each packet written and sent. A two-party call costs two packets crossing
//! `ivr::rtp::Bridge` unchanged. One thread does both, as the `webrtc-media` thread does: on each
//! tick of a current-thread runtime's 20 ms interval it first forwards the bridged calls' packets
//! of that tick, then mixes every conference; the **mixing delay** of a conference is the time
//! from the tick being due to its last packet being sent (so it includes the bridges' work and
//! the conferences mixed before it). Every packet goes to a loopback UDP socket standing for the
//! far ends, read on another thread, which counts them: lost = sent − received. (SRTP and the
//! WebRTC legs' own work are not here: see BENCHMARKS.md.)
//!
//! The far ends stand for phones and browsers on other machines, which cost the server nothing:
//! their thread wakes every [`DRAIN_EVERY`] and drains the socket without blocking, into a
//! receive buffer sized for several ticks' packets (what the far ends' own buffers add up to).
//! `--blocking-sink` instead reads with a blocking `recv`, as this bench did before: the kernel
//! then wakes the reader for each packet and, on two busy cores, often runs it in place of the
//! sender, inside the sender's `sendto` (docs/perf-notes.md, "Conferences").
//!
//! The media loop runs on a thread of its own, `webrtc-media`, at the normal policy; with
//! `--realtime` that thread first moves itself to `SCHED_FIFO` priority 10, as a service manager
//! would put the server's media threads (`chrt -f -p 10` on the thread, like the SIP bench's
//! `CLOCK_PRIORITY=rr`; the server does not change its own scheduling). The far ends' thread stays
//! at the normal policy either way.
//!
//! `cargo bench -p console --bench conference -- [--blocking-sink] [--realtime] [secs] [n…]`
//! (defaults: 10 s; 50 100 150 200 300).

use console::media::{Audience, Mixed, Mixer, PartyConfig};
use ivr::rtp::{
    encode, Bridge, LegPayloads, RtpHeader, Side, StreamStart, Verdict, PACKET_INTERVAL, SAMPLES_PER_PACKET,
};
use ivr::sdp::Codec;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the far ends drain their socket.
const DRAIN_EVERY: Duration = Duration::from_millis(2);
/// The far ends' receive buffer asked for (the kernel caps it at `net.core.rmem_max`, then
/// doubles it for its bookkeeping): room for several ticks of packets at 300 + 300.
const SINK_BUFFER: usize = 4 << 20;

fn tone(freq: f64, ticks: usize) -> Vec<Vec<u8>> {
    (0..ticks)
        .map(|t| {
            let samples: Vec<i16> = (t * SAMPLES_PER_PACKET..(t + 1) * SAMPLES_PER_PACKET)
                .map(|n| (6000.0 * (2.0 * std::f64::consts::PI * freq * n as f64 / 8000.0).sin()) as i16)
                .collect();
            encode(Codec::Pcmu, &samples)
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Outcome {
    conference_delay: Vec<f64>,
    bridge_time: Vec<f64>,
    mix_time: Vec<f64>,
    /// Per tick, the decoding, mixing and encoding alone (no sends).
    compute_time: Vec<f64>,
    /// Per tick, how late the tick ran after it was due (the 20 ms grid's drift).
    lateness: Vec<f64>,
    sent: u64,
    /// Sends the socket refused (would block): none expected on loopback.
    refused: u64,
    received: u64,
    late_ticks: u64,
    /// The far ends' receive buffer as the kernel set it (bytes).
    sink_buffer: usize,
    /// Whether the media thread got real-time priority.
    realtime: bool,
}

/// The far ends' socket: blocking reads with a timeout (`--blocking-sink`, the kernel's default
/// buffer), or non-blocking with [`SINK_BUFFER`]. Also the buffer's size as set.
fn far_ends(blocking: bool) -> (UdpSocket, usize) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, Some(socket2::Protocol::UDP)).unwrap();
    if blocking {
        socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    } else {
        socket.set_recv_buffer_size(SINK_BUFFER).unwrap();
        socket.set_nonblocking(true).unwrap();
    }
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let size = socket.recv_buffer_size().unwrap();
    (socket.into(), size)
}

/// Moves the calling thread to `SCHED_FIFO` priority 10 (as root, or with `CAP_SYS_NICE` or
/// `RLIMIT_RTPRIO`); whether it was granted.
fn raise_to_fifo() -> bool {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy, ThreadPriority,
        ThreadSchedulePolicy,
    };
    let fifo = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
    match ThreadPriority::try_from(10u8) {
        Ok(priority) => match set_thread_priority_and_policy(thread_native_id(), priority, fifo) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("real-time priority refused: {e:?}");
                false
            }
        },
        Err(e) => {
            eprintln!("{e}");
            false
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn run(n: usize, secs: u64, blocking_sink: bool, realtime: bool) -> Outcome {
    let (sink, sink_buffer) = far_ends(blocking_sink);
    let sink_addr = sink.local_addr().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let counting = received.clone();
    let done = Arc::new(AtomicBool::new(false));
    let finished = done.clone();
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        if blocking_sink {
            let mut quiet = 0;
            loop {
                match sink.recv(&mut buf) {
                    Ok(_) => {
                        counting.fetch_add(1, Ordering::Relaxed);
                        quiet = 0;
                    }
                    Err(_) => {
                        quiet += 1;
                        if quiet > 4 {
                            return;
                        }
                    }
                }
            }
        }
        loop {
            // Read after the flag: once the sender is done, one more drain takes the rest.
            let last = finished.load(Ordering::Acquire);
            let mut n = 0;
            while sink.recv(&mut buf).is_ok() {
                n += 1;
            }
            counting.fetch_add(n, Ordering::Relaxed);
            if last {
                return;
            }
            std::thread::sleep(DRAIN_EVERY);
        }
    });
    // The media thread, as the server's `webrtc-media`: real-time priority first with
    // `--realtime`, then a current-thread runtime. The far ends' thread above was spawned before,
    // at the normal policy.
    let media = std::thread::Builder::new().name("webrtc-media".into()).spawn(move || {
        let raised = realtime && raise_to_fifo();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build().unwrap();
        let outcome = runtime.block_on(async move {
            let out = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let tones = [tone(440.0, 50), tone(1000.0, 50), tone(1600.0, 50)];
            let payloads = LegPayloads::new(Codec::Pcmu).with_telephone_event(101);
            let start = |ssrc: u32| StreamStart { ssrc, sequence: 100, timestamp: 1000 };
            let mut bridges: Vec<Bridge> = (0..n)
                .map(|i| Bridge::new(payloads, payloads, start(2 * i as u32), start(2 * i as u32 + 1)).unwrap())
                .collect();
            let mut mixers: Vec<Mixer> = (0..n)
                .map(|i| {
                    let mut m = Mixer::new();
                    for p in 0..3u64 {
                        let config = PartyConfig {
                            codec: Codec::Pcmu,
                            payload_type: 0,
                            ssrc: (i * 3) as u32 + p as u32,
                            sequence: 1,
                            timestamp: 1,
                        };
                        m.join(p, config, Audience::Everyone).unwrap();
                    }
                    m
                })
                .collect();
            let mut mixed: Vec<Mixed> = Vec::new();
            let mut buf = Vec::with_capacity(12 + SAMPLES_PER_PACKET);
            let mut outcome = Outcome {
                conference_delay: Vec::new(),
                bridge_time: Vec::new(),
                mix_time: Vec::new(),
                compute_time: Vec::new(),
                lateness: Vec::new(),
                sent: 0,
                refused: 0,
                sink_buffer: 0,
                realtime: false,
                received: 0,
                late_ticks: 0,
            };
            let mut tick = tokio::time::interval(PACKET_INTERVAL);
            let ticks = secs * 50;
            for t in 0..ticks {
                let due = tick.tick().await.into_std();
                let frame = (t % 50) as usize;
                let began = Instant::now();
                let late = began.duration_since(due);
                outcome.lateness.push(late.as_secs_f64());
                if late > PACKET_INTERVAL {
                    outcome.late_ticks += 1;
                }
                // The two-party calls: a packet each way across each bridge.
                for (i, bridge) in bridges.iter_mut().enumerate() {
                    for (side, ssrc) in [(Side::A, 0x1000_0000 + i as u32), (Side::B, 0x2000_0000 + i as u32)] {
                        let header = RtpHeader {
                            marker: t == 0,
                            payload_type: 0,
                            sequence: t as u16,
                            timestamp: (t as u32) * 160,
                            ssrc,
                            csrcs: Vec::new(),
                        };
                        let payload = &tones[0][frame];
                        if let Verdict::Forward(f) = bridge.forward(side, &header, payload, began) {
                            f.write(payload, &mut buf);
                            match out.try_send_to(&buf, sink_addr) {
                                Ok(_) => outcome.sent += 1,
                                Err(_) => outcome.refused += 1,
                            }
                        }
                    }
                }
                let bridged = Instant::now();
                outcome.bridge_time.push(bridged.duration_since(began).as_secs_f64());
                // The conferences: three frames in, three mixes out.
                let mut compute = Duration::ZERO;
                for mixer in &mut mixers {
                    let computing = Instant::now();
                    for (p, tone) in tones.iter().enumerate() {
                        mixer.push(p as u64, &tone[frame]);
                    }
                    mixed.clear();
                    mixer.tick(&mut mixed);
                    compute += computing.elapsed();
                    for m in mixed.drain(..) {
                        m.packet.write(&m.payload, &mut buf);
                        match out.try_send_to(&buf, sink_addr) {
                            Ok(_) => outcome.sent += 1,
                            Err(_) => outcome.refused += 1,
                        }
                    }
                    outcome.conference_delay.push(due.elapsed().as_secs_f64());
                }
                outcome.mix_time.push(bridged.elapsed().as_secs_f64());
                outcome.compute_time.push(compute.as_secs_f64());
            }
            outcome
        });
        (outcome, raised)
    });
    let (mut outcome, raised) = media.unwrap().join().unwrap();
    outcome.realtime = raised;
    // Whatever is still in flight on loopback is in the socket's buffer by now.
    std::thread::sleep(Duration::from_millis(50));
    done.store(true, Ordering::Release);
    receiver.join().unwrap();
    outcome.sink_buffer = sink_buffer;
    outcome.received = received.load(Ordering::Relaxed);
    outcome
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let blocking_sink = args.iter().any(|a| a == "--blocking-sink");
    let realtime = args.iter().any(|a| a == "--realtime");
    let args: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let secs: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let ns: Vec<usize> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    let ns = if ns.is_empty() { vec![50, 100, 150, 200, 300] } else { ns };
    println!(
        "far ends: {} sink; {secs} s per step",
        if blocking_sink { "blocking (woken per packet)" } else { "draining every 2 ms" }
    );
    println!("| conferences + bridged calls | mixing delay p50 / p99 / max (ms) | bridges per tick p99 (ms) | mixing per tick p99 (ms) | of which decode+mix+encode p99 (ms) | tick lateness p99 (ms) | packets sent | lost | refused sends | late ticks | sink buffer (KiB) | media thread | load average before → after |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for n in ns {
        let load_before = load_average();
        let mut o = run(n, secs, blocking_sink, realtime);
        let ms = |v: f64| v * 1000.0;
        o.conference_delay.sort_by(f64::total_cmp);
        o.bridge_time.sort_by(f64::total_cmp);
        o.mix_time.sort_by(f64::total_cmp);
        o.compute_time.sort_by(f64::total_cmp);
        o.lateness.sort_by(f64::total_cmp);
        println!(
            "| {n} + {n} | {:.2} / {:.2} / {:.2} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} | {load_before} → {} |",
            ms(percentile(&o.conference_delay, 0.5)),
            ms(percentile(&o.conference_delay, 0.99)),
            ms(*o.conference_delay.last().unwrap_or(&f64::NAN)),
            ms(percentile(&o.bridge_time, 0.99)),
            ms(percentile(&o.mix_time, 0.99)),
            ms(percentile(&o.compute_time, 0.99)),
            ms(percentile(&o.lateness, 0.99)),
            o.sent,
            o.sent.saturating_sub(o.received),
            o.refused,
            o.late_ticks,
            o.sink_buffer / 1024,
            if o.realtime { "SCHED_FIFO" } else { "normal" },
            load_average(),
        );
    }
}
