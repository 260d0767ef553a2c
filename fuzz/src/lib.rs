//! What several fuzz targets share: a user agent on loopback, and a media
//! side that answers call control's commands.

use std::net::SocketAddr;

use rtcgw_control::{Created, MediaCommand, MediaEvent, Refusal, Refused};
use rtcgw_proto::sip::metrics::SipMetrics;
use rtcgw_proto::sip::tsx::{Timers, Transport};
use rtcgw_proto::sip::ua::{NextHop, UaConfig, UserAgent};

/// A plain RTP SDP, the media side's SDP for everything.
pub const PLAIN: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

/// A user agent on 127.0.0.1:5060 taking requests from loopback.
pub fn user_agent(next_hop: Option<SocketAddr>) -> UserAgent {
    UserAgent::new(
        UaConfig {
            timers: Timers::default(),
            local: vec![(Transport::Udp, "127.0.0.1:5060".parse().unwrap())],
            allowed: vec!["127.0.0.0/8".parse().unwrap()],
            trusted: vec!["127.0.0.0/8".parse().unwrap()],
            next_hop: next_hop.map(|addr| NextHop {
                addr,
                transport: None,
            }),
            user_agent: "fuzz".into(),
            branch_salt: 1,
            session_timer: None,
            drain_retry_after_s: 30,
        },
        SipMetrics::default(),
    )
}

/// The media side's answer to a command; `ok` picks success or refusal.
pub fn media_result(cmd: MediaCommand, ok: bool) -> Option<MediaEvent> {
    let refused = || Refused::new(Refusal::Internal, "fuzz");
    Some(match cmd {
        MediaCommand::Create { call, .. } => MediaEvent::Created {
            call,
            result: if ok {
                Ok(Created {
                    local_sdp: PLAIN.into(),
                    far_offer: Some(PLAIN.into()),
                })
            } else {
                Err(refused())
            },
        },
        MediaCommand::CompleteBridge { call, early, .. } => MediaEvent::BridgeUp {
            call,
            early,
            result: if ok { Ok(()) } else { Err(refused()) },
        },
        MediaCommand::ApplyAnswer { call, .. } => MediaEvent::AnswerApplied {
            call,
            result: if ok { Ok(()) } else { Err(refused()) },
        },
        MediaCommand::Reoffer { call, from, .. } => MediaEvent::Reanswered {
            call,
            from,
            result: if ok { Ok(PLAIN.into()) } else { Err(refused()) },
        },
        MediaCommand::Dtmf { .. } | MediaCommand::Hangup { .. } => return None,
    })
}
