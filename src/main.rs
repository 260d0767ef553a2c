use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use rtcgw::call::Calls;
use rtcgw::config::{Config, DEFAULT_TOML};
use rtcgw::media::Clip;
use rtcgw::rtc::{Runtime, RuntimeSettings};
use rtcgw::stats::export::{Exporter, Target};
use rtcgw::stats::poller::StatsService;
use rtcgw_proto::sip::ua::SipCounters;

/// rtcgw: a WebRTC <-> SIP media gateway around libwebrtc.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; without it the embedded default is used.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Benchmark: the legacy leg's per-stream media cost (RTP, NetEq,
    /// encoder) in process, against the codec-only cost.
    BenchLegacy {
        #[arg(long, default_value_t = 100)]
        streams: usize,
        /// Seconds of (virtual) audio per stream.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Benchmark: the stats poller's CPU cost for N connected calls, in
    /// alternating phases with and without polling.
    BenchStats {
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
    /// Load client: drive WebRTC calls (libwebrtc offerer) into a running
    /// gateway and report setup time, CPU, RSS and threads as Markdown.
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
    /// Load client for bridged calls: WebRTC callers over SIP/UDP into a
    /// gateway in bridge mode, the SIP callee of its outbound legs and an
    /// RTP echo; reports late frames, CPU and RSS per step as Markdown.
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
        tsv: Option<std::path::PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One readable line with the cause chain; no backtrace noise.
            eprintln!("rtcgw: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{DEFAULT_TOML}");
        return Ok(());
    }
    if let Some(Command::BenchLegacy { streams, seconds }) = cli.command {
        print!("{}", rtcgw::loadgen::bench_legacy(streams, seconds)?);
        return Ok(());
    }
    if let Some(Command::BenchStats {
        calls,
        interval_ms,
        phase_secs,
        rounds,
        export,
        media,
    }) = cli.command
    {
        tracing_subscriber::fmt()
            .with_env_filter(
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
            )
            .with_writer(std::io::stderr)
            .init();
        let _ = std::fs::remove_file(&export);
        let opts = rtcgw::stats::bench::BenchOptions {
            calls,
            interval: std::time::Duration::from_millis(interval_ms.max(1)),
            phase: std::time::Duration::from_secs(phase_secs),
            rounds,
            export,
            audio: match media.as_str() {
                "inactive" => false,
                "sendrecv" => true,
                other => anyhow::bail!("--media {other}: expected inactive or sendrecv"),
            },
        };
        let report = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(rtcgw::stats::bench::run(opts))?;
        print!("{report}");
        return Ok(());
    }
    if let Some(Command::Load {
        api,
        gateway_pid,
        steps,
        hold_secs,
        address,
        port_min,
        port_max,
    }) = cli.command
    {
        init_stderr_log();
        let opts = rtcgw::loadgen::LoadOptions {
            api,
            gateway_pid,
            steps,
            hold: std::time::Duration::from_secs(hold_secs),
            address,
            port_min,
            port_max,
        };
        return print_report(rtcgw::loadgen::run(opts));
    }
    if let Some(Command::LoadBridge {
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
    }) = cli.command
    {
        init_stderr_log();
        let opts = rtcgw::loadgen::BridgeLoadOptions {
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
        };
        return print_report(rtcgw::loadgen::run_bridge(opts));
    }
    let config = match &cli.config {
        Some(path) => {
            Config::load(path).with_context(|| format!("configuration {}", path.display()))?
        }
        None => Config::parse(DEFAULT_TOML).context("embedded configuration")?,
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.filter));
    let log = tracing_subscriber::fmt().with_env_filter(filter);
    // stdout may carry the stats export; the log then keeps out of its way.
    if matches!(config.stats.export.as_str(), "stdout" | "-") {
        log.with_writer(std::io::stderr).init();
    } else {
        log.init();
    }

    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(config))
}

/// Load clients log to stderr (stdout carries their report), at info
/// unless RUST_LOG says otherwise.
fn init_stderr_log() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

async fn run(config: Config) -> anyhow::Result<()> {
    let clip = match &config.demo.play_file {
        Some(p) => Some(Clip::load(p).context("demo.play_file")?),
        None => None,
    };
    std::fs::create_dir_all(&config.demo.record_dir)
        .with_context(|| format!("demo.record_dir = {}", config.demo.record_dir.display()))?;
    let runtime = Runtime::new(&RuntimeSettings {
        addresses: config.media.addresses.clone(),
        port_min: config.media.port_min,
        port_max: config.media.port_max,
        task_queue_threads: config.webrtc.task_queue_threads,
        opus: config.webrtc.opus.clone(),
        log_level: config.webrtc.log_level,
    })
    .context("starting libwebrtc")?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("http.listen = {}", config.http.listen))?;
    let calls = Calls::new(runtime, config.clone(), clip);
    let st = &config.stats;
    let exporter = match Target::from_config(&st.export, st.rotate_bytes, st.rotate_keep) {
        Some(t) => {
            Some(Exporter::spawn(t).with_context(|| format!("stats.export = {}", st.export))?)
        }
        None => None,
    };
    let stats = StatsService::new(exporter);
    tokio::spawn(rtcgw::stats::poller::run(
        stats.clone(),
        calls.clone(),
        calls.ended_feed(),
        std::time::Duration::from_millis(st.interval_ms),
    ));
    let sip_counters = Arc::new(Mutex::new(SipCounters::default()));
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let sip = if config.sip.enabled {
        let sockets = rtcgw::driver::bind_sip(&config.sip)
            .await
            .with_context(|| format!("sip.listen = {}", config.sip.listen))?;
        let task = rtcgw::driver::run_sip(
            sockets,
            config.sip.clone(),
            config.route.clone(),
            calls.clone(),
            sip_counters.clone(),
            shutdown_rx,
        );
        Some(tokio::spawn(task))
    } else {
        None
    };
    let app = rtcgw::http::router(
        rtcgw::http::ApiState {
            calls: calls.clone(),
            sip: sip_counters,
            stats,
        },
        config.http.max_body_bytes,
    );
    tracing::info!(
        http = %config.http.listen,
        media = ?config.media.addresses,
        ports = %format!("{}-{}", config.media.port_min, config.media.port_max),
        "rtcgw ready"
    );
    let drain = std::time::Duration::from_secs(config.media.drain_timeout_s);
    let drain_calls = calls.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            // Drain: no new calls, let the ones in progress finish.
            drain_calls.set_draining();
            tracing::info!(
                calls = drain_calls.len(),
                timeout_s = drain.as_secs(),
                "draining"
            );
            let deadline = tokio::time::Instant::now() + drain;
            while !drain_calls.is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            tracing::info!(remaining = drain_calls.len(), "shutting down");
        })
        .await?;
    let _ = shutdown_tx.send(true);
    if let Some(sip) = sip {
        match sip.await {
            Ok(Err(e)) => tracing::error!("SIP driver: {e}"),
            Err(e) => tracing::error!("SIP driver panicked: {e}"),
            Ok(Ok(())) => {}
        }
    }
    calls.hangup_all("shutdown");
    // Let the media tasks finish their recordings and close their calls.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    Ok(())
}

/// Runs a load client on its own two-worker runtime and prints its report.
fn print_report(
    client: impl std::future::Future<Output = Result<String, rtcgw::loadgen::LoadError>>,
) -> anyhow::Result<()> {
    let report = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(client)?;
    print!("{report}");
    Ok(())
}
