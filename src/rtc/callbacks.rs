//! The Rust side of the C++ callbacks. Each body only hands data to a channel
//! without blocking, and never panics: a panic across the bridge aborts.

use super::sys::ffi;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot, watch};

/// Context of one SDP operation (answer, offer, apply_answer).
pub struct SdpCtx(pub(super) oneshot::Sender<ffi::SdpResult>);
/// Context of one getStats call.
pub struct StatsCtx(pub(super) oneshot::Sender<Vec<ffi::StatsEntry>>);
/// Context of one media stats batch.
pub struct MediaStatsCtx(pub(super) oneshot::Sender<Vec<ffi::MediaStats>>);
/// Where one PeerConnection's state changes go.
/// A call's PeerConnection events. Unbounded: a state change must never be
/// lost (a dropped `failed` would leave a dead call up), and there are few.
pub struct EventSink(pub(super) mpsc::UnboundedSender<super::PcEvent>);
/// Where the audio clock's ticks go: a counter published through a watch
/// channel, so a task that missed ticks knows how many.
pub struct TickSink {
    pub(super) count: AtomicU64,
    pub(super) tx: watch::Sender<u64>,
}

// cxx passes ownership of the context back as a Box.
#[allow(clippy::boxed_local)]
pub fn sdp_done(ctx: Box<SdpCtx>, result: ffi::SdpResult) {
    let _ = ctx.0.send(result);
}

#[allow(clippy::boxed_local)]
pub fn stats_done(ctx: Box<StatsCtx>, entries: Vec<ffi::StatsEntry>) {
    let _ = ctx.0.send(entries);
}

#[allow(clippy::boxed_local)]
pub fn media_stats_done(ctx: Box<MediaStatsCtx>, stats: Vec<ffi::MediaStats>) {
    let _ = ctx.0.send(stats);
}

pub fn pc_event(sink: &EventSink, event: ffi::PcEvent) {
    let event = match event.kind {
        ffi::PcEventKind::IceConnection => super::PcEvent::IceConnection(event.state),
        _ => match super::PcState::parse(&event.state) {
            Some(state) => super::PcEvent::Connection(state),
            None => {
                tracing::warn!(state = %event.state, "unknown peer connection state ignored");
                return;
            }
        },
    };
    // An error only means the call is gone: nothing to tell.
    let _ = sink.0.send(event);
}

pub fn dtmf_packet(
    sink: &EventSink,
    clock_rate: u32,
    audio_clock: u32,
    timestamp: u32,
    payload: &[u8],
) {
    // The first (newest) event of the packet (RFC 4733 section 2.3).
    let Some(Ok(payload)) = payload.get(..4).map(<[u8; 4]>::try_from) else {
        return; // too short to be an event: ignored
    };
    let event = super::PcEvent::DtmfPacket {
        clock_rate,
        audio_clock,
        timestamp,
        payload,
        at: std::time::Instant::now(),
    };
    let _ = sink.0.send(event);
}

pub fn audio_tick(sink: &TickSink) {
    let n = sink.count.fetch_add(1, Ordering::Relaxed) + 1;
    sink.tx.send_replace(n);
}

/// Warnings this libwebrtc generation logs for every call that say nothing
/// wrong about it, with why each is harmless. They are kept at debug level,
/// out of the default log, so that a warning there means something.
const EXPECTED_WARNINGS: &[(&str, &str)] = &[
    // AudioSendStream is configured once before WebRtcVoiceMediaChannel
    // has set its send codec (libwebrtc's order of operations on
    // SetLocal/RemoteDescription); the codec's bitrates and encoder follow
    // in the next configuration, and the audio flows.
    (
        "Config is invalid: min_bitrate_bps=-1",
        "send stream before its codec",
    ),
    (
        "Trying to call unset encoder",
        "send stream before its codec",
    ),
    // rtcgw's factory has no AudioProcessing by design (per-call APM on
    // the bridge instead); PeerConnection::Close asks to stop an aecdump
    // regardless.
    (
        "Attempting to stop aecdump",
        "factory without APM, by design",
    ),
    // libwebrtc counting its own blocking thread hops inside Close and
    // DestroyAllChannels; rtcgw closes off the tokio runtime
    // (media::close_off_thread), so nothing of ours waits on them.
    ("Blocking Close: total=", "Close's own thread hops"),
    (
        "Blocking DestroyAllChannels: total=",
        "Close's own thread hops",
    ),
];

/// Whether a libwebrtc warning is one of [`EXPECTED_WARNINGS`].
fn expected_warning(message: &str) -> bool {
    EXPECTED_WARNINGS.iter().any(|(m, _)| message.contains(m))
}

/// libwebrtc's warnings and errors, which a peer's input can cause (a bad
/// SDP line is quoted in full): at most ten lines a second.
static WEBRTC_LOG: rtcgw_proto::log_gate::LogGate =
    rtcgw_proto::log_gate::LogGate::new(std::time::Duration::from_millis(100));

pub fn new_band_detector() -> Box<crate::media::band::BandDetector> {
    Box::default()
}

pub fn band_update(detector: &mut crate::media::band::BandDetector, pcm: &[i16]) -> i32 {
    detector.update(pcm) as i32
}

pub fn match_telephone_events(sdp: &str) -> String {
    rtcgw_proto::sdp::match_telephone_events(sdp).unwrap_or_default()
}

/// The longest libwebrtc log message forwarded, in characters.
const MAX_LOG_MESSAGE: usize = 500;

pub fn webrtc_log(severity: i32, message: &str) {
    let message = match message.char_indices().nth(MAX_LOG_MESSAGE) {
        Some((cut, _)) => &message[..cut],
        None => message,
    };
    if severity == 2 && expected_warning(message) {
        tracing::debug!(target: "webrtc", "{message}");
        return;
    }
    // rtc::LoggingSeverity: 0 verbose, 1 info, 2 warning, 3 error.
    match severity {
        0 => tracing::trace!(target: "webrtc", "{message}"),
        1 => tracing::info!(target: "webrtc", "{message}"),
        _ => {
            let Some(held) = WEBRTC_LOG.pass(std::time::Instant::now()) else {
                return;
            };
            if severity == 2 {
                tracing::warn!(target: "webrtc", held_back = held, "{message}");
            } else {
                tracing::error!(target: "webrtc", held_back = held, "{message}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_call_noise_is_recognised_and_nothing_else() {
        for m in [
            "(audio_send_stream.cc:873): Config is invalid: min_bitrate_bps=-1; max_bitrate_bps=-1; both expected greater or equal to 0",
            "(channel_send.cc:600): Trying to call unset encoder.",
            "(webrtc_voice_engine.cc:623): Attempting to stop aecdump when no audio processing module is present",
            "(sdp_offer_answer.cc:4920): Blocking DestroyAllChannels: total=3 (actual=3, could=0)",
            "(peer_connection.cc:1800): Blocking Close: total=10 (actual=10, could=0)",
        ] {
            assert!(expected_warning(m), "{m}");
        }
        assert!(!expected_warning(
            "(audio_send_stream.cc:873): Config is invalid: min_bitrate_bps=32000; max_bitrate_bps=-1"
        ));
        assert!(!expected_warning("(port.cc:1): Jingle: ICE failed"));
    }
}
