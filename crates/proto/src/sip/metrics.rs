//! What the SIP layer counts, as metric handles the gateway registers in
//! its one registry (`rtcgw_sip_*`). The user agent updates them as it
//! goes; nothing here renders or publishes.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::message::Method;

/// Why SIP input was refused or dropped: the `reason` label of
/// `rtcgw_sip_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rejection {
    /// Answerable but invalid (400, 505).
    Malformed,
    /// Not even answerable: dropped.
    Unparseable,
    /// From a source outside `sip.allowed_sources` (403).
    ForbiddenSource,
    UnsupportedRequire,
    /// A sips: INVITE without a TLS listener (416).
    UnsupportedScheme,
    UnknownMethod,
    MethodNotAllowed,
    ContentType,
    SessionIntervalTooSmall,
    CancelNoTransaction,
    NoDialog,
    CseqOutOfOrder,
    RequestPending,
    InfoContentType,
    InfoMalformed,
    /// RFC 4028: the peer stopped refreshing.
    SessionExpired,
    /// No ACK for our 2xx within 64*T1.
    NoAck,
    /// A refresh of ours was answered 408/481 or timed out.
    RefreshFailed,
    /// A late-offer ACK without an answer.
    NoAnswerInAck,
    /// Our answer could not fit a UDP datagram (500).
    AnswerTooLarge,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unparseable => "unparseable",
            Self::ForbiddenSource => "forbidden_source",
            Self::UnsupportedRequire => "unsupported_require",
            Self::UnsupportedScheme => "unsupported_scheme",
            Self::UnknownMethod => "unknown_method",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::ContentType => "content_type",
            Self::SessionIntervalTooSmall => "session_interval_too_small",
            Self::CancelNoTransaction => "cancel_no_transaction",
            Self::NoDialog => "no_dialog",
            Self::CseqOutOfOrder => "cseq_out_of_order",
            Self::RequestPending => "request_pending",
            Self::InfoContentType => "info_content_type",
            Self::InfoMalformed => "info_malformed",
            Self::SessionExpired => "session_expired",
            Self::NoAck => "no_ack",
            Self::RefreshFailed => "refresh_failed",
            Self::NoAnswerInAck => "no_answer_in_ack",
            Self::AnswerTooLarge => "answer_too_large",
        }
    }
}

impl EncodeLabelValue for Rejection {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// Whether a request came in or went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    In,
    Out,
}

impl EncodeLabelValue for Direction {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let v = match self {
            Self::In => "in",
            Self::Out => "out",
        };
        EncodeLabelValue::encode(&v, encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    direction: Direction,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResponseLabels {
    code: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RejectLabels {
    reason: Rejection,
}

/// The SIP layer's counters. Cheap to clone: clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct SipMetrics {
    requests: Family<RequestLabels, Counter>,
    responses: Family<ResponseLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
}

impl SipMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rtcgw_sip_requests",
            "SIP requests, by method and direction (in: received, out: sent)",
            self.requests.clone(),
        );
        registry.register(
            "rtcgw_sip_responses",
            "SIP responses sent, by code",
            self.responses.clone(),
        );
        registry.register(
            "rtcgw_sip_rejected",
            "SIP input rejected or dropped, by reason",
            self.rejected.clone(),
        );
    }

    pub(crate) fn request(&self, method: &Method, direction: Direction) {
        // Extension methods are counted under one label: a label per
        // arbitrary token would let any peer grow the metric without bound.
        let method = match method {
            Method::Other(_) => "other".to_string(),
            m => m.as_str().to_string(),
        };
        self.requests
            .get_or_create(&RequestLabels { method, direction })
            .inc();
    }

    pub(crate) fn response(&self, code: u16) {
        self.responses.get_or_create(&ResponseLabels { code }).inc();
    }

    pub(crate) fn reject(&self, reason: Rejection) {
        self.rejected.get_or_create(&RejectLabels { reason }).inc();
    }

    /// How often `reason` was counted (for tests and logs).
    pub fn rejected(&self, reason: Rejection) -> u64 {
        self.rejected
            .get(&RejectLabels { reason })
            .map_or(0, |c| c.get())
    }

    /// Responses sent with `code`.
    pub fn responses(&self, code: u16) -> u64 {
        self.responses
            .get(&ResponseLabels { code })
            .map_or(0, |c| c.get())
    }
}
