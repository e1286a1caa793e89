//! Prometheus metrics (`GET /metrics`, text exposition format) with the `prometheus-client` crate,
//! the Prometheus project's own Rust client. One registry per server.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<HttpLabels, Histogram>,
    pub calls_active: Family<ChannelLabels, Gauge>,
    pub calls_started: Family<ChannelLabels, Counter>,
    pub calls_ended: Family<OutcomeLabels, Counter>,
    pub engine_decisions: Counter,
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
        let build_info = Family::<Vec<(String, String)>, Gauge>::default();
        build_info
            .get_or_create(&vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())])
            .set(1);
        registry.register("build_info", "The running build", build_info);
        Metrics { registry, http_requests, http_duration, calls_active, calls_started, calls_ended, engine_decisions }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
