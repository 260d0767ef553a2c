//! RTP and RTCP packets (RFC 3550 sections 5 and 6): validated parsing and
//! serialisation. Bad input is an error naming what is wrong, never a panic.

use super::id::{Pt, Ssrc};

/// Why a datagram is not a usable RTP/RTCP packet (also a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    #[error("shorter than a fixed header")]
    Truncated,
    #[error("version is not 2")]
    BadVersion,
    #[error("CSRC list runs past the end")]
    CsrcPastEnd,
    #[error("header extension runs past the end")]
    ExtensionPastEnd,
    #[error("padding runs past the payload")]
    PaddingPastEnd,
    #[error("RTCP length field does not match the datagram")]
    BadRtcpLength,
}

/// Why a received datagram was dropped on a legacy leg: the label of
/// `rtcgw_rtp_dropped_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DropReason {
    Malformed(RtpError),
    /// From another address than the latched or signalled one.
    WrongSource,
    /// From an address other than the SDP's, before it has sent enough
    /// packets in a row to be latched to.
    SourceProbation,
    /// Neither the negotiated codec nor telephone-event.
    UnknownPayloadType,
    /// SDES-SRTP authentication failed (or replay).
    SrtpAuthFailed,
    /// NetEq would not take the packet.
    NetEqRefused,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed(e) => match e {
                RtpError::Truncated => "truncated",
                RtpError::BadVersion => "bad_version",
                RtpError::CsrcPastEnd => "csrc_past_end",
                RtpError::ExtensionPastEnd => "extension_past_end",
                RtpError::PaddingPastEnd => "padding_past_end",
                RtpError::BadRtcpLength => "bad_rtcp_length",
            },
            Self::WrongSource => "wrong_source",
            Self::SourceProbation => "source_probation",
            Self::UnknownPayloadType => "unknown_payload_type",
            Self::SrtpAuthFailed => "srtp_auth_failed",
            Self::NetEqRefused => "neteq_refused",
        }
    }
}

impl From<RtpError> for DropReason {
    fn from(e: RtpError) -> Self {
        Self::Malformed(e)
    }
}

/// A parsed RTP packet borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: Pt,
    /// As on the wire; [`super::id::SeqNo::extend`] counts its wraps.
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: Ssrc,
    pub payload: &'a [u8],
}

/// Whether a datagram on an rtcp-mux port is RTCP (RFC 5761 section 4:
/// payload types 64-95 with the marker bit, i.e. RTCP packet types 192-223).
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && (192..=223).contains(&buf[1])
}

impl<'a> RtpPacket<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < 12 {
            return Err(RtpError::Truncated);
        }
        if buf[0] >> 6 != 2 {
            return Err(RtpError::BadVersion);
        }
        let padding = buf[0] & 0x20 != 0;
        let extension = buf[0] & 0x10 != 0;
        let cc = usize::from(buf[0] & 0x0f);
        let mut off = 12 + 4 * cc;
        if off > buf.len() {
            return Err(RtpError::CsrcPastEnd);
        }
        if extension {
            if off + 4 > buf.len() {
                return Err(RtpError::ExtensionPastEnd);
            }
            let words = usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]]));
            off += 4 + 4 * words;
            if off > buf.len() {
                return Err(RtpError::ExtensionPastEnd);
            }
        }
        let mut end = buf.len();
        if padding {
            let pad = usize::from(*buf.last().expect("len >= 12"));
            if pad == 0 || off + pad > end {
                return Err(RtpError::PaddingPastEnd);
            }
            end -= pad;
        }
        Ok(Self {
            marker: buf[1] & 0x80 != 0,
            payload_type: Pt(buf[1] & 0x7f),
            seq: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: Ssrc(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]])),
            payload: &buf[off..end],
        })
    }

    /// Serialises with a fixed header (no CSRC, extension or padding).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(0x80);
        out.push(u8::from(self.marker) << 7 | (self.payload_type.0 & 0x7f));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.0.to_be_bytes());
        out.extend_from_slice(self.payload);
    }
}

/// Checks a compound RTCP packet: version 2 everywhere, and length fields
/// that add up to the datagram (RFC 3550 section 6.1 / A.2).
pub fn check_rtcp(buf: &[u8]) -> Result<(), RtpError> {
    let mut off = 0;
    if buf.len() < 4 {
        return Err(RtpError::Truncated);
    }
    while off < buf.len() {
        if off + 4 > buf.len() {
            return Err(RtpError::BadRtcpLength);
        }
        if buf[off] >> 6 != 2 {
            return Err(RtpError::BadVersion);
        }
        let words = usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]]));
        off += 4 * (words + 1);
    }
    if off != buf.len() {
        return Err(RtpError::BadRtcpLength);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        RtpPacket {
            marker: true,
            payload_type: Pt(0),
            seq: 65535,
            timestamp: 160,
            ssrc: Ssrc(0xdeadbeef),
            payload,
        }
        .write(&mut v);
        v
    }

    #[test]
    fn round_trip() {
        let buf = packet(&[1, 2, 3]);
        let p = RtpPacket::parse(&buf).unwrap();
        assert!(p.marker);
        assert_eq!(
            (p.payload_type, p.seq, p.timestamp, p.ssrc),
            (Pt(0), 65535, 160, Ssrc(0xdeadbeef))
        );
        assert_eq!(p.payload, &[1, 2, 3]);
        assert!(!is_rtcp(&buf));
    }

    #[test]
    fn bad_packets_are_errors() {
        let good = packet(&[9; 20]);
        assert_eq!(RtpPacket::parse(&good[..11]), Err(RtpError::Truncated));
        let mut v1 = good.clone();
        v1[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v1), Err(RtpError::BadVersion));
        let mut csrc = good.clone();
        csrc[0] = 0x8f; // 15 CSRCs = 60 bytes, only 20 follow
        assert_eq!(RtpPacket::parse(&csrc), Err(RtpError::CsrcPastEnd));
        let mut pad = good.clone();
        pad[0] |= 0x20;
        *pad.last_mut().unwrap() = 200;
        assert_eq!(RtpPacket::parse(&pad), Err(RtpError::PaddingPastEnd));
        let mut ext = good.clone();
        ext[0] |= 0x10;
        ext[14] = 0xff; // 65280 words of extension
        assert_eq!(RtpPacket::parse(&ext), Err(RtpError::ExtensionPastEnd));
        // Padding of 4 with a 20-byte payload: 16 bytes remain.
        let mut ok_pad = good;
        ok_pad[0] |= 0x20;
        *ok_pad.last_mut().unwrap() = 4;
        assert_eq!(RtpPacket::parse(&ok_pad).unwrap().payload.len(), 16);
    }

    #[test]
    fn rtcp_checks() {
        // An empty RR: V=2, RC=0, PT=201, length=1 word.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        assert!(is_rtcp(&rr));
        assert_eq!(check_rtcp(&rr), Ok(()));
        assert_eq!(check_rtcp(&rr[..6]), Err(RtpError::BadRtcpLength));
        assert_eq!(
            check_rtcp(&[0x40, 201, 0, 1, 0, 0, 0, 1]),
            Err(RtpError::BadVersion)
        );
        assert_eq!(
            check_rtcp(&[0x80, 201, 0, 9, 0, 0, 0, 1]),
            Err(RtpError::BadRtcpLength)
        );
    }
}
