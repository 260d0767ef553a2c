//! The process's thread count does not grow with calls: ten connected
//! PeerConnection pairs use the same threads as one. Its own test binary, so
//! no other test's threads come and go meanwhile.

use rtcgw::rtc::{CallSettings, OpusSettings, Runtime, RuntimeSettings, WebrtcLogLevel};

fn threads() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_count_is_independent_of_calls() {
    let rt = Runtime::new(&RuntimeSettings {
        addresses: vec!["127.0.0.1".parse().unwrap()],
        port_min: 32000,
        port_max: 32999,
        task_queue_threads: 2,
        opus: OpusSettings::default(),
        log_level: WebrtcLogLevel::None,
        load: Default::default(),
    })
    .unwrap();
    let s = CallSettings {
        jitter_buffer_max_packets: 200,
        jitter_buffer_fast_accelerate: false,
        jitter_buffer_min_delay_ms: 0,
        ice_gathering_timeout_ms: 2000,
    };
    let mut pairs = Vec::new();
    let mut counts = Vec::new();
    for n in 1..=10 {
        let (a, _ea) = rt.create_peer_connection(&s).unwrap();
        let (b, _eb) = rt.create_peer_connection(&s).unwrap();
        let offer = a.offer().await.unwrap();
        let answer = b.answer(&offer).await.unwrap();
        a.apply_answer(&answer).await.unwrap();
        pairs.push((a, b));
        if n == 1 || n == 10 {
            // Let ICE and DTLS finish and media start.
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            counts.push(threads());
        }
    }
    assert!(pairs.iter().all(|(a, _)| a.audio_counters().rx_frames > 0));
    assert_eq!(
        counts[0], counts[1],
        "threads with 1 call vs 10 calls: {counts:?}"
    );
}
