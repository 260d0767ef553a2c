//! The stats core, sans-IO: turns a poll's raw figures (the WebRTC leg's
//! voice channel figures or getStats report, the legacy leg's counters) into [`CallStats`] records
//! with an E-model estimate per leg and direction over the poll interval,
//! keeps what /metrics shows (totals, MOS histograms, calls by outcome) and
//! writes the [`CallEnd`] summary. Time is passed in; nothing here waits.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use rtcgw_proto::stats::emodel::{self, CodecImpairment};
use rtcgw_proto::stats::model::*;

use super::metrics::{Received, StatsMetrics};
use crate::rtc::{MediaStats, RtcStats};

#[derive(Debug, Clone, Copy)]
struct Acc {
    n: u32,
    mos: (f64, f64, f64),
    r: (f64, f64, f64),
}

impl Acc {
    fn new(q: &Quality) -> Self {
        Self {
            n: 1,
            mos: (q.mos, q.mos, q.mos),
            r: (q.r_factor, q.r_factor, q.r_factor),
        }
    }

    fn add(&mut self, q: &Quality) {
        fn upd(t: &mut (f64, f64, f64), v: f64) {
            t.0 = t.0.min(v);
            t.1 += v;
            t.2 = t.2.max(v);
        }
        self.n += 1;
        upd(&mut self.mos, q.mos);
        upd(&mut self.r, q.r_factor);
    }

    fn summary(t: (f64, f64, f64), n: u32) -> MinAvgMax {
        MinAvgMax {
            min: t.0,
            avg: t.1 / f64::from(n),
            max: t.2,
        }
    }
}

/// One call's history.
#[derive(Debug, Default)]
struct Track {
    /// The previous poll's legs (deltas come from them).
    prev: BTreeMap<LegKind, LegStats>,
    acc: BTreeMap<(LegKind, Direction), Acc>,
}

/// The stats of every call being followed.
#[derive(Debug)]
pub struct Collector {
    tracks: HashMap<String, Track>,
    metrics: StatsMetrics,
}

/// A counter's increase; a counter that went back (a new SSRC restarts the
/// legacy leg's) counts from zero again.
fn delta(cur: u64, prev: u64) -> u64 {
    if cur >= prev { cur - prev } else { cur }
}

/// Fills in the interval figures and quality of one leg against its
/// previous poll.
fn assess(leg: &mut LegStats, prev: Option<&LegStats>) {
    let codec = CodecImpairment::of(leg.codec.as_deref().unwrap_or(""));
    let ptime = f64::from(leg.ptime_ms.unwrap_or(20));
    let half_rtt = leg.rtt_ms.unwrap_or(0.0) / 2.0;
    if let Some(inb) = &mut leg.inbound {
        let p = prev.and_then(|p| p.inbound.as_ref());
        let p_emitted = p.map_or(0, |p| p.jitter_buffer_emitted_count);
        let p_delay = p.map_or(0.0, |p| p.jitter_buffer_delay_s);
        let demit = delta(inb.jitter_buffer_emitted_count, p_emitted);
        if demit > 0 {
            let ddelay = if inb.jitter_buffer_emitted_count >= p_emitted {
                inb.jitter_buffer_delay_s - p_delay
            } else {
                inb.jitter_buffer_delay_s
            };
            inb.jitter_buffer_delay_ms = Some(1000.0 * ddelay.max(0.0) / demit as f64);
        }
        let drecv = delta(inb.packets_received, p.map_or(0, |p| p.packets_received));
        let dlost = (inb.packets_lost - p.map_or(0, |p| p.packets_lost)).max(0) as u64;
        inb.quality = (drecv + dlost > 0).then(|| {
            let loss_pct = 100.0 * dlost as f64 / (drecv + dlost) as f64;
            let delay = half_rtt + ptime + inb.jitter_buffer_delay_ms.unwrap_or(0.0);
            quality(&codec, loss_pct, delay)
        });
    }
    if let Some(out) = &mut leg.outbound {
        let p = prev.and_then(|p| p.outbound.as_ref());
        let dsent = delta(out.packets_sent, p.map_or(0, |p| p.packets_sent));
        // Without a report from the peer there is nothing to estimate from.
        out.quality = out.remote_fraction_lost.filter(|_| dsent > 0).map(|f| {
            // The peer's jitter buffer is not reported: twice the jitter it
            // measures, at least one packet, stands in for it.
            let buffer = (2.0 * out.remote_jitter_ms.unwrap_or(0.0)).max(ptime);
            quality(&codec, 100.0 * f, half_rtt + ptime + buffer)
        });
    }
}

fn quality(codec: &CodecImpairment, loss_pct: f64, delay_ms: f64) -> Quality {
    let e = emodel::estimate(codec, loss_pct, delay_ms);
    let round = |v: f64, k: f64| (v * k).round() / k;
    Quality {
        r_factor: round(e.r, 100.0),
        mos: round(e.mos, 1000.0),
        loss_pct: round(loss_pct, 1000.0),
        one_way_delay_ms: round(delay_ms + codec.lookahead_ms, 10.0),
    }
}

impl Collector {
    pub fn new(metrics: StatsMetrics) -> Self {
        Self {
            tracks: HashMap::new(),
            metrics,
        }
    }

    /// A poll's figures for one call: returns the record. With `commit`
    /// false (a live look through the API) nothing is remembered, so the
    /// next poll's interval is not cut short.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_poll(
        &mut self,
        now_unix_ms: u64,
        call_id: &str,
        target: &str,
        state: &str,
        mut legs: Vec<LegStats>,
        commit: bool,
    ) -> CallStats {
        let empty = Track::default();
        let track = if commit {
            self.tracks.entry(call_id.to_owned()).or_default()
        } else {
            self.tracks.get(call_id).unwrap_or(&empty)
        };
        for leg in &mut legs {
            assess(leg, track.prev.get(&leg.leg));
        }
        if commit {
            self.metrics.poll();
            let track = self.tracks.get_mut(call_id).expect("inserted above");
            for leg in &legs {
                account(&self.metrics, track, leg);
                track.prev.insert(leg.leg, leg.clone());
            }
        }
        CallStats {
            schema_version: SCHEMA_VERSION,
            call_id: call_id.to_owned(),
            timestamp_unix_ms: now_unix_ms,
            target: target.to_owned(),
            state: state.to_owned(),
            legs,
        }
    }

    /// The legs (kind and codec) last seen for a call.
    pub fn legs(&self, call_id: &str) -> Vec<(LegKind, Option<String>)> {
        self.tracks.get(call_id).map_or_else(Vec::new, |t| {
            t.prev.values().map(|l| (l.leg, l.codec.clone())).collect()
        })
    }

    /// A call ended: its last figures (when they could be read) are taken
    /// as a final poll, then the summary is made and the call forgotten.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_end(
        &mut self,
        now_unix_ms: u64,
        call_id: &str,
        target: &str,
        started_unix_ms: u64,
        (disposition, outcome): (&str, Outcome),
        final_legs: Option<Vec<LegStats>>,
    ) -> (Option<CallStats>, CallEnd) {
        let last = final_legs
            .map(|legs| self.handle_poll(now_unix_ms, call_id, target, "ended", legs, true));
        let track = self.tracks.remove(call_id).unwrap_or_default();
        self.metrics.ended(outcome);
        let mut legs = Vec::new();
        for (kind, leg) in &track.prev {
            let summary = |dir: Direction, packets: u64, lost, concealed| {
                let acc = track.acc.get(&(*kind, dir));
                DirectionSummary {
                    packets,
                    packets_lost: lost,
                    concealed_samples: concealed,
                    mos: acc.map(|a| Acc::summary(a.mos, a.n)),
                    r_factor: acc.map(|a| Acc::summary(a.r, a.n)),
                    intervals: acc.map_or(0, |a| a.n),
                }
            };
            for ((k, dir), a) in &track.acc {
                if k == kind {
                    self.metrics
                        .observe_call_mos(*k, *dir, a.mos.1 / f64::from(a.n));
                }
            }
            legs.push(LegSummary {
                leg: *kind,
                codec: leg.codec.clone(),
                inbound: leg.inbound.as_ref().map(|i| {
                    summary(
                        Direction::Inbound,
                        i.packets_received,
                        Some(i.packets_lost),
                        Some(i.concealed_samples),
                    )
                }),
                outbound: leg.outbound.as_ref().map(|o| {
                    summary(
                        Direction::Outbound,
                        o.packets_sent,
                        o.remote_packets_lost,
                        None,
                    )
                }),
            });
        }
        let end = CallEnd {
            schema_version: SCHEMA_VERSION,
            call_id: call_id.to_owned(),
            target: target.to_owned(),
            started_unix_ms,
            ended_unix_ms: now_unix_ms,
            duration_s: now_unix_ms.saturating_sub(started_unix_ms) as f64 / 1000.0,
            disposition: disposition.to_owned(),
            outcome,
            legs,
        };
        (last, end)
    }

    /// Calls being followed (polled at least once, not ended).
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }
}

/// Adds one assessed leg's increases to the metrics and its quality to the
/// histograms and the call's min/avg/max.
fn account(metrics: &StatsMetrics, track: &mut Track, leg: &LegStats) {
    let prev = track.prev.get(&leg.leg);
    if let Some(i) = &leg.inbound {
        let p = prev.and_then(|p| p.inbound.clone()).unwrap_or_default();
        metrics.add_received(
            leg.leg,
            Received {
                packets: delta(i.packets_received, p.packets_received),
                lost: (i.packets_lost - p.packets_lost).max(0) as u64,
                concealed_samples: delta(i.concealed_samples, p.concealed_samples),
                concealment_events: delta(i.concealment_events, p.concealment_events),
                samples: delta(i.total_samples_received, p.total_samples_received),
                jitter_buffer_emitted: delta(
                    i.jitter_buffer_emitted_count,
                    p.jitter_buffer_emitted_count,
                ),
                jitter_buffer_delay_s: if i.jitter_buffer_delay_s >= p.jitter_buffer_delay_s {
                    i.jitter_buffer_delay_s - p.jitter_buffer_delay_s
                } else {
                    i.jitter_buffer_delay_s
                },
            },
        );
    }
    let qualities = [
        (
            Direction::Inbound,
            leg.inbound.as_ref().and_then(|i| i.quality),
        ),
        (
            Direction::Outbound,
            leg.outbound.as_ref().and_then(|o| o.quality),
        ),
    ];
    for (dir, q) in qualities {
        let Some(q) = q else { continue };
        metrics.observe_mos(leg.leg, dir, q.mos);
        track
            .acc
            .entry((leg.leg, dir))
            .and_modify(|a| a.add(&q))
            .or_insert_with(|| Acc::new(&q));
    }
}

fn num(m: &BTreeMap<String, Value>, k: &str) -> Option<f64> {
    match m.get(k)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn int(m: &BTreeMap<String, Value>, k: &str) -> u64 {
    num(m, k).map_or(0, |v| v.max(0.0) as u64)
}

/// The getStats entry types [`webrtc_no_media`] reads.
pub const NO_MEDIA_KINDS: &[&str] = &[
    "inbound-rtp",
    "transport",
    "candidate-pair",
    "remote-candidate",
];

/// Why a WebRTC leg has received no audio, in plain words, from its
/// getStats report (`None` when audio arrived): how far ICE and DTLS got,
/// which candidates of the peer were tried, whether any check came back.
pub fn webrtc_no_media(report: &[RtcStats]) -> Option<String> {
    let received = report
        .iter()
        .filter(|s| s.kind == "inbound-rtp")
        .map(|s| int(&s.members, "packetsReceived"))
        .sum::<u64>();
    if received > 0 {
        return None;
    }
    let text = |s: &RtcStats, k: &str| s.members.get(k).and_then(Value::as_str).map(str::to_string);
    let remote = |id: Option<String>| {
        let c = report.iter().find(|s| Some(&s.id) == id.as_ref())?;
        let addr = text(c, "address").or_else(|| text(c, "ip"))?;
        let port = int(&c.members, "port");
        let kind = text(c, "candidateType").unwrap_or_default();
        Some(format!("{addr}:{port} ({kind})"))
    };
    let pairs: Vec<&RtcStats> = report
        .iter()
        .filter(|s| s.kind == "candidate-pair")
        .collect();
    let checks_in: u64 = pairs
        .iter()
        .map(|p| int(&p.members, "requestsReceived"))
        .sum();
    let answers_in: u64 = pairs
        .iter()
        .map(|p| int(&p.members, "responsesReceived"))
        .sum();
    let tried: Vec<String> = report
        .iter()
        .filter(|s| s.kind == "remote-candidate")
        .filter_map(|c| remote(Some(c.id.clone())))
        .collect();
    let selected = pairs.iter().find(|p| {
        text(p, "state").as_deref() == Some("succeeded")
            && p.members.get("nominated") == Some(&Value::Bool(true))
    });
    let dtls = report
        .iter()
        .find(|s| s.kind == "transport")
        .and_then(|t| text(t, "dtlsState"))
        .unwrap_or_else(|| "unknown".into());
    let tried = if tried.is_empty() {
        "none (the peer's SDP had no usable candidate)".to_string()
    } else {
        tried.join(", ")
    };
    Some(match selected {
        None if checks_in == 0 && answers_in == 0 => format!(
            "ICE: no connectivity check from the peer reached us and none of ours was answered; \
             its candidates tried: {tried}. Our answer's addresses are unreachable from it, or its \
             from us (NAT without the public address in media.addresses, firewall, wrong \
             interface?)"
        ),
        None => format!(
            "ICE did not complete ({checks_in} checks from the peer, {answers_in} answers to ours); \
             its candidates tried: {tried}"
        ),
        Some(p) => {
            let via = remote(text(p, "remoteCandidateId")).unwrap_or_default();
            if dtls != "connected" {
                format!(
                    "ICE connected via {via} but DTLS is {dtls}: the handshake did not complete \
                     (fingerprint mismatch, or DTLS blocked on the path?)"
                )
            } else {
                format!(
                    "ICE and DTLS up via {via}, but no RTP came: the peer sends no audio (muted, \
                     no track, recvonly or inactive?)"
                )
            }
        }
    })
}

/// The getStats entry types [`webrtc_leg`] reads.
pub const KINDS: &[&str] = &[
    "inbound-rtp",
    "outbound-rtp",
    "remote-inbound-rtp",
    "codec",
    "candidate-pair",
];

/// The WebRTC leg from a getStats report (W3C webrtc-stats as this
/// libwebrtc generation fills it): the audio inbound-rtp, outbound-rtp,
/// the peer's remote-inbound-rtp, the codec and the selected candidate
/// pair's RTT.
pub fn webrtc_leg(report: &[RtcStats]) -> LegStats {
    let find = |kind: &str| {
        report
            .iter()
            .find(|s| s.kind == kind && s.members.get("kind").is_none_or(|k| k == "audio"))
    };
    let by_id = |id: Option<&Value>| {
        let id = id?.as_str()?;
        report.iter().find(|s| s.id == id)
    };
    let inbound = find("inbound-rtp");
    let outbound = find("outbound-rtp");
    let remote = find("remote-inbound-rtp");
    let codec_entry = inbound
        .and_then(|s| by_id(s.members.get("codecId")))
        .or_else(|| outbound.and_then(|s| by_id(s.members.get("codecId"))));
    let codec = codec_entry.and_then(|c| {
        let mime = c.members.get("mimeType")?.as_str()?;
        let name = mime.split('/').nth(1).unwrap_or(mime);
        Some(match num(&c.members, "clockRate") {
            Some(rate) => format!("{name}/{rate}"),
            None => name.to_owned(),
        })
    });
    let rtcp_rtt = remote.and_then(|r| num(&r.members, "roundTripTime"));
    let ice_rtt = report
        .iter()
        .filter(|s| s.kind == "candidate-pair")
        .find(|s| s.members.get("nominated") == Some(&Value::Bool(true)))
        .and_then(|s| num(&s.members, "currentRoundTripTime"));
    LegStats {
        no_media: None,
        leg: LegKind::Webrtc,
        codec,
        ptime_ms: None,
        rtt_ms: rtcp_rtt.or(ice_rtt).map(|s| s * 1000.0),
        inbound: inbound.map(|s| {
            let m = &s.members;
            InboundStats {
                packets_received: int(m, "packetsReceived"),
                bytes_received: int(m, "bytesReceived"),
                packets_lost: num(m, "packetsLost").unwrap_or(0.0) as i64,
                packets_discarded: int(m, "packetsDiscarded"),
                jitter_ms: num(m, "jitter").unwrap_or(0.0) * 1000.0,
                jitter_buffer_delay_s: num(m, "jitterBufferDelay").unwrap_or(0.0),
                jitter_buffer_target_delay_s: num(m, "jitterBufferTargetDelay").unwrap_or(0.0),
                jitter_buffer_emitted_count: int(m, "jitterBufferEmittedCount"),
                jitter_buffer_delay_ms: None,
                total_samples_received: int(m, "totalSamplesReceived"),
                concealed_samples: int(m, "concealedSamples"),
                silent_concealed_samples: int(m, "silentConcealedSamples"),
                concealment_events: int(m, "concealmentEvents"),
                inserted_samples_for_deceleration: int(m, "insertedSamplesForDeceleration"),
                removed_samples_for_acceleration: int(m, "removedSamplesForAcceleration"),
                neteq: None,
                quality: None,
            }
        }),
        outbound: outbound.map(|s| OutboundStats {
            packets_sent: int(&s.members, "packetsSent"),
            bytes_sent: int(&s.members, "bytesSent"),
            remote_packets_lost: remote
                .and_then(|r| num(&r.members, "packetsLost"))
                .map(|v| v as i64),
            remote_fraction_lost: remote.and_then(|r| num(&r.members, "fractionLost")),
            remote_jitter_ms: remote
                .and_then(|r| num(&r.members, "jitter"))
                .map(|j| j * 1000.0),
            quality: None,
        }),
    }
}

/// The WebRTC leg from its voice channel's figures ([`crate::rtc::media_stats`]):
/// the same counters as [`webrtc_leg`] reads from getStats, plus NetEq's
/// rates and decoding counts when `rates` (a clearing read).
pub fn webrtc_leg_media(m: &MediaStats, rates: bool) -> LegStats {
    LegStats {
        no_media: None,
        leg: LegKind::Webrtc,
        codec: (!m.codec.is_empty()).then(|| m.codec.clone()),
        ptime_ms: None,
        rtt_ms: (m.rtt_ms >= 0.0).then_some(m.rtt_ms),
        inbound: m.has_inbound.then(|| InboundStats {
            packets_received: m.packets_received,
            bytes_received: m.bytes_received,
            packets_lost: m.packets_lost,
            packets_discarded: m.packets_discarded,
            jitter_ms: m.jitter_ms,
            jitter_buffer_delay_s: m.jitter_buffer_delay_s,
            jitter_buffer_target_delay_s: m.jitter_buffer_target_delay_s,
            jitter_buffer_emitted_count: m.jitter_buffer_emitted_count,
            jitter_buffer_delay_ms: None,
            total_samples_received: m.total_samples_received,
            concealed_samples: m.concealed_samples,
            silent_concealed_samples: m.silent_concealed_samples,
            concealment_events: m.concealment_events,
            inserted_samples_for_deceleration: m.inserted_samples_for_deceleration,
            removed_samples_for_acceleration: m.removed_samples_for_acceleration,
            neteq: rates.then_some(NetEqFigures {
                expand_rate: m.expand_rate,
                speech_expand_rate: m.speech_expand_rate,
                accelerate_rate: m.accelerate_rate,
                preemptive_expand_rate: m.preemptive_expand_rate,
                current_buffer_size_ms: m.current_buffer_ms,
                preferred_buffer_size_ms: m.preferred_buffer_ms,
                // NetEq's target level is its preferred buffer size.
                target_delay_ms: m.preferred_buffer_ms as i32,
                packet_buffer_flushes: m.jitter_buffer_flushes,
                decoding: DecodingCounts {
                    calls: m.decoding_calls,
                    normal: m.decoding_normal,
                    plc: m.decoding_plc,
                    codec_plc: m.decoding_codec_plc,
                    cng: m.decoding_cng,
                    plc_cng: m.decoding_plc_cng,
                    muted_output: m.decoding_muted_output,
                },
            }),
            quality: None,
        }),
        outbound: m.has_outbound.then(|| OutboundStats {
            packets_sent: m.packets_sent,
            bytes_sent: m.bytes_sent,
            remote_packets_lost: m.has_remote.then_some(m.remote_packets_lost),
            remote_fraction_lost: m.has_remote.then_some(m.remote_fraction_lost),
            remote_jitter_ms: m.has_remote.then_some(m.remote_jitter_ms),
            quality: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, kind: &str, members: Value) -> RtcStats {
        RtcStats {
            id: id.into(),
            kind: kind.into(),
            timestamp_us: 0,
            members: serde_json::from_value(members).unwrap(),
        }
    }

    #[test]
    fn a_leg_without_media_says_how_far_ice_and_dtls_got() {
        let pair = |state: &str, nominated: bool, reqs: u64, resps: u64| {
            entry(
                "CP1",
                "candidate-pair",
                serde_json::json!({"state": state, "nominated": nominated, "remoteCandidateId": "RC1",
                    "requestsReceived": reqs, "responsesReceived": resps}),
            )
        };
        let base = |dtls: &str| {
            vec![
                entry(
                    "IT1",
                    "inbound-rtp",
                    serde_json::json!({"kind": "audio", "packetsReceived": 0}),
                ),
                entry("T1", "transport", serde_json::json!({"dtlsState": dtls})),
                entry(
                    "RC1",
                    "remote-candidate",
                    serde_json::json!({"address": "198.51.100.7", "port": 5000, "candidateType": "host"}),
                ),
            ]
        };
        let mut r = base("new");
        r.push(pair("in-progress", false, 0, 0));
        let v = webrtc_no_media(&r).unwrap();
        assert!(
            v.contains("no connectivity check") && v.contains("198.51.100.7:5000 (host)"),
            "{v}"
        );
        let mut r = base("failed");
        r.push(pair("succeeded", true, 3, 3));
        assert!(webrtc_no_media(&r).unwrap().contains("DTLS is failed"));
        let mut r = base("connected");
        r.push(pair("succeeded", true, 3, 3));
        assert!(
            webrtc_no_media(&r)
                .unwrap()
                .contains("the peer sends no audio")
        );
        assert_eq!(webrtc_no_media(&report(10, 0, 0, 480, 0.0)), None);
    }

    fn report(
        received: u64,
        lost: i64,
        concealed: u64,
        emitted: u64,
        delay_s: f64,
    ) -> Vec<RtcStats> {
        vec![
            entry(
                "IT01A",
                "inbound-rtp",
                serde_json::json!({
                    "kind": "audio", "codecId": "CIT01_111", "packetsReceived": received,
                    "bytesReceived": received * 80, "packetsLost": lost, "jitter": 0.004,
                    "jitterBufferDelay": delay_s, "jitterBufferEmittedCount": emitted,
                    "jitterBufferTargetDelay": delay_s, "totalSamplesReceived": emitted,
                    "concealedSamples": concealed, "concealmentEvents": concealed / 480,
                }),
            ),
            entry(
                "OT01A",
                "outbound-rtp",
                serde_json::json!({"kind": "audio", "packetsSent": received, "bytesSent": "12345"}),
            ),
            entry(
                "RI01A",
                "remote-inbound-rtp",
                serde_json::json!({"kind": "audio", "packetsLost": 0, "fractionLost": 0.0,
                    "jitter": 0.002, "roundTripTime": 0.04}),
            ),
            entry(
                "CIT01_111",
                "codec",
                serde_json::json!({"mimeType": "audio/opus", "clockRate": 48000}),
            ),
        ]
    }

    #[test]
    fn voice_channel_figures_become_the_webrtc_leg() {
        let m = MediaStats {
            present: true,
            has_inbound: true,
            has_outbound: true,
            codec: "opus/48000".into(),
            packets_received: 500,
            packets_lost: 3,
            concealed_samples: 960,
            expand_rate: 0.02,
            preferred_buffer_ms: 40,
            decoding_plc: 7,
            packets_sent: 480,
            has_remote: true,
            remote_fraction_lost: 0.25,
            rtt_ms: 24.0,
            ..Default::default()
        };
        let leg = webrtc_leg_media(&m, true);
        assert_eq!(leg.leg, LegKind::Webrtc);
        assert_eq!(leg.codec.as_deref(), Some("opus/48000"));
        assert_eq!(leg.rtt_ms, Some(24.0));
        let inb = leg.inbound.as_ref().unwrap();
        assert_eq!(
            (
                inb.packets_received,
                inb.packets_lost,
                inb.concealed_samples
            ),
            (500, 3, 960)
        );
        let neteq = inb.neteq.as_ref().unwrap();
        assert_eq!(
            (neteq.expand_rate, neteq.target_delay_ms, neteq.decoding.plc),
            (0.02, 40, 7)
        );
        let out = leg.outbound.as_ref().unwrap();
        assert_eq!(
            (out.packets_sent, out.remote_fraction_lost),
            (480, Some(0.25))
        );
        // A read that did not clear NetEq's rates reports none; no RTT
        // measured, no remote report, no codec: absent, not zero.
        let m = MediaStats {
            rtt_ms: -1.0,
            has_remote: false,
            codec: String::new(),
            ..m
        };
        let leg = webrtc_leg_media(&m, false);
        assert!(leg.inbound.unwrap().neteq.is_none());
        assert_eq!((leg.rtt_ms, leg.codec), (None, None));
        assert_eq!(leg.outbound.unwrap().remote_fraction_lost, None);
    }

    #[test]
    fn getstats_report_becomes_the_webrtc_leg() {
        let leg = webrtc_leg(&report(500, 3, 960, 480_000, 24.0));
        assert_eq!(leg.codec.as_deref(), Some("opus/48000"));
        assert_eq!(leg.rtt_ms, Some(40.0));
        let i = leg.inbound.unwrap();
        assert_eq!((i.packets_received, i.packets_lost), (500, 3));
        assert_eq!(i.concealed_samples, 960);
        assert!((i.jitter_ms - 4.0).abs() < 1e-9);
        let o = leg.outbound.unwrap();
        assert_eq!(o.bytes_sent, 12345, "numbers as strings are read too");
        assert_eq!(o.remote_fraction_lost, Some(0.0));
        // An empty report (a closed connection) is an empty leg, not a panic.
        let empty = webrtc_leg(&[]);
        assert!(empty.inbound.is_none() && empty.codec.is_none());
    }

    #[test]
    fn quality_is_per_interval_and_loss_lowers_it() {
        let m = StatsMetrics::new(Default::default());
        let mut c = Collector::new(m.clone());
        // 5 s of 20 ms packets, clean: 250 received, 50 ms in the buffer.
        let r1 = c.handle_poll(
            5_000,
            "c1",
            "demo",
            "connected",
            vec![webrtc_leg(&report(250, 0, 0, 240_000, 12_000.0))],
            true,
        );
        let q1 = r1.legs[0].inbound.as_ref().unwrap().quality.unwrap();
        assert_eq!(q1.loss_pct, 0.0);
        assert!(q1.mos > 4.3, "{q1:?}");
        let jb = r1.legs[0].inbound.as_ref().unwrap().jitter_buffer_delay_ms;
        assert_eq!(jb, Some(50.0));
        // The next 5 s lose 5%: the interval's loss, not the call's, counts.
        let r2 = c.handle_poll(
            10_000,
            "c1",
            "demo",
            "connected",
            vec![webrtc_leg(&report(250 + 238, 12, 4800, 480_000, 24_000.0))],
            true,
        );
        let q2 = r2.legs[0].inbound.as_ref().unwrap().quality.unwrap();
        assert!((q2.loss_pct - 4.8).abs() < 0.01, "{q2:?}");
        assert!(q2.mos < q1.mos - 0.3, "{q1:?} {q2:?}");
        // Totals grow by increases; MOS histogram saw both polls.
        assert_eq!(m.received(LegKind::Webrtc), (488, 12));
        assert_eq!(m.mos_counts(LegKind::Webrtc, Direction::Inbound), (2, 0));
        // A live look does not move the baseline.
        let live = c.handle_poll(
            11_000,
            "c1",
            "demo",
            "connected",
            vec![webrtc_leg(&report(550, 12, 4800, 528_000, 26_400.0))],
            false,
        );
        assert!(live.legs[0].inbound.as_ref().unwrap().quality.is_some());
        assert_eq!(m.polls(), 2);

        let (last, end) = c.handle_end(12_000, "c1", "demo", 0, ("BYE", Outcome::Completed), None);
        assert!(last.is_none());
        assert_eq!(end.outcome, Outcome::Completed);
        assert_eq!(end.duration_s, 12.0);
        let inb = end.legs[0].inbound.as_ref().unwrap();
        assert_eq!(inb.intervals, 2);
        let mos = inb.mos.unwrap();
        assert!(mos.min < mos.avg && mos.avg < mos.max, "{mos:?}");
        assert_eq!(inb.packets_lost, Some(12));
        assert!(c.is_empty());
        assert_eq!(m.calls_ended(Outcome::Completed), 1);
        assert_eq!(m.mos_counts(LegKind::Webrtc, Direction::Inbound), (2, 1));
    }

    #[test]
    fn no_media_no_estimate_and_counter_resets_do_not_go_negative() {
        let m = StatsMetrics::new(Default::default());
        let mut c = Collector::new(m.clone());
        let leg = |recv, lost| LegStats {
            no_media: None,
            leg: LegKind::Legacy,
            codec: Some("PCMU/8000".into()),
            ptime_ms: Some(20),
            rtt_ms: None,
            inbound: Some(InboundStats {
                packets_received: recv,
                packets_lost: lost,
                ..Default::default()
            }),
            outbound: Some(OutboundStats::default()),
        };
        let r = c.handle_poll(0, "c2", "demo", "active", vec![leg(0, 0)], true);
        assert!(r.legs[0].inbound.as_ref().unwrap().quality.is_none());
        assert!(r.legs[0].outbound.as_ref().unwrap().quality.is_none());
        c.handle_poll(1, "c2", "demo", "active", vec![leg(100, 2)], true);
        // A new SSRC restarts the counters.
        let r = c.handle_poll(2, "c2", "demo", "active", vec![leg(10, 0)], true);
        assert!(r.legs[0].inbound.as_ref().unwrap().quality.is_some());
        assert_eq!(m.received(LegKind::Legacy), (110, 2));
    }
}
