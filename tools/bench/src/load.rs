//! `rtcgw-bench load`: a load client that is itself a libwebrtc offerer, so one
//! process can drive hundreds of WebRTC calls into a gateway's call API and
//! report setup time, CPU, memory and threads of the gateway under test.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use rtcgw::media::audio::{FrameSource, Tone};
use rtcgw::rtc::{
    CallSettings, LoadCodecs, OpusSettings, PeerConnection, RtcError, Runtime, RuntimeSettings,
    WebrtcLogLevel,
};

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The gateway's HTTP API.
    pub api: SocketAddr,
    /// The gateway's process id, for CPU/RSS/thread sampling.
    pub gateway_pid: u32,
    /// Concurrent call counts to measure, ascending.
    pub steps: Vec<usize>,
    /// How long each step is measured once its calls are up.
    pub hold: Duration,
    pub address: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("HTTP: {0}")]
    Http(String),
    #[error(transparent)]
    Rtc(#[from] RtcError),
    #[error("SIP: {0}")]
    Sip(String),
    #[error("reading /proc for pid {0}: {1}")]
    Proc(u32, std::io::Error),
}

/// Minimal HTTP/1.1 client: one request per connection.
pub(crate) async fn http(
    api: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String, String), LoadError> {
    let e = |x: std::io::Error| LoadError::Http(x.to_string());
    let mut s = tokio::net::TcpStream::connect(api).await.map_err(e)?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.map_err(e)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.map_err(e)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, location, body.to_string()))
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcSample {
    pub cpu_ticks: u64,
    pub rss_kib: u64,
    pub threads: u64,
}

pub(crate) fn sample(pid: u32) -> Result<ProcSample, LoadError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| LoadError::Proc(pid, e))?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| LoadError::Proc(pid, e))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        cpu_ticks: f[11] + f[12],
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
    })
}

pub(crate) const CLK_TCK: f64 = 100.0;

struct LoadCall {
    pc: Arc<PeerConnection>,
    location: String,
}

pub(crate) fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// One pump for every call of a load client: per 10 ms clock tick a tone
/// frame out, every received frame drained (and counted by libwebrtc).
pub(crate) fn spawn_pump<T: Send + 'static>(
    runtime: &Runtime,
    calls: Arc<Mutex<Vec<T>>>,
    pc_of: fn(&T) -> Arc<PeerConnection>,
) -> tokio::task::JoinHandle<()> {
    let mut ticks = runtime.ticks();
    tokio::spawn(async move {
        let mut tone = Tone::new(700.0);
        let mut frame = Vec::new();
        let mut rx = Vec::new();
        while ticks.changed().await.is_ok() {
            tone.next_frame(&mut frame);
            let pcs: Vec<Arc<PeerConnection>> =
                calls.lock().expect("calls").iter().map(pc_of).collect();
            for pc in pcs {
                pc.push_audio(&frame, Tone::RATE);
                while pc.pull_audio(&mut rx).is_some() {}
            }
        }
    })
}

/// Each call's count of received frames, now.
pub(crate) fn rx_frames<T>(
    calls: &Mutex<Vec<T>>,
    pc_of: fn(&T) -> Arc<PeerConnection>,
) -> Vec<u64> {
    let calls = calls.lock().expect("calls");
    calls
        .iter()
        .map(|c| pc_of(c).audio_counters().rx_frames)
        .collect()
}

/// How many calls received at least 90% of `frames` frames since `before`
/// (from [`rx_frames`]).
pub(crate) fn calls_with_audio<T>(
    calls: &Mutex<Vec<T>>,
    pc_of: fn(&T) -> Arc<PeerConnection>,
    before: &[u64],
    frames: f64,
) -> usize {
    rx_frames(calls, pc_of)
        .iter()
        .zip(before)
        .filter(|(now, b)| (*now - *b) as f64 > 0.9 * frames)
        .count()
}

/// The load client's own libwebrtc runtime (the offerers' side).
pub(crate) fn client_runtime(
    address: IpAddr,
    port_min: u16,
    port_max: u16,
    load: LoadCodecs,
) -> Result<Runtime, RtcError> {
    Runtime::new(&RuntimeSettings {
        addresses: vec![address.into()],
        port_min,
        port_max,
        task_queue_threads: 2,
        opus: OpusSettings::default(),
        log_level: WebrtcLogLevel::Error,
        load,
    })
}

/// Runs the load steps and returns a Markdown report.
pub async fn run(o: LoadOptions) -> Result<String, LoadError> {
    let runtime = client_runtime(o.address, o.port_min, o.port_max, LoadCodecs::default())?;
    let settings = CallSettings {
        jitter_buffer_max_packets: 200,
        jitter_buffer_fast_accelerate: false,
        jitter_buffer_min_delay_ms: 0,
        ice_gathering_timeout_ms: 2000,
    };
    let calls: Arc<Mutex<Vec<LoadCall>>> = Arc::default();

    let pc_of = |c: &LoadCall| c.pc.clone();
    let pump = spawn_pump(&runtime, calls.clone(), pc_of);

    let idle = sample(o.gateway_pid)?;
    let codec = crate::codec_only::opus_roundtrip_cpu(3000);
    let codec_pct = codec.as_secs_f64() / 30.0 * 100.0; // 3000 frames = 30 s of audio
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Codec-only reference, same run: Opus encode + decode of one call's 10 ms frames = {codec_pct:.2}% of one core.\n\
         Gateway idle: RSS {:.1} MiB, {} threads.\n",
        idle.rss_kib as f64 / 1024.0,
        idle.threads
    );
    let _ = writeln!(
        out,
        "| calls | setup p50 ms | setup p95 ms | gateway CPU % | CPU %/call | per-call / codec-only | RSS MiB | RSS KiB/call | threads | calls with audio |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");

    for &n in &o.steps {
        let mut setup = Vec::new();
        let have = calls.lock().expect("calls").len();
        // Set calls up 10 at a time, as a burst of callers would arrive.
        let mut todo = n.saturating_sub(have);
        while todo > 0 {
            let batch = todo.min(10);
            let mut tasks = Vec::new();
            for _ in 0..batch {
                let (pc, _events) = runtime.create_peer_connection(&settings)?;
                let pc = Arc::new(pc);
                let api = o.api;
                tasks.push(tokio::spawn(async move {
                    let t0 = Instant::now();
                    let offer = pc.offer().await?;
                    let (status, location, answer) = http(api, "POST", "/v1/calls", &offer).await?;
                    if status != 201 {
                        return Err(LoadError::Http(format!(
                            "POST /v1/calls: {status} {answer}"
                        )));
                    }
                    pc.apply_answer(&answer).await?;
                    Ok::<_, LoadError>((LoadCall { pc, location }, t0.elapsed()))
                }));
            }
            for t in tasks {
                let (call, took) = t.await.map_err(|e| LoadError::Http(e.to_string()))??;
                setup.push(took.as_secs_f64() * 1000.0);
                calls.lock().expect("calls").push(call);
            }
            todo -= batch;
        }
        tokio::time::sleep(Duration::from_secs(2)).await; // ICE + DTLS settle
        let before = rx_frames(&calls, pc_of);
        let s0 = sample(o.gateway_pid)?;
        let t0 = Instant::now();
        tokio::time::sleep(o.hold).await;
        let s1 = sample(o.gateway_pid)?;
        let wall = t0.elapsed().as_secs_f64();
        let expected = wall * 100.0;
        let with_audio = calls_with_audio(&calls, pc_of, &before, expected);
        let cpu = (s1.cpu_ticks - s0.cpu_ticks) as f64 / CLK_TCK / wall * 100.0;
        let per_call = cpu / n as f64;
        let _ = writeln!(
            out,
            "| {n} | {:.1} | {:.1} | {cpu:.1} | {per_call:.2} | {:.2} | {:.1} | {:.0} | {} | {with_audio}/{n} |",
            percentile(&mut setup.clone(), 0.5),
            percentile(&mut setup, 0.95),
            per_call / codec_pct,
            s1.rss_kib as f64 / 1024.0,
            s1.rss_kib.saturating_sub(idle.rss_kib) as f64 / n as f64,
            s1.threads,
        );
        tracing::info!(calls = n, cpu_pct = cpu, "load step measured");
    }
    let all: Vec<LoadCall> = std::mem::take(&mut *calls.lock().expect("calls"));
    for c in &all {
        let _ = http(o.api, "DELETE", &c.location, "").await;
    }
    pump.abort();
    tokio::task::spawn_blocking(move || drop(all)).await.ok();
    Ok(out)
}

/// CPU time of the calling thread (from /proc: std has no thread clock),
/// at the kernel's 10 ms tick resolution.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The legacy leg's per-stream media cost, in process and in virtual time:
/// for each of `streams` streams, every 10 ms: RTP validation and
/// accounting, NetEq insert (every ptime) and 10 ms of playout, and encoding
/// 10 ms of outgoing audio into RTP. Returns a Markdown table row per codec,
/// with the codec-only cost (encode + decode) measured in the same run.
pub fn bench_legacy(streams: usize, secs: u64) -> Result<String, RtcError> {
    use rtcgw::rtc::legacy::{CodecSpec, Encoder, NetEq, NetEqSettings};
    use rtcgw_proto::rtp::id::{Pt, Ssrc};
    use rtcgw_proto::rtp::session::{Received, RtpSession, SessionConfig};

    let codecs = [
        ("PCMU", 0u8, 8000u32, 1u32, ""),
        ("G722", 9, 8000, 1, ""),
        ("opus", 111, 48000, 2, "useinbandfec=1"),
    ];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| codec | streams | virtual s | CPU s | CPU % of a core per stream | codec-only % per stream | ratio |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for (name, pt, rate, ch, fmtp) in codecs {
        let spec = CodecSpec {
            payload_type: pt,
            name: name.into(),
            clock_rate: rate,
            channels: ch,
            fmtp: fmtp.into(),
        };
        let start = Instant::now();
        let from: SocketAddr = "127.0.0.1:4000".parse().expect("literal");
        // The far end's packets: one 20 ms stream, reused by every stream.
        let far = Encoder::new(&spec, 20, 0)?;
        // The outgoing audio, generated up front so that neither loop pays for it.
        let mut tone = Tone::new(700.0);
        let frames: Vec<Vec<i16>> = (0..secs * 100)
            .map(|_| {
                let mut f = Vec::new();
                tone.next_frame(&mut f);
                f
            })
            .collect();
        let mut payload = Vec::new();
        let mut packets = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            if let Some(ts) = far.encode(f, Tone::RATE, &mut payload) {
                let mut pkt = Vec::new();
                rtcgw_proto::rtp::packet::RtpPacket {
                    marker: false,
                    payload_type: Pt(pt),
                    seq: i as u16 / 2,
                    timestamp: ts,
                    ssrc: Ssrc(9),
                    payload: &payload,
                }
                .write(&mut pkt);
                packets.push(pkt);
            }
        }
        let settings = NetEqSettings {
            max_packets: 50,
            fast_accelerate: false,
            min_delay_ms: 0,
        };
        let mut legs = Vec::new();
        for _ in 0..streams {
            let cfg = SessionConfig {
                remote: from,
                strict_source: false,
                audio_pt: Pt(pt),
                dtmf_pt: None,
                clock_rate: rate,
                media_timeout: Duration::from_secs(3600),
                rtcp_interval: Duration::from_secs(5),
                local_ssrc: Ssrc(1),
                initial_seq: 0,
            };
            legs.push((
                RtpSession::new(cfg, start),
                NetEq::new(settings, std::slice::from_ref(&spec), start)?,
                Encoder::new(&spec, 20, 0)?,
            ));
        }
        let (mut pcm, mut enc_out, mut rtp_out) = (Vec::new(), Vec::new(), Vec::new());
        let cpu0 = thread_cpu();
        for tick in 0..secs * 100 {
            let now = start + Duration::from_millis(tick * 10);
            let f = &frames[tick as usize];
            for (session, neteq, encoder) in legs.iter_mut() {
                if tick % 2 == 0 {
                    let pkt = &packets[(tick / 2) as usize];
                    if let Received::Media(p) = session.handle_datagram(now, from, pkt) {
                        neteq.insert(now, &p);
                    }
                }
                neteq.get_audio(now, &mut pcm);
                if let Some(ts) = encoder.encode(f, Tone::RATE, &mut enc_out) {
                    session.build_rtp(&enc_out, ts, Pt(pt), false, &mut rtp_out);
                }
            }
        }
        let cpu = (thread_cpu() - cpu0).as_secs_f64();
        let per_stream = cpu / secs as f64 / streams as f64 * 100.0;
        // Codec only: one encoder and one NetEq-free decode path, via an
        // encoder + NetEq pair fed in order (the smallest libwebrtc path).
        let enc = Encoder::new(&spec, 20, 0)?;
        let dec = NetEq::new(settings, std::slice::from_ref(&spec), start)?;
        let c0 = thread_cpu();
        let reps = 20u64;
        for r in 0..reps {
            for i in 0..secs * 100 {
                let f = &frames[i as usize];
                let now = start + Duration::from_millis((r * secs * 100 + i) * 10);
                if let Some(ts) = enc.encode(f, Tone::RATE, &mut enc_out) {
                    let p = rtcgw_proto::rtp::packet::RtpPacket {
                        seq: (r * secs * 50 + i / 2) as u16,
                        timestamp: ts,
                        ssrc: Ssrc(3),
                        payload_type: Pt(pt),
                        marker: false,
                        payload: &enc_out,
                    };
                    dec.insert(now, &p);
                }
                dec.get_audio(now, &mut pcm);
            }
        }
        let codec_only = (thread_cpu() - c0).as_secs_f64() / (reps * secs) as f64 * 100.0;
        let _ = writeln!(
            out,
            "| {name} | {streams} | {secs} | {cpu:.2} | {per_stream:.3} | {codec_only:.3} | {:.2} |",
            per_stream / codec_only.max(1e-9)
        );
    }
    Ok(out)
}
