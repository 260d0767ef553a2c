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
        fn bench_bridge_codecs(frames: u32) -> u64;
    }
}

use std::time::Duration;

/// CPU time to Opus-encode and decode `frames` 10 ms frames.
pub fn opus_roundtrip_cpu(frames: u32) -> Duration {
    Duration::from_nanos(ffi::bench_opus_roundtrip(frames))
}

/// CPU time for one bridged call's codec work over `frames` 10 ms frames:
/// one Opus encode + decode and one PCMU encode + decode.
pub fn bridge_codecs_cpu(frames: u32) -> Duration {
    Duration::from_nanos(ffi::bench_bridge_codecs(frames))
}
