//! The legacy leg's audio with libwebrtc's parts: NetEq (jitter buffer,
//! PLC, time stretching) for what arrives, AudioEncoder for what leaves.
//! Time is passed in (`now`); see cpp/include/rtcgw/legacy_audio.h.

use std::time::Instant;

use cxx::UniquePtr;
use rtcgw_proto::rtp::packet::RtpPacket;

use super::sys::ffi;
use super::{MAX_FRAME_SAMPLES, RtcError, no_error};

pub use ffi::{CodecSpec, NetEqStats};

/// NetEq knobs for a legacy stream (set apart from the WebRTC leg's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetEqSettings {
    pub max_packets: usize,
    pub fast_accelerate: bool,
    pub min_delay_ms: u32,
}

/// One received stream's NetEq.
pub struct NetEq {
    ptr: UniquePtr<ffi::NetEqStream>,
    epoch: Instant,
}

impl NetEq {
    pub fn new(s: NetEqSettings, codecs: &[CodecSpec], now: Instant) -> Result<Self, RtcError> {
        let mut err = no_error();
        let settings = ffi::NetEqSettings {
            max_packets: s.max_packets,
            fast_accelerate: s.fast_accelerate,
            min_delay_ms: s.min_delay_ms as i32,
        };
        let ptr = ffi::new_neteq(&settings, codecs, 0, &mut err);
        match RtcError::from_ffi(err) {
            Some(e) => Err(e),
            None => Ok(Self { ptr, epoch: now }),
        }
    }

    fn ms(&self, now: Instant) -> i64 {
        now.saturating_duration_since(self.epoch).as_millis() as i64
    }

    /// False when NetEq refused the packet (unknown payload type...).
    pub fn insert(&self, now: Instant, rtp: &RtpPacket<'_>) -> bool {
        let t = self.ms(now);
        self.ptr.insert(
            t,
            rtp.seq,
            rtp.timestamp,
            rtp.ssrc.0,
            rtp.payload_type.0,
            rtp.marker,
            rtp.payload,
        ) == 0
    }

    /// The next 10 ms at 48 kHz mono; false on a NetEq error.
    pub fn get_audio(&self, now: Instant, out: &mut Vec<i16>) -> bool {
        out.resize(MAX_FRAME_SAMPLES, 0);
        let info = self.ptr.get_audio(self.ms(now), out);
        out.truncate(info.samples as usize);
        info.samples > 0
    }

    pub fn stats(&self) -> NetEqStats {
        self.ptr.stats()
    }
}

/// One sent stream's encoder: 10 ms frames in (any rate), RTP payloads out.
pub struct Encoder {
    ptr: UniquePtr<ffi::RtpEncoder>,
}

impl Encoder {
    pub fn new(codec: &CodecSpec, ptime_ms: u32, initial_timestamp: u32) -> Result<Self, RtcError> {
        let mut err = no_error();
        let ptr = ffi::new_rtp_encoder(codec, ptime_ms as i32, initial_timestamp, &mut err);
        match RtcError::from_ffi(err) {
            Some(e) => Err(e),
            None => Ok(Self { ptr }),
        }
    }

    /// Feeds one 10 ms mono frame at `sample_rate`; returns the RTP
    /// timestamp when `out` holds a complete payload.
    pub fn encode(&self, pcm: &[i16], sample_rate: u32, out: &mut Vec<u8>) -> Option<u32> {
        let info = self.ptr.encode(pcm, sample_rate as i32, out);
        (info.bytes > 0).then_some(info.rtp_timestamp)
    }

    pub fn rtp_clock_rate(&self) -> u32 {
        self.ptr.rtp_clock_rate()
    }
}

/// One direction of SDES-SRTP (RFC 4568/3711) on the legacy leg.
pub struct Srtp {
    ptr: UniquePtr<ffi::SrtpStream>,
}

impl Srtp {
    /// `key`: the 30-byte master key || salt; `inbound` unprotects.
    pub fn new(suite: &str, key: &[u8], inbound: bool) -> Result<Self, RtcError> {
        let mut err = no_error();
        let ptr = ffi::new_srtp(suite, key, inbound, &mut err);
        match RtcError::from_ffi(err) {
            Some(e) => Err(e),
            None => Ok(Self { ptr }),
        }
    }

    /// Protects (outbound) or unprotects (inbound) an RTP or RTCP packet in
    /// place; false when libsrtp refuses it (authentication, replay).
    pub fn apply(&self, packet: &mut Vec<u8>, rtcp: bool, inbound: bool) -> bool {
        match (rtcp, inbound) {
            (false, false) => self.ptr.protect_rtp(packet),
            (false, true) => self.ptr.unprotect_rtp(packet),
            (true, false) => self.ptr.protect_rtcp(packet),
            (true, true) => self.ptr.unprotect_rtcp(packet),
        }
    }
}
