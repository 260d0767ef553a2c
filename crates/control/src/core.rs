//! The call-control core: one [`CallControl`] holds every call of the
//! gateway and decides what happens to it. SIP arrives as bytes (through
//! the user agent it owns), API requests and media results as values,
//! time as a parameter; SIP bytes, media commands and API replies come out
//! of [`CallControl::poll_output`]. No I/O, no clock, no channel: the
//! driver feeds it and carries out what it says.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use rtcgw_proto::sdp::{LegKind, Offer};
use rtcgw_proto::sip::tsx::Peer;
use rtcgw_proto::sip::ua::{
    Caller, DialogEnd, DialogRef, OutboundInvite, Outgoing, UaEvent, UserAgent, uri_user,
};

use crate::end::{EndReason, Party};
use crate::id::{ApiToken, CallId, CallIds};
use crate::media::{Created, FarLeg, MediaCommand, MediaEvent, Plan, ReofferFrom};
use crate::metrics::CallMetrics;
use crate::refusal::{CAPACITY_RETRY_AFTER_S, Refusal, Refused};

/// Where the gateway sends calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Every SIP call reaches the demo target.
    Demo,
    /// A SIP INVITE is bridged to an outbound leg INVITEd to `target`
    /// (`{user}` is the called user).
    Bridge { target: String },
}

/// What the outbound leg's From says about the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerId {
    /// The caller's user part and display name (a B2BUA in front of a PBX
    /// must keep them: voicemail, call logs, routing by caller).
    Pass,
    /// Always [`ControlConfig::from_user`], no display name.
    Fixed,
}

/// Settings of call control.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub route: Route,
    /// Calls beyond this are refused (503).
    pub max_calls: usize,
    /// Calls being set up at once beyond this are refused (503): shedding
    /// load keeps setup latency bounded instead of queueing until every
    /// caller times out (measured: at 300 calls/s on 2 cores an unbounded
    /// queue pushed INVITE->200 to 13 s).
    pub max_setting_up: usize,
    pub caller_id: CallerId,
    /// The From user for [`CallerId::Fixed`], and when the caller's From
    /// has no user part.
    pub from_user: String,
    /// Pass the caller's P-Asserted-Identity (RFC 3325, believed only from
    /// trusted sources) to the outbound leg.
    pub pass_asserted_identity: bool,
    /// Salt of the call ids (random per process).
    pub id_salt: u32,
    /// Retry-After on the 503s of a drain: how long it lasts
    /// (`media.drain_timeout_s`), after which a restarted gateway is back.
    pub drain_retry_after_s: u32,
    /// How long the callee of an API call may ring before the call is
    /// given up (CANCEL, and 504 to the HTTP client).
    pub ring_timeout: Duration,
    /// An API call may name a whole SIP URI (not only a user for
    /// `route.target`): only when the INVITE goes through a softswitch
    /// (`sip.next_hop`) that routes and authorises it; otherwise a token
    /// holder could dial any host (toll fraud, reaching internal PBXs).
    pub api_uri_targets: bool,
}

/// A front end's request (the HTTP API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRequest {
    /// A WebRTC offer; answered with the call's id and our SDP answer.
    /// Without `to` the call reaches the demo target; with it (bridge
    /// route only) a SIP call to `to` (a user for `route.target`'s
    /// `{user}`, or a whole SIP URI) is bridged to the WebRTC leg, and the
    /// answer comes once the callee answers.
    Create {
        token: ApiToken,
        offer: String,
        to: Option<String>,
    },
    /// The client of a [`ApiRequest::Create`] left before its answer: a
    /// call still ringing is cancelled.
    Abandon { token: ApiToken },
}

/// Where an API call goes: the Request-URI of its outbound leg.
fn api_target(route: &Route, to: &str, uri_targets: bool) -> Result<String, Refused> {
    let bad = |why: String| Refused::new(Refusal::BadTarget, format!("to={to:.80}: {why}"));
    let Route::Bridge { target } = route else {
        return Err(bad(
            "dialing needs route.mode = \"bridge\" (this gateway sends API calls to its demo target)".into(),
        ));
    };
    let lower = to.get(..5).unwrap_or(to).to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        if !uri_targets {
            return Err(bad(
                "a whole SIP URI needs sip.next_hop (the softswitch that routes and authorises \
                 it); give a user for route.target instead"
                    .into(),
            ));
        }
        rtcgw_proto::sip::uri::check_request_uri(to).map_err(bad)?;
        return Ok(to.to_string());
    }
    let user = to
        .strip_prefix("tel:")
        .or_else(|| to.strip_prefix("TEL:"))
        .unwrap_or(to);
    if user.len() > 128 {
        return Err(bad("longer than 128 bytes".into()));
    }
    rtcgw_proto::sip::uri::check_user(user)
        .map_err(|e| bad(format!("neither a SIP URI nor a user part ({e})")))?;
    Ok(target.replace("{user}", user))
}

/// What [`ApiRequest::Create`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    pub call: CallId,
    pub answer: String,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these SIP bytes.
    Transmit(Outgoing),
    /// Carry out this media command; its result comes back through
    /// [`CallControl::handle_media`].
    Media(MediaCommand),
    /// The answer to an API request.
    Reply {
        token: ApiToken,
        result: Result<ApiCall, Refused>,
    },
    /// The reply to an ng request ([`crate::NgRequest`]).
    NgReply {
        token: ApiToken,
        reply: rtcgw_proto::ng::Reply,
    },
}

/// Where a call came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Sip(DialogRef),
    Api(ApiToken),
    /// ng: the proxy keeps the dialogs ([`Call::ng`]).
    Ng,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// [`MediaCommand::Create`] is out.
    Setup,
    /// The outbound INVITE is out.
    Calling,
    /// The far answer is being applied ([`MediaCommand::CompleteBridge`]).
    Connecting,
    Up,
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

pub(crate) struct Call {
    origin: Origin,
    plan: Plan,
    /// The kind of leg the caller speaks (a late offer gets a WebRTC one).
    pub(crate) caller_leg: LegKind,
    pub(crate) state: State,
    caller: Option<Caller>,
    /// The called user (the Request-URI's), for the outbound leg.
    called: String,
    /// The outbound leg's Request-URI when it is not `route.target` with
    /// [`Call::called`] in it (API calls).
    target_uri: Option<String>,
    /// An API call's callee rings until then.
    ring_deadline: Option<Instant>,
    /// The API request waiting for this call's answer.
    reply_to: Option<ApiToken>,
    outbound: Option<DialogRef>,
    /// Our answer to the caller, held until the callee answers.
    pub(crate) held_answer: Option<String>,
    early: Option<Early>,
    /// Calls driven over ng: their state there.
    pub(crate) ng: Option<Box<crate::ng::NgCall>>,
}

impl Call {
    pub(crate) fn new(origin: Origin, plan: Plan, caller_leg: LegKind) -> Self {
        Self {
            origin,
            plan,
            caller_leg,
            state: State::Setup,
            caller: None,
            called: String::new(),
            target_uri: None,
            ring_deadline: None,
            reply_to: match origin {
                Origin::Api(token) => Some(token),
                _ => None,
            },
            outbound: None,
            held_answer: None,
            early: None,
            ng: None,
        }
    }

    fn inbound(&self) -> Option<DialogRef> {
        match self.origin {
            Origin::Sip(d) => Some(d),
            Origin::Api(_) | Origin::Ng => None,
        }
    }
}

/// Every call of the gateway, sans-IO.
pub struct CallControl {
    cfg: ControlConfig,
    ua: UserAgent,
    pub(crate) calls: HashMap<CallId, Call>,
    by_dialog: HashMap<DialogRef, CallId>,
    /// ng calls by their Call-ID.
    pub(crate) by_ng: HashMap<String, CallId>,
    /// Calls whose [`MediaCommand::Create`] has not been answered yet,
    /// including calls given up meanwhile (their media is still coming).
    setting_up: HashSet<CallId>,
    /// Refusals a flood causes: at most ten log lines a second.
    noise: rtcgw_proto::log_gate::LogGate,
    ids: CallIds,
    pub(crate) out: VecDeque<Output>,
    /// When draining began.
    draining: Option<Instant>,
    /// No headroom for another call (headroom.rs): why.
    overload: Option<String>,
    pub(crate) metrics: CallMetrics,
}

impl CallControl {
    pub fn new(cfg: ControlConfig, ua: UserAgent, metrics: CallMetrics) -> Self {
        Self {
            ids: CallIds::new(cfg.id_salt),
            cfg,
            ua,
            calls: HashMap::new(),
            by_dialog: HashMap::new(),
            by_ng: HashMap::new(),
            setting_up: HashSet::new(),
            noise: rtcgw_proto::log_gate::LogGate::new(std::time::Duration::from_millis(100)),
            out: VecDeque::new(),
            draining: None,
            overload: None,
            metrics,
        }
    }

    /// Calls in progress (being set up or up).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// No call, and no media being set up for one.
    pub fn is_idle(&self) -> bool {
        self.calls.is_empty() && self.setting_up.is_empty()
    }

    pub fn ua(&self) -> &UserAgent {
        &self.ua
    }

    // ---- inputs ----------------------------------------------------------

    /// A SIP datagram or stream frame.
    pub fn handle_sip(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        self.ua.handle_input(now, peer, bytes);
        self.pump_ua(now);
    }

    /// A SIP connection to `peer` could not be opened (TCP or TLS): the
    /// requests sent to it fail at once, as 503 (an outbound call is
    /// refused like one the callee answered 503).
    pub fn handle_transport_error(&mut self, now: Instant, peer: Peer) {
        self.ua.transport_error(now, peer);
        self.pump_ua(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.ua.handle_timeout(now);
        let unanswered: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.ring_deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in unanswered {
            tracing::info!(call = %id, timeout_s = self.cfg.ring_timeout.as_secs(), "bridge: no answer");
            self.end(now, &id, EndReason::NoAnswer);
        }
        self.pump_ua(now);
    }

    pub fn handle_api(&mut self, now: Instant, req: ApiRequest) {
        match req {
            ApiRequest::Create { token, offer, to } => {
                let target = to
                    .as_deref()
                    .map(|to| api_target(&self.cfg.route, to, self.cfg.api_uri_targets))
                    .transpose();
                let offer = match target.and_then(|t| {
                    self.admit()?;
                    Ok((t, Offer::parse(&offer)?))
                }) {
                    Ok((_, Offer::Legacy(_))) => Err(Refused::new(
                        Refusal::NotWebrtc,
                        "not a WebRTC offer: the API takes UDP/TLS/RTP/SAVPF (ICE + DTLS-SRTP)",
                    )),
                    other => other,
                };
                match offer {
                    Ok((None, offer)) => {
                        let call = Call::new(Origin::Api(token), Plan::Demo, LegKind::Webrtc);
                        self.start(call, Some(offer));
                    }
                    Ok((Some(uri), offer)) => {
                        let plan = Plan::Bridge(FarLeg::default());
                        let mut call = Call::new(Origin::Api(token), plan, LegKind::Webrtc);
                        call.called = to.unwrap_or_default();
                        call.target_uri = Some(uri);
                        self.start(call, Some(offer));
                    }
                    Err(r) => self.refuse_api(now, token, r),
                }
            }
            ApiRequest::Abandon { token } => {
                let waiting = self
                    .calls
                    .iter()
                    .find(|(_, c)| c.reply_to == Some(token))
                    .map(|(id, _)| id.clone());
                if let Some(id) = waiting {
                    tracing::info!(call = %id, "API client gone before the answer");
                    self.end(now, &id, EndReason::CallerGone);
                }
            }
        }
        self.pump_ua(now);
    }

    pub fn handle_media(&mut self, now: Instant, ev: MediaEvent) {
        match ev {
            MediaEvent::Created { call, result } => self.on_created(now, call, result),
            MediaEvent::BridgeUp {
                call,
                early,
                result,
            } => self.on_bridge_up(now, call, early, result),
            MediaEvent::AnswerApplied { call, result } => {
                if let Err(e) = result {
                    tracing::warn!(%call, "answer in the ACK unusable: {e}");
                    self.end(now, &call, EndReason::AnswerFailed);
                }
            }
            MediaEvent::Reanswered {
                call,
                from: ReofferFrom::Dialog(dialog),
                result,
            } => {
                let result = result.map_err(|e| {
                    let d = e.kind.disposition();
                    tracing::warn!(%call, %dialog, status = d.sip_status, "re-offer refused: {e}");
                    (d.sip_status, e.sip_reason())
                });
                self.ua.answer_reoffer(now, dialog, result);
            }
            MediaEvent::Reanswered {
                call,
                from: ReofferFrom::Ng(token),
                result,
            } => self.ng_reanswered(&call, token, result),
            MediaEvent::Reanswered {
                call,
                from: ReofferFrom::NgAnswer,
                result,
            } => self.ng_far_answer_applied(&call, result),
            MediaEvent::Ended { call, reason } => {
                if self.calls.contains_key(&call) {
                    tracing::info!(%call, %reason, "call ended by the media side");
                    self.end_signalling(now, &call, reason);
                }
            }
        }
        self.pump_ua(now);
    }

    /// Stops taking new calls (graceful shutdown); calls in progress go on.
    /// OPTIONS gets 503 too, so that a dispatcher takes us out of rotation.
    /// One switch for both, in the one loop that answers them: no INVITE
    /// is taken and no OPTIONS says 200 after it.
    pub fn drain(&mut self, now: Instant) {
        self.draining.get_or_insert(now);
        self.ua.set_draining(true);
    }

    /// Admission by measured headroom ([`crate::headroom`]): with a reason,
    /// new calls get 503 + Retry-After and so does OPTIONS; None admits
    /// again. Calls in progress go on either way.
    pub fn set_overloaded(&mut self, why: Option<String>) {
        match (&self.overload, &why) {
            (None, Some(w)) => tracing::warn!(
                calls = self.calls.len(),
                "overloaded, refusing new calls: {w}"
            ),
            (Some(_), None) => {
                tracing::info!(calls = self.calls.len(), "headroom back, admitting calls")
            }
            _ => {}
        }
        self.ua
            .set_overloaded(why.as_ref().map(|_| CAPACITY_RETRY_AFTER_S));
        self.metrics.overloaded.set(i64::from(why.is_some()));
        self.overload = why;
    }

    /// Whether a draining gateway may go now: no call left, and no
    /// dispatcher that would miss the 503: every source that probes with
    /// OPTIONS regularly (a pair of proxies probes from two) has been
    /// answered 503 since the drain began. A dispatcher that only ever sees
    /// timeouts keeps sending INVITEs into them; one that saw the 503 has
    /// moved on. A one-off OPTIONS (a health check) is not a dispatcher.
    pub fn may_exit(&self) -> bool {
        let Some(since) = self.draining else {
            return false;
        };
        self.is_idle() && self.ua.probers_have_seen_the_drain(since)
    }

    /// Ends every call (shutdown): BYE, CANCEL or a final response on
    /// their dialogs, and their media.
    pub fn hangup_all(&mut self, now: Instant, reason: EndReason) {
        let ids: Vec<CallId> = self.calls.keys().cloned().collect();
        for id in ids {
            self.end(now, &id, reason);
        }
        self.pump_ua(now);
    }

    // ---- outputs ---------------------------------------------------------

    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        self.ua.poll_output().map(Output::Transmit)
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let ringing = self.calls.values().filter_map(|c| c.ring_deadline).min();
        match (self.ua.poll_timeout(), ringing) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- SIP events ------------------------------------------------------

    /// Reacts to everything the user agent reported; reactions may make
    /// the user agent report more.
    pub(crate) fn settle(&mut self, now: Instant) {
        self.pump_ua(now);
    }

    fn pump_ua(&mut self, now: Instant) {
        while let Some(ev) = self.ua.poll_event() {
            self.on_ua_event(now, ev);
        }
        self.metrics.active.set(self.calls.len() as i64);
        self.metrics.setting_up.set(self.setting_up.len() as i64);
    }

    fn on_ua_event(&mut self, now: Instant, ev: UaEvent) {
        match ev {
            UaEvent::Invite {
                dialog,
                offer,
                caller,
                to,
                uri,
            } => self.on_invite(now, dialog, offer, caller, &to, &uri),
            UaEvent::Answer { dialog, sdp } => {
                if let Some(call) = self.by_dialog.get(&dialog).cloned() {
                    self.command(MediaCommand::ApplyAnswer { call, answer: sdp });
                }
            }
            UaEvent::Ended { dialog, why } => self.on_dialog_ended(now, dialog, why),
            UaEvent::Progress {
                dialog,
                status,
                sdp,
            } => self.on_progress(now, dialog, status, sdp),
            UaEvent::Accepted { dialog, sdp } => self.on_accepted(now, dialog, sdp),
            UaEvent::Rejected {
                dialog,
                status,
                reason,
            } => self.on_rejected(now, dialog, status, &reason),
            UaEvent::Reoffer { dialog, sdp } => {
                let Some(call) = self.by_dialog.get(&dialog).cloned() else {
                    self.ua.answer_reoffer(
                        now,
                        dialog,
                        Err((481, "Call/Transaction Does Not Exist".into())),
                    );
                    return;
                };
                // A leg keeps its kind: a re-offer renegotiates it, it
                // cannot turn a WebRTC leg into a plain-RTP one.
                let leg = self.leg_of(&call, dialog);
                let offer =
                    Offer::parse(&sdp)
                        .map_err(Refused::from)
                        .and_then(|o| match o.kind() == leg {
                            true => Ok(o),
                            false => Err(Refused::new(
                                Refusal::UnsupportedSdp,
                                format!(
                                    "this dialog's leg is {}; the re-offer is {}",
                                    leg.as_str(),
                                    o.kind().as_str()
                                ),
                            )),
                        });
                match offer {
                    Ok(offer) => self.command(MediaCommand::Reoffer {
                        call,
                        from: ReofferFrom::Dialog(dialog),
                        offer,
                    }),
                    Err(r) => {
                        tracing::warn!(%call, %dialog, "re-offer refused: {r}");
                        let status = r.kind.disposition().sip_status;
                        self.ua
                            .answer_reoffer(now, dialog, Err((status, r.sip_reason())));
                    }
                }
            }
            UaEvent::Dtmf {
                dialog,
                digit,
                duration_ms,
            } => {
                let Some(call) = self.by_dialog.get(&dialog).cloned() else {
                    return;
                };
                let from = self.leg_of(&call, dialog);
                self.command(MediaCommand::Dtmf {
                    call,
                    from,
                    digit,
                    duration_ms,
                });
            }
        }
    }

    /// The kind of leg a dialog's far end speaks: the inbound dialog the
    /// caller's, the outbound dialog the other kind.
    fn leg_of(&self, call: &CallId, dialog: DialogRef) -> LegKind {
        let c = &self.calls[call];
        if c.inbound() == Some(dialog) {
            c.caller_leg
        } else {
            other(c.caller_leg)
        }
    }

    /// Calls whose media exists or may yet: the calls we know, and those
    /// given up (CANCEL, BYE, API client gone) while their media was still
    /// being made (it arrives, and is hung up, after). Admission counts
    /// both, so that a flood of calls given up during setup cannot put the
    /// media side over `max_calls`.
    fn calls_with_media(&self) -> usize {
        let orphans = self
            .setting_up
            .iter()
            .filter(|id| !self.calls.contains_key(*id))
            .count();
        self.calls.len() + orphans
    }

    /// Admission control, the same for every front end.
    pub(crate) fn admit(&self) -> Result<(), Refused> {
        if self.draining.is_some() {
            return Err(Refused {
                retry_after_s: Some(self.cfg.drain_retry_after_s),
                ..Refused::new(Refusal::Draining, "shutting down: no new calls")
            });
        }
        if self.calls_with_media() >= self.cfg.max_calls {
            return Err(Refused::new(
                Refusal::Capacity,
                format!("at capacity: {} calls", self.cfg.max_calls),
            ));
        }
        if let Some(why) = &self.overload {
            return Err(Refused::new(
                Refusal::Overloaded,
                format!("overloaded: {why}"),
            ));
        }
        if self.setting_up.len() >= self.cfg.max_setting_up {
            return Err(Refused::new(
                Refusal::Overloaded,
                format!("overloaded: {} calls being set up", self.setting_up.len()),
            ));
        }
        Ok(())
    }

    fn on_invite(
        &mut self,
        now: Instant,
        dialog: DialogRef,
        offer: Option<String>,
        caller: Caller,
        to: &str,
        uri: &str,
    ) {
        let late_offer = offer.is_none();
        let offer = match self
            .admit()
            .and_then(|()| Ok(offer.as_deref().map(Offer::parse).transpose()?))
        {
            Ok(o) => o,
            Err(r) => return self.refuse_sip(now, dialog, r),
        };
        tracing::info!(%dialog, from = %caller.from.uri, %to, late_offer, "INVITE");
        // A late offer (no SDP) gets rtcgw's WebRTC offer from the demo
        // target: bridging needs the caller's offer to know its side.
        let plan = match (&self.cfg.route, &offer) {
            (Route::Bridge { .. }, Some(_)) => Plan::Bridge(FarLeg::default()),
            _ => Plan::Demo,
        };
        let called = uri_user(uri).or_else(|| uri_user(to)).unwrap_or("rtcgw");
        let caller_leg = offer.as_ref().map_or(LegKind::Webrtc, Offer::kind);
        let mut call = Call::new(Origin::Sip(dialog), plan, caller_leg);
        call.caller = Some(caller);
        call.called = called.to_string();
        self.start(call, offer);
    }

    /// Registers a call and asks the media side to set it up.
    pub(crate) fn start(&mut self, call: Call, offer: Option<Offer>) -> CallId {
        let id = self.ids.next();
        if let Some(d) = call.inbound() {
            self.by_dialog.insert(d, id.clone());
        }
        let plan = call.plan.clone();
        self.calls.insert(id.clone(), call);
        self.setting_up.insert(id.clone());
        self.command(MediaCommand::Create {
            call: id.clone(),
            plan,
            offer,
        });
        id
    }

    fn on_dialog_ended(&mut self, now: Instant, dialog: DialogRef, why: DialogEnd) {
        let Some(id) = self.by_dialog.get(&dialog).cloned() else {
            return;
        };
        let c = &self.calls[&id];
        let inbound = c.inbound() == Some(dialog);
        let reason = match (why, inbound) {
            (DialogEnd::Bye, true) => EndReason::Bye(Party::Caller),
            (DialogEnd::Bye, false) => EndReason::Bye(Party::Callee),
            (DialogEnd::Cancel, _) => EndReason::Cancelled,
            (why, _) => EndReason::Sip(why),
        };
        tracing::info!(call = %id, %dialog, %reason, "dialog ended");
        self.end(now, &id, reason);
    }

    /// The callee's 18x: ringing is relayed to the caller; a 183 with SDP
    /// brings the bridge up at once (early media) and the caller gets our
    /// 183 with its answer.
    fn on_progress(&mut self, now: Instant, dialog: DialogRef, status: u16, sdp: Option<String>) {
        let Some(id) = self.by_dialog.get(&dialog).cloned() else {
            return;
        };
        let c = self.calls.get_mut(&id).expect("indexed");
        let Some(inbound) = c.inbound() else { return };
        if c.early.is_some() {
            return;
        }
        match sdp {
            Some(answer) if status == 183 => {
                c.early = Some(Early::Starting);
                c.state = State::Connecting;
                self.command(MediaCommand::CompleteBridge {
                    call: id,
                    answer,
                    early: true,
                });
            }
            _ => {
                let status = if status == 183 { 183 } else { 180 };
                self.ua.provisional(now, inbound, status, None);
            }
        }
    }

    fn on_accepted(&mut self, now: Instant, dialog: DialogRef, sdp: Option<String>) {
        let Some(id) = self.by_dialog.get(&dialog).cloned() else {
            // Our outbound leg answered after its caller left.
            self.ua.hangup(now, dialog);
            return;
        };
        let c = self.calls.get_mut(&id).expect("indexed");
        // Answered: no ring timeout while the bridge is completed.
        c.ring_deadline = None;
        match c.early {
            // Media is already up on the 183's answer (RFC 3261 section
            // 13.2.1: the 2xx repeats it): the caller gets its 200 now.
            Some(Early::Up) => self.answer_caller(now, &id),
            Some(_) => c.early = Some(Early::StartingAnswered),
            None => {
                c.state = State::Connecting;
                self.command(MediaCommand::CompleteBridge {
                    call: id,
                    answer: sdp.unwrap_or_default(),
                    early: false,
                });
            }
        }
    }

    /// The callee refused: the caller gets the refusal (hop-by-hop
    /// statuses become ones that make sense to the caller).
    fn on_rejected(&mut self, now: Instant, dialog: DialogRef, status: u16, reason: &str) {
        let Some(id) = self.by_dialog.remove(&dialog) else {
            return;
        };
        let c = self.calls.get_mut(&id).expect("indexed");
        c.outbound = None;
        tracing::info!(call = %id, status, reason, "bridge: the callee refused");
        match c.origin {
            Origin::Sip(inbound) => {
                let (status, reason) = relayed_status(status, reason);
                self.ua.reject(now, inbound, status, &reason);
            }
            Origin::Api(_) => {
                let r = Refused::callee(status, reason);
                self.reply_api(&id, Err(r));
            }
            Origin::Ng => {}
        }
        self.end(now, &id, EndReason::CalleeRefused(status));
    }

    // ---- media events ----------------------------------------------------

    fn on_created(&mut self, now: Instant, id: CallId, result: Result<Created, Refused>) {
        self.setting_up.remove(&id);
        let Some(c) = self.calls.get(&id) else {
            // Given up while its media was being made: drop that media.
            if result.is_ok() {
                self.command(MediaCommand::Hangup {
                    call: id,
                    reason: EndReason::CallerGone,
                });
            }
            return;
        };
        if c.origin == Origin::Ng {
            return self.ng_created(&id, result);
        }
        let created = match result {
            Ok(created) => created,
            Err(r) => {
                let c = self.forget(&id).expect("present");
                match c.origin {
                    Origin::Sip(d) => self.refuse_sip(now, d, r),
                    Origin::Api(t) => self.refuse_api(now, t, r),
                    Origin::Ng => unreachable!("answered above"),
                }
                return;
            }
        };
        let Some(far_offer) = created.far_offer else {
            // Answered here (the demo target): the caller gets our answer.
            match c.origin {
                Origin::Api(_) => {
                    self.calls.get_mut(&id).expect("present").state = State::Up;
                    let answer = ApiCall {
                        call: id.clone(),
                        answer: created.local_sdp,
                    };
                    self.reply_api(&id, Ok(answer));
                }
                Origin::Sip(inbound) => {
                    if self.ua.answer(now, inbound, created.local_sdp) {
                        self.calls.get_mut(&id).expect("present").state = State::Up;
                    } else {
                        self.end(now, &id, EndReason::CallerGone);
                    }
                }
                Origin::Ng => unreachable!("answered above"),
            }
            return;
        };
        // A bridge: the outbound leg is INVITEd with the far offer.
        if let Some(inbound) = c.inbound()
            && !self.ua.is_incoming(inbound)
        {
            return self.end(now, &id, EndReason::CallerGone);
        }
        let uri = match (&c.target_uri, &self.cfg.route) {
            (Some(uri), _) => uri.clone(),
            (None, Route::Bridge { target }) => target.replace("{user}", &c.called),
            (None, Route::Demo) => unreachable!("bridged calls need a bridge route"),
        };
        let inv = self.outbound_invite(c, uri.clone(), far_offer);
        match self.ua.invite(now, inv) {
            Some(out) => {
                tracing::info!(call = %id, inbound = ?c.inbound(), outbound = %out, %uri, "bridge: outbound INVITE");
                self.by_dialog.insert(out, id.clone());
                let ring_deadline =
                    matches!(c.origin, Origin::Api(_)).then(|| now + self.cfg.ring_timeout);
                let c = self.calls.get_mut(&id).expect("present");
                c.outbound = Some(out);
                c.held_answer = Some(created.local_sdp);
                c.state = State::Calling;
                c.ring_deadline = ring_deadline;
            }
            None => {
                let r = Refused::new(Refusal::NoRoute, format!("no route to {uri}"));
                tracing::warn!(call = %id, "bridge: {r}");
                self.metrics.refuse(r.kind);
                match c.origin {
                    Origin::Sip(inbound) => self.reject_dialog(now, inbound, &r),
                    _ => self.reply_api(&id, Err(r)),
                }
                self.end(now, &id, EndReason::NoRoute);
            }
        }
    }

    /// The outbound INVITE for a bridged call, with the caller's identity
    /// as configured.
    fn outbound_invite(&self, c: &Call, uri: String, sdp: String) -> OutboundInvite {
        let caller = c.caller.as_ref();
        let (from_user, from_display) = match self.cfg.caller_id {
            CallerId::Fixed => (self.cfg.from_user.clone(), None),
            CallerId::Pass => (
                caller
                    .and_then(Caller::user)
                    .unwrap_or(&self.cfg.from_user)
                    .to_string(),
                caller.and_then(|c| c.from.display.clone()),
            ),
        };
        let asserted = caller
            .filter(|_| self.cfg.pass_asserted_identity)
            .and_then(|c| c.asserted.clone().map(|a| (a, c.privacy.clone())));
        OutboundInvite {
            uri,
            from_user,
            from_display,
            privacy: asserted.as_ref().and_then(|(_, p)| p.clone()),
            asserted_identity: asserted.map(|(a, _)| a),
            sdp,
        }
    }

    fn on_bridge_up(&mut self, now: Instant, id: CallId, early: bool, result: Result<(), Refused>) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.origin == Origin::Ng {
            return self.ng_bridge_up(now, &id, result);
        }
        if let Err(e) = result {
            tracing::warn!(call = %id, "bridge: the far answer is unusable: {e}");
            let r = Refused::new(Refusal::FarAnswerUnusable, e.detail);
            match c.inbound() {
                Some(inbound) => self.reject_dialog(now, inbound, &r),
                None => self.reply_api(&id, Err(r)),
            }
            return self.end(now, &id, EndReason::FarAnswerUnusable);
        }
        match (early, c.early) {
            (true, Some(Early::Starting)) => {
                // Early media: the caller hears the callee's ringback or
                // announcement from now on.
                c.early = Some(Early::Up);
                let answer = c.held_answer.clone();
                if let Some(inbound) = c.inbound() {
                    self.ua.provisional(now, inbound, 183, answer);
                }
            }
            // The callee's 200 (after early media, or crossing it).
            _ => self.answer_caller(now, &id),
        }
    }

    /// The bridge is up: the caller gets its 200 with our held answer.
    fn answer_caller(&mut self, now: Instant, id: &CallId) {
        let c = self.calls.get_mut(id).expect("present");
        c.early = None;
        c.state = State::Up;
        c.ring_deadline = None;
        let answer = c.held_answer.take().unwrap_or_default();
        match c.inbound() {
            Some(inbound) => {
                if !self.ua.answer(now, inbound, answer) {
                    self.end(now, id, EndReason::CallerGone);
                }
            }
            None => {
                let made = ApiCall {
                    call: id.clone(),
                    answer,
                };
                self.reply_api(id, Ok(made));
            }
        }
    }

    /// Answers the API request waiting for this call, once.
    fn reply_api(&mut self, id: &CallId, result: Result<ApiCall, Refused>) {
        if let Some(token) = self.calls.get_mut(id).and_then(|c| c.reply_to.take()) {
            self.out.push_back(Output::Reply { token, result });
        }
    }

    // ---- endings ---------------------------------------------------------

    /// Forgets a call and its dialogs (nothing sent).
    pub(crate) fn forget(&mut self, id: &CallId) -> Option<Call> {
        let mut c = self.calls.remove(id)?;
        for d in c.inbound().into_iter().chain(c.outbound) {
            self.by_dialog.remove(&d);
        }
        if let Some(mut ng) = c.ng.take() {
            self.ng_ended(&mut ng);
        }
        Some(c)
    }

    /// Ends a call on both sides: its dialogs (BYE, CANCEL or a final
    /// response, whichever their state calls for) and its media.
    pub(crate) fn end(&mut self, now: Instant, id: &CallId, reason: EndReason) {
        if self.end_signalling(now, id, reason) {
            self.command(MediaCommand::Hangup {
                call: id.clone(),
                reason,
            });
        }
    }

    /// Ends a call's dialogs and forgets it; false when it was unknown.
    fn end_signalling(&mut self, now: Instant, id: &CallId, reason: EndReason) -> bool {
        let Some(c) = self.forget(id) else {
            return false;
        };
        for d in c.inbound().into_iter().chain(c.outbound) {
            self.ua.hangup(now, d);
        }
        if let Some(token) = c.reply_to {
            let r = match reason {
                EndReason::Shutdown => Refused::new(Refusal::Draining, "shutting down"),
                EndReason::NoAnswer => Refused::new(
                    Refusal::NoAnswer,
                    format!(
                        "no answer from the callee in {} s",
                        self.cfg.ring_timeout.as_secs()
                    ),
                ),
                other => Refused::new(Refusal::Internal, format!("the call ended: {other}")),
            };
            self.out.push_back(Output::Reply {
                token,
                result: Err(r),
            });
        }
        true
    }

    fn refuse_sip(&mut self, now: Instant, dialog: DialogRef, r: Refused) {
        // A flood of refusals logs ten lines a second (the metric counts
        // every one).
        if let Some(held) = self.noise.pass(now) {
            tracing::warn!(%dialog, status = r.kind.disposition().sip_status, held_back = held, "INVITE refused: {r}");
        }
        self.metrics.refuse(r.kind);
        self.reject_dialog(now, dialog, &r);
    }

    fn reject_dialog(&mut self, now: Instant, dialog: DialogRef, r: &Refused) {
        let d = r.kind.disposition();
        self.ua
            .reject_with(now, dialog, d.sip_status, &r.sip_reason(), r.retry_after());
    }

    fn refuse_api(&mut self, now: Instant, token: ApiToken, r: Refused) {
        if let Some(held) = self.noise.pass(now) {
            tracing::warn!(
                status = r.kind.disposition().http_status,
                held_back = held,
                "call refused: {r}"
            );
        }
        self.metrics.refuse(r.kind);
        self.out.push_back(Output::Reply {
            token,
            result: Err(r),
        });
    }

    pub(crate) fn command(&mut self, c: MediaCommand) {
        self.out.push_back(Output::Media(c));
    }
}

fn other(kind: LegKind) -> LegKind {
    match kind {
        LegKind::Webrtc => LegKind::Legacy,
        LegKind::Legacy => LegKind::Webrtc,
    }
}

/// What the caller gets for the callee's refusal. A B2BUA's two legs are
/// separate hops: statuses about the hop itself (authentication, a
/// Require, session intervals, loops) say nothing the caller can act on,
/// and a redirect would send the caller past the gateway.
fn relayed_status(status: u16, reason: &str) -> (u16, String) {
    match status {
        300..=399 => (
            480,
            format!("Temporarily Unavailable (callee: {status} {reason})"),
        ),
        401 | 407 => (403, format!("Forbidden (callee: {status} {reason})")),
        420 | 421 | 422 | 423 | 482 | 483 | 491 => (
            500,
            format!("Server Internal Error (callee: {status} {reason})"),
        ),
        _ => (status, reason.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_sip_uri_needs_a_softswitch_to_go_through() {
        let route = Route::Bridge {
            target: "sip:{user}@192.0.2.1".into(),
        };
        let r = api_target(&route, "sip:+1900@198.51.100.7", false).unwrap_err();
        assert_eq!(r.kind, Refusal::BadTarget);
        assert!(r.detail.contains("sip.next_hop"), "{r}");
        assert_eq!(
            api_target(&route, "sip:+1900@198.51.100.7", true).unwrap(),
            "sip:+1900@198.51.100.7"
        );
        assert_eq!(
            api_target(&route, "alice", false).unwrap(),
            "sip:alice@192.0.2.1"
        );
    }

    #[test]
    fn hop_by_hop_refusals_are_not_relayed_as_they_are() {
        assert_eq!(relayed_status(486, "Busy Here"), (486, "Busy Here".into()));
        assert_eq!(relayed_status(407, "Proxy Authentication Required").0, 403);
        assert_eq!(relayed_status(302, "Moved Temporarily").0, 480);
        assert_eq!(relayed_status(422, "Session Interval Too Small").0, 500);
        assert_eq!(relayed_status(603, "Decline").0, 603);
    }
}
