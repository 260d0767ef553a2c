//! The core's side of the media boundary: what it asks of the media side
//! (libwebrtc PeerConnections, the plain-RTP legs) and what comes back.
//! Every command that takes time answers with exactly one [`MediaEvent`];
//! the driver must deliver each one (nothing on this path may be dropped).

use rtcgw_proto::sdp::legacy::CodecName;
use rtcgw_proto::sdp::{LegKind, Offer};
use rtcgw_proto::sip::ua::DialogRef;

use crate::end::EndReason;
use crate::id::{ApiToken, CallId};
use crate::refusal::Refused;

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The demo target: play a file or tone, record what comes in.
    Demo,
    /// A B2BUA call: the caller's leg joined to an outbound leg of the
    /// other kind (WebRTC <-> plain RTP), made as asked.
    Bridge(FarLeg),
}

/// How the outbound leg of a bridge is offered, when it is plain RTP (a
/// WebRTC leg is libwebrtc's offer as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FarLeg {
    /// The codecs to offer, in order; empty: `legacy.codecs` less `exclude`.
    pub codecs: Vec<CodecName>,
    /// Codecs masked or stripped (ng `codec: {mask, strip}`): left out of
    /// `legacy.codecs` when `codecs` is empty.
    pub exclude: Vec<CodecName>,
    /// SDES-SRTP (RTP/SAVP) instead of RTP/AVP.
    pub sdes: bool,
    /// Offer rtcp-mux (RFC 5761) besides the separate RTCP port.
    pub rtcp_mux: bool,
}

/// Who waits for the answer to a re-offer; the media side hands it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReofferFrom {
    /// A re-INVITE or UPDATE on this dialog.
    Dialog(DialogRef),
    /// An ng `offer` for a call that exists.
    Ng(ApiToken),
    /// An ng `answer` for the plain RTP far leg that differs from the one
    /// it has (another branch of a forked call answered, or a 200 differs
    /// from its 183, or the far side's answer to a re-offer): applied like
    /// an offer from that side; nobody waits for our SDP.
    NgAnswer,
}

/// Work for the media side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// Set a call's media up: answer `offer` on the caller's leg (make an
    /// offer when there is none: a SIP late offer). With [`Plan::Bridge`],
    /// also prepare the other leg and make its offer. Answered by
    /// [`MediaEvent::Created`].
    Create {
        call: CallId,
        plan: Plan,
        offer: Option<Offer>,
    },
    /// The far leg's answer (a 183's when `early`) completes a bridge.
    /// Answered by [`MediaEvent::BridgeUp`].
    CompleteBridge {
        call: CallId,
        answer: String,
        early: bool,
    },
    /// The answer to our offer (a late offer's ACK). Answered by
    /// [`MediaEvent::AnswerApplied`].
    ApplyAnswer { call: CallId, answer: String },
    /// A new offer for one of the call's legs (hold, resume, new address
    /// or codec, ICE restart). Answered by [`MediaEvent::Reanswered`].
    Reoffer {
        call: CallId,
        from: ReofferFrom,
        offer: Offer,
    },
    /// A digit that came by signalling (SIP INFO) from the `from` leg's
    /// side: relayed on the other leg as RFC 4733, and listed on the call.
    Dtmf {
        call: CallId,
        from: LegKind,
        digit: char,
        duration_ms: u32,
    },
    /// End the call's media. No answer; a [`MediaEvent::Ended`] may follow
    /// and is ignored.
    Hangup { call: CallId, reason: EndReason },
}

/// What [`MediaCommand::Create`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Our SDP for the caller: the answer to its offer, or our offer when
    /// it made none.
    pub local_sdp: String,
    /// [`Plan::Bridge`]: our offer for the outbound leg.
    pub far_offer: Option<String>,
}

/// What the media side reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    Created {
        call: CallId,
        result: Result<Created, Refused>,
    },
    BridgeUp {
        call: CallId,
        early: bool,
        result: Result<(), Refused>,
    },
    AnswerApplied {
        call: CallId,
        result: Result<(), Refused>,
    },
    Reanswered {
        call: CallId,
        from: ReofferFrom,
        result: Result<String, Refused>,
    },
    /// The media side ended a call by itself (media timeout, the WebRTC
    /// connection failed, DELETE by the API...), or confirms a hangup.
    Ended { call: CallId, reason: EndReason },
}
