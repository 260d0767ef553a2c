//! The UAS side of a call (RFC 3261 sections 13.3 and 9.2): an incoming
//! INVITE becomes a [`UaEvent::Invite`]; the gateway answers it (2xx,
//! retransmitted until the ACK), sends 18x, or refuses it; CANCEL ends it
//! before the answer; the ACK confirms it (and carries a late offer's
//! answer).

use std::time::Instant;

use super::dialog::{Dialog, DialogKey, DialogState};
use super::{ALLOW, Caller, DialogEnd, DialogRef, UaEvent, UserAgent, origin, sdp_body, supported};
use crate::sip::message::{Message, NameAddr, Request, Response, reason_phrase};
use crate::sip::metrics::Rejection;
use crate::sip::session_timer::{Refresher, SessionTimer, UasDecision, uas_decide};
use crate::sip::tsx::{Backoff, Peer, Transport, TsxKey};

impl UserAgent {
    pub(super) fn new_invite(&mut self, now: Instant, key: TsxKey, peer: Peer, req: Request) {
        let core = req.core().expect("checked");
        let local_tag = self.new_tag();
        let offer = match sdp_body(&req.headers, &req.body) {
            Ok(o) => o,
            Err((status, reason)) => {
                self.reject_count(if status == 415 {
                    Rejection::ContentType
                } else {
                    Rejection::Malformed
                });
                return self.respond(now, &key, &req, status, Some(&reason), Some(&local_tag));
            }
        };
        let session_expires = match self.session_timer_for(&req) {
            UasDecision::TooSmall { min_se } => {
                self.reject_count(Rejection::SessionIntervalTooSmall);
                let mut resp =
                    Response::to(&req, 422, "Session Interval Too Small", Some(&local_tag));
                resp.headers.push("Min-SE", min_se.to_string());
                return self.send_response(now, &key, resp);
            }
            UasDecision::Timer { expires, require } => Some((expires, require)),
            UasDecision::NoTimer => None,
        };
        // RFC 3261 section 12.1.1: a dialog set up over TLS with a sips:
        // Request-URI (or top Record-Route, or Contact when there is no
        // Record-Route) is secure: our Contact must be sips:. A sips:
        // request that did not come over TLS, or with no TLS listener to
        // name, cannot be served (416, section 8.2.2.1).
        let routes = req.headers.list("Record-Route");
        let top_uri = match routes.first() {
            Some(r) => Some(r.clone()),
            None => req.headers.list("Contact").into_iter().next(),
        };
        let sips = is_sips(&req.uri) || top_uri.is_some_and(|u| is_sips(u.trim_start_matches('<')));
        if sips && (peer.transport != Transport::Tls || !self.has_tls()) {
            self.reject_count(Rejection::UnsupportedScheme);
            let why = if self.has_tls() {
                "Unsupported URI Scheme (sips: needs TLS on every hop)"
            } else {
                "Unsupported URI Scheme (no TLS here for sips:)"
            };
            return self.respond(now, &key, &req, 416, Some(why), Some(&local_tag));
        }
        let secure = sips;
        let contact = req
            .headers
            .list("Contact")
            .into_iter()
            .next()
            .and_then(|c| NameAddr::parse(&c));
        // RFC 3325 section 5: an asserted identity counts only from the
        // trust domain; from anyone else it is dropped here.
        let trusted = self.trusted(peer);
        let asserted = trusted
            .then(|| req.headers.get("P-Asserted-Identity").map(str::to_string))
            .flatten();
        let privacy = asserted
            .is_some()
            .then(|| req.headers.get("Privacy").map(str::to_string))
            .flatten();
        let id = self.next_ref();
        let d = Dialog {
            state: DialogState::Incoming,
            invite_tsx: key,
            peer,
            key: DialogKey {
                call_id: core.call_id.clone(),
                local_tag,
                remote_tag: core.from.tag().unwrap_or_default().to_string(),
            },
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
            offer_in_2xx: false,
            ok: None,
            retransmit: None,
            ack_deadline: None,
            local_sdp: None,
            ack: None,
            remote_origin: offer.as_deref().and_then(origin),
            reoffer: None,
            session_expires,
            timer: None,
            secure,
        };
        self.insert(id, d);
        self.events.push_back(UaEvent::Invite {
            dialog: id,
            offer,
            caller: Caller {
                from: core.from,
                asserted,
                privacy,
            },
            to: core.to.uri,
            uri: req.uri.clone(),
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
            .and_then(crate::sip::session_timer::SessionExpires::parse);
        uas_decide(&cfg, requested, supports)
    }

    /// Whether an incoming call still awaits our answer (not cancelled).
    pub fn is_incoming(&self, id: DialogRef) -> bool {
        self.dialogs
            .get(&id)
            .is_some_and(|d| d.state == DialogState::Incoming)
    }

    /// A response to the INVITE of an incoming dialog that is still
    /// proceeding, with the dialog's To tag and (RFC 3261 section 12.1.1:
    /// every response that creates a dialog, 18x with a tag included) the
    /// request's Record-Route.
    fn dialog_response(&self, id: DialogRef, status: u16) -> Option<(TsxKey, Response)> {
        let d = self.dialogs.get(&id)?;
        if d.state != DialogState::Incoming || !self.tsx.is_proceeding(&d.invite_tsx) {
            return None;
        }
        let req = self.tsx.request(&d.invite_tsx)?;
        let mut resp = Response::to(req, status, reason_phrase(status), Some(&d.key.local_tag));
        resp.headers.copy_from(&req.headers, "Record-Route");
        resp.headers.push("Contact", self.contact(d));
        Some((d.invite_tsx.clone(), resp))
    }

    /// The gateway's SDP for an incoming call: 200 OK, then 2xx
    /// retransmission until the ACK (section 13.3.1.4).
    /// False when the call is gone (cancelled meanwhile).
    pub fn answer(&mut self, now: Instant, id: DialogRef, sdp: String) -> bool {
        let Some((key, mut resp)) = self.dialog_response(id, 200) else {
            return false;
        };
        resp.headers.push("Allow", ALLOW);
        if let Some(s) = supported(&self.cfg) {
            resp.headers.push("Supported", s);
        }
        resp.headers.push("Server", self.cfg.user_agent.clone());
        let d = &self.dialogs[&id];
        let (session_expires, transport) = (d.session_expires, d.peer.transport);
        if let Some((se, require)) = session_expires {
            resp.headers.push("Session-Expires", se.header());
            if require {
                resp.headers.push("Require", "timer");
            }
        }
        resp.headers.push("Content-Type", "application/sdp");
        resp.body = sdp.clone().into_bytes();
        if !transport.reliable()
            && Message::Response(resp.clone()).to_bytes().len() > MAX_UDP_MESSAGE
        {
            // It cannot leave in a datagram, and a response cannot switch to
            // TCP (RFC 3261 section 18.2.2): refuse rather than go silent.
            tracing::warn!(dialog = %id, bytes = resp.body.len(), "answer too large for UDP: 500");
            self.reject_count(Rejection::AnswerTooLarge);
            let req = self.tsx.request(&key).cloned().expect("proceeding");
            let tag = self.dialogs[&id].key.local_tag.clone();
            self.respond(
                now,
                &key,
                &req,
                500,
                Some("Answer Too Large For UDP"),
                Some(&tag),
            );
            self.remove(id);
            self.pump(now);
            return false;
        }
        self.metrics.response(200);
        self.tsx.send_response(now, &key, resp.clone());
        let t = self.cfg.timers;
        let d = self.dialogs.get_mut(&id).expect("present");
        d.timer = session_expires.map(|(se, _)| {
            SessionTimer::new(now, se.interval, se.refresher == Some(Refresher::Uas))
        });
        d.state = DialogState::Answered;
        d.ok = Some(resp);
        d.local_sdp = Some(sdp);
        if !transport.reliable() {
            d.retransmit = Some(Backoff::new(now, t.t1, Some(t.t2)));
        }
        d.ack_deadline = Some(now + t.timeout());
        self.pump(now);
        true
    }

    /// A provisional response (180/183) to an incoming INVITE, e.g. the
    /// callee's ringing relayed by the B2BUA; `sdp` makes it early media.
    pub fn provisional(&mut self, now: Instant, id: DialogRef, status: u16, sdp: Option<String>) {
        let Some((key, mut resp)) = self.dialog_response(id, status) else {
            return;
        };
        if let Some(sdp) = sdp {
            resp.headers.push("Content-Type", "application/sdp");
            resp.body = sdp.into_bytes();
        }
        self.send_response(now, &key, resp);
    }

    /// Refuses an incoming call with a final response; `retry_after` (in
    /// seconds) goes with a 503 (RFC 3261 section 21.5.4).
    pub fn reject_with(
        &mut self,
        now: Instant,
        id: DialogRef,
        status: u16,
        reason: &str,
        retry_after: Option<u32>,
    ) {
        let Some(d) = self.remove(id) else {
            return;
        };
        if d.state == DialogState::Incoming
            && let Some(req) = self.tsx.request(&d.invite_tsx).cloned()
        {
            let reason = reason.replace(['\r', '\n'], " ");
            let mut resp = Response::to(&req, status, &reason, Some(&d.key.local_tag));
            resp.headers.push("Server", self.cfg.user_agent.clone());
            if let Some(s) = retry_after {
                resp.headers.push("Retry-After", s.to_string());
            }
            self.send_response(now, &d.invite_tsx, resp);
        }
    }

    /// Refuses an incoming call with a final response.
    pub fn reject(&mut self, now: Instant, id: DialogRef, status: u16, reason: &str) {
        self.reject_with(now, id, status, reason, None);
    }

    pub(super) fn handle_ack(&mut self, now: Instant, ack: &Request) {
        let Ok(core) = ack.core() else { return };
        let Some(&id) = self.by_key.get(&DialogKey::of_request(&core)) else {
            tracing::debug!("ACK for no dialog dropped");
            return;
        };
        let d = self.dialogs.get_mut(&id).expect("indexed");
        if d.state == DialogState::Answered && core.cseq == d.invite_cseq {
            d.state = DialogState::Confirmed;
            d.retransmit = None;
            d.ack_deadline = None;
            if d.late_offer {
                match sdp_body(&ack.headers, &ack.body) {
                    Ok(Some(sdp)) => {
                        d.remote_origin = origin(&sdp);
                        self.events.push_back(UaEvent::Answer { dialog: id, sdp })
                    }
                    _ => {
                        // Sections 13.3.1.4 / 14: no usable answer: end the call.
                        tracing::warn!(dialog = %id, "late offer: ACK without an SDP answer");
                        self.reject_count(Rejection::NoAnswerInAck);
                        self.end_with_bye(now, id, DialogEnd::NoAnswerInAck);
                    }
                }
            }
        }
        self.pump(now);
    }

    pub(super) fn cancel(&mut self, now: Instant, key: TsxKey, req: Request) {
        let invite = key.invite_for_cancel();
        let id = invite.as_ref().and_then(|k| self.by_invite.get(k).copied());
        let Some(invite) = invite.filter(|k| self.tsx.request(k).is_some()) else {
            self.reject_count(Rejection::CancelNoTransaction);
            return self.respond(now, &key, &req, 481, None, None);
        };
        self.respond(now, &key, &req, 200, None, None);
        if self.tsx.is_proceeding(&invite) {
            // Section 9.2: the INVITE gets 487, the call is gone.
            let inv = self.tsx.request(&invite).cloned().expect("checked");
            let tag = id
                .and_then(|c| self.dialogs.get(&c))
                .map(|d| d.key.local_tag.clone());
            self.respond(now, &invite, &inv, 487, None, tag.as_deref());
            if let Some(id) = id
                && self.remove(id).is_some()
            {
                self.events.push_back(UaEvent::Ended {
                    dialog: id,
                    why: DialogEnd::Cancel,
                });
            }
        }
    }

    /// The UAS's timers: 2xx retransmission (section 13.3.1.4) and giving
    /// up on an ACK that never came (64*T1: the dialog ends with BYE).
    pub(super) fn uas_timeouts(&mut self, now: Instant) {
        let mut give_up = Vec::new();
        for (&id, d) in self.dialogs.iter_mut() {
            if let Some(r) = d.retransmit.as_mut()
                && now >= r.at
                && let Some(ok) = &d.ok
            {
                r.fire(now);
                self.out.push_back(super::Outgoing {
                    peer: d.peer,
                    bytes: crate::sip::message::Message::Response(ok.clone()).to_bytes(),
                });
            }
            if d.ack_deadline.is_some_and(|t| now >= t) {
                give_up.push(id);
            }
        }
        for id in give_up {
            tracing::warn!(dialog = %id, "no ACK for 200 within 64*T1: BYE");
            self.reject_count(Rejection::NoAck);
            self.end_with_bye(now, id, DialogEnd::NoAck);
        }
    }
}

/// The largest SIP message sent in one UDP datagram (IPv4's 65507, less
/// a margin for IPv6 headers).
pub(super) const MAX_UDP_MESSAGE: usize = 65_000;

/// Whether a URI (or name-addr's URI) has the sips: scheme.
fn is_sips(uri: &str) -> bool {
    uri.trim_start()
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("sips:"))
}
