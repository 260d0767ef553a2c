//! The libwebrtc bridge: safe Rust types over the C++ glue in `cpp/`.
//!
//! One [`Runtime`] per process owns libwebrtc's threads, the
//! PeerConnectionFactory and the 10 ms audio clock; every call gets a
//! [`PeerConnection`] from it. Audio crosses as 10 ms mono PCM frames.

pub mod apm;
mod callbacks;
pub mod legacy;
#[allow(unsafe_code)] // the cxx bridge; the only unsafe in the crate
mod sys;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use cxx::UniquePtr;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

pub use sys::ffi::{AudioCounters, MediaStats, RuntimeCounters};

/// Largest 10 ms frame that crosses the bridge (96 kHz); see call_audio.h.
pub const MAX_FRAME_SAMPLES: usize = 960;

/// Settings fixed for the life of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// ICE gathers on the local addresses; our SDP names the announced
    /// ones (1:1 NAT).
    pub addresses: Vec<crate::config::MediaAddress>,
    pub port_min: u16,
    pub port_max: u16,
    pub task_queue_threads: u32,
    pub opus: OpusSettings,
    /// Forward libwebrtc's own log lines at or above this level.
    pub log_level: WebrtcLogLevel,
    /// Load generators' codecs; the gateway keeps the default (real ones).
    pub load: LoadCodecs,
}

/// Codecs for load generators (rtcgw-bench), so that a benchmark's callers
/// cost far less than the gateway they load (cpp/include/rtcgw/load_codecs.h).
#[derive(Debug, Clone, Default)]
pub struct LoadCodecs {
    /// Mono speech at `replay_rate` Hz, Opus-encoded once with the
    /// runtime's settings; every call's Opus encoder replays those packets
    /// instead of encoding. Empty: calls encode what they are given.
    pub replay_pcm: Vec<i16>,
    pub replay_rate: u32,
    /// Opus decoders that play silence (NetEq and SRTP still run).
    pub silent_decoders: bool,
}

pub use crate::config::{OpusSettings, WebrtcLogLevel};

/// Per-call WebRTC settings: NetEQ and non-trickle ICE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSettings {
    pub jitter_buffer_max_packets: u32,
    pub jitter_buffer_fast_accelerate: bool,
    pub jitter_buffer_min_delay_ms: u32,
    pub ice_gathering_timeout_ms: u32,
}

/// What went wrong inside libwebrtc.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcError {
    #[error("invalid SDP: {0}")]
    InvalidSdp(String),
    #[error("invalid state: {0}")]
    InvalidState(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("libwebrtc: {0}")]
    Internal(String),
}

impl RtcError {
    pub(crate) fn from_ffi(e: sys::ffi::RtcError) -> Option<Self> {
        use sys::ffi::ErrorKind as K;
        let m = e.message;
        Some(match e.kind {
            K::None => return None,
            K::InvalidSdp => Self::InvalidSdp(m),
            K::InvalidState => Self::InvalidState(m),
            K::Unsupported => Self::Unsupported(m),
            K::Timeout => Self::Timeout(m),
            _ => Self::Internal(m),
        })
    }
}

pub(crate) fn no_error() -> sys::ffi::RtcError {
    sys::ffi::RtcError {
        kind: sys::ffi::ErrorKind::None,
        message: String::new(),
    }
}

struct RuntimeInner {
    ptr: UniquePtr<sys::ffi::Runtime>,
    /// Local -> announced addresses for the SDP peers get.
    announce: Vec<(std::net::IpAddr, std::net::IpAddr)>,
}

/// libwebrtc for the whole process. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
    ticks: watch::Receiver<u64>,
}

/// Gives the allocator's free memory back to the system (after calls have
/// ended, what their libwebrtc state freed stays mapped otherwise): true
/// when some was released. Takes a few milliseconds; call it now and then,
/// not per call.
pub fn release_free_memory() -> bool {
    sys::ffi::release_free_memory()
}

impl Runtime {
    pub fn new(s: &RuntimeSettings) -> Result<Self, RtcError> {
        let (tx, ticks) = watch::channel(0);
        let tick = Box::new(callbacks::TickSink {
            count: AtomicU64::new(0),
            tx,
        });
        let config = sys::ffi::RuntimeConfig {
            addresses: s.addresses.iter().map(|a| a.local.to_string()).collect(),
            min_port: s.port_min,
            max_port: s.port_max,
            task_queue_threads: s.task_queue_threads,
            opus: sys::ffi::OpusSettings {
                bitrate_bps: s.opus.bitrate_bps as i32,
                complexity: s.opus.complexity.map_or(-1, i32::from),
                fec: s.opus.fec,
                dtx: s.opus.dtx,
                ptime_ms: s.opus.ptime_ms as i32,
                match_bandwidth: s.opus.match_bandwidth,
            },
            log_severity: s.log_level as i32,
            replay_pcm: s.load.replay_pcm.clone(),
            replay_rate: s.load.replay_rate as i32,
            silent_decoders: s.load.silent_decoders,
        };
        let mut err = no_error();
        let ptr = sys::ffi::new_runtime(&config, tick, &mut err);
        if let Some(e) = RtcError::from_ffi(err) {
            return Err(e);
        }
        Ok(Self {
            inner: Arc::new(RuntimeInner {
                ptr,
                announce: s
                    .addresses
                    .iter()
                    .filter_map(|a| a.announced.map(|p| (a.local, p)))
                    .collect(),
            }),
            ticks,
        })
    }

    /// A receiver that changes every 10 ms audio tick (value: tick count).
    pub fn ticks(&self) -> watch::Receiver<u64> {
        self.ticks.clone()
    }

    pub fn counters(&self) -> RuntimeCounters {
        self.inner.ptr.counters()
    }

    pub fn create_peer_connection(
        &self,
        s: &CallSettings,
    ) -> Result<(PeerConnection, mpsc::UnboundedReceiver<PcEvent>), RtcError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let config = sys::ffi::PcConfig {
            jitter_buffer_max_packets: s.jitter_buffer_max_packets as i32,
            jitter_buffer_fast_accelerate: s.jitter_buffer_fast_accelerate,
            jitter_buffer_min_delay_ms: s.jitter_buffer_min_delay_ms as i32,
            ice_gathering_timeout_ms: s.ice_gathering_timeout_ms,
            tx_ring_frames: 10,
            rx_ring_frames: 50,
        };
        let mut err = no_error();
        let ptr = self.inner.ptr.create_peer_connection(
            &config,
            Box::new(callbacks::EventSink(tx)),
            &mut err,
        );
        if let Some(e) = RtcError::from_ffi(err) {
            return Err(e);
        }
        Ok((
            PeerConnection {
                ptr,
                runtime: self.inner.clone(),
            },
            rx,
        ))
    }
}

/// A PeerConnection's connection state (W3C RTCPeerConnectionState).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcState {
    New,
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

impl PcState {
    /// libwebrtc's name for the state, lower case.
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "new" => Self::New,
            "connecting" => Self::Connecting,
            "connected" => Self::Connected,
            "disconnected" => Self::Disconnected,
            "failed" => Self::Failed,
            "closed" => Self::Closed,
            _ => return None,
        })
    }
}

/// A state change of a PeerConnection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PcEvent {
    /// ICE's own state, for the log.
    IceConnection(String),
    Connection(PcState),
    /// A received RFC 4733 telephone-event packet (taken out of the audio
    /// before NetEq; see cpp/include/rtcgw/dtmf_tap.h).
    DtmfPacket {
        /// The event's clock and the audio codec's beside it.
        clock_rate: u32,
        audio_clock: u32,
        timestamp: u32,
        payload: [u8; 4],
        /// When it arrived (the tap runs as the packet is received).
        at: std::time::Instant,
    },
}

/// One libwebrtc PeerConnection (one call's WebRTC leg).
pub struct PeerConnection {
    ptr: UniquePtr<sys::ffi::PeerConnection>,
    // Declared after `ptr`: the runtime must outlive every PeerConnection.
    runtime: Arc<RuntimeInner>,
}

/// One getStats report entry (RTCStats).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RtcStats {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp_us: i64,
    pub members: BTreeMap<String, serde_json::Value>,
}

/// Reads the audio figures of many WebRTC legs in one go: one task on the
/// signaling thread and one blocking call to the worker thread for all of
/// them, where getStats costs each call about eight thread hops
/// (media_stats.h). In `pcs` order; `None` for a connection without a
/// voice channel (not negotiated yet, or closed). `clear_rates`: NetEq's
/// rates cover the time since the previous clearing read (the poller's);
/// false leaves that baseline alone and reports them as 0.
pub async fn media_stats(pcs: &[&PeerConnection], clear_rates: bool) -> Vec<Option<MediaStats>> {
    if pcs.is_empty() {
        return Vec::new();
    }
    let (tx, rx) = oneshot::channel();
    {
        let mut batch = sys::ffi::new_media_stats_batch();
        for pc in pcs {
            batch.pin_mut().add(&pc.ptr);
        }
        batch
            .pin_mut()
            .run(clear_rates, Box::new(callbacks::MediaStatsCtx(tx)));
    }
    rx.await
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.present.then_some(m))
        .collect()
}

/// A getStats member as JSON: scalars come as numbers from C++, only
/// sequences and maps as JSON text.
fn member(m: sys::ffi::StatsMember) -> (String, Value) {
    use sys::ffi::StatsValue as K;
    let v = match m.value {
        K::Bool => Value::Bool(m.int_value != 0),
        K::Int => Value::from(m.int_value),
        K::Uint => Value::from(m.uint_value),
        // NaN and infinities have no JSON form: null, as libwebrtc's ToJson.
        K::Double => {
            serde_json::Number::from_f64(m.double_value).map_or(Value::Null, Value::Number)
        }
        K::Text => Value::String(m.text),
        _ => serde_json::from_str(&m.text).unwrap_or(Value::String(m.text)),
    };
    (m.name, v)
}

impl PeerConnection {
    async fn sdp_op(&self, f: impl FnOnce(Box<callbacks::SdpCtx>)) -> Result<String, RtcError> {
        let (tx, rx) = oneshot::channel();
        f(Box::new(callbacks::SdpCtx(tx)));
        let r = rx
            .await
            .map_err(|_| RtcError::Internal("SDP operation dropped".into()))?;
        match RtcError::from_ffi(r.error) {
            Some(e) => Err(e),
            None => Ok(rtcgw_proto::sdp::announce_addresses(
                &r.sdp,
                &self.runtime.announce,
            )),
        }
    }

    /// Applies a remote offer; returns the complete (non-trickle) answer.
    pub async fn answer(&self, offer: &str) -> Result<String, RtcError> {
        self.sdp_op(|ctx| self.ptr.answer(offer, ctx)).await
    }

    /// Creates an offer; returns it once ICE gathering is complete.
    pub async fn offer(&self) -> Result<String, RtcError> {
        self.sdp_op(|ctx| self.ptr.offer(ctx)).await
    }

    /// Applies the remote answer to our offer.
    pub async fn apply_answer(&self, answer: &str) -> Result<(), RtcError> {
        self.sdp_op(|ctx| self.ptr.apply_answer(answer, ctx))
            .await
            .map(|_| ())
    }

    pub async fn stats(&self) -> Vec<RtcStats> {
        self.stats_of(&[]).await
    }

    /// getStats keeping only entries of the given types (all when empty):
    /// the others are skipped in C++ before any member is converted, which
    /// is most of the conversion cost (a certificate entry alone carries its
    /// DER in base64).
    pub async fn stats_of(&self, kinds: &[&str]) -> Vec<RtcStats> {
        let (tx, rx) = oneshot::channel();
        self.ptr
            .get_stats(&kinds.join(","), Box::new(callbacks::StatsCtx(tx)));
        rx.await
            .unwrap_or_default()
            .into_iter()
            .map(|e| RtcStats {
                id: e.id,
                kind: e.kind,
                timestamp_us: e.timestamp_us,
                members: e.members.into_iter().map(member).collect(),
            })
            .collect()
    }

    /// Queues one 10 ms mono frame to send. False: the queue was full and
    /// its oldest frame was dropped (counted in [`AudioCounters`]).
    pub fn push_audio(&self, pcm: &[i16], sample_rate: u32) -> bool {
        self.ptr.push_audio(pcm, sample_rate as i32)
    }

    /// The oldest received 10 ms frame (after NetEQ) into `out`, returning
    /// its sample rate; `None` when no frame is waiting. `out` is resized,
    /// so reusing one buffer keeps the audio path allocation-free.
    pub fn pull_audio(&self, out: &mut Vec<i16>) -> Option<u32> {
        out.resize(MAX_FRAME_SAMPLES, 0);
        let info = self.ptr.pull_audio(out);
        out.truncate(info.samples as usize);
        (info.samples > 0).then_some(info.sample_rate)
    }

    pub fn audio_counters(&self) -> AudioCounters {
        self.ptr.audio_counters()
    }

    /// Queues DTMF digits as RFC 4733 events toward the WebRTC peer (after
    /// any still queued). Asynchronous: a peer that negotiated no
    /// telephone-event gets nothing, and libwebrtc's log says so.
    pub fn insert_dtmf(&self, digits: &str, duration_ms: u32, gap_ms: u32) {
        self.ptr
            .insert_dtmf(digits, duration_ms as i32, gap_ms as i32);
    }

    /// The clock of the telephone-event libwebrtc sends on (0: none) and
    /// the audio clock beside it.
    pub fn dtmf_clocks(&self) -> (u32, u32) {
        let [event, audio] = self.ptr.dtmf_clocks();
        (event, audio)
    }

    /// Closes the connection (blocks briefly on libwebrtc's signaling thread).
    pub fn close(&self) {
        self.ptr.close()
    }
}
