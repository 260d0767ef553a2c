//! RFC 3261 section 17 transactions in memory with virtual time: the
//! progress harness always jumps to the earliest timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtcgw_proto::sip::message::{Message, Method, Request, Response};
use rtcgw_proto::sip::tsx::{Peer, Received, Timers, Transactions, Transport, TsxEvent};

fn peer(t: Transport) -> Peer {
    Peer {
        addr: "127.0.0.1:5070".parse::<SocketAddr>().unwrap(),
        transport: t,
    }
}

fn request(method: &str, branch: &str, to_tag: Option<&str>) -> Request {
    let to = match to_tag {
        Some(t) => format!("<sip:gw@127.0.0.1>;tag={t}"),
        None => "<sip:gw@127.0.0.1>".into(),
    };
    let cseq_method = if method == "ACK" { "INVITE" } else { method };
    let text = format!(
        "{method} sip:gw@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
From: <sip:a@127.0.0.1>;tag=ft\r\nTo: {to}\r\nCall-ID: cid-1\r\nCSeq: 1 {cseq_method}\r\nMax-Forwards: 70\r\n\r\n"
    );
    match Message::parse(text.as_bytes()).unwrap() {
        Message::Request(r) => r,
        _ => unreachable!(),
    }
}

/// Advances virtual time to each timeout until `until`, recording when
/// each message went out (as an offset from `start`).
struct Harness {
    tsx: Transactions,
    start: Instant,
    now: Instant,
    sent: Vec<(Duration, Message)>,
    events: Vec<(Duration, TsxEvent)>,
}

impl Harness {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            tsx: Transactions::new(Timers::default(), 1),
            start: now,
            now,
            sent: vec![],
            events: vec![],
        }
    }

    fn drain(&mut self) {
        while let Some(t) = self.tsx.poll_transmit() {
            self.sent.push((self.now - self.start, t.msg));
        }
        while let Some(e) = self.tsx.poll_event() {
            self.events.push((self.now - self.start, e));
        }
    }

    fn progress_until(&mut self, until: Duration) {
        self.drain();
        while let Some(t) = self.tsx.poll_timeout() {
            if t - self.start > until {
                break;
            }
            self.now = self.now.max(t);
            self.tsx.handle_timeout(self.now);
            self.drain();
        }
        self.now = self.start + until;
    }

    fn advance(&mut self, d: Duration) {
        let until = self.now - self.start + d;
        self.progress_until(until);
    }

    fn sent_times(&self, pred: impl Fn(&Message) -> bool) -> Vec<f64> {
        self.sent
            .iter()
            .filter(|(_, m)| pred(m))
            .map(|(t, _)| t.as_secs_f64())
            .collect()
    }
}

fn is_request(m: &Message, method: Method) -> bool {
    matches!(m, Message::Request(r) if r.method == method)
}

fn is_status(m: &Message, status: u16) -> bool {
    matches!(m, Message::Response(r) if r.status == status)
}

fn response_to(req: &Request, status: u16) -> Response {
    Response::to(req, status, "X", Some("tt"))
}

#[test]
fn non_invite_client_retransmits_t1_doubling_to_t2_and_times_out_at_64_t1() {
    let mut h = Harness::new();
    h.tsx.send_request(
        h.now,
        peer(Transport::Udp),
        "127.0.0.1:5060",
        request("OPTIONS", "unused", None),
    );
    h.progress_until(Duration::from_secs(40));
    let times = h.sent_times(|m| is_request(m, Method::Options));
    // 0, then +0.5, +1, +2, +4, +4, ... (capped at T2 = 4 s) until F at 32 s.
    assert_eq!(&times[..6], &[0.0, 0.5, 1.5, 3.5, 7.5, 11.5]);
    assert!(
        times
            .windows(2)
            .skip(4)
            .all(|w| (w[1] - w[0] - 4.0).abs() < 1e-9),
        "{times:?}"
    );
    assert!(*times.last().unwrap() < 32.0);
    let timeouts: Vec<_> = h
        .events
        .iter()
        .filter(|(_, e)| matches!(e, TsxEvent::Timeout { .. }))
        .collect();
    assert_eq!(timeouts.len(), 1);
    assert_eq!(timeouts[0].0, Duration::from_secs(32));
    assert!(h.tsx.is_empty(), "terminated transactions are removed");
}

#[test]
fn invite_client_timer_a_doubles_without_cap_and_b_fires_at_64_t1() {
    let mut h = Harness::new();
    h.tsx.send_request(
        h.now,
        peer(Transport::Udp),
        "127.0.0.1:5060",
        request("INVITE", "x", None),
    );
    h.progress_until(Duration::from_secs(40));
    let times = h.sent_times(|m| is_request(m, Method::Invite));
    assert_eq!(times, vec![0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]);
    assert!(
        h.events
            .iter()
            .any(|(t, e)| matches!(e, TsxEvent::Timeout { .. }) && *t == Duration::from_secs(32))
    );
}

#[test]
fn reliable_transport_never_retransmits() {
    let mut h = Harness::new();
    h.tsx.send_request(
        h.now,
        peer(Transport::Tcp),
        "127.0.0.1:5060",
        request("INVITE", "x", None),
    );
    h.tsx.send_request(
        h.now,
        peer(Transport::Tcp),
        "127.0.0.1:5060",
        request("BYE", "x", Some("tt")),
    );
    h.progress_until(Duration::from_secs(40));
    assert_eq!(h.sent.len(), 2);
    assert_eq!(
        h.events
            .iter()
            .filter(|(_, e)| matches!(e, TsxEvent::Timeout { .. }))
            .count(),
        2
    );
}

#[test]
fn client_invite_acks_a_non_2xx_final_and_reacks_its_retransmission() {
    let mut h = Harness::new();
    let key = h.tsx.send_request(
        h.now,
        peer(Transport::Udp),
        "127.0.0.1:5060",
        request("INVITE", "x", None),
    );
    h.drain();
    let Message::Request(sent) = h.sent[0].1.clone() else {
        panic!()
    };
    h.advance(Duration::from_millis(100));
    let busy = response_to(&sent, 486);
    assert!(h.tsx.handle_response(h.now, busy.clone()));
    h.drain();
    let Message::Request(ack) = h.sent.last().unwrap().1.clone() else {
        panic!("ACK expected")
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.headers.get("CSeq"), Some("1 ACK"));
    assert_eq!(ack.core().unwrap().to.tag(), Some("tt"));
    assert_eq!(
        ack.core().unwrap().via.branch(),
        sent.core().unwrap().via.branch(),
        "same branch as the INVITE"
    );
    assert!(h.events.iter().any(|(_, e)| matches!(e, TsxEvent::Response { key: k, response } if *k == key && response.status == 486)));
    // The retransmitted 486 is ACKed again, and not passed up twice.
    let events_before = h.events.len();
    h.tsx.handle_response(h.now, busy);
    h.drain();
    assert!(is_request(&h.sent.last().unwrap().1, Method::Ack));
    assert_eq!(h.events.len(), events_before);
    // No INVITE retransmission after the final.
    h.advance(Duration::from_secs(40));
    assert_eq!(h.sent_times(|m| is_request(m, Method::Invite)), vec![0.0]);
}

#[test]
fn client_invite_passes_2xx_and_its_retransmissions_to_the_tu() {
    let mut h = Harness::new();
    h.tsx.send_request(
        h.now,
        peer(Transport::Udp),
        "127.0.0.1:5060",
        request("INVITE", "x", None),
    );
    h.drain();
    let Message::Request(sent) = h.sent[0].1.clone() else {
        panic!()
    };
    h.tsx.handle_response(h.now, response_to(&sent, 180));
    h.tsx.handle_response(h.now, response_to(&sent, 200));
    h.tsx.handle_response(h.now, response_to(&sent, 200));
    h.drain();
    let statuses: Vec<u16> = h
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            TsxEvent::Response { response, .. } => Some(response.status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, vec![180, 200, 200]);
    // The TU ACKs a 2xx, not the transaction.
    assert!(!h.sent.iter().any(|(_, m)| is_request(m, Method::Ack)));
}

#[test]
fn server_invite_sends_100_absorbs_retransmissions_and_retransmits_final_until_ack() {
    let mut h = Harness::new();
    let inv = request("INVITE", "z9hG4bKabc", None);
    let Received::New(key) = h
        .tsx
        .handle_request(h.now, peer(Transport::Udp), inv.clone())
        .unwrap()
    else {
        panic!()
    };
    h.drain();
    assert!(is_status(&h.sent[0].1, 100), "100 Trying at once");
    // A retransmitted INVITE is absorbed; the 100 goes out again.
    assert_eq!(
        h.tsx
            .handle_request(h.now, peer(Transport::Udp), inv.clone())
            .unwrap(),
        Received::Absorbed
    );
    h.drain();
    assert_eq!(h.sent_times(|m| is_status(m, 100)).len(), 2);

    assert!(h.tsx.send_response(h.now, &key, response_to(&inv, 486)));
    assert!(
        !h.tsx.send_response(h.now, &key, response_to(&inv, 200)),
        "one final only"
    );
    h.advance(Duration::from_millis(8000));
    // Timer G: 0.5, 1, 2, 4 (T2 cap) after the first 486 at 0.
    assert_eq!(
        h.sent_times(|m| is_status(m, 486)),
        vec![0.0, 0.5, 1.5, 3.5, 7.5]
    );
    // The ACK stops the retransmissions; the transaction ends after T4.
    let ack = request("ACK", "z9hG4bKabc", Some("tt"));
    assert_eq!(
        h.tsx
            .handle_request(h.now, peer(Transport::Udp), ack)
            .unwrap(),
        Received::Absorbed
    );
    h.advance(Duration::from_secs(30));
    assert_eq!(h.sent_times(|m| is_status(m, 486)).len(), 5);
    assert!(h.tsx.is_empty());
    assert!(
        !h.events
            .iter()
            .any(|(_, e)| matches!(e, TsxEvent::Timeout { .. }))
    );
}

#[test]
fn server_invite_without_ack_times_out_with_timer_h() {
    let mut h = Harness::new();
    let inv = request("INVITE", "z9hG4bKnoack", None);
    let Received::New(key) = h
        .tsx
        .handle_request(h.now, peer(Transport::Udp), inv.clone())
        .unwrap()
    else {
        panic!()
    };
    h.tsx.send_response(h.now, &key, response_to(&inv, 603));
    h.progress_until(Duration::from_secs(40));
    let t: Vec<_> = h
        .events
        .iter()
        .filter(|(_, e)| matches!(e, TsxEvent::Timeout { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(t, vec![Duration::from_secs(32)]);
}

#[test]
fn server_invite_accepted_absorbs_invite_retransmissions_after_2xx() {
    let mut h = Harness::new();
    let inv = request("INVITE", "z9hG4bK2xx", None);
    let Received::New(key) = h
        .tsx
        .handle_request(h.now, peer(Transport::Udp), inv.clone())
        .unwrap()
    else {
        panic!()
    };
    h.tsx.send_response(h.now, &key, response_to(&inv, 200));
    h.drain();
    let n = h.sent.len();
    h.advance(Duration::from_secs(1));
    assert_eq!(
        h.tsx
            .handle_request(h.now, peer(Transport::Udp), inv)
            .unwrap(),
        Received::Absorbed
    );
    h.drain();
    assert_eq!(
        h.sent.len(),
        n,
        "no response to a retransmitted INVITE in Accepted"
    );
    // The ACK for the 2xx has its own branch: it goes to the TU.
    let ack = request("ACK", "z9hG4bKother", Some("tt"));
    assert_eq!(
        h.tsx
            .handle_request(h.now, peer(Transport::Udp), ack)
            .unwrap(),
        Received::Ack
    );
    h.advance(Duration::from_secs(40));
    assert!(h.tsx.is_empty(), "timer L ended it");
}

#[test]
fn non_invite_server_resends_final_for_retransmissions_until_timer_j() {
    let mut h = Harness::new();
    let bye = request("BYE", "z9hG4bKbye", Some("tt"));
    let Received::New(key) = h
        .tsx
        .handle_request(h.now, peer(Transport::Udp), bye.clone())
        .unwrap()
    else {
        panic!()
    };
    // Trying: a retransmission before the TU answered gets nothing.
    h.tsx
        .handle_request(h.now, peer(Transport::Udp), bye.clone())
        .unwrap();
    h.drain();
    assert!(h.sent.is_empty());
    h.tsx.send_response(h.now, &key, response_to(&bye, 200));
    h.tsx
        .handle_request(h.now, peer(Transport::Udp), bye.clone())
        .unwrap();
    h.drain();
    assert_eq!(h.sent_times(|m| is_status(m, 200)).len(), 2);
    h.advance(Duration::from_secs(33));
    assert!(h.tsx.is_empty());
}

#[test]
fn cancel_finds_its_invite_and_a_late_cancel_sees_the_final() {
    let mut h = Harness::new();
    let inv = request("INVITE", "z9hG4bKrace", None);
    let Received::New(ikey) = h
        .tsx
        .handle_request(h.now, peer(Transport::Udp), inv.clone())
        .unwrap()
    else {
        panic!()
    };
    // 200 wins the race: the CANCEL still gets its own transaction, but the
    // INVITE is no longer proceeding, so the TU answers 200 without a 487.
    h.tsx.send_response(h.now, &ikey, response_to(&inv, 200));
    let cancel = request("CANCEL", "z9hG4bKrace", None);
    let Received::New(ckey) = h
        .tsx
        .handle_request(h.now, peer(Transport::Udp), cancel)
        .unwrap()
    else {
        panic!()
    };
    assert_ne!(ckey, ikey);
    assert_eq!(ckey.invite_for_cancel(), Some(ikey.clone()));
    assert!(!h.tsx.is_proceeding(&ikey));
}

#[test]
fn merged_request_gets_482() {
    let mut h = Harness::new();
    let a = request("INVITE", "z9hG4bKpath1", None);
    let b = request("INVITE", "z9hG4bKpath2", None); // same From tag, Call-ID, CSeq
    assert!(matches!(
        h.tsx
            .handle_request(h.now, peer(Transport::Udp), a)
            .unwrap(),
        Received::New(_)
    ));
    assert_eq!(
        h.tsx
            .handle_request(h.now, peer(Transport::Udp), b)
            .unwrap(),
        Received::Merged
    );
    h.drain();
    assert!(is_status(&h.sent.last().unwrap().1, 482));
}

#[test]
fn rfc2543_fallback_matches_retransmission_and_ack() {
    let mut h = Harness::new();
    let inv = request("INVITE", "oldstyle", None);
    let Received::New(key) = h
        .tsx
        .handle_request(h.now, peer(Transport::Udp), inv.clone())
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        h.tsx
            .handle_request(h.now, peer(Transport::Udp), inv.clone())
            .unwrap(),
        Received::Absorbed
    );
    h.tsx.send_response(h.now, &key, response_to(&inv, 486));
    let ack = request("ACK", "oldstyle", Some("tt"));
    assert_eq!(
        h.tsx
            .handle_request(h.now, peer(Transport::Udp), ack)
            .unwrap(),
        Received::Absorbed
    );
    h.advance(Duration::from_secs(10));
    assert!(h.tsx.is_empty(), "ACK matched: Confirmed, then timer I");
}
