//! INVITE client transaction: RFC 3261 section 17.1.1, with the Accepted
//! state of RFC 6026 section 7.2 (2xx retransmissions go to the TU, which
//! sends the ACK).

use std::time::Instant;

use super::{Backoff, Out, Peer, Timers, TsxEvent, TsxKey};
use crate::sip::message::{Headers, Message, Method, Request, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

pub struct ClientInvite {
    key: TsxKey,
    peer: Peer,
    request: Request,
    timers: Timers,
    state: State,
    /// Timer A: INVITE retransmission over UDP.
    a: Option<Backoff>,
    /// Timer B: no final response.
    b: Option<Instant>,
    /// Timer D (Completed) or M (Accepted): when the transaction ends.
    end: Option<Instant>,
    ack: Option<Request>,
    /// A CANCEL went out: without a final response by then the transaction
    /// is given up (section 9.1: 64*T1 after the CANCEL).
    cancelled: Option<Instant>,
}

impl ClientInvite {
    pub(crate) fn new(
        now: Instant,
        key: TsxKey,
        peer: Peer,
        request: Request,
        timers: Timers,
        out: &mut Out,
    ) -> Self {
        out.transmit(peer, Message::Request(request.clone()));
        let a = (!peer.transport.reliable()).then(|| Backoff::new(now, timers.t1, None));
        Self {
            key,
            peer,
            request,
            timers,
            state: State::Calling,
            a,
            b: Some(now + timers.timeout()),
            end: None,
            ack: None,
            cancelled: None,
        }
    }

    /// A CANCEL for this INVITE was sent now.
    pub(crate) fn cancel_sent(&mut self, now: Instant) {
        self.cancelled.get_or_insert(now + self.timers.timeout());
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// Whether a CANCEL may still be sent (section 9.1: only after a
    /// provisional response, or while Calling as rtcgw does not wait).
    pub fn is_pending(&self) -> bool {
        matches!(self.state, State::Calling | State::Proceeding)
    }

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// The ACK for a non-2xx final (section 17.1.1.3): same Request-URI,
    /// top Via, From, Call-ID and CSeq number; the response's To.
    fn build_ack(&self, resp: &Response) -> Request {
        let mut headers = Headers::default();
        if let Some(via) = self.request.headers.list("Via").into_iter().next() {
            headers.push("Via", via);
        }
        headers.copy_from(&self.request.headers, "Route");
        headers.copy_from(&self.request.headers, "From");
        headers.copy_from(&resp.headers, "To");
        headers.copy_from(&self.request.headers, "Call-ID");
        let cseq = self.request.core().map(|c| c.cseq).unwrap_or(1);
        headers.push("CSeq", format!("{cseq} ACK"));
        headers.push("Max-Forwards", "70");
        Request {
            method: Method::Ack,
            uri: self.request.uri.clone(),
            headers,
            body: Vec::new(),
        }
    }

    pub(crate) fn handle_response(&mut self, now: Instant, resp: Response, out: &mut Out) {
        let status = resp.status;
        match (self.state, status) {
            (State::Calling | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                self.a = None;
                out.events.push_back(TsxEvent::Response {
                    key: self.key.clone(),
                    response: resp,
                });
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                self.state = State::Accepted;
                self.a = None;
                self.b = None;
                self.end = Some(now + self.timers.timeout()); // timer M
                out.events.push_back(TsxEvent::Response {
                    key: self.key.clone(),
                    response: resp,
                });
            }
            // 2xx retransmissions in Accepted go to the TU (it re-sends its ACK).
            (State::Accepted, 200..=299) => {
                out.events.push_back(TsxEvent::Response {
                    key: self.key.clone(),
                    response: resp,
                });
            }
            (State::Calling | State::Proceeding, _) => {
                self.state = State::Completed;
                self.a = None;
                self.b = None;
                let ack = self.build_ack(&resp);
                out.transmit(self.peer, Message::Request(ack.clone()));
                self.ack = Some(ack);
                let wait = if self.peer.transport.reliable() {
                    Default::default()
                } else {
                    std::time::Duration::from_secs(32)
                };
                self.end = Some(now + wait); // timer D
                out.events.push_back(TsxEvent::Response {
                    key: self.key.clone(),
                    response: resp,
                });
            }
            // A retransmitted final: ACK again, the TU has it already.
            (State::Completed, 300..) => {
                if let Some(ack) = &self.ack {
                    out.transmit(self.peer, Message::Request(ack.clone()));
                }
            }
            _ => {}
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Out) {
        if let Some(a) = self.a.as_mut()
            && now >= a.at
            && self.state == State::Calling
        {
            a.fire(now);
            out.transmit(self.peer, Message::Request(self.request.clone()));
        }
        // Timer B ends the wait for any response (RFC 3261 section
        // 17.1.1.2: "still in the Calling state when timer B fires"); once a
        // 1xx came, the callee may ring as long as it likes: the TU cancels
        // (a proxy has timer C).
        let gave_up = self.cancelled.is_some_and(|c| now >= c) && self.is_pending();
        if gave_up || (self.b.is_some_and(|b| now >= b) && self.state == State::Calling) {
            self.state = State::Terminated;
            out.timeout(&self.key);
        }
        if self.end.is_some_and(|e| now >= e)
            && matches!(self.state, State::Completed | State::Accepted)
        {
            self.state = State::Terminated;
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Terminated {
            return None;
        }
        let a = if self.state == State::Calling {
            self.a.map(|a| a.at)
        } else {
            None
        };
        let b = if self.state == State::Calling {
            self.b
        } else {
            None
        };
        let c = self.cancelled.filter(|_| self.is_pending());
        super::earliest([a, b, c, self.end])
    }
}
