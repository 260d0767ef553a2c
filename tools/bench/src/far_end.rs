//! `rtcgw-bench neteq-play`: a far end with an adaptive jitter buffer, for
//! the QoS lab's mouth-to-ear delay. A phone that adapts its buffer plays
//! what arrives sooner than the lab's fixed 60 ms phone when the path is
//! clean, and later when it jitters; rtpengine passes jitter on to it,
//! rtcgw absorbs it first. The far end is libwebrtc's NetEq (the legacy
//! leg's, with its default settings), run on the packets' recorded arrival
//! times in virtual time: the same packets always play the same way.
//!
//! Input: one packet per line, `arrival_s seq timestamp payload_type hex`,
//! in any order. Output: what the far end plays, raw signed 16-bit
//! little-endian mono at 48 kHz, from the first packet's arrival on, 10 ms
//! at a time until half a second after the last arrival.

use std::path::Path;
use std::time::{Duration, Instant};

use rtcgw::rtc::legacy::{CodecSpec, NetEq, NetEqSettings};
use rtcgw_proto::rtp::id::{Pt, Ssrc};
use rtcgw_proto::rtp::packet::RtpPacket;

struct Arrival {
    at_s: f64,
    seq: u16,
    timestamp: u32,
    pt: u8,
    payload: Vec<u8>,
}

fn parse(line: &str) -> Option<Arrival> {
    let mut f = line.split_whitespace();
    let at_s = f.next()?.parse().ok()?;
    let seq = f.next()?.parse().ok()?;
    let timestamp = f.next()?.parse().ok()?;
    let pt = f.next()?.parse().ok()?;
    let hex = f.next().unwrap_or("");
    let payload = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(Arrival {
        at_s,
        seq,
        timestamp,
        pt,
        payload,
    })
}

/// Plays `input` through NetEq as `codec` ("PCMU", "PCMA" or "G722" on its
/// static payload type) into `output`; returns the 10 ms frames played.
pub fn neteq_play(codec: &str, input: &Path, output: &Path) -> Result<usize, String> {
    let (pt, name) = match codec.to_ascii_uppercase().as_str() {
        "PCMU" => (0, "PCMU"),
        "PCMA" => (8, "PCMA"),
        "G722" => (9, "G722"),
        other => return Err(format!("codec {other}: PCMU, PCMA or G722")),
    };
    let text = std::fs::read_to_string(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut packets: Vec<Arrival> = text.lines().filter_map(parse).collect();
    packets.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let (Some(first), Some(last)) = (packets.first(), packets.last()) else {
        std::fs::write(output, []).map_err(|e| e.to_string())?;
        return Ok(0);
    };
    let (t0_s, end_s) = (first.at_s, last.at_s + 0.5);
    let epoch = Instant::now();
    let at = |s: f64| epoch + Duration::from_secs_f64((s - t0_s).max(0.0));
    let spec = CodecSpec {
        payload_type: pt,
        name: name.into(),
        clock_rate: 8000,
        channels: 1,
        fmtp: String::new(),
    };
    let settings = NetEqSettings {
        max_packets: 200,
        fast_accelerate: false,
        min_delay_ms: 0,
    };
    let neteq = NetEq::new(settings, &[spec], epoch).map_err(|e| e.to_string())?;
    let (mut next, mut frames, mut pcm) = (0, 0, Vec::new());
    let mut out = Vec::with_capacity(((end_s - t0_s) * 96_000.0) as usize);
    let mut tick = 0u64;
    loop {
        let now_s = t0_s + tick as f64 * 0.01;
        if now_s > end_s {
            break;
        }
        while let Some(p) = packets.get(next).filter(|p| p.at_s <= now_s) {
            let rtp = RtpPacket {
                marker: false,
                payload_type: Pt(p.pt),
                seq: p.seq,
                timestamp: p.timestamp,
                ssrc: Ssrc(1),
                payload: &p.payload,
            };
            neteq.insert(at(p.at_s), &rtp);
            next += 1;
        }
        if !neteq.get_audio(at(now_s), &mut pcm) || pcm.len() != 480 {
            pcm.clear();
            pcm.resize(480, 0);
        }
        out.extend(pcm.iter().flat_map(|s| s.to_le_bytes()));
        frames += 1;
        tick += 1;
    }
    std::fs::write(output, out).map_err(|e| format!("{}: {e}", output.display()))?;
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_packet_line() {
        let a = parse("12.5 7 160 0 ff7f00").unwrap();
        assert_eq!((a.at_s, a.seq, a.timestamp, a.pt), (12.5, 7, 160, 0));
        assert_eq!(a.payload, vec![0xff, 0x7f, 0x00]);
        assert!(parse("12.5 7 160").is_none());
        assert!(parse("x 7 160 0 00").is_none());
        assert!(parse("1 7 160 0 0g").is_none());
    }
}
