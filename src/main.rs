use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rtcgw::config::{CallerIdMode, Config, DEFAULT_TOML, ExportTarget, RouteMode};
use rtcgw::driver::{Driver, NgSocket, SipSockets, StreamPolicy};
use rtcgw::media::Calls;
use rtcgw::media::audio::Clip;
use rtcgw::metrics::Metrics;
use rtcgw::rtc::{Runtime, RuntimeSettings};
use rtcgw::stats::export::{Exporter, Target};
use rtcgw::stats::poller::StatsService;
use rtcgw::tls::{SipTls, TlsFiles};
use rtcgw_control::{CallControl, CallerId, ControlConfig, Route};
use rtcgw_proto::sip::session_timer::SessionTimerConfig;
use rtcgw_proto::sip::tsx::{Timers, Transport};
use rtcgw_proto::sip::ua::{UaConfig, UserAgent};
use tracing_subscriber::EnvFilter;

/// rtcgw: a WebRTC <-> SIP media gateway around libwebrtc.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; without it the embedded default is used.
    /// Without it, RTCGW_CONFIG names the file when that file exists.
    /// RTCGW_HTTP_TOKENS (comma-separated) adds bearer tokens.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Check the configuration (the embedded default, or --config) and exit.
    #[arg(long)]
    check_config: bool,
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
    // RTCGW_CONFIG naming a file that is not there (a container without
    // a mounted config) means the embedded default; --config must exist.
    let path = cli.config.clone().or_else(|| {
        std::env::var_os("RTCGW_CONFIG")
            .map(PathBuf::from)
            .filter(|p| p.exists())
    });
    let path = path.as_deref();
    let env_tokens = std::env::var("RTCGW_HTTP_TOKENS").ok();
    let config = Config::for_run(path, env_tokens.as_deref()).with_context(|| match path {
        Some(p) => format!("configuration {}", p.display()),
        None => "embedded configuration".into(),
    })?;
    let findings = config.self_check();
    if cli.check_config {
        for f in &findings {
            let level = if f.fatal { "error" } else { "warning" };
            println!("{level}: {}", f.text);
        }
        if let Some(f) = findings.iter().find(|f| f.fatal) {
            anyhow::bail!("{}", f.text);
        }
        println!("configuration ok");
        return Ok(());
    }
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.filter));
    let log = tracing_subscriber::fmt().with_env_filter(filter);
    // stdout may carry the stats export; the log then keeps out of its way.
    if config.stats.export == ExportTarget::Stdout {
        log.with_writer(std::io::stderr).init();
    } else {
        log.init();
    }

    for f in &findings {
        if f.fatal {
            tracing::error!("configuration cannot work: {}", f.text);
        } else {
            tracing::warn!("configuration: {}", f.text);
        }
    }
    if let Some(f) = findings.iter().find(|f| f.fatal) {
        anyhow::bail!("{}", f.text);
    }
    // Every call holds descriptors (sockets, libwebrtc's), and so does every
    // SIP and HTTP connection: the soft limit (often 1024) is raised to the
    // hard one.
    match rtcgw::accept::raise_fd_limit() {
        Ok((before, after)) if before != after => {
            tracing::info!(before, after, "descriptor limit raised")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("descriptor limit not raised: {e}"),
    }
    check_addresses_are_ours(&config)?;

    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(config))
}

/// Every media address must be one of this host's: an address that is
/// not (the public one of a 1:1 NAT, written without `LOCAL!`) cannot be
/// bound, and ICE would gather nothing on it.
fn check_addresses_are_ours(config: &Config) -> anyhow::Result<()> {
    for a in config
        .media
        .addresses
        .iter()
        .chain(&config.legacy.addresses)
    {
        if let Err(e) = std::net::UdpSocket::bind((a.local, 0)) {
            anyhow::bail!(
                "media address {a}: {} is not an address of this host ({e}). Behind a 1:1 NAT \
                 write the local address and the public one: \"LOCAL!{}\"",
                a.local,
                a.local
            );
        }
    }
    Ok(())
}

/// Where SIP listens: `sip.listen`, then `sip.also_listen`.
fn sip_addresses(config: &Config) -> Vec<std::net::SocketAddr> {
    std::iter::once(config.sip.listen)
        .chain(config.sip.also_listen.iter().copied())
        .collect()
}

/// Every 30 s in which calls ended, hands the memory their libwebrtc state
/// freed back to the system: without it the process stays at its busiest
/// size (measured: 18 MiB idle, 112 MiB after 100 calls had come and gone,
/// 58 MiB after a trim).
async fn release_memory_after_calls(calls: Arc<Calls>) {
    let mut seen = calls.ended_total();
    let mut every = tokio::time::interval(Duration::from_secs(30));
    every.tick().await;
    loop {
        every.tick().await;
        let ended = calls.ended_total();
        if ended != seen {
            seen = ended;
            let _ = tokio::task::spawn_blocking(rtcgw::rtc::release_free_memory).await;
        }
    }
}

/// Where SIP over TLS finds its certificates and CAs.
fn tls_files(config: &Config) -> TlsFiles {
    let s = &config.sip;
    TlsFiles {
        cert: s.tls_cert.clone().zip(s.tls_key.clone()),
        ca: s.tls_ca.clone(),
        client_ca: s.tls_client_ca.clone(),
        server_name: s
            .tls_server_name
            .clone()
            .zip(s.next_hop)
            .map(|(name, hop)| (hop.0.addr, name)),
    }
}

/// The user agent's settings from the configuration.
fn ua_config(config: &Config, sip: Option<&SipSockets>) -> anyhow::Result<UaConfig> {
    let c = &config.sip;
    let local = match sip {
        Some(s) => s.local()?,
        None => sip_addresses(config)
            .into_iter()
            .flat_map(|a| [(Transport::Udp, a), (Transport::Tcp, a)])
            .collect(),
    };
    // Behind a 1:1 NAT, Via and Contact name the public address (of the
    // listen addresses of its family).
    let local = match c.announce {
        Some(ip) => local
            .into_iter()
            .map(|(t, a)| match a.is_ipv6() == ip.is_ipv6() {
                true => (t, std::net::SocketAddr::new(ip, a.port())),
                false => (t, a),
            })
            .collect(),
        None => local,
    };
    Ok(UaConfig {
        timers: Timers {
            t1: Duration::from_millis(c.t1_ms),
            t2: Duration::from_millis(c.t2_ms),
            t4: Duration::from_millis(c.t4_ms),
        },
        local,
        allowed: c.allowed_sources.clone(),
        trusted: c.trusted_sources.clone(),
        next_hop: c.next_hop.map(|h| h.0),
        user_agent: c.user_agent.clone(),
        branch_salt: u64::from(std::process::id()) << 16 ^ u64::from(rand::random::<u16>()),
        session_timer: c.session_timers.then_some(SessionTimerConfig {
            expires: c.session_expires_s,
            min_se: c.min_se_s,
        }),
        drain_retry_after_s: drain_retry_after(config),
    })
}

/// Call control's settings from the configuration.
fn control_config(config: &Config) -> ControlConfig {
    let r = &config.route;
    ControlConfig {
        route: match r.mode {
            RouteMode::Demo => Route::Demo,
            RouteMode::Bridge => Route::Bridge {
                target: r.target.clone(),
            },
        },
        max_calls: config.media.max_calls,
        max_setting_up: config.media.max_setting_up,
        caller_id: match r.caller_id {
            CallerIdMode::Pass => CallerId::Pass,
            CallerIdMode::Fixed => CallerId::Fixed,
        },
        from_user: r.from_user.clone(),
        pass_asserted_identity: r.pass_asserted_identity,
        id_salt: rand::random(),
        ring_timeout: Duration::from_secs(config.http.ring_timeout_s),
        drain_retry_after_s: drain_retry_after(config),
        api_uri_targets: config.sip.next_hop.is_some(),
    }
}

/// Retry-After on a drain's 503s: how long it lasts (5 s at least, so
/// that a quick drain does not invite instant retries).
fn drain_retry_after(config: &Config) -> u32 {
    config.media.drain_timeout_s.clamp(5, 3600) as u32
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
        load: Default::default(),
    })
    .context("starting libwebrtc")?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("http.listen = {}", config.http.listen))?;
    let sip = match config.sip.enabled {
        true => Some(
            SipSockets::bind(&sip_addresses(&config), &config.sip.tls_listen)
                .await
                .with_context(|| {
                    format!(
                        "sip.listen = {:?}, sip.tls_listen = {:?}",
                        sip_addresses(&config),
                        config.sip.tls_listen
                    )
                })?,
        ),
        false => None,
    };

    let mut metrics = Metrics::new();
    let (media_tx, media_rx) = tokio::sync::mpsc::unbounded_channel();
    let calls = Calls::new(
        runtime,
        config.clone(),
        clip,
        metrics.media.clone(),
        media_tx,
    );
    metrics.add_live(calls.clone());

    let st = &config.stats;
    let exporter = match Target::from_config(&st.export, st.rotate_bytes, st.rotate_keep) {
        Some(t) => Some(
            Exporter::spawn(t, metrics.stats.export_dropped())
                .with_context(|| format!("stats.export = {}", String::from(st.export.clone())))?,
        ),
        None => None,
    };
    let stats = StatsService::new(exporter, metrics.stats.clone());
    tokio::spawn(rtcgw::stats::poller::run(
        stats.clone(),
        calls.clone(),
        calls.ended_feed(),
        Duration::from_millis(st.interval_ms),
    ));

    let ng = match config.ng.enabled {
        true => {
            let front = rtcgw::ng::Frontend::new(
                std::time::Instant::now(),
                config.ng.allowed_sources.clone(),
                metrics.ng.clone(),
            );
            Some(
                NgSocket::bind(config.ng.listen, front)
                    .await
                    .with_context(|| format!("ng.listen = {}", config.ng.listen))?,
            )
        }
        false => None,
    };
    let ua = UserAgent::new(ua_config(&config, sip.as_ref())?, metrics.sip.clone());
    let control = CallControl::new(control_config(&config), ua, metrics.calls.clone());
    let tls = Arc::new(
        SipTls::load(tls_files(&config), metrics.sip_tls_failures.clone())
            .context("SIP over TLS")?,
    );
    let policy = StreamPolicy {
        max_connections: config.sip.max_connections,
        idle_timeout: Duration::from_secs(config.sip.idle_timeout_s),
        message_timeout: Duration::from_secs(config.sip.message_timeout_s),
        allowed: config.sip.allowed_sources.clone(),
        refused: metrics.sip_conn_refused.clone(),
    };
    let (driver, handle) = Driver::new(
        control,
        calls.clone(),
        media_rx,
        sip,
        Some(tls.clone()),
        ng,
        stats.clone(),
    );
    let headroom = rtcgw_control::headroom::HeadroomLimits {
        max_late_pct: config.media.admit_max_late_pct,
        max_cpu_pct: config.media.admit_max_cpu_pct,
    };
    let driver = tokio::spawn(
        driver
            .with_stream_policy(policy)
            .with_headroom(headroom)
            .run(),
    );
    tokio::spawn(release_memory_after_calls(calls.clone()));

    let refusals = metrics.calls.clone();
    let h = &config.http;
    let access = rtcgw::http::access::Access::new(
        &h.tokens,
        &h.cors_origins,
        &h.ice_servers,
        metrics.http_denied.clone(),
    );
    let app = rtcgw::http::router(
        rtcgw::http::ApiState {
            driver: handle.clone(),
            calls,
            stats,
            metrics: Arc::new(metrics),
            refusals,
            access: Arc::new(access),
            bridge: config.route.mode == RouteMode::Bridge,
            body_limits: rtcgw::http::BodyLimits {
                max_bytes: config.http.max_body_bytes,
                timeout: Duration::from_secs(config.http.body_timeout_s),
            },
        },
        config.http.max_body_bytes,
    );
    tracing::info!(
        http = %config.http.listen,
        media = %config.media.addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        ports = %format!("{}-{}", config.media.port_min, config.media.port_max),
        route = ?config.route.mode,
        "rtcgw ready"
    );
    let drain = Duration::from_secs(config.media.drain_timeout_s);
    let linger = Duration::from_secs(config.media.drain_linger_s);
    // The handlers are in place before anyone hears we are ready: a
    // SIGTERM from then on drains instead of killing.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificates and CAs reloaded"),
                Err(e) => {
                    tracing::error!("SIGHUP: TLS reload failed, the certificates in use stay: {e}")
                }
            }
        }
    });
    rtcgw::notify::notify("READY=1");
    let limits = rtcgw::http::serve::Limits {
        max_connections: config.http.max_connections,
        header_timeout: Duration::from_secs(config.http.header_timeout_s),
        max_header_bytes: config.http.max_header_bytes,
        // Longer than any request may wait (a WHIP-to-SIP call rings up to
        // ring_timeout_s).
        max_age: Duration::from_secs(config.http.ring_timeout_s.max(540) + 60),
    };
    rtcgw::http::serve::serve(listener, app, limits, async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        // Drain: no new calls (503), the ones in progress may finish;
        // the driver ends the rest with BYE after the grace period.
        rtcgw::notify::notify("STOPPING=1");
        handle.drain(drain, linger).await;
        if let Err(e) = driver.await {
            tracing::error!("driver: {e}");
        }
    })
    .await;
    Ok(())
}
