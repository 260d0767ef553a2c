//! One legacy RTP stream pair, sans-IO (RFC 3550): validation, symmetric
//! RTP (latching), sequence extension and SSRC changes, interarrival jitter,
//! loss, RFC 4733 events, media timeout, and RTCP receiver/sender reports
//! with RTT. The caller owns the socket, NetEq and the encoder; time is
//! passed in.
//!
//! Latching (where media is taken from and sent to), so that phones behind
//! NAT work and strangers cannot take a call's audio:
//! - the SDP's address is the expectation: media from it is always taken,
//!   and latched to at once, even away from an address learned before;
//! - another address (a phone behind NAT whose SDP names its private
//!   address) is latched to only after [`PROBATION`] packets in a row from
//!   it, one SSRC, consecutive sequence numbers, while nothing is latched;
//!   the packets on probation are dropped (`source_probation`);
//! - once latched, another address is taken only on evidence: the stream's
//!   own SSRC continuing its sequence (a NAT binding that changed) and,
//!   when the latch is the SDP's address, that address silent for
//!   [`SILENCE_BEFORE_MOVE`] (packets still in flight from the old port
//!   after a re-offer are not evidence); everything else is dropped
//!   (`wrong_source`), and the first such source is remembered for the
//!   no-media verdict; a source learned by probation that has been silent
//!   for [`RELEARN_AFTER`] may be replaced by another the same way;
//! - RTCP is taken from the expected host (any port: without rtcp-mux it
//!   comes from the port above) and never moves the latch.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::dtmf::{Digit, DtmfReceiver};
use super::id::{Pt, SeqNo, Ssrc};
use super::packet::{DropReason, RtpPacket, check_rtcp, is_rtcp};

/// What a received datagram turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// Audio for the jitter buffer.
    Media(RtpPacket<'a>),
    /// Completed RFC 4733 digits (possibly none yet for this packet).
    Dtmf(Vec<Digit>),
    Rtcp,
    /// Dropped; the reason is counted.
    Dropped(DropReason),
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Where the SDP says the peer is.
    pub remote: SocketAddr,
    /// Only accept media from `remote` (no latching).
    pub strict_source: bool,
    pub audio_pt: Pt,
    pub dtmf_pt: Option<Pt>,
    pub clock_rate: u32,
    pub media_timeout: Duration,
    pub rtcp_interval: Duration,
    pub local_ssrc: Ssrc,
    /// Our first sequence number is the one after this (random, RFC 3550
    /// section 5.1; chosen by the caller, which owns the randomness).
    pub initial_seq: u16,
}

/// Receive statistics of the current remote SSRC (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RecvStats {
    pub ssrc: Ssrc,
    pub packets: u64,
    pub bytes: u64,
    pub base_seq: SeqNo,
    pub max_seq: SeqNo,
    /// Interarrival jitter in RTP clock units.
    pub jitter: f64,
    pub ssrc_changes: u64,
    pub rtt_ms: Option<f64>,
}

impl RecvStats {
    pub fn expected(&self) -> u64 {
        if self.packets == 0 {
            0
        } else {
            self.max_seq.0 - self.base_seq.0 + 1
        }
    }

    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.packets as i64
    }

    pub fn jitter_ms(&self, clock_rate: u32) -> f64 {
        self.jitter * 1000.0 / f64::from(clock_rate.max(1))
    }
}

/// Packets in a row an address other than the SDP's must send before
/// media is latched to it.
pub const PROBATION: u8 = 3;

/// How long the SDP's address must have been silent before its own stream
/// continuing from elsewhere moves the latch away from it.
pub const SILENCE_BEFORE_MOVE: Duration = Duration::from_millis(500);

/// How long a source latched to by probation (not the SDP's address) must
/// have been silent before another may be latched to the same way.
pub const RELEARN_AFTER: Duration = Duration::from_secs(2);

/// A source on probation: address, SSRC, last sequence number, packets.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    from: SocketAddr,
    ssrc: Ssrc,
    seq: u16,
    count: u8,
}

pub struct RtpSession {
    cfg: SessionConfig,
    start: Instant,
    latched: Option<SocketAddr>,
    candidate: Option<Candidate>,
    /// When the latched source last sent media.
    latched_heard: Option<Instant>,
    /// A change of source to log: (from, to, why).
    latch_change: Option<(Option<SocketAddr>, SocketAddr, &'static str)>,
    pub recv: RecvStats,
    last_transit: Option<i64>,
    last_arrival: Option<Instant>,
    started: bool,
    timed_out: bool,
    dtmf: DtmfReceiver,
    pub dropped: BTreeMap<DropReason, u64>,
    /// The first address a packet came from that was not the one expected.
    foreign: Option<SocketAddr>,
    // Sending side.
    seq: u16,
    pub sent_packets: u64,
    pub sent_bytes: u64,
    last_sent_ts: u32,
    next_rtcp: Instant,
    /// (middle 32 bits of the NTP time of their last SR, when we got it).
    last_sr: Option<(u32, Instant)>,
    // For RR deltas (fraction lost).
    prior_expected: u64,
    prior_received: u64,
    /// The peer's latest report block about our stream (RFC 3550 6.4.1):
    /// how what we send arrives there.
    pub remote_report: Option<RemoteReport>,
}

/// A report block the peer sent about our SSRC.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RemoteReport {
    /// Fraction lost since the peer's previous report, 0..=1.
    pub fraction_lost: f64,
    /// Cumulative packets lost (24-bit signed on the wire).
    pub cumulative_lost: i64,
    /// Interarrival jitter the peer measured, in RTP clock units.
    pub jitter: u32,
}

fn ntp(now: Instant, start: Instant) -> u64 {
    // NTP-like 32.32 fixed point since the session start plus an epoch
    // offset; peers only use its middle 32 bits as an opaque round-trip tag.
    let d = now.saturating_duration_since(start) + Duration::from_secs(0x8000_0000);
    (d.as_secs() << 32) | ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

impl RtpSession {
    pub fn new(cfg: SessionConfig, now: Instant) -> Self {
        Self {
            next_rtcp: now + cfg.rtcp_interval,
            seq: cfg.initial_seq,
            cfg,
            start: now,
            latched: None,
            candidate: None,
            latched_heard: None,
            latch_change: None,
            recv: RecvStats::default(),
            last_transit: None,
            last_arrival: None,
            started: false,
            timed_out: false,
            dtmf: DtmfReceiver::default(),
            dropped: BTreeMap::new(),
            foreign: None,
            sent_packets: 0,
            sent_bytes: 0,
            last_sent_ts: 0,
            last_sr: None,
            prior_expected: 0,
            prior_received: 0,
            remote_report: None,
        }
    }

    /// A re-negotiated stream (re-INVITE): a new remote address drops the
    /// latched source, a new codec changes what is accepted, and the media
    /// timeout starts over (a stream resumed after hold is not late).
    pub fn reconfigure(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        audio_pt: Pt,
        dtmf_pt: Option<Pt>,
        clock_rate: u32,
    ) {
        if remote != self.cfg.remote {
            // The new SDP's address is the expectation now (packets still in
            // flight from the old one are not).
            self.latched = None;
            self.candidate = None;
            self.latched_heard = None;
            self.cfg.remote = remote;
        }
        self.cfg.audio_pt = audio_pt;
        self.cfg.dtmf_pt = dtmf_pt;
        self.cfg.clock_rate = clock_rate;
        self.last_arrival = Some(now);
        self.timed_out = false;
    }

    /// Where the SDP says the peer is.
    pub fn sdp_remote(&self) -> SocketAddr {
        self.cfg.remote
    }

    /// Where our packets go: the latched source, else the SDP address.
    pub fn destination(&self) -> SocketAddr {
        self.latched.unwrap_or(self.cfg.remote)
    }

    fn drop(&mut self, why: DropReason) -> Received<'static> {
        *self.dropped.entry(why).or_default() += 1;
        Received::Dropped(why)
    }

    /// Why no media has been taken on this stream, in plain words, when
    /// none has (`None` once a packet was): where it was expected from, and
    /// what came instead, if anything (dropped, by reason, and from where).
    pub fn no_media_verdict(&self) -> Option<String> {
        if self.recv.packets > 0 {
            return None;
        }
        let expected = if self.cfg.strict_source {
            format!(
                "from {} (the SDP's address; strict_source)",
                self.cfg.remote
            )
        } else {
            format!(
                "from {} (the SDP's address), or another address after {PROBATION} packets in a row",
                self.cfg.remote
            )
        };
        let dropped: u64 = self.dropped.values().sum();
        if dropped == 0 {
            return Some(format!(
                "no RTP at all arrived; expected {expected}: the peer sends nowhere or \
                 elsewhere (our SDP address unreachable: NAT, firewall?)"
            ));
        }
        let why: Vec<String> = self
            .dropped
            .iter()
            .map(|(r, n)| format!("{n} {}", r.as_str()))
            .collect();
        let from = self
            .foreign
            .map_or(String::new(), |f| format!(", the first from {f}"));
        Some(format!(
            "expected {expected}; {dropped} packets arrived and were dropped ({}){from}",
            why.join(", ")
        ))
    }

    /// A latch change since the last call, to log: (from, to, why).
    pub fn take_latch_change(&mut self) -> Option<(Option<SocketAddr>, SocketAddr, &'static str)> {
        self.latch_change.take()
    }

    fn latch(&mut self, to: SocketAddr, why: &'static str) {
        if self.latched != Some(to) {
            self.latch_change = Some((self.latched, to, why));
            self.latched = Some(to);
        }
        self.candidate = None;
    }

    fn wrong_source(&mut self, from: SocketAddr) -> Received<'static> {
        self.foreign.get_or_insert(from);
        self.drop(DropReason::WrongSource)
    }

    /// Whether media from `from` is taken (latching as the module says).
    fn admit(
        &mut self,
        now: Instant,
        from: SocketAddr,
        p: &RtpPacket<'_>,
    ) -> Result<(), DropReason> {
        let r = self.admit_source(now, from, p);
        if r.is_ok() {
            self.latched_heard = Some(now);
        }
        r
    }

    fn admit_source(
        &mut self,
        now: Instant,
        from: SocketAddr,
        p: &RtpPacket<'_>,
    ) -> Result<(), DropReason> {
        if self.latched == Some(from) {
            return Ok(());
        }
        if from == self.cfg.remote {
            self.latch(from, "the SDP's address");
            return Ok(());
        }
        if self.cfg.strict_source {
            return Err(DropReason::WrongSource);
        }
        if let Some(latched) = self.latched {
            // Evidence of a moved NAT binding: our stream, continuing (and
            // the SDP's address, if that is the latch, gone quiet).
            let continues = self.started
                && p.ssrc == self.recv.ssrc
                && (1..=100).contains(&p.seq.wrapping_sub(self.recv.max_seq.0 as u16));
            let quiet = latched != self.cfg.remote
                || self
                    .latched_heard
                    .is_none_or(|t| now.saturating_duration_since(t) >= SILENCE_BEFORE_MOVE);
            if continues && quiet {
                self.latch(from, "the same SSRC continuing from a new address");
                return Ok(());
            }
            // A latch learned from a NAT'd peer that has gone quiet (a long
            // outage, a new binding with a new SSRC) may be learned again.
            let relearn = latched != self.cfg.remote
                && self
                    .latched_heard
                    .is_none_or(|t| now.saturating_duration_since(t) >= RELEARN_AFTER);
            if !relearn {
                return Err(DropReason::WrongSource);
            }
        }
        let next = match self.candidate {
            Some(c) if c.from == from && c.ssrc == p.ssrc && p.seq == c.seq.wrapping_add(1) => {
                c.count + 1
            }
            _ => 1,
        };
        if next >= PROBATION {
            self.latch(
                from,
                "a steady stream from an address other than the SDP's (NAT)",
            );
            return Ok(());
        }
        self.candidate = Some(Candidate {
            from,
            ssrc: p.ssrc,
            seq: p.seq,
            count: next,
        });
        Err(DropReason::SourceProbation)
    }

    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &'a [u8],
    ) -> Received<'a> {
        if is_rtcp(buf) {
            // From the expected host, on any port; it never moves the latch.
            let host = self.latched.unwrap_or(self.cfg.remote).ip();
            if from.ip() != host && from.ip() != self.cfg.remote.ip() {
                return self.wrong_source(from);
            }
            return match check_rtcp(buf) {
                Ok(()) => {
                    self.handle_rtcp(now, buf);
                    Received::Rtcp
                }
                Err(e) => self.drop(e.into()),
            };
        }
        let p = match RtpPacket::parse(buf) {
            Ok(p) => p,
            Err(e) => return self.drop(e.into()),
        };
        let is_dtmf = Some(p.payload_type) == self.cfg.dtmf_pt;
        if p.payload_type != self.cfg.audio_pt && !is_dtmf {
            return self.drop(DropReason::UnknownPayloadType);
        }
        match self.admit(now, from, &p) {
            Ok(()) => {}
            Err(DropReason::WrongSource) => return self.wrong_source(from),
            Err(why) => return self.drop(why),
        }
        self.account(now, &p, buf.len(), !is_dtmf);
        if is_dtmf {
            return Received::Dtmf(self.dtmf.handle(p.timestamp, p.payload));
        }
        Received::Media(p)
    }

    /// `timed`: whether the packet's timestamp tracks its sending time
    /// (audio); RFC 4733 packets repeat their event's start timestamp and
    /// would inflate the jitter estimate.
    fn account(&mut self, now: Instant, p: &RtpPacket<'_>, len: usize, timed: bool) {
        self.last_arrival = Some(now);
        self.timed_out = false;
        if !self.started || p.ssrc != self.recv.ssrc {
            let changes = if self.started {
                self.recv.ssrc_changes + 1
            } else {
                0
            };
            let rtt = self.recv.rtt_ms;
            self.recv = RecvStats {
                ssrc: p.ssrc,
                base_seq: SeqNo::from(p.seq),
                max_seq: SeqNo::from(p.seq),
                ssrc_changes: changes,
                rtt_ms: rtt,
                ..Default::default()
            };
            self.last_transit = None;
            self.prior_expected = 0;
            self.prior_received = 0;
            self.started = true;
        } else {
            let ext = self.recv.max_seq.extend(p.seq);
            self.recv.max_seq = self.recv.max_seq.max(ext);
            self.recv.base_seq = self.recv.base_seq.min(ext);
        }
        self.recv.packets += 1;
        self.recv.bytes += len as u64;
        if !timed {
            return;
        }
        // Interarrival jitter (A.8), in RTP clock units.
        let arrival = (now.saturating_duration_since(self.start).as_secs_f64()
            * f64::from(self.cfg.clock_rate)) as i64;
        let transit = arrival - i64::from(p.timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            self.recv.jitter += (d - self.recv.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    fn handle_rtcp(&mut self, now: Instant, buf: &[u8]) {
        let mut off = 0;
        while off + 8 <= buf.len() {
            let pt = buf[off + 1];
            let rc = usize::from(buf[off] & 0x1f);
            let words = usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]]));
            let body = &buf[off + 4..(off + 4 * (words + 1)).min(buf.len())];
            // SR (200) carries 20 bytes of sender info before report blocks.
            let (blocks, sr_info) = match pt {
                200 if body.len() >= 24 => (&body[24..], Some(&body[4..12])),
                201 => (body.get(4..).unwrap_or(&[]), None),
                _ => (&[][..], None),
            };
            if let Some(ntp) = sr_info {
                let mid = u32::from_be_bytes([ntp[2], ntp[3], ntp[4], ntp[5]]);
                self.last_sr = Some((mid, now));
            }
            for b in blocks.chunks_exact(24).take(rc) {
                let ssrc = Ssrc(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                let lsr = u32::from_be_bytes([b[16], b[17], b[18], b[19]]);
                let dlsr = u32::from_be_bytes([b[20], b[21], b[22], b[23]]);
                if ssrc == self.cfg.local_ssrc {
                    // Sign-extend the 24-bit cumulative count.
                    let lost = i32::from_be_bytes([b[5], b[6], b[7], 0]) >> 8;
                    self.remote_report = Some(RemoteReport {
                        fraction_lost: f64::from(b[4]) / 256.0,
                        cumulative_lost: i64::from(lost),
                        jitter: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
                    });
                }
                if ssrc == self.cfg.local_ssrc && lsr != 0 {
                    // RTT = now - LSR - DLSR, in 1/65536 s (RFC 3550 6.4.1).
                    let now_mid = (ntp(now, self.start) >> 16) as u32;
                    let rtt = now_mid.wrapping_sub(lsr).wrapping_sub(dlsr);
                    if rtt < 0x8000_0000 {
                        self.recv.rtt_ms = Some(f64::from(rtt) * 1000.0 / 65536.0);
                    }
                }
            }
            off += 4 * (words + 1);
        }
    }

    /// Builds our next RTP packet around `payload`.
    pub fn build_rtp(
        &mut self,
        payload: &[u8],
        timestamp: u32,
        payload_type: Pt,
        marker: bool,
        out: &mut Vec<u8>,
    ) {
        self.seq = self.seq.wrapping_add(1);
        RtpPacket {
            marker,
            payload_type,
            seq: self.seq,
            timestamp,
            ssrc: self.cfg.local_ssrc,
            payload,
        }
        .write(out);
        self.sent_packets += 1;
        self.sent_bytes += out.len() as u64;
        self.last_sent_ts = timestamp;
    }

    /// A compound RTCP report when one is due: SR if we send, else RR, each
    /// with one report block about the remote SSRC, plus SDES CNAME.
    pub fn poll_rtcp(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        if now < self.next_rtcp {
            return false;
        }
        self.next_rtcp = now + self.cfg.rtcp_interval;
        out.clear();
        let blocks = usize::from(self.started);
        let sending = self.sent_packets > 0;
        let pt = if sending { 200u8 } else { 201u8 };
        let words = if sending { 6 } else { 1 } + 6 * blocks;
        out.push(0x80 | blocks as u8);
        out.push(pt);
        out.extend_from_slice(&(words as u16).to_be_bytes());
        out.extend_from_slice(&self.cfg.local_ssrc.0.to_be_bytes());
        if sending {
            out.extend_from_slice(&ntp(now, self.start).to_be_bytes());
            out.extend_from_slice(&self.last_sent_ts.to_be_bytes());
            out.extend_from_slice(&(self.sent_packets as u32).to_be_bytes());
            out.extend_from_slice(&(self.sent_bytes as u32).to_be_bytes());
        }
        if self.started {
            let expected = self.recv.expected();
            let (de, dr) = (
                expected - self.prior_expected,
                self.recv.packets - self.prior_received,
            );
            let fraction = if de == 0 || dr >= de {
                0
            } else {
                ((de - dr) * 256 / de) as u8
            };
            self.prior_expected = expected;
            self.prior_received = self.recv.packets;
            let lost = self.recv.lost().clamp(-0x80_0000, 0x7f_ffff) as i32;
            out.extend_from_slice(&self.recv.ssrc.0.to_be_bytes());
            out.push(fraction);
            out.extend_from_slice(&lost.to_be_bytes()[1..]);
            out.extend_from_slice(&(self.recv.max_seq.0 as u32).to_be_bytes());
            out.extend_from_slice(&(self.recv.jitter as u32).to_be_bytes());
            let (lsr, dlsr) = match self.last_sr {
                Some((mid, at)) => (
                    mid,
                    (now.saturating_duration_since(at).as_secs_f64() * 65536.0) as u32,
                ),
                None => (0, 0),
            };
            out.extend_from_slice(&lsr.to_be_bytes());
            out.extend_from_slice(&dlsr.to_be_bytes());
        }
        // SDES with a CNAME (RFC 3550 6.5: every compound packet has one).
        let cname = b"rtcgw";
        let len = 4 + 2 + cname.len() + 1;
        let padded = len.div_ceil(4) * 4;
        out.push(0x81);
        out.push(202);
        out.extend_from_slice(&((padded / 4) as u16).to_be_bytes());
        out.extend_from_slice(&self.cfg.local_ssrc.0.to_be_bytes());
        out.push(1);
        out.push(cname.len() as u8);
        out.extend_from_slice(cname);
        out.resize(out.len() + (padded - len) + 1, 0);
        true
    }

    /// True once, when no RTP arrived for the media timeout.
    pub fn poll_media_timeout(&mut self, now: Instant) -> bool {
        let last = self.last_arrival.unwrap_or(self.start);
        if !self.timed_out && now.saturating_duration_since(last) >= self.cfg.media_timeout {
            self.timed_out = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sessions facing each other: SSRC 7 and SSRC 8.
    fn pair(t0: Instant) -> (RtpSession, RtpSession) {
        let b = SessionConfig {
            local_ssrc: Ssrc(8),
            ..cfg()
        };
        (RtpSession::new(cfg(), t0), RtpSession::new(b, t0))
    }

    fn cfg() -> SessionConfig {
        SessionConfig {
            remote: "192.0.2.1:4000".parse().unwrap(),
            strict_source: false,
            audio_pt: Pt(0),
            dtmf_pt: Some(Pt(101)),
            clock_rate: 8000,
            media_timeout: Duration::from_secs(5),
            rtcp_interval: Duration::from_secs(5),
            local_ssrc: Ssrc(7),
            initial_seq: 100,
        }
    }

    fn rtp(seq: u16, ts: u32, ssrc: u32, pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        RtpPacket {
            marker: false,
            payload_type: Pt(pt),
            seq,
            timestamp: ts,
            ssrc: Ssrc(ssrc),
            payload,
        }
        .write(&mut v);
        v
    }

    #[test]
    fn no_media_says_what_came_instead() {
        let t0 = Instant::now();
        let mut s = RtpSession::new(
            SessionConfig {
                strict_source: true,
                ..cfg()
            },
            t0,
        );
        let v = s.no_media_verdict().unwrap();
        assert!(
            v.contains("no RTP at all arrived") && v.contains("192.0.2.1:4000"),
            "{v}"
        );
        let other: SocketAddr = "198.51.100.9:7777".parse().unwrap();
        s.handle_datagram(t0, other, &rtp(1, 0, 42, 0, &[0; 160]));
        s.handle_datagram(t0, other, &rtp(2, 160, 42, 0, &[0; 160]));
        let v = s.no_media_verdict().unwrap();
        assert!(
            v.contains("2 packets arrived and were dropped (2 wrong_source)"),
            "{v}"
        );
        assert!(v.contains("the first from 198.51.100.9:7777"), "{v}");
        let remote = cfg().remote;
        s.handle_datagram(t0, remote, &rtp(3, 320, 42, 0, &[0; 160]));
        assert_eq!(s.no_media_verdict(), None);
    }

    #[test]
    fn latches_counts_loss_across_wrap_and_resets_on_ssrc_change() {
        let t0 = Instant::now();
        let mut s = RtpSession::new(cfg(), t0);
        let nat: SocketAddr = "198.51.100.9:7777".parse().unwrap();
        // On probation: the first two packets from an address other than
        // the SDP's are dropped.
        for (i, seq) in [65531u16, 65532].iter().enumerate() {
            let pkt = rtp(*seq, 160 * i as u32, 42, 0, &[0; 160]);
            assert_eq!(
                s.handle_datagram(t0, nat, &pkt),
                Received::Dropped(DropReason::SourceProbation)
            );
        }
        for (i, seq) in [65533u16, 65534, 65535, 1, 2].iter().enumerate() {
            let pkt = rtp(*seq, 160 * i as u32, 42, 0, &[0; 160]);
            assert!(matches!(
                s.handle_datagram(t0 + Duration::from_millis(20 * i as u64), nat, &pkt),
                Received::Media(_)
            ));
        }
        assert_eq!(s.destination(), nat, "latched to the real source");
        assert!(s.take_latch_change().is_some_and(|(_, to, _)| to == nat));
        assert_eq!(s.recv.expected(), 6);
        assert_eq!(s.recv.lost(), 1, "seq 0 missing across the wrap");
        // Another source after latching: dropped.
        let other: SocketAddr = "203.0.113.1:1".parse().unwrap();
        assert_eq!(
            s.handle_datagram(t0, other, &rtp(3, 0, 99, 0, &[0; 4])),
            Received::Dropped(DropReason::WrongSource)
        );
        // SSRC change: counters restart.
        s.handle_datagram(t0, nat, &rtp(9000, 0, 43, 0, &[0; 4]));
        assert_eq!(
            (s.recv.ssrc, s.recv.packets, s.recv.ssrc_changes),
            (Ssrc(43), 1, 1)
        );
    }

    #[test]
    fn a_stranger_cannot_take_the_audio_of_a_call_whose_peer_speaks() {
        let t0 = Instant::now();
        let mut s = RtpSession::new(cfg(), t0);
        let peer = cfg().remote;
        let intruder: SocketAddr = "203.0.113.66:40000".parse().unwrap();
        // The intruder is first, but not for long enough to be latched to.
        for seq in 1..=2u16 {
            let pkt = rtp(seq, 0, 666, 0, &[0; 160]);
            assert_eq!(
                s.handle_datagram(t0, intruder, &pkt),
                Received::Dropped(DropReason::SourceProbation)
            );
        }
        // The peer at the SDP's address: latched at once.
        assert!(matches!(
            s.handle_datagram(t0, peer, &rtp(500, 0, 42, 0, &[0; 160])),
            Received::Media(_)
        ));
        // The intruder's steady stream now, even with the peer's SSRC
        // (but not continuing its sequence): dropped, every packet.
        for seq in 3..100u16 {
            let ssrc = if seq % 2 == 0 { 42 } else { 666 };
            let pkt = rtp(seq, 0, ssrc, 0, &[0; 160]);
            let got = s.handle_datagram(t0, intruder, &pkt);
            assert_eq!(got, Received::Dropped(DropReason::WrongSource), "{seq}");
        }
        assert_eq!(s.destination(), peer, "our audio still goes to the peer");
        assert_eq!(s.dropped[&DropReason::WrongSource], 97);
    }

    #[test]
    fn the_sdp_address_wins_and_a_moved_nat_binding_is_followed_on_evidence() {
        let t0 = Instant::now();
        let mut s = RtpSession::new(cfg(), t0);
        let nat: SocketAddr = "198.51.100.9:7777".parse().unwrap();
        let rebound: SocketAddr = "198.51.100.9:7790".parse().unwrap();
        for seq in 1..=3u16 {
            s.handle_datagram(t0, nat, &rtp(seq, 0, 42, 0, &[0; 160]));
        }
        assert_eq!(s.destination(), nat);
        // The binding moves: the same SSRC continuing its sequence.
        assert!(matches!(
            s.handle_datagram(t0, rebound, &rtp(4, 0, 42, 0, &[0; 160])),
            Received::Media(_)
        ));
        assert_eq!(s.destination(), rebound);
        // Another SSRC from yet another port: not evidence.
        let other: SocketAddr = "198.51.100.9:7800".parse().unwrap();
        assert_eq!(
            s.handle_datagram(t0, other, &rtp(5, 0, 43, 0, &[0; 160])),
            Received::Dropped(DropReason::WrongSource)
        );
        // Quiet for over 2 s, a NAT'd source may be learned again (a new
        // binding, a new SSRC).
        let later = t0 + Duration::from_secs(3);
        let again: SocketAddr = "198.51.100.9:7950".parse().unwrap();
        for seq in 1..=3u16 {
            let pkt = rtp(seq, 0, 77, 0, &[0; 160]);
            s.handle_datagram(later, again, &pkt);
        }
        assert_eq!(s.destination(), again);
        // The SDP's address is heard from: it wins.
        s.handle_datagram(t0, cfg().remote, &rtp(6, 0, 42, 0, &[0; 160]));
        assert_eq!(s.destination(), cfg().remote);
        // Its stream continuing from elsewhere while it still speaks: no;
        // once it has been quiet for a while: followed.
        let moved: SocketAddr = "198.51.100.9:7900".parse().unwrap();
        let t = |ms| t0 + Duration::from_millis(ms);
        let (p7, p8) = (rtp(7, 0, 42, 0, &[0; 160]), rtp(8, 0, 42, 0, &[0; 160]));
        let got = s.handle_datagram(t(100), moved, &p7);
        assert_eq!(got, Received::Dropped(DropReason::WrongSource));
        let got = s.handle_datagram(t(700), moved, &p8);
        assert!(matches!(got, Received::Media(_)));
        assert_eq!(s.destination(), moved);
    }

    #[test]
    fn after_a_re_offer_the_new_address_is_expected_not_packets_in_flight() {
        let t0 = Instant::now();
        let mut s = RtpSession::new(cfg(), t0);
        let old = cfg().remote;
        s.handle_datagram(t0, old, &rtp(1, 0, 42, 0, &[0; 160]));
        let new: SocketAddr = "192.0.2.1:4100".parse().unwrap();
        s.reconfigure(t0, new, Pt(0), Some(Pt(101)), 8000);
        // Two packets still in flight from the old port: not latched to.
        for seq in 2..=3u16 {
            let pkt = rtp(seq, 0, 42, 0, &[0; 160]);
            let got = s.handle_datagram(t0, old, &pkt);
            assert_eq!(got, Received::Dropped(DropReason::SourceProbation));
        }
        assert_eq!(s.destination(), new, "still the new SDP's address");
        assert!(matches!(
            s.handle_datagram(t0, new, &rtp(4, 0, 42, 0, &[0; 160])),
            Received::Media(_)
        ));
        // Late ones from the old port after that: dropped.
        assert_eq!(
            s.handle_datagram(t0, old, &rtp(5, 0, 42, 0, &[0; 160])),
            Received::Dropped(DropReason::WrongSource)
        );
        assert_eq!(s.destination(), new);
    }

    #[test]
    fn rtcp_from_the_port_above_is_taken_and_never_moves_the_latch() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        let peer = cfg().remote;
        let mut buf = Vec::new();
        a.build_rtp(&[0; 160], 0, Pt(0), true, &mut buf);
        b.handle_datagram(t0, peer, &buf);
        let rtcp_port = SocketAddr::new(peer.ip(), peer.port() + 1);
        assert!(a.poll_rtcp(t0 + Duration::from_secs(5), &mut buf));
        assert_eq!(b.handle_datagram(t0, rtcp_port, &buf), Received::Rtcp);
        assert_eq!(b.destination(), peer);
        let elsewhere: SocketAddr = "203.0.113.66:4001".parse().unwrap();
        assert_eq!(
            b.handle_datagram(t0, elsewhere, &buf),
            Received::Dropped(DropReason::WrongSource)
        );
    }

    #[test]
    fn bad_input_is_dropped_and_counted_and_the_stream_goes_on() {
        let t0 = Instant::now();
        let mut s = RtpSession::new(cfg(), t0);
        let from = cfg().remote;
        let mut v1 = rtp(1, 0, 1, 0, &[0; 10]);
        v1[0] = 0x40;
        let mut csrc = rtp(1, 0, 1, 0, &[0; 10]);
        csrc[0] = 0x8f;
        let mut pad = rtp(1, 0, 1, 0, &[0; 10]);
        pad[0] |= 0x20;
        *pad.last_mut().unwrap() = 99;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (v1, "bad_version"),
            (vec![0x80, 0, 1], "truncated"),
            (rtp(1, 0, 1, 55, &[0; 10]), "unknown_payload_type"),
            (csrc, "csrc_past_end"),
            (pad, "padding_past_end"),
            (vec![0x80, 200, 0, 40, 1, 2, 3, 4], "bad_rtcp_length"),
        ];
        for (pkt, why) in cases {
            match s.handle_datagram(t0, from, &pkt) {
                Received::Dropped(r) => assert_eq!(r.as_str(), why),
                other => panic!("{why}: {other:?}"),
            }
        }
        assert_eq!(s.dropped.values().sum::<u64>(), 6);
        assert!(matches!(
            s.handle_datagram(t0, from, &rtp(2, 0, 1, 0, &[0; 10])),
            Received::Media(_)
        ));
    }

    #[test]
    fn dtmf_and_rtcp_round_trip_with_rtt() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        let from = cfg().remote;
        // a sends audio to b; b reports; a computes the RTT from b's RR.
        let mut buf = Vec::new();
        a.build_rtp(&[0; 160], 0, Pt(0), true, &mut buf);
        b.handle_datagram(t0, from, &buf);
        let t1 = t0 + Duration::from_secs(5);
        assert!(a.poll_rtcp(t1, &mut buf), "SR due");
        assert_eq!(buf[1], 200);
        b.handle_datagram(t1 + Duration::from_millis(40), from, &buf);
        let mut rr = Vec::new();
        assert!(b.poll_rtcp(t1 + Duration::from_millis(140), &mut rr));
        assert_eq!(check_rtcp(&rr), Ok(()));
        a.handle_datagram(t1 + Duration::from_millis(180), from, &rr);
        let rtt = a.recv.rtt_ms.expect("RTT from LSR/DLSR");
        assert!((rtt - 80.0).abs() < 2.0, "rtt {rtt}"); // 40 ms each way
        // b got our one packet: its report says nothing was lost.
        let rep = a.remote_report.expect("b's report block about a");
        assert_eq!((rep.fraction_lost, rep.cumulative_lost), (0.0, 0));
        // RFC 4733 through the session.
        let ev = crate::rtp::dtmf::EventPayload {
            event: 1,
            end: true,
            volume: 10,
            duration: 800,
        }
        .write();
        let pkt = rtp(3, 8000, 1, 101, &ev);
        let got = b.handle_datagram(t1, from, &pkt);
        assert!(matches!(got, Received::Dtmf(d) if d.len() == 1 && d[0].digit == '1'));
    }

    #[test]
    fn the_peers_report_block_tells_how_our_stream_arrives() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0); // local SSRCs 7 and 8
        let from = cfg().remote;
        // Packets 1..=8 of a's stream reach b, minus 3 and 6: 2 of 8 lost.
        for seq in (1..=8u16).filter(|s| *s != 3 && *s != 6) {
            let pkt = rtp(seq, u32::from(seq) * 160, 7, 0, &[0; 160]);
            b.handle_datagram(t0, from, &pkt);
        }
        let mut rr = Vec::new();
        assert!(b.poll_rtcp(t0 + Duration::from_secs(5), &mut rr));
        a.handle_datagram(t0 + Duration::from_secs(5), from, &rr);
        let rep = a.remote_report.expect("report block about a");
        assert_eq!(rep.cumulative_lost, 2);
        assert!((rep.fraction_lost - 0.25).abs() < 0.01, "{rep:?}");
    }

    #[test]
    fn media_timeout_fires_once() {
        let t0 = Instant::now();
        let mut s = RtpSession::new(cfg(), t0);
        assert!(!s.poll_media_timeout(t0 + Duration::from_secs(4)));
        assert!(s.poll_media_timeout(t0 + Duration::from_secs(5)));
        assert!(!s.poll_media_timeout(t0 + Duration::from_secs(6)));
    }
}
