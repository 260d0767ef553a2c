//! Non-INVITE server transaction: RFC 3261 section 17.2.2.

use std::time::Instant;

use super::{Out, Peer, Timers, TsxKey};
use crate::sip::message::{Message, Request, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

pub struct ServerNonInvite {
    #[allow(dead_code)]
    key: TsxKey,
    peer: Peer,
    request: Request,
    timers: Timers,
    state: State,
    last: Option<Response>,
    /// Timer J: how long Completed absorbs request retransmissions.
    j: Option<Instant>,
}

impl ServerNonInvite {
    pub(crate) fn new(key: TsxKey, peer: Peer, request: Request, timers: Timers) -> Self {
        Self {
            key,
            peer,
            request,
            timers,
            state: State::Trying,
            last: None,
            j: None,
        }
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

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    pub(crate) fn handle_request(&mut self, _req: &Request, out: &mut Out) {
        // Trying: the TU has not answered yet, nothing to resend.
        if matches!(self.state, State::Proceeding | State::Completed)
            && let Some(r) = &self.last
        {
            out.transmit(self.peer, Message::Response(r.clone()));
        }
    }

    pub(crate) fn send_response(&mut self, now: Instant, resp: Response, out: &mut Out) -> bool {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return false;
        }
        let provisional = resp.status < 200;
        out.transmit(self.peer, Message::Response(resp.clone()));
        self.last = Some(resp);
        if provisional {
            self.state = State::Proceeding;
        } else {
            self.state = State::Completed;
            let wait = if self.peer.transport.reliable() {
                Default::default()
            } else {
                self.timers.timeout()
            };
            self.j = Some(now + wait);
        }
        true
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant, _out: &mut Out) {
        if self.state == State::Completed && self.j.is_some_and(|j| now >= j) {
            self.state = State::Terminated;
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        (self.state == State::Completed).then_some(self.j).flatten()
    }
}
