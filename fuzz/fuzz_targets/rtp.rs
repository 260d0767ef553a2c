//! RTP and RTCP from the network: packets, compound RTCP checks and the
//! legacy leg's session (latching, sequence extension, RFC 4733, reports)
//! never panic, whatever arrives from whom and when.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtcgw_proto::rtp::id::{Pt, Ssrc};
use rtcgw_proto::rtp::packet::{RtpPacket, check_rtcp, is_rtcp};
use rtcgw_proto::rtp::session::{RtpSession, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let remote = "192.0.2.1:4000".parse().unwrap();
    let other = "198.51.100.2:5000".parse().unwrap();
    let mut s = RtpSession::new(
        SessionConfig {
            remote,
            strict_source: false,
            audio_pt: Pt(0),
            dtmf_pt: Some(Pt(101)),
            clock_rate: 8000,
            media_timeout: Duration::from_secs(5),
            rtcp_interval: Duration::from_secs(1),
            local_ssrc: Ssrc(7),
            initial_seq: 0,
        },
        t0,
    );
    let mut now = t0;
    let mut out = Vec::new();
    // Datagrams separated by 0xFE; the byte before each picks the source.
    for d in data.split(|b| *b == 0xfe) {
        let (from, d) = match d.split_first() {
            Some((b, rest)) if b & 1 == 1 => (other, rest),
            Some((_, rest)) => (remote, rest),
            None => (remote, d),
        };
        if let Ok(p) = RtpPacket::parse(d) {
            let mut again = Vec::new();
            p.write(&mut again);
            assert_eq!(RtpPacket::parse(&again).map(|q| q.payload), Ok(p.payload));
        }
        if is_rtcp(d) {
            let _ = check_rtcp(d);
        }
        let _ = s.handle_datagram(now, from, d);
        now += Duration::from_millis(7 * d.len() as u64 % 500);
        s.build_rtp(d, 160, Pt(0), false, &mut out);
        if s.poll_rtcp(now, &mut out) {
            assert_eq!(check_rtcp(&out), Ok(()), "our RTCP is valid");
        }
        let _ = s.poll_media_timeout(now);
    }
    assert!(s.recv.lost() >= -(s.recv.packets as i64));
});
