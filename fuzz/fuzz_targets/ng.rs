//! The ng front end's sans-IO parts fed arbitrary datagrams: cookie split,
//! bencode (a decoded value encodes back to what decodes to it again), the
//! reply cache, command parsing, and call control driven by the commands
//! that parse, with a media side answering each command now or later, well
//! or badly. No panic; admission holds; the cache stays bounded.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtcgw_control::{
    ApiToken, CallControl, CallMetrics, CallerId, ControlConfig, Created, MediaCommand, MediaEvent,
    NgRequest, Output, Refusal, Refused, Route,
};
use rtcgw_proto::ng::bencode::Bencode;
use rtcgw_proto::ng::cache::{ReplyCache, Seen};
use rtcgw_proto::ng::command::{Command, split_cookie};
use rtcgw_proto::sip::metrics::SipMetrics;
use rtcgw_proto::sip::tsx::{Timers, Transport};
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
            trusted: vec![],
            next_hop: None,
            user_agent: "fuzz".into(),
            branch_salt: 1,
            session_timer: None,
            drain_retry_after_s: 30,
        },
        SipMetrics::default(),
    );
    let mut cc = CallControl::new(
        ControlConfig {
            route: Route::Demo,
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
    let mut now = Instant::now();
    let mut cache = ReplyCache::new(now);
    let mut pending: Vec<MediaCommand> = Vec::new();
    let mut token = 0u64;
    // Datagrams separated by 0xFF; a datagram's first byte says which
    // pending media commands are answered before it, how, and how much
    // time passes after it.
    for chunk in data.split(|b| *b == 0xff) {
        let (ctl, datagram) = chunk.split_first().map_or((0, chunk), |(c, m)| (*c, m));
        if ctl & 1 == 1 {
            for cmd in pending.drain(..) {
                if let Some(ev) = result(cmd, ctl & 2 == 0) {
                    cc.handle_media(now, ev);
                }
            }
        }
        if let Some((b, _)) = Bencode::decode(datagram) {
            let again = b.to_bytes();
            let (b2, rest) = Bencode::decode(&again).expect("an encoded value decodes");
            assert!(rest.is_empty());
            assert_eq!(b, b2, "bencode round trip");
        }
        if let Some((cookie, payload)) = split_cookie(datagram) {
            match cache.check(now, cookie) {
                Seen::New => {
                    let req = match Command::parse(payload) {
                        Ok(Command::Offer(oa)) => Some(NgRequest::Offer(oa)),
                        Ok(Command::Answer(oa)) => Some(NgRequest::Answer(oa)),
                        Ok(Command::Delete(d)) => Some(NgRequest::Delete(d)),
                        Ok(_) | Err(_) => None,
                    };
                    if let Some(req) = req {
                        token += 1;
                        cc.handle_ng(now, ApiToken(token), req);
                    }
                    cache.answered(now, cookie, payload);
                }
                Seen::InProgress | Seen::Answered(_) => {}
            }
        }
        while let Some(o) = cc.poll_output() {
            if let Output::Media(c) = o {
                pending.push(c);
            }
        }
        now += Duration::from_millis(u64::from(ctl) * 40);
        cc.handle_timeout(now);
    }
    assert!(cc.calls() <= 4, "admission held");
    for cmd in pending.drain(..) {
        if let Some(ev) = result(cmd, false) {
            cc.handle_media(now, ev);
        }
    }
    while cc.poll_output().is_some() {}
    for _ in 0..4 {
        now += Duration::from_secs(120);
        cc.handle_timeout(now);
        while cc.poll_output().is_some() {}
    }
    assert!(
        cache.len() <= 1 + data.len(),
        "the cache is bounded by what came in"
    );
});
