//! The cxx bridge to the C++ glue in `cpp/`. The only module that may use
//! `unsafe`; everything else goes through the safe types in `rtc`.
//!
//! Each C++ concept has a header in `cpp/include/rtcgw/` and an implementation
//! in `cpp/src/`; read the headers' design notes for threads and ownership.

#[allow(clippy::too_many_arguments)]
#[cxx::bridge(namespace = "rtcgw")]
pub(crate) mod ffi {
    /// What went wrong in libwebrtc, as data (never exception text).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u8)]
    enum ErrorKind {
        None,
        InvalidSdp,
        InvalidState,
        Unsupported,
        Timeout,
        Internal,
    }

    #[derive(Debug, Clone)]
    struct RtcError {
        kind: ErrorKind,
        message: String,
    }

    #[derive(Debug, Clone)]
    struct OpusSettings {
        bitrate_bps: i32,
        complexity: i32,
        fec: bool,
        dtx: bool,
        ptime_ms: i32,
        match_bandwidth: bool,
    }

    #[derive(Debug, Clone)]
    struct RuntimeConfig {
        /// Local addresses ICE may use (IPv4/IPv6 literals).
        addresses: Vec<String>,
        min_port: u16,
        max_port: u16,
        task_queue_threads: u32,
        opus: OpusSettings,
        /// rtc::LoggingSeverity forwarded to Rust (0 verbose .. 4 none).
        log_severity: i32,
        /// Load generators only (load_codecs.h): mono speech that every
        /// call's Opus encoder replays, encoded once; empty: encode.
        replay_pcm: Vec<i16>,
        replay_rate: i32,
        /// Load generators only: Opus decoders that play silence.
        silent_decoders: bool,
    }

    #[derive(Debug, Clone)]
    struct PcConfig {
        jitter_buffer_max_packets: i32,
        jitter_buffer_fast_accelerate: bool,
        jitter_buffer_min_delay_ms: i32,
        ice_gathering_timeout_ms: u32,
        tx_ring_frames: u32,
        rx_ring_frames: u32,
    }

    #[derive(Debug, Clone)]
    struct SdpResult {
        error: RtcError,
        sdp: String,
    }

    /// How a [`StatsMember`]'s value travels: scalars as numbers, so
    /// that no JSON text is built in C++ and parsed back in Rust.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum StatsValue {
        /// `int_value` is 0 or 1.
        Bool,
        Int,
        Uint,
        Double,
        /// `text` is the string itself.
        Text,
        /// Sequences and maps: `text` is their JSON.
        Json,
    }

    #[derive(Debug, Clone)]
    struct StatsMember {
        name: String,
        value: StatsValue,
        int_value: i64,
        uint_value: u64,
        double_value: f64,
        text: String,
    }

    #[derive(Debug, Clone)]
    struct StatsEntry {
        id: String,
        kind: String,
        timestamp_us: i64,
        members: Vec<StatsMember>,
    }

    #[derive(Debug, Clone, Copy, Default)]
    struct AudioCounters {
        tx_frames: u64,
        tx_underruns: u64,
        tx_overflows: u64,
        /// Frames refused by push_audio: not 10 ms at a supported rate.
        tx_invalid: u64,
        rx_frames: u64,
        rx_overflows: u64,
    }

    /// What pull_audio wrote: `samples` at `sample_rate` (0: nothing).
    #[derive(Debug, Clone, Copy, Default)]
    struct FrameInfo {
        sample_rate: u32,
        samples: u32,
    }

    #[derive(Debug, Clone, Copy, Default)]
    struct RuntimeCounters {
        ticks: u64,
        late_ticks: u64,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u8)]
    enum PcEventKind {
        IceConnection,
        Connection,
    }

    #[derive(Debug, Clone)]
    struct PcEvent {
        kind: PcEventKind,
        state: String,
    }

    /// A codec as SDP names it (rtpmap + fmtp).
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct CodecSpec {
        payload_type: u8,
        name: String,
        clock_rate: u32,
        channels: u32,
        fmtp: String,
    }

    #[derive(Debug, Clone, Copy)]
    struct NetEqSettings {
        max_packets: usize,
        fast_accelerate: bool,
        min_delay_ms: i32,
    }

    /// NetEq's network and lifetime statistics (rates are fractions since
    /// the previous call).
    #[derive(Debug, Clone, Copy, Default)]
    struct NetEqStats {
        expand_rate: f64,
        speech_expand_rate: f64,
        accelerate_rate: f64,
        preemptive_rate: f64,
        secondary_decoded_rate: f64,
        current_buffer_size_ms: u32,
        preferred_buffer_size_ms: u32,
        target_delay_ms: i32,
        total_samples_received: u64,
        concealed_samples: u64,
        concealment_events: u64,
        removed_samples_for_acceleration: u64,
        inserted_samples_for_deceleration: u64,
        jitter_buffer_delay_ms: u64,
        jitter_buffer_emitted_count: u64,
        packets_discarded: u64,
        packets_received: u64,
        packet_buffer_flushes: u64,
        silent_concealed_samples: u64,
        /// Sum over emitted samples of NetEq's target delay (as
        /// jitter_buffer_delay_ms is of the actual delay).
        jitter_buffer_target_delay_ms: u64,
        /// GetAudio calls by outcome (acm2's AudioDecodingCallStats).
        decoding_calls: u64,
        decoding_normal: u64,
        decoding_plc: u64,
        decoding_codec_plc: u64,
        decoding_cng: u64,
        decoding_plc_cng: u64,
        decoding_muted: u64,
    }

    /// Per-call AudioProcessing switches (cpp/include/rtcgw/call_apm.h).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    struct ApmSettings {
        echo_cancellation: bool,
        noise_suppression: bool,
        automatic_gain_control: bool,
        delay_ms: i32,
    }

    /// A WebRTC leg's audio figures read straight from its voice channel
    /// (media_stats.h): the same sources as getStats' inbound-rtp,
    /// outbound-rtp and remote-inbound-rtp, plus NetEq's rates and decoding
    /// counts.
    #[derive(Debug, Clone, Default)]
    struct MediaStats {
        /// False: no voice channel (not negotiated yet, or closed).
        present: bool,
        has_inbound: bool,
        has_outbound: bool,
        /// "opus/48000"; empty when unknown.
        codec: String,
        packets_received: u64,
        bytes_received: u64,
        packets_lost: i64,
        packets_discarded: u64,
        jitter_ms: f64,
        jitter_buffer_delay_s: f64,
        jitter_buffer_target_delay_s: f64,
        jitter_buffer_emitted_count: u64,
        total_samples_received: u64,
        concealed_samples: u64,
        silent_concealed_samples: u64,
        concealment_events: u64,
        inserted_samples_for_deceleration: u64,
        removed_samples_for_acceleration: u64,
        expand_rate: f64,
        speech_expand_rate: f64,
        accelerate_rate: f64,
        preemptive_expand_rate: f64,
        current_buffer_ms: u32,
        preferred_buffer_ms: u32,
        jitter_buffer_flushes: u64,
        decoding_calls: u64,
        decoding_normal: u64,
        decoding_plc: u64,
        decoding_codec_plc: u64,
        decoding_cng: u64,
        decoding_plc_cng: u64,
        decoding_muted_output: u64,
        packets_sent: u64,
        bytes_sent: u64,
        /// The peer's RTCP receiver report on what we send.
        has_remote: bool,
        remote_packets_lost: i64,
        remote_fraction_lost: f64,
        remote_jitter_ms: f64,
        /// From RTCP; negative when none was measured.
        rtt_ms: f64,
    }

    #[derive(Debug, Clone, Copy, Default)]
    struct EncodedInfo {
        bytes: u32,
        rtp_timestamp: u32,
    }

    extern "Rust" {
        type SdpCtx;
        type StatsCtx;
        type MediaStatsCtx;
        type EventSink;
        type TickSink;
        fn sdp_done(ctx: Box<SdpCtx>, result: SdpResult);
        fn stats_done(ctx: Box<StatsCtx>, entries: Vec<StatsEntry>);
        fn media_stats_done(ctx: Box<MediaStatsCtx>, stats: Vec<MediaStats>);
        fn pc_event(sink: &EventSink, event: PcEvent);
        fn dtmf_packet(
            sink: &EventSink,
            clock_rate: u32,
            audio_clock: u32,
            timestamp: u32,
            payload: &[u8],
        );
        fn audio_tick(sink: &TickSink);
        fn webrtc_log(severity: i32, message: &str);
        /// The Opus encoders' audio-bandwidth detector (media/band.rs).
        type BandDetector;
        fn new_band_detector() -> Box<BandDetector>;
        /// One 10 ms frame at 48 kHz; returns the Opus bandwidth to code,
        /// as a sample rate (8000, 16000, 48000).
        fn band_update(detector: &mut BandDetector, pcm: &[i16]) -> i32;
        /// Our SDP before libwebrtc applies it, with only the
        /// telephone-event at the main codec's clock (rtcgw_proto::sdp::
        /// match_telephone_events); empty: unchanged.
        fn match_telephone_events(sdp: &str) -> String;
    }

    unsafe extern "C++" {
        include!("rtcgw/runtime.h");
        include!("rtcgw/peer_connection.h");
        include!("rtcgw/legacy_audio.h");
        include!("rtcgw/srtp.h");
        include!("rtcgw/call_apm.h");
        include!("rtcgw/media_stats.h");

        type CallApm;
        fn new_call_apm(settings: &ApmSettings, error: &mut RtcError) -> UniquePtr<CallApm>;
        fn render(self: &CallApm, pcm: &[i16], sample_rate: i32) -> bool;
        fn capture(self: &CallApm, pcm: &mut [i16], sample_rate: i32) -> bool;

        type SrtpStream;
        fn new_srtp(
            suite: &str,
            key: &[u8],
            inbound: bool,
            error: &mut RtcError,
        ) -> UniquePtr<SrtpStream>;
        fn protect_rtp(self: &SrtpStream, packet: &mut Vec<u8>) -> bool;
        fn unprotect_rtp(self: &SrtpStream, packet: &mut Vec<u8>) -> bool;
        fn protect_rtcp(self: &SrtpStream, packet: &mut Vec<u8>) -> bool;
        fn unprotect_rtcp(self: &SrtpStream, packet: &mut Vec<u8>) -> bool;

        type NetEqStream;
        type RtpEncoder;

        fn new_neteq(
            settings: &NetEqSettings,
            codecs: &[CodecSpec],
            now_ms: i64,
            error: &mut RtcError,
        ) -> UniquePtr<NetEqStream>;
        #[allow(clippy::too_many_arguments)]
        fn insert(
            self: &NetEqStream,
            now_ms: i64,
            seq: u16,
            timestamp: u32,
            ssrc: u32,
            payload_type: u8,
            marker: bool,
            payload: &[u8],
        ) -> i32;
        fn get_audio(self: &NetEqStream, now_ms: i64, out: &mut [i16]) -> FrameInfo;
        fn stats(self: &NetEqStream) -> NetEqStats;

        fn new_rtp_encoder(
            codec: &CodecSpec,
            ptime_ms: i32,
            initial_timestamp: u32,
            error: &mut RtcError,
        ) -> UniquePtr<RtpEncoder>;
        fn encode(
            self: &RtpEncoder,
            pcm: &[i16],
            sample_rate: i32,
            out: &mut Vec<u8>,
        ) -> EncodedInfo;
        fn rtp_clock_rate(self: &RtpEncoder) -> u32;

        type Runtime;
        type PeerConnection;

        fn new_runtime(
            config: &RuntimeConfig,
            tick: Box<TickSink>,
            error: &mut RtcError,
        ) -> UniquePtr<Runtime>;
        fn create_peer_connection(
            self: &Runtime,
            config: &PcConfig,
            events: Box<EventSink>,
            error: &mut RtcError,
        ) -> UniquePtr<PeerConnection>;
        fn counters(self: &Runtime) -> RuntimeCounters;
        fn release_free_memory() -> bool;

        fn answer(self: &PeerConnection, offer: &str, ctx: Box<SdpCtx>);
        fn offer(self: &PeerConnection, ctx: Box<SdpCtx>);
        fn apply_answer(self: &PeerConnection, answer: &str, ctx: Box<SdpCtx>);
        fn get_stats(self: &PeerConnection, kinds: &str, ctx: Box<StatsCtx>);

        type MediaStatsBatch;
        fn new_media_stats_batch() -> UniquePtr<MediaStatsBatch>;
        fn add(self: Pin<&mut MediaStatsBatch>, pc: &PeerConnection);
        fn run(self: Pin<&mut MediaStatsBatch>, clear_rates: bool, ctx: Box<MediaStatsCtx>);
        fn push_audio(self: &PeerConnection, pcm: &[i16], sample_rate: i32) -> bool;
        fn pull_audio(self: &PeerConnection, out: &mut [i16]) -> FrameInfo;
        fn audio_counters(self: &PeerConnection) -> AudioCounters;
        fn insert_dtmf(self: &PeerConnection, tones: &str, duration_ms: i32, gap_ms: i32);
        fn dtmf_clocks(self: &PeerConnection) -> [u32; 2];
        fn close(self: &PeerConnection);
    }
}

// SAFETY: Runtime's public methods only post to libwebrtc's own threads or
// read atomics; libwebrtc's PeerConnectionFactory is thread-safe through its
// proxies (api/peer_connection_factory_proxy.h).
unsafe impl Send for ffi::Runtime {}
// SAFETY: as above: every method is const and internally synchronised.
unsafe impl Sync for ffi::Runtime {}
// SAFETY: a NetEqStream is used by one task at a time (it is not Sync);
// NetEq itself is internally locked and has no thread affinity.
unsafe impl Send for ffi::NetEqStream {}
// SAFETY: a libsrtp session has no thread affinity; one task uses it at a time.
unsafe impl Send for ffi::SrtpStream {}
// SAFETY: AudioProcessing is internally locked and has no thread affinity;
// its render and capture paths take separate locks (AudioProcessingImpl's
// mutex_render_ and mutex_capture_), made for two threads at once.
unsafe impl Send for ffi::CallApm {}
// SAFETY: as above.
unsafe impl Sync for ffi::CallApm {}
// SAFETY: an AudioEncoder has no thread affinity; one task uses it at a time.
unsafe impl Send for ffi::RtpEncoder {}
// SAFETY: PeerConnection methods post to the signaling thread (libwebrtc's
// PeerConnection proxy marshals calls) or touch mutex-guarded rings and
// atomics (call_audio.h).
unsafe impl Send for ffi::PeerConnection {}
// SAFETY: as above.
unsafe impl Sync for ffi::PeerConnection {}

pub(crate) use super::callbacks::{
    EventSink, MediaStatsCtx, SdpCtx, StatsCtx, TickSink, audio_tick, band_update, dtmf_packet,
    match_telephone_events, media_stats_done, new_band_detector, pc_event, sdp_done, stats_done,
    webrtc_log,
};
pub(crate) use crate::media::band::BandDetector;
