//! The one metrics registry (Prometheus, through the `prometheus-client`
//! crate). Each part of the gateway counts on handles it was given: SIP
//! ([`SipMetrics`]), call control ([`CallMetrics`]), media
//! ([`MediaMetrics`]), stats ([`StatsMetrics`]); a few figures are read when
//! scraped ([`Live`]). `GET /metrics` only renders.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use rtcgw_control::{CallMetrics, CallOutcomes};
use rtcgw_proto::sip::metrics::SipMetrics;

use crate::media::{Calls, MediaMetrics};
use crate::ng::NgMetrics;
use crate::stats::metrics::StatsMetrics;

/// Every metric handle of the gateway, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    pub sip: SipMetrics,
    pub calls: CallMetrics,
    pub media: MediaMetrics,
    pub stats: StatsMetrics,
    pub ng: NgMetrics,
    /// `rtcgw_http_denied_total{reason}`: API requests turned away for a
    /// missing or wrong bearer token, or a CORS origin not allowed.
    pub http_denied: crate::http::access::Denied,
    /// `rtcgw_sip_tls_failures_total{direction,reason}`.
    pub sip_tls_failures: crate::tls::TlsFailures,
    /// `rtcgw_sip_connections_refused_total{reason}`.
    pub sip_conn_refused: crate::driver::ConnRefusals,
}

impl Metrics {
    pub fn new() -> Self {
        let outcomes = CallOutcomes::default();
        let m = Self {
            registry: Registry::default(),
            sip: SipMetrics::default(),
            calls: CallMetrics::new(outcomes.clone()),
            media: MediaMetrics::default(),
            stats: StatsMetrics::new(outcomes),
            ng: NgMetrics::default(),
            http_denied: Default::default(),
            sip_tls_failures: Default::default(),
            sip_conn_refused: Default::default(),
        };
        let mut registry = Registry::default();
        m.sip.register(&mut registry);
        m.calls.register(&mut registry);
        m.media.register(&mut registry);
        m.stats.register(&mut registry);
        m.ng.register(&mut registry);
        registry.register(
            "rtcgw_http_denied",
            "API requests turned away: no_token, not_bearer, bad_token, cors_origin",
            m.http_denied.clone(),
        );
        registry.register(
            "rtcgw_sip_tls_failures",
            "SIP TLS connections that did not come up, by direction (in, out) and reason \
             (handshake, timeout, connect)",
            m.sip_tls_failures.clone(),
        );
        registry.register(
            "rtcgw_sip_connections_refused",
            "SIP TCP/TLS connections closed as soon as accepted: source (not in \
             sip.allowed_sources), limit (sip.max_connections), handshakes (64 TLS \
             handshakes already in progress)",
            m.sip_conn_refused.clone(),
        );
        Self { registry, ..m }
    }

    /// Adds the figures read from the media side when scraped.
    pub fn add_live(&mut self, calls: Arc<Calls>) {
        self.registry.register_collector(Box::new(Live { calls }));
    }

    /// The Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Figures that are state, not events: read from the media side at scrape
/// time.
struct Live {
    calls: Arc<Calls>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ports = ConstGauge::new(self.calls.ports_in_use() as i64);
        ports.encode(encoder.encode_descriptor(
            "rtcgw_legacy_ports_in_use",
            "RTP port pairs leased",
            None,
            ports.metric_type(),
        )?)?;
        let stalls = ConstCounter::new(self.calls.clock_counters().late_ticks);
        stalls.encode(encoder.encode_descriptor(
            "rtcgw_audio_clock_stalls",
            "Audio clock stalls over 100 ms (ticks skipped)",
            None,
            stalls.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_prometheus_text_format() {
        let m = Metrics::new();
        m.calls.refuse(rtcgw_control::Refusal::Capacity);
        let text = m.render();
        assert!(
            text.contains("# TYPE rtcgw_calls_refused_total counter\n"),
            "{text}"
        );
        assert!(text.contains("rtcgw_calls_refused_total{reason=\"capacity\"} 1\n"));
        assert!(text.contains("rtcgw_calls_total{outcome=\"refused\"} 1\n"));
        assert!(!text.contains("# EOF"), "0.0.4, not OpenMetrics");
    }
}
