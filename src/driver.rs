//! The SIP driver: the one place that owns SIP sockets and timers. It feeds
//! the sans-IO [`UserAgent`] with datagrams, stream frames and the time, sends
//! what it produces, and turns its events into calls (and calls' ends into
//! BYEs).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::call::{CallError, CallId, Calls};
use crate::config::{RouteConfig, SipConfig};
use crate::rtc::RtcError;
use rtcgw_proto::sdp::OfferError;
use rtcgw_proto::sdp::legacy::LegacySdpError;
use rtcgw_proto::sip::message::{content_length, header_end};
use rtcgw_proto::sip::session_timer::SessionTimerConfig;
use rtcgw_proto::sip::tsx::{Peer, Timers, Transport};
use rtcgw_proto::sip::ua::{CallRef, SipCounters, UaConfig, UaEvent, UserAgent};

/// Largest SIP message accepted on a stream before the connection is closed.
const MAX_MESSAGE: usize = 64 * 1024;

/// Call setups (PeerConnection + answer) allowed in flight at once. Beyond
/// it INVITEs get 503 at once: shedding load keeps setup latency bounded
/// instead of queueing until every caller times out (measured: at 300
/// calls/s on 2 cores an unbounded queue pushed INVITE->200 to 13 s).
const MAX_PENDING_SETUPS: usize = 64;

/// What the call side reports back to the driver.
enum AppMsg {
    /// The local SDP for a call (answer, or offer for a late offer).
    Ready {
        call: CallRef,
        result: Result<(CallId, String), CallError>,
    },
    /// Applying the ACK's answer failed.
    Failed { call: CallRef, reason: String },
    /// Bridge: the WebRTC leg is answered (answer held back) and the legacy
    /// offer is ready for the outbound INVITE to `uri`.
    BridgeReady {
        call: CallRef,
        uri: String,
        /// The caller offered plain RTP (the callee is WebRTC).
        caller_legacy: bool,
        result: Result<(CallId, String, String), CallError>,
    },
    /// Bridge: the far leg's answer was applied (or not); `early` when it
    /// came in a 183 (early media).
    BridgeUp {
        call: CallRef,
        early: bool,
        result: Result<(), CallError>,
    },
    /// Our answer to a re-offer on dialog `call` (or why there is none).
    Reanswer {
        call: CallRef,
        result: Result<String, CallError>,
    },
}

/// Early media on a bridge (a 183 with SDP from the callee).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Early {
    /// The 183's answer is being applied.
    Starting,
    /// ... and the callee's 200 came meanwhile.
    StartingAnswered,
    /// Media is up; the caller got our 183 with SDP.
    Up,
}

/// The two SIP dialogs of a bridged call.
#[derive(Default)]
struct Bridges {
    /// outbound (legacy) leg -> inbound (WebRTC) leg
    out_to_in: HashMap<CallRef, CallRef>,
    in_to_out: HashMap<CallRef, CallRef>,
    /// The WebRTC answer, sent to the caller once the callee answers.
    answers: HashMap<CallRef, String>,
    /// Inbound legs with early media.
    early: HashMap<CallRef, Early>,
}

impl Bridges {
    fn link(&mut self, inbound: CallRef, outbound: CallRef, answer: String) {
        self.out_to_in.insert(outbound, inbound);
        self.in_to_out.insert(inbound, outbound);
        self.answers.insert(inbound, answer);
    }

    /// Forgets the pair `call` belongs to; returns the other leg.
    fn unlink(&mut self, call: CallRef) -> Option<CallRef> {
        let other = self
            .out_to_in
            .remove(&call)
            .or_else(|| self.in_to_out.remove(&call))?;
        self.out_to_in.remove(&other);
        self.in_to_out.remove(&other);
        for c in [call, other] {
            self.answers.remove(&c);
            self.early.remove(&c);
        }
        Some(other)
    }
}

/// The outbound Request-URI for a called user.
fn route_uri(route: &RouteConfig, to: &str) -> String {
    let user = to
        .strip_prefix("sip:")
        .or_else(|| to.strip_prefix("sips:"))
        .and_then(|r| r.split_once('@'))
        .map_or("rtcgw", |(u, _)| u);
    route.target.replace("{user}", user)
}

/// SIP status for a call that could not be set up.
/// Completes a bridge with the callee's answer (a 183's when `early`) off
/// the driver loop; the outcome comes back as [`AppMsg::BridgeUp`].
fn spawn_bridge_up(
    calls: &Arc<Calls>,
    app_tx: &mpsc::Sender<AppMsg>,
    id: CallId,
    inbound: CallRef,
    sdp: String,
    early: bool,
) {
    let (calls, app_tx) = (calls.clone(), app_tx.clone());
    tokio::spawn(async move {
        let result = calls.complete_bridge(&id, &sdp).await;
        let _ = app_tx
            .send(AppMsg::BridgeUp {
                call: inbound,
                early,
                result,
            })
            .await;
    });
}

fn sip_status(e: &CallError) -> (u16, String) {
    match e {
        CallError::Offer(OfferError::Malformed(r)) => (400, format!("Bad Request ({r})")),
        CallError::Offer(o) => (488, format!("Not Acceptable Here ({o})")),
        CallError::Rtc(RtcError::InvalidSdp(r)) => (488, format!("Not Acceptable Here ({r})")),
        CallError::Rtc(RtcError::Unsupported(r)) => (488, format!("Not Acceptable Here ({r})")),
        CallError::Capacity(_) => (503, "Service Unavailable (at capacity)".into()),
        CallError::Draining => (503, "Service Unavailable (shutting down)".into()),
        CallError::Legacy(LegacySdpError::Parse(r)) => (400, format!("Bad Request ({r})")),
        CallError::Legacy(l) => (488, format!("Not Acceptable Here ({l})")),
        CallError::Media(r) => (503, format!("Service Unavailable ({r})")),
        other => (500, format!("Server Internal Error ({other})")),
    }
}

/// The bound SIP sockets (bound first, so that errors surface at start).
pub struct SipSockets {
    udp: UdpSocket,
    tcp: TcpListener,
}

pub async fn bind_sip(cfg: &SipConfig) -> std::io::Result<SipSockets> {
    Ok(SipSockets {
        udp: UdpSocket::bind(cfg.listen).await?,
        tcp: TcpListener::bind(cfg.listen).await?,
    })
}

/// Runs SIP until `shutdown` turns true. `counters` receives a snapshot
/// once a second for /metrics.
pub async fn run_sip(
    sockets: SipSockets,
    cfg: SipConfig,
    route: RouteConfig,
    calls: Arc<Calls>,
    counters: Arc<Mutex<SipCounters>>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let bridge_mode = route.mode == "bridge";
    let mut bridges = Bridges::default();
    let SipSockets { udp, tcp } = sockets;
    let local_udp = udp.local_addr()?;
    let local_tcp = tcp.local_addr()?;
    tracing::info!(udp = %local_udp, tcp = %local_tcp, "SIP listening");

    let mut ua = UserAgent::new(UaConfig {
        timers: Timers {
            t1: Duration::from_millis(cfg.t1_ms),
            t2: Duration::from_millis(cfg.t2_ms),
            t4: Duration::from_millis(cfg.t4_ms),
        },
        local: HashMap::from([(Transport::Udp, local_udp), (Transport::Tcp, local_tcp)]),
        allowed: cfg
            .allowed_sources
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect(),
        next_hop: cfg.next_hop,
        user_agent: cfg.user_agent.clone(),
        branch_salt: u64::from(std::process::id()) << 16 ^ rand::random::<u16>() as u64,
        session_timer: cfg.session_timers.then_some(SessionTimerConfig {
            expires: cfg.session_expires_s,
            min_se: cfg.min_se_s,
        }),
    });

    let (frames_tx, mut frames_rx) = mpsc::channel::<(Peer, Vec<u8>)>(1024);
    let (app_tx, mut app_rx) = mpsc::channel::<AppMsg>(1024);
    let mut ended = calls.subscribe_ended();
    let mut conns: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut ids: HashMap<CallRef, CallId> = HashMap::new();
    let mut refs: HashMap<CallId, CallRef> = HashMap::new();
    let (conn_closed_tx, mut conn_closed_rx) = mpsc::channel::<SocketAddr>(256);
    let mut buf = vec![0u8; 65536];
    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
    let mut pending_setups = 0usize;
    // Dialogs whose far end speaks plain RTP: their SIP INFO digits go to
    // the WebRTC leg; the other dialogs' go to the legacy leg.
    let mut legacy_dialogs: HashSet<CallRef> = HashSet::new();

    loop {
        let now = Instant::now();
        let wake = ua
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or(now + Duration::from_secs(1));
        tokio::select! {
            r = udp.recv_from(&mut buf) => match r {
                Ok((n, from)) => ua.handle_input(Instant::now().into_std(), Peer { addr: from, transport: Transport::Udp }, &buf[..n]),
                Err(e) => tracing::warn!("SIP UDP receive: {e}"),
            },
            r = tcp.accept() => match r {
                Ok((stream, from)) => {
                    let (tx, rx) = mpsc::channel(256);
                    conns.insert(from, tx);
                    tokio::spawn(connection(stream, from, frames_tx.clone(), rx, conn_closed_tx.clone()));
                }
                Err(e) => tracing::warn!("SIP TCP accept: {e}"),
            },
            Some((peer, frame)) = frames_rx.recv() => ua.handle_input(Instant::now().into_std(), peer, &frame),
            Some(addr) = conn_closed_rx.recv() => { conns.remove(&addr); }
            Some(msg) = app_rx.recv() => match msg {
                AppMsg::Ready { call, result: Ok((id, sdp)) } => {
                    pending_setups -= 1;
                    ids.insert(call, id.clone());
                    refs.insert(id.clone(), call);
                    if !ua.answer(Instant::now().into_std(), call, sdp) {
                        // The caller gave up meanwhile (CANCEL): drop the media.
                        calls.hangup(&id, "SIP call gone before answer");
                    }
                }
                AppMsg::Ready { call, result: Err(e) } => {
                    pending_setups -= 1;
                    let (status, reason) = sip_status(&e);
                    tracing::warn!(call = call.0, status, "INVITE refused: {e}");
                    ua.reject(Instant::now().into_std(), call, status, &reason);
                }
                AppMsg::Failed { call, reason } => {
                    tracing::warn!(call = call.0, "ending call: {reason}");
                    if let Some(id) = ids.get(&call) { calls.hangup(id, &reason); }
                }
                AppMsg::BridgeReady { call, result: Ok((id, ..)), .. } if !ua.is_incoming(call) => {
                    // Cancelled while the first leg was being set up.
                    pending_setups -= 1;
                    calls.hangup(&id, "caller gone before the callee was called");
                }
                AppMsg::BridgeReady { call, uri, caller_legacy, result: Ok((id, answer, offer)) } => {
                    pending_setups -= 1;
                    ids.insert(call, id.clone());
                    refs.insert(id.clone(), call);
                    match ua.invite(Instant::now().into_std(), &uri, "rtcgw", offer) {
                        Some(out) => {
                            tracing::info!(call = %id, inbound = call.0, outbound = out.0, %uri, "bridge: outbound INVITE");
                            bridges.link(call, out, answer);
                            legacy_dialogs.insert(if caller_legacy { call } else { out });
                        }
                        None => {
                            tracing::warn!(call = %id, %uri, "bridge: no route to the legacy side");
                            ua.reject(Instant::now().into_std(), call, 503, "Service Unavailable (no route)");
                            calls.hangup(&id, "no route");
                        }
                    }
                }
                AppMsg::BridgeReady { call, result: Err(e), .. } => {
                    pending_setups -= 1;
                    let (status, reason) = sip_status(&e);
                    tracing::warn!(call = call.0, status, "bridged INVITE refused: {e}");
                    ua.reject(Instant::now().into_std(), call, status, &reason);
                }
                AppMsg::BridgeUp { call, early, result } => {
                    let now = Instant::now().into_std();
                    let state = bridges.early.get(&call).copied();
                    match (result, bridges.answers.get(&call).cloned()) {
                        (Ok(()), Some(answer)) if early && state == Some(Early::Starting) => {
                            // Early media: the caller hears the callee's
                            // ringback or announcement from now on.
                            bridges.early.insert(call, Early::Up);
                            ua.provisional(now, call, 183, Some(answer));
                        }
                        (Ok(()), Some(answer)) => {
                            bridges.early.remove(&call);
                            if !ua.answer(now, call, answer) {
                                // The caller left while the callee answered.
                                if let Some(out) = bridges.unlink(call) { ua.hangup(now, out, "caller gone"); }
                                if let Some(id) = ids.remove(&call) { refs.remove(&id); calls.hangup(&id, "caller gone"); }
                            }
                        }
                        (res, _) => {
                            tracing::warn!(call = call.0, "bridge: far answer unusable: {:?}", res.err());
                            if let Some(out) = bridges.unlink(call) { ua.hangup(now, out, "bridge failed"); }
                            ua.reject(now, call, 488, "Not Acceptable Here (far answer)");
                            if let Some(id) = ids.remove(&call) { refs.remove(&id); calls.hangup(&id, "bridge failed"); }
                        }
                    }
                }
                AppMsg::Reanswer { call, result } => {
                    let result = result.map_err(|e| {
                        let (status, reason) = sip_status(&e);
                        tracing::warn!(call = call.0, status, "re-offer refused: {e}");
                        (status, reason)
                    });
                    ua.answer_reoffer(Instant::now().into_std(), call, result);
                }
            },
            r = ended.recv() => match r {
                Ok(id) => if let Some(call) = refs.remove(&id) {
                    ids.remove(&call);
                    let now = Instant::now().into_std();
                    if let Some(other) = bridges.unlink(call) { ua.hangup(now, other, "call ended"); }
                    ua.hangup(now, call, "call ended");
                },
                Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!("missed {n} call-end notices"),
                Err(broadcast::error::RecvError::Closed) => {}
            },
            _ = tokio::time::sleep_until(wake) => ua.handle_timeout(Instant::now().into_std()),
            _ = stats_tick.tick() => {
                // Graceful shutdown: OPTIONS and INVITE get 503 so that a
                // dispatcher (Kamailio's) stops sending calls here.
                ua.set_draining(calls.is_draining());
                legacy_dialogs.retain(|c| ua.has_call(*c));
                *counters.lock().expect("counters lock") = ua.counters.clone();
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
        }

        // Send what the UA produced, then react to its events; reactions
        // (BYE, 18x relay, refusals) produce more output, sent at once.
        loop {
            while let Some(out) = ua.poll_output() {
                send(&udp, &mut conns, out, &frames_tx, &conn_closed_tx);
            }
            let Some(ev) = ua.poll_event() else { break };
            match ev {
                UaEvent::Invite {
                    call,
                    offer,
                    from,
                    to,
                } => {
                    tracing::info!(call = call.0, %from, %to, late_offer = offer.is_none(), "INVITE");
                    if pending_setups >= MAX_PENDING_SETUPS {
                        tracing::warn!(
                            call = call.0,
                            pending_setups,
                            "overloaded: INVITE refused with 503"
                        );
                        ua.reject(
                            Instant::now().into_std(),
                            call,
                            503,
                            "Service Unavailable (overloaded)",
                        );
                        continue;
                    }
                    pending_setups += 1;
                    let (calls, app_tx) = (calls.clone(), app_tx.clone());
                    if bridge_mode && let Some(o) = offer.clone() {
                        let uri = route_uri(&route, &to);
                        tokio::spawn(async move {
                            // A WebRTC caller gets a legacy callee, and back.
                            let caller_legacy = rtcgw_proto::sdp::is_legacy_offer(&o);
                            let result = if caller_legacy {
                                calls.create_bridge_from_legacy(&o).await
                            } else {
                                calls.create_bridge(&o).await
                            };
                            let _ = app_tx
                                .send(AppMsg::BridgeReady {
                                    call,
                                    uri,
                                    caller_legacy,
                                    result,
                                })
                                .await;
                        });
                        continue;
                    }
                    if offer
                        .as_deref()
                        .is_some_and(rtcgw_proto::sdp::is_legacy_offer)
                    {
                        legacy_dialogs.insert(call);
                    }
                    tokio::spawn(async move {
                        let result = match offer {
                            Some(o) if rtcgw_proto::sdp::is_legacy_offer(&o) => {
                                calls.create_demo_legacy(&o).await
                            }
                            Some(o) => calls.create_demo(&o).await,
                            None => calls.create_demo_offer().await,
                        };
                        let _ = app_tx.send(AppMsg::Ready { call, result }).await;
                    });
                }
                UaEvent::Answer { call, sdp } => {
                    if let Some(id) = ids.get(&call).cloned() {
                        let (calls, app_tx) = (calls.clone(), app_tx.clone());
                        tokio::spawn(async move {
                            if let Err(e) = calls.apply_answer(&id, &sdp).await {
                                let _ = app_tx
                                    .send(AppMsg::Failed {
                                        call,
                                        reason: format!("SDP answer in ACK: {e}"),
                                    })
                                    .await;
                            }
                        });
                    }
                }
                UaEvent::Progress { call, status, sdp } => {
                    let Some(&inbound) = bridges.out_to_in.get(&call) else {
                        continue;
                    };
                    match (sdp, ids.get(&inbound).cloned()) {
                        (Some(sdp), Some(id))
                            if status == 183 && !bridges.early.contains_key(&inbound) =>
                        {
                            // Early media: bring the bridge up on the 183's
                            // answer; the caller gets 183 with ours.
                            bridges.early.insert(inbound, Early::Starting);
                            spawn_bridge_up(&calls, &app_tx, id, inbound, sdp, true);
                        }
                        _ if bridges.early.contains_key(&inbound) => {}
                        _ => ua.provisional(
                            Instant::now().into_std(),
                            inbound,
                            if status == 183 { 183 } else { 180 },
                            None,
                        ),
                    }
                }
                UaEvent::Accepted { call, sdp } => {
                    let Some(&inbound) = bridges.out_to_in.get(&call) else {
                        ua.hangup(Instant::now().into_std(), call, "no caller any more");
                        continue;
                    };
                    let Some(id) = ids.get(&inbound).cloned() else {
                        continue;
                    };
                    match bridges.early.get(&inbound).copied() {
                        // Media is already up on the 183's answer (RFC 3261
                        // section 13.2.1: the 2xx repeats it): answer now.
                        Some(Early::Up) => {
                            let _ = app_tx.try_send(AppMsg::BridgeUp {
                                call: inbound,
                                early: false,
                                result: Ok(()),
                            });
                        }
                        Some(_) => {
                            bridges.early.insert(inbound, Early::StartingAnswered);
                        }
                        None => {
                            let sdp = sdp.unwrap_or_default();
                            spawn_bridge_up(&calls, &app_tx, id, inbound, sdp, false);
                        }
                    }
                }
                UaEvent::Reoffer { call, sdp } => {
                    let inbound = bridges.out_to_in.get(&call).copied().unwrap_or(call);
                    let Some(id) = ids.get(&inbound).cloned() else {
                        ua.answer_reoffer(
                            Instant::now().into_std(),
                            call,
                            Err((481, "Call/Transaction Does Not Exist".into())),
                        );
                        continue;
                    };
                    let (calls, app_tx) = (calls.clone(), app_tx.clone());
                    tokio::spawn(async move {
                        let result = calls.reoffer(&id, &sdp).await;
                        let _ = app_tx.send(AppMsg::Reanswer { call, result }).await;
                    });
                }
                UaEvent::Dtmf {
                    call,
                    digit,
                    duration_ms,
                } => {
                    let inbound = bridges.out_to_in.get(&call).copied().unwrap_or(call);
                    if let Some(id) = ids.get(&inbound) {
                        if legacy_dialogs.contains(&call) {
                            calls.dtmf_from_legacy(id, digit, duration_ms);
                        } else {
                            calls.dtmf_from_webrtc(id, digit, duration_ms);
                        }
                    }
                }
                UaEvent::Rejected {
                    call,
                    status,
                    reason,
                } => {
                    if let Some(inbound) = bridges.unlink(call) {
                        tracing::info!(inbound = inbound.0, status, %reason, "bridge: legacy side refused");
                        ua.reject(Instant::now().into_std(), inbound, status, &reason);
                        if let Some(id) = ids.remove(&inbound) {
                            refs.remove(&id);
                            calls.hangup(&id, "legacy side refused");
                        }
                    }
                }
                UaEvent::Ended { call, reason } => {
                    // The call id lives on the inbound leg of a bridge.
                    let inbound = bridges.out_to_in.get(&call).copied().unwrap_or(call);
                    if let Some(other) = bridges.unlink(call) {
                        ua.hangup(Instant::now().into_std(), other, &reason);
                    }
                    if let Some(id) = ids.remove(&inbound).or_else(|| ids.remove(&call)) {
                        refs.remove(&id);
                        calls.hangup(&id, &reason);
                    }
                }
            }
        }
    }
    // Shutdown: BYE what is still up, give the BYEs a moment to leave.
    let active: Vec<CallRef> = ids.keys().copied().collect();
    for call in active {
        let now = Instant::now().into_std();
        if let Some(other) = bridges.unlink(call) {
            ua.hangup(now, other, "shutdown");
        }
        ua.hangup(now, call, "shutdown");
    }
    while let Some(out) = ua.poll_output() {
        send(&udp, &mut conns, out, &frames_tx, &conn_closed_tx);
    }
    Ok(())
}

/// Sends one UA output on its transport.
fn send(
    udp: &UdpSocket,
    conns: &mut HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    out: rtcgw_proto::sip::ua::Outgoing,
    frames_tx: &mpsc::Sender<(Peer, Vec<u8>)>,
    closed_tx: &mpsc::Sender<SocketAddr>,
) {
    match out.peer.transport {
        Transport::Udp => {
            if let Err(e) = udp.try_send_to(&out.bytes, out.peer.addr) {
                tracing::warn!(to = %out.peer.addr, "SIP UDP send: {e}");
            }
        }
        Transport::Tcp => send_tcp(conns, out.peer.addr, out.bytes, frames_tx, closed_tx),
    }
}

/// Sends on the connection to `addr`, opening one when there is none
/// (RFC 3261 section 18.2.2: reuse the connection the request came on).
fn send_tcp(
    conns: &mut HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    addr: SocketAddr,
    bytes: Vec<u8>,
    frames_tx: &mpsc::Sender<(Peer, Vec<u8>)>,
    closed_tx: &mpsc::Sender<SocketAddr>,
) {
    if let Some(tx) = conns.get(&addr) {
        if tx.try_send(bytes).is_err() {
            tracing::warn!(to = %addr, "SIP TCP connection congested or closed: message dropped");
        }
        return;
    }
    let (tx, rx) = mpsc::channel(256);
    let _ = tx.try_send(bytes);
    conns.insert(addr, tx);
    let (frames_tx, closed_tx) = (frames_tx.clone(), closed_tx.clone());
    tokio::spawn(async move {
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => connection(stream, addr, frames_tx, rx, closed_tx).await,
            _ => {
                tracing::warn!(to = %addr, "SIP TCP connect failed");
                let _ = closed_tx.send(addr).await;
            }
        }
    });
}

/// One TCP connection: frames by Content-Length (RFC 3261 section 18.3),
/// forwards frames to the driver, writes what the driver sends.
async fn connection(
    stream: TcpStream,
    peer_addr: SocketAddr,
    frames: mpsc::Sender<(Peer, Vec<u8>)>,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    closed: mpsc::Sender<SocketAddr>,
) {
    let peer = Peer {
        addr: peer_addr,
        transport: Transport::Tcp,
    };
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16384];
    'read: loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            // Keep-alive CRLFs between messages (RFC 5626 section 3.5.1).
            let skip = buf
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            buf.drain(..skip);
            let Some(end) = header_end(&buf) else {
                if buf.len() > MAX_MESSAGE {
                    tracing::warn!(%peer_addr, "SIP TCP: header block too large, closing");
                    break 'read;
                }
                break;
            };
            let body = match content_length(&buf[..end]) {
                Ok(n) => n.unwrap_or(0),
                Err(e) => {
                    tracing::warn!(%peer_addr, "SIP TCP: {e}, closing");
                    break 'read;
                }
            };
            if end + body > MAX_MESSAGE {
                tracing::warn!(%peer_addr, "SIP TCP: message over {MAX_MESSAGE} bytes, closing");
                break 'read;
            }
            if buf.len() < end + body {
                break;
            }
            let frame: Vec<u8> = buf.drain(..end + body).collect();
            if frames.send((peer, frame)).await.is_err() {
                break 'read;
            }
        }
    }
    writer.abort();
    let _ = closed.send(peer_addr).await;
}
