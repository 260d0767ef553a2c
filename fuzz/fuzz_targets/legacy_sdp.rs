//! The plain-RTP leg's offer/answer (RFC 3264): any offer parsed is
//! answered or refused without a panic, our answer is one we would accept
//! back, and any answer to our offer is settled or refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcgw_proto::sdp::legacy::{self, CodecName};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let prefs = CodecName::ALL;
    if let Ok(parsed) = legacy::parse(text) {
        let local = "192.0.2.1".parse().unwrap();
        if let Ok((answer, neg)) = legacy::answer(&parsed, &prefs, local, 30000, 20, 7, true) {
            assert!(
                legacy::parse(&answer).is_ok(),
                "our answer parses: {answer}"
            );
            let _ = legacy::with_origin_version(&answer, 7, 8);
            assert!(
                prefs
                    .iter()
                    .any(|p| neg.codec.name.eq_ignore_ascii_case(p.sdp_name()))
            );
        }
    }
    let _ = legacy::accept_answer(text, &prefs, 20);
});
