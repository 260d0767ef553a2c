//! SDP: the WebRTC offer checks (`webrtc`) and the legacy leg's plain
//! RTP/AVP offer/answer (`legacy`, RFC 3264).

pub mod legacy;
mod webrtc;

pub use webrtc::{OfferError, candidate_addresses, check_webrtc_offer, first_audio_codec};

/// Whether an SDP offers audio over plain RTP (RTP/AVP or SDES RTP/SAVP),
/// i.e. belongs to the legacy leg rather than the WebRTC one.
pub fn is_legacy_offer(sdp: &str) -> bool {
    sdp.lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("m=audio "))
        .any(|m| matches!(m.split_whitespace().nth(1), Some("RTP/AVP" | "RTP/SAVP")))
}
