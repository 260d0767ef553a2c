//! Calls driven over ng, rtpengine's control protocol, as Kamailio's
//! `rtpengine` module drives them: the proxy keeps the SIP dialogs and
//! hands each SDP to the relay, putting the relay's SDP back in its place.
//!
//! An `offer` (the caller's SDP) starts a bridged call like an INVITE does:
//! the caller's leg is answered (the answer held), the other leg, of the
//! kind the flags ask for (`transport-protocol`, `ICE`, `DTLS`), makes an
//! offer, and that offer is the reply. The `answer` (the callee's SDP)
//! completes the bridge; the held answer is the reply. A later `offer` on
//! an answered call is a re-offer from one side (hold, resume, ICE
//! restart): that side's leg answers it, the other side gets our SDP again,
//! unchanged (rtcgw is a B2BUA: the other leg does not change), and its
//! `answer` gets ours. `delete` ends the call, or
//! just a losing branch of a forked one.

use rtcgw_proto::ng::{Delete, OfferAnswer, Reply};
use rtcgw_proto::sdp::legacy::CodecName;
use rtcgw_proto::sdp::{LegKind, Offer};

use crate::core::{Call, CallControl, Origin, State};
use crate::end::EndReason;
use crate::id::{ApiToken, CallId};
use crate::media::{FarLeg, MediaCommand, Plan, ReofferFrom};
use crate::refusal::{Refusal, Refused};

/// What Kamailio asks of call control (ping, list and query are the front
/// end's; it adds the statistics to a delete's reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NgRequest {
    Offer(OfferAnswer),
    Answer(OfferAnswer),
    Delete(Delete),
}

/// What the front end needs to know of an ng call (query, delete, list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NgCallInfo {
    pub call: CallId,
    pub offerer: String,
    pub answerer: Option<String>,
    /// The offerer's side's label (from its `offer`).
    pub label: Option<String>,
    /// The answerer's side's label (from its `answer`).
    pub answerer_label: Option<String>,
    /// The kind of the offerer's leg (the answerer's is the other).
    pub offerer_leg: LegKind,
}

/// A re-offer from one side of an answered call.
#[derive(Debug)]
struct Reoffer {
    /// The re-offerer's tag.
    tag: String,
    /// Its SDP (a retransmission of the same offer is not a second one).
    sdp: String,
    /// Copies of the `offer` (Kamailio's retransmissions of the re-INVITE)
    /// waiting for the first one's reply.
    repeats: Vec<ApiToken>,
    /// Our answer to it, once the media side made it.
    answer: Option<String>,
    /// `answer` requests (from the other side) waiting for it.
    waiting: Vec<ApiToken>,
}

/// ng state of a call.
#[derive(Debug)]
pub(crate) struct NgCall {
    call_id: String,
    offerer: String,
    answerer: Option<String>,
    /// via-branches offered while no answer has come (parallel forking).
    branches: Vec<String>,
    label: Option<String>,
    answerer_label: Option<String>,
    /// Our SDP for the answerer's side (our offer, or our answer to its
    /// latest re-offer).
    far_sdp: Option<String>,
    /// Our SDP for the offerer's side (our answer, or our answer to its
    /// latest re-offer).
    local_sdp: Option<String>,
    /// The answerer's side's SDP the far leg has.
    far_answer: Option<String>,
    /// A newer one, to apply once the far leg is up (or done with the
    /// previous one).
    far_answer_next: Option<String>,
    /// A far answer is being applied.
    far_applying: bool,
    offers_waiting: Vec<ApiToken>,
    answers_waiting: Vec<ApiToken>,
    reoffer: Option<Reoffer>,
}

impl NgCall {
    /// Requests still waiting for a reply (answered with `reply` when the
    /// call goes).
    fn waiting(&mut self) -> Vec<ApiToken> {
        let mut all = std::mem::take(&mut self.offers_waiting);
        all.append(&mut self.answers_waiting);
        if let Some(r) = self.reoffer.take() {
            all.extend(r.repeats);
            all.extend(r.waiting);
        }
        all
    }
}

/// The reply for a refusal: rtpengine's words where Kamailio acts on them
/// (a full relay is skipped for the next one in its set).
fn refusal_reply(r: &Refused) -> Reply {
    match r.kind {
        Refusal::Capacity | Refusal::Overloaded | Refusal::Draining => {
            Reply::error("Parallel session limit reached")
        }
        Refusal::MediaUnavailable => Reply::error("Ran out of ports"),
        Refusal::MalformedSdp | Refusal::NoAudio | Refusal::UnsupportedSdp => {
            Reply::error(format!("Failed to parse SDP: {}", r.detail))
        }
        _ => Reply::error(r.detail.clone()),
    }
}

/// The kind of leg the answerer's side gets: what the flags say, else the
/// other kind than the offerer's. `RTP/SAVPF` (what older WebRTC configs
/// ask for, with `ICE=force`) is WebRTC unless DTLS is turned off.
fn far_kind(oa: &OfferAnswer, offerer: LegKind) -> LegKind {
    let word = |v: &Option<String>| v.as_deref().map(str::to_ascii_lowercase);
    let dtls_off = matches!(word(&oa.dtls).as_deref(), Some("off" | "no" | "disable"));
    if let Some(t) = &oa.transport {
        let t = t.to_ascii_uppercase();
        return if t.contains("TLS") || (t == "RTP/SAVPF" && !dtls_off) {
            LegKind::Webrtc
        } else {
            LegKind::Legacy
        };
    }
    match (word(&oa.ice).as_deref(), word(&oa.dtls).as_deref()) {
        (Some("force" | "force-relay"), _) => LegKind::Webrtc,
        (Some("remove"), _) | (_, Some("off" | "no" | "disable")) => LegKind::Legacy,
        (_, Some("passive" | "active")) => LegKind::Webrtc,
        _ => match offerer {
            LegKind::Webrtc => LegKind::Legacy,
            LegKind::Legacy => LegKind::Webrtc,
        },
    }
}

/// Codec names we know, in order, once each (others are ignored).
fn known_codecs<'a>(names: impl IntoIterator<Item = &'a String>) -> Vec<CodecName> {
    names
        .into_iter()
        .filter_map(|c| c.parse::<CodecName>().ok())
        .fold(Vec::new(), |mut v, c| {
            if !v.contains(&c) {
                v.push(c);
            }
            v
        })
}

/// The plain-RTP far leg as the flags ask for it: the `transcode`,
/// `accept` and `offer` codecs when given, else `legacy.codecs` less what
/// is masked or stripped (`strip: [all]` strips every one) and not
/// excepted (`except`).
fn far_leg(oa: &OfferAnswer) -> FarLeg {
    let c = &oa.codec;
    let codecs = known_codecs(c.transcode.iter().chain(&c.accept).chain(&c.offer));
    let except = known_codecs(&c.except);
    let exclude = if c.strip.iter().any(|c| c.eq_ignore_ascii_case("all")) {
        CodecName::ALL.to_vec()
    } else {
        known_codecs(c.mask.iter().chain(&c.strip))
    };
    let exclude = exclude
        .into_iter()
        .filter(|c| !except.contains(c))
        .collect();
    FarLeg {
        codecs,
        exclude,
        sdes: oa
            .transport
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("RTP/SAVP")),
        rtcp_mux: oa
            .rtcp_mux
            .iter()
            .any(|m| m.eq_ignore_ascii_case("offer") || m.eq_ignore_ascii_case("require")),
    }
}

impl CallControl {
    /// An ng request; its reply comes out as [`crate::Output::NgReply`].
    pub fn handle_ng(&mut self, now: std::time::Instant, token: ApiToken, req: NgRequest) {
        match req {
            NgRequest::Offer(oa) => self.ng_offer(token, oa),
            NgRequest::Answer(oa) => self.ng_answer(token, oa),
            NgRequest::Delete(d) => self.ng_delete(now, token, d),
        }
        self.settle(now);
    }

    /// What the front end needs of the ng call with this Call-ID.
    pub fn ng_call(&self, call_id: &str) -> Option<NgCallInfo> {
        let id = self.by_ng.get(call_id)?;
        let c = self.calls.get(id)?;
        let ng = c.ng.as_ref()?;
        Some(NgCallInfo {
            call: id.clone(),
            offerer: ng.offerer.clone(),
            answerer: ng.answerer.clone(),
            label: ng.label.clone(),
            answerer_label: ng.answerer_label.clone(),
            offerer_leg: c.caller_leg,
        })
    }

    /// The Call-IDs of the ng calls, at most `limit`.
    pub fn ng_call_ids(&self, limit: usize) -> Vec<String> {
        let mut ids: Vec<String> = self.by_ng.keys().cloned().collect();
        ids.sort();
        ids.truncate(limit);
        ids
    }

    fn ng_reply(&mut self, token: ApiToken, reply: Reply) {
        self.out
            .push_back(crate::core::Output::NgReply { token, reply });
    }

    fn ng_offer(&mut self, token: ApiToken, oa: OfferAnswer) {
        if !oa.ignored.is_empty() {
            tracing::debug!(call_id = %oa.call_id, ignored = ?oa.ignored, "ng offer: keys ignored");
        }
        let Some(id) = self.by_ng.get(&oa.call_id).cloned() else {
            return self.ng_new_call(token, oa);
        };
        let c = self.calls.get_mut(&id).expect("indexed");
        let leg = c.caller_leg;
        let ng = c.ng.as_mut().expect("an ng call");
        if ng.answerer.is_none() {
            // Another branch of a forked (or a resent) INVITE: the same
            // offer of ours goes to every branch; the first answer wins.
            if oa.from_tag != ng.offerer {
                return self.ng_reply(token, Reply::error("Invalid dialogue association"));
            }
            // One far leg for every branch: a branch that needs the other
            // kind (a desk phone and a browser for the same user) cannot
            // be served from this call.
            if far_kind(&oa, leg) != other_kind(leg) {
                tracing::warn!(call = %id, call_id = %oa.call_id, "ng offer: a branch asks for a {} leg, the call's far leg is {}", far_kind(&oa, leg).as_str(), other_kind(leg).as_str());
                return self.ng_reply(
                    token,
                    Reply::error(format!(
                        "rtcgw cannot fork one call to both WebRTC and plain RTP branches (this call's branches are {})",
                        other_kind(leg).as_str()
                    )),
                );
            }
            if let Some(b) = oa.via_branch
                && !ng.branches.contains(&b)
            {
                ng.branches.push(b);
            }
            return match ng.far_sdp.clone() {
                Some(sdp) => self.ng_reply(token, Reply::ok().with("sdp", sdp.into())),
                None => ng.offers_waiting.push(token),
            };
        }
        // A re-offer from one side of the answered call.
        let side = if oa.from_tag == ng.offerer {
            leg
        } else if Some(&oa.from_tag) == ng.answerer.as_ref() {
            other_kind(leg)
        } else {
            return self.ng_reply(token, Reply::error("Invalid dialogue association"));
        };
        if let Some(re) = ng.reoffer.as_mut() {
            if re.answer.is_some() {
                // Answered by the media side, but no `answer` came for it
                // (the re-INVITE failed: 488, 491, a timeout): the newest
                // offer wins, as with rtpengine.
                ng.reoffer = None;
            } else if re.tag == oa.from_tag && re.sdp == oa.sdp {
                // The re-INVITE retransmitted: the same reply, once made.
                re.repeats.push(token);
                return;
            } else {
                // RFC 3261 section 14.2's 491: one offer at a time.
                return self.ng_reply(token, Reply::error("a re-offer is already in progress"));
            }
        }
        let offer = match Offer::parse(&oa.sdp) {
            Ok(o) if o.kind() == side => o,
            Ok(o) => {
                let why = format!(
                    "this side's leg is {}; the re-offer is {}",
                    side.as_str(),
                    o.kind().as_str()
                );
                return self.ng_reply(token, Reply::error(why));
            }
            Err(e) => return self.ng_reply(token, refusal_reply(&Refused::from(e))),
        };
        ng.reoffer = Some(Reoffer {
            tag: oa.from_tag,
            sdp: oa.sdp,
            repeats: Vec::new(),
            answer: None,
            waiting: Vec::new(),
        });
        self.command(MediaCommand::Reoffer {
            call: id,
            from: ReofferFrom::Ng(token),
            offer,
        });
    }

    fn ng_new_call(&mut self, token: ApiToken, oa: OfferAnswer) {
        let offer = match self.admit().and_then(|()| Ok(Offer::parse(&oa.sdp)?)) {
            Ok(o) => o,
            Err(r) => {
                tracing::warn!(call_id = %oa.call_id, "ng offer refused: {r}");
                self.metrics.refuse(r.kind);
                return self.ng_reply(token, refusal_reply(&r));
            }
        };
        let far = far_kind(&oa, offer.kind());
        if far == offer.kind() {
            let r = Refused::new(
                Refusal::UnsupportedSdp,
                format!(
                    "rtcgw joins WebRTC and plain RTP: both sides would be {}",
                    far.as_str()
                ),
            );
            tracing::warn!(call_id = %oa.call_id, "ng offer refused: {r}");
            self.metrics.refuse(r.kind);
            return self.ng_reply(token, Reply::error(r.detail));
        }
        tracing::info!(
            call_id = %oa.call_id, from_tag = %oa.from_tag, offer = offer.kind().as_str(),
            far = far.as_str(), "ng offer"
        );
        let call = Call::new(Origin::Ng, Plan::Bridge(far_leg(&oa)), offer.kind());
        let id = self.start(call, Some(offer));
        self.by_ng.insert(oa.call_id.clone(), id.clone());
        let c = self.calls.get_mut(&id).expect("just started");
        c.ng = Some(Box::new(NgCall {
            call_id: oa.call_id,
            offerer: oa.from_tag,
            answerer: None,
            branches: oa.via_branch.into_iter().collect(),
            label: oa.label,
            answerer_label: None,
            far_sdp: None,
            local_sdp: None,
            far_answer: None,
            far_answer_next: None,
            far_applying: false,
            offers_waiting: vec![token],
            answers_waiting: Vec::new(),
            reoffer: None,
        }));
    }

    fn ng_answer(&mut self, token: ApiToken, oa: OfferAnswer) {
        let Some(id) = self.by_ng.get(&oa.call_id).cloned() else {
            return self.ng_reply(token, Reply::error("Unknown call-id"));
        };
        let c = self.calls.get_mut(&id).expect("indexed");
        let state = c.state;
        let far_kind = other_kind(c.caller_leg);
        let ng = c.ng.as_mut().expect("an ng call");
        let to_tag = oa.to_tag.clone().unwrap_or_default();
        if oa.label.is_some() && oa.from_tag == ng.offerer {
            ng.answerer_label = oa.label.clone();
        }
        // The other side's answer to the re-offer we passed on: the
        // re-offerer gets our answer to its offer; when the answerer's
        // side answered, its SDP is applied to the far leg.
        if let Some(re) = ng.reoffer.as_mut()
            && (to_tag == re.tag || oa.from_tag == re.tag)
        {
            let far_answered = re.tag == ng.offerer;
            match re.answer.clone() {
                Some(a) => {
                    ng.reoffer = None;
                    self.ng_reply(token, Reply::ok().with("sdp", a.into()));
                }
                None => re.waiting.push(token),
            }
            if far_answered {
                self.ng_far_answer(&id, oa.sdp);
            }
            return;
        }
        match ng.answerer.clone() {
            None if state == State::Calling => {
                ng.answerer = Some(to_tag);
                ng.answers_waiting.push(token);
                ng.far_answer = Some(oa.sdp.clone());
                c.state = State::Connecting;
                self.command(MediaCommand::CompleteBridge {
                    call: id,
                    answer: oa.sdp,
                    early: false,
                });
            }
            Some(winner) if matches!(state, State::Connecting | State::Up) => {
                if oa.from_tag == winner {
                    // Headed for the answerer's side (a retransmitted 200
                    // of its re-INVITE): our SDP for that side.
                    let sdp = ng.far_sdp.clone().unwrap_or_default();
                    return self.ng_reply(token, Reply::ok().with("sdp", sdp.into()));
                }
                if winner != to_tag {
                    // Another branch answered (its 200 after the early
                    // media of the first, say): the newest answer is the
                    // far side's, as with rtpengine. A WebRTC far leg
                    // takes one answer per offer and keeps the first.
                    if far_kind == LegKind::Webrtc {
                        tracing::warn!(call = %id, first = %winner, other = %to_tag, "ng answer from another branch: a WebRTC far leg keeps the first answer");
                    } else {
                        tracing::info!(call = %id, first = %winner, now = %to_tag, "ng answer from another branch: its media replaces the first's");
                        ng.answerer = Some(to_tag);
                    }
                }
                if state == State::Connecting {
                    ng.answers_waiting.push(token);
                } else {
                    let sdp = ng.local_sdp.clone().unwrap_or_default();
                    self.ng_reply(token, Reply::ok().with("sdp", sdp.into()));
                }
                self.ng_far_answer(&id, oa.sdp);
            }
            _ => self.ng_reply(token, Reply::error("Invalid dialogue association")),
        }
    }

    /// The answerer's side's SDP, when it differs from what the far leg
    /// has: applied to a plain RTP far leg (in order, once the bridge is
    /// up). A WebRTC far leg keeps its answer (libwebrtc takes one per
    /// offer; a change there comes as a re-offer).
    fn ng_far_answer(&mut self, id: &CallId, sdp: String) {
        let c = self.calls.get_mut(id).expect("present");
        if other_kind(c.caller_leg) != LegKind::Legacy {
            return;
        }
        let up = c.state == State::Up;
        let ng = c.ng.as_mut().expect("an ng call");
        if ng.far_answer_next.as_ref().or(ng.far_answer.as_ref()) == Some(&sdp) {
            return;
        }
        if !up || ng.far_applying {
            ng.far_answer_next = Some(sdp);
            return;
        }
        let offer = match Offer::parse(&sdp) {
            Ok(o) if o.kind() == LegKind::Legacy => o,
            Ok(_) => {
                tracing::warn!(call = %id, "ng answer: a WebRTC SDP for the plain RTP leg, not applied");
                return;
            }
            Err(e) => {
                tracing::warn!(call = %id, "ng answer: SDP not applied: {e}");
                return;
            }
        };
        ng.far_answer = Some(sdp);
        ng.far_applying = true;
        self.command(MediaCommand::Reoffer {
            call: id.clone(),
            from: ReofferFrom::NgAnswer,
            offer,
        });
    }

    /// A far answer was applied (or not); the next one, if any, goes.
    pub(crate) fn ng_far_answer_applied(&mut self, id: &CallId, result: Result<String, Refused>) {
        let Some(c) = self.calls.get_mut(id) else {
            return;
        };
        let Some(ng) = c.ng.as_mut() else { return };
        ng.far_applying = false;
        if let Err(e) = result {
            tracing::warn!(call = %id, "ng answer not applied to the plain RTP leg: {e}");
        }
        if let Some(next) = ng.far_answer_next.take() {
            self.ng_far_answer(id, next);
        }
    }

    fn ng_delete(&mut self, now: std::time::Instant, token: ApiToken, d: Delete) {
        let Some(id) = self.by_ng.get(&d.call_id).cloned() else {
            let why = "Call-ID not found or tags didn't match";
            return self.ng_reply(
                token,
                if d.fatal {
                    Reply::error(why)
                } else {
                    Reply::warning(why)
                },
            );
        };
        let ng = self.calls[&id].ng.as_ref().expect("an ng call");
        // A losing branch of a forked call: only that branch goes. (A
        // to-tag that is the offerer's is the answerer's BYE, with
        // Kamailio's `to-tag` flag: the whole call.)
        let loser_tag = matches!((&d.to_tag, &ng.answerer),
            (Some(t), Some(w)) if t != w && *t != ng.offerer);
        let unanswered_branch = ng.answerer.is_none()
            && ng.branches.len() > 1
            && d.to_tag.is_none()
            && d.via_branch
                .as_ref()
                .is_some_and(|b| ng.branches.contains(b));
        if loser_tag || unanswered_branch {
            if let Some(b) = &d.via_branch {
                let ng = self.calls.get_mut(&id).expect("indexed").ng.as_mut();
                ng.expect("an ng call").branches.retain(|x| x != b);
            }
            return self.ng_reply(token, Reply::ok());
        }
        let reason = if ng.answerer.is_some() {
            EndReason::Delete
        } else {
            EndReason::Cancelled
        };
        tracing::info!(call = %id, call_id = %d.call_id, %reason, "ng delete");
        self.end(now, &id, reason);
        self.ng_reply(token, Reply::ok());
    }

    /// The media of an ng call was made (or not).
    pub(crate) fn ng_created(&mut self, id: &CallId, result: Result<crate::Created, Refused>) {
        let c = self.calls.get_mut(id).expect("present");
        let ng = c.ng.as_mut().expect("an ng call");
        let waiting = std::mem::take(&mut ng.offers_waiting);
        match result {
            Ok(created) => {
                let far = created.far_offer.unwrap_or_default();
                ng.far_sdp = Some(far.clone());
                ng.local_sdp = Some(created.local_sdp.clone());
                c.held_answer = Some(created.local_sdp);
                c.state = State::Calling;
                for t in waiting {
                    self.ng_reply(t, Reply::ok().with("sdp", far.clone().into()));
                }
            }
            Err(r) => {
                tracing::warn!(call = %id, "ng offer refused by the media side: {r}");
                self.metrics.refuse(r.kind);
                self.forget(id);
                for t in waiting {
                    self.ng_reply(t, refusal_reply(&r));
                }
            }
        }
    }

    /// The far answer was applied (or not): the answers waiting get ours.
    pub(crate) fn ng_bridge_up(
        &mut self,
        now: std::time::Instant,
        id: &CallId,
        result: Result<(), Refused>,
    ) {
        let c = self.calls.get_mut(id).expect("present");
        let ng = c.ng.as_mut().expect("an ng call");
        let waiting = std::mem::take(&mut ng.answers_waiting);
        match result {
            Ok(()) => {
                c.state = State::Up;
                let sdp = ng.local_sdp.clone().unwrap_or_default();
                let next = ng.far_answer_next.take();
                for t in waiting {
                    self.ng_reply(t, Reply::ok().with("sdp", sdp.clone().into()));
                }
                if let Some(next) = next {
                    self.ng_far_answer(id, next);
                }
            }
            Err(e) => {
                tracing::warn!(call = %id, "ng answer unusable: {e}");
                for t in waiting {
                    self.ng_reply(
                        t,
                        Reply::error(format!("Error rewriting SDP: {}", e.detail)),
                    );
                }
                self.end(now, id, EndReason::FarAnswerUnusable);
            }
        }
    }

    /// Our answer to a re-offer: kept for the other side's `answer`; the
    /// re-offer's reply is our SDP for the other side as it was. The same
    /// o= version tells that side nothing changed (RFC 3264 section 8), so
    /// a browser or a phone there answers without renegotiating.
    pub(crate) fn ng_reanswered(
        &mut self,
        id: &CallId,
        token: ApiToken,
        result: Result<String, Refused>,
    ) {
        let Some(c) = self.calls.get_mut(id) else {
            return self.ng_reply(token, Reply::error("Unknown call-id"));
        };
        let leg = c.caller_leg;
        let ng = c.ng.as_mut().expect("an ng call");
        let Some(re) = ng.reoffer.as_mut() else {
            return;
        };
        match result {
            Ok(answer) => {
                let waiting = std::mem::take(&mut re.waiting);
                let repeats = std::mem::take(&mut re.repeats);
                let from_offerer = re.tag == ng.offerer;
                re.answer = Some(answer.clone());
                // The other side's SDP of ours: our offer to the answerer,
                // or our answer to the offerer.
                let other = if from_offerer {
                    &ng.far_sdp
                } else {
                    &ng.local_sdp
                };
                let sdp = other.clone().unwrap_or_default();
                // Our SDP for the re-offerer's side is now this answer.
                if from_offerer {
                    ng.local_sdp = Some(answer.clone());
                } else {
                    ng.far_sdp = Some(answer.clone());
                }
                if !waiting.is_empty() {
                    ng.reoffer = None;
                }
                tracing::info!(call = %id, side = if from_offerer { leg.as_str() } else { other_kind(leg).as_str() }, "ng re-offer answered");
                for t in std::iter::once(token).chain(repeats) {
                    self.ng_reply(t, Reply::ok().with("sdp", sdp.clone().into()));
                }
                for t in waiting {
                    self.ng_reply(t, Reply::ok().with("sdp", answer.clone().into()));
                }
            }
            Err(e) => {
                let waiting = std::mem::take(&mut re.waiting);
                let repeats = std::mem::take(&mut re.repeats);
                ng.reoffer = None;
                tracing::warn!(call = %id, "ng re-offer refused: {e}");
                for t in std::iter::once(token).chain(repeats).chain(waiting) {
                    self.ng_reply(t, Reply::error(e.detail.clone()));
                }
            }
        }
    }

    /// An ng call is gone: requests still waiting get an error.
    pub(crate) fn ng_ended(&mut self, ng: &mut NgCall) {
        self.by_ng.remove(&ng.call_id);
        for t in ng.waiting() {
            self.ng_reply(t, Reply::error("Call ended"));
        }
    }
}

fn other_kind(kind: LegKind) -> LegKind {
    match kind {
        LegKind::Webrtc => LegKind::Legacy,
        LegKind::Legacy => LegKind::Webrtc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_far_side_is_what_the_flags_say() {
        let oa = |t: Option<&str>, ice: Option<&str>, dtls: Option<&str>| OfferAnswer {
            transport: t.map(str::to_string),
            ice: ice.map(str::to_string),
            dtls: dtls.map(str::to_string),
            ..Default::default()
        };
        use LegKind::*;
        assert_eq!(far_kind(&oa(Some("RTP/AVP"), None, None), Webrtc), Legacy);
        assert_eq!(
            far_kind(&oa(Some("UDP/TLS/RTP/SAVPF"), None, None), Legacy),
            Webrtc
        );
        assert_eq!(
            far_kind(&oa(None, Some("remove"), Some("off")), Webrtc),
            Legacy
        );
        assert_eq!(
            far_kind(&oa(None, Some("force"), Some("passive")), Legacy),
            Webrtc
        );
        assert_eq!(far_kind(&oa(None, None, None), Legacy), Webrtc);
        assert_eq!(
            far_kind(&oa(Some("RTP/SAVPF"), Some("force"), None), Legacy),
            Webrtc
        );
        assert_eq!(
            far_kind(&oa(Some("RTP/SAVPF"), None, Some("off")), Webrtc),
            Legacy
        );
        // A plain RTP offer with plain RTP asked for: the same kind.
        assert_eq!(far_kind(&oa(Some("RTP/AVP"), None, None), Legacy), Legacy);
    }

    #[test]
    fn flags_shape_the_plain_rtp_offer() {
        let mut oa = OfferAnswer::default();
        oa.codec.transcode = vec!["PCMU".into(), "speex".into()];
        oa.codec.accept = vec!["pcma".into(), "PCMU".into()];
        oa.transport = Some("RTP/SAVP".into());
        oa.rtcp_mux = vec!["offer".into()];
        let f = far_leg(&oa);
        assert_eq!(f.codecs, vec![CodecName::Pcmu, CodecName::Pcma]);
        assert!(f.sdes && f.rtcp_mux);
        assert_eq!(far_leg(&OfferAnswer::default()), FarLeg::default());
    }

    #[test]
    fn masked_and_stripped_codecs_leave_the_default_list() {
        let mut oa = OfferAnswer::default();
        oa.codec.mask = vec!["opus".into()];
        oa.codec.strip = vec!["G722".into(), "GSM".into()];
        let f = far_leg(&oa);
        assert!(f.codecs.is_empty(), "legacy.codecs, less the excluded");
        assert_eq!(f.exclude, vec![CodecName::Opus, CodecName::G722]);
        oa.codec.strip = vec!["ALL".into()];
        assert_eq!(far_leg(&oa).exclude, CodecName::ALL.to_vec());
        // codec-strip-all codec-except-PCMU: PCMU is what is left.
        oa.codec.except = vec!["PCMU".into()];
        assert_eq!(
            far_leg(&oa).exclude,
            vec![CodecName::Pcma, CodecName::G722, CodecName::Opus]
        );
        // What is transcoded to is offered, masked or not.
        oa.codec.transcode = vec!["PCMU".into()];
        assert_eq!(far_leg(&oa).codecs, vec![CodecName::Pcmu]);
    }
}
