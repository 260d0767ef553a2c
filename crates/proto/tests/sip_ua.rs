//! The SIP user agent core in memory with virtual time: what a softswitch
//! sees when it calls rtcgw (RFC 3261 sections 13 and 15, 9.2).

use std::time::{Duration, Instant};

use rtcgw_proto::sip::message::{Message, Method, Response};
use rtcgw_proto::sip::metrics::{Rejection, SipMetrics};
use rtcgw_proto::sip::session_timer::SessionTimerConfig;
use rtcgw_proto::sip::tsx::{Peer, Timers, Transport};
use rtcgw_proto::sip::ua::{
    DialogEnd, DialogRef, NextHop, OutboundInvite, UaConfig, UaEvent, UserAgent,
};

const PEER: &str = "127.0.0.1:5070";

fn peer() -> Peer {
    Peer {
        addr: PEER.parse().unwrap(),
        transport: Transport::Udp,
    }
}

fn config() -> UaConfig {
    UaConfig {
        timers: Timers::default(),
        local: vec![(Transport::Udp, "127.0.0.1:5060".parse().unwrap())],
        allowed: vec!["127.0.0.0/8".parse().unwrap()],
        trusted: vec!["127.0.0.0/8".parse().unwrap()],
        next_hop: None,
        user_agent: "rtcgw-test".into(),
        branch_salt: 7,
        drain_retry_after_s: 30,
        session_timer: None,
    }
}

fn ua() -> UserAgent {
    UserAgent::new(config(), SipMetrics::default())
}

fn req(
    method: &str,
    branch: &str,
    cseq: u32,
    cseq_method: &str,
    to_tag: Option<&str>,
    body: &str,
) -> Vec<u8> {
    let to = to_tag.map_or(String::new(), |t| format!(";tag={t}"));
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:demo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch={branch}\r\n\
From: <sip:ss@127.0.0.1>;tag=ft\r\nTo: <sip:demo@127.0.0.1>{to}\r\nCall-ID: call-1\r\n\
CSeq: {cseq} {cseq_method}\r\nContact: <sip:ss@{PEER}>\r\nMax-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn outbound(uri: &str, sdp: String) -> OutboundInvite {
    OutboundInvite {
        uri: uri.to_string(),
        from_user: "alice".into(),
        from_display: None,
        asserted_identity: None,
        privacy: None,
        sdp,
    }
}

struct H {
    ua: UserAgent,
    start: Instant,
    now: Instant,
    out: Vec<(Duration, Message)>,
    /// Where each of `out` went.
    to: Vec<Peer>,
    events: Vec<UaEvent>,
}

impl H {
    fn new() -> Self {
        Self::with(ua())
    }
    /// A user agent with RFC 4028 session timers on (1800 s, Min-SE 90).
    fn with_timers() -> Self {
        Self::with(UserAgent::new(
            UaConfig {
                session_timer: Some(SessionTimerConfig {
                    expires: 1800,
                    min_se: 90,
                }),
                ..config()
            },
            SipMetrics::default(),
        ))
    }
    fn with(ua: UserAgent) -> Self {
        let now = Instant::now();
        Self {
            ua,
            start: now,
            now,
            out: vec![],
            to: vec![],
            events: vec![],
        }
    }
    fn drain(&mut self) {
        while let Some(o) = self.ua.poll_output() {
            self.to.push(o.peer);
            self.out
                .push((self.now - self.start, Message::parse(&o.bytes).unwrap()));
        }
        while let Some(e) = self.ua.poll_event() {
            self.events.push(e);
        }
    }
    /// An outbound INVITE to bob with a minimal offer: the call and the
    /// request as sent.
    fn call_bob(&mut self) -> (DialogRef, rtcgw_proto::sip::message::Request) {
        let uri = format!("sip:bob@{PEER}");
        let call = self
            .ua
            .invite(self.now, outbound(&uri, "v=0\r\n".into()))
            .unwrap();
        self.drain();
        (call, sent_requests(self, Method::Invite).remove(0))
    }
    fn input(&mut self, bytes: Vec<u8>) {
        self.ua.handle_input(self.now, peer(), &bytes);
        self.drain();
    }
    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.ua.poll_timeout().filter(|t| *t <= until) {
            self.now = self.now.max(t);
            self.ua.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
    }
    fn responses(&self, status: u16) -> Vec<(f64, Response)> {
        self.out
            .iter()
            .filter_map(|(t, m)| match m {
                Message::Response(r) if r.status == status => Some((t.as_secs_f64(), r.clone())),
                _ => None,
            })
            .collect()
    }
    fn invite_call(&self) -> (DialogRef, Option<String>) {
        self.events
            .iter()
            .find_map(|e| match e {
                UaEvent::Invite {
                    dialog: call,
                    offer,
                    ..
                } => Some((*call, offer.clone())),
                _ => None,
            })
            .expect("Invite event")
    }
    fn to_tag(&self) -> String {
        let (_, ok) = self.responses(200).into_iter().next().expect("200");
        ok.core().unwrap().to.tag().unwrap().to_string()
    }
}

#[test]
fn ok_is_retransmitted_until_the_ack() {
    let mut h = H::new();
    h.input(req("INVITE", "z9hG4bK1", 1, "INVITE", None, "v=0\r\n"));
    assert_eq!(h.responses(100).len(), 1);
    let (call, offer) = h.invite_call();
    assert_eq!(offer.as_deref(), Some("v=0\r\n"));
    assert!(h.ua.answer(h.now, call, "v=0\r\nanswer\r\n".into()));
    h.drain();
    h.advance(Duration::from_millis(3600));
    let times: Vec<f64> = h.responses(200).iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![0.0, 0.5, 1.5, 3.5], "200 at T1 doubling");
    let tag = h.to_tag();
    h.input(req("ACK", "z9hG4bK2", 1, "ACK", Some(&tag), ""));
    h.advance(Duration::from_secs(60));
    assert_eq!(
        h.responses(200).len(),
        4,
        "the ACK stopped the retransmissions"
    );
    assert!(!h.events.iter().any(|e| matches!(e, UaEvent::Ended { .. })));
    // BYE from the softswitch ends the call.
    h.input(req("BYE", "z9hG4bK3", 2, "BYE", Some(&tag), ""));
    assert!(h.events.iter().any(
        |e| matches!(e, UaEvent::Ended { dialog: c, why } if *c == call && *why == DialogEnd::Bye)
    ));
    assert_eq!(h.responses(200).len(), 5);
    assert_eq!(h.ua.dialogs(), 0);
}

#[test]
fn no_ack_within_64_t1_ends_the_call_with_bye() {
    let mut h = H::new();
    h.input(req("INVITE", "z9hG4bK1", 1, "INVITE", None, "v=0\r\n"));
    let (call, _) = h.invite_call();
    h.ua.answer(h.now, call, "v=0\r\n".into());
    h.drain();
    h.advance(Duration::from_secs(33));
    assert!(h.events.iter().any(|e| matches!(
        e,
        UaEvent::Ended {
            why: DialogEnd::NoAck,
            ..
        }
    )));
    let bye = h.out.iter().find_map(|(t, m)| match m {
        Message::Request(r) if r.method == Method::Bye => Some((*t, r.clone())),
        _ => None,
    });
    let (t, bye) = bye.expect("BYE sent");
    assert_eq!(t, Duration::from_secs(32));
    let c = bye.core().unwrap();
    assert_eq!(c.to.tag(), Some("ft"), "BYE goes to the caller's tag");
    assert_eq!(
        bye.uri,
        format!("sip:ss@{PEER}"),
        "to the remote target (Contact)"
    );
    assert!(c.cseq > 1);
}

#[test]
fn cancel_before_the_answer_gives_487_and_a_late_answer_is_refused() {
    let mut h = H::new();
    h.input(req("INVITE", "z9hG4bKc", 1, "INVITE", None, "v=0\r\n"));
    let (call, _) = h.invite_call();
    h.input(req("CANCEL", "z9hG4bKc", 1, "CANCEL", None, ""));
    assert_eq!(h.responses(200).len(), 1, "200 for the CANCEL");
    assert_eq!(h.responses(487).len(), 1, "487 for the INVITE");
    assert!(h.events.iter().any(|e| matches!(
        e,
        UaEvent::Ended {
            why: DialogEnd::Cancel,
            ..
        }
    )));
    assert!(
        !h.ua.answer(h.now, call, "v=0\r\n".into()),
        "the gateway learns the call is gone"
    );
    // The 487 is retransmitted until the ACK.
    h.advance(Duration::from_secs(1));
    assert!(h.responses(487).len() >= 2);
    let tag = h.responses(487)[0]
        .1
        .core()
        .unwrap()
        .to
        .tag()
        .unwrap()
        .to_string();
    h.input(req("ACK", "z9hG4bKc", 1, "ACK", Some(&tag), ""));
    let n = h.responses(487).len();
    h.advance(Duration::from_secs(40));
    assert_eq!(h.responses(487).len(), n);
    assert_eq!(h.ua.transactions(), 0);
}

#[test]
fn cancel_racing_the_200_loses_and_the_call_goes_on() {
    let mut h = H::new();
    h.input(req("INVITE", "z9hG4bKr", 1, "INVITE", None, "v=0\r\n"));
    let (call, _) = h.invite_call();
    h.ua.answer(h.now, call, "v=0\r\n".into());
    h.drain();
    h.input(req("CANCEL", "z9hG4bKr", 1, "CANCEL", None, ""));
    assert_eq!(h.responses(487).len(), 0, "no 487 after the 200");
    assert_eq!(
        h.responses(200).len(),
        2,
        "200 for the INVITE, 200 for the CANCEL"
    );
    assert!(!h.events.iter().any(|e| matches!(e, UaEvent::Ended { .. })));
    assert_eq!(h.ua.dialogs(), 1);
}

#[test]
fn late_offer_gets_the_answer_from_the_ack() {
    let mut h = H::new();
    h.input(req("INVITE", "z9hG4bKl", 1, "INVITE", None, ""));
    let (call, offer) = h.invite_call();
    assert_eq!(offer, None);
    h.ua.answer(h.now, call, "v=0\r\nour-offer\r\n".into());
    h.drain();
    let (_, ok) = h.responses(200).remove(0);
    assert_eq!(ok.body, b"v=0\r\nour-offer\r\n");
    let tag = h.to_tag();
    h.input(req(
        "ACK",
        "z9hG4bKl2",
        1,
        "ACK",
        Some(&tag),
        "v=0\r\ntheir-answer\r\n",
    ));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, UaEvent::Answer { sdp, .. } if sdp == "v=0\r\ntheir-answer\r\n"))
    );
}

#[test]
fn hangup_sends_bye_and_in_dialog_requests_are_checked() {
    let mut h = H::new();
    h.input(req("INVITE", "z9hG4bKh", 5, "INVITE", None, "v=0\r\n"));
    let (call, _) = h.invite_call();
    h.ua.answer(h.now, call, "v=0\r\n".into());
    h.drain();
    let tag = h.to_tag();
    h.input(req("ACK", "z9hG4bKh2", 5, "ACK", Some(&tag), ""));
    // An in-dialog OPTIONS with a lower CSeq is out of order: 500.
    h.input(req("OPTIONS", "z9hG4bKo", 3, "OPTIONS", Some(&tag), ""));
    assert_eq!(h.responses(500).len(), 1);
    // INFO with a higher CSeq: 200.
    h.input(req("INFO", "z9hG4bKi", 6, "INFO", Some(&tag), ""));
    assert_eq!(h.responses(200).len(), 2);
    h.ua.hangup(h.now, call);
    h.drain();
    let Some((_, Message::Request(bye))) = h.out.last().cloned() else {
        panic!("BYE")
    };
    assert_eq!(bye.method, Method::Bye);
    let c = bye.core().unwrap();
    assert_eq!(c.from.tag(), Some(tag.as_str()));
    assert_eq!(c.cseq, 6, "our CSeq space starts after the INVITE's");
    // Its 200 closes the client transaction.
    let mut ok = Response::to(&bye, 200, "OK", None);
    ok.headers.push("Content-Length", "0");
    h.input(Message::Response(ok).to_bytes());
    h.advance(Duration::from_secs(40));
    assert_eq!(h.ua.transactions(), 0);
    assert_eq!(h.ua.dialogs(), 0);
}

/// The far end's response to our INVITE.
fn answer_to(invite: &rtcgw_proto::sip::message::Request, status: u16, extra: &str) -> Vec<u8> {
    let mut r = Response::to(invite, status, "X", Some("callee"));
    for line in extra.split("\r\n").filter(|l| !l.is_empty()) {
        let (n, v) = line.split_once(": ").unwrap();
        r.headers.push(n, v);
    }
    Message::Response(r).to_bytes()
}

fn sent_requests(h: &H, method: Method) -> Vec<rtcgw_proto::sip::message::Request> {
    h.out
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Request(r) if r.method == method => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn outbound_invite_is_acked_on_2xx_and_follows_the_route_set() {
    let mut h = H::new();
    let call =
        h.ua.invite(
            h.now,
            outbound(&format!("sip:bob@{PEER}"), "v=0\r\noffer\r\n".into()),
        )
        .unwrap();
    h.drain();
    let inv = sent_requests(&h, Method::Invite).remove(0);
    assert_eq!(inv.uri, format!("sip:bob@{PEER}"));
    assert_eq!(inv.body, b"v=0\r\noffer\r\n");
    assert!(inv.core().unwrap().from.tag().is_some() && inv.core().unwrap().to.tag().is_none());
    h.input(answer_to(&inv, 180, ""));
    assert!(h.events.contains(&UaEvent::Progress {
        dialog: call,
        status: 180,
        sdp: None
    }));
    let ok = |h: &H| {
        let mut r = Response::to(&inv, 200, "OK", Some("callee"));
        r.headers.push("Contact", "<sip:bob@127.0.0.1:5090>");
        r.headers.push(
            "Record-Route",
            "<sip:proxy1@127.0.0.1:5071;lr>, <sip:proxy2@127.0.0.1:5072;lr>",
        );
        r.headers.push("Content-Type", "application/sdp");
        r.body = b"v=0\r\nanswer\r\n".to_vec();
        let _ = h;
        Message::Response(r).to_bytes()
    };
    h.input(ok(&h));
    assert!(h.events.contains(&UaEvent::Accepted {
        dialog: call,
        sdp: Some("v=0\r\nanswer\r\n".into())
    }));
    let acks = sent_requests(&h, Method::Ack);
    assert_eq!(acks.len(), 1);
    let ack = &acks[0];
    assert_eq!(ack.uri, "sip:bob@127.0.0.1:5090", "to the Contact");
    assert_eq!(
        ack.headers.list("Route"),
        vec![
            "<sip:proxy2@127.0.0.1:5072;lr>",
            "<sip:proxy1@127.0.0.1:5071;lr>"
        ],
        "reversed"
    );
    assert_ne!(
        ack.core().unwrap().via.branch(),
        inv.core().unwrap().via.branch(),
        "2xx ACK has its own branch"
    );
    assert_eq!(ack.headers.get("CSeq"), Some("1 ACK"));
    // A retransmitted 200 gets the same ACK again.
    h.input(ok(&h));
    assert_eq!(sent_requests(&h, Method::Ack).len(), 2);
    // Our hangup: BYE in the dialog.
    h.ua.hangup(h.now, call);
    h.drain();
    let bye = sent_requests(&h, Method::Bye).remove(0);
    assert_eq!(bye.core().unwrap().to.tag(), Some("callee"));
    assert_eq!(bye.core().unwrap().cseq, 2);
}

#[test]
fn outbound_invite_refused_or_unanswered_is_rejected() {
    let mut h = H::new();
    let (call, inv) = h.call_bob();
    h.input(answer_to(&inv, 486, ""));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, UaEvent::Rejected { dialog: c, status: 486, .. } if *c == call))
    );
    assert_eq!(
        sent_requests(&h, Method::Ack).len(),
        1,
        "the transaction ACKs the 486"
    );
    let silent =
        h.ua.invite(
            h.now,
            outbound(&format!("sip:carol@{PEER}"), "v=0\r\n".into()),
        )
        .unwrap();
    h.drain();
    h.advance(Duration::from_secs(33));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, UaEvent::Rejected { dialog: c, status: 408, .. } if *c == silent))
    );
    assert_eq!(h.ua.dialogs(), 0);
    // Nowhere to send it: no next hop and a host name.
    assert!(
        h.ua.invite(h.now, outbound("sip:bob@example.com", "v=0\r\n".into()))
            .is_none()
    );
}

#[test]
fn hanging_up_a_ringing_outbound_call_cancels_it() {
    let mut h = H::new();
    let (call, inv) = h.call_bob();
    h.input(answer_to(&inv, 180, ""));
    h.ua.hangup(h.now, call);
    h.drain();
    let cancel = sent_requests(&h, Method::Cancel).remove(0);
    assert_eq!(cancel.uri, inv.uri);
    assert_eq!(
        cancel.core().unwrap().via.branch(),
        inv.core().unwrap().via.branch(),
        "same branch"
    );
    assert_eq!(cancel.headers.get("CSeq"), Some("1 CANCEL"));
    assert!(cancel.core().unwrap().to.tag().is_none());
    // 200 for the CANCEL, 487 for the INVITE: ACKed, no event for the TU.
    let events = h.events.len();
    h.input(Message::Response(Response::to(&cancel, 200, "OK", Some("callee"))).to_bytes());
    h.input(answer_to(&inv, 487, ""));
    assert_eq!(sent_requests(&h, Method::Ack).len(), 1);
    assert_eq!(h.events.len(), events, "the TU already gave the call up");
    assert_eq!(h.ua.dialogs(), 0);
}

#[test]
fn a_2xx_crossing_our_cancel_is_acked_and_byed() {
    let mut h = H::new();
    let (call, inv) = h.call_bob();
    h.ua.hangup(h.now, call);
    h.drain();
    // No CANCEL before a provisional response (RFC 3261 section 9.1)...
    assert_eq!(sent_requests(&h, Method::Cancel).len(), 0);
    h.input(answer_to(&inv, 180, ""));
    // ... and at once when it comes.
    assert_eq!(sent_requests(&h, Method::Cancel).len(), 1);
    h.input(answer_to(
        &inv,
        200,
        "Contact: <sip:bob@127.0.0.1:5070>\r\n",
    ));
    assert_eq!(sent_requests(&h, Method::Ack).len(), 1);
    assert_eq!(sent_requests(&h, Method::Bye).len(), 1);
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, UaEvent::Accepted { .. }))
    );
}

/// An answered, ACKed incoming call; returns it and our To tag.
fn confirmed(h: &mut H) -> (DialogRef, String) {
    let offer = "v=0\r\no=ss 1 1 IN IP4 127.0.0.1\r\n";
    h.input(req("INVITE", "z9hG4bKc1", 1, "INVITE", None, offer));
    let (call, _) = h.invite_call();
    h.ua.answer(
        h.now,
        call,
        "v=0\r\no=rtcgw 9 9 IN IP4 127.0.0.1\r\n".into(),
    );
    h.drain();
    let tag = h.to_tag();
    h.input(req("ACK", "z9hG4bKc2", 1, "ACK", Some(&tag), ""));
    (call, tag)
}

#[test]
fn reinvite_with_a_new_offer_goes_to_the_gateway_and_its_2xx_waits_for_the_ack() {
    let mut h = H::new();
    let (call, tag) = confirmed(&mut h);
    // Same o= version: a session refresh, answered at once with our SDP.
    let same = "v=0\r\no=ss 1 1 IN IP4 127.0.0.1\r\n";
    h.input(req("INVITE", "z9hG4bKr1", 2, "INVITE", Some(&tag), same));
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, UaEvent::Reoffer { .. }))
    );
    let (_, ok) = h.responses(200).last().cloned().unwrap();
    assert!(String::from_utf8_lossy(&ok.body).contains("o=rtcgw 9 9"));
    h.input(req("ACK", "z9hG4bKr1a", 2, "ACK", Some(&tag), ""));
    // A new version (hold): a Reoffer event; a second offer meanwhile: 500
    // with Retry-After 0-10 s (RFC 3261 section 14.2).
    let hold = "v=0\r\no=ss 1 2 IN IP4 127.0.0.1\r\na=sendonly\r\n";
    h.input(req("INVITE", "z9hG4bKr2", 3, "INVITE", Some(&tag), hold));
    assert!(h.events.iter().any(
        |e| matches!(e, UaEvent::Reoffer { dialog: c, sdp } if *c == call && sdp.contains("sendonly"))
    ));
    h.input(req("INVITE", "z9hG4bKr3", 4, "INVITE", Some(&tag), hold));
    let (_, busy) = h.responses(500).last().cloned().expect("500");
    let retry: u32 = busy
        .headers
        .get("Retry-After")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry <= 10);
    assert!(h.responses(491).is_empty());
    let before = h.responses(200).len();
    h.ua.answer_reoffer(
        h.now,
        call,
        Ok("v=0\r\no=rtcgw 9 10 IN IP4 127.0.0.1\r\na=recvonly\r\n".into()),
    );
    h.drain();
    h.advance(Duration::from_millis(1600));
    let oks: Vec<_> = h.responses(200).into_iter().skip(before).collect();
    assert_eq!(
        oks.len(),
        3,
        "the re-INVITE's 200 is retransmitted until the ACK"
    );
    assert!(String::from_utf8_lossy(&oks[0].1.body).contains("a=recvonly"));
    h.input(req("ACK", "z9hG4bKr2a", 3, "ACK", Some(&tag), ""));
    h.advance(Duration::from_secs(10));
    assert_eq!(h.responses(200).len(), before + 3);
    // A refused re-offer (488) leaves the session as it was.
    let bad = "v=0\r\no=ss 1 3 IN IP4 127.0.0.1\r\n";
    h.input(req("INVITE", "z9hG4bKr4", 5, "INVITE", Some(&tag), bad));
    h.ua.answer_reoffer(h.now, call, Err((488, "Not Acceptable Here".into())));
    h.drain();
    assert_eq!(h.responses(488).len(), 1);
    assert_eq!(h.ua.dialogs(), 1);
}

#[test]
fn updates_while_an_offer_is_pending_follow_rfc_3311() {
    let mut h = H::new();
    let (call, tag) = confirmed(&mut h);
    let hold = "v=0\r\no=ss 1 2 IN IP4 127.0.0.1\r\na=sendonly\r\n";
    h.input(req("INVITE", "z9hG4bKu1", 2, "INVITE", Some(&tag), hold));
    // While the re-INVITE's offer is being answered: a refresh UPDATE (no
    // body) is answered 200; an UPDATE with an offer gets 500 Retry-After
    // (section 5.2), not 491 (that is for our own offer in flight).
    h.input(req("UPDATE", "z9hG4bKu2", 3, "UPDATE", Some(&tag), ""));
    let (_, refresh) = h
        .responses(200)
        .last()
        .cloned()
        .expect("200 to the refresh");
    assert_eq!(refresh.headers.get("CSeq"), Some("3 UPDATE"));
    assert!(refresh.body.is_empty());
    let resume = "v=0\r\no=ss 1 3 IN IP4 127.0.0.1\r\na=sendrecv\r\n";
    h.input(req("UPDATE", "z9hG4bKu3", 4, "UPDATE", Some(&tag), resume));
    let (_, busy) = h.responses(500).last().cloned().expect("500");
    assert!(busy.headers.get("Retry-After").is_some());
    assert!(h.responses(491).is_empty());
    // Answered, not yet ACKed: a re-INVITE waits (491); an UPDATE's offer
    // does not (our 200 carried an answer, not an offer).
    h.ua.answer_reoffer(
        h.now,
        call,
        Ok("v=0\r\no=rtcgw 9 10 IN IP4 127.0.0.1\r\na=recvonly\r\n".into()),
    );
    h.drain();
    h.input(req("INVITE", "z9hG4bKu4", 5, "INVITE", Some(&tag), resume));
    assert_eq!(h.responses(491).len(), 1);
    let reoffers = |h: &H| {
        h.events
            .iter()
            .filter(|e| matches!(e, UaEvent::Reoffer { .. }))
            .count()
    };
    let before = reoffers(&h);
    h.input(req("UPDATE", "z9hG4bKu5", 6, "UPDATE", Some(&tag), resume));
    assert_eq!(
        reoffers(&h),
        before + 1,
        "the UPDATE's offer goes to the gateway"
    );
    h.ua.answer_reoffer(
        h.now,
        call,
        Ok("v=0\r\no=rtcgw 9 11 IN IP4 127.0.0.1\r\na=sendrecv\r\n".into()),
    );
    h.drain();
    let (_, ok) = h.responses(200).last().cloned().unwrap();
    assert_eq!(ok.headers.get("CSeq"), Some("6 UPDATE"));
    assert!(String::from_utf8_lossy(&ok.body).contains("a=sendrecv"));
}

#[test]
fn an_update_offer_crossing_our_offer_in_a_2xx_gets_491() {
    let mut h = H::new();
    let (call, tag) = confirmed(&mut h);
    // A re-INVITE without SDP: our 200 carries our SDP as an offer, its
    // answer comes in the ACK; an UPDATE's offer meanwhile is glare.
    h.input(req("INVITE", "z9hG4bKg1", 2, "INVITE", Some(&tag), ""));
    let (_, ok) = h.responses(200).last().cloned().unwrap();
    assert!(String::from_utf8_lossy(&ok.body).contains("o=rtcgw 9 9"));
    let hold = "v=0\r\no=ss 1 2 IN IP4 127.0.0.1\r\na=sendonly\r\n";
    h.input(req("UPDATE", "z9hG4bKg2", 3, "UPDATE", Some(&tag), hold));
    assert_eq!(h.responses(491).len(), 1);
    let answer = "v=0\r\no=ss 1 1 IN IP4 127.0.0.1\r\n";
    h.input(req("ACK", "z9hG4bKg1a", 2, "ACK", Some(&tag), answer));
    // After the ACK the peer's retry goes through.
    h.input(req("UPDATE", "z9hG4bKg3", 4, "UPDATE", Some(&tag), hold));
    assert!(h.events.iter().any(
        |e| matches!(e, UaEvent::Reoffer { dialog: c, sdp } if *c == call && sdp.contains("sendonly"))
    ));
    assert_eq!(h.ua.dialogs(), 1);
}

#[test]
fn info_carries_dtmf_and_other_bodies_get_415() {
    let mut h = H::new();
    let (call, tag) = confirmed(&mut h);
    let info = |branch: &str, cseq: u32, ctype: &str, body: &str| {
        String::from_utf8(req("INFO", branch, cseq, "INFO", Some(&tag), body))
            .unwrap()
            .replace("application/sdp", ctype)
            .into_bytes()
    };
    h.input(info(
        "z9hG4bKi1",
        2,
        "application/dtmf-relay",
        "Signal=5\r\nDuration=120\r\n",
    ));
    h.input(info("z9hG4bKi2", 3, "application/dtmf", "#"));
    let digits: Vec<_> = h
        .events
        .iter()
        .filter_map(|e| match e {
            UaEvent::Dtmf {
                dialog: c,
                digit,
                duration_ms,
            } if *c == call => Some((*digit, *duration_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(digits, vec![('5', 120), ('#', 160)]);
    h.input(info("z9hG4bKi3", 4, "application/xml", "<x/>"));
    let (_, r415) = h.responses(415).pop().expect("415");
    assert!(
        r415.headers
            .get("Accept")
            .unwrap()
            .contains("application/dtmf-relay")
    );
    h.input(info("z9hG4bKi4", 5, "application/dtmf-relay", "Signal=Q"));
    assert_eq!(h.responses(400).len(), 1);
    assert_eq!(h.ua.metrics().rejected(Rejection::InfoMalformed), 1);
}

/// Requests sent, retransmissions counted once.
fn distinct(h: &H, method: Method) -> usize {
    let mut cseqs: Vec<u32> = sent_requests(h, method)
        .iter()
        .map(|r| r.core().unwrap().cseq)
        .collect();
    cseqs.dedup();
    cseqs.len()
}

/// An INVITE with session timer headers.
fn invite_with(extra: &str) -> Vec<u8> {
    String::from_utf8(req("INVITE", "z9hG4bKst", 1, "INVITE", None, "v=0\r\n"))
        .unwrap()
        .replacen(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\n{extra}"),
            1,
        )
        .into_bytes()
}

#[test]
fn session_timer_too_small_gets_422_with_min_se() {
    let mut h = H::with_timers();
    h.input(invite_with("Session-Expires: 60\r\n"));
    let (_, r) = h.responses(422).pop().expect("422");
    assert_eq!(r.headers.get("Min-SE"), Some("90"));
    assert_eq!(h.ua.dialogs(), 0);
    // Timers off: the same INVITE is just a call.
    let mut h = H::new();
    h.input(invite_with("Session-Expires: 60\r\n"));
    assert!(h.responses(422).is_empty());
    assert_eq!(h.ua.dialogs(), 1);
}

#[test]
fn caller_refreshes_and_a_missing_refresh_ends_the_call() {
    let mut h = H::with_timers();
    h.input(invite_with("Supported: timer\r\nSession-Expires: 120\r\n"));
    let (call, _) = h.invite_call();
    h.ua.answer(
        h.now,
        call,
        "v=0\r\no=rtcgw 1 1 IN IP4 127.0.0.1\r\n".into(),
    );
    h.drain();
    let (_, ok) = h.responses(200).pop().unwrap();
    assert_eq!(ok.headers.get("Session-Expires"), Some("120;refresher=uac"));
    assert_eq!(ok.headers.get("Require"), Some("timer"));
    let tag = h.to_tag();
    h.input(req("ACK", "z9hG4bKsta", 1, "ACK", Some(&tag), ""));
    // A refresh at 60 s (UPDATE without SDP) moves the deadline.
    h.advance(Duration::from_secs(60));
    h.input(req("UPDATE", "z9hG4bKstu", 2, "UPDATE", Some(&tag), ""));
    assert_eq!(
        h.responses(200)
            .last()
            .unwrap()
            .1
            .headers
            .get("Session-Expires"),
        Some("120;refresher=uac")
    );
    h.advance(Duration::from_secs(87));
    assert!(
        sent_requests(&h, Method::Bye).is_empty(),
        "refreshed: no BYE yet"
    );
    // No second refresh: at 60 + 120 - 32 s the session is over.
    h.advance(Duration::from_secs(2));
    assert_eq!(distinct(&h, Method::Bye), 1);
    assert!(h.events.iter().any(|e| matches!(
        e,
        UaEvent::Ended {
            why: DialogEnd::SessionExpired,
            ..
        }
    )));
}

#[test]
fn we_refresh_with_update_when_the_caller_cannot() {
    let mut h = H::with_timers();
    // A proxy asked for timers; the caller does not support them: we refresh.
    h.input(invite_with("Session-Expires: 300\r\n"));
    let (call, _) = h.invite_call();
    h.ua.answer(h.now, call, "v=0\r\n".into());
    h.drain();
    let (_, ok) = h.responses(200).pop().unwrap();
    assert_eq!(ok.headers.get("Session-Expires"), Some("300;refresher=uas"));
    assert_eq!(ok.headers.get("Require"), None);
    let tag = h.to_tag();
    h.input(req("ACK", "z9hG4bKstb", 1, "ACK", Some(&tag), ""));
    h.advance(Duration::from_secs(149));
    assert!(sent_requests(&h, Method::Update).is_empty());
    h.advance(Duration::from_secs(2));
    let updates = sent_requests(&h, Method::Update);
    assert_eq!(
        distinct(&h, Method::Update),
        1,
        "refresh at half the interval"
    );
    assert_eq!(
        updates[0].headers.get("Session-Expires"),
        Some("300;refresher=uac")
    );
    // A 481 to the refresh: the dialog is gone, the call ends.
    let mut r = Response::to(&updates[0], 481, "Call/Transaction Does Not Exist", None);
    r.headers.push("Content-Length", "0");
    h.input(Message::Response(r).to_bytes());
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, UaEvent::Ended { dialog: c, .. } if *c == call))
    );
}

#[test]
fn outbound_invite_asks_for_timers_and_follows_the_callees_choice() {
    let mut h = H::with_timers();
    let (call, inv) = h.call_bob();
    assert_eq!(inv.headers.get("Session-Expires"), Some("1800"));
    assert_eq!(inv.headers.get("Min-SE"), Some("90"));
    h.input(answer_to(
        &inv,
        200,
        "Contact: <sip:bob@127.0.0.1:5090>\r\nSession-Expires: 200;refresher=uac",
    ));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, UaEvent::Accepted { dialog: c, .. } if *c == call))
    );
    h.advance(Duration::from_secs(101));
    assert_eq!(distinct(&h, Method::Update), 1);
}

/// RFC 3261 section 12.1.1: a 18x that makes an early dialog copies the
/// INVITE's Record-Route, like the 200, so that early-dialog requests
/// (UPDATE, PRACK) keep going through the proxy.
#[test]
fn provisional_responses_carry_record_route() {
    let mut h = H::new();
    let rr = "Record-Route: <sip:proxy@127.0.0.1:5071;lr>\r\n";
    h.input(invite_with(rr));
    let (call, _) = h.invite_call();
    h.ua.provisional(h.now, call, 180, None);
    h.ua.provisional(h.now, call, 183, Some("v=0\r\nearly\r\n".into()));
    h.ua.answer(h.now, call, "v=0\r\n".into());
    h.drain();
    for status in [180, 183, 200] {
        let (_, r) = h.responses(status).pop().expect("response");
        assert_eq!(
            r.headers.list("Record-Route"),
            vec!["<sip:proxy@127.0.0.1:5071;lr>"],
            "{status}"
        );
        assert!(r.core().unwrap().to.tag().is_some(), "{status} has a tag");
        assert!(r.headers.get("Contact").is_some(), "{status} has a Contact");
    }
}

/// The caller's identity reaches the gateway: From's display name and URI,
/// and P-Asserted-Identity (RFC 3325) only from a trusted source.
#[test]
fn the_caller_identity_is_reported_and_pai_is_believed_only_from_the_trust_domain() {
    let extra =
        "P-Asserted-Identity: \"Alice Smith\" <sip:+4930123@pbx.example>\r\nPrivacy: id\r\n";
    let from = |h: &H| {
        h.events
            .iter()
            .find_map(|e| match e {
                UaEvent::Invite { caller, to, .. } => Some((caller.clone(), to.clone())),
                _ => None,
            })
            .expect("Invite")
    };
    let named = |x: Vec<u8>| {
        String::from_utf8(x)
            .unwrap()
            .replacen(
                "From: <sip:ss@127.0.0.1>",
                "From: \"Alice\" <sip:alice@127.0.0.1>",
                1,
            )
            .into_bytes()
    };
    let mut h = H::new();
    h.input(named(invite_with(extra)));
    let (caller, to) = from(&h);
    assert_eq!(caller.from.display.as_deref(), Some("Alice"));
    assert_eq!(caller.user(), Some("alice"));
    assert_eq!(to, "sip:demo@127.0.0.1");
    assert_eq!(
        caller.asserted.as_deref(),
        Some("\"Alice Smith\" <sip:+4930123@pbx.example>")
    );
    assert_eq!(caller.privacy.as_deref(), Some("id"));

    // The same INVITE from an allowed but untrusted network: no PAI.
    let mut h = H::with(UserAgent::new(
        UaConfig {
            trusted: vec!["192.0.2.0/24".parse().unwrap()],
            ..config()
        },
        SipMetrics::default(),
    ));
    h.input(named(invite_with(extra)));
    let (caller, _) = from(&h);
    assert_eq!(caller.asserted, None);
    assert_eq!(caller.privacy, None);
}

/// An outbound INVITE says who calls: display name and user in From (host
/// ours), P-Asserted-Identity and Privacy passed on.
#[test]
fn outbound_invite_carries_the_callers_identity() {
    let mut h = H::new();
    h.ua.invite(
        h.now,
        OutboundInvite {
            uri: format!("sip:bob@{PEER}"),
            from_user: "+4930123".into(),
            from_display: Some("Alice \"Al\" Smith".into()),
            asserted_identity: Some("<sip:+4930123@pbx.example>".into()),
            privacy: Some("id".into()),
            sdp: "v=0\r\n".into(),
        },
    )
    .unwrap();
    h.drain();
    let inv = sent_requests(&h, Method::Invite).remove(0);
    let from = inv.core().unwrap().from;
    assert_eq!(from.display.as_deref(), Some(r#"Alice \"Al\" Smith"#));
    assert_eq!(from.uri, "sip:+4930123@127.0.0.1:5060");
    assert_eq!(
        inv.headers.get("P-Asserted-Identity"),
        Some("<sip:+4930123@pbx.example>")
    );
    assert_eq!(inv.headers.get("Privacy"), Some("id"));
}

/// While draining, OPTIONS gets 503 with Retry-After, so that a
/// dispatcher's probe takes the gateway out of rotation.
#[test]
fn draining_answers_options_503_with_retry_after() {
    let mut h = H::new();
    h.ua.set_draining(true);
    h.input(req("OPTIONS", "z9hG4bKo", 1, "OPTIONS", None, ""));
    let (_, r) = h.responses(503).pop().expect("503");
    assert_eq!(r.headers.get("Retry-After"), Some("30"));
    assert_eq!(
        r.headers.get("Allow"),
        Some("INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO")
    );
}

/// Listening on UDP, TCP and TLS (5061).
fn tls_ua_config() -> UaConfig {
    let a = |s: &str| s.parse().unwrap();
    UaConfig {
        local: vec![
            (Transport::Udp, a("127.0.0.1:5060")),
            (Transport::Tcp, a("127.0.0.1:5060")),
            (Transport::Tls, a("127.0.0.1:5061")),
        ],
        ..config()
    }
}

fn tls_ua() -> UserAgent {
    UserAgent::new(tls_ua_config(), SipMetrics::default())
}

fn tls_peer() -> Peer {
    Peer {
        transport: Transport::Tls,
        ..peer()
    }
}

/// Our Via on a request over TLS names our TLS listener.
fn assert_via_tls(req: &rtcgw_proto::sip::message::Request) {
    let via = req.headers.get("Via").unwrap();
    assert!(via.starts_with("SIP/2.0/TLS 127.0.0.1:5061;"), "{via}");
}

/// The last message sent and where it went.
fn last_sent(h: &H) -> (Message, Peer) {
    (h.out.last().unwrap().1.clone(), *h.to.last().unwrap())
}

#[test]
fn a_sips_invite_needs_tls_and_makes_a_secure_dialog() {
    let sips = |b: &str| {
        String::from_utf8(req("INVITE", b, 1, "INVITE", None, "v=0\r\n"))
            .unwrap()
            .replacen("INVITE sip:demo@", "INVITE sips:demo@", 1)
            .replace("Via: SIP/2.0/UDP", "Via: SIP/2.0/TLS")
            .replace(
                &format!("Contact: <sip:ss@{PEER}>"),
                "Contact: <sips:ss@127.0.0.1:5090>",
            )
            .into_bytes()
    };
    // Without a TLS listener a sips: dialog cannot be had (RFC 3261
    // section 8.2.2.1: 416), counted.
    let mut h = H::new();
    h.input(sips("z9hG4bKs1"));
    assert_eq!(h.responses(416).len(), 1);
    assert_eq!(h.ua.dialogs(), 0);
    // With one, but over UDP: not secure end to end, 416 too.
    let mut h = H::with(tls_ua());
    h.input(sips("z9hG4bKs0"));
    let (_, r) = h.responses(416).remove(0);
    assert!(r.reason.contains("needs TLS on every hop"), "{}", r.reason);
    // Over TLS: answered with a sips: Contact on our TLS address, and our
    // BYE goes over TLS to their Contact.
    let mut h = H::with(tls_ua());
    h.ua.handle_input(h.now, tls_peer(), &sips("z9hG4bKs2"));
    h.drain();
    let (call, _) = h.invite_call();
    h.ua.answer(h.now, call, "v=0\r\n".into());
    h.drain();
    let (_, ok) = h.responses(200).remove(0);
    assert_eq!(
        ok.headers.get("Contact"),
        Some("<sips:rtcgw@127.0.0.1:5061>")
    );
    assert_eq!(
        *h.to.last().unwrap(),
        tls_peer(),
        "the 200 on the TLS connection"
    );
    let tag = h.to_tag();
    let ack = String::from_utf8(req("ACK", "z9hG4bKs3", 1, "ACK", Some(&tag), "")).unwrap();
    h.ua.handle_input(
        h.now,
        tls_peer(),
        ack.replace("SIP/2.0/UDP", "SIP/2.0/TLS").as_bytes(),
    );
    h.ua.hangup(h.now, call);
    h.drain();
    let (Message::Request(bye), to) = last_sent(&h) else {
        panic!("BYE")
    };
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.uri, "sips:ss@127.0.0.1:5090");
    assert_eq!((to.addr.port(), to.transport), (5090, Transport::Tls));
    assert_via_tls(&bye);
}

#[test]
fn outbound_calls_go_over_tls_for_sips_transport_tls_and_a_tls_next_hop() {
    let mut h = H::with(tls_ua());
    let invite = |h: &mut H, uri: &str| {
        h.ua.invite(h.now, outbound(uri, "v=0\r\n".into())).unwrap();
        h.drain();
        let (Message::Request(inv), to) = last_sent(h) else {
            panic!("INVITE")
        };
        (inv, to)
    };
    let (inv, to) = invite(&mut h, "sips:bob@127.0.0.1:5071");
    assert_eq!((to.addr.port(), to.transport), (5071, Transport::Tls));
    assert_via_tls(&inv);
    assert_eq!(
        inv.headers.get("Contact"),
        Some("<sips:rtcgw@127.0.0.1:5061>")
    );
    let (inv, to) = invite(&mut h, "sip:bob@127.0.0.1;transport=tls");
    assert_eq!((to.addr.port(), to.transport), (5061, Transport::Tls));
    assert_eq!(
        inv.headers.get("Contact"),
        Some("<sip:rtcgw@127.0.0.1:5061;transport=tls>")
    );
    // A plain sip: URI over UDP; the callee's 200 record-routes a TLS hop:
    // the ACK and BYE take it.
    let (inv, to) = invite(&mut h, "sip:carol@127.0.0.1:5072");
    assert_eq!(to.transport, Transport::Udp);
    let mut r = Response::to(&inv, 200, "OK", Some("callee"));
    r.headers.push("Contact", "<sip:carol@127.0.0.1:5090>");
    r.headers
        .push("Record-Route", "<sip:127.0.0.1:5095;transport=tls;lr>");
    h.ua.handle_input(h.now, to, &Message::Response(r).to_bytes());
    h.drain();
    let call = h
        .events
        .iter()
        .find_map(|e| match e {
            UaEvent::Accepted { dialog, .. } => Some(*dialog),
            _ => None,
        })
        .expect("accepted");
    let (Message::Request(ack), to) = last_sent(&h) else {
        panic!("ACK")
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!((to.addr.port(), to.transport), (5095, Transport::Tls));
    h.ua.hangup(h.now, call);
    h.drain();
    let (_, to) = last_sent(&h);
    assert_eq!((to.addr.port(), to.transport), (5095, Transport::Tls));
    // A TLS next hop takes every call, whatever the URI.
    let tls_hop = |local| UaConfig {
        next_hop: Some(NextHop {
            addr: "127.0.0.1:5080".parse().unwrap(),
            transport: Some(Transport::Tls),
        }),
        local,
        ..config()
    };
    let mut h = H::with(UserAgent::new(
        tls_hop(tls_ua_config().local),
        SipMetrics::default(),
    ));
    let (inv, to) = invite(&mut h, "sip:dave@pbx.example.com");
    assert_eq!((to.addr.port(), to.transport), (5080, Transport::Tls));
    assert_via_tls(&inv);
    assert_eq!(
        inv.headers.get("Contact"),
        Some("<sip:rtcgw@127.0.0.1:5061;transport=tls>")
    );
    // Without a TLS listener there is no TLS address to name: not placed.
    let mut h = H::with(UserAgent::new(
        tls_hop(config().local),
        SipMetrics::default(),
    ));
    assert!(
        h.ua.invite(
            h.now,
            outbound("sip:dave@pbx.example.com", "v=0\r\n".into())
        )
        .is_none()
    );
}

#[test]
fn a_connection_that_cannot_be_opened_fails_the_call_at_once_as_503() {
    let mut h = H::with(tls_ua());
    let call =
        h.ua.invite(h.now, outbound("sips:bob@127.0.0.1:5071", "v=0\r\n".into()))
            .unwrap();
    h.drain();
    let (_, to) = last_sent(&h);
    // Another peer's failure changes nothing.
    h.ua.transport_error(
        h.now,
        Peer {
            transport: Transport::Tcp,
            ..to
        },
    );
    h.drain();
    assert!(h.events.is_empty());
    // A call that already rings went out on an earlier connection: left
    // to its timers.
    let ringing =
        h.ua.invite(
            h.now,
            outbound("sips:carol@127.0.0.1:5071", "v=0\r\n".into()),
        )
        .unwrap();
    h.drain();
    let (Message::Request(inv), _) = last_sent(&h) else {
        panic!("INVITE")
    };
    h.ua.handle_input(h.now, to, &answer_to(&inv, 180, ""));
    h.drain();
    h.events.clear();
    h.ua.transport_error(h.now, to);
    h.drain();
    assert_eq!(h.ua.dialogs(), 1, "{ringing:?} rings on");
    assert_eq!(
        h.events,
        vec![UaEvent::Rejected {
            dialog: call,
            status: 503,
            reason: "Service Unavailable".into()
        }],
        "RFC 3261 section 8.1.3.1, not Timer B 32 s later"
    );
}

#[test]
fn an_answer_too_large_for_udp_gets_500_not_silence() {
    let mut h = H::new();
    h.input(req("INVITE", "z9hG4bKbig", 1, "INVITE", None, "v=0\r\n"));
    let (call, _) = h.invite_call();
    let huge = format!("v=0\r\n{}", "a=x-filler:0123456789abcdef\r\n".repeat(3000));
    assert!(!h.ua.answer(h.now, call, huge.clone()), "not answered");
    h.drain();
    let (_, r) = h.responses(500).remove(0);
    assert_eq!(r.reason, "Answer Too Large For UDP");
    assert!(h.responses(200).is_empty());
    assert_eq!(h.ua.dialogs(), 0);
    assert_eq!(h.ua.metrics().rejected(Rejection::AnswerTooLarge), 1);
    // Over TCP the same answer goes out.
    let mut h = H::new();
    let tcp = Peer {
        transport: Transport::Tcp,
        ..peer()
    };
    let invite = String::from_utf8(req("INVITE", "z9hG4bKbig2", 1, "INVITE", None, "v=0\r\n"))
        .unwrap()
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    h.ua.handle_input(h.now, tcp, invite.as_bytes());
    h.drain();
    let (call, _) = h.invite_call();
    assert!(h.ua.answer(h.now, call, huge));
    h.drain();
    assert_eq!(h.responses(200).len(), 1);
}

#[test]
fn timer_is_supported_only_when_session_timers_are_on() {
    // Off (the default): a browser's Session-Expires gets a 200 that
    // neither claims `timer` nor carries Session-Expires, so the browser
    // does not refresh for nothing (RFC 4028 section 9).
    let mut h = H::new();
    h.input(invite_with("Supported: timer\r\nSession-Expires: 90\r\n"));
    let (call, _) = h.invite_call();
    h.ua.answer(h.now, call, "v=0\r\n".into());
    h.drain();
    let (_, ok) = h.responses(200).remove(0);
    assert_eq!(ok.headers.get("Supported"), None);
    assert_eq!(ok.headers.get("Session-Expires"), None);
    // On: both.
    let mut h = H::with_timers();
    h.input(invite_with("Supported: timer\r\nSession-Expires: 120\r\n"));
    let (call, _) = h.invite_call();
    h.ua.answer(h.now, call, "v=0\r\n".into());
    h.drain();
    let (_, ok) = h.responses(200).remove(0);
    assert_eq!(ok.headers.get("Supported"), Some("timer"));
    assert!(ok.headers.get("Session-Expires").is_some());
}
