//! RTP identifiers as types (RFC 3550 section 5.1), so that a payload type,
//! an SSRC and a sequence number cannot be mixed up.

use std::fmt;

/// A synchronisation source identifier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Ssrc(pub u32);

/// An RTP payload type (7 bits on the wire).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Pt(pub u8);

/// A sequence number extended to 64 bits (RFC 3550 appendix A.1): it
/// counts wraps of the 16-bit field, so differences are packet counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct SeqNo(pub u64);

impl SeqNo {
    /// The extended value of a 16-bit sequence number received after
    /// `self` (the highest seen): the candidate closest to it, so that a
    /// wrap forwards and a reordered packet from before a wrap both land
    /// right.
    pub fn extend(self, seq: u16) -> SeqNo {
        let max = self.0;
        let cand = (max & !0xffff) | u64::from(seq);
        let ext = [cand.wrapping_sub(0x10000), cand, cand + 0x10000]
            .into_iter()
            .filter(|c| *c < u64::MAX / 2)
            .min_by_key(|c| c.abs_diff(max))
            .unwrap_or(cand);
        SeqNo(ext)
    }

    /// The 16 bits that go on the wire.
    pub fn wire(self) -> u16 {
        self.0 as u16
    }
}

impl From<u16> for SeqNo {
    fn from(seq: u16) -> Self {
        SeqNo(u64::from(seq))
    }
}

impl fmt::Display for Ssrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

impl fmt::Display for Pt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_extend_across_wraps_both_ways() {
        let max = SeqNo(65535);
        assert_eq!(max.extend(1), SeqNo(65537), "forward across the wrap");
        assert_eq!(
            SeqNo(65537).extend(65534),
            SeqNo(65534),
            "late, from before it"
        );
        assert_eq!(SeqNo(3).extend(65535), SeqNo(65535), "no negative values");
        assert_eq!(SeqNo(65537).wire(), 1);
    }
}
