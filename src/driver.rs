//! The driver: the one place with SIP sockets, timers and the channels
//! around call control. It feeds the sans-IO [`CallControl`] with SIP
//! datagrams and stream frames, the media side's results, the API's
//! requests and the time, and carries out what comes out: SIP to send,
//! media commands to run, replies to give. It decides nothing itself.
//!
//! Nothing on the call path is dropped here: media results come on an
//! unbounded channel (a few per call), API requests wait for room, replies
//! whose caller left are answered by hanging the call up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rtcgw_control::headroom::{Headroom, HeadroomLimits, LoadSample, Verdict};
use rtcgw_control::{
    ApiCall, ApiRequest, ApiToken, CallControl, CallId, EndReason, MediaEvent, Output, Refused,
};
use rtcgw_proto::sip::framing::StreamFramer;
use rtcgw_proto::sip::tsx::{Peer, Transport};
use rtcgw_proto::sip::ua::{IpNet, Outgoing};
use rtcgw_proto::stats::model::CallStats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::accept::AcceptBackoff;
use crate::media::Calls;
use crate::ng::{Action, Frontend};
use crate::stats::poller::StatsService;
use crate::tls::SipTls;
use rtcgw_proto::log_gate::LogGate;

/// The receive buffer asked for on SIP UDP sockets (Kamailio probes for up
/// to its maximum the same way).
const SIP_UDP_RCVBUF: usize = 4 << 20;

/// Largest SIP message accepted on a stream before the connection is closed.
const MAX_MESSAGE: usize = 64 * 1024;

/// The bound SIP sockets (bound first, so that errors surface at start):
/// UDP and TCP on each listen address, the first one's served in the
/// driver's loop, the others' by small tasks feeding the same loop.
pub struct SipSockets {
    /// With whether each is IPv6 (replies leave from the peer's family).
    udp: Vec<(bool, Arc<UdpSocket>)>,
    tcp: Vec<TcpListener>,
    tls: Vec<TcpListener>,
}

impl SipSockets {
    /// `addrs`: `sip.listen`, then `sip.also_listen`; `tls`:
    /// `sip.tls_listen`.
    pub async fn bind(addrs: &[SocketAddr], tls: &[SocketAddr]) -> std::io::Result<Self> {
        let mut s = Self {
            udp: Vec::new(),
            tcp: Vec::new(),
            tls: Vec::new(),
        };
        for &a in addrs {
            let udp = UdpSocket::bind(a).await?;
            // A burst (a softswitch's failover, a flood) waits in the
            // kernel instead of being dropped while the loop catches up;
            // capped by net.core.rmem_max.
            if let Err(e) = socket2::SockRef::from(&udp).set_recv_buffer_size(SIP_UDP_RCVBUF) {
                tracing::debug!("SIP UDP receive buffer: {e}");
            }
            s.udp.push((a.is_ipv6(), Arc::new(udp)));
            s.tcp.push(TcpListener::bind(a).await?);
        }
        for &a in tls {
            s.tls.push(TcpListener::bind(a).await?);
        }
        Ok(s)
    }

    /// Where UDP, TCP and TLS listen (the port is known after binding
    /// port 0).
    pub fn local(&self) -> std::io::Result<Vec<(Transport, SocketAddr)>> {
        let mut out = Vec::new();
        for ((_, u), t) in self.udp.iter().zip(&self.tcp) {
            out.push((Transport::Udp, u.local_addr()?));
            out.push((Transport::Tcp, t.local_addr()?));
        }
        for t in &self.tls {
            out.push((Transport::Tls, t.local_addr()?));
        }
        Ok(out)
    }
}

/// A SIP stream connection: TCP, or TLS over TCP.
trait SipStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> SipStream for T {}
type BoxedStream = Box<dyn SipStream>;

/// A connection accepted (TLS: handshake done), with its place under
/// `sip.max_connections`.
type Accepted = (BoxedStream, Peer, tokio::sync::OwnedSemaphorePermit);

/// How long a TLS handshake may take, ours or a client's.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// TLS handshakes in progress on a listener at most; further connections
/// wait in the kernel's backlog (each handshake holds state and costs a
/// signature).
const TLS_HANDSHAKES: usize = 64;

/// A stream connection came to an end.
struct Closed {
    peer: Peer,
    /// Which connection to `peer` (a newer one may have replaced it).
    id: u64,
    /// One we opened that never brought a message: what was sent on it
    /// failed (RFC 3261 section 8.1.3.1).
    failed: bool,
}

/// An open SIP TCP or TLS connection: where to write.
struct Conn {
    id: u64,
    out: Outbox,
}

/// How stream connections are kept (`[sip]` limits).
#[derive(Clone)]
pub struct StreamPolicy {
    /// Connections (TCP and TLS, accepted) at once; more are closed.
    pub max_connections: usize,
    /// A connection with no message for this long is closed.
    pub idle_timeout: Duration,
    /// A message begun must be whole within this.
    pub message_timeout: Duration,
    /// Sources whose connections are taken (`sip.allowed_sources`); others
    /// are closed at once.
    pub allowed: Vec<IpNet>,
    /// `rtcgw_sip_connections_refused_total{reason}`.
    pub refused: ConnRefusals,
}

/// Connections closed as soon as accepted, by reason (source, limit).
pub type ConnRefusals = Family<Vec<(&'static str, &'static str)>, Counter>;

impl Default for StreamPolicy {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(600),
            message_timeout: Duration::from_secs(10),
            allowed: vec![
                "0.0.0.0/0".parse().expect("net"),
                "::/0".parse().expect("net"),
            ],
            refused: ConnRefusals::default(),
        }
    }
}

/// Messages waiting for a connection's writer: never dropped (TCP and TLS
/// are not retransmitted); instead, while too many wait, the connection's
/// reading pauses, so a peer that sends faster than it reads our answers
/// is slowed down, not answered partly.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    backlog: Arc<Backlog>,
}

struct Backlog {
    queued: std::sync::atomic::AtomicUsize,
    drained: tokio::sync::Notify,
    /// Messages written so far (activity for the idle timeout).
    writes: std::sync::atomic::AtomicU64,
    /// The writer is gone (a write failed or timed out): nothing queued
    /// will leave, and no one waits for it to.
    closed: std::sync::atomic::AtomicBool,
}

/// How long one write may take before the connection is given up (a peer
/// that stops reading, its window at zero).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Messages queued on a connection beyond which its reading pauses.
const BACKLOG_HIGH: usize = 256;

impl Outbox {
    fn new() -> (Self, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog {
            queued: 0.into(),
            drained: tokio::sync::Notify::new(),
            writes: 0.into(),
            closed: false.into(),
        });
        (Self { tx, backlog }, rx)
    }

    /// The message back when the writer is gone.
    fn send(&self, bytes: Vec<u8>) -> Result<(), Vec<u8>> {
        use std::sync::atomic::Ordering;
        self.backlog.queued.fetch_add(1, Ordering::AcqRel);
        self.tx.send(bytes).map_err(|e| {
            self.backlog.queued.fetch_sub(1, Ordering::AcqRel);
            e.0
        })
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl Backlog {
    /// One message written.
    fn written(&self) {
        use std::sync::atomic::Ordering;
        self.writes.fetch_add(1, Ordering::AcqRel);
        if self.queued.fetch_sub(1, Ordering::AcqRel) <= BACKLOG_HIGH + 1 {
            self.drained.notify_waiters();
        }
    }

    /// The writer is gone: wake whoever waits for room.
    fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.drained.notify_waiters();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits while more than [`BACKLOG_HIGH`] messages wait.
    async fn below_high(&self) {
        self.at_most(BACKLOG_HIGH).await
    }

    /// Waits until every message queued is written.
    async fn empty(&self) {
        self.at_most(0).await
    }

    async fn at_most(&self, n: usize) {
        use std::sync::atomic::Ordering;
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.queued.load(Ordering::Acquire) <= n || self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

/// Peer-triggered warnings about SIP connections: one line a second.
static CONN_LOG: LogGate = LogGate::new(Duration::from_secs(1));

/// The ng control socket and its front end.
pub struct NgSocket {
    socket: UdpSocket,
    frontend: Frontend,
}

impl NgSocket {
    pub async fn bind(addr: SocketAddr, frontend: Frontend) -> std::io::Result<Self> {
        Ok(Self {
            socket: UdpSocket::bind(addr).await?,
            frontend,
        })
    }
}

/// The driver's sockets and channels, for what it sends.
struct Io<'a> {
    /// SIP over UDP, one per listen address.
    udp: &'a [(bool, Arc<UdpSocket>)],
    ng: Option<&'a UdpSocket>,
    frames_tx: &'a mpsc::Sender<(Peer, Vec<u8>)>,
    closed_tx: &'a mpsc::Sender<Closed>,
}

/// What the rest of the gateway asks of the driver.
enum Request {
    Create {
        offer: String,
        to: Option<String>,
        reply: oneshot::Sender<Result<ApiCall, Refused>>,
        /// Dropped by the HTTP handler when it finishes or its client
        /// leaves.
        client: oneshot::Receiver<()>,
    },
    /// The client of this create request is gone.
    Abandon { token: ApiToken },
    /// SIGTERM: take no new calls; end what is left after `grace`; with
    /// no call left, go once a watching dispatcher has seen a 503 (at most
    /// `linger` after the drain began).
    Drain { grace: Duration, linger: Duration },
    /// The statistics an ng query or delete waited for.
    NgStats {
        token: ApiToken,
        stats: Option<(u64, CallStats)>,
    },
}

/// How the HTTP API and the signal handler reach the driver. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Request>,
}

impl Handle {
    /// A WebRTC offer for the demo target, or bridged to a SIP call to
    /// `to`: the call and our answer. Dropping the future (the HTTP client
    /// left) cancels a call still ringing.
    pub async fn create_call(&self, offer: String, to: Option<String>) -> Result<ApiCall, Refused> {
        let (reply, rx) = oneshot::channel();
        let (_client, client_rx) = oneshot::channel();
        let gone = || {
            Refused::new(
                rtcgw_control::Refusal::Draining,
                "shutting down: no new calls",
            )
        };
        self.tx
            .send(Request::Create {
                offer,
                to,
                reply,
                client: client_rx,
            })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Stops taking calls; the driver ends the rest after `grace` (or as
    /// soon as there are none, and a dispatcher probing with OPTIONS has
    /// seen a 503, or `linger` passed) and returns.
    pub async fn drain(&self, grace: Duration, linger: Duration) {
        let _ = self.tx.send(Request::Drain { grace, linger }).await;
    }
}

/// The driver's state around call control.
pub struct Driver {
    control: CallControl,
    calls: Arc<Calls>,
    media: mpsc::UnboundedReceiver<MediaEvent>,
    requests: mpsc::Receiver<Request>,
    /// For the statistics tasks of ng queries and deletes.
    tx: mpsc::Sender<Request>,
    sip: Option<SipSockets>,
    tls: Option<Arc<SipTls>>,
    policy: StreamPolicy,
    ng: Option<NgSocket>,
    ng_front: Option<Frontend>,
    stats: Arc<StatsService>,
    /// Open SIP TCP and TLS connections by peer.
    conns: HashMap<Peer, Conn>,
    next_conn: u64,
    replies: HashMap<ApiToken, oneshot::Sender<Result<ApiCall, Refused>>>,
    next_token: u64,
    headroom: Headroom,
}

impl Driver {
    /// `media`: the receiving end of the channel `calls` reports on;
    /// `tls`: for the TLS listeners and the TLS connections we open.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        control: CallControl,
        calls: Arc<Calls>,
        media: mpsc::UnboundedReceiver<MediaEvent>,
        sip: Option<SipSockets>,
        tls: Option<Arc<SipTls>>,
        ng: Option<NgSocket>,
        stats: Arc<StatsService>,
    ) -> (Self, Handle) {
        let (tx, requests) = mpsc::channel(1024);
        let driver = Self {
            control,
            calls,
            media,
            requests,
            tx: tx.clone(),
            sip,
            tls,
            policy: StreamPolicy::default(),
            ng,
            ng_front: None,
            stats,
            conns: HashMap::new(),
            next_conn: 0,
            replies: HashMap::new(),
            next_token: 1,
            headroom: Headroom::new(HeadroomLimits {
                max_late_pct: 0.0,
                max_cpu_pct: 0.0,
            }),
        };
        (driver, Handle { tx })
    }

    /// Admission by measured headroom (`media.admit_max_*`).
    pub fn with_headroom(mut self, limits: HeadroomLimits) -> Self {
        self.headroom = Headroom::new(limits);
        self
    }

    /// Reads the media clock's frame counters and the process's CPU time
    /// (once a second) and tells call control when headroom runs out or
    /// comes back.
    fn sample_headroom(&mut self) {
        let (frames, late_frames) = self.calls.frame_counts();
        let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        let sample = LoadSample {
            frames,
            late_frames,
            cpu_s: cpu.tv_sec as f64 + cpu.tv_nsec as f64 * 1e-9,
            cores: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
        };
        match self.headroom.sample(now(), sample) {
            Some(Verdict::Overloaded(why)) => self.control.set_overloaded(Some(why)),
            Some(Verdict::Recovered) => self.control.set_overloaded(None),
            None => {}
        }
    }

    /// How SIP stream connections are kept (limits, timeouts, sources).
    pub fn with_stream_policy(mut self, policy: StreamPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Runs until drained (or every handle is gone).
    pub async fn run(mut self) {
        let (frames_tx, mut frames_rx) = mpsc::channel::<(Peer, Vec<u8>)>(1024);
        let (closed_tx, mut closed_rx) = mpsc::channel::<Closed>(256);
        let mut buf = vec![0u8; 65536];
        let mut ng_buf = vec![0u8; 65536];
        let mut drain_until: Option<Instant> = None;
        let mut linger_until: Option<Instant> = None;
        let mut sip = self.sip.take();
        if let Some(s) = &sip
            && let Ok(local) = s.local()
        {
            for (t, a) in local {
                tracing::info!(transport = ?t, addr = %a, "SIP listening");
            }
        }
        // Connections are accepted (and TLS handshakes made) by small
        // tasks; the further UDP sockets' datagrams come into this loop
        // like the first one's.
        let (accepted_tx, mut accepted_rx) = mpsc::channel::<Accepted>(64);
        let permits = Arc::new(tokio::sync::Semaphore::new(self.policy.max_connections));
        if let Some(s) = sip.as_mut() {
            for l in std::mem::take(&mut s.tcp) {
                let (policy, permits) = (self.policy.clone(), permits.clone());
                tokio::spawn(accept_into(l, None, accepted_tx.clone(), policy, permits));
            }
            for l in std::mem::take(&mut s.tls) {
                let (policy, permits) = (self.policy.clone(), permits.clone());
                let tls = self.tls.clone();
                tokio::spawn(accept_into(l, tls, accepted_tx.clone(), policy, permits));
            }
            for (_, u) in s.udp.iter().skip(1) {
                tokio::spawn(udp_into(u.clone(), frames_tx.clone()));
            }
        }
        let no_udp: Vec<(bool, Arc<UdpSocket>)> = Vec::new();
        let ng_socket = self.ng.take().map(|n| {
            self.ng_front = Some(n.frontend);
            n.socket
        });
        if let Some(Ok(addr)) = ng_socket.as_ref().map(UdpSocket::local_addr) {
            tracing::info!(%addr, "ng listening");
        }
        let io = Io {
            udp: sip.as_ref().map_or(&no_udp, |s| &s.udp),
            ng: ng_socket.as_ref(),
            frames_tx: &frames_tx,
            closed_tx: &closed_tx,
        };
        let mut headroom_tick = tokio::time::interval(Duration::from_secs(1));
        headroom_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self
                .control
                .poll_timeout()
                .map(Instant::from_std)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            let wake = drain_until.map_or(wake, |d| wake.min(d));
            let wake = linger_until.map_or(wake, |d| wake.min(d));
            tokio::select! {
                r = recv_from(io.udp.first().map(|(_, u)| &**u), &mut buf) => match r {
                    Ok((n, from)) => {
                        let peer = Peer { addr: from, transport: Transport::Udp };
                        self.control.handle_sip(now(), peer, &buf[..n]);
                    }
                    Err(e) => tracing::warn!("SIP UDP receive: {e}"),
                },
                Some((stream, peer, permit)) = accepted_rx.recv() => self.accepted(stream, peer, permit, &frames_tx, &closed_tx),
                Some((peer, frame)) = frames_rx.recv() => self.control.handle_sip(now(), peer, &frame),
                Some(c) = closed_rx.recv() => {
                    if self.conns.get(&c.peer).is_some_and(|open| open.id == c.id) {
                        self.conns.remove(&c.peer);
                    }
                    if c.failed {
                        self.control.handle_transport_error(now(), c.peer);
                    }
                }
                Some(ev) = self.media.recv() => self.control.handle_media(now(), ev),
                r = recv_from(io.ng, &mut ng_buf) => match r {
                    Ok((n, from)) => {
                        let token = self.token();
                        let act = self.ng_front.as_mut().and_then(|f| {
                            f.handle_datagram(now(), from, &ng_buf[..n], &self.control, token)
                        });
                        self.ng_act(act, &io);
                    }
                    Err(e) => tracing::warn!("ng receive: {e}"),
                },
                req = self.requests.recv() => match req {
                    Some(Request::Create { offer, to, reply, client }) => {
                        let token = self.token();
                        self.replies.insert(token, reply);
                        let tx = self.tx.clone();
                        tokio::spawn(async move {
                            let _ = client.await;
                            let _ = tx.send(Request::Abandon { token }).await;
                        });
                        self.control.handle_api(now(), ApiRequest::Create { token, offer, to });
                    }
                    Some(Request::Abandon { token }) => {
                        self.replies.remove(&token);
                        self.control.handle_api(now(), ApiRequest::Abandon { token });
                    }
                    Some(Request::Drain { grace, linger }) => {
                        tracing::info!(calls = self.control.calls(), grace_s = grace.as_secs(), "draining: new calls and OPTIONS get 503");
                        self.control.drain(now());
                        drain_until = Some(Instant::now() + grace);
                        linger_until = Some(Instant::now() + linger);
                    }
                    Some(Request::NgStats { token, stats }) => {
                        let act = self.ng_front.as_mut().and_then(|f| f.stats_read(now(), token, stats));
                        self.ng_act(act, &io);
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(wake) => self.control.handle_timeout(now()),
                _ = headroom_tick.tick() => self.sample_headroom(),
            }
            self.flush(&io);
            if let (Some(deadline), Some(linger)) = (drain_until, linger_until) {
                let t = Instant::now();
                let idle = self.control.is_idle();
                if self.control.may_exit() || (idle && t >= linger) || t >= deadline {
                    break;
                }
            }
        }
        // Shutdown: BYE (or CANCEL, or a final response) whatever is left,
        // and give the requests a moment to leave.
        tracing::info!(remaining = self.control.calls(), "shutting down");
        self.control
            .hangup_all(Instant::now().into_std(), EndReason::Shutdown);
        self.flush(&io);
        self.calls.hangup_all(EndReason::Shutdown);
        // Let the BYEs leave on TCP and the media tasks close their
        // recordings.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    fn token(&mut self) -> ApiToken {
        self.next_token += 1;
        ApiToken(self.next_token)
    }

    /// Carries out what the ng front end asks for.
    fn ng_act(&mut self, act: Option<Action>, io: &Io<'_>) {
        match act {
            None => {}
            Some(Action::Send(peer, bytes)) => {
                if let Some(s) = io.ng
                    && let Err(e) = s.try_send_to(&bytes, peer)
                {
                    tracing::warn!(%peer, "ng send: {e}");
                }
            }
            Some(Action::Control(token, req)) => {
                self.control.handle_ng(now(), token, *req);
                self.flush(io);
            }
            Some(Action::ReadStats(token, call)) => self.read_ng_stats(token, call),
        }
    }

    /// Reads a call's statistics off the loop (getStats waits on
    /// libwebrtc's threads) and hands them back as a request.
    fn read_ng_stats(&self, token: ApiToken, call: CallId) {
        let (calls, stats, tx) = (self.calls.clone(), self.stats.clone(), self.tx.clone());
        tokio::spawn(async move {
            let read = match calls.poll_item(&call) {
                Some((info, legs)) => {
                    let created = info.created_unix_ms;
                    Some((created, stats.live(&info, &legs).await))
                }
                None => None,
            };
            let _ = tx.send(Request::NgStats { token, stats: read }).await;
        });
    }

    /// Carries out everything call control produced.
    fn flush(&mut self, io: &Io<'_>) {
        while let Some(out) = self.control.poll_output() {
            match out {
                Output::NgReply { token, reply } => {
                    let act = self
                        .ng_front
                        .as_mut()
                        .and_then(|f| f.handle_reply(now(), token, reply));
                    self.ng_act(act, io);
                }
                Output::Transmit(o) => self.send(io.udp, o, io.frames_tx, io.closed_tx),
                Output::Media(cmd) => self.calls.execute(cmd),
                Output::Reply { token, result } => {
                    let Some(reply) = self.replies.remove(&token) else {
                        continue;
                    };
                    if let Err(Ok(made)) = reply.send(result) {
                        // The HTTP client left before its answer: nobody
                        // will ever connect to this call.
                        tracing::info!(call = %made.call, "API caller gone before the answer");
                        self.calls.hangup(&made.call, EndReason::CallerGone);
                    }
                }
            }
        }
    }

    /// A new SIP TCP or TLS connection: its messages come into the loop.
    fn accepted(
        &mut self,
        stream: BoxedStream,
        peer: Peer,
        permit: tokio::sync::OwnedSemaphorePermit,
        frames_tx: &mpsc::Sender<(Peer, Vec<u8>)>,
        closed_tx: &mpsc::Sender<Closed>,
    ) {
        let (id, out, rx) = self.register(peer);
        let (frames_tx, closed_tx) = (frames_tx.clone(), closed_tx.clone());
        let policy = self.policy.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection(stream, peer, frames_tx, rx, out, &policy).await;
            let failed = false;
            let _ = closed_tx.send(Closed { peer, id, failed }).await;
        });
    }

    /// A new connection's place in `conns`: its id, its outbox (kept there
    /// too) and the receiving end its writer takes.
    fn register(&mut self, peer: Peer) -> (u64, Outbox, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (out, rx) = Outbox::new();
        self.next_conn += 1;
        let id = self.next_conn;
        let kept = out.clone();
        self.conns.insert(peer, Conn { id, out: kept });
        (id, out, rx)
    }

    /// Sends one SIP message on its transport (UDP: from the listen
    /// address of the destination's family).
    fn send(
        &mut self,
        udp: &[(bool, Arc<UdpSocket>)],
        out: Outgoing,
        frames_tx: &mpsc::Sender<(Peer, Vec<u8>)>,
        closed_tx: &mpsc::Sender<Closed>,
    ) {
        match out.peer.transport {
            Transport::Udp => {
                let v6 = out.peer.addr.is_ipv6();
                let Some((_, udp)) = udp.iter().find(|(s6, _)| *s6 == v6).or(udp.first()) else {
                    return;
                };
                if let Err(e) = udp.try_send_to(&out.bytes, out.peer.addr) {
                    tracing::warn!(to = %out.peer.addr, "SIP UDP send: {e}");
                }
            }
            Transport::Tcp | Transport::Tls => {
                self.send_stream(out.peer, out.bytes, frames_tx, closed_tx)
            }
        }
    }

    /// Sends on the connection to `peer`, opening one when there is none
    /// (RFC 3261 section 18.2.2: reuse the connection the request came on).
    fn send_stream(
        &mut self,
        peer: Peer,
        bytes: Vec<u8>,
        frames_tx: &mpsc::Sender<(Peer, Vec<u8>)>,
        closed_tx: &mpsc::Sender<Closed>,
    ) {
        match self.conns.get(&peer) {
            // Its writer is gone (the connection broke): open a new one.
            Some(c) if c.out.is_closed() => {
                self.conns.remove(&peer);
            }
            Some(c) => match c.out.send(bytes) {
                Ok(()) => return,
                Err(bytes) => {
                    // Closed just now: a new connection takes it.
                    self.conns.remove(&peer);
                    return self.send_stream(peer, bytes, frames_tx, closed_tx);
                }
            },
            None => {}
        }
        let tls = match (peer.transport, &self.tls) {
            (Transport::Tls, Some(t)) => Some(t.clone()),
            (Transport::Tls, None) => {
                tracing::warn!(to = %peer.addr, "SIP over TLS needs sip.tls_* configured: message dropped");
                return;
            }
            _ => None,
        };
        let (id, out, rx) = self.register(peer);
        let _ = out.send(bytes);
        let (frames_tx, closed_tx) = (frames_tx.clone(), closed_tx.clone());
        let policy = self.policy.clone();
        tokio::spawn(async move {
            match open(peer, tls.as_deref()).await {
                Ok(stream) => {
                    let end = connection(stream, peer, frames_tx, rx, out, &policy).await;
                    // Nothing ever came back: what we sent on it failed
                    // (a TLS 1.3 server refuses our certificate only after
                    // the handshake, for one).
                    let failed = !end.heard;
                    if failed {
                        if let Some(tls) = &tls {
                            tls.failed("out", "handshake");
                        }
                        let why = end.error.map_or("closed".to_string(), |e| e.to_string());
                        tracing::warn!(to = %peer.addr, transport = peer.transport.as_str(), "SIP connection ended before any answer: {why}");
                    }
                    let _ = closed_tx.send(Closed { peer, id, failed }).await;
                }
                Err(e) => {
                    if let Some(tls) = &tls {
                        // rustls' errors (a certificate refused...) come
                        // as InvalidData.
                        tls.failed(
                            "out",
                            match e.kind() {
                                std::io::ErrorKind::TimedOut => "timeout",
                                std::io::ErrorKind::InvalidData => "handshake",
                                _ => "connect",
                            },
                        );
                    }
                    tracing::warn!(to = %peer.addr, transport = peer.transport.as_str(), "SIP connect failed: {e}");
                    let failed = true;
                    let _ = closed_tx.send(Closed { peer, id, failed }).await;
                }
            }
        });
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

async fn recv_from(
    udp: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match udp {
        Some(u) => u.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Serves a further SIP UDP socket: its datagrams go to the loop.
async fn udp_into(udp: Arc<UdpSocket>, frames: mpsc::Sender<(Peer, Vec<u8>)>) {
    let mut buf = vec![0u8; 65536];
    loop {
        match udp.recv_from(&mut buf).await {
            Ok((n, addr)) => {
                let peer = Peer {
                    addr,
                    transport: Transport::Udp,
                };
                if frames.send((peer, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!("SIP UDP receive: {e}"),
        }
    }
}

/// Opens a connection to `peer`: TCP, then TLS over it when `tls`.
async fn open(peer: Peer, tls: Option<&SipTls>) -> std::io::Result<BoxedStream> {
    let timed_out = |what| std::io::Error::new(std::io::ErrorKind::TimedOut, what);
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(peer.addr))
        .await
        .map_err(|_| timed_out("no connection within 5 s"))??;
    match tls {
        None => Ok(Box::new(tcp)),
        Some(tls) => Ok(Box::new(
            tokio::time::timeout(TLS_HANDSHAKE, tls.connect(peer.addr, tcp))
                .await
                .map_err(|_| timed_out("no TLS handshake within 10 s"))??,
        )),
    }
}

/// Serves a SIP TCP listener (TLS with `tls`): its connections go to the
/// loop, TLS ones once their handshake is done (each in its own task, so
/// that a slow client holds up no one). Connections from sources not
/// allowed, or beyond `max_connections`, are closed at once.
async fn accept_into(
    tcp: TcpListener,
    tls: Option<Arc<SipTls>>,
    accepted: mpsc::Sender<Accepted>,
    policy: StreamPolicy,
    permits: Arc<tokio::sync::Semaphore>,
) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(TLS_HANDSHAKES));
    let mut backoff = AcceptBackoff::new(if tls.is_some() { "SIP TLS" } else { "SIP TCP" });
    loop {
        let (stream, addr) = match tcp.accept().await {
            Ok(c) => {
                backoff.accepted();
                c
            }
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        let refuse = |reason: &'static str, why: &str| {
            policy
                .refused
                .get_or_create(&vec![("reason", reason)])
                .inc();
            if let Some(held) = CONN_LOG.pass(std::time::Instant::now()) {
                tracing::warn!(from = %addr, held_back = held, "SIP connection refused: {why}");
            }
        };
        if !policy.allowed.iter().any(|n| n.contains(addr.ip())) {
            refuse("source", "not in sip.allowed_sources");
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse("limit", "sip.max_connections reached");
            continue;
        };
        let Some(tls) = &tls else {
            let peer = Peer {
                addr,
                transport: Transport::Tcp,
            };
            if accepted
                .send((Box::new(stream), peer, permit))
                .await
                .is_err()
            {
                return;
            }
            continue;
        };
        let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
            refuse("handshakes", "64 TLS handshakes already in progress");
            continue;
        };
        let (tls, accepted) = (tls.clone(), accepted.clone());
        tokio::spawn(async move {
            let _handshake = handshake;
            let Some(acceptor) = tls.acceptor() else {
                return;
            };
            match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(s)) => {
                    let peer = Peer {
                        addr,
                        transport: Transport::Tls,
                    };
                    let _ = accepted.send((Box::new(s), peer, permit)).await;
                }
                Ok(Err(e)) => {
                    tls.failed("in", "handshake");
                    if let Some(held) = CONN_LOG.pass(std::time::Instant::now()) {
                        tracing::warn!(from = %addr, held_back = held, "SIP TLS handshake failed: {e}");
                    }
                }
                Err(_) => {
                    tls.failed("in", "timeout");
                    if let Some(held) = CONN_LOG.pass(std::time::Instant::now()) {
                        tracing::warn!(from = %addr, held_back = held, "SIP TLS handshake: none within 10 s");
                    }
                }
            }
        });
    }
}

/// How a connection ended.
struct End {
    /// At least one message came in on it.
    heard: bool,
    /// Why reading stopped, when not at the peer's close.
    error: Option<std::io::Error>,
}

/// One TCP or TLS connection: messages cut out of the stream go to the
/// driver, what the driver sends is written; until either side closes, it
/// sends nothing for `idle_timeout`, or a message it began is not whole
/// within `message_timeout`. A message too large gets 513 before the
/// close.
async fn connection(
    stream: BoxedStream,
    peer: Peer,
    frames: mpsc::Sender<(Peer, Vec<u8>)>,
    mut outgoing: mpsc::UnboundedReceiver<Vec<u8>>,
    out: Outbox,
    policy: &StreamPolicy,
) -> End {
    let peer_addr = peer.addr;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let backlog = out.backlog.clone();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            let write = async {
                wr.write_all(&bytes).await?;
                wr.flush().await
            };
            let ok = matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())));
            backlog.written();
            if !ok {
                break;
            }
        }
        backlog.close();
    });
    let mut framer = StreamFramer::new(MAX_MESSAGE);
    let mut chunk = vec![0u8; 16384];
    let mut end = End {
        heard: false,
        error: None,
    };
    let warn = |what: &dyn std::fmt::Display| {
        if let Some(held) = CONN_LOG.pass(std::time::Instant::now()) {
            tracing::warn!(%peer_addr, transport = peer.transport.as_str(), held_back = held, "SIP connection: {what}, closing");
        }
    };
    // When the message being read began (None between messages).
    let mut begun: Option<tokio::time::Instant> = None;
    // Messages written when the idle wait began: writing is activity too.
    let mut writes = out.backlog.writes();
    'read: loop {
        let deadline = match begun {
            Some(t) => t + policy.message_timeout,
            None => tokio::time::Instant::now() + policy.idle_timeout,
        };
        let n = match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
            Err(_) if begun.is_none() && out.backlog.writes() != writes => {
                writes = out.backlog.writes();
                continue;
            }
            Err(_) => {
                let what = match begun {
                    Some(_) => format!(
                        "a message not whole within {} s",
                        policy.message_timeout.as_secs()
                    ),
                    None => format!("nothing for {} s", policy.idle_timeout.as_secs()),
                };
                warn(&what);
                end.error = Some(std::io::Error::new(std::io::ErrorKind::TimedOut, what));
                break;
            }
            Ok(Ok(0)) => break,
            Ok(Err(e)) => {
                end.error = Some(e);
                break;
            }
            Ok(Ok(n)) => n,
        };
        framer.push(&chunk[..n]);
        let mut whole = false;
        loop {
            match framer.next_message() {
                Ok(Some(frame)) => {
                    end.heard = true;
                    whole = true;
                    // Backpressure: while our answers pile up unread, read
                    // no more requests (and none at all once they cannot
                    // be written).
                    out.backlog.below_high().await;
                    if out.backlog.is_closed() || frames.send((peer, frame)).await.is_err() {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    warn(&e);
                    if let Some(r513) = framer.too_large_response() {
                        let _ = out.send(r513);
                    }
                    break 'read;
                }
            }
        }
        // The message being read began now if this read finished the one
        // before (and when nothing is left, no message is being read).
        begun = match (framer.pending(), whole, begun) {
            (0, ..) => None,
            (_, true, _) | (_, false, None) => Some(tokio::time::Instant::now()),
            (_, false, Some(t)) => Some(t),
        };
        writes = out.backlog.writes();
    }
    // What is queued (a 513, answers) gets a moment to leave.
    let _ = tokio::time::timeout(Duration::from_millis(500), out.backlog.empty()).await;
    writer.abort();
    end
}
