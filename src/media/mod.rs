//! Calls: the registry of active calls and the demo target (play a clip or a
//! tone to the WebRTC peer, record what it sends).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::Config;
use crate::media::ports::PortPool;

mod bridge;
mod legacy;
use crate::media::{Clip, FrameSink, FrameSource, Recorder, Tone};
use crate::rtc::{CallSettings, PcEvent, PeerConnection, RtcError, RtcStats, Runtime};
use rtcgw_proto::sdp::{self, OfferError};

/// Opaque call identifier, unique in the process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CallId(pub String);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a call could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    #[error(transparent)]
    Offer(#[from] OfferError),
    #[error(transparent)]
    Rtc(#[from] RtcError),
    #[error("at capacity: {0} calls")]
    Capacity(usize),
    #[error("no such call")]
    NoSuchCall,
    #[error("shutting down: no new calls")]
    Draining,
    #[error(transparent)]
    Legacy(#[from] rtcgw_proto::sdp::legacy::LegacySdpError),
    #[error("legacy leg: {0}")]
    Media(String),
}

/// What the API shows of a call.
#[derive(Debug, Clone, Serialize)]
pub struct CallInfo {
    pub id: CallId,
    pub target: &'static str,
    /// "webrtc" or "legacy" (plain RTP).
    pub leg: &'static str,
    pub created_unix_ms: u64,
    pub codec: Option<String>,
    pub state: String,
    pub recording: String,
    /// RFC 4733 digits received, in order.
    pub digits: String,
}

/// A legacy leg's latest statistics, refreshed each second by its media
/// task; None until the first refresh.
pub type LegacyStats = Arc<Mutex<Option<rtcgw_proto::stats::model::LegStats>>>;

/// The media side of a call.
enum Leg {
    Webrtc(Arc<PeerConnection>),
    Legacy(LegacyStats),
    /// A bridge once both legs are up.
    Bridge(Arc<PeerConnection>, LegacyStats),
}

/// What the stats poller reads a call's figures from.
#[derive(Clone, Default)]
pub struct LegHandles {
    pub webrtc: Option<Arc<PeerConnection>>,
    pub legacy: Option<LegacyStats>,
}

impl Leg {
    fn handles(&self) -> LegHandles {
        match self {
            Leg::Webrtc(pc) => LegHandles {
                webrtc: Some(pc.clone()),
                legacy: None,
            },
            Leg::Legacy(st) => LegHandles {
                webrtc: None,
                legacy: Some(st.clone()),
            },
            Leg::Bridge(pc, st) => LegHandles {
                webrtc: Some(pc.clone()),
                legacy: Some(st.clone()),
            },
        }
    }
}

/// A call that has ended, for the stats poller's end-of-call record.
pub struct Ended {
    pub info: CallInfo,
    pub reason: String,
    pub ended_unix_ms: u64,
    pub legs: LegHandles,
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

struct Active {
    info: Arc<Mutex<CallInfo>>,
    leg: Leg,
    stop: Option<oneshot::Sender<()>>,
    /// The legacy leg's media task, for mid-call changes (re-INVITE, DTMF).
    legacy: Option<legacy::LegacyHandle>,
}

/// Every call of the gateway.
pub struct Calls {
    runtime: Runtime,
    config: Config,
    clip: Option<Clip>,
    active: Mutex<HashMap<CallId, Active>>,
    next: AtomicU64,
    /// Calls refused, by reason, for metrics.
    pub refused: Mutex<HashMap<&'static str, u64>>,
    pub ended: AtomicU64,
    ended_tx: broadcast::Sender<CallId>,
    ports: Arc<PortPool>,
    pending: bridge::Pending,
    draining: std::sync::atomic::AtomicBool,
    /// RFC 4733 digits received on legacy legs.
    pub dtmf_digits: AtomicU64,
    /// RTP/RTCP datagrams dropped on legacy legs, by reason.
    pub rtp_dropped: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// 10 ms frames of the legacy (and bridged) media tasks, and how many
    /// were late.
    pub media_frames: MediaFrameCounters,
    /// Where ended calls are reported for their end-of-call stats record.
    ended_feed: Mutex<Option<mpsc::UnboundedSender<Ended>>>,
}

/// How punctually the media tasks kept the 10 ms clock. A task that wakes
/// once for several ticks handled every tick after the first late (caught
/// up in a burst, or skipped past the catch-up limit): those are the late
/// frames of the bridged-call benchmark (BENCHMARKS.md).
#[derive(Debug, Default)]
pub struct MediaFrameCounters {
    /// Ticks due, summed over media tasks.
    pub frames: AtomicU64,
    /// Of those, ticks handled one tick or more after they were due.
    pub late: AtomicU64,
}

impl MediaFrameCounters {
    /// One wake-up of a media task that found `due` ticks since its last.
    pub fn count(&self, due: u64) {
        self.frames.fetch_add(due, Ordering::Relaxed);
        self.late
            .fetch_add(due.saturating_sub(1), Ordering::Relaxed);
    }
}

impl Calls {
    pub fn new(runtime: Runtime, config: Config, clip: Option<Clip>) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            clip,
            active: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            refused: Mutex::new(HashMap::new()),
            ended: AtomicU64::new(0),
            ended_tx: broadcast::channel(1024).0,
            ports: PortPool::new(config.legacy.port_min, config.legacy.port_max),
            config,
            dtmf_digits: AtomicU64::new(0),
            pending: Default::default(),
            draining: Default::default(),
            rtp_dropped: Mutex::new(Default::default()),
            media_frames: Default::default(),
            ended_feed: Mutex::new(None),
        })
    }

    /// The audio clock's own counters (ticks, stalls it skipped past).
    pub fn clock_counters(&self) -> crate::rtc::RuntimeCounters {
        self.runtime.counters()
    }

    pub fn refuse(&self, reason: &'static str) {
        *self
            .refused
            .lock()
            .expect("refused lock")
            .entry(reason)
            .or_default() += 1;
    }

    fn settings(&self) -> CallSettings {
        let w = &self.config.webrtc;
        CallSettings {
            jitter_buffer_max_packets: w.jitter_buffer_max_packets,
            jitter_buffer_fast_accelerate: w.jitter_buffer_fast_accelerate,
            jitter_buffer_min_delay_ms: w.jitter_buffer_min_delay_ms,
            ice_gathering_timeout_ms: w.ice_gathering_timeout_ms,
        }
    }

    pub fn len(&self) -> usize {
        self.active.lock().expect("calls lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Answers a WebRTC offer with a demo-target call; returns its id and
    /// the SDP answer.
    pub async fn create_demo(self: &Arc<Self>, offer: &str) -> Result<(CallId, String), CallError> {
        sdp::check_webrtc_offer(offer)?;
        let (id, pc, events) = self.new_call()?;
        let answer = sdp_or_close(&pc, pc.answer(offer)).await?;
        self.launch(id.clone(), pc, events, &answer);
        Ok((id, answer))
    }

    /// A demo-target call where rtcgw makes the WebRTC offer (SIP late
    /// offer); [`Calls::apply_answer`] completes it.
    pub async fn create_demo_offer(self: &Arc<Self>) -> Result<(CallId, String), CallError> {
        let (id, pc, events) = self.new_call()?;
        let offer = sdp_or_close(&pc, pc.offer()).await?;
        self.launch(id.clone(), pc, events, &offer);
        Ok((id, offer))
    }

    pub async fn apply_answer(&self, id: &CallId, answer: &str) -> Result<(), CallError> {
        let pc = self
            .active
            .lock()
            .expect("calls lock")
            .get(id)
            .and_then(|a| match &a.leg {
                Leg::Webrtc(pc) | Leg::Bridge(pc, _) => Some(pc.clone()),
                Leg::Legacy(_) => None,
            })
            .ok_or(CallError::NoSuchCall)?;
        pc.apply_answer(answer).await.map_err(CallError::from)
    }

    pub(crate) fn new_call(
        &self,
    ) -> Result<(CallId, Arc<PeerConnection>, mpsc::Receiver<PcEvent>), CallError> {
        let id = self.new_id()?;
        let s = self.settings();
        let o = &self.config.webrtc.opus;
        tracing::info!(
            call = %id,
            jitter_buffer_max_packets = s.jitter_buffer_max_packets,
            jitter_buffer_fast_accelerate = s.jitter_buffer_fast_accelerate,
            jitter_buffer_min_delay_ms = s.jitter_buffer_min_delay_ms,
            opus_bitrate_bps = o.bitrate_bps,
            opus_complexity = ?o.complexity,
            opus_fec = o.fec,
            opus_dtx = o.dtx,
            opus_ptime_ms = o.ptime_ms,
            "call starting"
        );
        let (pc, events) = self.runtime.create_peer_connection(&s)?;
        Ok((id, Arc::new(pc), events))
    }

    /// Stops taking new calls (graceful shutdown); calls in progress go on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// A fresh call id, once capacity allows another call.
    fn new_id(&self) -> Result<CallId, CallError> {
        if self.is_draining() {
            return Err(CallError::Draining);
        }
        if self.len() >= self.config.media.max_calls {
            return Err(CallError::Capacity(self.config.media.max_calls));
        }
        Ok(CallId(format!(
            "c{}-{:x}",
            self.next.fetch_add(1, Ordering::Relaxed),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros()
                & 0xffffff
        )))
    }

    /// Registers a call whose local SDP is ready and starts its media.
    fn launch(
        self: &Arc<Self>,
        id: CallId,
        pc: Arc<PeerConnection>,
        events: mpsc::Receiver<PcEvent>,
        local_sdp: &str,
    ) {
        let codec = sdp::first_audio_codec(local_sdp);
        let recording = self.config.demo.record_dir.join(format!("{id}.wav"));
        let info = Arc::new(Mutex::new(CallInfo {
            id: id.clone(),
            target: "demo",
            created_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
            leg: "webrtc",
            codec: codec.clone(),
            state: "new".into(),
            recording: recording.display().to_string(),
            digits: String::new(),
        }));
        let (stop_tx, stop_rx) = oneshot::channel();
        let source: Box<dyn FrameSource> = match &self.clip {
            Some(c) => Box::new(c.player()),
            None => Box::new(Tone::new(self.config.demo.tone_hz)),
        };
        tokio::spawn(demo_media(
            id.clone(),
            pc.clone(),
            self.runtime.ticks(),
            source,
            Box::new(Recorder::new(recording)),
            stop_rx,
        ));
        self.register_webrtc(&id, pc, info, events, stop_tx);
        tracing::info!(call = %id, codec = codec.as_deref().unwrap_or("?"), "call set up");
    }

    /// Registers a call whose media side is (so far) its WebRTC leg and
    /// follows that leg's events (state, DTMF).
    fn register_webrtc(
        self: &Arc<Self>,
        id: &CallId,
        pc: Arc<PeerConnection>,
        info: Arc<Mutex<CallInfo>>,
        events: mpsc::Receiver<PcEvent>,
        stop_tx: oneshot::Sender<()>,
    ) {
        tokio::spawn(watch_events(self.clone(), id.clone(), info.clone(), events));
        self.active.lock().expect("calls lock").insert(
            id.clone(),
            Active {
                info,
                leg: Leg::Webrtc(pc),
                stop: Some(stop_tx),
                legacy: None,
            },
        );
    }

    pub fn ports_in_use(&self) -> usize {
        self.ports.in_use()
    }

    /// Ids of calls as they end, for whoever must tell a peer (SIP BYE).
    pub fn subscribe_ended(&self) -> broadcast::Receiver<CallId> {
        self.ended_tx.subscribe()
    }

    pub fn list(&self) -> Vec<CallInfo> {
        let mut v: Vec<CallInfo> = self
            .active
            .lock()
            .expect("calls lock")
            .values()
            .map(|a| a.info.lock().expect("info lock").clone())
            .collect();
        v.sort_by_key(|c| c.created_unix_ms);
        v
    }

    pub fn get(&self, id: &CallId) -> Option<CallInfo> {
        self.active
            .lock()
            .expect("calls lock")
            .get(id)
            .map(|a| a.info.lock().expect("info lock").clone())
    }

    /// libwebrtc's getStats report for the call as it comes, with the
    /// legacy leg (if any) as one more entry of type "legacy-rtp".
    pub async fn raw_stats(&self, id: &CallId) -> Option<Vec<RtcStats>> {
        let legs = self
            .active
            .lock()
            .expect("calls lock")
            .get(id)?
            .leg
            .handles();
        let mut out = match &legs.webrtc {
            Some(pc) => pc.stats().await,
            None => Vec::new(),
        };
        if let Some(st) = &legs.legacy {
            let members = match serde_json::to_value(&*st.lock().expect("stats lock")) {
                Ok(serde_json::Value::Object(m)) => m.into_iter().collect(),
                _ => Default::default(),
            };
            out.push(RtcStats {
                id: "legacy-rtp".into(),
                kind: "legacy-rtp".into(),
                timestamp_us: unix_ms() as i64 * 1000,
                members,
            });
        }
        Some(out)
    }

    /// Every active call with what its statistics are read from.
    pub fn poll_items(&self) -> Vec<(CallInfo, LegHandles)> {
        self.active
            .lock()
            .expect("calls lock")
            .values()
            .map(|a| (a.info.lock().expect("info lock").clone(), a.leg.handles()))
            .collect()
    }

    /// One call's info and statistics sources.
    pub fn poll_item(&self, id: &CallId) -> Option<(CallInfo, LegHandles)> {
        let active = self.active.lock().expect("calls lock");
        let a = active.get(id)?;
        Some((a.info.lock().expect("info lock").clone(), a.leg.handles()))
    }

    /// From now on every ended call is reported here (one consumer: the
    /// stats poller).
    pub fn ended_feed(&self) -> mpsc::UnboundedReceiver<Ended> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.ended_feed.lock().expect("feed lock") = Some(tx);
        rx
    }

    /// A re-INVITE's offer (hold, resume, new address or codec, ICE
    /// restart): the SDP's kind says which leg it renegotiates; returns our
    /// answer.
    pub async fn reoffer(&self, id: &CallId, offer: &str) -> Result<String, CallError> {
        if sdp::is_legacy_offer(offer) {
            return self.reoffer_legacy(id, offer).await;
        }
        sdp::check_webrtc_offer(offer)?;
        let pc = self.webrtc_leg(id).ok_or(CallError::NoSuchCall)?;
        let answer = pc.answer(offer).await?;
        tracing::info!(call = %id, "WebRTC leg re-negotiated");
        Ok(answer)
    }

    fn webrtc_leg(&self, id: &CallId) -> Option<Arc<PeerConnection>> {
        self.active
            .lock()
            .expect("calls lock")
            .get(id)?
            .leg
            .handles()
            .webrtc
    }

    /// A digit from the WebRTC side (RFC 4733 tapped from its audio, or a
    /// SIP INFO on its dialog): sent as RFC 4733 on the legacy leg when the
    /// call has one, and listed on the call either way.
    pub fn dtmf_from_webrtc(&self, id: &CallId, digit: char, duration_ms: u32) {
        self.note_digit(id, digit, "WebRTC");
        let cmds = self
            .active
            .lock()
            .expect("calls lock")
            .get(id)
            .and_then(|a| a.legacy.as_ref().map(|h| h.cmds.clone()));
        if let Some(cmds) = cmds
            && cmds
                .try_send(legacy::MediaCmd::Dtmf { digit, duration_ms })
                .is_err()
        {
            tracing::warn!(call = %id, %digit, "DTMF dropped: legacy media task busy or gone");
        }
    }

    /// A digit from the legacy side's signalling (SIP INFO): sent as RFC
    /// 4733 on the WebRTC leg when the call has one.
    pub fn dtmf_from_legacy(&self, id: &CallId, digit: char, duration_ms: u32) {
        self.note_digit(id, digit, "legacy (SIP INFO)");
        if let Some(pc) = self.webrtc_leg(id) {
            pc.insert_dtmf(&digit.to_string(), duration_ms, DTMF_GAP_MS);
        }
    }

    fn note_digit(&self, id: &CallId, digit: char, from: &str) {
        tracing::info!(call = %id, %digit, from, "DTMF digit");
        self.dtmf_digits.fetch_add(1, Ordering::Relaxed);
        if let Some(a) = self.active.lock().expect("calls lock").get(id) {
            a.info.lock().expect("info lock").digits.push(digit);
        }
    }

    /// Ends a call; false when there is no such call.
    pub fn hangup(&self, id: &CallId, why: &str) -> bool {
        let Some(mut a) = self.active.lock().expect("calls lock").remove(id) else {
            return false;
        };
        tracing::info!(call = %id, reason = why, "call ending");
        if let Some(stop) = a.stop.take() {
            let _ = stop.send(());
        }
        self.ended.fetch_add(1, Ordering::Relaxed);
        let _ = self.ended_tx.send(id.clone());
        if let Some(feed) = &*self.ended_feed.lock().expect("feed lock") {
            let _ = feed.send(Ended {
                info: a.info.lock().expect("info lock").clone(),
                reason: why.to_owned(),
                ended_unix_ms: unix_ms(),
                legs: a.leg.handles(),
            });
        }
        true
    }

    /// Ends every call (shutdown).
    pub fn hangup_all(&self, why: &str) {
        let ids: Vec<CallId> = self
            .active
            .lock()
            .expect("calls lock")
            .keys()
            .cloned()
            .collect();
        for id in ids {
            self.hangup(&id, why);
        }
    }
}

/// Pause between relayed digits on the WebRTC leg (libwebrtc's minimum is 30).
const DTMF_GAP_MS: u32 = 50;

/// Closing blocks on libwebrtc's signaling thread: keep it off the runtime.
/// The SDP from an operation on a call's new PeerConnection; on failure the
/// connection is closed, so a failed setup leaves nothing behind.
pub(crate) async fn sdp_or_close(
    pc: &Arc<PeerConnection>,
    op: impl std::future::Future<Output = Result<String, RtcError>>,
) -> Result<String, CallError> {
    match op.await {
        Ok(sdp) => Ok(sdp),
        Err(e) => {
            close_off_thread(pc.clone());
            Err(e.into())
        }
    }
}

pub(crate) fn close_off_thread(pc: Arc<PeerConnection>) {
    tokio::task::spawn_blocking(move || pc.close());
}

/// The demo target's audio: per clock tick, one frame out and every received
/// frame into the recording.
async fn demo_media(
    id: CallId,
    pc: Arc<PeerConnection>,
    mut ticks: watch::Receiver<u64>,
    mut source: Box<dyn FrameSource>,
    mut sink: Box<dyn FrameSink>,
    mut stop: oneshot::Receiver<()>,
) {
    const PREFILL: u64 = 2; // 20 ms cushion against scheduling jitter
    const MAX_CATCH_UP: u64 = 5;
    let mut frame = Vec::with_capacity(960);
    let mut rx = Vec::with_capacity(960);
    let mut last = *ticks.borrow_and_update();
    for _ in 0..PREFILL {
        source.next_frame(&mut frame);
        pc.push_audio(&frame, source.sample_rate());
    }
    loop {
        tokio::select! {
            _ = &mut stop => break,
            changed = ticks.changed() => {
                if changed.is_err() { break; }
                let now = *ticks.borrow_and_update();
                for _ in 0..now.saturating_sub(last).min(MAX_CATCH_UP) {
                    source.next_frame(&mut frame);
                    pc.push_audio(&frame, source.sample_rate());
                }
                last = now;
                while let Some(rate) = pc.pull_audio(&mut rx) {
                    sink.write_frame(rate, &rx);
                }
            }
        }
    }
    let counters = pc.audio_counters();
    let sink_report = sink.close();
    tracing::info!(
        call = %id, sink = %sink_report,
        tx_frames = counters.tx_frames, tx_underruns = counters.tx_underruns,
        rx_frames = counters.rx_frames, rx_overflows = counters.rx_overflows,
        "call ended"
    );
    close_off_thread(pc);
}

/// Follows the PeerConnection's state; a failed or closed connection ends
/// the call (the peer vanished without a DELETE).
pub(crate) async fn watch_events(
    calls: Arc<Calls>,
    id: CallId,
    info: Arc<Mutex<CallInfo>>,
    mut events: mpsc::Receiver<PcEvent>,
) {
    let mut dtmf = rtcgw_proto::rtp::dtmf::DtmfReceiver::default();
    while let Some(ev) = events.recv().await {
        tracing::debug!(call = %id, ?ev, "peer connection event");
        if let PcEvent::DtmfPacket {
            clock_rate,
            timestamp,
            payload,
        } = ev
        {
            for d in dtmf.handle(timestamp, &payload) {
                calls.dtmf_from_webrtc(&id, d.digit, d.duration_ms(clock_rate));
            }
            continue;
        }
        if let PcEvent::Connection(state) = ev {
            info.lock().expect("info lock").state = state.clone();
            if state == "failed" {
                tracing::warn!(call = %id, "WebRTC connection failed");
                calls.hangup(&id, "connection failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_frames_after_the_first_of_a_wake_up_are_late() {
        let c = MediaFrameCounters::default();
        c.count(1); // on time
        c.count(1);
        c.count(3); // woke two ticks late: two frames caught up
        c.count(0); // spurious wake-up: nothing due
        assert_eq!(c.frames.load(Ordering::Relaxed), 5);
        assert_eq!(c.late.load(Ordering::Relaxed), 2);
    }
}
