//! The user agent core (RFC 3261 sections 8.2, 12, 13, 14, 15): the
//! transaction user that turns INVITEs into events for the gateway, keeps
//! their dialogs, places outbound calls, and answers everything else as a
//! well-behaved UAS. Sans-IO: bytes and time in, bytes and events out.
//!
//! One responsibility per file, all on [`UserAgent`]:
//! - [`access`]: who may send requests, what their Via really says;
//! - [`dialog`]: dialog state and identity, requests inside a dialog;
//! - [`uas`]: incoming INVITEs, their answers, refusals, CANCEL and ACK;
//! - [`uac`]: outbound INVITEs, their responses and ACKs;
//! - [`reinvite`]: re-INVITE/UPDATE offers and RFC 4028 refreshes;
//! - [`info`]: INFO (DTMF relay bodies).

mod access;
mod dialog;
mod info;
mod reinvite;
mod uac;
mod uas;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

pub use access::IpNet;
pub use dialog::{DialogKey, uri_target, uri_transport};
pub use uac::OutboundInvite;

use super::message::{Headers, Message, Method, NameAddr, Request, Response, reason_phrase};
use super::metrics::{Direction, Rejection, SipMetrics};
use super::session_timer::SessionTimerConfig;
use super::tsx::{Peer, Received, Timers, Transactions, Transport, TsxEvent, TsxKey};
use crate::log_gate::LogGate;
use dialog::{Dialog, DialogState};

/// The softswitch every request we originate goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    pub addr: SocketAddr,
    /// None: the transport the request's URI asks for (UDP if it does not).
    pub transport: Option<Transport>,
}

/// Settings of the user agent.
#[derive(Debug, Clone)]
pub struct UaConfig {
    pub timers: Timers,
    /// Our sent-by / Contact addresses: per transport, and per address
    /// family when SIP listens on IPv4 and IPv6 (a peer is told the one of
    /// its own family).
    pub local: Vec<(Transport, SocketAddr)>,
    /// Networks allowed to send requests (the softswitch).
    pub allowed: Vec<IpNet>,
    /// Networks whose P-Asserted-Identity is believed (RFC 3325 trust
    /// domain); from others it is dropped.
    pub trusted: Vec<IpNet>,
    /// Where out-of-dialog and unroutable requests go (the softswitch).
    pub next_hop: Option<NextHop>,
    pub user_agent: String,
    pub branch_salt: u64,
    /// RFC 4028 session timers; None: off (Session-Expires is ignored).
    pub session_timer: Option<SessionTimerConfig>,
    /// Retry-After (seconds) on the 503 that OPTIONS gets while draining.
    pub drain_retry_after_s: u32,
}

/// One dialog (or dialog to be) as the user agent knows it: an incoming or
/// outgoing INVITE and what it became.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogRef(pub u64);

impl std::fmt::Display for DialogRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "d{}", self.0)
    }
}

/// Who is calling, as an incoming INVITE says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The From header's name-addr (display name, URI).
    pub from: NameAddr,
    /// RFC 3325 P-Asserted-Identity, only when the INVITE came from a
    /// trusted source.
    pub asserted: Option<String>,
    /// RFC 3323 Privacy, kept with the asserted identity it qualifies.
    pub privacy: Option<String>,
}

impl Caller {
    /// The user part of the caller's From URI, if any ("alice" in
    /// `sip:alice@example.com`).
    pub fn user(&self) -> Option<&str> {
        uri_user(&self.from.uri)
    }
}

/// The user part of a sip:/sips: URI.
pub fn uri_user(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    let user = user.split(';').next().unwrap_or(user);
    (!user.is_empty()).then_some(user)
}

/// Why a dialog ended on the SIP side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialogEnd {
    /// The peer sent BYE.
    Bye,
    /// The caller cancelled before the answer (487 sent).
    Cancel,
    /// No ACK for our 2xx within 64*T1 (BYE sent).
    NoAck,
    /// The late offer's ACK carried no usable answer (BYE sent).
    NoAnswerInAck,
    /// The INVITE transaction timed out.
    Timeout,
    /// RFC 4028: the peer did not refresh in time (BYE sent).
    SessionExpired,
    /// RFC 4028: our refresh failed (408, 481 or no answer; BYE sent).
    RefreshFailed,
}

impl std::fmt::Display for DialogEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::NoAck => "no ACK",
            Self::NoAnswerInAck => "ACK without SDP answer",
            Self::Timeout => "transaction timeout",
            Self::SessionExpired => "session timer expired",
            Self::RefreshFailed => "session refresh failed",
        })
    }
}

/// What the user agent asks of the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UaEvent {
    /// A new INVITE: answer with [`UserAgent::answer`] or refuse with
    /// [`UserAgent::reject`]. `offer` is None for a late offer (the answer
    /// then comes in the ACK).
    Invite {
        dialog: DialogRef,
        offer: Option<String>,
        caller: Caller,
        /// The To URI (whom the caller wants, as the caller put it).
        to: String,
        /// The Request-URI (where the softswitch routed it: the called
        /// user, RFC 3261 section 8.2.2.1).
        uri: String,
    },
    /// The ACK for a late-offer 200 carried the answer.
    Answer { dialog: DialogRef, sdp: String },
    /// The dialog is over on the SIP side.
    Ended { dialog: DialogRef, why: DialogEnd },
    /// Our outbound INVITE got a provisional response (with SDP: early media).
    Progress {
        dialog: DialogRef,
        status: u16,
        sdp: Option<String>,
    },
    /// Our outbound INVITE was answered (ACK sent).
    Accepted {
        dialog: DialogRef,
        sdp: Option<String>,
    },
    /// Our outbound INVITE was refused or timed out.
    Rejected {
        dialog: DialogRef,
        status: u16,
        reason: String,
    },
    /// A re-INVITE or UPDATE with a new offer in an established dialog
    /// (hold, resume, new address or codec, ICE restart): answer with
    /// [`UserAgent::answer_reoffer`].
    Reoffer { dialog: DialogRef, sdp: String },
    /// A DTMF digit by SIP INFO (application/dtmf-relay, application/dtmf).
    Dtmf {
        dialog: DialogRef,
        digit: char,
        duration_ms: u32,
    },
}

/// A message the driver must send, serialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub peer: Peer,
    pub bytes: Vec<u8>,
}

const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO";
/// What we say we support: RFC 4028 session timers only when they are on
/// (advertising them otherwise makes a caller refresh for nothing, and
/// RFC 4028 section 9 expects the 2xx to carry Session-Expires then).
fn supported(cfg: &UaConfig) -> Option<&'static str> {
    cfg.session_timer.is_some().then_some("timer")
}

/// The user agent: every dialog of the gateway's SIP side.
pub struct UserAgent {
    cfg: UaConfig,
    tsx: Transactions,
    dialogs: HashMap<DialogRef, Dialog>,
    by_key: HashMap<DialogKey, DialogRef>,
    by_invite: HashMap<TsxKey, DialogRef>,
    next_id: u64,
    events: VecDeque<UaEvent>,
    out: VecDeque<Outgoing>,
    metrics: SipMetrics,
    draining: bool,
    /// Overloaded (no headroom for another call): OPTIONS gets 503 with
    /// this Retry-After.
    overloaded: Option<u32>,
    /// OPTIONS outside a dialog by source address (dispatchers' keep-alive
    /// probes; a pair of proxies probes from two), at most
    /// [`MAX_PROBERS`] of them.
    probers: HashMap<std::net::IpAddr, Prober>,
    /// Our session refresh UPDATEs in flight.
    refreshes: HashMap<TsxKey, DialogRef>,
    /// Lines a peer's bad input causes: at most ten a second.
    noise: LogGate,
}

/// Sources of OPTIONS remembered for the drain (a bound: OPTIONS from
/// many addresses must not grow memory).
const MAX_PROBERS: usize = 64;

/// One source of OPTIONS probes.
#[derive(Debug, Clone, Copy)]
struct Prober {
    before: Option<Instant>,
    last: Instant,
    /// Answered 503 since draining began.
    refused: bool,
}

impl UserAgent {
    pub fn new(cfg: UaConfig, metrics: SipMetrics) -> Self {
        let tsx = Transactions::new(cfg.timers, cfg.branch_salt);
        Self {
            cfg,
            tsx,
            dialogs: HashMap::new(),
            by_key: HashMap::new(),
            by_invite: HashMap::new(),
            next_id: 1,
            events: VecDeque::new(),
            out: VecDeque::new(),
            metrics,
            draining: false,
            overloaded: None,
            probers: HashMap::new(),
            refreshes: HashMap::new(),
            noise: LogGate::new(std::time::Duration::from_millis(100)),
        }
    }

    /// While draining, OPTIONS is answered 503 (a dispatcher's probe then
    /// takes the gateway out of rotation); whether new INVITEs are taken
    /// is the gateway's decision.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
        for p in self.probers.values_mut() {
            p.refused = false;
        }
    }

    /// While overloaded, OPTIONS is answered 503 with `Retry-After` so that
    /// a dispatcher sends new calls elsewhere for a while.
    pub fn set_overloaded(&mut self, retry_after_s: Option<u32>) {
        self.overloaded = retry_after_s;
    }

    /// Whether every source that probes with OPTIONS regularly (two probes
    /// at most two minutes apart, the last within five minutes of `since`)
    /// has been answered 503 since draining began: the dispatchers watching
    /// this gateway have all seen it go. True when nobody probes.
    pub fn probers_have_seen_the_drain(&self, since: Instant) -> bool {
        self.probers.values().all(|p| {
            let regular = p.before.is_some_and(|b| {
                p.last.saturating_duration_since(b) <= std::time::Duration::from_secs(120)
            }) && since.saturating_duration_since(p.last)
                < std::time::Duration::from_secs(300);
            p.refused || !regular
        })
    }

    /// Dialogs (and dialogs to be) in any state.
    pub fn dialogs(&self) -> usize {
        self.dialogs.len()
    }

    pub fn transactions(&self) -> usize {
        self.tsx.len()
    }

    pub fn metrics(&self) -> &SipMetrics {
        &self.metrics
    }

    fn reject_count(&self, reason: Rejection) {
        self.metrics.reject(reason);
    }

    fn next_ref(&mut self) -> DialogRef {
        self.next_id += 1;
        DialogRef(self.next_id)
    }

    /// A connection to `peer` could not be opened: what we sent it fails
    /// as if answered 503 (RFC 3261 section 8.1.3.1).
    pub fn transport_error(&mut self, now: Instant, peer: Peer) {
        self.tsx.transport_error(peer);
        self.pump(now);
    }

    /// A datagram or stream frame from `peer`.
    pub fn handle_input(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                match e.partial {
                    // Enough to answer: 400 (505 for another SIP version)
                    // with the reason (sections 8.2 and 21.4.1).
                    Some(req) if req.method != Method::Ack && self.allowed(peer) => {
                        if let Some(held) = self.noise.pass(now) {
                            tracing::warn!(%peer.addr, reason = %e.reason, held_back = held, "bad SIP request: {}", e.status);
                        }
                        self.reject_count(Rejection::Malformed);
                        let reason = format!(
                            "{} ({})",
                            reason_phrase(e.status),
                            e.reason.replace(['\r', '\n'], " ")
                        );
                        self.send_stateless(peer, Response::to(&req, e.status, &reason, None));
                    }
                    _ => {
                        if let Some(held) = self.noise.pass(now) {
                            tracing::warn!(%peer.addr, reason = %e.reason, held_back = held, "unparseable SIP message dropped");
                        }
                        self.reject_count(Rejection::Unparseable);
                    }
                }
                return;
            }
        };
        match msg {
            Message::Request(mut req) => {
                self.metrics.request(&req.method, Direction::In);
                if !self.allowed(peer) {
                    if let Some(held) = self.noise.pass(now) {
                        tracing::warn!(%peer.addr, method = %req.method, held_back = held, "request from a source not allowed: 403");
                    }
                    self.reject_count(Rejection::ForbiddenSource);
                    if req.method != Method::Ack {
                        self.send_stateless(peer, Response::to(&req, 403, "Forbidden", None));
                    }
                    return;
                }
                access::stamp_via(&mut req, peer);
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

    fn send_stateless(&mut self, peer: Peer, resp: Response) {
        self.metrics.response(resp.status);
        self.out.push_back(Outgoing {
            peer,
            bytes: Message::Response(resp).to_bytes(),
        });
    }

    /// Sends a response on a server transaction, counted.
    fn send_response(&mut self, now: Instant, key: &TsxKey, resp: Response) {
        self.metrics.response(resp.status);
        self.tsx.send_response(now, key, resp);
        self.pump(now);
    }

    /// A response with the usual headers: Server, Allow where the status
    /// calls for it, Retry-After on 503.
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
        if status == 405 || status == 501 || (req.method == Method::Options && status == 200) {
            resp.headers.push("Allow", ALLOW);
        }
        self.send_response(now, key, resp);
    }

    fn handle_request(&mut self, now: Instant, peer: Peer, req: Request) {
        let key = match self.tsx.handle_request(now, peer, req.clone()) {
            Ok(Received::New(k)) => k,
            Ok(Received::Ack) => return self.handle_ack(now, &req),
            Ok(Received::Absorbed) | Ok(Received::Merged) => return self.pump(now),
            Err(e) => {
                self.reject_count(Rejection::Malformed);
                if let Some(held) = self.noise.pass(now) {
                    tracing::warn!(%peer.addr, held_back = held, "bad request: {e}");
                }
                return;
            }
        };
        let core = req.core().expect("checked by the parser");
        // Unsupported extensions (section 8.2.2.3); CANCEL and ACK cannot be refused.
        let required: Vec<String> = req.headers.list("Require");
        if !required.is_empty() && !matches!(req.method, Method::Cancel | Method::Ack) {
            let mut resp = Response::to(&req, 420, "Bad Extension", None);
            resp.headers.push("Unsupported", required.join(", "));
            if let Some(held) = self.noise.pass(now) {
                tracing::warn!(%peer.addr, require = %required.join(","), held_back = held, "unsupported Require: 420");
            }
            self.reject_count(Rejection::UnsupportedRequire);
            return self.send_response(now, &key, resp);
        }
        let in_dialog = core.to.tag().is_some();
        match (&req.method, in_dialog) {
            (Method::Invite, false) => self.new_invite(now, key, peer, req),
            (Method::Options, false) => self.options(now, key, req, peer.addr.ip()),
            (Method::Cancel, _) => self.cancel(now, key, req),
            (
                Method::Bye | Method::Invite | Method::Update | Method::Info | Method::Options,
                true,
            ) => self.in_dialog(now, key, req),
            (Method::Other(_), _) => {
                self.reject_count(Rejection::UnknownMethod);
                self.respond(now, &key, &req, 501, None, None)
            }
            (_, _) => {
                self.reject_count(Rejection::MethodNotAllowed);
                self.respond(now, &key, &req, 405, None, None)
            }
        }
    }

    /// OPTIONS outside a dialog: what we can do, or 503 while draining or
    /// overloaded (so that a dispatcher's keep-alive probe takes us out of
    /// rotation).
    fn options(&mut self, now: Instant, key: TsxKey, req: Request, from: std::net::IpAddr) {
        let retry_after = if self.draining {
            Some(self.cfg.drain_retry_after_s)
        } else {
            self.overloaded
        };
        let status = if retry_after.is_some() { 503 } else { 200 };
        if self.probers.len() >= MAX_PROBERS && !self.probers.contains_key(&from) {
            // Forget the one heard from longest ago.
            if let Some(oldest) = self
                .probers
                .iter()
                .min_by_key(|(_, p)| p.last)
                .map(|(a, _)| *a)
            {
                self.probers.remove(&oldest);
            }
        }
        let p = self.probers.entry(from).or_insert(Prober {
            before: None,
            last: now,
            refused: false,
        });
        if p.last != now {
            p.before = Some(p.last);
            p.last = now;
        }
        p.refused |= self.draining;
        let tag = self.new_tag();
        let mut resp = Response::to(&req, status, reason_phrase(status), Some(&tag));
        resp.headers.push("Allow", ALLOW);
        resp.headers.push("Accept", "application/sdp");
        if let Some(s) = supported(&self.cfg) {
            resp.headers.push("Supported", s);
        }
        resp.headers.push("Server", self.cfg.user_agent.clone());
        if let Some(s) = retry_after {
            resp.headers.push("Retry-After", s.to_string());
        }
        self.send_response(now, &key, resp);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.tsx.handle_timeout(now);
        self.uas_timeouts(now);
        self.session_timeouts(now);
        self.pump(now);
    }

    /// Moves transaction output to ours and reacts to the transaction
    /// layer's events.
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
                    let dialog = self.refreshes.remove(&key).expect("checked");
                    self.refresh_failed(now, dialog, "timeout");
                }
                TsxEvent::Response { key, response }
                    if response.status >= 200 && self.refreshes.contains_key(&key) =>
                {
                    let dialog = self.refreshes.remove(&key).expect("checked");
                    if matches!(response.status, 408 | 481) {
                        self.refresh_failed(now, dialog, &response.status.to_string());
                    }
                }
                TsxEvent::Timeout { key } => {
                    if let Some(dialog) = self.by_invite.get(&key).copied()
                        && let Some(d) = self.remove(dialog)
                    {
                        self.events.push_back(if d.state == DialogState::Outgoing {
                            UaEvent::Rejected {
                                dialog,
                                status: 408,
                                reason: "Request Timeout".into(),
                            }
                        } else {
                            UaEvent::Ended {
                                dialog,
                                why: DialogEnd::Timeout,
                            }
                        });
                    }
                }
                TsxEvent::Response { key, response } => match self.by_invite.get(&key).copied() {
                    Some(dialog) => self.handle_uac_response(now, dialog, response),
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
        let dialogs = self.dialogs.values().flat_map(Dialog::deadlines);
        self.tsx.poll_timeout().into_iter().chain(dialogs).min()
    }
}

/// The content of a request's or response's body when it is SDP.
fn sdp_body(headers: &Headers, body: &[u8]) -> Result<Option<String>, (u16, String)> {
    if body.is_empty() {
        return Ok(None);
    }
    let ctype = headers.get("Content-Type").unwrap_or("application/sdp");
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

/// The o= line of an SDP: a re-offer with the same one changes nothing
/// (RFC 3264 section 8: a changed session carries a new version).
fn origin(sdp: &str) -> Option<String> {
    sdp.lines()
        .find(|l| l.starts_with("o="))
        .map(|l| l.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_users() {
        assert_eq!(uri_user("sip:alice@example.com"), Some("alice"));
        assert_eq!(uri_user("sips:+4930123;npdi@gw"), Some("+4930123"));
        assert_eq!(uri_user("sip:example.com"), None);
        assert_eq!(uri_user("tel:+123"), None);
    }
}
