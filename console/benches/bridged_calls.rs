//! `bridged-calls`: how many calls the server bridges between a SIP caller's RTP and an operator's
//! browser (WebRTC) at once on this machine, with no packet lost and the forwarding delay it adds
//! — next to a plain UDP relay of the same packets in the same run, the limit.
//!
//! The server side is the real one, in this process: `console::media::WebRtcMedia` (the
//! `webrtc-media` thread: ICE-lite, DTLS-SRTP, RTCP, the bridge with strict RTP) and, per call, a
//! SIP RTP socket bridged to its leg. The far ends run in a **child process** (this binary,
//! `--child`), on a 2-worker tokio runtime: per call a browser built on the same WebRTC crate
//! (str0m, RTP mode: it offers, connects, sends and receives SRTP) and a SIP caller (a plain UDP
//! socket). Every 20 ms each browser and each caller send one 160-byte G.711 packet carrying its
//! send time; the other side reads it on arrival. A round with `N` calls connects all of them,
//! lets them talk for `--warmup` seconds, then measures for `--secs` seconds: packets sent and
//! received each way, and the one-way delay's percentiles. The same `N` flows then go through the
//! relay (one thread, a current-thread runtime, like the media thread: each packet read from one
//! side and sent on to the other) and are measured the same way. "Added" is the bridge's p99
//! minus the relay's.
//!
//! ```text
//! cargo bench -p console --bench bridged-calls -- [--calls 100,250,500] [--secs 10] [--warmup 3]
//! ```

use console::media::strict::RtpSource;
use console::media::{LegConfig, LegEvent, MediaState, SipSide, WebRtcLeg, WebRtcMedia};
use console::metrics::Metrics;
use ivr::rtp::{LegPayloads, RtpHeader, RtpPacket};
use ivr::sdp::Codec;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Options {
    calls: Vec<usize>,
    secs: u64,
    warmup: u64,
    child: bool,
    relay: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options { calls: vec![100, 250, 500], secs: 10, warmup: 3, child: false, relay: false };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value"));
        match a.as_str() {
            "--calls" => o.calls = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--secs" => o.secs = value()?.parse()?,
            "--warmup" => o.warmup = value()?.parse()?,
            "--child" => o.child = true,
            "--relay" => o.relay = true,
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

/// Microseconds since the Unix epoch: both processes read the same clock.
fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// A 160-byte payload carrying its send time in its first 8 bytes (μ-law silence after).
fn stamped(at_us: u64) -> Vec<u8> {
    let mut p = vec![0xFF; 160];
    p[..8].copy_from_slice(&at_us.to_be_bytes());
    p
}

fn stamp_of(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.get(..8)?.try_into().ok()?))
}

/// One direction's tally in the measured window.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct Tally {
    sent: u64,
    received: u64,
    /// One-way delays of the received packets, microseconds.
    delays: Vec<u32>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.received += other.received;
        self.delays.extend(other.delays);
    }

    fn percentile(&mut self, p: f64) -> f64 {
        if self.delays.is_empty() {
            return f64::NAN;
        }
        self.delays.sort_unstable();
        let i = ((self.delays.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.delays[i]) / 1000.0
    }
}

/// What the child reports at the end of a round.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct ChildReport {
    connected: usize,
    to_browser: Tally,
    to_caller: Tally,
    cpu_secs: f64,
}

/// The measured window, in the senders' clock: packets sent in it count, and so do their arrivals.
#[derive(Clone, Copy)]
struct Window {
    from_us: u64,
    to_us: u64,
}

impl Window {
    fn contains(&self, at_us: u64) -> bool {
        (self.from_us..self.to_us).contains(&at_us)
    }
}

/// The process's CPU time (user + system), from /proc (clock ticks of 1/100 s).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    if o.child {
        return child(&o);
    }
    println!(
        "bridged calls: {}-second windows after {} s of talk, each round next to a plain UDP relay",
        o.secs, o.warmup
    );
    println!(
        "{:>6} {:>9} {:>10} {:>10} {:>12} {:>12} {:>12} {:>9} {:>9} {:>10}",
        "calls",
        "connected",
        "lost→brw",
        "lost→clr",
        "p50/p99 brg",
        "p50/p99 rly",
        "added p99",
        "srv CPU",
        "far CPU",
        "RSS/call"
    );
    for &n in &o.calls {
        let bridged = round(&o, n, false)?;
        let relayed = round(&o, n, true)?;
        let both = |r: &Round| {
            let mut t = r.report.to_browser.clone();
            t.merge(r.report.to_caller.clone());
            t
        };
        let (mut b, mut r) = (both(&bridged), both(&relayed));
        let (b50, b99, r50, r99) = (b.percentile(0.5), b.percentile(0.99), r.percentile(0.5), r.percentile(0.99));
        let lost = |t: &Tally| t.sent.saturating_sub(t.received);
        println!(
            "{:>6} {:>9} {:>10} {:>10} {:>5.2}/{:<6.2} {:>5.2}/{:<6.2} {:>9.2} ms {:>8.0}% {:>8.0}% {:>7.1} KiB",
            n,
            bridged.report.connected,
            lost(&bridged.report.to_browser),
            lost(&bridged.report.to_caller),
            b50,
            b99,
            r50,
            r99,
            b99 - r99,
            100.0 * bridged.server_cpu / bridged.secs,
            100.0 * bridged.report.cpu_secs / bridged.secs,
            bridged.rss_per_call_kib,
        );
        println!(
            "{:>6} {:>9} {:>10} {:>10} (relay: {} lost of {} sent, server CPU {:.0}%)",
            "",
            "",
            "",
            "",
            lost(&relayed.report.to_browser) + lost(&relayed.report.to_caller),
            relayed.report.to_browser.sent + relayed.report.to_caller.sent,
            100.0 * relayed.server_cpu / relayed.secs
        );
    }
    Ok(())
}

struct Round {
    report: ChildReport,
    /// CPU seconds of this process during the measured window.
    server_cpu: f64,
    secs: f64,
    rss_per_call_kib: f64,
}

/// One round of `n` calls, bridged or relayed.
fn round(o: &Options, n: usize, relay: bool) -> anyhow::Result<Round> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let rss_before = rss_kib();
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child", "--calls", &n.to_string(), "--secs", &o.secs.to_string(), "--warmup", &o.warmup.to_string()])
        .args(relay.then_some("--relay"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut to_child = child.stdin.take().expect("stdin");
    let mut from_child = BufReader::new(child.stdout.take().expect("stdout"));
    let metrics = Arc::new(Metrics::new());
    let media = WebRtcMedia::start(UdpSocket::bind("127.0.0.1:0")?, metrics)?;
    let relay_runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut relays = Vec::new();
    let mut handles = Vec::new();
    // Each far end: "<browser addr> <caller addr> <offer as JSON>" (relay: no offer). All of
    // them are read before any answer is written: neither side blocks on a full pipe.
    let mut lines = Vec::with_capacity(n);
    for _ in 0..n {
        let mut line = String::new();
        from_child.read_line(&mut line)?;
        lines.push(line);
    }
    for line in lines {
        let mut parts = line.trim_end().splitn(3, ' ');
        let browser: SocketAddr = parts.next().unwrap_or_default().parse()?;
        let caller: SocketAddr = parts.next().unwrap_or_default().parse()?;
        let sip = UdpSocket::bind("127.0.0.1:0")?;
        let sip_port = sip.local_addr()?.port();
        if relay {
            let browser_side = UdpSocket::bind("127.0.0.1:0")?;
            let port = browser_side.local_addr()?.port();
            relays.push((sip, browser_side, browser, caller));
            writeln!(to_child, "{sip_port} {port} \"\"")?;
            continue;
        }
        let offer: String = serde_json::from_str(parts.next().unwrap_or("\"\""))?;
        let (leg, answer) =
            WebRtcLeg::accept_offer(&offer, LegConfig::new(Codec::Pcmu, media.local_addr()), Instant::now())?;
        let mut handle = media.add(leg);
        let side = SipSide {
            socket: sip,
            remote: Some(caller),
            payloads: LegPayloads::new(Codec::Pcmu),
            source: Arc::new(Mutex::new(RtpSource::new([caller.ip()]))),
            heard: Arc::new(AtomicU64::new(0)),
        };
        writeln!(to_child, "{sip_port} {} {}", media.local_addr().port(), serde_json::to_string(&answer)?)?;
        // Bridged once connected, as the SIP call task does.
        handles.push(runtime.spawn(async move {
            let mut side = Some(side);
            while let Some(event) = handle.events.recv().await {
                if let (LegEvent::State(MediaState::Connected), Some(s)) = (event, side.take()) {
                    handle.bridge(s);
                }
            }
        }));
    }
    to_child.flush()?;
    if relay {
        std::thread::spawn(move || relay_runtime.block_on(run_relay(relays)));
    }
    // The child says when its window starts and ends: "measuring", then its report.
    let mut line = String::new();
    from_child.read_line(&mut line)?;
    anyhow::ensure!(line.trim() == "measuring", "the child said {line:?}");
    let (cpu0, t0) = (cpu_secs(std::process::id()), Instant::now());
    let rss_per_call_kib = (rss_kib().saturating_sub(rss_before)) as f64 / n as f64;
    line.clear();
    from_child.read_line(&mut line)?;
    let server_cpu = cpu_secs(std::process::id()) - cpu0;
    let secs = t0.elapsed().as_secs_f64();
    let report: ChildReport = serde_json::from_str(line.trim())?;
    child.wait()?;
    if let Some(thread) = media.stop() {
        let _ = thread.join();
    }
    drop(handles);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(Round { report, server_cpu, secs, rss_per_call_kib })
}

/// The plain relay: per call, what one socket reads goes out of the other.
async fn run_relay(pairs: Vec<(UdpSocket, UdpSocket, SocketAddr, SocketAddr)>) {
    let mut tasks = Vec::new();
    for (sip, browser_side, browser, caller) in pairs {
        sip.set_nonblocking(true).unwrap();
        browser_side.set_nonblocking(true).unwrap();
        let sip = Arc::new(tokio::net::UdpSocket::from_std(sip).unwrap());
        let brw = Arc::new(tokio::net::UdpSocket::from_std(browser_side).unwrap());
        for (from, to, dest) in [(sip.clone(), brw.clone(), browser), (brw, sip, caller)] {
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok((n, _)) = from.recv_from(&mut buf).await {
                    let _ = to.send_to(&buf[..n], dest).await;
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
}

// ------------------------------------------------------------------------------------------------
// The child: the browsers and the callers
// ------------------------------------------------------------------------------------------------

fn child(o: &Options) -> anyhow::Result<()> {
    let n = *o.calls.first().unwrap_or(&1);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(child_main(n, o.secs, o.warmup, o.relay))
}

async fn child_main(n: usize, secs: u64, warmup: u64, relay: bool) -> anyhow::Result<()> {
    use str0m::change::SdpAnswer;
    use str0m::media::{Direction, MediaKind};
    use str0m::{Candidate, Rtc};
    let stdout = std::io::stdout();
    let mut ends = Vec::new();
    for _ in 0..n {
        let browser = UdpSocket::bind("127.0.0.1:0")?;
        let caller = UdpSocket::bind("127.0.0.1:0")?;
        let (b, c) = (browser.local_addr()?, caller.local_addr()?);
        let offer = if relay {
            (None, String::new())
        } else {
            let mut builder = Rtc::builder()
                .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
                .set_rtp_mode(true)
                .clear_codecs();
            builder.codec_config().enable_pcmu(true, false);
            let mut rtc = builder.build(Instant::now());
            rtc.add_local_candidate(Candidate::host(b, "udp")?);
            let mut change = rtc.sdp_api();
            let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
            let (offer, pending) = change.apply().expect("an offer");
            (Some((rtc, mid, pending)), offer.to_sdp_string())
        };
        writeln!(stdout.lock(), "{b} {c} {}", serde_json::to_string(&offer.1)?)?;
        ends.push((browser, caller, offer.0));
    }
    stdout.lock().flush()?;
    // The answers: "<sip port> <browser-side port> <answer as JSON>".
    let stdin = std::io::stdin();
    let start = now_us() + 500_000 + warmup * 1_000_000;
    let window = Window { from_us: start, to_us: start + secs * 1_000_000 };
    let mut tasks = Vec::new();
    for (browser, caller, rtc) in ends {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        let mut parts = line.trim_end().splitn(3, ' ');
        let sip_port: u16 = parts.next().unwrap_or_default().parse()?;
        let server_port: u16 = parts.next().unwrap_or_default().parse()?;
        let answer: String = serde_json::from_str(parts.next().unwrap_or("\"\""))?;
        let sip = SocketAddr::from(([127, 0, 0, 1], sip_port));
        let server = SocketAddr::from(([127, 0, 0, 1], server_port));
        let rtc = match rtc {
            Some((mut rtc, mid, pending)) => {
                rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer)?)?;
                Some((rtc, mid))
            }
            None => None,
        };
        browser.set_nonblocking(true)?;
        caller.set_nonblocking(true)?;
        tasks.push(tokio::spawn(far_end(browser, caller, rtc, sip, server, window)));
    }
    let wait = Duration::from_micros(window.from_us.saturating_sub(now_us()));
    tokio::time::sleep(wait).await;
    let cpu0 = cpu_secs(std::process::id());
    writeln!(stdout.lock(), "measuring")?;
    stdout.lock().flush()?;
    let mut report = ChildReport::default();
    for t in tasks {
        let (connected, to_browser, to_caller) = t.await?;
        report.connected += usize::from(connected);
        report.to_browser.merge(to_browser);
        report.to_caller.merge(to_caller);
    }
    report.cpu_secs = cpu_secs(std::process::id()) - cpu0;
    writeln!(stdout.lock(), "{}", serde_json::to_string(&report)?)?;
    stdout.lock().flush()?;
    Ok(())
}

/// One call's far ends until the window is over (and half a second more for late arrivals):
/// whether the browser connected, and the tallies towards the browser and towards the caller.
async fn far_end(
    browser: UdpSocket,
    caller: UdpSocket,
    mut rtc: Option<(str0m::Rtc, str0m::media::Mid)>,
    sip: SocketAddr,
    server: SocketAddr,
    window: Window,
) -> (bool, Tally, Tally) {
    use str0m::net::{Protocol, Receive};
    use str0m::rtp::RtpWrite;
    use str0m::{Event, Input, Output};
    let local = browser.local_addr().expect("bound");
    let browser = tokio::net::UdpSocket::from_std(browser).expect("socket");
    let caller = tokio::net::UdpSocket::from_std(caller).expect("socket");
    let (mut to_browser, mut to_caller) = (Tally::default(), Tally::default());
    let mut connected = rtc.is_none();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let end_us = window.to_us + 500_000;
    let mut seq: u64 = 0;
    let (mut bbuf, mut cbuf) = (vec![0u8; 2048], vec![0u8; 2048]);
    let arrived = |tally: &mut Tally, payload: &[u8]| {
        if let Some(at) = stamp_of(payload).filter(|at| window.contains(*at)) {
            tally.received += 1;
            tally.delays.push(now_us().saturating_sub(at) as u32);
        }
    };
    loop {
        // Drain the browser's outputs to its next timeout.
        let mut timeout = Instant::now() + Duration::from_millis(100);
        if let Some((rtc, _)) = rtc.as_mut() {
            loop {
                match rtc.poll_output() {
                    Ok(Output::Timeout(t)) => {
                        timeout = t;
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        let _ = browser.try_send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Event(Event::Connected)) => connected = true,
                    Ok(Output::Event(Event::RtpPacket(p))) => arrived(&mut to_browser, &p.payload),
                    Ok(Output::Event(_)) => {}
                    Err(_) => break,
                }
            }
        }
        let now = now_us();
        if now >= end_us {
            return (connected, to_browser, to_caller);
        }
        tokio::select! {
            _ = tick.tick() => {
                if !connected {
                    continue;
                }
                let at = now_us();
                seq += 1;
                // The caller talks to the server's SIP socket.
                let header = RtpHeader { marker: seq == 1, payload_type: 0, sequence: seq as u16, timestamp: 160 * seq as u32, ssrc: 0x5151, csrcs: Vec::new() };
                let _ = caller.try_send_to(&header.encode(&stamped(at)), sip);
                if window.contains(at) {
                    to_browser.sent += 1;
                    to_caller.sent += 1;
                }
                // The browser talks (SRTP), or in the relay round plain RTP to the relay.
                match rtc.as_mut() {
                    Some((rtc, mid)) => {
                        let write = RtpWrite::new(0.into(), seq.into(), 160 * seq as u32, Instant::now(), stamped(at)).marker(seq == 1);
                        if let Some(tx) = rtc.direct_api().stream_tx_by_mid(*mid, None) {
                            tx.write_rtp(write);
                        }
                    }
                    None => {
                        let _ = browser.try_send_to(&header.encode(&stamped(at)), server);
                    }
                }
            }
            r = browser.recv_from(&mut bbuf) => if let Ok((len, source)) = r {
                match rtc.as_mut() {
                    Some((rtc, _)) => {
                        if let Ok(receive) = Receive::new(Protocol::Udp, source, local, &bbuf[..len]) {
                            let _ = rtc.handle_input(Input::Receive(Instant::now(), receive));
                        }
                    }
                    None => {
                        if let Ok(p) = RtpPacket::decode(&bbuf[..len]) {
                            arrived(&mut to_browser, p.payload);
                        }
                    }
                }
            },
            r = caller.recv_from(&mut cbuf) => if let Ok((len, _)) = r {
                if let Ok(p) = RtpPacket::decode(&cbuf[..len]) {
                    arrived(&mut to_caller, p.payload);
                }
            },
            _ = tokio::time::sleep_until(timeout.into()) => {
                if let Some((rtc, _)) = rtc.as_mut() {
                    let _ = rtc.handle_input(Input::Timeout(Instant::now()));
                }
            }
        }
    }
}
