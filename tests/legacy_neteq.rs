//! NetEq on the legacy leg in virtual time: libwebrtc's NetEq fed from Rust
//! with seeded loss, jitter and reordering; its expand/accelerate counters
//! move as a jitter buffer's should, and the tone survives.

mod common;

use common::power_at;
use std::time::{Duration, Instant};

use rtcgw::media::audio::{FrameSource, Tone};
use rtcgw::rtc::legacy::{CodecSpec, Encoder, NetEq, NetEqSettings, NetEqStats};
use rtcgw_proto::rtp::id::{Pt, Ssrc};
use rtcgw_proto::rtp::packet::RtpPacket;

/// xorshift64*: a small seeded generator, so a seed gives the same network.
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn pcmu() -> CodecSpec {
    CodecSpec {
        payload_type: 0,
        name: "PCMU".into(),
        clock_rate: 8000,
        channels: 1,
        fmtp: String::new(),
    }
}

fn settings() -> NetEqSettings {
    NetEqSettings {
        max_packets: 200,
        fast_accelerate: false,
        min_delay_ms: 0,
    }
}

struct Net {
    loss: f64,
    jitter_ms: f64,
    /// Sender's packet interval in ms: 20 is in step with us; less is a
    /// sender whose clock runs fast (clock drift).
    interval_ms: f64,
    seed: u64,
}

fn net(loss: f64, jitter_ms: f64, seed: u64) -> Net {
    Net {
        loss,
        jitter_ms,
        interval_ms: 20.0,
        seed,
    }
}

/// Sends `secs` of a 1 kHz tone as 20 ms PCMU packets through `net` into
/// NetEq, playing out every 10 ms; returns the audio and NetEq's stats.
fn run(net: Net, s: NetEqSettings, secs: u64) -> (Vec<i16>, NetEqStats, u32) {
    run_codec(&pcmu(), net, s, secs)
}

fn run_codec(
    codec: &CodecSpec,
    net: Net,
    s: NetEqSettings,
    secs: u64,
) -> (Vec<i16>, NetEqStats, u32) {
    let start = Instant::now();
    let neteq = NetEq::new(s, std::slice::from_ref(codec), start).unwrap();
    let enc = Encoder::new(codec, 20, 1000).unwrap();
    let pt = codec.payload_type;
    let mut tone = Tone::new(1000.0);
    let mut rng = Rng(net.seed);
    let (mut frame, mut payload) = (Vec::new(), Vec::new());
    // (arrival ms, seq, timestamp, payload)
    let mut packets = Vec::new();
    let mut seq: u16 = 65500; // wraps during the run
    let mut sent = 0u32;
    for _ in 0..secs * 100 {
        tone.next_frame(&mut frame);
        if let Some(ts) = enc.encode(&frame, Tone::RATE, &mut payload) {
            let send_ms = f64::from(sent) * net.interval_ms;
            sent += 1;
            seq = seq.wrapping_add(1);
            if rng.next_f64() < net.loss {
                continue;
            }
            let arrival = send_ms + 20.0 + rng.next_f64() * net.jitter_ms;
            packets.push((arrival as u64, seq, ts, payload.clone()));
        }
    }
    packets.sort_by_key(|p| p.0);
    let mut out = Vec::new();
    let mut next = 0;
    // Play out until the last packet is due (no tail of concealment).
    for tick in 0..(secs * 100 + 5) {
        let now_ms = tick * 10;
        let now = start + Duration::from_millis(now_ms);
        while next < packets.len() && packets[next].0 <= now_ms {
            let (_, seq, timestamp, ref p) = packets[next];
            let packet = RtpPacket {
                seq,
                timestamp,
                ssrc: Ssrc(42),
                payload_type: Pt(pt),
                marker: false,
                payload: p,
            };
            assert!(neteq.insert(now, &packet), "insert {} pt {pt}", codec.name);
            next += 1;
        }
        assert!(neteq.get_audio(now, &mut frame));
        assert_eq!(frame.len(), 480);
        out.extend_from_slice(&frame);
    }
    (out, neteq.stats(), sent)
}

fn tone_dominates(x: &[i16]) -> bool {
    let body = &x[48000..x.len() - 48000];
    let p = power_at(body, 48000.0, 1000.0);
    [300.0, 700.0, 1500.0, 2500.0]
        .iter()
        .all(|f| p > 100.0 * power_at(body, 48000.0, *f))
}

#[test]
fn clean_network_plays_the_tone_without_concealment() {
    let (audio, st, _) = run(net(0.0, 0.0, 1), settings(), 5);
    assert!(tone_dominates(&audio));
    // NetEq counts samples at the codec's rate (8 kHz for PCMU).
    assert!(st.concealed_samples < 8000 / 10, "{st:?}"); // only the start-up
    assert_eq!(st.removed_samples_for_acceleration, 0, "{st:?}");
    // Every playout call is classified; on a clean network nearly all are
    // normal decoding (the seed's googDecodingNormal).
    assert!(st.decoding_calls >= 500, "{st:?}"); // 5 s of 10 ms playouts
    assert!(st.decoding_normal > 480, "{st:?}");
    assert!(st.decoding_plc + st.decoding_codec_plc < 10, "{st:?}");
}

#[test]
fn every_legacy_codec_round_trips_through_libwebrtc() {
    let spec = |pt, name: &str, rate, ch| CodecSpec {
        payload_type: pt,
        name: name.into(),
        clock_rate: rate,
        channels: ch,
        fmtp: String::new(),
    };
    for codec in [
        spec(8, "PCMA", 8000, 1),
        spec(9, "G722", 8000, 1),
        spec(111, "opus", 48000, 2),
    ] {
        let (audio, st, _) = run_codec(&codec, net(0.0, 10.0, 2), settings(), 4);
        assert!(tone_dominates(&audio), "{}", codec.name);
        assert!(st.packets_received > 150, "{}: {st:?}", codec.name);
    }
}

#[test]
fn loss_is_concealed_and_counted() {
    let (audio, st, sent) = run(net(0.1, 0.0, 7), settings(), 6);
    assert!(tone_dominates(&audio), "PLC keeps the tone");
    assert!(st.concealment_events >= u64::from(sent) / 20, "{st:?}");
    assert!(st.concealed_samples > 10 * 160, "{st:?}"); // 8 kHz samples
    // 10% of 20 ms packets lost: about 10% of the 10 ms playouts are PLC.
    let plc = st.decoding_plc + st.decoding_codec_plc + st.decoding_plc_cng;
    assert!(plc * 20 > st.decoding_calls, "{st:?}");
    assert!(st.decoding_normal > st.decoding_calls / 2, "{st:?}");
}

#[test]
fn jitter_grows_the_target_delay_and_reordering_is_absorbed() {
    let (_, clean, _) = run(net(0.0, 0.0, 3), settings(), 6);
    // 0-80 ms uniform jitter on 20 ms packets reorders many of them.
    let (audio, jit, _) = run(net(0.0, 80.0, 3), settings(), 6);
    assert!(tone_dominates(&audio));
    let avg = |s: &NetEqStats| {
        s.jitter_buffer_delay_ms as f64 / s.jitter_buffer_emitted_count.max(1) as f64
    };
    assert!(
        avg(&jit) > avg(&clean) + 20.0,
        "clean {} ms, jittery {} ms",
        avg(&clean),
        avg(&jit)
    );
    assert!(
        jit.target_delay_ms > clean.target_delay_ms,
        "{} vs {}",
        jit.target_delay_ms,
        clean.target_delay_ms
    );
}

#[test]
fn clock_drift_is_absorbed_by_accelerate_and_preemptive_expand() {
    // A sender 2% fast fills the buffer: NetEq removes samples.
    let fast = Net {
        interval_ms: 19.6,
        ..net(0.0, 5.0, 5)
    };
    let (audio, st, _) = run(fast, settings(), 10);
    assert!(
        st.removed_samples_for_acceleration > 8000 * 10 / 100,
        "{st:?}"
    );
    assert!(tone_dominates(&audio));
    let avg = st.jitter_buffer_delay_ms as f64 / st.jitter_buffer_emitted_count as f64;
    assert!(avg < 120.0, "the delay stays bounded: {avg} ms");
    // A sender 2% slow drains it: NetEq stretches the audio instead.
    let slow = Net {
        interval_ms: 20.4,
        ..net(0.0, 5.0, 5)
    };
    let (audio, st, _) = run(slow, settings(), 10);
    assert!(
        st.inserted_samples_for_deceleration + st.concealed_samples > 8000 * 10 / 100,
        "{st:?}"
    );
    assert!(tone_dominates(&audio));
}

#[test]
fn same_seed_same_network() {
    let a = run(net(0.05, 40.0, 11), settings(), 3).1;
    let b = run(net(0.05, 40.0, 11), settings(), 3).1;
    assert_eq!(a.concealed_samples, b.concealed_samples);
    assert_eq!(a.jitter_buffer_delay_ms, b.jitter_buffer_delay_ms);
}

#[test]
fn unknown_payload_type_is_refused_not_fatal() {
    let now = Instant::now();
    let neteq = NetEq::new(settings(), &[pcmu()], now).unwrap();
    let packet = RtpPacket {
        seq: 1,
        timestamp: 0,
        ssrc: Ssrc(1),
        payload_type: Pt(99),
        marker: false,
        payload: &[0u8; 160],
    };
    assert!(!neteq.insert(now, &packet));
    let mut out = Vec::new();
    assert!(neteq.get_audio(now, &mut out));
    assert_eq!(out.len(), 480);
}
