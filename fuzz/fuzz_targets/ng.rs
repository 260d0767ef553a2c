//! The ng front end's sans-IO parts fed arbitrary datagrams: cookie split,
//! bencode (a decoded value encodes back to what decodes to it again), the
//! reply cache, command parsing, and call control driven by the commands
//! that parse, with a media side answering each command now or later, well
//! or badly. No panic; admission holds; the cache stays bounded.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtcgw_control::{
    ApiToken, CallControl, CallMetrics, CallerId, ControlConfig, MediaCommand, NgRequest, Output,
    Route,
};
use rtcgw_fuzz::{media_result, user_agent};
use rtcgw_proto::ng::bencode::Bencode;
use rtcgw_proto::ng::cache::{ReplyCache, Seen};
use rtcgw_proto::ng::command::{Command, split_cookie};

fuzz_target!(|data: &[u8]| {
    let ua = user_agent(None);
    let mut cc = CallControl::new(
        ControlConfig {
            route: Route::Demo,
            max_calls: 4,
            max_setting_up: 2,
            caller_id: CallerId::Pass,
            from_user: "rtcgw".into(),
            pass_asserted_identity: true,
            id_salt: 1,
            ring_timeout: std::time::Duration::from_secs(60),
            api_uri_targets: true,
            drain_retry_after_s: 30,
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
                if let Some(ev) = media_result(cmd, ctl & 2 == 0) {
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
        if let Some(ev) = media_result(cmd, false) {
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
