//! The media side of calls: each call's libwebrtc PeerConnection and/or
//! plain-RTP leg, and the tasks that move their audio on the gateway's one
//! 10 ms clock. [`Calls`] carries out call control's
//! [`MediaCommand`]s and reports back [`MediaEvent`]s (results, and calls
//! that ended on the media side); it decides nothing about calls itself.
//!
//! - [`demo`]: the demo target (play a clip or tone, record what comes in);
//! - [`legacy`]: a plain-RTP leg's media task (RTP session, NetEq, encoder);
//! - [`bridge`]: a WebRTC leg joined to a plain-RTP leg;
//! - [`audio`]: tones, clips, recordings; [`ports`]: the RTP port pool.

pub mod audio;
pub mod band;
mod bridge;
mod demo;
mod legacy;
pub use legacy::NO_MEDIA_AFTER;
pub mod ports;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rtcgw_control::{Created, EndReason, MediaCommand, MediaEvent, Plan, Refusal, Refused};
use rtcgw_proto::rtp::dtmf::EventPayload;
use rtcgw_proto::rtp::event_clock::EventClock;
use rtcgw_proto::rtp::packet::DropReason;
use rtcgw_proto::sdp::{self, LegKind, Offer};
use rtcgw_proto::stats::model::LegStats;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

pub use rtcgw_control::CallId;

use crate::config::Config;
use crate::rtc::{CallSettings, PcEvent, PcState, PeerConnection, RtcError, RtcStats, Runtime};
use audio::Clip;
use ports::PortPool;

/// Why the media side could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    #[error(transparent)]
    Rtc(#[from] RtcError),
    #[error("no such call")]
    NoSuchCall,
    #[error(transparent)]
    Legacy(#[from] rtcgw_proto::sdp::legacy::LegacySdpError),
    #[error("legacy leg: {0}")]
    Ports(String),
    #[error(
        "no codec left to offer on the plain RTP leg (every one of legacy.codecs masked or stripped)"
    )]
    NoCodec,
}

impl From<CallError> for Refused {
    fn from(e: CallError) -> Self {
        let kind = match &e {
            CallError::Rtc(RtcError::InvalidSdp(_)) => Refusal::InvalidSdp,
            CallError::Rtc(RtcError::Unsupported(_) | RtcError::InvalidState(_)) => {
                Refusal::Unanswerable
            }
            CallError::Rtc(RtcError::Timeout(_)) => Refusal::IceTimeout,
            CallError::Rtc(_) => Refusal::Internal,
            CallError::NoSuchCall => Refusal::NoSuchCall,
            CallError::Legacy(l) => return Refused::from(l.clone()),
            CallError::Ports(_) => Refusal::MediaUnavailable,
            CallError::NoCodec => Refusal::NoCommonCodec,
        };
        Refused::new(kind, e.to_string())
    }
}

/// Where a call's media goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Demo,
    Bridge,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Demo => "demo",
            Self::Bridge => "bridge",
        }
    }
}

/// Which legs a call has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Legs {
    Webrtc,
    /// Plain RTP.
    Legacy,
    /// Both, joined.
    Bridge,
}

/// A call's state as the API shows it: its WebRTC leg's connection state,
/// or `active` for a call with a plain-RTP leg only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallState {
    New,
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
    Active,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::Failed => "failed",
            Self::Closed => "closed",
            Self::Active => "active",
        }
    }
}

impl From<PcState> for CallState {
    fn from(s: PcState) -> Self {
        match s {
            PcState::New => Self::New,
            PcState::Connecting => Self::Connecting,
            PcState::Connected => Self::Connected,
            PcState::Disconnected => Self::Disconnected,
            PcState::Failed => Self::Failed,
            PcState::Closed => Self::Closed,
        }
    }
}

/// What the API shows of a call.
#[derive(Debug, Clone, Serialize)]
pub struct CallInfo {
    #[serde(serialize_with = "call_id")]
    pub id: CallId,
    pub target: Target,
    pub leg: Legs,
    pub created_unix_ms: u64,
    pub codec: Option<String>,
    pub state: CallState,
    pub recording: String,
    /// RFC 4733 and SIP INFO digits received, in order.
    pub digits: String,
}

fn call_id<S: serde::Serializer>(id: &CallId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.0)
}

/// A legacy leg's latest statistics, refreshed by its media task; None
/// until the first refresh.
pub type LegacyStats = Arc<Mutex<Option<LegStats>>>;

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
    pub reason: EndReason,
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

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DropLabel {
    reason: &'static str,
}

/// The media side's metric handles. Cheap to clone: clones share counts.
#[derive(Debug, Clone, Default)]
pub struct MediaMetrics {
    ended: Counter,
    dtmf_digits: Counter,
    rtp_dropped: Family<DropLabel, Counter>,
    /// 10 ms ticks due on legacy and bridged legs, and of those, the ones
    /// handled a tick or more late. A task that wakes once for several
    /// ticks handled every tick after the first late (caught up in a burst,
    /// or skipped past the catch-up limit): those are the late frames of
    /// the bridged-call benchmark (BENCHMARKS.md).
    frames: Counter,
    late_frames: Counter,
}

impl MediaMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register("rtcgw_calls_ended", "Calls ended", self.ended.clone());
        r.register(
            "rtcgw_dtmf_digits",
            "DTMF digits received (RFC 4733 and SIP INFO)",
            self.dtmf_digits.clone(),
        );
        r.register(
            "rtcgw_rtp_dropped",
            "RTP/RTCP datagrams dropped on legacy legs, by reason",
            self.rtp_dropped.clone(),
        );
        r.register(
            "rtcgw_media_frames",
            "10 ms frames due on legacy and bridged legs",
            self.frames.clone(),
        );
        r.register(
            "rtcgw_media_late_frames",
            "Of those, handled a tick or more late",
            self.late_frames.clone(),
        );
    }

    /// One wake-up of a media task that found `due` ticks since its last.
    pub fn count_frames(&self, due: u64) {
        self.frames.inc_by(due);
        self.late_frames.inc_by(due.saturating_sub(1));
    }

    pub fn dropped(&self, reason: DropReason) {
        self.rtp_dropped
            .get_or_create(&DropLabel {
                reason: reason.as_str(),
            })
            .inc();
    }
}

/// Every call's media.
pub struct Calls {
    runtime: Runtime,
    config: Config,
    clip: Option<Clip>,
    active: Mutex<HashMap<CallId, Active>>,
    ports: Arc<PortPool>,
    pending: bridge::Pending,
    metrics: MediaMetrics,
    /// Results and media-side endings, to call control. Unbounded: every
    /// event must arrive (a lost result would strand a call), and there
    /// are at most a few per call.
    events: mpsc::UnboundedSender<MediaEvent>,
    /// Where ended calls are reported for their end-of-call stats record.
    ended_feed: Mutex<Option<mpsc::UnboundedSender<Ended>>>,
}

impl Calls {
    pub fn new(
        runtime: Runtime,
        config: Config,
        clip: Option<Clip>,
        metrics: MediaMetrics,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            clip,
            active: Mutex::new(HashMap::new()),
            ports: PortPool::new(config.legacy.port_min, config.legacy.port_max),
            config,
            pending: Default::default(),
            metrics,
            events,
            ended_feed: Mutex::new(None),
        })
    }

    /// The audio clock's own counters (ticks, stalls it skipped past).
    pub fn clock_counters(&self) -> crate::rtc::RuntimeCounters {
        self.runtime.counters()
    }

    pub fn ports_in_use(&self) -> usize {
        self.ports.in_use()
    }

    pub fn len(&self) -> usize {
        self.active.lock().expect("calls lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Carries out a command of call control. Quick ones are done at once;
    /// the others run on a task of their own and report their
    /// [`MediaEvent`] when done.
    pub fn execute(self: &Arc<Self>, cmd: MediaCommand) {
        match cmd {
            MediaCommand::Hangup { call, reason } => {
                self.hangup(&call, reason);
            }
            MediaCommand::Dtmf {
                call,
                from,
                digit,
                duration_ms,
            } => self.dtmf(&call, from, DigitVia::SipInfo, digit, duration_ms),
            cmd => {
                let calls = self.clone();
                tokio::spawn(async move {
                    let ev = calls.run(cmd).await;
                    calls.report(ev);
                });
            }
        }
    }

    fn report(&self, ev: MediaEvent) {
        if self.events.send(ev).is_err() {
            tracing::debug!("call control is gone (shutting down): media event dropped");
        }
    }

    async fn run(self: &Arc<Self>, cmd: MediaCommand) -> MediaEvent {
        match cmd {
            MediaCommand::Create { call, plan, offer } => {
                let result = self.create(&call, plan, offer).await.map_err(Refused::from);
                MediaEvent::Created { call, result }
            }
            MediaCommand::CompleteBridge {
                call,
                answer,
                early,
            } => {
                let result = self
                    .complete_bridge(&call, &answer)
                    .await
                    .map_err(Refused::from);
                MediaEvent::BridgeUp {
                    call,
                    early,
                    result,
                }
            }
            MediaCommand::ApplyAnswer { call, answer } => {
                let result = self
                    .apply_answer(&call, &answer)
                    .await
                    .map_err(Refused::from);
                MediaEvent::AnswerApplied { call, result }
            }
            MediaCommand::Reoffer { call, from, offer } => {
                let result = self.reoffer(&call, &offer).await.map_err(Refused::from);
                MediaEvent::Reanswered { call, from, result }
            }
            MediaCommand::Hangup { .. } | MediaCommand::Dtmf { .. } => {
                unreachable!("done at once by execute")
            }
        }
    }

    async fn create(
        self: &Arc<Self>,
        id: &CallId,
        plan: Plan,
        offer: Option<Offer>,
    ) -> Result<Created, CallError> {
        let local = |local_sdp| Created {
            local_sdp,
            far_offer: None,
        };
        Ok(match (plan, offer) {
            (_, None) => local(self.create_demo_offer(id).await?),
            (Plan::Demo, Some(Offer::Webrtc(o))) => local(self.create_demo(id, o.sdp()).await?),
            (Plan::Demo, Some(Offer::Legacy(o))) => local(self.create_demo_legacy(id, &o).await?),
            (Plan::Bridge(far), Some(Offer::Webrtc(o))) => {
                let (answer, far) = self.create_bridge(id, o.sdp(), &far).await?;
                Created {
                    local_sdp: answer,
                    far_offer: Some(far),
                }
            }
            (Plan::Bridge(_), Some(Offer::Legacy(o))) => {
                let (answer, far) = self.create_bridge_from_legacy(id, &o).await?;
                Created {
                    local_sdp: answer,
                    far_offer: Some(far),
                }
            }
        })
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

    /// A call's WebRTC leg: a new PeerConnection and its events.
    pub(crate) fn new_webrtc_leg(
        &self,
        id: &CallId,
    ) -> Result<(Arc<PeerConnection>, mpsc::UnboundedReceiver<PcEvent>), CallError> {
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
        Ok((Arc::new(pc), events))
    }

    pub async fn apply_answer(&self, id: &CallId, answer: &str) -> Result<(), CallError> {
        let pc = self.webrtc_leg(id).ok_or(CallError::NoSuchCall)?;
        pc.apply_answer(answer).await.map_err(CallError::from)
    }

    /// The bounds every recording gets (`demo.record_*`).
    pub(crate) fn record_limits(&self) -> audio::RecordLimits {
        let d = &self.config.demo;
        audio::RecordLimits {
            max_frames: d.record_max_s.saturating_mul(100),
            min_free_bytes: d.record_min_free_mb.saturating_mul(1 << 20),
        }
    }

    /// A call's new info record.
    fn call_info(&self, id: &CallId, target: Target, leg: Legs, codec: Option<String>) -> CallInfo {
        CallInfo {
            id: id.clone(),
            target,
            leg,
            created_unix_ms: unix_ms(),
            codec,
            state: match leg {
                Legs::Legacy => CallState::Active,
                _ => CallState::New,
            },
            recording: self
                .config
                .demo
                .record_dir
                .join(format!("{id}.wav"))
                .display()
                .to_string(),
            digits: String::new(),
        }
    }

    /// Registers a call whose media side is (so far) its WebRTC leg and
    /// follows that leg's events (state, DTMF).
    fn register_webrtc(
        self: &Arc<Self>,
        id: &CallId,
        pc: Arc<PeerConnection>,
        info: Arc<Mutex<CallInfo>>,
        events: mpsc::UnboundedReceiver<PcEvent>,
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

    /// libwebrtc's getStats report for the call as it comes, with the
    /// legacy leg (if any) as one more entry of type "legacy-rtp".
    pub async fn raw_stats(&self, id: &CallId) -> Option<Vec<RtcStats>> {
        let legs = self.poll_item(id)?.1;
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

    /// A new offer on one of the call's legs (hold, resume, new address or
    /// codec, ICE restart): the offer's kind says which; returns our answer.
    pub async fn reoffer(&self, id: &CallId, offer: &Offer) -> Result<String, CallError> {
        match offer {
            Offer::Legacy(o) => self.reoffer_legacy(id, o).await,
            Offer::Webrtc(o) => {
                let pc = self.webrtc_leg(id).ok_or(CallError::NoSuchCall)?;
                let answer = pc.answer(o.sdp()).await?;
                tracing::info!(call = %id, "WebRTC leg re-negotiated");
                Ok(answer)
            }
        }
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

    /// A digit that came from the `from` leg's side (RFC 4733 on it, or a
    /// SIP INFO on its dialog): counted, listed on the call, and sent as
    /// RFC 4733 on the other leg when the call has one.
    pub fn dtmf(&self, id: &CallId, from: LegKind, via: DigitVia, digit: char, duration_ms: u32) {
        let via = match via {
            DigitVia::Rfc4733 => "RFC 4733",
            DigitVia::SipInfo => "SIP INFO",
        };
        tracing::info!(call = %id, %digit, duration_ms, from = from.as_str(), "DTMF digit ({via})");
        self.metrics.dtmf_digits.inc();
        /// Where a digit is relayed: the other leg, when the call has one.
        enum Relay {
            ToWebrtc(Arc<PeerConnection>),
            ToLegacy(mpsc::Sender<legacy::MediaCmd>),
        }
        let relay = {
            let active = self.active.lock().expect("calls lock");
            let Some(a) = active.get(id) else { return };
            a.info.lock().expect("info lock").digits.push(digit);
            match from {
                LegKind::Webrtc => a.legacy.as_ref().map(|h| Relay::ToLegacy(h.cmds.clone())),
                LegKind::Legacy => a.leg.handles().webrtc.map(Relay::ToWebrtc),
            }
        };
        match relay {
            Some(Relay::ToWebrtc(pc)) => {
                // libwebrtc's sender can say only whole audio frames' worth
                // on an event clock below the audio clock (EventClock).
                let (event_clock, audio_clock) = pc.dtmf_clocks();
                let ms = EventClock::new(event_clock, audio_clock).request_ms(duration_ms);
                pc.insert_dtmf(&digit.to_string(), ms, DTMF_GAP_MS)
            }
            Some(Relay::ToLegacy(cmds)) => {
                let cmd = legacy::MediaCmd::Dtmf { digit, duration_ms };
                if cmds.try_send(cmd).is_err() {
                    tracing::warn!(call = %id, %digit, "DTMF dropped: legacy media task busy or gone");
                }
            }
            None => {}
        }
    }

    /// Calls ended since start.
    /// 10 ms media frames due so far on legacy and bridged legs, and of
    /// those handled late (the headroom admission's reading).
    pub fn frame_counts(&self) -> (u64, u64) {
        (self.metrics.frames.get(), self.metrics.late_frames.get())
    }

    pub fn ended_total(&self) -> u64 {
        self.metrics.ended.get()
    }

    /// Ends a call's media; false when there is no such call. Call control
    /// hears of it ([`MediaEvent::Ended`]), so that its dialogs end too.
    pub fn hangup(&self, id: &CallId, reason: EndReason) -> bool {
        let Some(mut a) = self.active.lock().expect("calls lock").remove(id) else {
            return false;
        };
        tracing::info!(call = %id, %reason, "call ending");
        if let Some(stop) = a.stop.take() {
            let _ = stop.send(());
        }
        self.metrics.ended.inc();
        self.report(MediaEvent::Ended {
            call: id.clone(),
            reason,
        });
        if let Some(feed) = &*self.ended_feed.lock().expect("feed lock") {
            let _ = feed.send(Ended {
                info: a.info.lock().expect("info lock").clone(),
                reason,
                ended_unix_ms: unix_ms(),
                legs: a.leg.handles(),
            });
        }
        true
    }

    /// Ends every call (shutdown).
    pub fn hangup_all(&self, reason: EndReason) {
        let ids: Vec<CallId> = self
            .active
            .lock()
            .expect("calls lock")
            .keys()
            .cloned()
            .collect();
        for id in ids {
            self.hangup(&id, reason);
        }
    }
}

/// How a digit arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitVia {
    Rfc4733,
    SipInfo,
}

/// Pause between relayed digits on the WebRTC leg (libwebrtc's minimum is 30).
const DTMF_GAP_MS: u32 = 50;

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

/// Closing blocks on libwebrtc's signaling thread: keep it off the runtime.
pub(crate) fn close_off_thread(pc: Arc<PeerConnection>) {
    tokio::task::spawn_blocking(move || pc.close());
}

/// Follows the PeerConnection's state; a failed connection ends the call
/// (the peer vanished without a BYE or DELETE). Received RFC 4733 digits
/// (tapped before NetEq) go on like SIP INFO ones.
async fn watch_events(
    calls: Arc<Calls>,
    id: CallId,
    info: Arc<Mutex<CallInfo>>,
    mut events: mpsc::UnboundedReceiver<PcEvent>,
) {
    let mut dtmf = rtcgw_proto::rtp::dtmf::DtmfReceiver::default();
    let mut clock: Option<EventClock> = None;
    while let Some(ev) = events.recv().await {
        tracing::debug!(call = %id, ?ev, "peer connection event");
        match ev {
            PcEvent::DtmfPacket {
                clock_rate,
                audio_clock,
                timestamp,
                payload,
                at,
            } => {
                let Some(event) = EventPayload::parse(&payload) else {
                    continue;
                };
                let c = match &mut clock {
                    Some(c) if c.clocks() == (clock_rate, audio_clock) => c,
                    _ => clock.insert(EventClock::new(clock_rate, audio_clock)),
                };
                if c.observe(at, timestamp, &event) {
                    tracing::info!(
                        call = %id, event_clock = clock_rate, audio_clock,
                        "the WebRTC peer counts its DTMF durations on the audio clock (libwebrtc's \
                         telephone-event/{clock_rate} beside a {audio_clock} Hz codec): each digit's \
                         length is taken as the middle of what its duration can mean"
                    );
                }
                for d in dtmf.handle(timestamp, &payload) {
                    let ms = c.duration_ms(&d);
                    calls.dtmf(&id, LegKind::Webrtc, DigitVia::Rfc4733, d.digit, ms);
                }
            }
            PcEvent::Connection(state) => {
                info.lock().expect("info lock").state = state.into();
                if state == PcState::Failed {
                    tracing::warn!(call = %id, "WebRTC connection failed");
                    calls.hangup(&id, EndReason::ConnectionFailed);
                }
            }
            PcEvent::IceConnection(_) => {}
        }
    }
}

/// The codec of our SDP's first audio payload type, for the call's info.
fn codec_of(local_sdp: &str) -> Option<String> {
    sdp::first_audio_codec(local_sdp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_frames_after_the_first_of_a_wake_up_are_late() {
        let m = MediaMetrics::default();
        m.count_frames(1); // on time
        m.count_frames(1);
        m.count_frames(3); // woke two ticks late: two frames caught up
        m.count_frames(0); // spurious wake-up: nothing due
        assert_eq!(m.frames.get(), 5);
        assert_eq!(m.late_frames.get(), 2);
    }

    #[test]
    fn media_errors_map_to_refusals() {
        let r = Refused::from(CallError::Rtc(RtcError::InvalidSdp("x".into())));
        assert_eq!(r.kind, Refusal::InvalidSdp);
        assert!(r.detail.contains("invalid SDP"), "{}", r.detail);
        let r = Refused::from(CallError::Ports("RTP port range exhausted".into()));
        assert_eq!(r.kind.disposition().sip_status, 503);
        let r = Refused::from(CallError::Rtc(RtcError::Timeout("ice".into())));
        assert_eq!(r.kind, Refusal::IceTimeout);
    }
}
