//! INVITE server transaction: RFC 3261 section 17.2.1, with the Accepted
//! state of RFC 6026 section 7.1 (2xx responses are the TU's to retransmit;
//! the transaction stays to absorb INVITE retransmissions).

use std::time::Instant;

use super::{Backoff, Out, Peer, Timers, TsxKey};
use crate::sip::message::{Message, Method, Request, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

pub struct ServerInvite {
    key: TsxKey,
    peer: Peer,
    request: Request,
    timers: Timers,
    state: State,
    last: Option<Response>,
    /// Timer G: retransmits a non-2xx final over UDP.
    g: Option<Backoff>,
    /// Timer H: gives up waiting for the ACK.
    h: Option<Instant>,
    /// Timer I (Confirmed) or L (Accepted): when the transaction ends.
    end: Option<Instant>,
}

impl ServerInvite {
    /// Creates the transaction and sends 100 Trying at once, so the client
    /// stops retransmitting (section 17.2.1: the TU will not answer within
    /// 200 ms when it has to set up media first).
    pub(crate) fn new(
        now: Instant,
        key: TsxKey,
        peer: Peer,
        request: Request,
        timers: Timers,
        out: &mut Out,
    ) -> Self {
        let mut t = Self {
            key,
            peer,
            request,
            timers,
            state: State::Proceeding,
            last: None,
            g: None,
            h: None,
            end: None,
        };
        let trying = Response::to(&t.request, 100, "Trying", None);
        t.send(trying, out);
        let _ = now;
        t
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

    pub fn is_proceeding(&self) -> bool {
        self.state == State::Proceeding
    }

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    fn send(&mut self, resp: Response, out: &mut Out) {
        out.transmit(self.peer, Message::Response(resp.clone()));
        self.last = Some(resp);
    }

    fn resend_last(&self, out: &mut Out) {
        if let Some(r) = &self.last {
            out.transmit(self.peer, Message::Response(r.clone()));
        }
    }

    pub(crate) fn handle_request(&mut self, now: Instant, req: &Request, out: &mut Out) {
        match (self.state, &req.method) {
            // A retransmitted INVITE gets the last provisional or final again.
            (State::Proceeding | State::Completed, Method::Invite) => self.resend_last(out),
            (State::Completed, Method::Ack) => {
                self.state = State::Confirmed;
                self.g = None;
                self.h = None;
                self.end = Some(
                    now + if self.peer.transport.reliable() {
                        Default::default()
                    } else {
                        self.timers.t4
                    },
                );
            }
            // Accepted absorbs INVITE retransmissions (RFC 6026); Confirmed
            // absorbs ACK retransmissions.
            _ => {}
        }
    }

    /// Sends a response from the TU. False when the transaction is past
    /// Proceeding (a final was already sent).
    pub(crate) fn send_response(&mut self, now: Instant, resp: Response, out: &mut Out) -> bool {
        if self.state != State::Proceeding {
            return false;
        }
        let status = resp.status;
        self.send(resp, out);
        match status {
            100..=199 => {}
            200..=299 => {
                self.state = State::Accepted;
                self.end = Some(now + self.timers.timeout()); // timer L
            }
            _ => {
                self.state = State::Completed;
                if !self.peer.transport.reliable() {
                    self.g = Some(Backoff::new(now, self.timers.t1, Some(self.timers.t2)));
                }
                self.h = Some(now + self.timers.timeout());
            }
        }
        true
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Out) {
        if let Some(g) = self.g.as_mut()
            && now >= g.at
            && self.state == State::Completed
        {
            g.fire(now);
            self.resend_last(out);
        }
        if self.h.is_some_and(|h| now >= h) && self.state == State::Completed {
            self.state = State::Terminated;
            out.timeout(&self.key);
        }
        if self.end.is_some_and(|e| now >= e)
            && matches!(self.state, State::Confirmed | State::Accepted)
        {
            self.state = State::Terminated;
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Terminated {
            return None;
        }
        super::earliest([self.g.map(|g| g.at), self.h, self.end])
    }
}
