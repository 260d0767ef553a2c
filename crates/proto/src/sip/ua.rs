//! The user agent core (RFC 3261 sections 8.2, 12, 13.3, 15): the
//! transaction user that turns INVITEs into calls for the gateway, keeps their
//! dialogs, retransmits 2xx until the ACK, and answers everything else as a
//! well-behaved UAS. Sans-IO: bytes and time in, bytes and events out.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::dtmf_info;
use super::message::{Headers, Message, Method, NameAddr, Request, Response, reason_phrase};
use super::session_timer::{
    Refresher, SessionExpires, SessionTimer, SessionTimerConfig, UasDecision, uas_decide,
};
use super::tsx::{Backoff, Peer, Received, Timers, Transactions, Transport, TsxEvent, TsxKey};

/// An IP network, for access control ("127.0.0.0/8").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.parse().map_err(|_| format!("not an IP address: {a}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse().map_err(|_| format!("bad prefix: {p}"))?
        };
        if prefix > max {
            return Err(format!("prefix /{prefix} too long"));
        }
        Ok(Self { addr, prefix })
    }
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Settings of the user agent.
#[derive(Debug, Clone)]
pub struct UaConfig {
    pub timers: Timers,
    /// Our sent-by / Contact address per transport.
    pub local: HashMap<Transport, SocketAddr>,
    /// Networks allowed to send requests (the softswitch).
    pub allowed: Vec<IpNet>,
    /// Where out-of-dialog and unroutable requests go (the softswitch).
    pub next_hop: Option<SocketAddr>,
    pub user_agent: String,
    pub branch_salt: u64,
    /// RFC 4028 session timers; None: off (Session-Expires is ignored).
    pub session_timer: Option<SessionTimerConfig>,
}

/// A call as the SIP side knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef(pub u64);

/// What the user agent asks of the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UaEvent {
    /// A new INVITE: answer with [`UserAgent::answer`] or refuse with
    /// [`UserAgent::reject`]. `offer` is None for a late offer (the answer
    /// then comes in the ACK).
    Invite {
        call: CallRef,
        offer: Option<String>,
        from: String,
        to: String,
    },
    /// The ACK for a late-offer 200 carried the answer.
    Answer { call: CallRef, sdp: String },
    /// The call is over on the SIP side (BYE, CANCEL, no ACK, timeout).
    Ended { call: CallRef, reason: String },
    /// Our outbound INVITE got a provisional response (with SDP: early media).
    Progress {
        call: CallRef,
        status: u16,
        sdp: Option<String>,
    },
    /// Our outbound INVITE was answered (ACK sent).
    Accepted { call: CallRef, sdp: Option<String> },
    /// Our outbound INVITE was refused or timed out.
    Rejected {
        call: CallRef,
        status: u16,
        reason: String,
    },
    /// A re-INVITE or UPDATE with a new offer in an established dialog
    /// (hold, resume, new address or codec, ICE restart): answer with
    /// [`UserAgent::answer_reoffer`].
    Reoffer { call: CallRef, sdp: String },
    /// A DTMF digit by SIP INFO (application/dtmf-relay, application/dtmf).
    Dtmf {
        call: CallRef,
        digit: char,
        duration_ms: u32,
    },
}

/// A re-offer being answered by the gateway.
#[derive(Debug, Clone)]
struct Reoffer {
    key: TsxKey,
    /// The remote o= line before this offer, restored if it is refused.
    prior_origin: Option<String>,
}

/// The o= line of an SDP: a re-offer with the same one changes nothing
/// (RFC 3264 section 8: a changed session carries a new version).
fn origin(sdp: &str) -> Option<String> {
    sdp.lines()
        .find(|l| l.starts_with("o="))
        .map(|l| l.trim_end().to_string())
}

/// Counters for metrics.
#[derive(Debug, Default, Clone)]
pub struct SipCounters {
    pub requests: BTreeMap<String, u64>,
    pub responses: BTreeMap<u16, u64>,
    pub rejected: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// INVITE received, the gateway is preparing the answer.
    Incoming,
    /// 200 sent, waiting for the ACK (2xx retransmitted over UDP).
    Answered,
    Confirmed,
    /// Our INVITE is out (UAC), no final response yet.
    Outgoing,
    /// We hung up an outgoing call: CANCEL sent; a 2xx that crosses it
    /// still gets ACK + BYE (section 9.1).
    Cancelling,
}

struct Call {
    state: CallState,
    invite_tsx: TsxKey,
    peer: Peer,
    call_id: String,
    local_tag: String,
    remote_tag: String,
    /// Their From / our To, as sent.
    remote_uri: String,
    local_uri: String,
    remote_target: String,
    route_set: Vec<String>,
    local_cseq: u32,
    remote_cseq: u32,
    invite_cseq: u32,
    late_offer: bool,
    ok: Option<Response>,
    retransmit: Option<Backoff>,
    ack_deadline: Option<Instant>,
    local_sdp: Option<String>,
    /// UAC: the ACK for the 2xx, resent when the 2xx is retransmitted.
    ack: Option<Vec<u8>>,
    /// The remote SDP's o= line, to tell a re-offer from a refresh.
    remote_origin: Option<String>,
    reoffer: Option<Reoffer>,
    /// RFC 4028: what our 2xx will carry (UAS), then the running timer.
    session_expires: Option<(SessionExpires, bool)>,
    timer: Option<SessionTimer>,
}

const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO";
const SUPPORTED: &str = "timer";

/// The transmits the driver must send, serialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub peer: Peer,
    pub bytes: Vec<u8>,
}

pub struct UserAgent {
    cfg: UaConfig,
    tsx: Transactions,
    calls: HashMap<CallRef, Call>,
    by_dialog: HashMap<(String, String, String), CallRef>,
    by_invite: HashMap<TsxKey, CallRef>,
    next_call: u64,
    events: VecDeque<UaEvent>,
    out: VecDeque<Outgoing>,
    pub counters: SipCounters,
    draining: bool,
    /// Our session refresh UPDATEs in flight.
    refreshes: HashMap<TsxKey, CallRef>,
}

fn sdp_body(req_or_resp_headers: &Headers, body: &[u8]) -> Result<Option<String>, (u16, String)> {
    if body.is_empty() {
        return Ok(None);
    }
    let ctype = req_or_resp_headers
        .get("Content-Type")
        .unwrap_or("application/sdp");
    if !ctype
        .trim()
        .to_ascii_lowercase()
        .starts_with("application/sdp")
    {
        return Err((415, format!("Content-Type {ctype} not supported")));
    }
    String::from_utf8(body.to_vec())
        .map(Some)
        .map_err(|_| (400, "SDP is not UTF-8".into()))
}

impl UserAgent {
    pub fn new(cfg: UaConfig) -> Self {
        let tsx = Transactions::new(cfg.timers, cfg.branch_salt);
        Self {
            cfg,
            tsx,
            calls: HashMap::new(),
            by_dialog: HashMap::new(),
            by_invite: HashMap::new(),
            next_call: 1,
            events: VecDeque::new(),
            out: VecDeque::new(),
            counters: SipCounters::default(),
            draining: false,
            refreshes: HashMap::new(),
        }
    }

    /// While draining, OPTIONS and new INVITEs are answered 503.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    pub fn transactions(&self) -> usize {
        self.tsx.len()
    }

    fn reject_count(&mut self, reason: &'static str) {
        *self.counters.rejected.entry(reason).or_default() += 1;
    }

    fn local(&self, t: Transport) -> SocketAddr {
        self.cfg
            .local
            .get(&t)
            .or_else(|| self.cfg.local.values().next())
            .copied()
            .unwrap_or_else(|| ([127, 0, 0, 1], 5060).into())
    }

    fn contact(&self, t: Transport) -> String {
        let l = self.local(t);
        match t {
            Transport::Udp => format!("<sip:rtcgw@{l}>"),
            Transport::Tcp => format!("<sip:rtcgw@{l};transport=tcp>"),
        }
    }

    fn tag(&mut self) -> String {
        self.next_call += 1;
        format!("{:x}{:04x}", self.cfg.branch_salt, self.next_call)
    }

    /// A datagram or stream frame from `peer`.
    pub fn handle_input(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                match e.partial {
                    // Enough to answer: 400 with the reason (section 8.2 / 21.4.1).
                    Some(req) if req.method != Method::Ack && self.allowed(peer) => {
                        tracing::warn!(%peer.addr, reason = %e.reason, "bad SIP request: 400");
                        self.reject_count("malformed");
                        let reason =
                            format!("Bad Request ({})", e.reason.replace(['\r', '\n'], " "));
                        self.send_stateless(peer, Response::to(&req, 400, &reason, None));
                    }
                    _ => {
                        tracing::warn!(%peer.addr, reason = %e.reason, "unparseable SIP message dropped");
                        self.reject_count("unparseable");
                    }
                }
                return;
            }
        };
        match msg {
            Message::Request(mut req) => {
                *self
                    .counters
                    .requests
                    .entry(req.method.to_string())
                    .or_default() += 1;
                if !self.allowed(peer) {
                    tracing::warn!(%peer.addr, method = %req.method, "request from a source not allowed: 403");
                    self.reject_count("forbidden_source");
                    if req.method != Method::Ack {
                        self.send_stateless(peer, Response::to(&req, 403, "Forbidden", None));
                    }
                    return;
                }
                stamp_via(&mut req, peer);
                self.handle_request(now, peer, req);
            }
            Message::Response(resp) => {
                if !self.tsx.handle_response(now, resp) {
                    tracing::debug!(%peer.addr, "stray response dropped");
                }
                self.pump(now);
            }
        }
    }

    fn allowed(&self, peer: Peer) -> bool {
        self.cfg.allowed.iter().any(|n| n.contains(peer.addr.ip()))
    }

    fn send_stateless(&mut self, peer: Peer, resp: Response) {
        *self.counters.responses.entry(resp.status).or_default() += 1;
        self.out.push_back(Outgoing {
            peer,
            bytes: Message::Response(resp).to_bytes(),
        });
    }

    fn respond(
        &mut self,
        now: Instant,
        key: &TsxKey,
        req: &Request,
        status: u16,
        reason: Option<&str>,
        to_tag: Option<&str>,
    ) {
        let mut resp = Response::to(req, status, reason.unwrap_or(reason_phrase(status)), to_tag);
        resp.headers.push("Server", self.cfg.user_agent.clone());
        if let Some(after) = Self::retry_after(status) {
            resp.headers.push("Retry-After", after);
        }
        if status == 405 || status == 501 || (req.method == Method::Options && status == 200) {
            resp.headers.push("Allow", ALLOW);
        }
        *self.counters.responses.entry(status).or_default() += 1;
        self.tsx.send_response(now, key, resp);
        self.pump(now);
    }

    fn handle_request(&mut self, now: Instant, peer: Peer, req: Request) {
        let key = match self.tsx.handle_request(now, peer, req.clone()) {
            Ok(Received::New(k)) => k,
            Ok(Received::Ack) => return self.handle_ack(now, &req),
            Ok(Received::Absorbed) | Ok(Received::Merged) => return self.pump(now),
            Err(e) => {
                self.reject_count("malformed");
                tracing::warn!(%peer.addr, "bad request: {e}");
                return;
            }
        };
        let core = req.core().expect("checked by the parser");
        // Unsupported extensions (section 8.2.2.3); CANCEL and ACK cannot be refused.
        let required: Vec<String> = req.headers.list("Require");
        if !required.is_empty() && !matches!(req.method, Method::Cancel | Method::Ack) {
            let mut resp = Response::to(&req, 420, "Bad Extension", None);
            resp.headers.push("Unsupported", required.join(", "));
            tracing::warn!(%peer.addr, require = %required.join(","), "unsupported Require: 420");
            self.reject_count("unsupported_require");
            *self.counters.responses.entry(420).or_default() += 1;
            self.tsx.send_response(now, &key, resp);
            return self.pump(now);
        }
        let in_dialog = core.to.tag().is_some();
        match (&req.method, in_dialog) {
            (Method::Invite, false) => self.new_invite(now, key, peer, req),
            (Method::Options, false) => {
                let status = if self.draining { 503 } else { 200 };
                let mut resp = Response::to(&req, status, reason_phrase(status), Some(&self.tag()));
                resp.headers.push("Allow", ALLOW);
                resp.headers.push("Accept", "application/sdp");
                resp.headers.push("Supported", SUPPORTED);
                resp.headers.push("Server", self.cfg.user_agent.clone());
                *self.counters.responses.entry(status).or_default() += 1;
                self.tsx.send_response(now, &key, resp);
                self.pump(now);
            }
            (Method::Cancel, _) => self.cancel(now, key, req),
            (
                Method::Bye | Method::Invite | Method::Update | Method::Info | Method::Options,
                true,
            ) => self.in_dialog(now, key, req),
            (Method::Other(_), _) => {
                self.reject_count("unknown_method");
                self.respond(now, &key, &req, 501, None, None)
            }
            (_, _) => {
                self.reject_count("method_not_allowed");
                self.respond(now, &key, &req, 405, None, None)
            }
        }
    }

    fn new_invite(&mut self, now: Instant, key: TsxKey, peer: Peer, req: Request) {
        let core = req.core().expect("checked");
        let local_tag = self.tag();
        if self.draining {
            self.reject_count("draining");
            let mut resp = Response::to(&req, 503, "Service Unavailable", Some(&local_tag));
            resp.headers.push("Retry-After", "30");
            *self.counters.responses.entry(503).or_default() += 1;
            self.tsx.send_response(now, &key, resp);
            return self.pump(now);
        }
        let offer = match sdp_body(&req.headers, &req.body) {
            Ok(o) => o,
            Err((status, reason)) => {
                self.reject_count(if status == 415 {
                    "content_type"
                } else {
                    "malformed"
                });
                return self.respond(now, &key, &req, status, Some(&reason), Some(&local_tag));
            }
        };
        let session_expires = match self.session_timer_for(&req) {
            UasDecision::TooSmall { min_se } => {
                self.reject_count("session_interval_too_small");
                let mut resp =
                    Response::to(&req, 422, "Session Interval Too Small", Some(&local_tag));
                resp.headers.push("Min-SE", min_se.to_string());
                *self.counters.responses.entry(422).or_default() += 1;
                self.tsx.send_response(now, &key, resp);
                return self.pump(now);
            }
            UasDecision::Timer { expires, require } => Some((expires, require)),
            UasDecision::NoTimer => None,
        };
        let contact = req
            .headers
            .list("Contact")
            .into_iter()
            .next()
            .and_then(|c| NameAddr::parse(&c));
        let call = CallRef(self.next_call);
        self.next_call += 1;
        let c = Call {
            state: CallState::Incoming,
            invite_tsx: key.clone(),
            peer,
            call_id: core.call_id.clone(),
            local_tag: local_tag.clone(),
            remote_tag: core.from.tag().unwrap_or_default().to_string(),
            remote_uri: req.headers.get("From").unwrap_or_default().to_string(),
            local_uri: req.headers.get("To").unwrap_or_default().to_string(),
            remote_target: contact
                .map(|c| c.uri)
                .unwrap_or_else(|| core.from.uri.clone()),
            route_set: req.headers.list("Record-Route"),
            local_cseq: 0,
            remote_cseq: core.cseq,
            invite_cseq: core.cseq,
            late_offer: offer.is_none(),
            ok: None,
            retransmit: None,
            ack_deadline: None,
            local_sdp: None,
            ack: None,
            remote_origin: offer.as_deref().and_then(origin),
            reoffer: None,
            session_expires,
            timer: None,
        };
        self.by_dialog
            .insert((c.call_id.clone(), local_tag, c.remote_tag.clone()), call);
        self.by_invite.insert(key, call);
        self.calls.insert(call, c);
        self.events.push_back(UaEvent::Invite {
            call,
            offer,
            from: core.from.uri,
            to: core.to.uri,
        });
        self.pump(now);
    }

    /// RFC 4028 for an incoming INVITE (section 9): off unless configured.
    fn session_timer_for(&self, req: &Request) -> UasDecision {
        let Some(cfg) = self.cfg.session_timer else {
            return UasDecision::NoTimer;
        };
        let supports = req
            .headers
            .list("Supported")
            .iter()
            .chain(req.headers.list("k").iter())
            .any(|o| o.trim().eq_ignore_ascii_case("timer"));
        let requested = req
            .headers
            .get("Session-Expires")
            .or_else(|| req.headers.get("x"))
            .and_then(SessionExpires::parse);
        uas_decide(&cfg, requested, supports)
    }

    /// Whether the user agent still knows the call (any state).
    pub fn has_call(&self, call: CallRef) -> bool {
        self.calls.contains_key(&call)
    }

    /// Whether an incoming call still awaits our answer (not cancelled).
    pub fn is_incoming(&self, call: CallRef) -> bool {
        self.calls
            .get(&call)
            .is_some_and(|c| c.state == CallState::Incoming)
    }

    /// The gateway's SDP for an incoming call: 200 OK, then 2xx
    /// retransmission until the ACK (section 13.3.1.4).
    /// False when the call is gone (cancelled meanwhile).
    pub fn answer(&mut self, now: Instant, call: CallRef, sdp: String) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        if c.state != CallState::Incoming || !self.tsx.is_proceeding(&c.invite_tsx) {
            return false;
        }
        let (key, peer, tag) = (c.invite_tsx.clone(), c.peer, c.local_tag.clone());
        let Some(req) = self.tsx.request(&key).cloned() else {
            return false;
        };
        let mut resp = Response::to(&req, 200, "OK", Some(&tag));
        resp.headers.copy_from(&req.headers, "Record-Route");
        resp.headers.push("Contact", self.contact(peer.transport));
        resp.headers.push("Allow", ALLOW);
        resp.headers.push("Supported", SUPPORTED);
        resp.headers.push("Server", self.cfg.user_agent.clone());
        let session_expires = c.session_expires;
        if let Some((se, require)) = session_expires {
            resp.headers.push("Session-Expires", se.header());
            if require {
                resp.headers.push("Require", "timer");
            }
        }
        resp.headers.push("Content-Type", "application/sdp");
        resp.body = sdp.clone().into_bytes();
        *self.counters.responses.entry(200).or_default() += 1;
        self.tsx.send_response(now, &key, resp.clone());
        let t = self.cfg.timers;
        let c = self.calls.get_mut(&call).expect("present");
        c.timer = session_expires.map(|(se, _)| {
            SessionTimer::new(now, se.interval, se.refresher == Some(Refresher::Uas))
        });
        c.state = CallState::Answered;
        c.ok = Some(resp);
        c.local_sdp = Some(sdp);
        if !peer.transport.reliable() {
            c.retransmit = Some(Backoff::new(now, t.t1, Some(t.t2)));
        }
        c.ack_deadline = Some(now + t.timeout());
        self.pump(now);
        true
    }

    /// Refuses an incoming call with a final response.
    /// Whether a 503 should say when to come back (RFC 3261 section 21.5.4).
    fn retry_after(status: u16) -> Option<&'static str> {
        (status == 503).then_some("5")
    }

    pub fn reject(&mut self, now: Instant, call: CallRef, status: u16, reason: &str) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        self.forget(&c);
        if c.state == CallState::Incoming
            && let Some(req) = self.tsx.request(&c.invite_tsx).cloned()
        {
            let reason = reason.replace(['\r', '\n'], " ");
            self.respond(
                now,
                &c.invite_tsx,
                &req,
                status,
                Some(&reason),
                Some(&c.local_tag),
            );
        }
    }

    /// Ends a call from the gateway's side: BYE when confirmed, a final
    /// response while it is still being set up.
    pub fn hangup(&mut self, now: Instant, call: CallRef, reason: &str) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        match c.state {
            CallState::Incoming => self.reject(now, call, 480, reason),
            CallState::Outgoing => {
                let key = c.invite_tsx.clone();
                self.tsx.send_cancel(now, &key);
                self.calls.get_mut(&call).expect("present").state = CallState::Cancelling;
                self.pump(now);
            }
            CallState::Cancelling => {}
            CallState::Answered | CallState::Confirmed => {
                let mut c = self.calls.remove(&call).expect("present");
                self.forget(&c);
                self.send_bye(now, &mut c);
            }
        }
    }

    fn forget(&mut self, c: &Call) {
        self.by_dialog
            .remove(&(c.call_id.clone(), c.local_tag.clone(), c.remote_tag.clone()));
        self.by_invite.remove(&c.invite_tsx);
    }

    fn send_bye(&mut self, now: Instant, c: &mut Call) {
        self.send_in_dialog(now, c, Method::Bye, Vec::new());
    }

    /// A request of ours inside a dialog (BYE, a session refresh UPDATE).
    fn send_in_dialog(
        &mut self,
        now: Instant,
        c: &mut Call,
        method: Method,
        extra: Vec<(&'static str, String)>,
    ) -> TsxKey {
        c.local_cseq = c.local_cseq.max(c.invite_cseq) + 1;
        let mut h = Headers::default();
        for r in &c.route_set {
            h.push("Route", r.clone()); // UAS: Record-Route order as received
        }
        let mut from = c.local_uri.clone();
        if NameAddr::parse(&from).is_some_and(|n| n.tag().is_none()) {
            from.push_str(";tag=");
            from.push_str(&c.local_tag);
        }
        h.push("From", from);
        h.push("To", c.remote_uri.clone());
        h.push("Call-ID", c.call_id.clone());
        h.push("CSeq", format!("{} {}", c.local_cseq, method.as_str()));
        h.push("Max-Forwards", "70");
        h.push("User-Agent", self.cfg.user_agent.clone());
        for (name, value) in extra {
            h.push(name, value);
        }
        let req = Request {
            method: method.clone(),
            uri: c.remote_target.clone(),
            headers: h,
            body: Vec::new(),
        };
        let local = self.local(c.peer.transport).to_string();
        // Next hop (RFC 3261 section 8.1.2): the configured softswitch; else
        // the first Route (loose routing) or the remote target when it is an
        // IP address; else back where the dialog came from.
        let first_hop = c
            .route_set
            .first()
            .and_then(|r| NameAddr::parse(r))
            .map(|n| n.uri);
        let target = first_hop.as_deref().unwrap_or(&c.remote_target);
        let addr = self
            .cfg
            .next_hop
            .or_else(|| uri_socket_addr(target))
            .unwrap_or(c.peer.addr);
        let peer = Peer {
            addr,
            transport: c.peer.transport,
        };
        *self
            .counters
            .requests
            .entry(format!("{}(out)", method.as_str()))
            .or_default() += 1;
        let key = self.tsx.send_request(now, peer, &local, req);
        self.pump(now);
        key
    }

    fn handle_ack(&mut self, now: Instant, ack: &Request) {
        let Ok(core) = ack.core() else { return };
        let dk = (
            core.call_id.clone(),
            core.to.tag().unwrap_or_default().to_string(),
            core.from.tag().unwrap_or_default().to_string(),
        );
        let Some(&call) = self.by_dialog.get(&dk) else {
            tracing::debug!("ACK for no dialog dropped");
            return;
        };
        let c = self.calls.get_mut(&call).expect("indexed");
        if c.state == CallState::Answered && core.cseq == c.invite_cseq {
            c.state = CallState::Confirmed;
            c.retransmit = None;
            c.ack_deadline = None;
            if c.late_offer {
                match sdp_body(&ack.headers, &ack.body) {
                    Ok(Some(sdp)) => {
                        c.remote_origin = origin(&sdp);
                        self.events.push_back(UaEvent::Answer { call, sdp })
                    }
                    _ => {
                        // Section 13.3.1.4 / 14: no usable answer: end the call.
                        tracing::warn!(call = call.0, "late offer: ACK without an SDP answer");
                        self.events.push_back(UaEvent::Ended {
                            call,
                            reason: "ACK without SDP answer".into(),
                        });
                        self.hangup(now, call, "no answer in ACK");
                    }
                }
            }
        }
        self.pump(now);
    }

    fn cancel(&mut self, now: Instant, key: TsxKey, req: Request) {
        let invite = key.invite_for_cancel();
        let call = invite.as_ref().and_then(|k| self.by_invite.get(k).copied());
        let Some(invite) = invite.filter(|k| self.tsx.request(k).is_some()) else {
            self.reject_count("cancel_no_transaction");
            return self.respond(now, &key, &req, 481, None, None);
        };
        self.respond(now, &key, &req, 200, None, None);
        if self.tsx.is_proceeding(&invite) {
            // Section 9.2: the INVITE gets 487, the call is gone.
            let inv = self.tsx.request(&invite).cloned().expect("checked");
            let tag = call
                .and_then(|c| self.calls.get(&c))
                .map(|c| c.local_tag.clone());
            self.respond(now, &invite, &inv, 487, None, tag.as_deref());
            if let Some(call) = call
                && let Some(c) = self.calls.remove(&call)
            {
                self.forget(&c);
                self.events.push_back(UaEvent::Ended {
                    call,
                    reason: "CANCEL".into(),
                });
            }
        }
    }

    fn in_dialog(&mut self, now: Instant, key: TsxKey, req: Request) {
        let core = req.core().expect("checked");
        let dk = (
            core.call_id.clone(),
            core.to.tag().unwrap_or_default().to_string(),
            core.from.tag().unwrap_or_default().to_string(),
        );
        let Some(&call) = self.by_dialog.get(&dk) else {
            self.reject_count("no_dialog");
            return self.respond(now, &key, &req, 481, None, None);
        };
        let c = self.calls.get_mut(&call).expect("indexed");
        // Section 12.2.2: CSeq must grow (a retransmission is caught by the
        // transaction layer before this).
        if core.cseq <= c.remote_cseq {
            self.reject_count("cseq_out_of_order");
            return self.respond(now, &key, &req, 500, Some("CSeq out of order"), None);
        }
        c.remote_cseq = core.cseq;
        match req.method {
            Method::Bye => {
                let c = self.calls.remove(&call).expect("present");
                self.forget(&c);
                self.respond(now, &key, &req, 200, None, None);
                self.events.push_back(UaEvent::Ended {
                    call,
                    reason: "BYE".into(),
                });
            }
            Method::Invite | Method::Update => self.reinvite(now, call, key, req),
            Method::Info => self.info(now, call, key, req),
            _ => self.respond(now, &key, &req, 200, None, None),
        }
    }

    /// A re-INVITE or UPDATE in a dialog (RFC 3261 section 14.2, RFC 3311):
    /// a new offer goes to the gateway; a refresh (no SDP, or the same
    /// version) is answered at once with our current SDP.
    fn reinvite(&mut self, now: Instant, call: CallRef, key: TsxKey, req: Request) {
        let update = req.method == Method::Update;
        let c = self.calls.get_mut(&call).expect("indexed");
        // Any re-INVITE or UPDATE refreshes the session (RFC 4028 section 10).
        if let Some(t) = c.timer.as_mut() {
            t.refreshed(now);
        }
        // One offer at a time (section 14.2): 491, the peer retries later.
        if c.reoffer.is_some() || (!update && c.state == CallState::Answered) {
            self.reject_count("request_pending");
            return self.respond(now, &key, &req, 491, None, None);
        }
        let offer = match sdp_body(&req.headers, &req.body) {
            Ok(o) => o,
            Err((status, reason)) => {
                self.reject_count("content_type");
                return self.respond(now, &key, &req, status, Some(&reason), None);
            }
        };
        let c = self.calls.get_mut(&call).expect("indexed");
        match offer {
            Some(sdp) if origin(&sdp) != c.remote_origin => {
                let prior_origin = std::mem::replace(&mut c.remote_origin, origin(&sdp));
                c.reoffer = Some(Reoffer { key, prior_origin });
                self.events.push_back(UaEvent::Reoffer { call, sdp });
                self.pump(now);
            }
            offer => {
                // A session refresh: our SDP again (an offer, when the
                // re-INVITE had none; its answer in the ACK changes nothing).
                let sdp = c.local_sdp.clone().unwrap_or_default();
                let with_sdp = !update || offer.is_some();
                self.ok_with_sdp(now, call, key, &req, with_sdp.then_some(sdp));
            }
        }
    }

    /// The 200 for a re-INVITE or UPDATE; a re-INVITE's 2xx is retransmitted
    /// until its ACK like the first one (section 13.3.1.4).
    fn ok_with_sdp(
        &mut self,
        now: Instant,
        call: CallRef,
        key: TsxKey,
        req: &Request,
        sdp: Option<String>,
    ) {
        let transport = self.calls[&call].peer.transport;
        let mut resp = Response::to(req, 200, "OK", None);
        resp.headers.push("Contact", self.contact(transport));
        resp.headers.push("Allow", ALLOW);
        if let Some(t) = self.calls[&call].timer {
            // The requester keeps refreshing when it is the refresher.
            let refresher = if t.we_refresh {
                Refresher::Uas
            } else {
                Refresher::Uac
            };
            let se = SessionExpires {
                interval: t.interval.as_secs() as u32,
                refresher: Some(refresher),
            };
            resp.headers.push("Session-Expires", se.header());
        }
        resp.headers.push("Server", self.cfg.user_agent.clone());
        if let Some(sdp) = sdp {
            resp.headers.push("Content-Type", "application/sdp");
            resp.body = sdp.into_bytes();
        }
        *self.counters.responses.entry(200).or_default() += 1;
        self.tsx.send_response(now, &key, resp.clone());
        if req.method == Method::Invite {
            let t = self.cfg.timers;
            let cseq = req.core().map(|c| c.cseq).unwrap_or_default();
            let c = self.calls.get_mut(&call).expect("present");
            c.state = CallState::Answered;
            c.invite_cseq = cseq;
            c.late_offer = false;
            c.ok = Some(resp);
            c.retransmit = (!transport.reliable()).then(|| Backoff::new(now, t.t1, Some(t.t2)));
            c.ack_deadline = Some(now + t.timeout());
        }
        self.pump(now);
    }

    /// The gateway's answer to a re-offer ([`UaEvent::Reoffer`]), or its
    /// refusal (e.g. 488): a refused offer leaves the session as it was
    /// (section 14.2).
    pub fn answer_reoffer(
        &mut self,
        now: Instant,
        call: CallRef,
        result: Result<String, (u16, String)>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(r) = c.reoffer.take() else {
            return;
        };
        let Some(req) = self.tsx.request(&r.key).cloned() else {
            return;
        };
        match result {
            Ok(sdp) => {
                c.local_sdp = Some(sdp.clone());
                self.ok_with_sdp(now, call, r.key, &req, Some(sdp));
            }
            Err((status, reason)) => {
                c.remote_origin = r.prior_origin;
                let reason = reason.replace(['\r', '\n'], " ");
                self.respond(now, &r.key, &req, status, Some(&reason), None);
            }
        }
    }

    /// INFO (RFC 6086): DTMF bodies become [`UaEvent::Dtmf`]; an empty INFO
    /// is a keep-alive; other bodies get 415 with what we accept.
    fn info(&mut self, now: Instant, call: CallRef, key: TsxKey, req: Request) {
        if req.body.is_empty() {
            return self.respond(now, &key, &req, 200, None, None);
        }
        let ctype = req
            .headers
            .get("Content-Type")
            .unwrap_or_default()
            .to_string();
        match dtmf_info::parse(&ctype, &req.body) {
            Ok((digit, duration_ms)) => {
                self.events.push_back(UaEvent::Dtmf {
                    call,
                    digit,
                    duration_ms,
                });
                self.respond(now, &key, &req, 200, None, None);
            }
            Err(e @ dtmf_info::DtmfInfoError::ContentType(_)) => {
                tracing::info!(call = call.0, "INFO refused: {e}");
                self.reject_count("info_content_type");
                let mut resp = Response::to(&req, 415, "Unsupported Media Type", None);
                resp.headers.push("Accept", dtmf_info::ACCEPTED);
                *self.counters.responses.entry(415).or_default() += 1;
                self.tsx.send_response(now, &key, resp);
                self.pump(now);
            }
            Err(e) => {
                tracing::info!(call = call.0, "INFO refused: {e}");
                self.reject_count("info_malformed");
                self.respond(now, &key, &req, 400, Some(&e.to_string()), None);
            }
        }
    }

    /// Starts an outbound call (UAC, RFC 3261 section 13.2): an INVITE with
    /// `sdp` to `uri`, sent to the next hop (configured, else the URI's IP).
    /// None when there is nowhere to send it.
    pub fn invite(
        &mut self,
        now: Instant,
        uri: &str,
        from_user: &str,
        sdp: String,
    ) -> Option<CallRef> {
        let addr = self.cfg.next_hop.or_else(|| uri_socket_addr(uri))?;
        let transport = if uri.contains("transport=tcp") {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let peer = Peer { addr, transport };
        let local = self.local(transport);
        let local_tag = self.tag();
        let call_id = format!("{}-{:x}@rtcgw", self.tag(), self.cfg.branch_salt);
        let local_uri = format!("<sip:{from_user}@{local}>");
        let mut h = Headers::default();
        h.push("From", format!("{local_uri};tag={local_tag}"));
        h.push("To", format!("<{uri}>"));
        h.push("Call-ID", call_id.clone());
        h.push("CSeq", "1 INVITE");
        h.push("Max-Forwards", "70");
        h.push("Contact", self.contact(transport));
        h.push("Allow", ALLOW);
        h.push("User-Agent", self.cfg.user_agent.clone());
        if let Some(st) = self.cfg.session_timer {
            // We offer to refresh (RFC 4028 section 7.1); the callee decides.
            h.push("Supported", "timer");
            h.push("Session-Expires", st.expires.to_string());
            h.push("Min-SE", st.min_se.to_string());
        }
        h.push("Content-Type", "application/sdp");
        let req = Request {
            method: Method::Invite,
            uri: uri.to_string(),
            headers: h,
            body: sdp.clone().into_bytes(),
        };
        *self
            .counters
            .requests
            .entry("INVITE(out)".into())
            .or_default() += 1;
        let key = self.tsx.send_request(now, peer, &local.to_string(), req);
        let call = CallRef(self.next_call);
        self.next_call += 1;
        self.by_invite.insert(key.clone(), call);
        self.calls.insert(
            call,
            Call {
                state: CallState::Outgoing,
                invite_tsx: key,
                peer,
                call_id,
                local_tag,
                remote_tag: String::new(),
                remote_uri: format!("<{uri}>"),
                local_uri,
                remote_target: uri.to_string(),
                route_set: Vec::new(),
                local_cseq: 1,
                remote_cseq: 0,
                invite_cseq: 1,
                late_offer: false,
                ok: None,
                retransmit: None,
                ack_deadline: None,
                local_sdp: Some(sdp),
                ack: None,
                remote_origin: None,
                reoffer: None,
                session_expires: None,
                timer: None,
            },
        );
        self.pump(now);
        Some(call)
    }

    /// A provisional response (180/183) to an incoming INVITE, e.g. the
    /// callee's ringing relayed by the B2BUA; `sdp` makes it early media.
    pub fn provisional(&mut self, now: Instant, call: CallRef, status: u16, sdp: Option<String>) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Incoming {
            return;
        }
        let (key, tag, transport) = (c.invite_tsx.clone(), c.local_tag.clone(), c.peer.transport);
        let Some(req) = self.tsx.request(&key).cloned() else {
            return;
        };
        let mut resp = Response::to(&req, status, reason_phrase(status), Some(&tag));
        resp.headers.push("Contact", self.contact(transport));
        if let Some(sdp) = sdp {
            resp.headers.push("Content-Type", "application/sdp");
            resp.body = sdp.into_bytes();
        }
        *self.counters.responses.entry(status).or_default() += 1;
        self.tsx.send_response(now, &key, resp);
        self.pump(now);
    }

    fn handle_uac_response(&mut self, now: Instant, call: CallRef, resp: Response) {
        let body = (!resp.body.is_empty()).then(|| String::from_utf8_lossy(&resp.body).to_string());
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let cancelling = c.state == CallState::Cancelling;
        match resp.status {
            100..=199 => {
                if resp.status > 100 && !cancelling {
                    self.events.push_back(UaEvent::Progress {
                        call,
                        status: resp.status,
                        sdp: body,
                    });
                }
            }
            200..=299 => {
                if matches!(c.state, CallState::Outgoing | CallState::Cancelling) {
                    let to = resp.headers.get("To").unwrap_or_default().to_string();
                    c.remote_tag = NameAddr::parse(&to)
                        .and_then(|n| n.tag().map(str::to_string))
                        .unwrap_or_default();
                    c.remote_uri = to;
                    if let Some(contact) = resp
                        .headers
                        .list("Contact")
                        .first()
                        .and_then(|c| NameAddr::parse(c))
                    {
                        c.remote_target = contact.uri;
                    }
                    // UAC: the route set is Record-Route in reverse (12.1.2).
                    c.route_set = resp
                        .headers
                        .list("Record-Route")
                        .into_iter()
                        .rev()
                        .collect();
                    c.state = CallState::Confirmed;
                    c.remote_origin = body.as_deref().and_then(origin);
                    // Section 7.2: the 2xx names the refresher; none: no timer.
                    if self.cfg.session_timer.is_some()
                        && let Some(se) = resp
                            .headers
                            .get("Session-Expires")
                            .and_then(SessionExpires::parse)
                    {
                        let we = se.refresher.unwrap_or(Refresher::Uac) == Refresher::Uac;
                        c.timer = Some(SessionTimer::new(now, se.interval, we));
                    }
                    self.by_dialog.insert(
                        (c.call_id.clone(), c.local_tag.clone(), c.remote_tag.clone()),
                        call,
                    );
                    let ack = self.build_ack(call);
                    let c = self.calls.get_mut(&call).expect("present");
                    c.ack = Some(ack.clone());
                    let peer = c.peer;
                    self.out.push_back(Outgoing { peer, bytes: ack });
                    if cancelling {
                        // The 2xx crossed our CANCEL: end the dialog it made.
                        self.hangup(now, call, "cancelled");
                    } else {
                        self.events.push_back(UaEvent::Accepted { call, sdp: body });
                    }
                } else if let Some(ack) = c.ack.clone() {
                    let peer = c.peer;
                    self.out.push_back(Outgoing { peer, bytes: ack });
                }
            }
            _ => {
                let c = self.calls.remove(&call).expect("present");
                self.forget(&c);
                if !cancelling {
                    self.events.push_back(UaEvent::Rejected {
                        call,
                        status: resp.status,
                        reason: resp.reason,
                    });
                }
            }
        }
    }

    /// The ACK for a 2xx (section 13.2.2.4): its own branch, the dialog's
    /// route set and tags, the INVITE's CSeq number.
    fn build_ack(&mut self, call: CallRef) -> Vec<u8> {
        let branch = self.tsx.new_branch();
        let c = &self.calls[&call];
        let local = self.local(c.peer.transport);
        let mut h = Headers::default();
        h.push(
            "Via",
            format!(
                "SIP/2.0/{} {local};branch={branch};rport",
                c.peer.transport.as_str()
            ),
        );
        for r in &c.route_set {
            h.push("Route", r.clone());
        }
        h.push("From", format!("{};tag={}", c.local_uri, c.local_tag));
        h.push("To", c.remote_uri.clone());
        h.push("Call-ID", c.call_id.clone());
        h.push("CSeq", format!("{} ACK", c.invite_cseq));
        h.push("Max-Forwards", "70");
        Message::Request(Request {
            method: Method::Ack,
            uri: c.remote_target.clone(),
            headers: h,
            body: Vec::new(),
        })
        .to_bytes()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.tsx.handle_timeout(now);
        let mut give_up = Vec::new();
        for (&call, c) in self.calls.iter_mut() {
            if let Some(r) = c.retransmit.as_mut()
                && now >= r.at
                && let Some(ok) = &c.ok
            {
                r.fire(now);
                self.out.push_back(Outgoing {
                    peer: c.peer,
                    bytes: Message::Response(ok.clone()).to_bytes(),
                });
            }
            if c.ack_deadline.is_some_and(|d| now >= d) {
                give_up.push(call);
            }
        }
        let due: Vec<(CallRef, bool)> = self
            .calls
            .iter()
            .filter_map(|(&call, c)| {
                let t = c.timer?;
                (now >= t.due && c.state == CallState::Confirmed).then_some((call, t.we_refresh))
            })
            .collect();
        for (call, we_refresh) in due {
            if we_refresh {
                self.refresh(now, call);
            } else {
                // RFC 4028 section 10: no refresh in time: the session is over.
                tracing::warn!(call = call.0, "session timer expired: BYE");
                self.reject_count("session_expired");
                self.events.push_back(UaEvent::Ended {
                    call,
                    reason: "session timer expired".into(),
                });
                self.hangup(now, call, "session expired");
            }
        }
        for call in give_up {
            // Section 13.3.1.4: no ACK within 64*T1: the dialog ends with BYE.
            tracing::warn!(call = call.0, "no ACK for 200 within 64*T1: BYE");
            self.reject_count("no_ack");
            self.events.push_back(UaEvent::Ended {
                call,
                reason: "no ACK".into(),
            });
            self.hangup(now, call, "no ACK");
        }
        self.pump(now);
    }

    /// Sends a session refresh (UPDATE without SDP, RFC 4028 section 7.4).
    fn refresh(&mut self, now: Instant, call: CallRef) {
        let Some(mut c) = self.calls.remove(&call) else {
            return;
        };
        let t = c.timer.as_mut().expect("timer due");
        t.refreshed(now);
        let se = SessionExpires {
            interval: t.interval.as_secs() as u32,
            refresher: Some(Refresher::Uac),
        };
        let extra = vec![
            ("Session-Expires", se.header()),
            ("Supported", "timer".to_string()),
            ("Contact", self.contact(c.peer.transport)),
        ];
        let key = self.send_in_dialog(now, &mut c, Method::Update, extra);
        self.calls.insert(call, c);
        self.refreshes.insert(key, call);
    }

    /// A refresh failed with the dialog gone (481) or unanswered (408,
    /// timeout): end the call (RFC 4028 section 10, RFC 5057).
    fn refresh_failed(&mut self, now: Instant, call: CallRef, why: &str) {
        if !self.calls.contains_key(&call) {
            return;
        }
        tracing::warn!(
            call = call.0,
            "session refresh failed ({why}): ending the call"
        );
        self.events.push_back(UaEvent::Ended {
            call,
            reason: format!("session refresh failed: {why}"),
        });
        self.hangup(now, call, "refresh failed");
    }

    /// Moves transaction output to ours.
    fn pump(&mut self, now: Instant) {
        while let Some(t) = self.tsx.poll_transmit() {
            self.out.push_back(Outgoing {
                peer: t.peer,
                bytes: t.msg.to_bytes(),
            });
        }
        while let Some(e) = self.tsx.poll_event() {
            match e {
                TsxEvent::Timeout { key } if self.refreshes.contains_key(&key) => {
                    let call = self.refreshes.remove(&key).expect("checked");
                    self.refresh_failed(now, call, "timeout");
                }
                TsxEvent::Response { key, response }
                    if response.status >= 200 && self.refreshes.contains_key(&key) =>
                {
                    let call = self.refreshes.remove(&key).expect("checked");
                    if matches!(response.status, 408 | 481) {
                        self.refresh_failed(now, call, &response.status.to_string());
                    }
                }
                TsxEvent::Timeout { key } => {
                    if let Some(call) = self.by_invite.get(&key).copied()
                        && let Some(c) = self.calls.remove(&call)
                    {
                        self.forget(&c);
                        self.events.push_back(if c.state == CallState::Outgoing {
                            UaEvent::Rejected {
                                call,
                                status: 408,
                                reason: "Request Timeout".into(),
                            }
                        } else {
                            UaEvent::Ended {
                                call,
                                reason: "transaction timeout".into(),
                            }
                        });
                    }
                }
                TsxEvent::Response { key, response } => match self.by_invite.get(&key).copied() {
                    Some(call) => self.handle_uac_response(now, call, response),
                    None if response.status >= 300 => {
                        tracing::debug!(status = response.status, "our request was refused")
                    }
                    None => {}
                },
                _ => {}
            }
        }
    }

    pub fn poll_output(&mut self) -> Option<Outgoing> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let calls = self
            .calls
            .values()
            .flat_map(|c| {
                [
                    c.retransmit.map(|r| r.at),
                    c.ack_deadline,
                    c.timer.map(|t| t.due),
                ]
            })
            .flatten();
        self.tsx.poll_timeout().into_iter().chain(calls).min()
    }
}

/// RFC 3261 section 18.2.1 and RFC 3581: record where the request really
/// came from in the top Via (received, rport).
fn stamp_via(req: &mut Request, peer: Peer) {
    let Some(top) = req.headers.list("Via").into_iter().next() else {
        return;
    };
    let Some(mut via) = super::message::Via::parse(&top) else {
        return;
    };
    if via.host != peer.addr.ip().to_string() {
        via.set_param("received", Some(peer.addr.ip().to_string()));
    }
    if via.param("rport").is_some() {
        via.set_param("rport", Some(peer.addr.port().to_string()));
        via.set_param("received", Some(peer.addr.ip().to_string()));
    }
    req.headers.replace_first("Via", via.to_string());
}

/// The socket address of a SIP URI whose host is an IP literal
/// ("sip:user@192.0.2.1:5070;transport=tcp"); None for names (no DNS here).
pub fn uri_socket_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = hostport.split([';', '?']).next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, port) = v6.split_once(']')?;
        let port = port
            .strip_prefix(':')
            .map_or(Some(5060), |p| p.parse().ok())?;
        return Some(SocketAddr::new(host.parse().ok()?, port));
    }
    let (host, port) = hostport
        .rsplit_once(':')
        .map_or((hostport, Some(5060)), |(h, p)| (h, p.parse().ok()));
    Some(SocketAddr::new(host.parse().ok()?, port?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_networks() {
        let n: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(
            n.contains("::ffff:10.1.0.9".parse().unwrap()),
            "v4-mapped v6"
        );
        let any: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("192.0.2.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!(
            "::1/128"
                .parse::<IpNet>()
                .unwrap()
                .contains("::1".parse().unwrap())
        );
    }

    #[test]
    fn uri_addresses() {
        assert_eq!(
            uri_socket_addr("sip:a@192.0.2.1:5070;transport=tcp"),
            Some("192.0.2.1:5070".parse().unwrap())
        );
        assert_eq!(
            uri_socket_addr("sip:192.0.2.1;lr"),
            Some("192.0.2.1:5060".parse().unwrap())
        );
        assert_eq!(
            uri_socket_addr("sip:u@[2001:db8::1]:5080"),
            Some("[2001:db8::1]:5080".parse().unwrap())
        );
        assert_eq!(uri_socket_addr("sip:u@proxy.example.com"), None);
        assert_eq!(uri_socket_addr("tel:+123"), None);
    }
}
