//! The stats records rtcgw exports (JSON Lines, the HTTP API): one
//! [`CallStats`] per call per poll and one [`CallEnd`] per ended call. Field
//! names are camelCase like the W3C webrtc-stats they mostly come from. The
//! schema is docs/stats.schema.json; [`SCHEMA_VERSION`] changes with any
//! change that is not a new optional field.

use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

/// One line of the export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "camelCase")]
pub enum Record {
    Stats(CallStats),
    CallEnd(CallEnd),
}

/// A call's figures at one poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallStats {
    pub schema_version: u32,
    pub call_id: String,
    pub timestamp_unix_ms: u64,
    /// "demo" or "bridge".
    pub target: String,
    /// The WebRTC leg's connection state ("active" for legacy-only calls).
    pub state: String,
    pub legs: Vec<LegStats>,
}

pub use crate::sdp::LegKind;

/// The two directions of a leg, from rtcgw's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// What rtcgw receives on the leg.
    Inbound,
    /// What rtcgw sends on the leg, as the peer reports it (RTCP).
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// One leg of a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegStats {
    pub leg: LegKind,
    /// "name/clockrate", e.g. "opus/48000", "PCMU/8000".
    pub codec: Option<String>,
    /// Packet time in ms (what one RTP packet carries).
    pub ptime_ms: Option<u32>,
    /// Round-trip time from RTCP (WebRTC leg: RTCP, else ICE's STUN RTT).
    pub rtt_ms: Option<f64>,
    pub inbound: Option<InboundStats>,
    pub outbound: Option<OutboundStats>,
    /// Why the leg has received no media, when it has had none for 5 s
    /// after the answer; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_media: Option<String>,
}

/// What rtcgw receives on a leg: RTP counters and its jitter buffer
/// (libwebrtc's NetEq on both legs). Counters are cumulative over the call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundStats {
    pub packets_received: u64,
    pub bytes_received: u64,
    /// Expected minus received (RFC 3550 A.3); may be negative with
    /// duplicates.
    pub packets_lost: i64,
    /// Arrived too late or were flushed by the jitter buffer.
    pub packets_discarded: u64,
    /// Interarrival jitter (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// Sum over emitted samples of their jitter-buffer delay, seconds.
    pub jitter_buffer_delay_s: f64,
    /// Sum over emitted samples of the jitter buffer's target delay, seconds.
    pub jitter_buffer_target_delay_s: f64,
    pub jitter_buffer_emitted_count: u64,
    /// Mean jitter-buffer delay over the last poll interval, ms (from the
    /// two sums above); absent before any audio was played out.
    pub jitter_buffer_delay_ms: Option<f64>,
    pub total_samples_received: u64,
    pub concealed_samples: u64,
    pub silent_concealed_samples: u64,
    pub concealment_events: u64,
    pub inserted_samples_for_deceleration: u64,
    pub removed_samples_for_acceleration: u64,
    /// NetEq's own figures (legacy leg: libwebrtc's standard stats do not
    /// carry them for the WebRTC leg).
    pub neteq: Option<NetEqFigures>,
    pub quality: Option<Quality>,
}

/// NetEq figures beyond the standard stats: the rates of its operations
/// since the previous read and the sizes it aims for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetEqFigures {
    /// Fractions (0..1) of the output since the previous read.
    pub expand_rate: f64,
    pub speech_expand_rate: f64,
    pub accelerate_rate: f64,
    pub preemptive_expand_rate: f64,
    pub current_buffer_size_ms: u32,
    pub preferred_buffer_size_ms: u32,
    pub target_delay_ms: i32,
    pub packet_buffer_flushes: u64,
    pub decoding: DecodingCounts,
}

/// 10 ms playout calls by how NetEq produced them (the legacy getStats'
/// googDecodingNormal/PLC/CNG/PLCCNG/MutedOutput).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecodingCounts {
    pub calls: u64,
    pub normal: u64,
    pub plc: u64,
    pub codec_plc: u64,
    pub cng: u64,
    pub plc_cng: u64,
    pub muted_output: u64,
}

/// What rtcgw sends on a leg and how the peer says it arrives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundStats {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// From the peer's RTCP report block about our stream; absent until one
    /// arrives (or when the peer sends none).
    pub remote_packets_lost: Option<i64>,
    pub remote_fraction_lost: Option<f64>,
    pub remote_jitter_ms: Option<f64>,
    pub quality: Option<Quality>,
}

/// The E-model (ITU-T G.107) estimate over the last poll interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quality {
    pub r_factor: f64,
    pub mos: f64,
    /// Packet loss over the interval, percent.
    pub loss_pct: f64,
    /// Estimated mean one-way delay Ta, ms.
    pub one_way_delay_ms: f64,
}

/// The record written once a call has ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallEnd {
    pub schema_version: u32,
    pub call_id: String,
    pub target: String,
    pub started_unix_ms: u64,
    pub ended_unix_ms: u64,
    pub duration_s: f64,
    /// Why the call ended, as logged ("DELETE", "media timeout", a SIP
    /// reason...).
    pub disposition: String,
    /// The disposition's class, as counted in rtcgw_calls_total.
    pub outcome: Outcome,
    pub legs: Vec<LegSummary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Hung up by a party (BYE, DELETE).
    Completed,
    /// The caller or callee left before the call was up.
    Cancelled,
    /// Setup or media failed (ICE/DTLS failure, refused far leg, no route).
    Failed,
    /// No RTP within legacy.media_timeout_s.
    MediaTimeout,
    /// Ended by the gateway's shutdown.
    Shutdown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::MediaTimeout => "media_timeout",
            Self::Shutdown => "shutdown",
        }
    }
}

/// One leg over the whole call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegSummary {
    pub leg: LegKind,
    pub codec: Option<String>,
    pub inbound: Option<DirectionSummary>,
    pub outbound: Option<DirectionSummary>,
}

/// One direction of a leg over the whole call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectionSummary {
    /// Received (inbound) or sent (outbound).
    pub packets: u64,
    /// Inbound: as counted here; outbound: as the peer last reported.
    pub packets_lost: Option<i64>,
    pub concealed_samples: Option<u64>,
    /// Over the poll intervals that had an estimate.
    pub mos: Option<MinAvgMax>,
    pub r_factor: Option<MinAvgMax>,
    /// How many intervals had an estimate.
    pub intervals: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MinAvgMax {
    pub min: f64,
    pub avg: f64,
    pub max: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_their_kind_and_version_and_round_trip() {
        let r = Record::Stats(CallStats {
            schema_version: SCHEMA_VERSION,
            call_id: "c1".into(),
            timestamp_unix_ms: 1,
            target: "bridge".into(),
            state: "connected".into(),
            legs: vec![LegStats {
                no_media: None,
                leg: LegKind::Legacy,
                codec: Some("PCMU/8000".into()),
                ptime_ms: Some(20),
                rtt_ms: None,
                inbound: Some(InboundStats::default()),
                outbound: None,
            }],
        });
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["record"], "stats");
        assert_eq!(json["schemaVersion"], SCHEMA_VERSION);
        assert_eq!(json["legs"][0]["leg"], "legacy");
        assert_eq!(json["legs"][0]["inbound"]["packetsLost"], 0);
        assert_eq!(serde_json::from_value::<Record>(json).unwrap(), r);
    }

    /// Every key of `v`, recursively.
    fn keys(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    out.insert(k.clone());
                    keys(v, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_documented_schema_names_every_field_and_the_version() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../../docs/stats.schema.json")).unwrap();
        let mut documented = Default::default();
        keys(&schema, &mut documented);
        let q = Some(Quality {
            r_factor: 90.0,
            mos: 4.3,
            loss_pct: 1.0,
            one_way_delay_ms: 50.0,
        });
        let leg = LegStats {
            no_media: None,
            leg: LegKind::Legacy,
            codec: Some("PCMU/8000".into()),
            ptime_ms: Some(20),
            rtt_ms: Some(1.0),
            inbound: Some(InboundStats {
                neteq: Some(NetEqFigures::default()),
                quality: q,
                ..Default::default()
            }),
            outbound: Some(OutboundStats {
                quality: q,
                ..Default::default()
            }),
        };
        let m = MinAvgMax {
            min: 1.0,
            avg: 2.0,
            max: 3.0,
        };
        let dir = Some(DirectionSummary {
            mos: Some(m),
            r_factor: Some(m),
            ..Default::default()
        });
        let records = [
            Record::Stats(CallStats {
                schema_version: SCHEMA_VERSION,
                call_id: "c".into(),
                timestamp_unix_ms: 0,
                target: "bridge".into(),
                state: "connected".into(),
                legs: vec![leg],
            }),
            Record::CallEnd(CallEnd {
                schema_version: SCHEMA_VERSION,
                call_id: "c".into(),
                target: "bridge".into(),
                started_unix_ms: 0,
                ended_unix_ms: 1,
                duration_s: 0.001,
                disposition: "BYE".into(),
                outcome: Outcome::Completed,
                legs: vec![LegSummary {
                    leg: LegKind::Webrtc,
                    codec: None,
                    inbound: dir.clone(),
                    outbound: dir,
                }],
            }),
        ];
        let mut used = Default::default();
        for r in &records {
            keys(&serde_json::to_value(r).unwrap(), &mut used);
        }
        let missing: Vec<_> = used.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "docs/stats.schema.json lacks {missing:?}"
        );
        assert!(
            schema
                .to_string()
                .contains(&format!("\"schemaVersion\":{{\"const\":{SCHEMA_VERSION}}}")),
            "the schema pins schemaVersion to {SCHEMA_VERSION}"
        );
    }
}
