//! Offers inside an established dialog (RFC 3261 section 14, RFC 3311
//! UPDATE) and RFC 4028 session refreshes: a new offer goes to the gateway
//! ([`UaEvent::Reoffer`]); a refresh (no SDP, or the same o= version) is
//! answered at once; we refresh with UPDATE when we are the refresher and
//! end the dialog when the peer stops refreshing.

use std::time::Instant;

use super::dialog::{DialogState, PendingReoffer};
use super::{ALLOW, DialogEnd, DialogRef, UaEvent, UserAgent, origin, sdp_body};
use crate::sip::message::{Method, Request, Response};
use crate::sip::metrics::Rejection;
use crate::sip::session_timer::{Refresher, SessionExpires};
use crate::sip::tsx::{Backoff, TsxKey};

impl UserAgent {
    /// A re-INVITE or UPDATE in a dialog.
    pub(super) fn reinvite(&mut self, now: Instant, id: DialogRef, key: TsxKey, req: Request) {
        let update = req.method == Method::Update;
        let offer = match sdp_body(&req.headers, &req.body) {
            Ok(o) => o,
            Err((status, reason)) => {
                self.reject_count(Rejection::ContentType);
                return self.respond(now, &key, &req, status, Some(&reason), None);
            }
        };
        let d = self.dialogs.get_mut(&id).expect("indexed");
        // One offer at a time. The peer's previous offer is still being
        // answered (RFC 3261 section 14.2 for a re-INVITE, RFC 3311 section
        // 5.2 for an UPDATE with an offer): 500 with a Retry-After of 0-10
        // s. An UPDATE without an offer is a refresh, answered below.
        if d.reoffer.is_some() && (!update || offer.is_some()) {
            self.reject_count(Rejection::RequestPending);
            let mut resp = Response::to(&req, 500, "Offer Pending", None);
            resp.headers
                .push("Retry-After", self.retry_after_0_to_10().to_string());
            resp.headers.push("Server", self.cfg.user_agent.clone());
            return self.send_response(now, &key, resp);
        }
        // Our 2xx is not ACKed yet: a re-INVITE waits (491, the peer
        // retries after its section 14.1 interval), as does an UPDATE's
        // offer while our own offer in that 2xx awaits its answer (RFC 3311
        // section 5.2).
        if d.state == DialogState::Answered
            && (!update || (offer.is_some() && (d.late_offer || d.offer_in_2xx)))
        {
            self.reject_count(Rejection::RequestPending);
            return self.respond(now, &key, &req, 491, None, None);
        }
        match offer {
            Some(sdp) if origin(&sdp) != d.remote_origin => {
                let prior_origin = std::mem::replace(&mut d.remote_origin, origin(&sdp));
                d.reoffer = Some(PendingReoffer { key, prior_origin });
                self.events.push_back(UaEvent::Reoffer { dialog: id, sdp });
                self.pump(now);
            }
            offer => {
                // A session refresh: our SDP again (an offer, when the
                // re-INVITE had none; its answer in the ACK changes nothing).
                let sdp = d.local_sdp.clone().unwrap_or_default();
                let with_sdp = !update || offer.is_some();
                self.ok_with_sdp(now, id, key, &req, with_sdp.then_some(sdp));
            }
        }
    }

    /// The 200 for a re-INVITE or UPDATE; a re-INVITE's 2xx is retransmitted
    /// until its ACK like the first one (section 13.3.1.4).
    fn ok_with_sdp(
        &mut self,
        now: Instant,
        id: DialogRef,
        key: TsxKey,
        req: &Request,
        sdp: Option<String>,
    ) {
        let d = self.dialogs.get_mut(&id).expect("present");
        // A re-INVITE or UPDATE that succeeds refreshes the session (RFC
        // 4028 section 10); a refused one (491, 500, 488) does not.
        if let Some(t) = d.timer.as_mut() {
            t.refreshed(now);
        }
        let d = &self.dialogs[&id];
        let (peer, contact, timer) = (d.peer, self.contact(d), d.timer);
        let mut resp = Response::to(req, 200, "OK", None);
        resp.headers.push("Contact", contact);
        resp.headers.push("Allow", ALLOW);
        if let Some(t) = timer {
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
        self.metrics.response(200);
        self.tsx.send_response(now, &key, resp.clone());
        if req.method == Method::Invite {
            let t = self.cfg.timers;
            let cseq = req.core().map(|c| c.cseq).unwrap_or_default();
            let d = self.dialogs.get_mut(&id).expect("present");
            d.state = DialogState::Answered;
            d.invite_cseq = cseq;
            d.late_offer = false;
            // A re-INVITE without an offer: our SDP in the 2xx is an offer,
            // answered in the ACK (section 14.2).
            d.offer_in_2xx = req.body.is_empty() && !resp.body.is_empty();
            d.ok = Some(resp);
            d.retransmit =
                (!peer.transport.reliable()).then(|| Backoff::new(now, t.t1, Some(t.t2)));
            d.ack_deadline = Some(now + t.timeout());
        }
        self.pump(now);
    }

    /// Retry-After for a 500 to a second offer: random in 0..=10 s (RFC
    /// 3261 section 14.2), from the per-process salt and a counter.
    fn retry_after_0_to_10(&mut self) -> u64 {
        self.next_id += 1;
        let x = (self.cfg.branch_salt ^ self.next_id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (x >> 32) % 11
    }

    /// The gateway's answer to a re-offer ([`UaEvent::Reoffer`]), or its
    /// refusal (e.g. 488): a refused offer leaves the session as it was
    /// (section 14.2).
    pub fn answer_reoffer(
        &mut self,
        now: Instant,
        id: DialogRef,
        result: Result<String, (u16, String)>,
    ) {
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        let Some(r) = d.reoffer.take() else {
            return;
        };
        let Some(req) = self.tsx.request(&r.key).cloned() else {
            return;
        };
        match result {
            Ok(sdp) => {
                d.local_sdp = Some(sdp.clone());
                self.ok_with_sdp(now, id, r.key, &req, Some(sdp));
            }
            Err((status, reason)) => {
                d.remote_origin = r.prior_origin;
                let reason = reason.replace(['\r', '\n'], " ");
                self.respond(now, &r.key, &req, status, Some(&reason), None);
            }
        }
    }

    /// RFC 4028 deadlines: our refresh is due, or theirs is overdue.
    pub(super) fn session_timeouts(&mut self, now: Instant) {
        let due: Vec<(DialogRef, bool)> = self
            .dialogs
            .iter()
            .filter_map(|(&id, d)| {
                let t = d.timer?;
                (now >= t.due && d.state == DialogState::Confirmed).then_some((id, t.we_refresh))
            })
            .collect();
        for (id, we_refresh) in due {
            if we_refresh {
                self.refresh(now, id);
            } else {
                // Section 10: no refresh in time: the session is over.
                tracing::warn!(dialog = %id, "session timer expired: BYE");
                self.reject_count(Rejection::SessionExpired);
                self.end_with_bye(now, id, DialogEnd::SessionExpired);
            }
        }
    }

    /// Sends a session refresh (UPDATE without SDP, RFC 4028 section 7.4).
    fn refresh(&mut self, now: Instant, id: DialogRef) {
        let Some(mut d) = self.dialogs.remove(&id) else {
            return;
        };
        let t = d.timer.as_mut().expect("timer due");
        t.refreshed(now);
        let se = SessionExpires {
            interval: t.interval.as_secs() as u32,
            refresher: Some(Refresher::Uac),
        };
        let extra = vec![
            ("Session-Expires", se.header()),
            ("Supported", "timer".to_string()),
            ("Contact", self.contact(&d)),
        ];
        let key = self.send_in_dialog(now, &mut d, Method::Update, extra);
        self.dialogs.insert(id, d);
        self.refreshes.insert(key, id);
    }

    /// A refresh failed with the dialog gone (481) or unanswered (408,
    /// timeout): end the call (RFC 4028 section 10, RFC 5057).
    pub(super) fn refresh_failed(&mut self, now: Instant, id: DialogRef, why: &str) {
        if !self.dialogs.contains_key(&id) {
            return;
        }
        tracing::warn!(dialog = %id, "session refresh failed ({why}): ending the call");
        self.reject_count(Rejection::RefreshFailed);
        self.end_with_bye(now, id, DialogEnd::RefreshFailed);
    }
}
