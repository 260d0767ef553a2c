//! The user agent core fed arbitrary datagrams interleaved with time: no
//! panic, and its state stays bounded.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtcgw::sip::tsx::{Peer, Timers, Transport};
use rtcgw::sip::ua::{UaConfig, UaEvent, UserAgent};

fuzz_target!(|data: &[u8]| {
    let mut ua = UserAgent::new(UaConfig {
        timers: Timers::default(),
        local: HashMap::from([(Transport::Udp, "127.0.0.1:5060".parse().unwrap())]),
        allowed: vec!["127.0.0.0/8".parse().unwrap()],
        next_hop: None,
        user_agent: "fuzz".into(),
        branch_salt: 1,
    });
    let peer = Peer {
        addr: "127.0.0.1:5070".parse().unwrap(),
        transport: Transport::Udp,
    };
    let mut now = Instant::now();
    // Messages separated by 0xFF; each also advances time.
    for chunk in data.split(|b| *b == 0xff) {
        ua.handle_input(now, peer, chunk);
        while ua.poll_output().is_some() {}
        while let Some(ev) = ua.poll_event() {
            if let UaEvent::Invite { call, .. } = ev {
                ua.answer(now, call, "v=0\r\n".into());
            }
        }
        now += Duration::from_millis(chunk.len() as u64 * 10);
        ua.handle_timeout(now);
    }
    now += Duration::from_secs(120);
    ua.handle_timeout(now);
    while ua.poll_output().is_some() {}
    assert!(ua.transactions() <= data.len() + 1);
});
