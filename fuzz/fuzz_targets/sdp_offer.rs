//! Offers as they arrive at the edge: classified and checked once
//! ([`Offer::parse`]), and the SDP helpers: no input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcgw_proto::sdp::{self, Offer};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(o) = Offer::parse(text) {
        assert_eq!(o.sdp(), text);
    }
    let _ = sdp::first_audio_codec(text);
    let _ = sdp::candidate_addresses(text);
});
