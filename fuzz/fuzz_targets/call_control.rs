//! Call control (the B2BUA core) fed arbitrary SIP from both sides and a
//! media side that answers each command, now or later, well or badly: no
//! panic, and once every dialog has timed out nothing is left.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtcgw_control::{
    CallControl, CallMetrics, CallerId, ControlConfig, Created, MediaCommand, MediaEvent, Output,
    Refusal, Refused, Route,
};
use rtcgw_proto::sip::metrics::SipMetrics;
use rtcgw_proto::sip::tsx::{Peer, Timers, Transport};
use rtcgw_proto::sip::ua::{UaConfig, UserAgent};

const PLAIN: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

/// The media side's answer to a command; `ok` picks success or refusal.
fn result(cmd: MediaCommand, ok: bool) -> Option<MediaEvent> {
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

fuzz_target!(|data: &[u8]| {
    let ua = UserAgent::new(
        UaConfig {
            timers: Timers::default(),
            local: HashMap::from([(Transport::Udp, "127.0.0.1:5060".parse().unwrap())]),
            allowed: vec!["127.0.0.0/8".parse().unwrap()],
            trusted: vec!["127.0.0.0/8".parse().unwrap()],
            next_hop: Some("127.0.0.1:5080".parse().unwrap()),
            user_agent: "fuzz".into(),
            branch_salt: 1,
            session_timer: None,
            drain_retry_after_s: 30,
        },
        SipMetrics::default(),
    );
    let mut cc = CallControl::new(
        ControlConfig {
            route: Route::Bridge {
                target: "sip:{user}@127.0.0.1:5080".into(),
            },
            max_calls: 4,
            max_setting_up: 2,
            caller_id: CallerId::Pass,
            from_user: "rtcgw".into(),
            pass_asserted_identity: true,
            id_salt: 1,
        },
        ua,
        CallMetrics::default(),
    );
    let peer = Peer {
        addr: "127.0.0.1:5080".parse().unwrap(),
        transport: Transport::Udp,
    };
    let mut now = Instant::now();
    let mut pending: Vec<MediaCommand> = Vec::new();
    // Chunks separated by 0xFF: a SIP datagram; its first byte says which
    // pending media commands are answered before it, and how.
    for chunk in data.split(|b| *b == 0xff) {
        let (ctl, msg) = chunk.split_first().map_or((0, chunk), |(c, m)| (*c, m));
        if ctl & 1 == 1 {
            for cmd in pending.drain(..) {
                if let Some(ev) = result(cmd, ctl & 2 == 0) {
                    cc.handle_media(now, ev);
                }
            }
        }
        cc.handle_sip(now, peer, msg);
        while let Some(o) = cc.poll_output() {
            if let Output::Media(c) = o {
                pending.push(c);
            }
        }
        now += Duration::from_millis(u64::from(ctl) * 40);
        cc.handle_timeout(now);
    }
    for cmd in pending.drain(..) {
        if let Some(ev) = result(cmd, false) {
            cc.handle_media(now, ev);
        }
    }
    for _ in 0..4 {
        now += Duration::from_secs(40);
        cc.handle_timeout(now);
        while cc.poll_output().is_some() {}
    }
    assert!(cc.calls() <= 4, "admission held");
});
