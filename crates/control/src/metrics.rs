//! What call control counts: refusals by reason, calls in progress and in
//! setup. Handles registered in the gateway's one registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rtcgw_proto::stats::model::Outcome;

use crate::refusal::Refusal;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: Refusal,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

impl OutcomeLabel {
    pub fn of(o: Outcome) -> Self {
        Self {
            outcome: o.as_str(),
        }
    }

    pub fn refused() -> Self {
        Self { outcome: "refused" }
    }
}

/// `rtcgw_calls_total{outcome}`: shared by call control (refused calls)
/// and the stats collector (ended calls, by how they ended).
pub type CallOutcomes = Family<OutcomeLabel, Counter>;

/// Call control's metric handles. Cheap to clone: clones share counts.
#[derive(Debug, Clone, Default)]
pub struct CallMetrics {
    refused: Family<ReasonLabel, Counter>,
    pub(crate) active: Gauge,
    pub(crate) setting_up: Gauge,
    pub(crate) overloaded: Gauge,
    outcomes: CallOutcomes,
}

impl CallMetrics {
    /// Handles sharing `outcomes` with whoever counts ended calls.
    pub fn new(outcomes: CallOutcomes) -> Self {
        // Present from the start, so that "none refused" reads as 0.
        let _ = outcomes.get_or_create(&OutcomeLabel::refused());
        Self {
            outcomes,
            ..Default::default()
        }
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "rtcgw_calls_refused",
            "Call requests refused, by reason (SIP and the HTTP API)",
            self.refused.clone(),
        );
        r.register(
            "rtcgw_calls_active",
            "Calls in progress",
            self.active.clone(),
        );
        r.register(
            "rtcgw_overloaded",
            "1 while new calls are refused for want of headroom (late media frames or CPU)",
            self.overloaded.clone(),
        );
        r.register(
            "rtcgw_calls_setting_up",
            "Calls whose media is being set up",
            self.setting_up.clone(),
        );
    }

    pub fn refuse(&self, reason: Refusal) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
        self.outcomes.get_or_create(&OutcomeLabel::refused()).inc();
    }

    /// Refusals counted for `reason`.
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refused
            .get(&ReasonLabel { reason })
            .map_or(0, |c| c.get())
    }

    pub fn active(&self) -> i64 {
        self.active.get()
    }
}
