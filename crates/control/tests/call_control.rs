//! Call control in memory, with virtual time: a softswitch (the caller's
//! and the callee's SIP messages, as bytes) on one side, the media side's
//! results on the other. What the caller and the callee see, and what the
//! media side is told, for the cases that matter: setup and its refusals,
//! CANCEL during setup, early media racing the callee's 200, BYE from
//! either side, re-offers and DTMF routing, capacity and drain.

use std::time::{Duration, Instant};

use rtcgw_control::{
    ApiCall, ApiRequest, ApiToken, CallControl, CallId, CallMetrics, CallOutcomes, CallerId,
    ControlConfig, Created, EndReason, FarLeg, MediaCommand, MediaEvent, Output, Party, Plan,
    Refusal, Refused, ReofferFrom, Route,
};
use rtcgw_proto::ng::{Delete as NgDelete, OfferAnswer, Reply};
use rtcgw_proto::sdp::LegKind;
use rtcgw_proto::sip::message::{Message, Method, Request, Response};
use rtcgw_proto::sip::metrics::SipMetrics;
use rtcgw_proto::sip::tsx::{Peer, Timers, Transport};
use rtcgw_proto::sip::ua::{UaConfig, UserAgent};

const SWITCH: &str = "127.0.0.1:5080";
const WEBRTC_OFFER: &str = include_str!("../../../tests/data/aiortc_offer.sdp");
const PLAIN_OFFER: &str = "v=0\r\no=pbx 7 7 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n\
t=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
const ANSWER: &str = "v=0\r\no=rtcgw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 1 X 0\r\n";

fn switch() -> Peer {
    Peer {
        addr: SWITCH.parse().unwrap(),
        transport: Transport::Udp,
    }
}

fn config(route: Route, max_calls: usize) -> ControlConfig {
    ControlConfig {
        route,
        max_calls,
        max_setting_up: 64,
        caller_id: CallerId::Pass,
        from_user: "rtcgw".into(),
        pass_asserted_identity: true,
        id_salt: 1,
        ring_timeout: Duration::from_secs(60),
        api_uri_targets: true,
        drain_retry_after_s: 30,
    }
}

fn bridge() -> Route {
    Route::Bridge {
        target: format!("sip:{{user}}@{SWITCH}"),
    }
}

/// A softswitch and a media side around one [`CallControl`].
struct H {
    cc: CallControl,
    now: Instant,
    metrics: CallMetrics,
    /// Every SIP message sent, in order.
    sip: Vec<Message>,
    media: Vec<MediaCommand>,
    replies: Vec<(ApiToken, Result<ApiCall, Refused>)>,
    ng: Vec<(ApiToken, Reply)>,
    cseq: u32,
}

impl H {
    fn new(route: Route, max_calls: usize) -> Self {
        let ua = UserAgent::new(
            UaConfig {
                timers: Timers::default(),
                local: vec![(Transport::Udp, "127.0.0.1:5060".parse().unwrap())],
                allowed: vec!["127.0.0.0/8".parse().unwrap()],
                trusted: vec!["127.0.0.0/8".parse().unwrap()],
                next_hop: None,
                user_agent: "rtcgw-test".into(),
                branch_salt: 3,
                drain_retry_after_s: rtcgw_control::DRAIN_RETRY_AFTER_S,
                session_timer: None,
            },
            SipMetrics::default(),
        );
        let metrics = CallMetrics::new(CallOutcomes::default());
        Self {
            cc: CallControl::new(config(route, max_calls), ua, metrics.clone()),
            now: Instant::now(),
            metrics,
            sip: vec![],
            media: vec![],
            replies: vec![],
            ng: vec![],
            cseq: 10,
        }
    }

    fn drain(&mut self) {
        while let Some(o) = self.cc.poll_output() {
            match o {
                Output::Transmit(t) => self.sip.push(Message::parse(&t.bytes).unwrap()),
                Output::Media(c) => self.media.push(c),
                Output::Reply { token, result } => self.replies.push((token, result)),
                Output::NgReply { token, reply } => self.ng.push((token, reply)),
            }
        }
    }

    fn input(&mut self, bytes: String) {
        self.cc.handle_sip(self.now, switch(), bytes.as_bytes());
        self.drain();
    }

    fn media_event(&mut self, ev: MediaEvent) {
        self.cc.handle_media(self.now, ev);
        self.drain();
    }

    /// Runs time forward, firing every timer on the way.
    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.cc.poll_timeout().filter(|t| *t <= until) {
            self.now = self.now.max(t);
            self.cc.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
    }

    fn responses(&self, status: u16) -> Vec<Response> {
        self.sip
            .iter()
            .filter_map(|m| match m {
                Message::Response(r) if r.status == status => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn requests(&self, method: Method) -> Vec<Request> {
        self.sip
            .iter()
            .filter_map(|m| match m {
                Message::Request(r) if r.method == method => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// The media commands of one kind, taken out of the list.
    fn take(&mut self, pick: impl Fn(&MediaCommand) -> bool) -> Vec<MediaCommand> {
        let (hit, rest) = self.media.drain(..).partition(|c| pick(c));
        self.media = rest;
        hit
    }

    /// The one Create command: its call id, plan and offer kind.
    fn created_call(&mut self) -> (CallId, Plan, Option<LegKind>) {
        let mut c = self.take(|c| matches!(c, MediaCommand::Create { .. }));
        assert_eq!(c.len(), 1, "one Create");
        match c.remove(0) {
            MediaCommand::Create { call, plan, offer } => (call, plan, offer.map(|o| o.kind())),
            _ => unreachable!(),
        }
    }

    fn hangups(&mut self) -> Vec<(CallId, EndReason)> {
        self.take(|c| matches!(c, MediaCommand::Hangup { .. }))
            .into_iter()
            .map(|c| match c {
                MediaCommand::Hangup { call, reason } => (call, reason),
                _ => unreachable!(),
            })
            .collect()
    }

    /// The caller's INVITE (from the softswitch), with `extra` headers.
    fn invite(&mut self, branch: &str, sdp: Option<&str>, extra: &str) {
        let body = sdp.unwrap_or("");
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        self.input(format!(
            "INVITE sip:bob@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {SWITCH};branch={branch}\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=caller-{branch}\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: {branch}@switch\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{SWITCH}>\r\n\
Max-Forwards: 70\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }

    /// The caller's CANCEL of its INVITE with `branch` (section 9.1: the
    /// INVITE's branch, Call-ID, From tag and CSeq number).
    fn cancel(&mut self, branch: &str) {
        self.input(format!(
            "CANCEL sip:bob@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {SWITCH};branch={branch}\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=caller-{branch}\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: {branch}@switch\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ));
    }

    /// A request in the caller's dialog (after our 200 with tag `tag`).
    fn caller_request(&mut self, branch: &str, method: &str, tag: &str, body: (&str, &str)) {
        self.cseq += 1;
        let (ctype, body) = body;
        let ct = if ctype.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {ctype}\r\n")
        };
        self.input(format!(
            "{method} sip:rtcgw@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {SWITCH};branch={branch}\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=caller-z9hG4bKinv\r\nTo: <sip:bob@example.com>;tag={tag}\r\n\
Call-ID: z9hG4bKinv@switch\r\nCSeq: {} {method}\r\nContact: <sip:alice@{SWITCH}>\r\n\
Max-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            self.cseq,
            body.len()
        ));
    }

    /// The ACK for our 200 to the caller.
    fn caller_ack(&mut self, tag: &str, body: &str) {
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        self.input(format!(
            "ACK sip:rtcgw@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {SWITCH};branch=z9hG4bKack\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=caller-z9hG4bKinv\r\nTo: <sip:bob@example.com>;tag={tag}\r\n\
Call-ID: z9hG4bKinv@switch\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }

    /// The callee's response to our outbound INVITE.
    fn callee_responds(&mut self, status: u16, sdp: Option<&str>) {
        let inv = self.requests(Method::Invite).remove(0);
        let mut r = Response::to(&inv, status, "X", Some("callee"));
        r.headers.push("Contact", format!("<sip:bob@{SWITCH}>"));
        if let Some(sdp) = sdp {
            r.headers.push("Content-Type", "application/sdp");
            r.body = sdp.as_bytes().to_vec();
        }
        self.input(String::from_utf8(Message::Response(r).to_bytes()).unwrap());
    }

    /// A request in the callee's dialog.
    fn callee_request(&mut self, method: &str, body: (&str, &str)) {
        self.cseq += 1;
        let inv = self.requests(Method::Invite).remove(0);
        let c = inv.core().unwrap();
        let (ctype, body) = body;
        let ct = if ctype.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {ctype}\r\n")
        };
        self.input(format!(
            "{method} sip:rtcgw@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {SWITCH};branch=z9hG4bKcallee{}\r\n\
From: <sip:bob@example.com>;tag=callee\r\nTo: {};tag={}\r\nCall-ID: {}\r\nCSeq: {} {method}\r\n\
Max-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            self.cseq,
            inv.headers.get("From").unwrap().split(";tag=").next().unwrap(),
            c.from.tag().unwrap(),
            c.call_id,
            self.cseq,
            body.len()
        ));
    }

    /// The ACK for the callee's re-INVITE with CSeq `cseq`.
    fn callee_ack(&mut self, cseq: u32) {
        let inv = self.requests(Method::Invite).remove(0);
        let c = inv.core().unwrap();
        self.input(format!(
            "ACK sip:rtcgw@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {SWITCH};branch=z9hG4bKcalleeack{}\r\n\
From: <sip:bob@example.com>;tag=callee\r\nTo: {};tag={}\r\nCall-ID: {}\r\nCSeq: {} ACK\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            cseq,
            inv.headers.get("From").unwrap().split(";tag=").next().unwrap(),
            c.from.tag().unwrap(),
            c.call_id,
            cseq,
        ));
    }

    fn our_tag(&self) -> String {
        let ok = self
            .responses(200)
            .into_iter()
            .find(|r| r.core().unwrap().cseq_method == Method::Invite);
        ok.expect("200 to the INVITE")
            .core()
            .unwrap()
            .to
            .tag()
            .unwrap()
            .to_string()
    }
}

fn created(local: &str, far: Option<&str>) -> Result<Created, Refused> {
    Ok(Created {
        local_sdp: local.into(),
        far_offer: far.map(str::to_string),
    })
}

/// A WebRTC caller bridged to a plain-RTP callee, up to the outbound
/// INVITE: the call id.
fn bridged_call_ringing(h: &mut H) -> CallId {
    h.invite("z9hG4bKinv", Some(WEBRTC_OFFER), "");
    far_leg_invited(h)
}

/// A WebRTC caller's bridge made on the media side: the outbound INVITE
/// goes out; the call id.
fn far_leg_invited(h: &mut H) -> CallId {
    let (call, plan, kind) = h.created_call();
    assert_eq!(
        (plan, kind),
        (Plan::Bridge(FarLeg::default()), Some(LegKind::Webrtc))
    );
    h.media_event(MediaEvent::Created {
        call: call.clone(),
        result: created(ANSWER, Some(PLAIN_OFFER)),
    });
    assert_eq!(h.requests(Method::Invite).len(), 1, "outbound INVITE");
    call
}

/// ... and answered: both dialogs up.
fn bridged_call_up(h: &mut H) -> CallId {
    let call = bridged_call_ringing(h);
    h.callee_responds(200, Some(PLAIN_OFFER));
    let done = h.take(|c| matches!(c, MediaCommand::CompleteBridge { early: false, .. }));
    assert_eq!(done.len(), 1);
    h.media_event(MediaEvent::BridgeUp {
        call: call.clone(),
        early: false,
        result: Ok(()),
    });
    let tag = h.our_tag();
    h.caller_ack(&tag, "");
    call
}

#[test]
fn a_bridged_call_rings_answers_and_carries_the_callers_identity() {
    let mut h = H::new(bridge(), 10);
    h.invite(
        "z9hG4bKinv",
        Some(WEBRTC_OFFER),
        "Record-Route: <sip:switch@127.0.0.1:5080;lr>\r\n\
P-Asserted-Identity: <sip:+4930123@pbx.example>\r\n",
    );
    let (call, ..) = h.created_call();
    assert!(h.responses(100).len() == 1 && h.responses(200).is_empty());
    h.media_event(MediaEvent::Created {
        call: call.clone(),
        result: created(ANSWER, Some(PLAIN_OFFER)),
    });
    let inv = h.requests(Method::Invite).remove(0);
    assert_eq!(
        inv.uri,
        format!("sip:bob@{SWITCH}"),
        "routed by the called user"
    );
    assert_eq!(inv.body, PLAIN_OFFER.as_bytes());
    let from = inv.core().unwrap().from;
    assert_eq!(from.display.as_deref(), Some("Alice"));
    assert!(from.uri.starts_with("sip:alice@"), "{}", from.uri);
    assert_eq!(
        inv.headers.get("P-Asserted-Identity"),
        Some("<sip:+4930123@pbx.example>")
    );
    // Ringing is relayed, with the Record-Route of the caller's INVITE.
    h.callee_responds(180, None);
    let ring = h.responses(180).pop().expect("180 relayed");
    assert_eq!(
        ring.headers.list("Record-Route"),
        vec!["<sip:switch@127.0.0.1:5080;lr>"]
    );
    // The callee answers: the far answer completes the bridge, then the
    // caller gets its 200 with our held answer.
    h.callee_responds(200, Some(PLAIN_OFFER));
    assert!(h.responses(200).is_empty(), "held until the media is up");
    let done = h.take(|c| matches!(c, MediaCommand::CompleteBridge { .. }));
    assert_eq!(
        done,
        vec![MediaCommand::CompleteBridge {
            call: call.clone(),
            answer: PLAIN_OFFER.into(),
            early: false
        }]
    );
    h.media_event(MediaEvent::BridgeUp {
        call,
        early: false,
        result: Ok(()),
    });
    let ok = h.responses(200).pop().expect("200 to the caller");
    assert_eq!(ok.body, ANSWER.as_bytes());
    assert_eq!(
        h.requests(Method::Ack).len(),
        1,
        "the callee's 200 was ACKed"
    );
    assert_eq!(h.cc.calls(), 1);
    assert_eq!(h.metrics.active(), 1);
}

#[test]
fn cancel_during_setup_gives_487_and_drops_the_media_that_comes_later() {
    let mut h = H::new(bridge(), 10);
    h.invite("z9hG4bKinv", Some(WEBRTC_OFFER), "");
    let (call, ..) = h.created_call();
    h.cancel("z9hG4bKinv");
    assert_eq!(h.responses(487).len(), 1);
    assert_eq!(h.cc.calls(), 0);
    // The media the setup made arrives afterwards: it is hung up, and no
    // outbound INVITE goes out.
    h.media_event(MediaEvent::Created {
        call: call.clone(),
        result: created(ANSWER, Some(PLAIN_OFFER)),
    });
    assert!(h.requests(Method::Invite).is_empty());
    let hangups = h.hangups();
    assert!(hangups.iter().any(|(c, _)| *c == call), "{hangups:?}");
    assert!(h.cc.is_idle());
    assert!(
        h.responses(200)
            .iter()
            .all(|r| r.core().unwrap().cseq_method == Method::Cancel)
    );
}

#[test]
fn cancel_while_the_callee_rings_cancels_the_callee() {
    let mut h = H::new(bridge(), 10);
    let call = bridged_call_ringing(&mut h);
    h.callee_responds(180, None);
    h.cancel("z9hG4bKinv");
    assert_eq!(h.responses(487).len(), 1);
    assert_eq!(h.requests(Method::Cancel).len(), 1, "CANCEL to the callee");
    assert_eq!(h.hangups(), vec![(call, EndReason::Cancelled)]);
    // The callee's 487 ends its side; nothing more happens.
    h.callee_responds(487, None);
    assert!(h.cc.is_idle());
}

/// RFC 3261 section 13.2.1: the 2xx repeats the 183's answer. The callee's
/// 200 may come while that answer is still being applied: the caller then
/// gets one 200, once the media is up, and no 183 after it.
#[test]
fn the_callees_200_during_early_media_setup_answers_the_caller_once() {
    let mut h = H::new(bridge(), 10);
    let call = bridged_call_ringing(&mut h);
    h.callee_responds(183, Some(PLAIN_OFFER));
    let early = h.take(|c| matches!(c, MediaCommand::CompleteBridge { early: true, .. }));
    assert_eq!(early.len(), 1);
    h.callee_responds(200, Some(PLAIN_OFFER));
    assert!(
        h.take(|c| matches!(c, MediaCommand::CompleteBridge { .. }))
            .is_empty(),
        "the answer is applied once"
    );
    assert!(h.responses(200).is_empty() && h.responses(183).is_empty());
    h.media_event(MediaEvent::BridgeUp {
        call,
        early: true,
        result: Ok(()),
    });
    assert_eq!(h.responses(200).len(), 1);
    assert!(h.responses(183).is_empty(), "no 183 after the 200");
    assert_eq!(h.responses(200)[0].body, ANSWER.as_bytes());
}

#[test]
fn early_media_then_the_answer() {
    let mut h = H::new(bridge(), 10);
    let call = bridged_call_ringing(&mut h);
    h.callee_responds(183, Some(PLAIN_OFFER));
    h.take(|c| matches!(c, MediaCommand::CompleteBridge { .. }));
    h.media_event(MediaEvent::BridgeUp {
        call: call.clone(),
        early: true,
        result: Ok(()),
    });
    let p = h.responses(183).pop().expect("183 with our answer");
    assert_eq!(p.body, ANSWER.as_bytes());
    h.callee_responds(200, Some(PLAIN_OFFER));
    assert!(h.media.is_empty(), "media already up: {:?}", h.media);
    assert_eq!(h.responses(200).len(), 1);
}

#[test]
fn refusals_follow_the_table() {
    // Broken SDP: 400 at once, no media work.
    let mut h = H::new(bridge(), 10);
    h.invite("z9hG4bKa", Some("v=0\r\nnot sdp at all\r\n"), "");
    assert_eq!(h.responses(400).len(), 1);
    assert!(h.media.is_empty());
    // No audio: 488.
    h.invite(
        "z9hG4bKb",
        Some(&PLAIN_OFFER.replace("m=audio", "m=video")),
        "",
    );
    assert_eq!(h.responses(488).len(), 1);
    // The media side's refusals.
    for (i, (kind, status, retry)) in [
        (Refusal::NoCommonCodec, 488, None),
        (Refusal::MediaUnavailable, 503, Some("5")),
        (Refusal::InvalidSdp, 488, None),
        (Refusal::Internal, 500, None),
    ]
    .into_iter()
    .enumerate()
    {
        h.invite(&format!("z9hG4bKm{i}"), Some(PLAIN_OFFER), "");
        let (call, ..) = h.created_call();
        h.media_event(MediaEvent::Created {
            call,
            result: Err(Refused::new(kind, "because")),
        });
        let r = h.responses(status).pop().expect("refusal");
        assert!(r.reason.ends_with("(because)"), "{}", r.reason);
        assert_eq!(r.headers.get("Retry-After"), retry, "{kind:?}");
    }
    assert_eq!(h.metrics.refused(Refusal::NoCommonCodec), 1);
    assert_eq!(h.metrics.refused(Refusal::MalformedSdp), 1);
    assert_eq!(h.cc.calls(), 0);
    // The callee's refusal reaches the caller; a hop-by-hop one does not.
    for (theirs, ours) in [(486, 486), (407, 403)] {
        let mut h = H::new(bridge(), 10);
        let call = bridged_call_ringing(&mut h);
        h.callee_responds(theirs, None);
        assert_eq!(h.responses(ours).len(), 1, "{theirs} -> {ours}");
        assert_eq!(h.hangups(), vec![(call, EndReason::CalleeRefused(theirs))]);
        assert!(h.cc.is_idle());
    }
    // An API offer that is not WebRTC: 400 over HTTP.
    let mut h = H::new(Route::Demo, 10);
    h.cc.handle_api(
        h.now,
        ApiRequest::Create {
            token: ApiToken(1),
            offer: PLAIN_OFFER.into(),
            to: None,
        },
    );
    h.drain();
    let (_, r) = h.replies.pop().unwrap();
    let r = r.unwrap_err();
    assert_eq!(
        (r.kind, r.kind.disposition().http_status),
        (Refusal::NotWebrtc, 400)
    );
}

#[test]
fn bye_from_either_side_ends_both() {
    let mut h = H::new(bridge(), 10);
    let call = bridged_call_up(&mut h);
    let tag = h.our_tag();
    h.caller_request("z9hG4bKbye", "BYE", &tag, ("", ""));
    assert_eq!(h.requests(Method::Bye).len(), 1, "BYE to the callee");
    assert_eq!(h.hangups(), vec![(call, EndReason::Bye(Party::Caller))]);
    assert!(h.cc.is_idle());

    let mut h = H::new(bridge(), 10);
    let call = bridged_call_up(&mut h);
    h.callee_request("BYE", ("", ""));
    let byes = h.requests(Method::Bye);
    assert_eq!(byes.len(), 1, "BYE to the caller");
    assert_eq!(byes[0].uri, format!("sip:alice@{SWITCH}"));
    assert_eq!(h.hangups(), vec![(call, EndReason::Bye(Party::Callee))]);
    assert!(h.cc.is_idle());
}

#[test]
fn the_media_side_ending_a_call_byes_both_dialogs() {
    let mut h = H::new(bridge(), 10);
    let call = bridged_call_up(&mut h);
    h.media_event(MediaEvent::Ended {
        call,
        reason: EndReason::MediaTimeout,
    });
    assert_eq!(h.requests(Method::Bye).len(), 2);
    assert!(h.hangups().is_empty(), "the media side ended it itself");
    assert!(h.cc.is_idle());
}

#[test]
fn reoffers_go_to_their_leg_and_dtmf_to_the_other() {
    let mut h = H::new(bridge(), 10);
    let call = bridged_call_up(&mut h);
    let tag = h.our_tag();
    // Hold from the caller: a re-INVITE with a new version.
    let hold = WEBRTC_OFFER
        .replace("4004671098 4004671098", "4004671098 4004671099")
        .replace("a=sendrecv", "a=sendonly");
    h.caller_request("z9hG4bKre", "INVITE", &tag, ("application/sdp", &hold));
    let re = h.take(|c| matches!(c, MediaCommand::Reoffer { .. }));
    let MediaCommand::Reoffer { from, offer, .. } = &re[0] else {
        panic!("{re:?}")
    };
    assert_eq!(offer.kind(), LegKind::Webrtc);
    assert!(matches!(from, ReofferFrom::Dialog(_)));
    let from = *from;
    h.media_event(MediaEvent::Reanswered {
        call: call.clone(),
        from,
        result: Ok("v=0\r\nheld\r\n".into()),
    });
    let ok = h.responses(200).pop().unwrap();
    assert_eq!(ok.body, b"v=0\r\nheld\r\n");
    assert!(
        h.requests(Method::Invite).len() == 1,
        "the callee never notices"
    );
    // A re-offer the media side refuses: 488, the session stays.
    let hold2 = hold.replace("4004671099", "4004671100");
    h.caller_ack(&tag, "");
    h.caller_request("z9hG4bKre2", "UPDATE", &tag, ("application/sdp", &hold2));
    let re = h.take(|c| matches!(c, MediaCommand::Reoffer { .. }));
    let MediaCommand::Reoffer { from, .. } = re[0].clone() else {
        panic!()
    };
    h.media_event(MediaEvent::Reanswered {
        call: call.clone(),
        from,
        result: Err(Refused::new(Refusal::NoCommonCodec, "no codec")),
    });
    assert_eq!(h.responses(488).len(), 1);
    // A broken re-offer: refused at once.
    h.caller_request(
        "z9hG4bKre3",
        "UPDATE",
        &tag,
        ("application/sdp", "v=0\r\nx\r\n"),
    );
    assert_eq!(h.responses(400).len(), 1);
    assert_eq!(h.cc.calls(), 1);
    // A re-offer of the other kind cannot turn the WebRTC leg into plain RTP.
    let plain = PLAIN_OFFER.replace("o=pbx 7 7", "o=pbx 7 8");
    h.caller_request("z9hG4bKre4", "UPDATE", &tag, ("application/sdp", &plain));
    assert_eq!(h.responses(488).len(), 2);
    assert!(
        h.take(|c| matches!(c, MediaCommand::Reoffer { .. }))
            .is_empty()
    );
    // SIP INFO digits: from the WebRTC caller's dialog, and from the
    // plain-RTP callee's.
    let relay = ("application/dtmf-relay", "Signal=5\r\nDuration=200\r\n");
    h.caller_request("z9hG4bKinfo", "INFO", &tag, relay);
    h.callee_request("INFO", ("application/dtmf", "#"));
    let digits = h.take(|c| matches!(c, MediaCommand::Dtmf { .. }));
    assert_eq!(
        digits,
        vec![
            MediaCommand::Dtmf {
                call: call.clone(),
                from: LegKind::Webrtc,
                digit: '5',
                duration_ms: 200
            },
            MediaCommand::Dtmf {
                call,
                from: LegKind::Legacy,
                digit: '#',
                duration_ms: 160
            },
        ]
    );
}

#[test]
fn the_phone_holds_and_resumes_on_a_new_port_one_offer_at_a_time() {
    let mut h = H::new(bridge(), 10);
    let call = bridged_call_up(&mut h);
    let reoffers = |h: &mut H| h.take(|c| matches!(c, MediaCommand::Reoffer { .. }));
    // Hold from the phone: its offer goes to the legacy leg.
    let hold = format!(
        "{}a=sendonly\r\n",
        PLAIN_OFFER.replace("o=pbx 7 7", "o=pbx 7 8")
    );
    h.callee_request("INVITE", ("application/sdp", &hold));
    let hold_cseq = h.cseq;
    let re = reoffers(&mut h);
    let MediaCommand::Reoffer { from, offer, .. } = re[0].clone() else {
        panic!("{re:?}")
    };
    assert_eq!(offer.kind(), LegKind::Legacy);
    // Its resume before the hold is answered: 500 with Retry-After (RFC
    // 3261 section 14.2), nothing to the media side.
    let resume = PLAIN_OFFER
        .replace("o=pbx 7 7", "o=pbx 7 9")
        .replace("m=audio 4000", "m=audio 4002");
    h.callee_request("INVITE", ("application/sdp", &resume));
    let busy = h.responses(500).pop().expect("500");
    assert!(busy.headers.get("Retry-After").is_some());
    assert!(reoffers(&mut h).is_empty());
    h.media_event(MediaEvent::Reanswered {
        call: call.clone(),
        from,
        result: Ok("v=0\r\nrecvonly\r\n".into()),
    });
    assert_eq!(h.responses(200).pop().unwrap().body, b"v=0\r\nrecvonly\r\n");
    // The retried resume (after the ACK) carries the new port to the
    // legacy leg, whose session then expects it (rtp::session).
    h.callee_request("INVITE", ("application/sdp", &resume));
    assert_eq!(h.responses(491).len(), 1, "before the ACK: glare");
    h.callee_ack(hold_cseq);
    h.callee_request("INVITE", ("application/sdp", &resume));
    let re = reoffers(&mut h);
    let MediaCommand::Reoffer { offer, .. } = &re[0] else {
        panic!("{re:?}")
    };
    assert!(offer.sdp().contains("m=audio 4002"), "{}", offer.sdp());
    assert_eq!(h.cc.calls(), 1);
    assert!(h.requests(Method::Bye).is_empty());
}

#[test]
fn max_calls_gives_503_with_retry_after_on_sip_and_the_api() {
    let mut h = H::new(Route::Demo, 1);
    h.invite("z9hG4bKone", Some(WEBRTC_OFFER), "");
    let (call, plan, _) = h.created_call();
    assert_eq!(plan, Plan::Demo);
    h.media_event(MediaEvent::Created {
        call,
        result: created(ANSWER, None),
    });
    assert_eq!(h.responses(200).len(), 1);
    h.invite("z9hG4bKtwo", Some(WEBRTC_OFFER), "");
    let busy = h.responses(503).pop().expect("503");
    assert!(busy.reason.contains("at capacity"), "{}", busy.reason);
    assert_eq!(busy.headers.get("Retry-After"), Some("5"));
    assert!(h.media.is_empty(), "no media work for a refused call");
    h.cc.handle_api(
        h.now,
        ApiRequest::Create {
            token: ApiToken(7),
            offer: WEBRTC_OFFER.into(),
            to: None,
        },
    );
    h.drain();
    let (token, r) = h.replies.pop().unwrap();
    let r = r.unwrap_err();
    assert_eq!(token, ApiToken(7));
    assert_eq!(r.kind, Refusal::Capacity);
    let d = r.kind.disposition();
    assert_eq!((d.http_status, d.retry_after_s), (503, Some(5)));
    assert_eq!(h.metrics.refused(Refusal::Capacity), 2);
}

#[test]
fn a_call_given_up_during_setup_counts_until_its_media_is_back() {
    // max_calls = 1: the first call is cancelled while its media is being
    // made. Until that media arrives (and is hung up) it still exists, so
    // a second call is refused: the media side never holds two.
    let mut h = H::new(Route::Demo, 1);
    h.invite("z9hG4bKinv", Some(WEBRTC_OFFER), "");
    let (call, ..) = h.created_call();
    h.cancel("z9hG4bKinv");
    assert_eq!(h.responses(487).len(), 1);
    h.invite("z9hG4bKtwo", Some(WEBRTC_OFFER), "");
    let busy = h
        .responses(503)
        .pop()
        .expect("503 while the first call's media may come up");
    assert!(busy.reason.contains("at capacity"), "{}", busy.reason);
    assert!(
        h.take(|c| matches!(c, MediaCommand::Create { .. }))
            .is_empty(),
        "no Create for the second call"
    );
    h.hangups();
    // The first call's media arrives and is hung up: room again.
    h.media_event(MediaEvent::Created {
        call: call.clone(),
        result: created(ANSWER, None),
    });
    assert_eq!(h.hangups().len(), 1);
    h.invite("z9hG4bKthree", Some(WEBRTC_OFFER), "");
    let (third, ..) = h.created_call();
    assert_ne!(third, call);
}

#[test]
fn drain_refuses_new_calls_then_ends_the_rest() {
    let mut h = H::new(bridge(), 10);
    let call = bridged_call_up(&mut h);
    h.cc.drain(h.now);
    h.invite("z9hG4bKlate", Some(WEBRTC_OFFER), "");
    let r = h.responses(503).pop().expect("503 while draining");
    assert_eq!(r.headers.get("Retry-After"), Some("30"));
    h.input(format!(
        "OPTIONS sip:rtcgw@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {SWITCH};branch=z9hG4bKopt\r\n\
From: <sip:switch@example.com>;tag=o\r\nTo: <sip:rtcgw@example.com>\r\nCall-ID: opt@switch\r\n\
CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ));
    assert_eq!(h.responses(503).len(), 2, "OPTIONS too");
    assert_eq!(h.cc.calls(), 1, "the call in progress goes on");
    h.advance(Duration::from_secs(5));
    assert!(h.requests(Method::Bye).is_empty());
    h.cc.hangup_all(h.now, EndReason::Shutdown);
    h.drain();
    assert_eq!(h.requests(Method::Bye).len(), 2, "BYE on both dialogs");
    assert_eq!(h.hangups(), vec![(call, EndReason::Shutdown)]);
    assert!(h.cc.is_idle());
    assert!(h.cc.may_exit(), "idle, and the probe has seen a 503");
}

impl H {
    fn options_probe(&mut self, branch: &str) {
        self.options_probe_from(switch(), branch);
    }

    fn options_probe_from(&mut self, from: Peer, branch: &str) {
        let bytes = format!(
            "OPTIONS sip:rtcgw@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {SWITCH};branch={branch}\r\n\
From: <sip:switch@example.com>;tag=o\r\nTo: <sip:rtcgw@example.com>\r\nCall-ID: {branch}@switch\r\n\
CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        self.cc.handle_sip(self.now, from, bytes.as_bytes());
        self.drain();
    }
}

#[test]
fn an_idle_drain_waits_for_a_watching_dispatcher_to_see_a_503() {
    // Nobody probes: nothing to wait for.
    let mut h = H::new(bridge(), 10);
    assert!(!h.cc.may_exit(), "not draining");
    h.cc.drain(h.now);
    assert!(h.cc.may_exit());
    // One OPTIONS (a health check) is not a dispatcher.
    let mut h = H::new(bridge(), 10);
    h.options_probe("z9hG4bKp0");
    h.cc.drain(h.now);
    assert!(h.cc.may_exit());
    // A dispatcher probes every 10 s: stay until a probe got its 503.
    let mut h = H::new(bridge(), 10);
    h.options_probe("z9hG4bKp0");
    h.advance(Duration::from_secs(10));
    h.options_probe("z9hG4bKp1");
    assert_eq!(h.responses(200).len(), 2);
    h.advance(Duration::from_secs(3));
    h.cc.drain(h.now);
    assert!(!h.cc.may_exit(), "the dispatcher has not seen the drain");
    h.options_probe("z9hG4bKp2");
    let r = h.responses(503).pop().expect("503 to the probe");
    assert_eq!(r.headers.get("Retry-After"), Some("30"));
    assert!(h.cc.may_exit());
    // A pair of proxies probing from two addresses: both must have seen it.
    let mut h = H::new(bridge(), 10);
    let other = Peer {
        addr: "127.0.0.2:5080".parse().unwrap(),
        transport: Transport::Udp,
    };
    for (i, branch) in ["z9hG4bKa1", "z9hG4bKa2"].iter().enumerate() {
        h.options_probe(branch);
        h.options_probe_from(other, &format!("z9hG4bKb{i}"));
        h.advance(Duration::from_secs(10));
    }
    h.cc.drain(h.now);
    h.options_probe("z9hG4bKa3");
    assert!(!h.cc.may_exit(), "the second proxy has not seen the drain");
    h.options_probe_from(other, "z9hG4bKb3");
    assert!(h.cc.may_exit());
}

#[test]
fn a_late_offer_gets_our_offer_and_its_answer_comes_with_the_ack() {
    let mut h = H::new(Route::Demo, 10);
    h.invite("z9hG4bKinv", None, "");
    let (call, plan, kind) = h.created_call();
    assert_eq!((plan, kind), (Plan::Demo, None));
    h.media_event(MediaEvent::Created {
        call: call.clone(),
        result: created("v=0\r\nour offer\r\n", None),
    });
    assert_eq!(h.responses(200)[0].body, b"v=0\r\nour offer\r\n");
    let tag = h.our_tag();
    h.caller_ack(&tag, "v=0\r\ntheir answer\r\n");
    let applied = h.take(|c| matches!(c, MediaCommand::ApplyAnswer { .. }));
    assert_eq!(
        applied,
        vec![MediaCommand::ApplyAnswer {
            call: call.clone(),
            answer: "v=0\r\ntheir answer\r\n".into()
        }]
    );
    // An unusable answer ends the call.
    h.media_event(MediaEvent::AnswerApplied {
        call: call.clone(),
        result: Err(Refused::new(Refusal::InvalidSdp, "bad")),
    });
    assert_eq!(h.requests(Method::Bye).len(), 1);
    assert_eq!(h.hangups(), vec![(call, EndReason::AnswerFailed)]);
}

#[test]
fn an_api_call_is_answered_and_its_delete_needs_no_sip() {
    let mut h = H::new(Route::Demo, 10);
    h.cc.handle_api(
        h.now,
        ApiRequest::Create {
            token: ApiToken(1),
            offer: WEBRTC_OFFER.into(),
            to: None,
        },
    );
    h.drain();
    let (call, ..) = h.created_call();
    h.media_event(MediaEvent::Created {
        call: call.clone(),
        result: created(ANSWER, None),
    });
    let (token, r) = h.replies.pop().unwrap();
    assert_eq!(token, ApiToken(1));
    assert_eq!(
        r.unwrap(),
        ApiCall {
            call: call.clone(),
            answer: ANSWER.into()
        }
    );
    // DELETE reaches the media side first; its end notice finds no dialog.
    h.media_event(MediaEvent::Ended {
        call,
        reason: EndReason::Delete,
    });
    assert!(h.sip.iter().all(|m| matches!(m, Message::Response(_))));
    assert!(h.cc.is_idle());
}

#[test]
fn a_plain_rtp_caller_is_bridged_to_a_webrtc_callee() {
    let mut h = H::new(bridge(), 10);
    h.invite("z9hG4bKinv", Some(PLAIN_OFFER), "");
    let (call, plan, kind) = h.created_call();
    assert_eq!(
        (plan, kind),
        (Plan::Bridge(FarLeg::default()), Some(LegKind::Legacy))
    );
    h.media_event(MediaEvent::Created {
        call: call.clone(),
        result: created(ANSWER, Some(WEBRTC_OFFER)),
    });
    let inv = h.requests(Method::Invite).remove(0);
    assert_eq!(inv.body, WEBRTC_OFFER.as_bytes());
    // The callee's answer is one the media side cannot use: 488 to the
    // caller, BYE to the callee, the media dropped.
    h.callee_responds(200, Some(WEBRTC_OFFER));
    h.take(|c| matches!(c, MediaCommand::CompleteBridge { .. }));
    h.media_event(MediaEvent::BridgeUp {
        call: call.clone(),
        early: false,
        result: Err(Refused::new(Refusal::InvalidSdp, "bad answer")),
    });
    assert_eq!(h.responses(488).len(), 1);
    assert_eq!(h.requests(Method::Bye).len(), 1, "the callee's dialog ends");
    assert_eq!(h.hangups(), vec![(call, EndReason::FarAnswerUnusable)]);
}

// ---- ng: Kamailio's rtpengine module driving calls ------------------------

/// An ng offer or answer as Kamailio sends it for `call-id` "ng-1".
fn ng(sdp: &str, from: &str, to: Option<&str>, transport: &str) -> OfferAnswer {
    OfferAnswer {
        call_id: "ng-1".into(),
        from_tag: from.into(),
        to_tag: to.map(str::to_string),
        sdp: sdp.into(),
        transport: Some(transport.into()),
        ..Default::default()
    }
}

impl H {
    fn ng_request(&mut self, token: u64, req: rtcgw_control::NgRequest) {
        self.cc.handle_ng(self.now, ApiToken(token), req);
        self.drain();
    }

    /// The reply to request `token`: its SDP, or its error reason.
    fn ng_reply(&mut self, token: u64) -> Result<String, String> {
        let i = self
            .ng
            .iter()
            .position(|(t, _)| *t == ApiToken(token))
            .unwrap_or_else(|| panic!("no reply to {token}: {:?}", self.ng));
        let (_, r) = self.ng.remove(i);
        let bytes = r.encode(b"c");
        let (d, _) = rtcgw_proto::ng::Bencode::decode(&bytes[2..]).unwrap();
        let text = |k: &str| d.get(k).and_then(|v| v.as_text());
        match text("result").as_deref() {
            Some("ok") => Ok(text("sdp").unwrap_or_default()),
            _ => Err(text("error-reason").unwrap_or_default()),
        }
    }
}

/// A WebRTC caller's offer through Kamailio, answered by a plain-RTP
/// callee: our plain offer goes to the callee, our WebRTC answer to the
/// caller; the 200 after a 183 gets the same answer; delete ends it.
#[test]
fn ng_offer_answer_and_delete_bridge_a_webrtc_caller_to_a_plain_callee() {
    use rtcgw_control::NgRequest::*;
    let mut h = H::new(Route::Demo, 10);
    let mut offer = ng(WEBRTC_OFFER, "caller", None, "RTP/AVP");
    offer.codec.transcode = vec!["PCMA".into()];
    h.ng_request(1, Offer(offer));
    let (call, plan, kind) = h.created_call();
    assert_eq!(kind, Some(LegKind::Webrtc));
    let Plan::Bridge(far) = plan else {
        panic!("a bridge")
    };
    assert_eq!(far.codecs, vec![rtcgw_proto::sdp::legacy::CodecName::Pcma]);
    assert!(h.ng.is_empty(), "the reply waits for the media");
    h.media_event(MediaEvent::Created {
        call: call.clone(),
        result: created(ANSWER, Some(PLAIN_OFFER)),
    });
    assert_eq!(h.ng_reply(1), Ok(PLAIN_OFFER.into()));
    // Kamailio's answer for the callee's 183, then for its 200.
    h.ng_request(
        2,
        Answer(ng(
            PLAIN_OFFER,
            "caller",
            Some("callee"),
            "UDP/TLS/RTP/SAVPF",
        )),
    );
    assert_eq!(
        h.take(|c| matches!(c, MediaCommand::CompleteBridge { .. }))
            .len(),
        1
    );
    h.media_event(MediaEvent::BridgeUp {
        call: call.clone(),
        early: false,
        result: Ok(()),
    });
    assert_eq!(h.ng_reply(2), Ok(ANSWER.into()));
    h.ng_request(
        3,
        Answer(ng(
            PLAIN_OFFER,
            "caller",
            Some("callee"),
            "UDP/TLS/RTP/SAVPF",
        )),
    );
    assert_eq!(h.ng_reply(3), Ok(ANSWER.into()));
    assert!(h.media.is_empty(), "the bridge is made once");
    assert!(h.sip.is_empty(), "ng calls send no SIP");
    let info = h.cc.ng_call("ng-1").unwrap();
    assert_eq!(
        (info.offerer.as_str(), info.answerer.as_deref()),
        ("caller", Some("callee"))
    );
    assert_eq!(h.cc.ng_call_ids(10), vec!["ng-1"]);
    h.ng_request(
        4,
        Delete(NgDelete {
            call_id: "ng-1".into(),
            from_tag: Some("caller".into()),
            ..Default::default()
        }),
    );
    assert_eq!(h.ng_reply(4), Ok(String::new()));
    assert_eq!(h.hangups(), vec![(call, EndReason::Delete)]);
    assert!(h.cc.is_idle() && h.cc.ng_call("ng-1").is_none());
}

#[test]
fn ng_refusals_are_rtpengines() {
    use rtcgw_control::NgRequest::*;
    let mut h = H::new(Route::Demo, 1);
    // Both sides plain RTP: not a call rtcgw can make.
    h.ng_request(1, Offer(ng(PLAIN_OFFER, "a", None, "RTP/AVP")));
    assert!(
        h.ng_reply(1)
            .unwrap_err()
            .contains("both sides would be legacy")
    );
    // An answer or a delete for a call that is not there.
    h.ng_request(2, Answer(ng(PLAIN_OFFER, "a", Some("b"), "RTP/AVP")));
    assert_eq!(h.ng_reply(2), Err("Unknown call-id".into()));
    let unknown = |fatal| NgDelete {
        call_id: "nope".into(),
        fatal,
        ..Default::default()
    };
    h.ng_request(3, Delete(unknown(false)));
    assert_eq!(h.ng_reply(3), Ok(String::new()), "ok, with a warning");
    h.ng_request(4, Delete(unknown(true)));
    assert_eq!(
        h.ng_reply(4),
        Err("Call-ID not found or tags didn't match".into())
    );
    // SDP that is not SDP, and a full gateway (max_calls = 1).
    h.ng_request(5, Offer(ng("v=0\r\nrubbish\r\n", "a", None, "RTP/AVP")));
    assert!(
        h.ng_reply(5)
            .unwrap_err()
            .starts_with("Failed to parse SDP")
    );
    h.ng_request(6, Offer(ng(PLAIN_OFFER, "a", None, "UDP/TLS/RTP/SAVPF")));
    let mut second = ng(PLAIN_OFFER, "x", None, "UDP/TLS/RTP/SAVPF");
    second.call_id = "ng-2".into();
    h.ng_request(7, Offer(second));
    assert_eq!(h.ng_reply(7), Err("Parallel session limit reached".into()));
    assert!(h.metrics.refused(Refusal::Capacity) == 1);
}

/// Parallel forking: the same offer goes to every branch; the first
/// answer wins, a later one is answered but not applied, and deleting the
/// losing branch leaves the call.
#[test]
fn ng_forked_offers_first_answer_wins() {
    use rtcgw_control::NgRequest::*;
    let mut h = H::new(Route::Demo, 10);
    let branch = |b: &str| {
        let mut o = ng(PLAIN_OFFER, "caller", None, "UDP/TLS/RTP/SAVPF");
        o.via_branch = Some(b.into());
        o
    };
    h.ng_request(1, Offer(branch("z9hG4bK.1")));
    h.ng_request(2, Offer(branch("z9hG4bK.2")));
    let (call, _, kind) = h.created_call();
    assert_eq!(
        kind,
        Some(LegKind::Legacy),
        "a plain caller, a WebRTC far side"
    );
    h.media_event(MediaEvent::Created {
        call: call.clone(),
        result: created(ANSWER, Some(WEBRTC_OFFER)),
    });
    assert_eq!(h.ng_reply(1), Ok(WEBRTC_OFFER.into()));
    assert_eq!(h.ng_reply(2), Ok(WEBRTC_OFFER.into()));
    h.ng_request(
        3,
        Answer(ng(WEBRTC_OFFER, "caller", Some("bob-1"), "RTP/AVP")),
    );
    h.ng_request(
        4,
        Answer(ng(WEBRTC_OFFER, "caller", Some("bob-2"), "RTP/AVP")),
    );
    assert_eq!(
        h.take(|c| matches!(c, MediaCommand::CompleteBridge { .. }))
            .len(),
        1
    );
    h.media_event(MediaEvent::BridgeUp {
        call: call.clone(),
        early: false,
        result: Ok(()),
    });
    assert_eq!(h.ng_reply(3), Ok(ANSWER.into()));
    assert_eq!(
        h.ng_reply(4),
        Ok(ANSWER.into()),
        "the other branch gets ours; a WebRTC far leg keeps its first answer"
    );
    assert!(h.media.is_empty(), "nothing applied for the other branch");
    let del = |to: Option<&str>| NgDelete {
        call_id: "ng-1".into(),
        from_tag: Some("caller".into()),
        to_tag: to.map(str::to_string),
        ..Default::default()
    };
    h.ng_request(5, Delete(del(Some("bob-2"))));
    assert_eq!(h.ng_reply(5), Ok(String::new()));
    assert!(h.hangups().is_empty(), "the losing branch only");
    h.ng_request(6, Delete(del(None)));
    assert_eq!(h.hangups(), vec![(call, EndReason::Delete)]);
}

/// An ng call answered (offer 1, answer 2 from "callee") with its bridge
/// up and the replies so far taken: the call id.
fn ng_call_up(h: &mut H) -> CallId {
    use rtcgw_control::NgRequest::*;
    h.ng_request(1, Offer(ng(WEBRTC_OFFER, "caller", None, "RTP/AVP")));
    let (call, ..) = h.created_call();
    h.media_event(MediaEvent::Created {
        call: call.clone(),
        result: created(ANSWER, Some(PLAIN_OFFER)),
    });
    h.ng_request(
        2,
        Answer(ng(
            PLAIN_OFFER,
            "caller",
            Some("callee"),
            "UDP/TLS/RTP/SAVPF",
        )),
    );
    h.take(|c| matches!(c, MediaCommand::CompleteBridge { .. }));
    h.media_event(MediaEvent::BridgeUp {
        call: call.clone(),
        early: false,
        result: Ok(()),
    });
    h.ng.clear();
    call
}

/// A re-offer (hold) from the callee of an answered call: its leg answers
/// it; the caller's side gets our SDP again, unchanged, and the caller's
/// answer gets our answer to the callee.
#[test]
fn ng_re_offer_from_the_callee_goes_to_its_leg() {
    use rtcgw_control::NgRequest::*;
    let mut h = H::new(Route::Demo, 10);
    let call = ng_call_up(&mut h);
    // The callee (the answerer) puts the call on hold.
    let hold = PLAIN_OFFER.replace("o=pbx 7 7", "o=pbx 7 8") + "a=sendonly\r\n";
    h.ng_request(
        3,
        Offer(ng(&hold, "callee", Some("caller"), "UDP/TLS/RTP/SAVPF")),
    );
    let re = h.take(|c| matches!(c, MediaCommand::Reoffer { .. }));
    let MediaCommand::Reoffer { from, offer, .. } = re[0].clone() else {
        panic!()
    };
    assert_eq!(offer.kind(), LegKind::Legacy, "the callee's plain leg");
    h.media_event(MediaEvent::Reanswered {
        call: call.clone(),
        from,
        result: Ok("v=0\r\nrecvonly answer\r\n".into()),
    });
    let to_caller = h.ng_reply(3).unwrap();
    assert_eq!(to_caller, ANSWER, "our SDP to the caller, unchanged");
    // The caller's answer to that: the callee gets our answer to its hold.
    h.ng_request(
        4,
        Answer(ng(WEBRTC_OFFER, "callee", Some("caller"), "RTP/AVP")),
    );
    assert_eq!(h.ng_reply(4), Ok("v=0\r\nrecvonly answer\r\n".into()));
    assert!(h.media.is_empty());
}

/// A WebRTC caller forked to two plain RTP branches: early media from the
/// first, the 200 from the second. The newest answer is the far side's
/// media (as rtpengine has it): the plain leg follows the second branch.
/// The winner's BYE, sent with Kamailio's `to-tag` flag (to-tag = the
/// caller's tag), ends the call.
#[test]
fn ng_a_later_branch_answer_takes_the_plain_leg() {
    use rtcgw_control::NgRequest::*;
    let mut h = H::new(Route::Demo, 10);
    let branch = |b: &str| {
        let mut o = ng(WEBRTC_OFFER, "caller", None, "RTP/AVP");
        o.via_branch = Some(b.into());
        o
    };
    h.ng_request(1, Offer(branch("z9hG4bK.1")));
    h.ng_request(2, Offer(branch("z9hG4bK.2")));
    let (call, ..) = h.created_call();
    h.media_event(MediaEvent::Created {
        call: call.clone(),
        result: created(ANSWER, Some(PLAIN_OFFER)),
    });
    assert_eq!(h.ng_reply(1), Ok(PLAIN_OFFER.into()));
    assert_eq!(h.ng_reply(2), Ok(PLAIN_OFFER.into()));
    // A branch asking for a WebRTC leg cannot join this call.
    let mut webrtc_branch = branch("z9hG4bK.3");
    webrtc_branch.transport = Some("UDP/TLS/RTP/SAVPF".into());
    h.ng_request(9, Offer(webrtc_branch));
    assert!(h.ng_reply(9).unwrap_err().contains("cannot fork"));
    // The first branch's 183 with SDP.
    let first = PLAIN_OFFER.to_string();
    h.ng_request(
        3,
        Answer(ng(&first, "caller", Some("bob-1"), "UDP/TLS/RTP/SAVPF")),
    );
    assert_eq!(
        h.take(|c| matches!(c, MediaCommand::CompleteBridge { .. }))
            .len(),
        1
    );
    // The second branch's 200 arrives while the bridge comes up.
    let second = PLAIN_OFFER.replace("192.0.2.10", "192.0.2.20");
    h.ng_request(
        4,
        Answer(ng(&second, "caller", Some("bob-2"), "UDP/TLS/RTP/SAVPF")),
    );
    assert!(h.media.is_empty(), "applied once the bridge is up");
    h.media_event(MediaEvent::BridgeUp {
        call: call.clone(),
        early: false,
        result: Ok(()),
    });
    assert_eq!(h.ng_reply(3), Ok(ANSWER.into()));
    assert_eq!(h.ng_reply(4), Ok(ANSWER.into()));
    let re = h.take(|c| matches!(c, MediaCommand::Reoffer { .. }));
    assert_eq!(re.len(), 1, "{re:?}");
    let MediaCommand::Reoffer { from, offer, .. } = re[0].clone() else {
        panic!()
    };
    assert_eq!(from, ReofferFrom::NgAnswer);
    assert_eq!(offer.kind(), LegKind::Legacy);
    assert_eq!(
        h.cc.ng_call("ng-1").unwrap().answerer.as_deref(),
        Some("bob-2")
    );
    // Its 200 again (the same SDP): nothing more to apply.
    h.media_event(MediaEvent::Reanswered {
        call: call.clone(),
        from,
        result: Ok("v=0\r\n".into()),
    });
    h.ng_request(
        5,
        Answer(ng(&second, "caller", Some("bob-2"), "UDP/TLS/RTP/SAVPF")),
    );
    assert_eq!(h.ng_reply(5), Ok(ANSWER.into()));
    assert!(h.media.is_empty());
    // The first branch's delete (its CANCEL) leaves the call.
    h.ng_request(
        6,
        Delete(NgDelete {
            call_id: "ng-1".into(),
            from_tag: Some("caller".into()),
            to_tag: Some("bob-1".into()),
            ..Default::default()
        }),
    );
    assert!(h.hangups().is_empty());
    // The callee's BYE: from-tag bob-2, to-tag the caller's.
    h.ng_request(
        7,
        Delete(NgDelete {
            call_id: "ng-1".into(),
            from_tag: Some("bob-2".into()),
            to_tag: Some("caller".into()),
            ..Default::default()
        }),
    );
    assert_eq!(h.hangups(), vec![(call, EndReason::Delete)]);
}

/// Re-offers from the caller: a retransmitted one gets the same reply
/// without a second re-offer; one whose re-INVITE failed (no answer came)
/// is replaced by the next; the callee's answer with new media is applied
/// to its plain leg.
#[test]
fn ng_re_offers_retransmitted_failed_and_answered_with_new_media() {
    use rtcgw_control::NgRequest::*;
    let mut h = H::new(Route::Demo, 10);
    let call = ng_call_up(&mut h);
    let reoffer = |sdp: &str| Offer(ng(sdp, "caller", Some("callee"), "RTP/AVP"));
    let hold = WEBRTC_OFFER.replace("a=sendrecv", "a=sendonly");
    h.ng_request(3, reoffer(&hold));
    h.ng_request(4, reoffer(&hold)); // Kamailio relays a retransmission
    let re = h.take(|c| matches!(c, MediaCommand::Reoffer { .. }));
    assert_eq!(re.len(), 1, "one re-offer for both copies");
    h.media_event(MediaEvent::Reanswered {
        call: call.clone(),
        from: ReofferFrom::Ng(ApiToken(3)),
        result: Ok("v=0\r\nour recvonly\r\n".into()),
    });
    assert_eq!(h.ng_reply(3), Ok(PLAIN_OFFER.into()));
    assert_eq!(h.ng_reply(4), Ok(PLAIN_OFFER.into()));
    // The callee refused the re-INVITE (no answer comes); the caller
    // tries again with something else: taken, not "in progress".
    let resume = WEBRTC_OFFER.to_string();
    h.ng_request(5, reoffer(&resume));
    let re = h.take(|c| matches!(c, MediaCommand::Reoffer { .. }));
    assert_eq!(re.len(), 1);
    h.media_event(MediaEvent::Reanswered {
        call: call.clone(),
        from: ReofferFrom::Ng(ApiToken(5)),
        result: Ok("v=0\r\nour sendrecv\r\n".into()),
    });
    assert_eq!(h.ng_reply(5), Ok(PLAIN_OFFER.into()));
    // The callee answers from a new port: the caller gets our answer, the
    // plain leg gets the callee's new media.
    let moved = PLAIN_OFFER.replace("m=audio 4000", "m=audio 4100");
    assert_ne!(moved, PLAIN_OFFER);
    h.ng_request(
        6,
        Answer(ng(&moved, "caller", Some("callee"), "UDP/TLS/RTP/SAVPF")),
    );
    assert_eq!(h.ng_reply(6), Ok("v=0\r\nour sendrecv\r\n".into()));
    let re = h.take(|c| matches!(c, MediaCommand::Reoffer { .. }));
    assert_eq!(re.len(), 1);
    assert!(matches!(
        re[0],
        MediaCommand::Reoffer {
            from: ReofferFrom::NgAnswer,
            ..
        }
    ));
}

/// An API call bridged to SIP (WHIP-to-SIP): the offer, the outbound
/// INVITE; the call id.
fn api_call_ringing(h: &mut H, to: &str) -> CallId {
    h.cc.handle_api(
        h.now,
        ApiRequest::Create {
            token: ApiToken(7),
            offer: WEBRTC_OFFER.into(),
            to: Some(to.into()),
        },
    );
    h.drain();
    let call = far_leg_invited(h);
    assert!(h.replies.is_empty(), "no answer before the callee's");
    call
}

#[test]
fn an_api_call_to_sip_is_answered_when_the_callee_answers() {
    let mut h = H::new(bridge(), 10);
    let call = api_call_ringing(&mut h, "+4930123");
    let inv = h.requests(Method::Invite).remove(0);
    assert_eq!(inv.uri, format!("sip:+4930123@{SWITCH}"));
    assert!(inv.headers.get("From").unwrap().contains("sip:rtcgw@"));
    // Ringing and early media reach nobody: HTTP has one answer.
    h.callee_responds(180, None);
    assert!(h.replies.is_empty());
    h.callee_responds(200, Some(PLAIN_OFFER));
    let done = h.take(|c| matches!(c, MediaCommand::CompleteBridge { early: false, .. }));
    assert_eq!(done.len(), 1);
    assert!(h.replies.is_empty(), "not before the bridge is up");
    h.media_event(MediaEvent::BridgeUp {
        call: call.clone(),
        early: false,
        result: Ok(()),
    });
    let (token, r) = h.replies.pop().unwrap();
    assert_eq!(token, ApiToken(7));
    assert_eq!(
        r.unwrap(),
        ApiCall {
            call: call.clone(),
            answer: ANSWER.into()
        }
    );
    // A BYE from the callee ends the WebRTC leg too.
    h.callee_request("BYE", ("", ""));
    assert_eq!(h.hangups(), vec![(call, EndReason::Bye(Party::Callee))]);
    assert!(h.cc.is_idle());
    assert!(h.replies.is_empty(), "one answer only");

    // A whole SIP URI is the Request-URI as it is.
    let mut h = H::new(bridge(), 10);
    api_call_ringing(&mut h, "sip:carol@192.0.2.7:5070;transport=tcp");
    let inv = h.requests(Method::Invite).remove(0);
    assert_eq!(inv.uri, "sip:carol@192.0.2.7:5070;transport=tcp");
}

#[test]
fn an_api_call_to_sip_refused_or_unanswered_gets_an_http_status() {
    for (sip, http) in [(486, 409), (404, 404), (603, 403), (480, 504), (488, 502)] {
        let mut h = H::new(bridge(), 10);
        let call = api_call_ringing(&mut h, "bob");
        h.callee_responds(sip, None);
        let (_, r) = h.replies.pop().unwrap();
        let r = r.unwrap_err();
        assert_eq!((r.http_status(), r.callee.as_ref().unwrap().0), (http, sip));
        assert_eq!(h.hangups(), vec![(call, EndReason::CalleeRefused(sip))]);
        assert!(h.cc.is_idle());
    }
    // Nobody answers: CANCEL after the ring timeout, 504.
    let mut h = H::new(bridge(), 10);
    let call = api_call_ringing(&mut h, "bob");
    h.callee_responds(180, None);
    h.advance(Duration::from_secs(59));
    assert!(h.requests(Method::Cancel).is_empty(), "{:?}", h.replies);
    assert!(h.replies.is_empty(), "{:?}", h.replies);
    h.advance(Duration::from_secs(2));
    assert!(
        !h.requests(Method::Cancel).is_empty(),
        "CANCEL (and its retransmissions)"
    );
    let (_, r) = h.replies.pop().unwrap();
    assert_eq!(r.unwrap_err().kind, Refusal::NoAnswer);
    assert_eq!(h.hangups(), vec![(call, EndReason::NoAnswer)]);
    // The HTTP client leaves while it rings: CANCEL.
    let mut h = H::new(bridge(), 10);
    let call = api_call_ringing(&mut h, "bob");
    h.callee_responds(180, None);
    h.cc.handle_api(h.now, ApiRequest::Abandon { token: ApiToken(7) });
    h.drain();
    assert_eq!(h.requests(Method::Cancel).len(), 1);
    assert_eq!(h.hangups(), vec![(call, EndReason::CallerGone)]);
    // The callee never answers the CANCEL nor the INVITE: the INVITE is
    // given up 64*T1 after the CANCEL (RFC 3261 9.1), nothing is left.
    assert_eq!(h.cc.ua().dialogs(), 1);
    h.advance(Duration::from_secs(33));
    assert_eq!(h.cc.ua().dialogs(), 0, "no dialog left behind");
}

#[test]
fn an_api_target_must_be_a_user_or_a_sip_uri_and_needs_a_bridge() {
    for (route, to) in [
        (bridge(), "bob\r\nVia: x"),
        (bridge(), "bob smith"),
        (bridge(), "<sip:bob@x>"),
        (bridge(), "sip:bob@x?Route=%3Csip:evil%3E"),
        (bridge(), ""),
        (Route::Demo, "bob"),
    ] {
        let mut h = H::new(route, 10);
        h.cc.handle_api(
            h.now,
            ApiRequest::Create {
                token: ApiToken(1),
                offer: WEBRTC_OFFER.into(),
                to: Some(to.into()),
            },
        );
        h.drain();
        let (_, r) = h.replies.pop().unwrap();
        let r = r.unwrap_err();
        assert_eq!(
            (r.kind, r.http_status()),
            (Refusal::BadTarget, 400),
            "{to:?}"
        );
        assert!(h.media.is_empty() && h.sip.is_empty());
    }
}

#[test]
fn without_headroom_new_calls_and_options_get_503_while_calls_in_progress_go_on() {
    let mut h = H::new(bridge(), 10);
    let call = bridged_call_up(&mut h);
    h.cc.set_overloaded(Some("0.80% of 10 ms frames late over the last 2 s".into()));
    h.invite("z9hG4bKlate", Some(WEBRTC_OFFER), "");
    let r = h.responses(503).pop().expect("503 while overloaded");
    assert_eq!(r.headers.get("Retry-After"), Some("5"));
    assert!(
        h.take(|c| matches!(c, MediaCommand::Create { .. }))
            .is_empty()
    );
    h.options_probe("z9hG4bKopt1");
    let probe = h.responses(503).pop().expect("OPTIONS 503");
    assert_eq!(probe.headers.get("CSeq"), Some("1 OPTIONS"));
    assert_eq!(probe.headers.get("Retry-After"), Some("5"));
    h.cc.handle_api(
        h.now,
        ApiRequest::Create {
            token: ApiToken(9),
            offer: WEBRTC_OFFER.into(),
            to: None,
        },
    );
    h.drain();
    let (_, r) = h.replies.pop().unwrap();
    let r = r.unwrap_err();
    assert_eq!(r.kind, Refusal::Overloaded);
    assert!(r.detail.contains("frames late"), "{}", r.detail);
    assert_eq!(h.metrics.refused(Refusal::Overloaded), 2);
    assert_eq!(h.cc.calls(), 1, "the call in progress goes on");
    assert!(h.hangups().is_empty());
    assert!(!h.cc.may_exit(), "overload is not a drain");

    // Headroom back: calls and OPTIONS are welcome again.
    h.cc.set_overloaded(None);
    h.options_probe("z9hG4bKopt2");
    assert_eq!(
        h.responses(200)
            .iter()
            .filter(|r| r.headers.get("CSeq") == Some("1 OPTIONS"))
            .count(),
        1
    );
    h.invite("z9hG4bKnext", Some(WEBRTC_OFFER), "");
    let (next, ..) = h.created_call();
    assert_ne!(next, call);
}
