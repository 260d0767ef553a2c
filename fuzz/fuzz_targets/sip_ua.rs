//! The user agent core fed arbitrary datagrams interleaved with time: no
//! panic, and its state stays bounded.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtcgw_fuzz::user_agent;
use rtcgw_proto::sip::tsx::{Peer, Transport};
use rtcgw_proto::sip::ua::UaEvent;

fuzz_target!(|data: &[u8]| {
    let mut ua = user_agent(None);
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
            match ev {
                UaEvent::Invite { dialog, .. } if chunk.len() % 2 == 0 => {
                    ua.answer(now, dialog, "v=0\r\n".into());
                }
                UaEvent::Invite { dialog, .. } => ua.reject(now, dialog, 486, "Busy Here"),
                UaEvent::Reoffer { dialog, .. } => {
                    ua.answer_reoffer(now, dialog, Ok("v=0\r\n".into()))
                }
                _ => {}
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
