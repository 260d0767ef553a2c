//! The ng front end: rtpengine's control protocol, so that a stock
//! Kamailio with its `rtpengine` module uses rtcgw as its media relay.
//! Datagrams come from the driver (which owns the socket): access
//! control, the reply cache (a resent cookie is answered again, never run
//! twice), parsing; `ping` and `list` are answered here, offer/answer/delete
//! go to call control, and `query` and `delete` replies carry the call's
//! statistics in rtpengine's shape, read from the media side first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rtcgw_control::{ApiToken, CallControl, CallId, NgCallInfo, NgRequest};
use rtcgw_proto::ng::cache::{ReplyCache, Seen};
use rtcgw_proto::ng::{Bencode, Command, Delete, NgError, Reply, split_cookie};
use rtcgw_proto::sip::ua::IpNet;
use rtcgw_proto::stats::model::{CallStats, LegKind};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CommandLabel {
    command: &'static str,
    result: &'static str,
}

/// The ng front end's metrics. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct NgMetrics {
    requests: Family<CommandLabel, Counter>,
    dropped: Counter,
}

impl NgMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "rtcgw_ng_requests",
            "ng requests, by command and result (ok, error; repeated: answered from the cache)",
            self.requests.clone(),
        );
        r.register(
            "rtcgw_ng_dropped",
            "ng datagrams dropped without a reply (no cookie, source not allowed)",
            self.dropped.clone(),
        );
    }

    fn count(&self, command: &'static str, result: &'static str) {
        self.requests
            .get_or_create(&CommandLabel { command, result })
            .inc();
    }
}

/// What the driver must do for a datagram or a result.
#[derive(Debug)]
pub enum Action {
    /// Send this reply.
    Send(SocketAddr, Vec<u8>),
    /// Give this to call control.
    Control(ApiToken, Box<NgRequest>),
    /// Read this call's statistics, then hand them to
    /// [`Frontend::stats_read`].
    ReadStats(ApiToken, CallId),
}

/// What a request waits for.
#[derive(Debug)]
enum Then {
    /// Call control's reply.
    Reply,
    /// The statistics, for a query's reply.
    Query(NgCallInfo),
    /// The statistics, then call control's delete; its reply carries them.
    Delete(NgCallInfo, Delete),
}

#[derive(Debug)]
struct Pending {
    peer: SocketAddr,
    cookie: Vec<u8>,
    command: &'static str,
    then: Then,
    /// Statistics read for a delete, for its reply.
    stats: Vec<(&'static str, Bencode)>,
}

/// The ng front end's state: the cache and the requests in progress.
#[derive(Debug)]
pub struct Frontend {
    allowed: Vec<IpNet>,
    cache: ReplyCache,
    pending: HashMap<ApiToken, Pending>,
    metrics: NgMetrics,
}

impl Frontend {
    pub fn new(now: Instant, allowed: Vec<IpNet>, metrics: NgMetrics) -> Self {
        Self {
            allowed,
            cache: ReplyCache::new(now),
            pending: HashMap::new(),
            metrics,
        }
    }

    /// A datagram from `peer`. `token` is the one the request gets if it
    /// needs call control or statistics.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        datagram: &[u8],
        control: &CallControl,
        token: ApiToken,
    ) -> Option<Action> {
        if !self.allowed.iter().any(|n| n.contains(peer.ip())) {
            tracing::warn!(%peer, "ng request from a source not allowed: dropped");
            self.metrics.dropped.inc();
            return None;
        }
        let Some((cookie, payload)) = split_cookie(datagram) else {
            tracing::warn!(%peer, "ng datagram without a cookie: dropped");
            self.metrics.dropped.inc();
            return None;
        };
        match self.cache.check(now, cookie) {
            Seen::Answered(reply) => {
                self.metrics.count("repeated", "ok");
                return Some(Action::Send(peer, reply.to_vec()));
            }
            Seen::InProgress => return None,
            Seen::New => {}
        }
        let command = match Command::parse(payload) {
            Ok(c) => c,
            Err(e) => {
                let word = match &e {
                    NgError::UnknownCommand(_) => "unknown",
                    _ => "malformed",
                };
                tracing::warn!(%peer, "ng request refused: {e}");
                return self.reply_now(now, peer, cookie, word, Reply::error(e.to_string()));
            }
        };
        let name = command.name();
        let wait = |then| Pending {
            peer,
            cookie: cookie.to_vec(),
            command: name,
            then,
            stats: Vec::new(),
        };
        match command {
            Command::Ping => self.reply_now(now, peer, cookie, name, Reply::pong()),
            Command::List { limit } => {
                let ids = control.ng_call_ids(limit);
                let reply = Reply::ok().with("calls", Bencode::strings(ids));
                self.reply_now(now, peer, cookie, name, reply)
            }
            Command::Query { call_id, .. } => match control.ng_call(&call_id) {
                None => self.reply_now(now, peer, cookie, name, Reply::error("Unknown call-id")),
                Some(info) => {
                    let call = info.call.clone();
                    self.pending.insert(token, wait(Then::Query(info)));
                    Some(Action::ReadStats(token, call))
                }
            },
            Command::Delete(d) => match control.ng_call(&d.call_id) {
                // Unknown calls are call control's to answer (warning or error).
                None => {
                    self.pending.insert(token, wait(Then::Reply));
                    Some(Action::Control(token, Box::new(NgRequest::Delete(d))))
                }
                Some(info) => {
                    let call = info.call.clone();
                    self.pending.insert(token, wait(Then::Delete(info, d)));
                    Some(Action::ReadStats(token, call))
                }
            },
            Command::Offer(oa) => {
                self.pending.insert(token, wait(Then::Reply));
                Some(Action::Control(token, Box::new(NgRequest::Offer(oa))))
            }
            Command::Answer(oa) => {
                self.pending.insert(token, wait(Then::Reply));
                Some(Action::Control(token, Box::new(NgRequest::Answer(oa))))
            }
            _ => self.reply_now(
                now,
                peer,
                cookie,
                name,
                Reply::error("Unrecognized command"),
            ),
        }
    }

    /// The statistics a query or a delete waited for (`None`: the call is
    /// gone meanwhile).
    pub fn stats_read(
        &mut self,
        now: Instant,
        token: ApiToken,
        stats: Option<(u64, CallStats)>,
    ) -> Option<Action> {
        let p = self.pending.get_mut(&token)?;
        let then = std::mem::replace(&mut p.then, Then::Reply);
        match then {
            Then::Query(info) => {
                let p = self.pending.remove(&token).expect("present");
                let reply = match &stats {
                    Some((created, s)) => rtpengine_stats(&info, *created, s)
                        .into_iter()
                        .fold(Reply::ok(), |r, (k, v)| r.with(k, v)),
                    None => Reply::error("Unknown call-id"),
                };
                self.finish(now, p, reply)
            }
            Then::Delete(info, d) => {
                if let Some((created, s)) = &stats {
                    p.stats = rtpengine_stats(&info, *created, s);
                }
                Some(Action::Control(token, Box::new(NgRequest::Delete(d))))
            }
            Then::Reply => None,
        }
    }

    /// Call control's reply to request `token`.
    pub fn handle_reply(&mut self, now: Instant, token: ApiToken, reply: Reply) -> Option<Action> {
        let mut p = self.pending.remove(&token)?;
        let stats = std::mem::take(&mut p.stats);
        let reply = if reply.is_error() {
            reply
        } else {
            stats.into_iter().fold(reply, |r, (k, v)| r.with(k, v))
        };
        self.finish(now, p, reply)
    }

    fn finish(&mut self, now: Instant, p: Pending, reply: Reply) -> Option<Action> {
        self.reply_now(now, p.peer, &p.cookie, p.command, reply)
    }

    fn reply_now(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        cookie: &[u8],
        command: &'static str,
        reply: Reply,
    ) -> Option<Action> {
        self.metrics
            .count(command, if reply.is_error() { "error" } else { "ok" });
        let bytes = reply.encode(cookie);
        self.cache.answered(now, cookie, &bytes);
        Some(Action::Send(peer, bytes))
    }
}

/// A call's statistics as rtpengine's `query` and `delete` replies give
/// them: `created`, `last signal`, per tag (side) its media and stream
/// with packets, bytes and errors, the MOS per SSRC (x10, as rtpengine
/// keeps it), and `totals` of what rtcgw received. The offerer's side is
/// the offerer's leg; rtcgw does not count RTCP, so those totals are 0;
/// the SSRC keys are rtcgw's own numbers for the two sides (1: offerer,
/// 2: answerer), tying `tags` to `SSRC` as Kamailio's MOS variables need.
pub fn rtpengine_stats(
    info: &NgCallInfo,
    created_unix_ms: u64,
    s: &CallStats,
) -> Vec<(&'static str, Bencode)> {
    let created = Bencode::from(created_unix_ms / 1000);
    let answerer_leg = match info.offerer_leg {
        LegKind::Webrtc => LegKind::Legacy,
        LegKind::Legacy => LegKind::Webrtc,
    };
    let sides = [
        (Some(info.offerer.clone()), info.offerer_leg, 1u64),
        (info.answerer.clone(), answerer_leg, 2u64),
    ];
    let (mut packets, mut bytes) = (0u64, 0u64);
    let mut tags = Bencode::Dict(Vec::new());
    let mut ssrcs = Bencode::Dict(Vec::new());
    for (tag, kind, ssrc) in sides {
        let leg = s.legs.iter().find(|l| l.leg == kind);
        let inbound = leg.and_then(|l| l.inbound.as_ref());
        let (p, b) = inbound.map_or((0, 0), |i| (i.packets_received, i.bytes_received));
        packets += p;
        bytes += b;
        let Some(tag) = tag else { continue };
        let protocol = match kind {
            LegKind::Webrtc => "UDP/TLS/RTP/SAVPF",
            LegKind::Legacy => "RTP/AVP",
        };
        let stream = Bencode::dict([
            ("SSRC", Bencode::from(ssrc)),
            (
                "stats",
                Bencode::dict([
                    ("packets", Bencode::from(p)),
                    ("bytes", Bencode::from(b)),
                    ("errors", Bencode::Int(0)),
                ]),
            ),
        ]);
        let media = Bencode::dict([
            ("index", Bencode::Int(1)),
            ("type", "audio".into()),
            ("protocol", protocol.into()),
            (
                "codec",
                leg.and_then(|l| l.codec.clone()).unwrap_or_default().into(),
            ),
            ("streams", Bencode::List(vec![stream])),
        ]);
        let mut side = Bencode::dict([
            ("tag", Bencode::from(tag.clone())),
            ("created", created.clone()),
            ("medias", Bencode::List(vec![media])),
        ]);
        let label = if ssrc == 1 {
            &info.label
        } else {
            &info.answerer_label
        };
        if let Some(l) = label {
            side.insert("label", l.clone().into());
        }
        tags.insert(&tag, side);
        if let Some(q) = inbound.and_then(|i| i.quality) {
            let mos = Bencode::dict([
                ("MOS", Bencode::from((q.mos * 10.0).round() as i64)),
                ("reported at", Bencode::from(s.timestamp_unix_ms / 1000)),
                ("packet loss", Bencode::from(q.loss_pct.round() as i64)),
                ("jitter", Bencode::Int(0)),
                ("round-trip time", Bencode::Int(0)),
            ]);
            ssrcs.insert(
                &ssrc.to_string(),
                Bencode::dict([
                    ("average MOS", mos.clone()),
                    ("lowest MOS", mos.clone()),
                    ("highest MOS", mos),
                ]),
            );
        }
    }
    let totals = |p: u64, b: u64| {
        Bencode::dict([
            ("packets", Bencode::from(p)),
            ("bytes", Bencode::from(b)),
            ("errors", Bencode::Int(0)),
        ])
    };
    vec![
        ("created", created),
        ("last signal", Bencode::from(s.timestamp_unix_ms / 1000)),
        ("SSRC", ssrcs),
        ("tags", tags),
        (
            "totals",
            Bencode::dict([("RTP", totals(packets, bytes)), ("RTCP", totals(0, 0))]),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtcgw_proto::stats::model::{InboundStats, LegStats, Quality};

    #[test]
    fn stats_take_rtpengines_shape() {
        let leg = |kind, packets| LegStats {
            no_media: None,
            leg: kind,
            codec: Some("opus/48000".into()),
            ptime_ms: Some(20),
            rtt_ms: None,
            inbound: Some(InboundStats {
                packets_received: packets,
                bytes_received: packets * 100,
                quality: Some(Quality {
                    r_factor: 90.0,
                    mos: 4.31,
                    loss_pct: 1.2,
                    one_way_delay_ms: 50.0,
                }),
                ..Default::default()
            }),
            outbound: None,
        };
        let s = CallStats {
            schema_version: 1,
            call_id: "c1".into(),
            timestamp_unix_ms: 10_000,
            target: "bridge".into(),
            state: "connected".into(),
            legs: vec![leg(LegKind::Webrtc, 50), leg(LegKind::Legacy, 40)],
        };
        let info = NgCallInfo {
            call: CallId("c1".into()),
            offerer: "alice".into(),
            answerer: Some("bob".into()),
            label: Some("A".into()),
            answerer_label: Some("B".into()),
            offerer_leg: LegKind::Webrtc,
        };
        let d = Bencode::Dict(
            rtpengine_stats(&info, 4_000, &s)
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        );
        let rtp = d.get("totals").and_then(|t| t.get("RTP")).unwrap();
        assert_eq!(rtp.get("packets").and_then(Bencode::as_int), Some(90));
        assert_eq!(rtp.get("bytes").and_then(Bencode::as_int), Some(9000));
        assert_eq!(d.get("created").and_then(Bencode::as_int), Some(4));
        let alice = d.get("tags").and_then(|t| t.get("alice")).unwrap();
        assert_eq!(
            alice.get("label").and_then(Bencode::as_text).as_deref(),
            Some("A")
        );
        let bob = d.get("tags").and_then(|t| t.get("bob")).unwrap();
        assert_eq!(
            bob.get("label").and_then(Bencode::as_text).as_deref(),
            Some("B")
        );
        let Some(Bencode::List(medias)) = alice.get("medias") else {
            panic!("medias")
        };
        let Some(Bencode::List(streams)) = medias[0].get("streams") else {
            panic!("streams")
        };
        assert_eq!(streams[0].get("SSRC").and_then(Bencode::as_int), Some(1));
        let mos = d
            .get("SSRC")
            .and_then(|s| s.get("1"))
            .and_then(|s| s.get("average MOS"))
            .and_then(|m| m.get("MOS"))
            .and_then(Bencode::as_int);
        assert_eq!(mos, Some(43), "x10, as rtpengine keeps it");
    }
}
