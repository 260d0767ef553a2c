//! The codec-only reference: what one call's codec work costs with
//! libwebrtc's codec classes alone, nothing of the gateway around them, so
//! that benchmarks can report the gateway's cost as a ratio measured in the
//! same run (cpp/codec_only.h).

#[allow(unsafe_code)] // the cxx bridge: plain functions of integers
#[cxx::bridge(namespace = "rtcgw")]
mod ffi {
    unsafe extern "C++" {
        include!("codec_only.h");
        fn bench_opus_roundtrip(frames: u32) -> u64;
        fn bench_bridge_codecs(pcm: &[i16], rate: u32, opus: &CeilingOpus) -> u64;
    }

    /// The gateway's Opus encoder settings (its `[webrtc.opus]`, and the
    /// audio bandwidth it matches to the legacy leg).
    #[derive(Debug, Clone)]
    struct CeilingOpus {
        bitrate_bps: i32,
        /// -1: libwebrtc's default.
        complexity: i32,
        fec: bool,
        dtx: bool,
        /// 8000: narrowband, 16000: wideband, 48000: fullband.
        max_playback_hz: i32,
    }
}

pub use ffi::CeilingOpus;

use std::time::Duration;

/// CPU time to Opus-encode and decode `frames` 10 ms frames.
pub fn opus_roundtrip_cpu(frames: u32) -> Duration {
    Duration::from_nanos(ffi::bench_opus_roundtrip(frames))
}

/// CPU time for one bridged call's codec work over the whole of `speech`
/// (mono, `rate` Hz): per 20 ms one Opus decode of a browser's packet, one
/// PCMU encode + decode and one Opus encode with `opus`. None: a codec
/// failed.
pub fn bridge_codecs_cpu(speech: &[i16], rate: u32, opus: &CeilingOpus) -> Option<Duration> {
    match ffi::bench_bridge_codecs(speech, rate, opus) {
        0 => None,
        ns => Some(Duration::from_nanos(ns)),
    }
}

/// `rtcgw-bench ceiling`: one bridged call's codec-only cost on a minute
/// of speech with the gateway's default Opus settings at each audio
/// bandwidth, `runs` times each (interleaved), as a Markdown table.
pub fn ceiling_report(speech_dir: &std::path::Path, runs: usize) -> Result<String, String> {
    let speech = crate::speech::load(speech_dir, 60.0)?;
    let secs = speech.len() as f64 / f64::from(crate::speech::RATE);
    let o = rtcgw::config::OpusSettings::default();
    let bands = [
        (48000, "fullband"),
        (16000, "wideband"),
        (8000, "narrowband"),
    ];
    let mut pct: Vec<Vec<f64>> = vec![Vec::new(); bands.len()];
    for _ in 0..runs.max(1) {
        for (i, (hz, _)) in bands.iter().enumerate() {
            let opus = CeilingOpus {
                bitrate_bps: o.bitrate_bps as i32,
                complexity: o.complexity.map_or(-1, i32::from),
                fec: o.fec,
                dtx: o.dtx,
                max_playback_hz: *hz,
            };
            let cpu =
                bridge_codecs_cpu(&speech, crate::speech::RATE, &opus).ok_or("a codec failed")?;
            pct[i].push(cpu.as_secs_f64() / secs * 100.0);
        }
    }
    let mut out = format!(
        "One bridged call's codecs on {secs:.0} s of speech (Opus decode, PCMU encode + decode, \
         Opus encode with the gateway's defaults), % of one core, {} runs: median (min-max)\n\n\
         | Opus encoder bandwidth | % of a core per call | calls per core |\n|---|---:|---:|\n",
        runs.max(1)
    );
    for (i, (hz, name)) in bands.iter().enumerate() {
        let v = &mut pct[i];
        v.sort_by(f64::total_cmp);
        let med = v[v.len() / 2];
        out.push_str(&format!(
            "| {name} ({hz} Hz) | {med:.3} ({:.3}-{:.3}) | {:.0} |\n",
            v[0],
            v[v.len() - 1],
            100.0 / med
        ));
    }
    Ok(out)
}
