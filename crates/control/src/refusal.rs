//! Why a call (or an offer in one) is refused, and the one table that says
//! what each front end answers: the SIP status and reason phrase, the HTTP
//! status, the metric label and Retry-After. SIP and the HTTP API both
//! answer from [`Refusal::disposition`]; nothing else maps errors to
//! statuses.

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// Seconds a client should wait before retrying a gateway at capacity.
pub const CAPACITY_RETRY_AFTER_S: u32 = 5;
/// Seconds before retrying a draining gateway: it is going away, so a
/// dispatcher should prefer another one for a good while.
pub const DRAIN_RETRY_AFTER_S: u32 = 30;

/// The kinds of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Refusal {
    /// Not SDP at all, or broken SDP.
    MalformedSdp,
    /// No active audio stream.
    NoAudio,
    /// Where a WebRTC offer is needed (the HTTP API), something else came.
    NotWebrtc,
    /// Valid SDP that rtcgw cannot take (a host name for an address...).
    UnsupportedSdp,
    /// libwebrtc refused to parse the SDP.
    InvalidSdp,
    /// libwebrtc parsed it but cannot answer it (no common codec...).
    Unanswerable,
    /// The plain-RTP offer has no codec in `legacy.codecs`.
    NoCommonCodec,
    /// RTP/SAVP without a key rtcgw takes (or SDES-SRTP turned off).
    NoCrypto,
    /// The far leg's answer cannot be used.
    FarAnswerUnusable,
    /// The body is not SDP (SIP 415, HTTP 415).
    ContentType,
    /// The body is too large (HTTP 413).
    BodyTooLarge,
    /// The body did not arrive in time (HTTP 408).
    BodyTimeout,
    /// The body is not UTF-8.
    NotUtf8,
    /// `media.max_calls` calls are up.
    Capacity,
    /// Too many calls are being set up at once.
    Overloaded,
    /// Shutting down: no new calls.
    Draining,
    /// The outbound leg has nowhere to go.
    NoRoute,
    /// No RTP port pair could be had.
    MediaUnavailable,
    /// ICE gathering did not finish in time.
    IceTimeout,
    /// The call does not exist (any more).
    NoSuchCall,
    /// An API call's `to` is neither a user part nor a SIP URI, or there
    /// is no bridge route to dial it on.
    BadTarget,
    /// The callee of an API call refused it ([`Refused::callee`] holds its
    /// status; the HTTP status comes from [`callee_http_status`]).
    CalleeRefused,
    /// The callee of an API call did not answer in time.
    NoAnswer,
    /// A failure inside rtcgw or libwebrtc.
    Internal,
}

/// What a front end answers for a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disposition {
    pub sip_status: u16,
    pub sip_phrase: &'static str,
    pub http_status: u16,
    /// The `reason` label of `rtcgw_calls_refused_total`.
    pub label: &'static str,
    pub retry_after_s: Option<u32>,
}

impl Refusal {
    /// The table.
    pub fn disposition(self) -> Disposition {
        use Refusal::*;
        let (sip_status, sip_phrase, http_status, label, retry_after_s) = match self {
            MalformedSdp => (400, "Bad Request", 400, "malformed_sdp", None),
            NoAudio => (488, "Not Acceptable Here", 400, "no_audio", None),
            NotWebrtc => (488, "Not Acceptable Here", 400, "not_webrtc", None),
            UnsupportedSdp => (488, "Not Acceptable Here", 400, "unsupported_sdp", None),
            InvalidSdp => (488, "Not Acceptable Here", 400, "invalid_sdp", None),
            Unanswerable => (488, "Not Acceptable Here", 422, "unanswerable", None),
            NoCommonCodec => (488, "Not Acceptable Here", 422, "no_common_codec", None),
            NoCrypto => (488, "Not Acceptable Here", 422, "no_crypto", None),
            FarAnswerUnusable => (488, "Not Acceptable Here", 502, "far_answer", None),
            ContentType => (415, "Unsupported Media Type", 415, "content_type", None),
            BodyTooLarge => (413, "Request Entity Too Large", 413, "body_too_large", None),
            BodyTimeout => (408, "Request Timeout", 408, "body_timeout", None),
            NotUtf8 => (400, "Bad Request", 400, "not_utf8", None),
            Capacity => (
                503,
                "Service Unavailable",
                503,
                "capacity",
                Some(CAPACITY_RETRY_AFTER_S),
            ),
            Overloaded => (
                503,
                "Service Unavailable",
                503,
                "overloaded",
                Some(CAPACITY_RETRY_AFTER_S),
            ),
            Draining => (
                503,
                "Service Unavailable",
                503,
                "draining",
                Some(DRAIN_RETRY_AFTER_S),
            ),
            NoRoute => (503, "Service Unavailable", 502, "no_route", None),
            MediaUnavailable => (
                503,
                "Service Unavailable",
                503,
                "media",
                Some(CAPACITY_RETRY_AFTER_S),
            ),
            IceTimeout => (500, "Server Internal Error", 504, "ice_timeout", None),
            NoSuchCall => (
                481,
                "Call/Transaction Does Not Exist",
                404,
                "no_such_call",
                None,
            ),
            BadTarget => (400, "Bad Request", 400, "bad_target", None),
            CalleeRefused => (500, "Server Internal Error", 502, "callee_refused", None),
            NoAnswer => (408, "Request Timeout", 504, "no_answer", None),
            Internal => (500, "Server Internal Error", 500, "internal", None),
        };
        Disposition {
            sip_status,
            sip_phrase,
            http_status,
            label,
            retry_after_s,
        }
    }
}

impl EncodeLabelValue for Refusal {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.disposition().label, encoder)
    }
}

/// A refusal with what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Refused {
    pub kind: Refusal,
    /// For the log and the response body or reason phrase; one line.
    pub detail: String,
    /// [`Refusal::CalleeRefused`]: the callee's final status and reason.
    pub callee: Option<(u16, String)>,
    /// Retry-After other than the table's (a drain says how long it lasts).
    pub retry_after_s: Option<u32>,
}

/// The longest refusal detail, in characters.
pub const MAX_DETAIL: usize = 300;

impl Refused {
    /// `detail` is kept to one line of at most [`MAX_DETAIL`] characters:
    /// it may quote a peer's input, and goes into logs and responses.
    pub fn new(kind: Refusal, detail: impl Into<String>) -> Self {
        let mut detail = detail.into().replace(['\r', '\n'], " ");
        if let Some((cut, _)) = detail.char_indices().nth(MAX_DETAIL) {
            detail.truncate(cut);
            detail.push_str("...");
        }
        Self {
            kind,
            detail,
            callee: None,
            retry_after_s: None,
        }
    }

    /// The Retry-After to send, if any.
    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after_s.or(self.kind.disposition().retry_after_s)
    }

    /// The callee of an API call refused it with this final status.
    pub fn callee(status: u16, reason: &str) -> Self {
        let reason = reason.replace(['\r', '\n'], " ");
        Self {
            callee: Some((status, reason.clone())),
            ..Self::new(
                Refusal::CalleeRefused,
                format!("the callee refused: {status} {reason}"),
            )
        }
    }

    /// The HTTP status of this refusal.
    pub fn http_status(&self) -> u16 {
        match &self.callee {
            Some((status, _)) => callee_http_status(*status),
            None => self.kind.disposition().http_status,
        }
    }

    /// The SIP reason phrase: the standard phrase with the detail, e.g.
    /// "Not Acceptable Here (no codec in common ...)".
    pub fn sip_reason(&self) -> String {
        let d = self.kind.disposition();
        if self.detail.is_empty() {
            d.sip_phrase.to_string()
        } else {
            format!("{} ({})", d.sip_phrase, self.detail)
        }
    }
}

/// What an HTTP client placing a SIP call gets for the callee's final
/// status: what the web app can act on, the SIP status itself in the body.
/// Not found stays 404, busy is a conflict with the callee's state (409),
/// a decline is 403, no answer a gateway timeout (504), the callee's 503
/// stays 503; everything else (the callee could not take the offer, needs
/// authentication rtcgw does not have, failed) is the gateway's upstream
/// failing: 502.
pub fn callee_http_status(sip_status: u16) -> u16 {
    match sip_status {
        404 | 410 | 484 | 604 => 404,
        486 | 600 => 409,
        403 | 603 => 403,
        408 | 480 | 487 => 504,
        503 => 503,
        _ => 502,
    }
}

impl From<rtcgw_proto::sdp::OfferError> for Refused {
    fn from(e: rtcgw_proto::sdp::OfferError) -> Self {
        use rtcgw_proto::sdp::OfferError as E;
        let kind = match &e {
            E::Malformed(_) => Refusal::MalformedSdp,
            E::NoAudio => Refusal::NoAudio,
            E::NotWebrtc(_) => Refusal::NotWebrtc,
            _ => Refusal::UnsupportedSdp,
        };
        Refused::new(kind, e.to_string())
    }
}

impl From<rtcgw_proto::sdp::legacy::LegacySdpError> for Refused {
    fn from(e: rtcgw_proto::sdp::legacy::LegacySdpError) -> Self {
        use rtcgw_proto::sdp::legacy::LegacySdpError as E;
        let kind = match &e {
            E::Parse(_) => Refusal::MalformedSdp,
            E::NoAudio => Refusal::NoAudio,
            E::NotIp(_) => Refusal::UnsupportedSdp,
            E::NoCommonCodec { .. } => Refusal::NoCommonCodec,
            _ => Refusal::NoCrypto,
        };
        Refused::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detail_quoting_huge_input_is_cut_to_one_short_line() {
        let line = format!("a=fingerprint:sha-256 {}\r\nx", "é".repeat(60_000));
        let r = Refused::new(Refusal::MalformedSdp, line);
        assert_eq!(r.detail.chars().count(), MAX_DETAIL + 3);
        assert!(r.detail.ends_with("...") && !r.detail.contains('\n'));
    }

    #[test]
    fn one_table_for_both_front_ends() {
        let d = Refusal::Capacity.disposition();
        assert_eq!((d.sip_status, d.http_status), (503, 503));
        assert_eq!(d.retry_after_s, Some(CAPACITY_RETRY_AFTER_S));
        let d = Refusal::Draining.disposition();
        assert_eq!(d.retry_after_s, Some(DRAIN_RETRY_AFTER_S));
        assert_eq!(Refusal::MalformedSdp.disposition().sip_status, 400);
        assert_eq!(Refusal::NoCommonCodec.disposition().sip_status, 488);
        let r = Refused::callee(486, "Busy Here");
        assert_eq!(
            (r.http_status(), r.detail.as_str()),
            (409, "the callee refused: 486 Busy Here")
        );
        assert_eq!(Refused::callee(404, "Not Found").http_status(), 404);
        assert_eq!(
            Refused::callee(488, "Not Acceptable Here").http_status(),
            502
        );
        assert_eq!(
            Refused::callee(480, "Temporarily Unavailable").http_status(),
            504
        );
        assert_eq!(Refusal::NoAnswer.disposition().http_status, 504);
        let r = Refused::new(Refusal::NoAudio, "no audio\r\nInjected: x");
        assert_eq!(
            r.sip_reason(),
            "Not Acceptable Here (no audio  Injected: x)"
        );
    }
}
