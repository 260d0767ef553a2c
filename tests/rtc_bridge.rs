//! The libwebrtc bridge in one process: two PeerConnections of one Runtime
//! call each other over loopback (offer, answer, apply_answer), audio flows
//! both ways without mixing, and libwebrtc's errors come back typed.

mod common;

use common::power_at;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rtcgw::media::audio::{FrameSource, Tone};
use rtcgw::rtc::{
    CallSettings, OpusSettings, PeerConnection, RtcError, Runtime, RuntimeSettings, WebrtcLogLevel,
};

fn runtime() -> Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        Runtime::new(&RuntimeSettings {
            addresses: vec!["127.0.0.1".parse().unwrap()],
            port_min: 31000,
            port_max: 31999,
            task_queue_threads: 2,
            opus: OpusSettings::default(),
            log_level: WebrtcLogLevel::None,
            load: Default::default(),
        })
        .expect("runtime")
    })
    .clone()
}

fn settings() -> CallSettings {
    CallSettings {
        jitter_buffer_max_packets: 200,
        jitter_buffer_fast_accelerate: false,
        jitter_buffer_min_delay_ms: 0,
        ice_gathering_timeout_ms: 2000,
    }
}

async fn connect(rt: &Runtime) -> (Arc<PeerConnection>, Arc<PeerConnection>) {
    let (a, _ea) = rt.create_peer_connection(&settings()).unwrap();
    let (b, _eb) = rt.create_peer_connection(&settings()).unwrap();
    let offer = a.offer().await.unwrap();
    assert!(
        offer.contains("a=rtpmap:111 opus/48000/2"),
        "Opus offered:\n{offer}"
    );
    assert!(offer.contains("red/48000"), "RED offered:\n{offer}");
    // One telephone-event, on the Opus clock (rtcgw_proto::sdp::dtmf).
    assert!(offer.contains("telephone-event/48000"), "{offer}");
    assert!(!offer.contains("telephone-event/8000"), "{offer}");
    let answer = b.answer(&offer).await.unwrap();
    a.apply_answer(&answer).await.unwrap();
    for sdp in [&offer, &answer] {
        let cands = rtcgw_proto::sdp::candidate_addresses(sdp);
        assert!(
            !cands.is_empty() && cands.iter().all(|c| c == "127.0.0.1"),
            "{cands:?}"
        );
    }
    (Arc::new(a), Arc::new(b))
}

/// Runs both directions for `secs`, A sending `fa` Hz and B `fb` Hz; returns
/// what A and B received (after the first half second).
async fn talk(
    rt: &Runtime,
    a: &PeerConnection,
    b: &PeerConnection,
    fa: f32,
    fb: f32,
    secs: u64,
) -> (Vec<i16>, Vec<i16>) {
    let mut ticks = rt.ticks();
    let (mut ta, mut tb) = (Tone::new(fa), Tone::new(fb));
    let (mut fra, mut frb, mut rx) = (Vec::new(), Vec::new(), Vec::new());
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < end {
        tokio::time::timeout(Duration::from_secs(1), ticks.changed())
            .await
            .unwrap()
            .unwrap();
        ta.next_frame(&mut fra);
        tb.next_frame(&mut frb);
        a.push_audio(&fra, Tone::RATE);
        b.push_audio(&frb, Tone::RATE);
        while let Some(rate) = a.pull_audio(&mut rx) {
            assert_eq!(rate, 48000);
            got_a.extend_from_slice(&rx);
        }
        while let Some(_rate) = b.pull_audio(&mut rx) {
            got_b.extend_from_slice(&rx);
        }
    }
    (
        got_a.split_off(24000.min(got_a.len())),
        got_b.split_off(24000.min(got_b.len())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peer_connections_exchange_their_own_tones() {
    let rt = runtime();
    let (a, b) = connect(&rt).await;
    let (at_a, at_b) = talk(&rt, &a, &b, 600.0, 900.0, 3).await;
    assert!(at_b.len() > 48000, "B received {} samples", at_b.len());
    assert!(at_a.len() > 48000, "A received {} samples", at_a.len());
    // Each side hears the other's tone, and not its own.
    assert!(power_at(&at_b, 48000.0, 600.0) > 1000.0 * power_at(&at_b, 48000.0, 900.0));
    assert!(power_at(&at_a, 48000.0, 900.0) > 1000.0 * power_at(&at_a, 48000.0, 600.0));

    // A frame that is not 10 ms is refused and counted, not sent.
    assert!(!a.push_audio(&[0i16; 7], 48000));
    assert!(!a.push_audio(&[0i16; 480], 44100));
    let c = a.audio_counters();
    assert!(c.tx_frames > 250 && c.rx_frames > 250, "{c:?}");
    assert_eq!(c.tx_invalid, 2);

    // getStats arrives as data.
    let stats = b.stats().await;
    let inbound = stats
        .iter()
        .find(|s| s.kind == "inbound-rtp")
        .expect("inbound-rtp");
    assert!(inbound.members["packetsReceived"].as_u64().unwrap() > 100);
    let codec = stats.iter().find(|s| s.kind == "codec").expect("codec");
    assert_eq!(codec.members["mimeType"], "audio/opus");

    // The stats poller's batch read agrees with getStats, for both calls
    // at once, in order; NetEq's own figures come with it.
    let got_stats = inbound.members["packetsReceived"].as_u64().unwrap();
    let read = rtcgw::rtc::media_stats(&[&a, &b], true).await;
    let (ma, mb) = (read[0].as_ref().expect("a"), read[1].as_ref().expect("b"));
    assert_eq!(mb.codec, "opus/48000");
    assert!(mb.has_inbound && mb.has_outbound && ma.has_inbound);
    // Audio stopped flowing with talk(): the counters stand still.
    assert!(
        mb.packets_received.abs_diff(got_stats) <= 2,
        "{} vs {got_stats}",
        mb.packets_received
    );
    assert!(
        ma.packets_sent > 100 && mb.decoding_normal > 250,
        "{ma:?} {mb:?}"
    );
    assert!(mb.preferred_buffer_ms > 0, "{mb:?}");
    a.close();
    b.close();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let read = rtcgw::rtc::media_stats(&[&a, &b], true).await;
    assert!(
        read.iter().all(Option::is_none),
        "closed calls read as none: {read:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sdp_comes_back_as_typed_errors() {
    let rt = runtime();
    let (pc, _events) = rt.create_peer_connection(&settings()).unwrap();
    assert!(matches!(
        pc.answer("garbage").await,
        Err(RtcError::InvalidSdp(_))
    ));
    // An answer without an offer of ours is a state error, not a crash.
    let (other, _e) = rt.create_peer_connection(&settings()).unwrap();
    let offer = other.offer().await.unwrap();
    assert!(pc.apply_answer(&offer).await.is_err());
    // The connection still works afterwards.
    let answer = pc.answer(&offer).await.unwrap();
    assert!(answer.starts_with("v=0"));
    pc.close();
    assert!(matches!(pc.offer().await, Err(RtcError::InvalidState(_))));
}
