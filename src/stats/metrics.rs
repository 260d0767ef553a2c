//! What the stats collector counts for /metrics: received-side figures per
//! leg (monotonic across call ends: they grow by each poll's increase), MOS
//! histograms, polls, calls by outcome, export losses.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rtcgw_control::{CallOutcomes, OutcomeLabel};
use rtcgw_proto::stats::model::{Direction, LegKind, Outcome};
use std::sync::atomic::AtomicU64;

/// Histogram bucket bounds for MOS: G.107 Table B.1's satisfaction classes
/// (R 50/60/70/80/90) plus the ends of the scale.
pub const MOS_BUCKETS: &[f64] = &[1.0, 2.0, 2.58, 3.1, 3.6, 4.03, 4.34, 4.5];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LegLabel {
    leg: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QualityLabel {
    leg: &'static str,
    direction: &'static str,
}

fn mos_histogram() -> Histogram {
    Histogram::new(MOS_BUCKETS.iter().copied())
}

type PerLeg = Family<LegLabel, Counter>;
type MosFamily = Family<QualityLabel, Histogram, fn() -> Histogram>;

/// A received-side increase of one leg, for [`StatsMetrics::add_received`].
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Received {
    pub packets: u64,
    pub lost: u64,
    pub concealed_samples: u64,
    pub concealment_events: u64,
    pub samples: u64,
    pub jitter_buffer_delay_s: f64,
    pub jitter_buffer_emitted: u64,
}

/// The stats metric handles. Cheap to clone: clones share counts.
#[derive(Debug, Clone)]
pub struct StatsMetrics {
    packets_received: PerLeg,
    packets_lost: PerLeg,
    jitter_buffer_delay_s: Family<LegLabel, Counter<f64, AtomicU64>>,
    jitter_buffer_emitted: PerLeg,
    samples_received: PerLeg,
    concealed_samples: PerLeg,
    concealment_events: PerLeg,
    mos: MosFamily,
    call_mos: MosFamily,
    polls: Counter,
    outcomes: CallOutcomes,
    export_dropped: Counter,
}

impl StatsMetrics {
    /// Handles sharing `outcomes` (`rtcgw_calls_total`) with call control.
    pub fn new(outcomes: CallOutcomes) -> Self {
        Self {
            packets_received: Default::default(),
            packets_lost: Default::default(),
            jitter_buffer_delay_s: Default::default(),
            jitter_buffer_emitted: Default::default(),
            samples_received: Default::default(),
            concealed_samples: Default::default(),
            concealment_events: Default::default(),
            mos: Family::new_with_constructor(mos_histogram),
            call_mos: Family::new_with_constructor(mos_histogram),
            polls: Default::default(),
            outcomes,
            export_dropped: Default::default(),
        }
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "rtcgw_calls",
            "Calls by outcome: ended calls by how they ended, plus refused call requests",
            self.outcomes.clone(),
        );
        let per_leg: [(&str, &str, &PerLeg); 6] = [
            (
                "rtcgw_packets_received",
                "RTP packets received, by leg",
                &self.packets_received,
            ),
            (
                "rtcgw_packets_lost",
                "RTP packets lost on the way to rtcgw (RFC 3550 expected - received), by leg",
                &self.packets_lost,
            ),
            (
                "rtcgw_jitter_buffer_emitted_samples",
                "Samples played out of the jitter buffer, by leg",
                &self.jitter_buffer_emitted,
            ),
            (
                "rtcgw_received_samples",
                "Samples played out, real or concealed, by leg",
                &self.samples_received,
            ),
            (
                "rtcgw_concealed_samples",
                "Samples NetEq concealed (lost or late audio), by leg",
                &self.concealed_samples,
            ),
            (
                "rtcgw_concealment_events",
                "Concealment events (runs of concealed samples), by leg",
                &self.concealment_events,
            ),
        ];
        for (name, help, family) in per_leg {
            r.register(name, help, family.clone());
        }
        r.register(
            "rtcgw_jitter_buffer_delay_seconds",
            "Sum over played-out samples of their jitter-buffer delay, by leg; divide by rtcgw_jitter_buffer_emitted_samples_total for the mean",
            self.jitter_buffer_delay_s.clone(),
        );
        r.register(
            "rtcgw_mos",
            "E-model (ITU-T G.107) MOS estimate per call, leg, direction and poll interval",
            self.mos.clone(),
        );
        r.register(
            "rtcgw_call_mos",
            "Mean E-model MOS of ended calls, per leg and direction",
            self.call_mos.clone(),
        );
        r.register(
            "rtcgw_stats_polls",
            "Call stats records made by the poller",
            self.polls.clone(),
        );
        r.register(
            "rtcgw_stats_export_dropped",
            "Stats export lines dropped (queue full) or not written (I/O error)",
            self.export_dropped.clone(),
        );
    }

    pub(crate) fn add_received(&self, leg: LegKind, r: Received) {
        let l = LegLabel { leg: leg.as_str() };
        self.packets_received.get_or_create(&l).inc_by(r.packets);
        self.packets_lost.get_or_create(&l).inc_by(r.lost);
        self.concealed_samples
            .get_or_create(&l)
            .inc_by(r.concealed_samples);
        self.concealment_events
            .get_or_create(&l)
            .inc_by(r.concealment_events);
        self.samples_received.get_or_create(&l).inc_by(r.samples);
        self.jitter_buffer_delay_s
            .get_or_create(&l)
            .inc_by(r.jitter_buffer_delay_s);
        self.jitter_buffer_emitted
            .get_or_create(&l)
            .inc_by(r.jitter_buffer_emitted);
    }

    pub(crate) fn observe_mos(&self, leg: LegKind, dir: Direction, mos: f64) {
        self.mos.get_or_create(&quality(leg, dir)).observe(mos);
    }

    pub(crate) fn observe_call_mos(&self, leg: LegKind, dir: Direction, mos: f64) {
        self.call_mos.get_or_create(&quality(leg, dir)).observe(mos);
    }

    pub(crate) fn poll(&self) {
        self.polls.inc();
    }

    pub(crate) fn ended(&self, outcome: Outcome) {
        self.outcomes
            .get_or_create(&OutcomeLabel::of(outcome))
            .inc();
    }

    /// Packets received and lost on `leg` so far (for tests and logs).
    pub fn received(&self, leg: LegKind) -> (u64, u64) {
        let l = LegLabel { leg: leg.as_str() };
        let get = |f: &PerLeg| f.get(&l).map_or(0, |c| c.get());
        (get(&self.packets_received), get(&self.packets_lost))
    }

    /// How many MOS observations (per poll, per ended call) `leg` and
    /// `dir` have.
    #[cfg(test)]
    pub fn mos_counts(&self, leg: LegKind, dir: Direction) -> (u64, u64) {
        let q = quality(leg, dir);
        let n = |f: &MosFamily| f.get(&q).map_or(0, |h| h.count());
        (n(&self.mos), n(&self.call_mos))
    }

    /// The handle the export counts its lost lines on.
    pub fn export_dropped(&self) -> Counter {
        self.export_dropped.clone()
    }

    pub fn polls(&self) -> u64 {
        self.polls.get()
    }

    pub fn calls_ended(&self, outcome: Outcome) -> u64 {
        self.outcomes
            .get(&OutcomeLabel::of(outcome))
            .map_or(0, |c| c.get())
    }
}

fn quality(leg: LegKind, dir: Direction) -> QualityLabel {
    QualityLabel {
        leg: leg.as_str(),
        direction: dir.as_str(),
    }
}
