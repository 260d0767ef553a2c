//! The stats poller: a tokio task of its own, off the audio path. Every
//! `stats.interval_ms` it reads every call (all WebRTC legs' voice channels
//! in one batch; the legacy legs' latest counters), hands the figures to the [`Collector`] and queues the records
//! for the export. Ended calls get a last read and their end-of-call
//! record; SIGHUP reopens the export file.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use rtcgw_proto::stats::model::{CallStats, LegKind, LegStats, Record};

use super::collect::{self, Collector};
use super::export::Exporter;
use super::metrics::StatsMetrics;
use crate::media::{CallInfo, Calls, Ended, LegHandles, NO_MEDIA_AFTER, unix_ms};
use crate::rtc;

/// A getStats that has not answered by then is skipped for this poll.
const GETSTATS_TIMEOUT: Duration = Duration::from_secs(2);

/// The stats of every call: what the poller feeds and the HTTP API reads.
pub struct StatsService {
    collector: Mutex<Collector>,
    exporter: Option<Exporter>,
    /// WebRTC legs with no media 5 s after the answer: why, by call id
    /// (legacy legs say it in their own stats).
    no_media: Mutex<HashMap<String, String>>,
}

/// Reads one call's legs as they are now, the WebRTC leg through the
/// standard getStats: for the live API, which must not move the poller's
/// NetEq baseline and is asked for one call at a time.
pub async fn read_legs(legs: &LegHandles) -> Vec<LegStats> {
    let mut out = Vec::with_capacity(2);
    if let Some(pc) = &legs.webrtc
        && let Ok(report) =
            tokio::time::timeout(GETSTATS_TIMEOUT, pc.stats_of(collect::KINDS)).await
    {
        let leg = collect::webrtc_leg(&report);
        // A closed connection reports nothing: keep its last figures.
        if leg.inbound.is_some() || leg.outbound.is_some() {
            out.push(leg);
        }
    }
    out.extend(legacy_leg(legs));
    out
}

fn legacy_leg(legs: &LegHandles) -> Option<LegStats> {
    legs.legacy.as_ref()?.lock().expect("stats lock").clone()
}

/// Reads every call for the poller: all WebRTC legs in one batch
/// ([`rtc::media_stats`]: two thread hops in all instead of about eight
/// per call with getStats), NetEq's rates since the previous poll, and the
/// legacy legs' latest counters.
pub async fn read_all(items: Vec<(CallInfo, LegHandles)>) -> Vec<(CallInfo, Vec<LegStats>)> {
    let media = {
        let pcs: Vec<&rtc::PeerConnection> = items
            .iter()
            .filter_map(|(_, l)| l.webrtc.as_deref())
            .collect();
        tokio::time::timeout(GETSTATS_TIMEOUT, rtc::media_stats(&pcs, true))
            .await
            .inspect_err(|_| tracing::warn!("stats: the WebRTC legs did not answer in time"))
            .unwrap_or_default()
    };
    let mut media = media.into_iter();
    let mut out: Vec<_> = items
        .into_iter()
        .map(|(info, legs)| {
            let mut read = Vec::with_capacity(2);
            if legs.webrtc.is_some()
                && let Some(Some(m)) = media.next()
            {
                let leg = collect::webrtc_leg_media(&m, true);
                // A closed connection reports nothing: keep its last figures.
                if leg.inbound.is_some() || leg.outbound.is_some() {
                    read.push(leg);
                }
            }
            read.extend(legacy_leg(&legs));
            (info, read)
        })
        .collect();
    out.sort_by_key(|(info, _)| info.created_unix_ms);
    out
}

fn line(r: &Record) -> Option<String> {
    serde_json::to_string(r)
        .inspect_err(|e| tracing::warn!("stats record: {e}"))
        .ok()
}

impl StatsService {
    pub fn new(exporter: Option<Exporter>, metrics: StatsMetrics) -> Arc<Self> {
        Arc::new(Self {
            collector: Mutex::new(Collector::new(metrics)),
            exporter,
            no_media: Mutex::new(HashMap::new()),
        })
    }

    /// The no-media verdict of the call's WebRTC leg, into its record.
    fn with_verdict(&self, mut rec: CallStats) -> CallStats {
        if let Some(why) = self
            .no_media
            .lock()
            .expect("no_media lock")
            .get(&rec.call_id)
        {
            for l in rec.legs.iter_mut().filter(|l| l.leg == LegKind::Webrtc) {
                l.no_media = Some(why.clone());
            }
        }
        rec
    }

    /// Every call whose media has been up for [`NO_MEDIA_AFTER`] and whose
    /// WebRTC leg has received nothing gets a verdict: why, in one log line
    /// and in its stats records, until audio comes. `seen`: when each call
    /// was first seen with all its legs, and whether it is judged.
    pub async fn watch_no_media(
        &self,
        items: Vec<(CallInfo, LegHandles)>,
        seen: &mut HashMap<String, (std::time::Instant, bool)>,
    ) {
        let now = std::time::Instant::now();
        let live: HashSet<String> = items.iter().map(|(i, _)| i.id.0.clone()).collect();
        seen.retain(|id, _| live.contains(id));
        self.no_media
            .lock()
            .expect("no_media lock")
            .retain(|id, _| live.contains(id));
        for (info, legs) in items {
            // A bridge waiting for its callee has not been answered yet.
            let Some(pc) = legs
                .webrtc
                .filter(|_| info.target != crate::media::Target::Bridge || legs.legacy.is_some())
            else {
                continue;
            };
            let (since, judged) = seen.entry(info.id.0.clone()).or_insert((now, false));
            if *judged || now.duration_since(*since) < NO_MEDIA_AFTER {
                continue;
            }
            let Ok(report) =
                tokio::time::timeout(GETSTATS_TIMEOUT, pc.stats_of(collect::NO_MEDIA_KINDS)).await
            else {
                continue;
            };
            let mut verdicts = self.no_media.lock().expect("no_media lock");
            match collect::webrtc_no_media(&report) {
                None => {
                    *judged = true;
                    if verdicts.remove(&info.id.0).is_some() {
                        tracing::info!(call = %info.id, leg = "webrtc", "media arrived after all");
                    }
                }
                Some(why) => {
                    if !verdicts.contains_key(&info.id.0) {
                        tracing::warn!(
                            call = %info.id, leg = "webrtc", direction = "inbound", state = info.state.as_str(),
                            "no media {} s after the answer: {why}", NO_MEDIA_AFTER.as_secs()
                        );
                    }
                    verdicts.insert(info.id.0.clone(), why);
                }
            }
        }
    }

    /// The legs (kind and codec) last polled for a call.
    pub fn legs_seen(&self, call: &str) -> Vec<(LegKind, Option<String>)> {
        self.collector.lock().expect("collector lock").legs(call)
    }

    /// One poll of the given calls; returns how many records it made.
    pub async fn poll(&self, items: Vec<(CallInfo, LegHandles)>) -> usize {
        let read = read_all(items).await;
        let (now, n) = (unix_ms(), read.len());
        let mut lines = Vec::with_capacity(n);
        {
            let mut c = self.collector.lock().expect("collector lock");
            for (info, legs) in read {
                let rec = c.handle_poll(
                    now,
                    &info.id.0,
                    info.target.as_str(),
                    info.state.as_str(),
                    legs,
                    true,
                );
                if self.exporter.is_some() {
                    lines.extend(line(&Record::Stats(self.with_verdict(rec))));
                }
            }
        }
        if let Some(x) = &self.exporter {
            x.send(lines);
        }
        n
    }

    /// A call ended: a last read, then its final stats and end record.
    pub async fn end(&self, e: Ended) {
        let legs = read_all(vec![(e.info.clone(), e.legs.clone())])
            .await
            .pop()
            .map(|(_, legs)| legs)
            .unwrap_or_default();
        let (last, end) = self.collector.lock().expect("collector lock").handle_end(
            e.ended_unix_ms,
            &e.info.id.0,
            e.info.target.as_str(),
            e.info.created_unix_ms,
            (&e.reason.to_string(), e.reason.outcome()),
            (!legs.is_empty()).then_some(legs),
        );
        for l in &end.legs {
            let mos = |d: &Option<rtcgw_proto::stats::model::DirectionSummary>| {
                d.as_ref().and_then(|d| d.mos).map(|m| m.avg)
            };
            tracing::info!(
                call = %e.info.id, leg = l.leg.as_str(), codec = l.codec.as_deref().unwrap_or("?"),
                mos_in = ?mos(&l.inbound), mos_out = ?mos(&l.outbound),
                "call quality"
            );
        }
        if let Some(x) = &self.exporter {
            let mut lines: Vec<String> = last.map(Record::Stats).iter().filter_map(line).collect();
            lines.extend(line(&Record::CallEnd(end)));
            x.send(lines);
        }
    }

    /// A call's figures now, without moving the poller's baseline.
    pub async fn live(&self, info: &CallInfo, legs: &LegHandles) -> CallStats {
        let read = read_legs(legs).await;
        let rec = self.collector.lock().expect("collector lock").handle_poll(
            unix_ms(),
            &info.id.0,
            info.target.as_str(),
            info.state.as_str(),
            read,
            false,
        );
        self.with_verdict(rec)
    }
}

/// The poller task. `interval` zero: no periodic polls, end-of-call
/// records only.
pub async fn run(
    service: Arc<StatsService>,
    calls: Arc<Calls>,
    mut ended: mpsc::UnboundedReceiver<Ended>,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(if interval.is_zero() {
        Duration::from_secs(3600 * 24 * 365)
    } else {
        interval
    });
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: no call yet
    let mut watch = tokio::time::interval(Duration::from_secs(1));
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = HashMap::new();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .inspect_err(|e| tracing::warn!("no SIGHUP handler (stats export will not reopen): {e}"));
    loop {
        tokio::select! {
            _ = tick.tick(), if !interval.is_zero() => {
                let items = calls.poll_items();
                if !items.is_empty() {
                    service.poll(items).await;
                }
            }
            _ = watch.tick() => service.watch_no_media(calls.poll_items(), &mut seen).await,
            e = ended.recv() => match e {
                Some(e) => service.end(e).await,
                None => break,
            },
            Some(()) = async {
                match &mut hup {
                    Ok(h) => h.recv().await,
                    Err(_) => std::future::pending().await,
                }
            } => {
                if let Some(x) = &service.exporter {
                    x.reopen();
                }
            }
        }
    }
}
