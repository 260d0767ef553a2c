//! The WebRTC offer checks and SDP helpers: no input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = rtcgw::sdp::check_webrtc_offer(text);
    let _ = rtcgw::sdp::first_audio_codec(text);
    let _ = rtcgw::sdp::candidate_addresses(text);
});
