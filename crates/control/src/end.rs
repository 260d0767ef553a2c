//! Why a call ended, as logs, the stats export (`disposition`, `outcome`)
//! and metrics show it.

use std::fmt;

use rtcgw_proto::sip::ua::DialogEnd;
use rtcgw_proto::stats::model::Outcome;

use crate::refusal::Refusal;

/// Which party of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Caller,
    Callee,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// A party hung up (BYE).
    Bye(Party),
    /// The API's DELETE.
    Delete,
    /// The caller cancelled before the answer.
    Cancelled,
    /// The caller was gone by the time its call could be answered.
    CallerGone,
    /// The callee did not answer an API call within `http.ring_timeout_s`.
    NoAnswer,
    /// The callee refused (its final status).
    CalleeRefused(u16),
    /// The callee's answer could not be used.
    FarAnswerUnusable,
    /// The outbound leg had nowhere to go.
    NoRoute,
    /// The SIP side gave up on a dialog (no ACK, timeout, session timer...).
    Sip(DialogEnd),
    /// A late offer's answer (in the ACK) could not be applied.
    AnswerFailed,
    /// No RTP within `legacy.media_timeout_s`.
    MediaTimeout,
    /// The WebRTC leg's ICE/DTLS connection failed.
    ConnectionFailed,
    /// A re-negotiated leg could not be set up.
    RenegotiationFailed,
    /// Setting the call up failed after it was accepted.
    SetupFailed(Refusal),
    /// The gateway shut down.
    Shutdown,
}

impl EndReason {
    /// The class of the ending, as counted in `rtcgw_calls_total`.
    pub fn outcome(self) -> Outcome {
        match self {
            Self::Bye(_) | Self::Delete => Outcome::Completed,
            Self::Cancelled | Self::CallerGone | Self::NoAnswer => Outcome::Cancelled,
            Self::MediaTimeout => Outcome::MediaTimeout,
            Self::Shutdown => Outcome::Shutdown,
            Self::Sip(DialogEnd::Bye) => Outcome::Completed,
            Self::Sip(DialogEnd::Cancel) => Outcome::Cancelled,
            _ => Outcome::Failed,
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bye(Party::Caller) => f.write_str("BYE"),
            Self::Bye(Party::Callee) => f.write_str("BYE from the callee"),
            Self::Delete => f.write_str("DELETE"),
            Self::Cancelled => f.write_str("CANCEL"),
            Self::CallerGone => f.write_str("caller gone"),
            Self::NoAnswer => f.write_str("no answer"),
            Self::CalleeRefused(s) => write!(f, "callee refused ({s})"),
            Self::FarAnswerUnusable => f.write_str("far answer unusable"),
            Self::NoRoute => f.write_str("no route"),
            Self::Sip(why) => write!(f, "{why}"),
            Self::AnswerFailed => f.write_str("SDP answer in ACK failed"),
            Self::MediaTimeout => f.write_str("media timeout"),
            Self::ConnectionFailed => f.write_str("connection failed"),
            Self::RenegotiationFailed => f.write_str("re-negotiation failed"),
            Self::SetupFailed(r) => write!(f, "setup failed ({})", r.disposition().label),
            Self::Shutdown => f.write_str("shutdown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_are_classified() {
        assert_eq!(EndReason::Bye(Party::Callee).outcome(), Outcome::Completed);
        assert_eq!(EndReason::Cancelled.outcome(), Outcome::Cancelled);
        assert_eq!(EndReason::MediaTimeout.outcome(), Outcome::MediaTimeout);
        assert_eq!(EndReason::CalleeRefused(486).outcome(), Outcome::Failed);
        assert_eq!(EndReason::Sip(DialogEnd::NoAck).outcome(), Outcome::Failed);
        assert_eq!(EndReason::Bye(Party::Caller).to_string(), "BYE");
        assert_eq!(EndReason::Delete.to_string(), "DELETE");
    }
}
