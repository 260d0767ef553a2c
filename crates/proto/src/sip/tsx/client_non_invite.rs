//! Non-INVITE client transaction: RFC 3261 section 17.1.2.

use std::time::Instant;

use super::{Backoff, Out, Peer, Timers, TsxEvent, TsxKey};
use crate::sip::message::{Message, Request, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

pub struct ClientNonInvite {
    key: TsxKey,
    peer: Peer,
    request: Request,
    timers: Timers,
    state: State,
    /// Timer E: retransmission over UDP, T1 doubling up to T2.
    e: Option<Backoff>,
    /// Timer F: no final response.
    f: Option<Instant>,
    /// Timer K: how long Completed absorbs response retransmissions.
    k: Option<Instant>,
}

impl ClientNonInvite {
    pub(crate) fn new(
        now: Instant,
        key: TsxKey,
        peer: Peer,
        request: Request,
        timers: Timers,
        out: &mut Out,
    ) -> Self {
        out.transmit(peer, Message::Request(request.clone()));
        let e = (!peer.transport.reliable()).then(|| Backoff::new(now, timers.t1, Some(timers.t2)));
        Self {
            key,
            peer,
            request,
            timers,
            state: State::Trying,
            e,
            f: Some(now + timers.timeout()),
            k: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn peer(&self) -> Peer {
        self.peer
    }

    pub(crate) fn handle_response(&mut self, now: Instant, resp: Response, out: &mut Out) {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return; // Completed absorbs retransmitted finals
        }
        if resp.status < 200 {
            if self.state == State::Trying {
                self.state = State::Proceeding;
                // In Proceeding, E keeps firing every T2 (section 17.1.2.2).
                if let Some(e) = self.e.as_mut() {
                    e.interval = self.timers.t2;
                }
            }
        } else {
            self.state = State::Completed;
            self.e = None;
            self.f = None;
            let wait = if self.peer.transport.reliable() {
                Default::default()
            } else {
                self.timers.t4
            };
            self.k = Some(now + wait);
        }
        out.events.push_back(TsxEvent::Response {
            key: self.key.clone(),
            response: resp,
        });
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Out) {
        if let Some(e) = self.e.as_mut()
            && now >= e.at
            && matches!(self.state, State::Trying | State::Proceeding)
        {
            if self.state == State::Proceeding {
                e.at = now + self.timers.t2;
            } else {
                e.fire(now);
            }
            out.transmit(self.peer, Message::Request(self.request.clone()));
        }
        if self.f.is_some_and(|f| now >= f)
            && matches!(self.state, State::Trying | State::Proceeding)
        {
            self.state = State::Terminated;
            out.timeout(&self.key);
        }
        if self.k.is_some_and(|k| now >= k) && self.state == State::Completed {
            self.state = State::Terminated;
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Terminated {
            return None;
        }
        super::earliest([self.e.map(|e| e.at), self.f, self.k])
    }
}
