//! The SIP edge parser and everything derived from a parsed message: no
//! input may panic, and what parses must serialise and parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcgw_proto::sip::message::{Message, NameAddr, Via, content_length, header_end};
use rtcgw_proto::sip::uri;

fuzz_target!(|data: &[u8]| {
    if let Some(end) = header_end(data) {
        let _ = content_length(&data[..end]);
    }
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    let (headers, core) = match &msg {
        Message::Request(r) => (&r.headers, r.core()),
        Message::Response(r) => (&r.headers, r.core()),
    };
    for v in headers.list("Via") {
        let _ = Via::parse(&v).map(|v| v.to_string());
    }
    for c in headers
        .list("Contact")
        .iter()
        .chain(headers.list("Record-Route").iter())
    {
        let _ = NameAddr::parse(c);
    }
    let _ = core;
    if let Message::Request(r) = &msg {
        let _ = uri::check_request_uri(&r.uri);
    }
    let again = Message::parse(&msg.to_bytes()).expect("serialised message parses");
    assert_eq!(again.to_bytes(), msg.to_bytes());
});
