//! Prometheus metrics (`GET /metrics`, text exposition format) with the `prometheus-client` crate,
//! the Prometheus project's own Rust client. One registry per server.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The matched route (`/api/services/{id}`), never the raw path, to bound cardinality.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub channel: String,
    pub outcome: String,
}

/// SIP requests received, by method (`INVITE`, `BYE`, … or `other`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SipMethodLabels {
    pub method: String,
}

/// SIP responses sent, by status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SipStatusLabels {
    pub status: u16,
}

/// SIP requests refused or dropped at the edge, by why (`forbidden`, `rate`, `max_calls`,
/// `oversized`, `transactions`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SipRefusedLabels {
    pub reason: String,
}

/// RTP packets dropped because they did not come from the call's caller (strict RTP), by kind
/// (`dtmf`: RFC 4733 telephone-events; `other`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RtpForeignLabels {
    pub kind: String,
}

/// DTMF keys received, by how they came (`rfc4733` or `info`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DtmfLabels {
    pub source: String,
}

/// Every metric the server exports.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `to_browser` (the caller's packets) or `to_caller` (the operator's); for a browser leg's
    /// quality, `to_browser` or `from_browser`.
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<HttpLabels, Histogram>,
    pub calls_active: Family<ChannelLabels, Gauge>,
    pub calls_started: Family<ChannelLabels, Counter>,
    pub calls_ended: Family<OutcomeLabels, Counter>,
    pub engine_decisions: Counter,
    // --- SIP ---
    pub sip_requests: Family<SipMethodLabels, Counter>,
    pub sip_responses: Family<SipStatusLabels, Counter>,
    pub sip_refused: Family<SipRefusedLabels, Counter>,
    /// Live SIP server transactions (set on the signalling task's timer ticks).
    pub sip_transactions: Gauge,
    pub rtp_packets_sent: Counter,
    /// Packets sent more than 5 ms after their slot on the 20 ms grid.
    pub rtp_late_packets: Counter,
    /// How far each packet's send landed after its grid slot, seconds.
    pub rtp_send_deviation: Histogram,
    pub dtmf_received: Family<DtmfLabels, Counter>,
    pub rtp_foreign_packets: Family<RtpForeignLabels, Counter>,
    /// Wallboard snapshots read from the database (one per second while any wallboard is open,
    /// however many are open; plus one when a wallboard opens).
    pub wallboard_snapshots: Counter,
    /// Passes of this node's queue service (ACD): one a second, and one on each queue change.
    pub acd_passes: Counter,
    // --- the browser phone ---
    /// Calls bridged to an operator's browser now.
    pub browser_bridges: Gauge,
    /// Packets forwarded across the bridges, by direction.
    pub bridge_packets: Family<DirectionLabels, Counter>,
    /// Browser phones that did not carry their call (ICE/DTLS not completing, connection lost,
    /// microphone refused, no offer, closed), by reason.
    pub browser_phone_failures: Family<ReasonLabels, Counter>,
    /// From the transfer to a browser operator to audio flowing both ways, seconds.
    pub browser_connect: Histogram,
    /// Fraction of packets lost on browser legs, from RTCP receiver reports, by direction
    /// (`to_browser`: reported by the browser; `from_browser`: measured here).
    pub browser_leg_loss: Family<DirectionLabels, Histogram, fn() -> Histogram>,
    /// Interarrival jitter on browser legs (RFC 3550), seconds, by direction.
    pub browser_leg_jitter: Family<DirectionLabels, Histogram, fn() -> Histogram>,
    /// Calls mixed now (more than two parties: a supervisor or a mediator joined).
    pub conferences: Gauge,
    /// From a 20 ms tick being due to a conference's mixes being sent, seconds.
    pub mixing_delay: Histogram,
    /// Browser phone media steps not written to the call's timeline (the journal's queue full).
    pub media_journal_dropped: Counter,
    /// The process's resident set (`VmRSS`), bytes; read from `/proc/self/status` on each scrape.
    process_resident_memory: Gauge,
    /// The most the resident set has been since the process started (`VmHWM`), bytes.
    process_resident_memory_peak: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("helpline");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", http_requests.clone());
        let http_duration = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register("http_request_duration_seconds", "HTTP request latency", http_duration.clone());
        let calls_active = Family::<ChannelLabels, Gauge>::default();
        registry.register("calls_active", "Calls in progress", calls_active.clone());
        let calls_started = Family::<ChannelLabels, Counter>::default();
        registry.register("calls_started", "Calls started", calls_started.clone());
        let calls_ended = Family::<OutcomeLabels, Counter>::default();
        registry.register("calls_ended", "Calls ended, by outcome", calls_ended.clone());
        let engine_decisions = Counter::default();
        registry.register("engine_decisions", "Events decided by the voice-menu engine", engine_decisions.clone());
        let sip_requests = Family::<SipMethodLabels, Counter>::default();
        registry.register("sip_requests", "SIP requests received, by method", sip_requests.clone());
        let sip_responses = Family::<SipStatusLabels, Counter>::default();
        registry.register("sip_responses", "SIP responses sent, by status", sip_responses.clone());
        let sip_refused = Family::<SipRefusedLabels, Counter>::default();
        registry.register(
            "sip_refused",
            "SIP requests refused or dropped at the edge (allow-list, rate, call limit, size, transactions)",
            sip_refused.clone(),
        );
        let sip_transactions = Gauge::default();
        registry.register("sip_transactions", "Live SIP server transactions", sip_transactions.clone());
        let rtp_packets_sent = Counter::default();
        registry.register("rtp_packets_sent", "RTP audio packets sent", rtp_packets_sent.clone());
        let rtp_late_packets = Counter::default();
        registry.register(
            "rtp_late_packets",
            "RTP packets sent more than 5 ms after their slot on the 20 ms grid",
            rtp_late_packets.clone(),
        );
        let rtp_send_deviation =
            Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05]);
        registry.register(
            "rtp_send_deviation_seconds",
            "How late each RTP packet was sent after its slot on the 20 ms grid",
            rtp_send_deviation.clone(),
        );
        let dtmf_received = Family::<DtmfLabels, Counter>::default();
        registry.register("dtmf_received", "DTMF keys received, by source (rfc4733, info)", dtmf_received.clone());
        let rtp_foreign_packets = Family::<RtpForeignLabels, Counter>::default();
        registry.register(
            "rtp_foreign_packets",
            "RTP packets dropped for coming from neither the call's signalled hosts nor its latched address",
            rtp_foreign_packets.clone(),
        );
        let wallboard_snapshots = Counter::default();
        registry.register(
            "wallboard_snapshots",
            "Wallboard snapshots read from the database (shared by every open wallboard)",
            wallboard_snapshots.clone(),
        );
        let acd_passes = Counter::default();
        registry.register(
            "acd_passes",
            "Passes of the queue service (ACD) on this node, whether or not they changed anything",
            acd_passes.clone(),
        );
        let browser_bridges = Gauge::default();
        registry.register("browser_bridges", "Calls bridged to an operator's browser now", browser_bridges.clone());
        let bridge_packets = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "bridge_packets",
            "RTP packets forwarded between callers and browsers, by direction (to_browser, to_caller)",
            bridge_packets.clone(),
        );
        let browser_phone_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "browser_phone_failures",
            "Browser phones that did not carry their call, by reason (the caller went back to the queue)",
            browser_phone_failures.clone(),
        );
        let browser_connect = Histogram::new([0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0]);
        registry.register(
            "browser_connect_seconds",
            "From the transfer to a browser operator to audio flowing both ways",
            browser_connect.clone(),
        );
        let browser_leg_loss: Family<DirectionLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new([0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]));
        registry.register(
            "browser_leg_loss_ratio",
            "Fraction of packets lost on browser legs, from RTCP receiver reports, by direction (to_browser, from_browser)",
            browser_leg_loss.clone(),
        );
        let browser_leg_jitter: Family<DirectionLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16]));
        registry.register(
            "browser_leg_jitter_seconds",
            "Interarrival jitter on browser legs (RFC 3550), from RTCP, by direction (to_browser, from_browser)",
            browser_leg_jitter.clone(),
        );
        let conferences = Gauge::default();
        registry.register("conferences", "Calls mixed now (a supervisor or a mediator joined)", conferences.clone());
        let mixing_delay = Histogram::new([0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05]);
        registry.register(
            "mixing_delay_seconds",
            "From a 20 ms mixing tick being due to a conference's mixes being sent",
            mixing_delay.clone(),
        );
        let media_journal_dropped = Counter::default();
        registry.register(
            "media_journal_dropped",
            "Browser phone media steps dropped from the calls' timelines because the database fell behind",
            media_journal_dropped.clone(),
        );
        let process_resident_memory = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of this process (VmRSS), read on each scrape",
            process_resident_memory.clone(),
        );
        let process_resident_memory_peak = Gauge::default();
        registry.register(
            "process_resident_memory_peak_bytes",
            "The largest resident memory of this process since it started (VmHWM): the start-up peak or a later one",
            process_resident_memory_peak.clone(),
        );
        let build_info = Family::<Vec<(String, String)>, Gauge>::default();
        build_info.get_or_create(&vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]).set(1);
        registry.register("build_info", "The running build", build_info);
        Metrics {
            registry,
            http_requests,
            http_duration,
            calls_active,
            calls_started,
            calls_ended,
            engine_decisions,
            sip_requests,
            sip_responses,
            sip_refused,
            sip_transactions,
            rtp_packets_sent,
            rtp_late_packets,
            rtp_send_deviation,
            dtmf_received,
            rtp_foreign_packets,
            wallboard_snapshots,
            acd_passes,
            browser_bridges,
            bridge_packets,
            browser_phone_failures,
            browser_connect,
            browser_leg_loss,
            browser_leg_jitter,
            conferences,
            mixing_delay,
            media_journal_dropped,
            process_resident_memory,
            process_resident_memory_peak,
        }
    }

    /// The text exposition of every metric (the process's memory read now).
    pub fn encode(&self) -> String {
        if let Some(m) = ProcessMemory::read() {
            self.process_resident_memory.set(i64::try_from(m.resident_bytes).unwrap_or(i64::MAX));
            self.process_resident_memory_peak.set(i64::try_from(m.peak_bytes).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// This process's resident memory, from `/proc/self/status` (Linux; `None` elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessMemory {
    /// `VmRSS`: resident now.
    pub resident_bytes: u64,
    /// `VmHWM`: the most resident since the process started.
    pub peak_bytes: u64,
}

impl ProcessMemory {
    pub fn read() -> Option<ProcessMemory> {
        ProcessMemory::parse(&std::fs::read_to_string("/proc/self/status").ok()?)
    }

    /// Reads `VmRSS` and `VmHWM` (in kB, i.e. KiB) from the text of a `/proc/<pid>/status`.
    pub fn parse(status: &str) -> Option<ProcessMemory> {
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            Some(line[name.len()..].split_whitespace().next()?.parse::<u64>().ok()? * 1024)
        };
        Some(ProcessMemory { resident_bytes: field("VmRSS:")?, peak_bytes: field("VmHWM:")? })
    }
}

/// Hands memory freed in bulk (a directory index replaced, the build's buffers) back to the
/// system within seconds. The allocator (mimalloc) returns freed pages only a purge delay (1 s)
/// after they were freed, and only when some thread next passes by its arenas: an idle server may
/// not for hours, and keeps them resident (measured: 28 MiB of 93 at 8,000 services; BENCHMARKS.md,
/// "Memory"). A thread that ends is such a pass: this one allocates a little (so the allocator
/// knows it), waits past the delay and ends.
pub fn release_freed_memory() {
    let spawned = std::thread::Builder::new().name("memory-release".into()).spawn(|| {
        let mark = std::hint::black_box(vec![0u8; 64]);
        std::thread::sleep(std::time::Duration::from_millis(1_500));
        drop(mark);
    });
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "no thread to release freed memory");
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The route a request matched (`/api/services/{id}`), or `(unmatched)`: bounded cardinality.
pub fn matched_route(req: &Request) -> String {
    req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "(unmatched)".to_owned())
}

/// A request method as a label: the standard ones by name, anything else `other` (a stranger can
/// send any token as a method, and each would otherwise become a time series of its own).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN.iter().find(|(m, _)| m == method).map_or("other", |(_, name)| name)
}

/// Middleware: counts every request by method, matched route and status, and times it.
pub async fn record_http(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method()).to_owned();
    let route = matched_route(&req);
    let response = next.run(req).await;
    let labels = HttpLabels { method, route, status: response.status().as_u16() };
    metrics.http_requests.get_or_create(&labels).inc();
    metrics.http_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    response
}
