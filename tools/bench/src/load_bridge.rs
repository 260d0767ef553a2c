//! `rtcgw load-bridge`: the load side of the bridged-call capacity benchmark,
//! one process on loopback playing every party but the gateway:
//!
//! * WebRTC callers: libwebrtc offerers (Opus over DTLS-SRTP) that call the
//!   gateway with a minimal SIP UAC over UDP (INVITE with the offer, ACK,
//!   BYE), sending recorded speech. So that the callers cost far less than
//!   what they load, the speech is Opus-encoded once and every caller
//!   replays the packets, and only one caller in `sample_every` decodes what
//!   it hears (the others' NetEq plays silence): those are checked for
//!   speech, every call for its packets (load_codecs.h);
//! * the SIP callee the gateway's outbound legs reach (its `route.target`):
//!   200 with a PCMU answer pointing at
//! * an RTP reflector that echoes each leg's RTP back to where it came from,
//!   so the audio goes browser -> Opus -> PCMU -> echo -> NetEq -> Opus ->
//!   browser.
//!
//! Per step of concurrent calls it reports the gateway's late 10 ms frames
//! (its /metrics), CPU, RSS and threads (/proc), against the codec-only
//! ceiling (per call an Opus decode, a PCMU encode + decode and an Opus
//! encode with the gateway's settings, on the same speech) measured in the
//! same run.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::load::{CLK_TCK, LoadError, client_runtime, http, percentile, sample};
use crate::ng::NgClient;
use rtcgw::rtc::{CallSettings, LoadCodecs, PeerConnection, Runtime, media_stats};
use rtcgw_proto::sip::message::{Message, NameAddr, Request, Response};

#[derive(Debug, Clone)]
pub struct BridgeLoadOptions {
    /// The gateway's SIP address (UDP).
    pub sip: SocketAddr,
    /// The gateway's HTTP API (for /metrics).
    pub api: SocketAddr,
    /// The gateway's process id, for CPU/RSS/thread sampling.
    pub gateway_pid: u32,
    /// Where this process answers as the SIP callee: the gateway's
    /// `route.target` must point here.
    pub callee: SocketAddr,
    /// The RTP reflector's address (RTCP goes to the port above it); port
    /// 0 takes any free pair.
    pub rtp: SocketAddr,
    /// Concurrent call counts to measure, ascending.
    pub steps: Vec<usize>,
    /// How long each step is measured once its calls are up.
    pub hold: Duration,
    /// Stop stepping up once this share of 10 ms frames (%) is late.
    pub max_late_pct: f64,
    /// Cores the gateway may use, for the codec-only ceiling in calls.
    pub gateway_cores: f64,
    /// Local media address of the WebRTC callers.
    pub address: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
    /// rtpengine's ng control address: the callers' offers go to this
    /// rtpengine (ng `offer`/`answer`, transcoding WebRTC Opus to plain
    /// PCMU on the echo) instead of to a gateway over SIP; `gateway_pid`
    /// is then rtpengine's. rtpengine counts no late frames: a step passes
    /// when at least 99% of the calls have audio and rtpengine is under 95%
    /// CPU of its cores.
    pub rtpengine_ng: Option<SocketAddr>,
    /// Appends one tab-separated line per step (and a closing `best` line)
    /// here, for scripts that put several runs side by side.
    pub tsv: Option<std::path::PathBuf>,
    /// One call in this many decodes what it hears (checked for speech).
    pub sample_every: usize,
    /// Where the recorded speech comes from (speech.rs).
    pub speech_dir: std::path::PathBuf,
    /// The gateway's Opus audio bandwidth in the codec-only ceiling.
    pub ceiling_max_playback_hz: i32,
    /// Offer the steps' calls whatever the gateway says: calls refused
    /// with 503 are counted, not a reason to stop; the step is measured on
    /// the calls admitted.
    pub overload: bool,
    /// New calls per second (batches of 10 paced to it); 0: each batch as
    /// soon as the one before is up.
    pub rate: f64,
}

/// Speech seconds the callers replay (and the ceiling encodes).
const SPEECH_SECONDS: f64 = 60.0;
/// A received 10 ms frame above this RMS counts as speech (about -40 dBFS).
const SPEECH_RMS: f64 = 330.0;

/// Share of 10 ms frames of `pcm` (at `rate`) that are speech.
fn speech_share(pcm: &[i16], rate: u32) -> f64 {
    let frames = pcm.chunks_exact((rate / 100) as usize);
    let total = frames.len().max(1);
    frames.filter(|f| is_speech(f)).count() as f64 / total as f64
}

fn is_speech(frame: &[i16]) -> bool {
    let energy: f64 = frame.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    (energy / frame.len().max(1) as f64).sqrt() > SPEECH_RMS
}

/// How long a caller waits for the gateway's final response.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// One SIP dialog of a caller, as far as ACK and BYE need it.
struct Dialog {
    call_id: String,
    /// The To header with the gateway's tag.
    to: String,
    /// The remote target (the 2xx's Contact). No route set: the benchmark
    /// talks to the gateway directly, which does not Record-Route.
    target: String,
}

/// The WebRTC callers' SIP side: one UDP socket, responses dispatched to
/// the waiting call by Call-ID.
struct Caller {
    sock: UdpSocket,
    gateway: SocketAddr,
    local: SocketAddr,
    waiting: Mutex<HashMap<String, mpsc::UnboundedSender<Response>>>,
    /// BYEs the gateway sent (calls it ended on its own).
    gateway_byes: AtomicU64,
    next: AtomicU64,
}

impl Caller {
    fn request(
        &self,
        method: &str,
        uri: &str,
        call_id: &str,
        to: &str,
        cseq: u32,
        body: &str,
    ) -> String {
        let local = self.local;
        let branch = self.next.fetch_add(1, Ordering::Relaxed);
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKlb{branch};rport\r\n\
             From: <sip:bench@{ip}>;tag=lb\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:bench@{local}>\r\nMax-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len(),
            ip = local.ip(),
        )
    }

    async fn send(&self, text: String) -> Result<(), LoadError> {
        self.sock
            .send_to(text.as_bytes(), self.gateway)
            .await
            .map(|_| ())
            .map_err(|e| LoadError::Sip(format!("send: {e}")))
    }

    /// Receives until the socket fails: responses go to their call, the
    /// gateway's own requests (BYE) are answered 200.
    async fn dispatch(self: Arc<Self>) {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = self.sock.recv_from(&mut buf).await else {
                break;
            };
            match Message::parse(&buf[..n]) {
                Ok(Message::Response(r)) => {
                    let id = r.headers.get("Call-ID").unwrap_or_default().to_string();
                    if let Some(tx) = self.waiting.lock().expect("waiting").get(&id) {
                        let _ = tx.send(r);
                    }
                }
                Ok(Message::Request(req)) => {
                    if req.method.as_str() == "BYE" {
                        self.gateway_byes.fetch_add(1, Ordering::Relaxed);
                    }
                    if req.method.as_str() != "ACK" {
                        let ok = Message::Response(Response::to(&req, 200, "OK", None));
                        let _ = self.sock.send_to(&ok.to_bytes(), from).await;
                    }
                }
                Err(e) => tracing::warn!("load-bridge caller: unparsable SIP: {e}"),
            }
        }
    }

    /// INVITE with `offer`, ACK the 2xx; returns the dialog and the answer.
    async fn invite(&self, user: &str, offer: &str) -> Result<(Dialog, String), LoadError> {
        let call_id = format!(
            "lb-{}-{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.waiting
            .lock()
            .expect("waiting")
            .insert(call_id.clone(), tx);
        let result = self.invite_dialog(user, offer, &call_id, &mut rx).await;
        self.waiting.lock().expect("waiting").remove(&call_id);
        result
    }

    async fn invite_dialog(
        &self,
        user: &str,
        offer: &str,
        call_id: &str,
        rx: &mut mpsc::UnboundedReceiver<Response>,
    ) -> Result<(Dialog, String), LoadError> {
        let uri = format!("sip:{user}@{}", self.gateway);
        let to = format!("<sip:{user}@{}>", self.gateway.ip());
        // No retransmission (RFC 3261 17.1.1.2): loopback does not lose
        // datagrams, and a lost INVITE shows up as a failed setup.
        self.send(self.request("INVITE", &uri, call_id, &to, 1, offer))
            .await?;
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        loop {
            let r = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .map_err(|_| LoadError::Sip(format!("no final response to INVITE {call_id}")))?
                .ok_or_else(|| LoadError::Sip("caller socket closed".into()))?;
            if r.status < 200 {
                continue;
            }
            if r.status >= 300 {
                return Err(LoadError::Sip(format!("INVITE: {} {}", r.status, r.reason)));
            }
            let to = r.headers.get("To").unwrap_or_default().to_string();
            let target = r
                .headers
                .get("Contact")
                .and_then(NameAddr::parse)
                .map_or(uri.clone(), |c| c.uri);
            let d = Dialog {
                call_id: call_id.to_string(),
                to,
                target,
            };
            self.send(self.request("ACK", &d.target, call_id, &d.to, 1, ""))
                .await?;
            return Ok((d, String::from_utf8_lossy(&r.body).into_owned()));
        }
    }

    /// BYE; waits (briefly) for the 200 so that the gateway has ended the
    /// call before the next step is measured.
    async fn bye(&self, d: &Dialog) -> Result<(), LoadError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.waiting
            .lock()
            .expect("waiting")
            .insert(d.call_id.clone(), tx);
        self.send(self.request("BYE", &d.target, &d.call_id, &d.to, 2, ""))
            .await?;
        let r = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(r) = rx.recv().await {
                if r.status >= 200 {
                    return Some(r.status);
                }
            }
            None
        })
        .await;
        self.waiting.lock().expect("waiting").remove(&d.call_id);
        match r {
            Ok(Some(200)) => Ok(()),
            other => Err(LoadError::Sip(format!("BYE {}: {other:?}", d.call_id))),
        }
    }
}

/// The SIP callee: every INVITE is answered 200 at once with PCMU on the
/// reflector; BYE (and anything but ACK) gets 200.
async fn callee(sock: UdpSocket, rtp: SocketAddr, invites: Arc<AtomicU64>) {
    let local = sock.local_addr().expect("bound socket");
    let sdp = echo_sdp(rtp);
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            break;
        };
        let req: Request = match Message::parse(&buf[..n]) {
            Ok(Message::Request(r)) => r,
            Ok(Message::Response(_)) => continue,
            Err(e) => {
                tracing::warn!("load-bridge callee: unparsable SIP: {e}");
                continue;
            }
        };
        let mut resp = match req.method.as_str() {
            "ACK" => continue,
            "INVITE" => {
                // A retransmitted INVITE gets the same 200 again.
                invites.fetch_add(1, Ordering::Relaxed);
                let mut r = Response::to(&req, 200, "OK", Some("callee"));
                r.headers.push("Content-Type", "application/sdp");
                r.body = sdp.clone().into_bytes();
                r
            }
            _ => Response::to(&req, 200, "OK", Some("callee")),
        };
        resp.headers
            .push("Contact", format!("<sip:callee@{local}>"));
        let _ = sock
            .send_to(&Message::Response(resp).to_bytes(), from)
            .await;
    }
}

/// An RTP socket and the RTCP one above it; port 0: any free pair.
fn bind_pair(rtp: SocketAddr) -> std::io::Result<(std::net::UdpSocket, std::net::UdpSocket)> {
    let mut last = None;
    for _ in 0..16 {
        let sock = std::net::UdpSocket::bind(rtp)?;
        let port = sock.local_addr()?.port();
        match std::net::UdpSocket::bind(SocketAddr::new(rtp.ip(), port.wrapping_add(1))) {
            Ok(rtcp) => return Ok((sock, rtcp)),
            Err(e) if rtp.port() == 0 => last = Some(e), // taken: try another pair
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port pair")))
}

/// Echoes RTP back to its source, drops RTCP; runs on its own thread (a
/// plain blocking loop costs the load client least) until `stop`.
fn spawn_reflector(
    rtp: SocketAddr,
    stop: Arc<AtomicBool>,
) -> Result<(SocketAddr, std::thread::JoinHandle<u64>), LoadError> {
    let e = |x: std::io::Error| LoadError::Sip(format!("RTP reflector on {rtp}: {x}"));
    let (sock, rtcp) = bind_pair(rtp).map_err(e)?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(e)?;
    let bound = sock.local_addr().map_err(e)?;
    let thread = std::thread::spawn(move || {
        let _rtcp = rtcp; // bound so the gateway's RTCP has somewhere to go
        let mut buf = [0u8; 2048];
        let mut echoed = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue; // timeout: check `stop`
            };
            if n >= 12 && !rtcgw_proto::rtp::packet::is_rtcp(&buf[..n]) {
                let _ = sock.send_to(&buf[..n], from);
                echoed += 1;
            }
        }
        echoed
    });
    Ok((bound, thread))
}

/// How a call was set up, so that it can be ended the same way.
enum Leg {
    /// Over SIP through the gateway.
    Sip(Dialog),
    /// Through rtpengine over ng: its call-id.
    Ng(String),
}

struct BridgedCall {
    pc: Arc<PeerConnection>,
    leg: Leg,
    /// A sampled call (real decoders): its 10 ms frames heard with speech.
    speech_frames: Option<Arc<AtomicU64>>,
}

/// The echo's SDP: PCMU on the reflector, as the SIP callee answers and as
/// the plain side answers rtpengine.
fn echo_sdp(rtp: SocketAddr) -> String {
    format!(
        "v=0\r\no=lb 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    )
}

/// CPU ticks the whole machine spent busy (user, nice, system, irq,
/// softirq, steal), from /proc/stat: what is neither the gateway nor the
/// load client is other work on the machine (the noise in the figures).
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user)
    Some(f.iter().take(8).sum::<u64>() - f.get(3)? - f.get(4)?)
}

/// The gateway's counters from /metrics that the benchmark reads.
#[derive(Debug, Clone, Copy, Default)]
struct GatewayFrames {
    frames: u64,
    late: u64,
    clock_stalls: u64,
}

/// The gateway's frame counters, or zeros where there is no gateway
/// (rtpengine mode).
async fn frames_of(gateway: bool, api: SocketAddr) -> Result<GatewayFrames, LoadError> {
    if gateway {
        gateway_frames(api).await
    } else {
        Ok(GatewayFrames::default())
    }
}

async fn gateway_frames(api: SocketAddr) -> Result<GatewayFrames, LoadError> {
    let (status, _, body) = http(api, "GET", "/metrics", "").await?;
    if status != 200 {
        return Err(LoadError::Http(format!("GET /metrics: {status}")));
    }
    Ok(parse_frames(&body))
}

fn parse_frames(metrics: &str) -> GatewayFrames {
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    };
    GatewayFrames {
        frames: value("rtcgw_media_frames_total"),
        late: value("rtcgw_media_late_frames_total"),
        clock_stalls: value("rtcgw_audio_clock_stalls_total"),
    }
}

/// The callers' two libwebrtc runtimes, each on half of the port range:
/// `sampled` decodes what it hears, `silent` does not.
struct Callers {
    sampled: Runtime,
    silent: Runtime,
    sample_every: usize,
    /// New calls per second; 0: as fast as they come up.
    rate: f64,
}

/// Sets up `n` bridged calls, `batch` at a time; returns setup times (ms).
/// With `refused`, calls refused with 503 are counted there instead of
/// failing the whole.
async fn set_up(
    runtimes: &Callers,
    caller: &Arc<Caller>,
    ng: Option<&Arc<NgClient>>,
    rtp: SocketAddr,
    calls: &Arc<Mutex<Vec<BridgedCall>>>,
    n: usize,
    mut refused: Option<&mut usize>,
) -> Result<Vec<f64>, LoadError> {
    let rate = runtimes.rate;
    let settings = CallSettings {
        jitter_buffer_max_packets: 200,
        jitter_buffer_fast_accelerate: false,
        jitter_buffer_min_delay_ms: 0,
        ice_gathering_timeout_ms: 2000,
    };
    let mut setup = Vec::new();
    let mut todo = n;
    while todo > 0 {
        let batch = todo.min(10);
        let paced =
            (rate > 0.0).then(|| Instant::now() + Duration::from_secs_f64(batch as f64 / rate));
        let mut tasks = Vec::new();
        let first = calls.lock().expect("calls").len() + (n - todo);
        for i in first..first + batch {
            let sampled = i % runtimes.sample_every == 0;
            let runtime = if sampled {
                &runtimes.sampled
            } else {
                &runtimes.silent
            };
            let (pc, _events) = runtime.create_peer_connection(&settings)?;
            let pc = Arc::new(pc);
            let caller = caller.clone();
            let ng = ng.cloned();
            tasks.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let offer = pc.offer().await?;
                let signalled = match &ng {
                    None => caller
                        .invite("echo", &offer)
                        .await
                        .map(|(d, answer)| (Leg::Sip(d), answer)),
                    Some(ng) => {
                        let id = format!(
                            "lb-ng-{}-{}",
                            std::process::id(),
                            caller.next.fetch_add(1, Ordering::Relaxed)
                        );
                        ng.bridge(&id, &offer, &echo_sdp(rtp))
                            .await
                            .map(|answer| (Leg::Ng(id), answer))
                    }
                };
                let (leg, answer) = match signalled {
                    Ok(x) => x,
                    Err(e) => {
                        tokio::task::spawn_blocking(move || pc.close());
                        return Err(e);
                    }
                };
                pc.apply_answer(&answer).await?;
                let speech_frames = sampled.then(Arc::default);
                Ok::<_, LoadError>((
                    BridgedCall {
                        pc,
                        leg,
                        speech_frames,
                    },
                    t0.elapsed(),
                ))
            }));
        }
        let mut failed = None;
        for t in tasks {
            match t.await.map_err(|e| LoadError::Sip(e.to_string()))? {
                Ok((call, took)) => {
                    setup.push(took.as_secs_f64() * 1000.0);
                    calls.lock().expect("calls").push(call);
                }
                Err(LoadError::Sip(e)) if refused.is_some() && e.starts_with("INVITE: 503") => {
                    if let Some(r) = refused.as_deref_mut() {
                        *r += 1;
                    }
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        todo -= batch;
        if let Some(t) = paced {
            tokio::time::sleep_until(t.into()).await;
        }
    }
    Ok(setup)
}

/// Every 10 ms tick, the sampled calls' received audio is drained and its
/// speech frames counted.
fn spawn_listener(
    runtime: &Runtime,
    calls: Arc<Mutex<Vec<BridgedCall>>>,
) -> tokio::task::JoinHandle<()> {
    let mut ticks = runtime.ticks();
    tokio::spawn(async move {
        let mut rx = Vec::new();
        while ticks.changed().await.is_ok() {
            let sampled: Vec<(Arc<PeerConnection>, Arc<AtomicU64>)> = calls
                .lock()
                .expect("calls")
                .iter()
                .filter_map(|c| Some((c.pc.clone(), c.speech_frames.clone()?)))
                .collect();
            for (pc, frames) in sampled {
                while pc.pull_audio(&mut rx).is_some() {
                    if is_speech(&rx) {
                        frames.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    })
}

/// Per call, in order: RTP packets received so far and, for a sampled call,
/// the speech frames it heard.
async fn heard(calls: &Mutex<Vec<BridgedCall>>) -> Vec<(u64, Option<u64>)> {
    let (pcs, speech): (Vec<_>, Vec<_>) = calls
        .lock()
        .expect("calls")
        .iter()
        .map(|c| {
            let frames = c.speech_frames.as_ref().map(|f| f.load(Ordering::Relaxed));
            (c.pc.clone(), frames)
        })
        .unzip();
    let refs: Vec<&PeerConnection> = pcs.iter().map(AsRef::as_ref).collect();
    media_stats(&refs, false)
        .await
        .iter()
        .zip(speech)
        .map(|(s, f)| (s.as_ref().map_or(0, |s| s.packets_received), f))
        .collect()
}

/// Between two [`heard`] readings `wall` seconds apart: the calls with
/// audio (at least 90% of 50 packets a second and, for a sampled call,
/// speech in at least half as many frames as the source has), the sampled
/// calls, and the sampled calls that heard speech.
fn audio_check(
    before: &[(u64, Option<u64>)],
    after: &[(u64, Option<u64>)],
    wall: f64,
    source_share: f64,
) -> (usize, usize, usize) {
    let want_packets = 0.9 * 50.0 * wall;
    let want_speech = 0.5 * source_share * 100.0 * wall;
    let (mut with_audio, mut sampled, mut speech) = (0, 0, 0);
    for ((p0, s0), (p1, s1)) in before.iter().zip(after) {
        let packets = p1.saturating_sub(*p0) as f64 >= want_packets;
        let heard_speech = match (s0, s1) {
            (Some(a), Some(b)) => {
                sampled += 1;
                let ok = b.saturating_sub(*a) as f64 >= want_speech;
                speech += usize::from(ok);
                ok
            }
            _ => true,
        };
        with_audio += usize::from(packets && heard_speech);
    }
    (with_audio, sampled, speech)
}

/// Runs the steps and returns a Markdown report.
pub async fn run_bridge(o: BridgeLoadOptions) -> Result<String, LoadError> {
    let speech = crate::speech::load(&o.speech_dir, SPEECH_SECONDS).map_err(LoadError::Sip)?;
    let source_share = speech_share(&speech, crate::speech::RATE);
    let codecs = |silent_decoders| LoadCodecs {
        replay_pcm: speech.clone(),
        replay_rate: crate::speech::RATE,
        silent_decoders,
    };
    let mid = o.port_min + (o.port_max - o.port_min) / 2;
    let runtimes = Callers {
        sampled: client_runtime(o.address, o.port_min, mid, codecs(false))?,
        silent: client_runtime(o.address, mid + 1, o.port_max, codecs(true))?,
        sample_every: o.sample_every,
        rate: o.rate,
    };
    let sip_err = |e: std::io::Error| LoadError::Sip(e.to_string());
    let sock = UdpSocket::bind(SocketAddr::new(o.sip.ip(), 0))
        .await
        .map_err(sip_err)?;
    let caller = Arc::new(Caller {
        local: sock.local_addr().map_err(sip_err)?,
        sock,
        gateway: o.sip,
        waiting: Mutex::default(),
        gateway_byes: AtomicU64::new(0),
        next: AtomicU64::new(1),
    });
    let dispatcher = tokio::spawn(caller.clone().dispatch());
    let invites = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (rtp, reflector) = spawn_reflector(o.rtp, stop.clone())?;
    let ng = o.rtpengine_ng.map(|a| Arc::new(NgClient::new(a)));
    let callee_task = match &ng {
        None => {
            let callee_sock = UdpSocket::bind(o.callee).await.map_err(sip_err)?;
            Some(tokio::spawn(callee(callee_sock, rtp, invites.clone())))
        }
        Some(ng) => {
            ng.ping().await?;
            None
        }
    };
    let (mode, who, who_idle) = if ng.is_some() {
        ("rtpengine", "rtpengine", "rtpengine")
    } else {
        ("rtcgw", "gateway", "Gateway")
    };
    let mut tsv = match &o.tsv {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| LoadError::Sip(format!("--tsv {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let mut tsv_line = |line: String| {
        if let Some(f) = tsv.as_mut() {
            use std::io::Write as _;
            let _ = writeln!(f, "{line}");
        }
    };

    let calls: Arc<Mutex<Vec<BridgedCall>>> = Arc::default();
    let pump = spawn_listener(&runtimes.sampled, calls.clone());

    let idle = sample(o.gateway_pid)?;
    // Codec-only ceiling: one call's codec work on the whole speech.
    let gateway_opus = rtcgw::config::OpusSettings::default();
    let ceiling_opus = crate::codec_only::CeilingOpus {
        bitrate_bps: gateway_opus.bitrate_bps as i32,
        complexity: gateway_opus.complexity.map_or(-1, i32::from),
        fec: gateway_opus.fec,
        dtx: gateway_opus.dtx,
        max_playback_hz: o.ceiling_max_playback_hz,
    };
    let speech_secs = speech.len() as f64 / f64::from(crate::speech::RATE);
    let codec_pct =
        crate::codec_only::bridge_codecs_cpu(&speech, crate::speech::RATE, &ceiling_opus)
            .ok_or_else(|| LoadError::Sip("codec-only ceiling: a codec failed".into()))?
            .as_secs_f64()
            / speech_secs
            * 100.0;
    let per_core = 100.0 / codec_pct;
    let ceiling = per_core * o.gateway_cores;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Load: {speech_secs:.0} s of recorded speech (asterisk-core-sounds-en-wav, {:.0}% of \
         its 10 ms frames speech) from every caller, Opus-encoded once and replayed; one call \
         in {} decodes what it hears.\n\
         Codec-only ceiling, same run, same speech: per call an Opus decode, a PCMU encode + \
         decode and an Opus encode with the gateway's default settings (FEC {}, complexity \
         {}, audio bandwidth {} Hz) = {codec_pct:.3}% of one core, i.e. {per_core:.0} calls \
         per core, **{ceiling:.0} calls on the {who}'s {} core(s)**.\n\
         {who_idle} idle: RSS {:.1} MiB, {} threads.\n",
        source_share * 100.0,
        o.sample_every,
        if ceiling_opus.fec { "on" } else { "off" },
        gateway_opus
            .complexity
            .map_or("libwebrtc's default".to_string(), |c| c.to_string()),
        o.ceiling_max_playback_hz,
        o.gateway_cores,
        idle.rss_kib as f64 / 1024.0,
        idle.threads
    );
    let _ = writeln!(
        out,
        "| calls | setup p50 ms | setup p95 ms | late frames % | {who} CPU % | CPU %/call | RSS MiB | RSS KiB/call | threads | clock stalls | load client CPU % | other processes CPU % | calls with audio | sampled calls hearing speech | refused (503) |"
    );
    let _ = writeln!(
        out,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );

    let mut best: Option<usize> = None;
    let mut stopped = String::new();
    for &offered in &o.steps {
        let have = calls.lock().expect("calls").len();
        let mut refused = 0;
        let mut setup = match set_up(
            &runtimes,
            &caller,
            ng.as_ref(),
            rtp,
            &calls,
            offered.saturating_sub(have),
            o.overload.then_some(&mut refused),
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                let up = calls.lock().expect("calls").len();
                stopped = format!("Stopped at {offered} calls: setup failed with {up} up ({e}).");
                break;
            }
        };
        // The calls measured: all offered, or those admitted (--overload).
        let n = calls.lock().expect("calls").len();
        if n == 0 {
            stopped = format!("Stopped at {offered} calls: none admitted ({refused} refused).");
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await; // ICE + DTLS settle
        let heard_before = heard(&calls).await;
        let (f0, s0, c0, m0) = (
            frames_of(ng.is_none(), o.api).await?,
            sample(o.gateway_pid)?,
            sample(std::process::id())?,
            machine_busy_ticks(),
        );
        let t0 = Instant::now();
        tokio::time::sleep(o.hold).await;
        let (f1, s1, c1, m1) = (
            frames_of(ng.is_none(), o.api).await?,
            sample(o.gateway_pid)?,
            sample(std::process::id())?,
            machine_busy_ticks(),
        );
        let wall = t0.elapsed().as_secs_f64();
        let heard_after = heard(&calls).await;
        let (with_audio, sampled, sampled_speech) =
            audio_check(&heard_before, &heard_after, wall, source_share);
        let frames = f1.frames - f0.frames;
        let late_pct = (f1.late - f0.late) as f64 / frames.max(1) as f64 * 100.0;
        let cpu = (s1.cpu_ticks - s0.cpu_ticks) as f64 / CLK_TCK / wall * 100.0;
        let client_cpu = (c1.cpu_ticks - c0.cpu_ticks) as f64 / CLK_TCK / wall * 100.0;
        let others = match (m0, m1) {
            (Some(m0), Some(m1)) => {
                let busy = m1.saturating_sub(m0) as f64 / CLK_TCK / wall * 100.0;
                format!("{:.0}", (busy - cpu - client_cpu).max(0.0))
            }
            _ => "?".into(),
        };
        let stalls = f1.clock_stalls - f0.clock_stalls;
        let (late_cell, stalls_cell) = if ng.is_some() {
            ("n/a".to_string(), "n/a".to_string())
        } else {
            (format!("{late_pct:.2}"), stalls.to_string())
        };
        let (p50, p95) = (
            percentile(&mut setup.clone(), 0.5),
            percentile(&mut setup, 0.95),
        );
        let _ = writeln!(
            out,
            "| {n} | {p50:.1} | {p95:.1} | {late_cell} | {cpu:.1} | {:.2} | {:.1} | {:.0} | {} | {stalls_cell} | {client_cpu:.0} | {others} | {with_audio}/{n} | {sampled_speech}/{sampled} | {refused} |",
            cpu / n as f64,
            s1.rss_kib as f64 / 1024.0,
            s1.rss_kib.saturating_sub(idle.rss_kib) as f64 / n as f64,
            s1.threads,
        );
        tracing::info!(
            calls = n,
            late_pct,
            cpu_pct = cpu,
            frames,
            clock_stalls = stalls,
            "bridge load step measured"
        );
        // rtpengine: no late-frame counter; calls with audio and its CPU.
        let verdict = if ng.is_some() {
            if (with_audio as f64) < 0.99 * n as f64 {
                Some(format!(
                    "Stopped at {n} calls: only {with_audio} had audio (criterion: 99%)."
                ))
            } else if cpu >= 95.0 * o.gateway_cores {
                Some(format!(
                    "Stopped at {n} calls: rtpengine at {cpu:.0}% CPU (criterion: under 95% of its {} core(s)).",
                    o.gateway_cores
                ))
            } else {
                None
            }
        } else if (with_audio as f64) < 0.99 * n as f64 {
            Some(format!(
                "Stopped at {n} calls: only {with_audio} had audio (criterion: 99%)."
            ))
        } else if frames < (n as f64 * wall * 100.0 * 0.9) as u64 {
            // Fewer frames than the calls should have: calls are not up.
            Some(format!(
                "Stopped at {n} calls: the gateway counted {frames} media frames, \
                 fewer than {n} calls should have."
            ))
        } else if late_pct >= o.max_late_pct {
            Some(format!(
                "Stopped at {n} calls: {late_pct:.2}% of frames late (limit {}%).",
                o.max_late_pct
            ))
        } else {
            None
        };
        tsv_line(format!(
            "step\t{mode}\t{n}\t{p50:.1}\t{p95:.1}\t{late_cell}\t{cpu:.1}\t{:.1}\t{with_audio}\t{client_cpu:.0}\t{}\t{offered}\t{refused}",
            s1.rss_kib as f64 / 1024.0,
            u8::from(verdict.is_none())
        ));
        if let Some(v) = verdict {
            stopped = v;
            break;
        }
        best = Some(n);
    }
    tsv_line(format!(
        "best\t{mode}\t{}\t{}",
        best.unwrap_or(0),
        if stopped.is_empty() {
            "largest step tried"
        } else {
            &stopped
        }
    ));
    match best {
        Some(b) => {
            let criterion = if ng.is_some() {
                "with audio on 99% of the calls and rtpengine under 95% CPU".to_string()
            } else {
                format!("with under {}% of frames late", o.max_late_pct)
            };
            let _ = writeln!(
                out,
                "\nMost concurrent bridged calls {criterion}: **{b}** = \
                 **{:.1}% of the codec-only ceiling** ({ceiling:.0}). {}",
                b as f64 / ceiling * 100.0,
                if stopped.is_empty() {
                    "(The largest step tried: the real figure may be higher.)".to_string()
                } else {
                    stopped
                }
            );
        }
        None => {
            let _ = writeln!(out, "\nNo step passed. {stopped}");
        }
    }

    // Tear down: BYE every call, then close the PeerConnections off the runtime.
    let all: Vec<BridgedCall> = std::mem::take(&mut *calls.lock().expect("calls"));
    let mut bye_failures = 0;
    for c in &all {
        let ended = match (&c.leg, &ng) {
            (Leg::Sip(d), _) => caller.bye(d).await,
            (Leg::Ng(id), Some(ng)) => ng.delete(id).await,
            (Leg::Ng(_), None) => Ok(()),
        };
        if let Err(e) = ended {
            tracing::warn!("{e}");
            bye_failures += 1;
        }
    }
    pump.abort();
    stop.store(true, Ordering::Relaxed);
    let echoed = reflector.join().unwrap_or(0);
    tracing::info!(
        callee_invites = invites.load(Ordering::Relaxed),
        gateway_byes = caller.gateway_byes.load(Ordering::Relaxed),
        bye_failures,
        rtp_echoed = echoed,
        "bridge load done"
    );
    if ng.is_some() {
        let _ = writeln!(
            out,
            "\nng: {bye_failures} deletes failed at the end; the reflector echoed {echoed} RTP packets."
        );
    } else {
        let _ = writeln!(
            out,
            "\nSIP: {} outbound INVITEs reached the callee, {} calls were ended by the gateway \
             on its own, {bye_failures} BYEs failed at the end; the reflector echoed {echoed} RTP packets.",
            invites.load(Ordering::Relaxed),
            caller.gateway_byes.load(Ordering::Relaxed),
        );
    }
    dispatcher.abort();
    if let Some(t) = callee_task {
        t.abort();
    }
    tokio::task::spawn_blocking(move || {
        for c in all {
            c.pc.close();
        }
    })
    .await
    .ok();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_frame_counters_from_metrics() {
        let m = "# HELP rtcgw_media_frames_total x\n# TYPE rtcgw_media_frames_total counter\n\
                 rtcgw_media_frames_total 12000\nrtcgw_media_late_frames_total 37\n\
                 rtcgw_audio_clock_stalls_total 1\nrtcgw_media_frames_totalx 5\n";
        let f = parse_frames(m);
        assert_eq!((f.frames, f.late, f.clock_stalls), (12000, 37, 1));
    }
}
