//! `rtcgw-bench stats`: what polling costs. N calls shaped like bridged
//! calls (a libwebrtc PeerConnection connected over loopback to a peer in
//! the same process, plus a legacy leg's stats handle) are polled by the
//! gateway's own [`StatsService`] (all calls' voice channels read in one
//! batch, the collector, JSON serialisation, the export writer thread writing a file)
//! at the given interval. The process's CPU time is measured in phases with
//! and without polling, alternating, so the difference is the polling cost.
//! By default the connections carry no audio (`a=inactive`): 400 Opus
//! encoders and NetEqs in one process would need several cores and bury a
//! 1% difference in codec noise. `--media sendrecv` runs them with audio
//! (for small call counts) to compare the report sizes and costs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use rtcgw::media::{CallId, CallInfo, CallState, LegHandles, Legs, Target as CallTarget};
use rtcgw::rtc::{
    CallSettings, OpusSettings, PeerConnection, RtcError, Runtime, RuntimeSettings, WebrtcLogLevel,
};
use rtcgw::stats::export::{Exporter, Target};
use rtcgw::stats::metrics::StatsMetrics;
use rtcgw::stats::poller::{self, StatsService};
use rtcgw_proto::stats::model::{InboundStats, LegKind, LegStats, OutboundStats};

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error(transparent)]
    Rtc(#[from] RtcError),
    #[error(transparent)]
    Export(#[from] rtcgw::stats::export::ExportError),
    #[error("reading /proc/self/stat: {0}")]
    Proc(std::io::Error),
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub calls: usize,
    pub interval: Duration,
    /// Length of each measured phase.
    pub phase: Duration,
    /// Off/on phase pairs.
    pub rounds: u32,
    /// Where the export goes (a file, as in production).
    pub export: PathBuf,
    /// Audio flows (sendrecv) or not (inactive).
    pub audio: bool,
}

/// The process's CPU time (all threads, user + system), in seconds.
fn cpu_seconds() -> Result<f64, BenchError> {
    const CLK_TCK: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(BenchError::Proc)?;
    // utime and stime are fields 14 and 15, counted after the "(comm)".
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    Ok((f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / CLK_TCK)
}

struct Measured<T> {
    out: T,
    wall_ms: f64,
    /// CPU of the whole process, and of rtcgw's own threads ([`cpu_ns`]).
    cpu_ms: f64,
    ours_ms: f64,
}

/// Runs one poll and measures its CPU: the quarter interval holding the
/// poll against an equal quarter later in the same interval without one.
async fn measured<T>(
    interval: Duration,
    poll: impl std::future::Future<Output = T>,
) -> Measured<T> {
    let window = interval / 4;
    let (p0, c0) = (Instant::now(), cpu_ns());
    let out = poll.await;
    let wall_ms = p0.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep_until((p0 + window).into()).await;
    let c1 = cpu_ns();
    tokio::time::sleep_until((p0 + 2 * window).into()).await;
    let c2 = cpu_ns();
    tokio::time::sleep_until((p0 + 3 * window).into()).await;
    let c3 = cpu_ns();
    let ms = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e6;
    Measured {
        out,
        wall_ms,
        cpu_ms: ms(c0.0, c1.0) - ms(c2.0, c3.0),
        ours_ms: ms(c0.1, c1.1) - ms(c2.1, c3.1),
    }
}

/// Every call's legs through the standard getStats, all in flight at once.
async fn getstats_poll(items: &[(CallInfo, LegHandles)]) -> usize {
    let mut set = tokio::task::JoinSet::new();
    for (_, legs) in items {
        let legs = legs.clone();
        set.spawn(async move { poller::read_legs(&legs).await.len() });
    }
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        n += r.unwrap_or(0);
    }
    n
}

/// CPU time in ns from the threads' scheduler statistics
/// (/proc/self/task/*/schedstat, nanosecond resolution): (whole process,
/// rtcgw's own Rust side: the main thread that runs the poll here, the tokio
/// workers that convert getStats reports, the export writer).
fn cpu_ns() -> (u64, u64) {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    let pid = std::process::id().to_string();
    let (mut all, mut ours) = (0, 0);
    for t in dir.flatten() {
        let Some(ns) = std::fs::read_to_string(t.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        all += ns;
        if t.file_name().to_str() == Some(pid.as_str())
            || comm.starts_with("tokio-rt-worker")
            || comm.starts_with("stats-export")
        {
            ours += ns;
        }
    }
    (all, ours)
}

/// A legacy leg's figures as a bridged call's media task leaves them.
fn legacy_leg() -> LegStats {
    LegStats {
        no_media: None,
        leg: LegKind::Legacy,
        codec: Some("PCMU/8000".into()),
        ptime_ms: Some(20),
        rtt_ms: Some(1.0),
        inbound: Some(InboundStats {
            packets_received: 500,
            packets_lost: 2,
            jitter_buffer_emitted_count: 80_000,
            jitter_buffer_delay_s: 3_200.0,
            ..Default::default()
        }),
        outbound: Some(OutboundStats {
            packets_sent: 500,
            ..Default::default()
        }),
    }
}

async fn connect(
    rt: &Runtime,
    audio: bool,
) -> Result<(Arc<PeerConnection>, Arc<PeerConnection>), RtcError> {
    let s = CallSettings {
        jitter_buffer_max_packets: 200,
        jitter_buffer_fast_accelerate: false,
        jitter_buffer_min_delay_ms: 0,
        ice_gathering_timeout_ms: 2000,
    };
    let (a, _) = rt.create_peer_connection(&s)?;
    let (b, _) = rt.create_peer_connection(&s)?;
    let mut offer = a.offer().await?;
    if !audio {
        offer = offer.replace("a=sendrecv", "a=inactive");
    }
    let answer = b.answer(&offer).await?;
    a.apply_answer(&answer).await?;
    Ok((Arc::new(a), Arc::new(b)))
}

/// Runs the benchmark; returns a Markdown report.
pub async fn run(o: BenchOptions) -> Result<String, BenchError> {
    let rt = Runtime::new(&RuntimeSettings {
        addresses: vec!["127.0.0.1".parse().expect("address")],
        port_min: 40000,
        port_max: 49999,
        task_queue_threads: 2,
        opus: OpusSettings::default(),
        log_level: WebrtcLogLevel::None,
        load: Default::default(),
    })?;
    let t0 = Instant::now();
    let mut pairs = Vec::with_capacity(o.calls);
    for chunk in (0..o.calls).collect::<Vec<_>>().chunks(20) {
        let mut set = tokio::task::JoinSet::new();
        for _ in chunk {
            let rt = rt.clone();
            let audio = o.audio;
            set.spawn(async move { connect(&rt, audio).await });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(p) = r {
                pairs.push(p?);
            }
        }
    }
    tracing::info!(
        calls = pairs.len(),
        secs = t0.elapsed().as_secs_f64(),
        "connected"
    );
    tokio::time::sleep(Duration::from_secs(3)).await; // ICE/DTLS settle
    let items: Vec<(CallInfo, LegHandles)> = pairs
        .iter()
        .enumerate()
        .map(|(i, (_, b))| {
            (
                CallInfo {
                    id: CallId(format!("bench-{i}")),
                    target: CallTarget::Bridge,
                    leg: Legs::Bridge,
                    created_unix_ms: unix_ms(),
                    codec: Some("opus/48000/2".into()),
                    state: CallState::Connected,
                    recording: String::new(),
                    digits: String::new(),
                },
                LegHandles {
                    webrtc: Some(b.clone()),
                    legacy: Some(Arc::new(Mutex::new(Some(legacy_leg())))),
                },
            )
        })
        .collect();
    let kinds = match pairs.first() {
        Some((_, b)) => {
            let report = b.stats().await;
            let mut k: Vec<&str> = report.iter().map(|e| e.kind.as_str()).collect();
            k.sort();
            k.dedup();
            format!("{} entries per call ({})", report.len(), k.join(", "))
        }
        None => String::new(),
    };
    let exporter = Exporter::spawn(
        Target::File {
            path: o.export.clone(),
            rotate_bytes: 0,
            keep: 1,
        },
        Counter::default(),
    )?;
    let service = StatsService::new(Some(exporter), StatsMetrics::new(Default::default()));

    let mut rows = Vec::new();
    let (mut off_sum, mut on_sum) = (0.0, 0.0);
    let mut poll_ms: Vec<f64> = Vec::new();
    let mut poll_cpu_ms: Vec<f64> = Vec::new();
    let mut ours_cpu_ms: Vec<f64> = Vec::new();
    for round in 0..o.rounds {
        for polling in [false, true] {
            let (c0, w0) = (cpu_seconds()?, Instant::now());
            let end = w0 + o.phase;
            let mut tick = tokio::time::interval(o.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut records = 0;
            loop {
                let now = tokio::time::Instant::now().into_std();
                if now >= end {
                    break;
                }
                if polling {
                    tokio::select! {
                        _ = tick.tick() => {
                            let m = measured(o.interval, service.poll(items.clone())).await;
                            records += m.out;
                            poll_ms.push(m.wall_ms);
                            poll_cpu_ms.push(m.cpu_ms);
                            ours_cpu_ms.push(m.ours_ms);
                        }
                        _ = tokio::time::sleep_until(end.into()) => {}
                    }
                } else {
                    tokio::time::sleep_until(end.into()).await;
                }
            }
            let pct = 100.0 * (cpu_seconds()? - c0) / w0.elapsed().as_secs_f64();
            if polling {
                on_sum += pct;
            } else {
                off_sum += pct;
            }
            rows.push(format!(
                "| {} | {} | {records} | {pct:.2} |",
                round + 1,
                if polling { "on" } else { "off" },
            ));
        }
    }
    // The same calls read the standard way, one getStats per call, all in
    // flight at once (what the poller did before the batch): the reference
    // the batch is measured against, in the same run.
    let mut getstats_cpu_ms = Vec::new();
    let mut tick = tokio::time::interval(o.interval);
    for _ in 0..o.phase.as_secs().max(2) {
        tick.tick().await;
        getstats_cpu_ms.push(measured(o.interval, getstats_poll(&items)).await.cpu_ms);
    }
    let getstats = getstats_cpu_ms.iter().sum::<f64>() / getstats_cpu_ms.len().max(1) as f64;
    poll_ms.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        poll_ms
            .get(((poll_ms.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let per_poll = poll_cpu_ms.iter().sum::<f64>() / poll_cpu_ms.len().max(1) as f64;
    let ours = ours_cpu_ms.iter().sum::<f64>() / ours_cpu_ms.len().max(1) as f64;
    let median_poll = {
        let mut v = poll_cpu_ms.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let n = f64::from(o.rounds.max(1));
    let (off, on) = (off_sum / n, on_sum / n);
    let bytes = std::fs::metadata(&o.export).map_or(0, |m| m.len());
    let mut out = String::new();
    out.push_str(&format!(
        "{} calls (each: a connected libwebrtc PeerConnection, audio {}, + a legacy leg's \
         stats), polled every {} ms, {} s phases. A standard getStats report would have \
         {kinds}.\n\n",
        pairs.len(),
        if o.audio { "flowing" } else { "inactive" },
        o.interval.as_millis(),
        o.phase.as_secs()
    ));
    out.push_str(
        "| round | polling | records | process CPU, % of one core |\n| --- | --- | --- | --- |\n",
    );
    for r in &rows {
        out.push_str(r);
        out.push('\n');
    }
    out.push_str(&format!(
        "\nPolling cost, within each interval: **{:.2}% of one core** ({per_poll:.1} ms of CPU \
         per poll of {} calls, {:.0} us per call: CPU in the quarter interval holding the poll \
         minus CPU in a later quarter without one, mean of {} polls).\n",
        100.0 * per_poll / o.interval.as_secs_f64() / 1000.0,
        pairs.len(),
        1000.0 * per_poll / pairs.len().max(1) as f64,
        poll_cpu_ms.len()
    ));
    out.push_str(&format!(
        "Median poll: {median_poll:.1} ms of CPU ({:.2}% of one core). Of the mean, rtcgw's own \
         side (collector, JSON, export thread) is {ours:.1} ms ({:.2}% of one core); the rest \
         is libwebrtc's, reading the voice channels on its signaling and worker threads.\n",
        100.0 * median_poll / o.interval.as_secs_f64() / 1000.0,
        100.0 * ours / o.interval.as_secs_f64() / 1000.0,
    ));
    out.push_str(&format!(
        "Reference, same run: reading the same calls with the standard getStats (one per call, \
         all in flight at once) costs **{:.2}% of one core** ({getstats:.1} ms of CPU per poll, \
         mean of {}): the batch costs {:.2} of that.\n",
        100.0 * getstats / o.interval.as_secs_f64() / 1000.0,
        getstats_cpu_ms.len(),
        per_poll / getstats.max(1e-9),
    ));
    out.push_str(&format!(
        "\nPolling cost, phases: {:.2}% of one core (mean on {on:.2}% - mean off {off:.2}%). \
         One poll of all calls (the batch read, collector, export queue): \
         median {:.1} ms, p95 {:.1} ms, max {:.1} ms wall time. Export written: {} bytes.\n",
        on - off,
        pick(0.5),
        pick(0.95),
        pick(1.0),
        bytes
    ));
    for (a, b) in pairs {
        tokio::task::spawn_blocking(move || {
            a.close();
            b.close();
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(out)
}
