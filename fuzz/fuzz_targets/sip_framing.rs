//! SIP over a stream (RFC 3261 section 18.3): arbitrary bytes in arbitrary
//! segments never panic, every message cut out is within the limit, and
//! what is held stays bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcgw_proto::sip::framing::StreamFramer;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&seg, stream)) = data.split_first() else {
        return;
    };
    let seg = usize::from(seg).max(1);
    let mut f = StreamFramer::new(MAX);
    for chunk in stream.chunks(seg) {
        f.push(chunk);
        loop {
            match f.next_message() {
                Ok(Some(m)) => assert!(m.len() <= MAX),
                Ok(None) => break,
                Err(_) => return, // the connection is closed
            }
        }
        assert!(f.pending() <= MAX + seg);
    }
});
