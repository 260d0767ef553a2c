//! Demo-target calls over the legacy leg: plain RTP/AVP answered from the
//! configured codec list, received audio dejittered by libwebrtc's NetEq and
//! recorded, the demo audio encoded with libwebrtc's encoders and sent,
//! RFC 4733 digits reported. The media task is paced by the gateway's one
//! 10 ms audio clock.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtcgw_control::EndReason;
use rtcgw_proto::rtp::dtmf::DtmfSender;
use rtcgw_proto::rtp::id::Ssrc;
use rtcgw_proto::rtp::packet::{DropReason, is_rtcp};
use rtcgw_proto::rtp::session::{Received, RtpSession, SessionConfig};
use rtcgw_proto::sdp::LegacyOffer;
use rtcgw_proto::sdp::legacy::{self, Negotiated};
use rtcgw_proto::stats::model::{
    DecodingCounts, InboundStats, LegKind, LegStats, NetEqFigures, OutboundStats,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use super::audio::{FrameSink, FrameSource, Recorder};
use super::ports::PortLease;
use super::{Active, CallError, CallId, Calls, DigitVia, Leg, LegacyStats, Legs, Target};
use crate::config::MediaAddress;
use crate::rtc::legacy::{CodecSpec, Encoder, NetEq, NetEqSettings, Srtp};

/// Mid-call changes for a legacy leg's media task.
#[derive(Debug)]
pub(super) enum MediaCmd {
    /// Send a digit as RFC 4733 events on the legacy leg.
    Dtmf { digit: char, duration_ms: u32 },
    /// The leg was re-negotiated (re-INVITE): new remote address, codec,
    /// direction (hold/resume) or keys.
    Renegotiated(Box<Negotiated>),
}

/// What the registry keeps of a legacy leg to change it mid-call.
pub(super) struct LegacyHandle {
    pub cmds: mpsc::Sender<MediaCmd>,
    /// The address our SDP gives (announced, behind NAT) and the port.
    pub public: std::net::IpAddr,
    pub port: u16,
    /// Our SDP origin (RFC 4566 o=): the id stays, the version grows with
    /// each new answer (RFC 3264 section 8).
    pub session_id: u64,
    pub version: u64,
}

/// The codec-dependent parts of a legacy leg.
struct CodecState {
    neteq: NetEq,
    encoder: Encoder,
    srtp: Option<(Srtp, Srtp)>,
}

fn codec_state(
    cfg: &crate::config::LegacyConfig,
    neg: &Negotiated,
    now: Instant,
) -> Result<CodecState, CallError> {
    let mut codecs = vec![spec(&neg.codec)];
    codecs.extend(neg.telephone_event.iter().map(spec));
    let settings = NetEqSettings {
        max_packets: cfg.jitter_buffer_max_packets as usize,
        fast_accelerate: cfg.jitter_buffer_fast_accelerate,
        min_delay_ms: cfg.jitter_buffer_min_delay_ms,
    };
    let neteq = NetEq::new(settings, &codecs, now)?;
    let srtp = match &neg.srtp {
        Some(k) => Some((
            Srtp::new(&k.suite, &k.remote_key, true)?,
            Srtp::new(&k.suite, &k.local_key, false)?,
        )),
        None => None,
    };
    let encoder = Encoder::new(&spec(&neg.codec), neg.ptime, rand::random())?;
    Ok(CodecState {
        neteq,
        encoder,
        srtp,
    })
}

fn remote_rtcp(neg: &Negotiated) -> SocketAddr {
    let remote = SocketAddr::new(neg.remote.addr, neg.remote.port);
    if neg.rtcp_mux {
        remote
    } else {
        SocketAddr::new(
            neg.remote.addr,
            neg.remote
                .rtcp_port
                .unwrap_or(neg.remote.port.saturating_add(1)),
        )
    }
}

/// Everything one legacy call's media task owns.
pub(super) struct LegacyMedia {
    id: CallId,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    /// Held for the life of the call: dropping it frees the ports.
    _lease: PortLease,
    session: RtpSession,
    neteq: NetEq,
    encoder: Encoder,
    neg: Negotiated,
    remote_rtcp: SocketAddr,
    stats: LegacyStats,
    /// How often `stats` is refreshed: twice per stats poll, at most each
    /// second, so that every poll sees figures newer than the last one.
    stats_every: Duration,
    /// SDES-SRTP: (inbound: theirs, outbound: ours).
    srtp: Option<(Srtp, Srtp)>,
    cmds: mpsc::Receiver<MediaCmd>,
    dtmf: DtmfSender,
}

/// How long a leg may receive nothing after the answer before rtcgw says
/// why in the log and the stats.
pub const NO_MEDIA_AFTER: Duration = Duration::from_secs(5);

/// A fresh SDP session id (RFC 4566: an NTP-ish timestamp is suggested).
pub(super) fn session_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn spec(c: &legacy::Codec) -> CodecSpec {
    CodecSpec {
        payload_type: c.pt.0,
        name: c.name.clone(),
        clock_rate: c.clock_rate,
        channels: c.channels,
        fmtp: c.fmtp.clone(),
    }
}

impl Calls {
    /// Leases an RTP/RTCP port pair and binds both sockets.
    /// `addr`: the leg's address ([`crate::config::Config::legacy_address`]).
    pub(super) async fn bind_pair(
        &self,
        addr: MediaAddress,
    ) -> Result<(PortLease, UdpSocket, UdpSocket), CallError> {
        const ATTEMPTS: usize = 16;
        let local = addr.local;
        // Ports another process holds are skipped: their leases are kept
        // aside until a free pair is found, so the pool does not hand them
        // out again at once, then returned.
        let mut busy = Vec::new();
        for _ in 0..ATTEMPTS {
            let lease = self
                .ports
                .lease()
                .ok_or_else(|| CallError::Ports("RTP port range exhausted".into()))?;
            let bind = |port| UdpSocket::bind(SocketAddr::new(local, port));
            match (bind(lease.rtp()).await, bind(lease.rtcp()).await) {
                (Ok(a), Ok(b)) => return Ok((lease, a, b)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(
                        port = lease.rtp(),
                        "RTP port pair unavailable, trying another: {e}"
                    );
                    busy.push(lease);
                }
            }
        }
        Err(CallError::Ports(format!(
            "no bindable RTP port pair after {ATTEMPTS} tries"
        )))
    }

    /// The media state of a negotiated legacy leg (NetEq, encoder, SRTP,
    /// the RTP session) and the handle to change it mid-call.
    pub(super) fn build_media(
        &self,
        id: &CallId,
        (lease, rtp, rtcp): (PortLease, UdpSocket, UdpSocket),
        neg: Negotiated,
        session_id: u64,
    ) -> Result<(LegacyMedia, LegacyHandle), CallError> {
        let cfg = &self.config.legacy;
        let now = Instant::now();
        let CodecState {
            neteq,
            encoder,
            srtp,
        } = codec_state(cfg, &neg, now)?;
        let remote = SocketAddr::new(neg.remote.addr, neg.remote.port);
        let session = RtpSession::new(
            SessionConfig {
                remote,
                strict_source: cfg.strict_source,
                audio_pt: neg.codec.pt,
                dtmf_pt: neg.telephone_event.as_ref().map(|t| t.pt),
                clock_rate: neg.codec.clock_rate,
                media_timeout: if cfg.media_timeout_s == 0 {
                    Duration::MAX / 4
                } else {
                    Duration::from_secs(cfg.media_timeout_s)
                },
                rtcp_interval: Duration::from_secs(cfg.rtcp_interval_s),
                local_ssrc: Ssrc(rand::random()),
                initial_seq: rand::random(),
            },
            now,
        );
        tracing::info!(
            call = %id, codec = %format!("{}/{}", neg.codec.name, neg.codec.clock_rate), ptime = neg.ptime, remote = %remote,
            local_port = lease.rtp(), direction = neg.direction.as_str(),
            telephone_event = neg.telephone_event.is_some(), srtp = neg.srtp.is_some(),
            jitter_buffer_max_packets = cfg.jitter_buffer_max_packets,
            jitter_buffer_fast_accelerate = cfg.jitter_buffer_fast_accelerate,
            jitter_buffer_min_delay_ms = cfg.jitter_buffer_min_delay_ms,
            "legacy call starting"
        );
        let (cmds_tx, cmds) = mpsc::channel(32);
        let local = rtp
            .local_addr()
            .map_err(|e| CallError::Ports(format!("RTP socket: {e}")))?
            .ip();
        let handle = LegacyHandle {
            cmds: cmds_tx,
            public: self.config.public_of(local),
            port: lease.rtp(),
            session_id,
            version: session_id,
        };
        let media = LegacyMedia {
            id: id.clone(),
            rtp,
            rtcp,
            _lease: lease,
            session,
            neteq,
            encoder,
            remote_rtcp: remote_rtcp(&neg),
            neg,
            stats: LegacyStats::default(),
            stats_every: Duration::from_millis(
                (self.config.stats.interval_ms / 2).clamp(100, 1000),
            ),
            srtp,
            cmds,
            dtmf: DtmfSender::default(),
        };
        Ok((media, handle))
    }

    /// Answers a legacy offer with our media on `public`:`port`, from the
    /// config.
    pub(super) fn answer_legacy(
        &self,
        offer: &LegacyOffer,
        (public, port): (std::net::IpAddr, u16),
        session_id: u64,
    ) -> Result<(String, Negotiated), CallError> {
        let cfg = &self.config.legacy;
        Ok(legacy::answer(
            offer.parsed(),
            &cfg.codecs,
            public,
            port,
            cfg.ptime_ms,
            session_id,
            cfg.sdes_srtp,
        )?)
    }

    /// The legacy leg's address for a peer offering `offer`: the first
    /// configured one of its address family.
    pub(super) fn legacy_address_for(&self, offer: &LegacyOffer) -> MediaAddress {
        let v6 = offer.parsed().audio.addr.is_ipv6();
        self.config.legacy_address(Some(v6))
    }

    /// A re-INVITE's offer on a legacy leg (hold, resume, new address or
    /// codec): answered from the same port with the next SDP version; the
    /// media task takes the new parameters.
    pub(super) async fn reoffer_legacy(
        &self,
        id: &CallId,
        offer: &LegacyOffer,
    ) -> Result<String, CallError> {
        let (cmds, public, port, session_id, version) = {
            let mut active = self.active.lock().expect("calls lock");
            let h = active
                .get_mut(id)
                .and_then(|a| a.legacy.as_mut())
                .ok_or(CallError::NoSuchCall)?;
            h.version += 1;
            (h.cmds.clone(), h.public, h.port, h.session_id, h.version)
        };
        let (answer, neg) = self.answer_legacy(offer, (public, port), session_id)?;
        let answer = legacy::with_origin_version(&answer, session_id, version);
        tracing::info!(
            call = %id, codec = %format!("{}/{}", neg.codec.name, neg.codec.clock_rate),
            remote = %SocketAddr::new(neg.remote.addr, neg.remote.port), direction = neg.direction.as_str(),
            "legacy leg re-negotiated"
        );
        cmds.send(MediaCmd::Renegotiated(Box::new(neg)))
            .await
            .map_err(|_| CallError::NoSuchCall)?;
        Ok(answer)
    }

    /// Answers a plain RTP/AVP offer with a demo-target call on the legacy
    /// leg; returns the SDP answer.
    pub(super) async fn create_demo_legacy(
        self: &Arc<Self>,
        id: &CallId,
        offer: &LegacyOffer,
    ) -> Result<String, CallError> {
        let addr = self.legacy_address_for(offer);
        let pair = self.bind_pair(addr).await?;
        let session_id = session_id();
        let (answer, neg) = self.answer_legacy(offer, (addr.public(), pair.0.rtp()), session_id)?;
        let info = self.call_info(
            id,
            Target::Demo,
            Legs::Legacy,
            Some(format!("{}/{}", neg.codec.name, neg.codec.clock_rate)),
        );
        let sink = Box::new(Recorder::with_limits(
            info.recording.clone().into(),
            self.record_limits(),
        ));
        let (media, handle) = self.build_media(id, pair, neg, session_id)?;
        let stats = media.stats.clone();
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(run(
            self.clone(),
            media,
            self.runtime.ticks(),
            self.demo_source(),
            sink,
            stop_rx,
        ));
        self.active.lock().expect("calls lock").insert(
            id.clone(),
            Active {
                info: Arc::new(Mutex::new(info)),
                leg: Leg::Legacy(stats),
                stop: Some(stop_tx),
                legacy: Some(handle),
            },
        );
        Ok(answer)
    }
}

pub(super) async fn run(
    calls: Arc<Calls>,
    mut m: LegacyMedia,
    mut ticks: watch::Receiver<u64>,
    mut source: Box<dyn FrameSource>,
    mut sink: Box<dyn FrameSink>,
    mut stop: oneshot::Receiver<()>,
) {
    const MAX_CATCH_UP: u64 = 5;
    let (mut frame, mut pcm, mut payload, mut out) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut buf = vec![0u8; 2048];
    let mut rbuf = vec![0u8; 2048];
    let mut plain = Vec::with_capacity(2048);
    let mut last = *ticks.borrow_and_update();
    let mut first_packet = true;
    let mut stats_due = Instant::now();
    // No media 5 s after the start: say why, once, in the log and the
    // leg's stats (until media comes).
    let verdict_due = Instant::now() + NO_MEDIA_AFTER;
    let mut said_no_media = false;
    let (mut sends, mut receives) = directions(&m.neg);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(cmd) = m.cmds.recv() => match cmd {
                MediaCmd::Dtmf { digit, duration_ms } => {
                    if m.neg.telephone_event.is_none() {
                        tracing::warn!(call = %m.id, %digit, "DTMF not sent: the legacy leg negotiated no telephone-event");
                    } else if m.dtmf.queue(digit, duration_ms) {
                        tracing::info!(call = %m.id, %digit, duration_ms, "DTMF to the legacy leg (RFC 4733)");
                    }
                }
                MediaCmd::Renegotiated(neg) => {
                    if let Err(e) = m.renegotiate(&calls.config.legacy, *neg) {
                        tracing::warn!(call = %m.id, "re-negotiated legacy leg unusable, ending the call: {e}");
                        calls.hangup(&m.id, EndReason::RenegotiationFailed);
                    }
                    (sends, receives) = directions(&m.neg);
                    first_packet = true;
                }
            },
            r = m.rtp.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    let now = Instant::now();
                    let data: &[u8] = match &m.srtp {
                        Some((inbound, _)) => {
                            plain.clear();
                            plain.extend_from_slice(&buf[..n]);
                            let rtcp = is_rtcp(&plain);
                            if !inbound.apply(&mut plain, rtcp, true) {
                                m.drop(&calls, DropReason::SrtpAuthFailed);
                                continue;
                            }
                            &plain
                        }
                        None => &buf[..n],
                    };
                    let received = m.session.handle_datagram(now, from, data);
                    if let Some((old, new, why)) = m.session.take_latch_change() {
                        match old {
                            None if new == m.session.sdp_remote() => {
                                tracing::debug!(call = %m.id, %new, "RTP source: {why}")
                            }
                            _ => tracing::info!(call = %m.id, from = ?old, to = %new, "RTP source latched: {why}"),
                        }
                    }
                    match received {
                        Received::Media(p) => {
                            if !m.neteq.insert(now, &p) {
                                m.drop(&calls, DropReason::NetEqRefused);
                            }
                        }
                        Received::Dtmf(digits) => {
                            for d in digits {
                                let ms = d.duration_ms(m.neg.telephone_event.as_ref().map_or(8000, |t| t.clock_rate));
                                calls.dtmf(&m.id, LegKind::Legacy, DigitVia::Rfc4733, d.digit, ms);
                            }
                        }
                        Received::Dropped(why) => calls.metrics.dropped(why),
                        Received::Rtcp => {}
                    }
                }
                Err(e) => tracing::debug!(call = %m.id, "RTP receive: {e}"),
            },
            r = m.rtcp.recv_from(&mut rbuf) => {
                if let Ok((n, from)) = r {
                    let mut packet = rbuf[..n].to_vec();
                    let ok = m.srtp.as_ref().is_none_or(|(inbound, _)| inbound.apply(&mut packet, true, true));
                    if !is_rtcp(&packet) {
                        // Only RTCP belongs on this port: RTP here must not
                        // take part in latching.
                        m.drop(&calls, DropReason::WrongSource);
                    } else if !ok {
                        m.drop(&calls, DropReason::SrtpAuthFailed);
                    } else if let Received::Dropped(why) = m.session.handle_datagram(Instant::now(), from, &packet) {
                        calls.metrics.dropped(why);
                    }
                }
            },
            changed = ticks.changed() => {
                if changed.is_err() { break; }
                let n = *ticks.borrow_and_update();
                calls.metrics.count_frames(n.saturating_sub(last));
                let now = Instant::now();
                for _ in 0..n.saturating_sub(last).min(MAX_CATCH_UP) {
                    source.next_frame(&mut frame);
                    if sends && let Some(ts) = m.encoder.encode(&frame, source.sample_rate(), &mut payload) {
                        // A digit being sent replaces the audio packet.
                        let event = m.neg.telephone_event.as_ref().and_then(|te| {
                            let ticks = m.neg.ptime * m.encoder.rtp_clock_rate() / 1000;
                            m.dtmf.on_packet(ts, ticks, te.clock_rate).map(|e| (te.pt, e))
                        });
                        match &event {
                            Some((te_pt, e)) => m.session.build_rtp(&e.payload, e.timestamp, *te_pt, e.marker, &mut out),
                            None => m.session.build_rtp(&payload, ts, m.neg.codec.pt, first_packet, &mut out),
                        }
                        first_packet = false;
                        if m.srtp.as_ref().is_none_or(|(_, outbound)| outbound.apply(&mut out, false, false)) {
                            let _ = m.rtp.try_send_to(&out, m.session.destination());
                        }
                    }
                    if receives && m.neteq.get_audio(now, &mut pcm) {
                        sink.write_frame(48000, &pcm);
                    }
                }
                last = n;
                if m.session.poll_rtcp(now, &mut out) {
                    let to = if m.neg.rtcp_mux { m.session.destination() } else { m.remote_rtcp };
                    let sock = if m.neg.rtcp_mux { &m.rtp } else { &m.rtcp };
                    if m.srtp.as_ref().is_none_or(|(_, outbound)| outbound.apply(&mut out, true, false)) {
                        let _ = sock.try_send_to(&out, to);
                    }
                }
                if receives && m.session.poll_media_timeout(now) {
                    tracing::warn!(call = %m.id, "no RTP within the media timeout: ending the call");
                    calls.hangup(&m.id, EndReason::MediaTimeout);
                }
                if now >= stats_due {
                    stats_due = now + m.stats_every;
                    let mut s = snapshot(&m);
                    // Judged with the stats refresh, off the 10 ms path.
                    if receives && now >= verdict_due {
                        s.no_media = m.session.no_media_verdict();
                        if let Some(why) = s.no_media.as_ref().filter(|_| !said_no_media) {
                            tracing::warn!(call = %m.id, leg = "legacy", direction = "inbound", "no media {} s after the answer: {why}", NO_MEDIA_AFTER.as_secs());
                            said_no_media = true;
                        }
                    }
                    *m.stats.lock().expect("stats lock") = Some(s);
                }
            }
        }
    }
    let sink_report = sink.close();
    let r = &m.session.recv;
    tracing::info!(
        call = %m.id, sink = %sink_report,
        rtp_received = r.packets, rtp_lost = r.lost(), jitter_ms = r.jitter_ms(m.neg.codec.clock_rate),
        rtp_sent = m.session.sent_packets, dropped = ?m.session.dropped,
        "legacy call ended"
    );
}

/// (sends, receives) for a negotiated leg; c=0.0.0.0 is hold (RFC 3264
/// section 8.4 keeps it for older peers) even when no attribute says so.
fn directions(neg: &Negotiated) -> (bool, bool) {
    let held = neg.remote.addr.is_unspecified();
    (neg.direction.sends() && !held, neg.direction.receives())
}

impl LegacyMedia {
    /// A datagram dropped by the task itself (not by the RTP session):
    /// counted on the call, for its end-of-call log, and in the metrics.
    fn drop(&mut self, calls: &Calls, why: DropReason) {
        *self.session.dropped.entry(why).or_default() += 1;
        calls.metrics.dropped(why);
    }

    /// Takes a re-negotiated leg: the codec state is rebuilt only when the
    /// codec or the keys changed, so hold/resume keeps NetEq's history.
    fn renegotiate(
        &mut self,
        cfg: &crate::config::LegacyConfig,
        neg: Negotiated,
    ) -> Result<(), CallError> {
        let now = Instant::now();
        if neg.codec != self.neg.codec
            || neg.ptime != self.neg.ptime
            || neg.srtp != self.neg.srtp
            || neg.telephone_event != self.neg.telephone_event
        {
            let c = codec_state(cfg, &neg, now)?;
            (self.neteq, self.encoder, self.srtp) = (c.neteq, c.encoder, c.srtp);
        }
        let remote = SocketAddr::new(neg.remote.addr, neg.remote.port);
        self.session.reconfigure(
            now,
            remote,
            neg.codec.pt,
            neg.telephone_event.as_ref().map(|t| t.pt),
            neg.codec.clock_rate,
        );
        self.remote_rtcp = remote_rtcp(&neg);
        self.neg = neg;
        Ok(())
    }
}

impl LegacyMedia {
    /// The leg's latest statistics, refreshed by its media task each second.
    pub(super) fn stats_handle(&self) -> LegacyStats {
        self.stats.clone()
    }
}

/// The leg's RTP session and NetEq figures in the stats model (the E-model
/// estimate is left to the stats collector, which knows the interval).
fn snapshot(m: &LegacyMedia) -> LegStats {
    let r = &m.session.recv;
    let rate = m.neg.codec.clock_rate;
    let n = m.neteq.stats();
    let report = m.session.remote_report;
    LegStats {
        no_media: None,
        leg: LegKind::Legacy,
        codec: Some(format!("{}/{}", m.neg.codec.name, rate)),
        ptime_ms: Some(m.neg.ptime),
        rtt_ms: r.rtt_ms,
        inbound: Some(InboundStats {
            packets_received: r.packets,
            bytes_received: r.bytes,
            packets_lost: r.lost(),
            packets_discarded: n.packets_discarded,
            jitter_ms: r.jitter_ms(rate),
            // NetEq sums delay in ms per emitted sample; W3C uses seconds.
            jitter_buffer_delay_s: n.jitter_buffer_delay_ms as f64 / 1000.0,
            jitter_buffer_target_delay_s: n.jitter_buffer_target_delay_ms as f64 / 1000.0,
            jitter_buffer_emitted_count: n.jitter_buffer_emitted_count,
            jitter_buffer_delay_ms: None,
            total_samples_received: n.total_samples_received,
            concealed_samples: n.concealed_samples,
            silent_concealed_samples: n.silent_concealed_samples,
            concealment_events: n.concealment_events,
            inserted_samples_for_deceleration: n.inserted_samples_for_deceleration,
            removed_samples_for_acceleration: n.removed_samples_for_acceleration,
            neteq: Some(NetEqFigures {
                expand_rate: n.expand_rate,
                speech_expand_rate: n.speech_expand_rate,
                accelerate_rate: n.accelerate_rate,
                preemptive_expand_rate: n.preemptive_rate,
                current_buffer_size_ms: n.current_buffer_size_ms,
                preferred_buffer_size_ms: n.preferred_buffer_size_ms,
                target_delay_ms: n.target_delay_ms,
                packet_buffer_flushes: n.packet_buffer_flushes,
                decoding: DecodingCounts {
                    calls: n.decoding_calls,
                    normal: n.decoding_normal,
                    plc: n.decoding_plc,
                    codec_plc: n.decoding_codec_plc,
                    cng: n.decoding_cng,
                    plc_cng: n.decoding_plc_cng,
                    muted_output: n.decoding_muted,
                },
            }),
            quality: None,
        }),
        outbound: Some(OutboundStats {
            packets_sent: m.session.sent_packets,
            bytes_sent: m.session.sent_bytes,
            remote_packets_lost: report.map(|r| r.cumulative_lost),
            remote_fraction_lost: report.map(|r| r.fraction_lost),
            remote_jitter_ms: report.map(|r| f64::from(r.jitter) * 1000.0 / f64::from(rate.max(1))),
            quality: None,
        }),
    }
}
