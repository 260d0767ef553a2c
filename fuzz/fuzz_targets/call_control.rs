//! Call control (the B2BUA core) fed arbitrary SIP from both sides and a
//! media side that answers each command, now or later, well or badly: no
//! panic, and once every dialog has timed out nothing is left.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtcgw_control::{
    CallControl, CallMetrics, CallerId, ControlConfig, MediaCommand, Output, Route,
};
use rtcgw_fuzz::{media_result, user_agent};
use rtcgw_proto::sip::tsx::{Peer, Transport};

fuzz_target!(|data: &[u8]| {
    let ua = user_agent(Some("127.0.0.1:5080".parse().unwrap()));
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
            ring_timeout: std::time::Duration::from_secs(60),
            api_uri_targets: true,
            drain_retry_after_s: 30,
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
                if let Some(ev) = media_result(cmd, ctl & 2 == 0) {
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
        if let Some(ev) = media_result(cmd, false) {
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
