//! rtcgw-bench: load clients and benchmarks for rtcgw. Not part of the
//! gateway: these drive a running gateway (or rtpengine) from outside, or
//! measure pieces of it in process, and print Markdown for BENCHMARKS.md.

mod codec_only;
mod far_end;
mod load;
mod load_bridge;
mod ng;
mod speech;
mod stats;

use std::path::PathBuf;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(version, about = "rtcgw's load clients and benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// The legacy leg's per-stream media cost (RTP, NetEq, encoder) in
    /// process, against the codec-only cost.
    Legacy {
        #[arg(long, default_value_t = 100)]
        streams: usize,
        /// Seconds of (virtual) audio per stream.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// The stats poller's CPU cost for N connected calls, in alternating
    /// phases with and without polling.
    Stats {
        #[arg(long, default_value_t = 200)]
        calls: usize,
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Seconds per measured phase.
        #[arg(long, default_value_t = 20)]
        phase_secs: u64,
        /// Off/on phase pairs.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Where the JSON Lines export goes during the run.
        #[arg(long, default_value = "/tmp/rtcgw-bench-stats.jsonl")]
        export: PathBuf,
        /// "inactive" (no audio, the default) or "sendrecv".
        #[arg(long, default_value = "inactive")]
        media: String,
    },
    /// Drive WebRTC calls (libwebrtc offerer) into a running gateway's API
    /// and report setup time, CPU, RSS and threads as Markdown.
    Load {
        /// The gateway's HTTP API address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        api: std::net::SocketAddr,
        /// The gateway's process id (for CPU/RSS/thread sampling).
        #[arg(long)]
        gateway_pid: u32,
        /// Concurrent call counts to measure, ascending.
        #[arg(long, value_delimiter = ',', default_value = "1,10,50,100")]
        steps: Vec<usize>,
        /// Seconds each step is measured.
        #[arg(long, default_value_t = 10)]
        hold_secs: u64,
        /// Local media address of the load client.
        #[arg(long, default_value = "127.0.0.1")]
        address: std::net::IpAddr,
        #[arg(long, default_value_t = 40000)]
        port_min: u16,
        #[arg(long, default_value_t = 49999)]
        port_max: u16,
    },
    /// The codec-only cost of one bridged call (Opus decode, PCMU encode +
    /// decode, Opus encode with the gateway's defaults) on recorded speech,
    /// with the Opus encoder at each audio bandwidth, several times over.
    Ceiling {
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value = speech::SOUNDS)]
        speech_dir: PathBuf,
    },
    /// A far end with an adaptive jitter buffer (libwebrtc's NetEq) played
    /// on recorded packet arrivals in virtual time: lines of `arrival_s seq
    /// timestamp payload_type hex` in, raw s16le 48 kHz mono out (the QoS
    /// lab's mouth-to-ear delay).
    NeteqPlay {
        /// PCMU, PCMA or G722.
        #[arg(long, default_value = "PCMU")]
        codec: String,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
    /// Bridged calls: WebRTC callers over SIP/UDP into a gateway in bridge
    /// mode, the SIP callee of its outbound legs and an RTP echo; reports
    /// late frames, CPU and RSS per step as Markdown.
    LoadBridge {
        /// The gateway's SIP address (UDP).
        #[arg(long, default_value = "127.0.0.1:5060")]
        sip: std::net::SocketAddr,
        /// The gateway's HTTP API address (for /metrics).
        #[arg(long, default_value = "127.0.0.1:8080")]
        api: std::net::SocketAddr,
        /// The gateway's process id (for CPU/RSS/thread sampling).
        #[arg(long)]
        gateway_pid: u32,
        /// Where to answer as the SIP callee (the gateway's route.target).
        #[arg(long, default_value = "127.0.0.1:15070")]
        callee: std::net::SocketAddr,
        /// The RTP echo's address (RTCP on the port above); port 0: any.
        #[arg(long, default_value = "127.0.0.1:0")]
        rtp: std::net::SocketAddr,
        /// Concurrent call counts to measure, ascending.
        #[arg(long, value_delimiter = ',', default_value = "10,25,50,75,100")]
        steps: Vec<usize>,
        /// Seconds each step is measured.
        #[arg(long, default_value_t = 12)]
        hold_secs: u64,
        /// Stop once this percentage of 10 ms frames is late.
        #[arg(long, default_value_t = 1.0)]
        max_late_pct: f64,
        /// Cores the gateway may use (for the codec-only ceiling in calls);
        /// default: all of this machine's.
        #[arg(long)]
        gateway_cores: Option<f64>,
        /// Local media address of the WebRTC callers.
        #[arg(long, default_value = "127.0.0.1")]
        address: std::net::IpAddr,
        #[arg(long, default_value_t = 40000)]
        port_min: u16,
        #[arg(long, default_value_t = 49999)]
        port_max: u16,
        /// Drive rtpengine instead of a gateway: its ng control address
        /// (UDP). The callers' offers go through rtpengine's ng offer/answer
        /// (Opus WebRTC <-> PCMU plain RTP on the echo); --gateway-pid is
        /// rtpengine's process id; --sip, --api and --callee are unused.
        #[arg(long)]
        rtpengine_ng: Option<std::net::SocketAddr>,
        /// Append one tab-separated line per step to this file.
        #[arg(long)]
        tsv: Option<PathBuf>,
        /// Real Opus decoders on one call in this many (the calls whose
        /// received speech is checked); the others play silence.
        #[arg(long, default_value_t = 10)]
        sample_every: usize,
        /// The recorded speech the callers send (asterisk-core-sounds-en-wav).
        #[arg(long, default_value = speech::SOUNDS)]
        speech_dir: PathBuf,
        /// The audio bandwidth of the gateway's Opus encoder in the
        /// codec-only ceiling: 8000 (narrowband, what a PCMU leg carries),
        /// 16000 or 48000.
        #[arg(long, default_value_t = 48000)]
        ceiling_max_playback_hz: i32,
        /// Offer each step's calls whatever the gateway says: 503s are
        /// counted (the refused column) and the step is measured on the
        /// calls admitted.
        #[arg(long)]
        overload: bool,
        /// New calls per second (0: as fast as they come up, 10 at a time).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Reports go to stdout; the log to stderr, at info unless RUST_LOG says.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = match cli.command {
        Command::Legacy { streams, seconds } => load::bench_legacy(streams, seconds)?,
        Command::Stats {
            calls,
            interval_ms,
            phase_secs,
            rounds,
            export,
            media,
        } => {
            let _ = std::fs::remove_file(&export);
            let audio = match media.as_str() {
                "inactive" => false,
                "sendrecv" => true,
                other => anyhow::bail!("--media {other}: expected inactive or sendrecv"),
            };
            rt.block_on(stats::run(stats::BenchOptions {
                calls,
                interval: std::time::Duration::from_millis(interval_ms.max(1)),
                phase: std::time::Duration::from_secs(phase_secs),
                rounds,
                export,
                audio,
            }))?
        }
        Command::Load {
            api,
            gateway_pid,
            steps,
            hold_secs,
            address,
            port_min,
            port_max,
        } => rt.block_on(load::run(load::LoadOptions {
            api,
            gateway_pid,
            steps,
            hold: std::time::Duration::from_secs(hold_secs),
            address,
            port_min,
            port_max,
        }))?,
        Command::NeteqPlay {
            codec,
            input,
            output,
        } => {
            let frames =
                far_end::neteq_play(&codec, &input, &output).map_err(anyhow::Error::msg)?;
            format!("{frames} frames played\n")
        }
        Command::Ceiling { runs, speech_dir } => {
            codec_only::ceiling_report(&speech_dir, runs).map_err(anyhow::Error::msg)?
        }
        Command::LoadBridge {
            sip,
            api,
            gateway_pid,
            callee,
            rtp,
            steps,
            hold_secs,
            max_late_pct,
            gateway_cores,
            address,
            port_min,
            port_max,
            rtpengine_ng,
            tsv,
            sample_every,
            speech_dir,
            ceiling_max_playback_hz,
            overload,
            rate,
        } => rt.block_on(load_bridge::run_bridge(load_bridge::BridgeLoadOptions {
            sip,
            api,
            gateway_pid,
            callee,
            rtp,
            steps,
            hold: std::time::Duration::from_secs(hold_secs),
            max_late_pct,
            gateway_cores: gateway_cores.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
            }),
            address,
            port_min,
            port_max,
            rtpengine_ng,
            tsv,
            sample_every: sample_every.max(1),
            speech_dir,
            ceiling_max_playback_hz,
            overload,
            rate,
        }))?,
    };
    print!("{report}");
    Ok(())
}
