//! Dialogs (RFC 3261 section 12): their identity and state, the requests
//! that arrive inside them (section 12.2.2), the ones we send inside them
//! (section 12.2.1: BYE, refresh UPDATEs), and ending them.

use std::net::SocketAddr;
use std::time::Instant;

use super::{DialogEnd, DialogRef, UaEvent, UserAgent};
use crate::sip::message::{Headers, Method, NameAddr, Request, Response};
use crate::sip::metrics::{Direction, Rejection};
use crate::sip::session_timer::{SessionExpires, SessionTimer};
use crate::sip::tsx::{Backoff, Peer, Transport, TsxKey};

/// A dialog's identity (section 12): Call-ID and both tags, ours first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogKey {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogKey {
    /// The dialog an incoming in-dialog request names: its To tag is ours.
    pub(super) fn of_request(core: &crate::sip::message::Core) -> Self {
        Self {
            call_id: core.call_id.clone(),
            local_tag: core.to.tag().unwrap_or_default().to_string(),
            remote_tag: core.from.tag().unwrap_or_default().to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DialogState {
    /// INVITE received, the gateway is preparing the answer.
    Incoming,
    /// 200 sent, waiting for the ACK (2xx retransmitted over UDP).
    Answered,
    Confirmed,
    /// Our INVITE is out (UAC), no final response yet.
    Outgoing,
    /// We hung up an outgoing call: CANCEL sent; a 2xx that crosses it
    /// still gets ACK + BYE (section 9.1).
    Cancelling,
}

/// A re-offer being answered by the gateway.
#[derive(Debug, Clone)]
pub(super) struct PendingReoffer {
    pub key: TsxKey,
    /// The remote o= line before this offer, restored if it is refused.
    pub prior_origin: Option<String>,
}

/// One dialog (or dialog to be).
pub(super) struct Dialog {
    pub state: DialogState,
    pub invite_tsx: TsxKey,
    pub peer: Peer,
    pub key: DialogKey,
    /// Their From / our To, as sent.
    pub remote_uri: String,
    pub local_uri: String,
    pub remote_target: String,
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    pub remote_cseq: u32,
    pub invite_cseq: u32,
    pub late_offer: bool,
    /// UAS: our 2xx, retransmitted until the ACK.
    pub ok: Option<Response>,
    pub retransmit: Option<Backoff>,
    pub ack_deadline: Option<Instant>,
    pub local_sdp: Option<String>,
    /// UAC: the ACK for the 2xx, resent when the 2xx is retransmitted.
    pub ack: Option<Vec<u8>>,
    /// The remote SDP's o= line, to tell a re-offer from a refresh.
    pub remote_origin: Option<String>,
    pub reoffer: Option<PendingReoffer>,
    /// RFC 4028: what our 2xx will carry (UAS), then the running timer.
    pub session_expires: Option<(SessionExpires, bool)>,
    pub timer: Option<SessionTimer>,
}

impl Dialog {
    /// The instants at which this dialog needs [`UserAgent::handle_timeout`].
    pub fn deadlines(&self) -> impl Iterator<Item = Instant> {
        [
            self.retransmit.map(|r| r.at),
            self.ack_deadline,
            self.timer.map(|t| t.due),
        ]
        .into_iter()
        .flatten()
    }
}

impl UserAgent {
    /// Our address towards `peer`: its transport and address family.
    pub(super) fn local(&self, peer: Peer) -> SocketAddr {
        let l = &self.cfg.local;
        let family = |a: &SocketAddr| a.is_ipv6() == peer.addr.is_ipv6();
        l.iter()
            .find(|(t, a)| *t == peer.transport && family(a))
            .or_else(|| l.iter().find(|(t, _)| *t == peer.transport))
            .or_else(|| l.first())
            .map(|(_, a)| *a)
            .unwrap_or_else(|| ([127, 0, 0, 1], 5060).into())
    }

    pub(super) fn contact(&self, peer: Peer) -> String {
        let l = self.local(peer);
        match peer.transport {
            Transport::Udp => format!("<sip:rtcgw@{l}>"),
            Transport::Tcp => format!("<sip:rtcgw@{l};transport=tcp>"),
        }
    }

    /// A fresh tag (section 19.3: globally unique, cryptographically random
    /// is recommended; the salt is random per process).
    pub(super) fn new_tag(&mut self) -> String {
        self.next_id += 1;
        format!("{:x}{:04x}", self.cfg.branch_salt, self.next_id)
    }

    pub(super) fn insert(&mut self, id: DialogRef, d: Dialog) {
        self.by_invite.insert(d.invite_tsx.clone(), id);
        // Our own INVITE has no dialog until a response brings the tag.
        if d.state != DialogState::Outgoing {
            self.by_key.insert(d.key.clone(), id);
        }
        self.dialogs.insert(id, d);
    }

    /// Forgets a dialog and its indexes.
    pub(super) fn remove(&mut self, id: DialogRef) -> Option<Dialog> {
        let d = self.dialogs.remove(&id)?;
        self.by_key.remove(&d.key);
        self.by_invite.remove(&d.invite_tsx);
        self.refreshes.retain(|_, r| *r != id);
        Some(d)
    }

    /// Whether the user agent still knows the dialog (any state).
    pub fn has_dialog(&self, id: DialogRef) -> bool {
        self.dialogs.contains_key(&id)
    }

    /// Ends a dialog from the gateway's side: BYE when established, CANCEL
    /// while our INVITE is out, 480 while an incoming one is unanswered.
    pub fn hangup(&mut self, now: Instant, id: DialogRef) {
        let Some(d) = self.dialogs.get(&id) else {
            return;
        };
        match d.state {
            DialogState::Incoming => self.reject(now, id, 480, "Temporarily Unavailable"),
            DialogState::Outgoing => {
                let key = d.invite_tsx.clone();
                self.tsx.send_cancel(now, &key);
                self.dialogs.get_mut(&id).expect("present").state = DialogState::Cancelling;
                self.pump(now);
            }
            DialogState::Cancelling => {}
            DialogState::Answered | DialogState::Confirmed => {
                let mut d = self.remove(id).expect("present");
                self.send_in_dialog(now, &mut d, Method::Bye, Vec::new());
            }
        }
    }

    /// Ends a dialog the SIP side gave up on (no ACK, session expired...):
    /// the gateway hears why, the peer gets a BYE.
    pub(super) fn end_with_bye(&mut self, now: Instant, id: DialogRef, why: DialogEnd) {
        self.events.push_back(UaEvent::Ended { dialog: id, why });
        self.hangup(now, id);
    }

    /// A request of ours inside a dialog (BYE, a session refresh UPDATE).
    pub(super) fn send_in_dialog(
        &mut self,
        now: Instant,
        d: &mut Dialog,
        method: Method,
        extra: Vec<(&'static str, String)>,
    ) -> TsxKey {
        d.local_cseq = d.local_cseq.max(d.invite_cseq) + 1;
        let mut h = Headers::default();
        for r in &d.route_set {
            h.push("Route", r.clone()); // UAS: Record-Route order as received
        }
        let mut from = d.local_uri.clone();
        if NameAddr::parse(&from).is_some_and(|n| n.tag().is_none()) {
            from.push_str(";tag=");
            from.push_str(&d.key.local_tag);
        }
        h.push("From", from);
        h.push("To", d.remote_uri.clone());
        h.push("Call-ID", d.key.call_id.clone());
        h.push("CSeq", format!("{} {}", d.local_cseq, method.as_str()));
        h.push("Max-Forwards", "70");
        h.push("User-Agent", self.cfg.user_agent.clone());
        for (name, value) in extra {
            h.push(name, value);
        }
        let req = Request {
            method: method.clone(),
            uri: d.remote_target.clone(),
            headers: h,
            body: Vec::new(),
        };
        let local = self.local(d.peer).to_string();
        let peer = Peer {
            addr: self.next_hop(d),
            transport: d.peer.transport,
        };
        self.metrics.request(&method, Direction::Out);
        let key = self.tsx.send_request(now, peer, &local, req);
        self.pump(now);
        key
    }

    /// Next hop of an in-dialog request (RFC 3261 section 8.1.2): the
    /// configured softswitch; else the first Route (loose routing) or the
    /// remote target when it is an IP address; else back where the dialog
    /// came from.
    fn next_hop(&self, d: &Dialog) -> SocketAddr {
        let first_hop = d
            .route_set
            .first()
            .and_then(|r| NameAddr::parse(r))
            .map(|n| n.uri);
        let target = first_hop.as_deref().unwrap_or(&d.remote_target);
        self.cfg
            .next_hop
            .or_else(|| uri_socket_addr(target))
            .unwrap_or(d.peer.addr)
    }

    /// A request inside a dialog (section 12.2.2): BYE ends it, re-INVITE
    /// and UPDATE re-negotiate, INFO carries digits, OPTIONS is answered.
    pub(super) fn in_dialog(&mut self, now: Instant, key: TsxKey, req: Request) {
        let core = req.core().expect("checked");
        let Some(&id) = self.by_key.get(&DialogKey::of_request(&core)) else {
            self.reject_count(Rejection::NoDialog);
            return self.respond(now, &key, &req, 481, None, None);
        };
        let d = self.dialogs.get_mut(&id).expect("indexed");
        // CSeq must grow (a retransmission is caught by the transaction
        // layer before this).
        if core.cseq <= d.remote_cseq {
            self.reject_count(Rejection::CseqOutOfOrder);
            return self.respond(now, &key, &req, 500, Some("CSeq out of order"), None);
        }
        d.remote_cseq = core.cseq;
        match req.method {
            Method::Bye => {
                self.remove(id);
                self.respond(now, &key, &req, 200, None, None);
                self.events.push_back(UaEvent::Ended {
                    dialog: id,
                    why: DialogEnd::Bye,
                });
            }
            Method::Invite | Method::Update => self.reinvite(now, id, key, req),
            Method::Info => self.info(now, id, key, req),
            _ => self.respond(now, &key, &req, 200, None, None),
        }
    }
}

/// The socket address of a SIP URI whose host is an IP literal
/// ("sip:user@192.0.2.1:5070;transport=tcp"); None for names (no DNS here).
pub fn uri_socket_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = hostport.split([';', '?']).next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, port) = v6.split_once(']')?;
        let port = port
            .strip_prefix(':')
            .map_or(Some(5060), |p| p.parse().ok())?;
        return Some(SocketAddr::new(host.parse().ok()?, port));
    }
    let (host, port) = hostport
        .rsplit_once(':')
        .map_or((hostport, Some(5060)), |(h, p)| (h, p.parse().ok()));
    Some(SocketAddr::new(host.parse().ok()?, port?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_addresses() {
        assert_eq!(
            uri_socket_addr("sip:a@192.0.2.1:5070;transport=tcp"),
            Some("192.0.2.1:5070".parse().unwrap())
        );
        assert_eq!(
            uri_socket_addr("sip:192.0.2.1;lr"),
            Some("192.0.2.1:5060".parse().unwrap())
        );
        assert_eq!(
            uri_socket_addr("sip:u@[2001:db8::1]:5080"),
            Some("[2001:db8::1]:5080".parse().unwrap())
        );
        assert_eq!(uri_socket_addr("sip:u@proxy.example.com"), None);
        assert_eq!(uri_socket_addr("tel:+123"), None);
    }
}
