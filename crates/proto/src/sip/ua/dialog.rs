//! Dialogs (RFC 3261 section 12): their identity and state, the requests
//! that arrive inside them (section 12.2.2), the ones we send inside them
//! (section 12.2.1: BYE, refresh UPDATEs), and ending them.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::{DialogEnd, DialogRef, UaEvent, UserAgent};
use crate::sip::message::{Headers, Method, NameAddr, Request, Response};
use crate::sip::metrics::{Direction, Rejection};
use crate::sip::session_timer::{SessionExpires, SessionTimer};
use crate::sip::tsx::{Backoff, Peer, Transport, TsxKey};
use crate::sip::uri::SipUri;

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
    /// Our 2xx to a re-INVITE without SDP carries an offer whose answer
    /// comes in the ACK (a new offer from the peer meanwhile: 491).
    pub offer_in_2xx: bool,
    /// UAS: our 2xx, retransmitted until the ACK.
    pub ok: Option<Response>,
    pub retransmit: Option<Backoff>,
    pub ack_deadline: Option<Instant>,
    pub local_sdp: Option<String>,
    /// UAC: the ACK for the 2xx and where it went, resent when the 2xx is
    /// retransmitted.
    pub ack: Option<(Peer, Vec<u8>)>,
    /// The remote SDP's o= line, to tell a re-offer from a refresh.
    pub remote_origin: Option<String>,
    pub reoffer: Option<PendingReoffer>,
    /// RFC 4028: what our 2xx will carry (UAS), then the running timer.
    pub session_expires: Option<(SessionExpires, bool)>,
    pub timer: Option<SessionTimer>,
    /// Set up with a `sips:` URI (RFC 3261 section 12.1.1): our Contact is
    /// a `sips:` URI and every hop we send on is TLS.
    pub secure: bool,
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

    /// Our Contact in a dialog with `peer` (RFC 3261 section 12.1.1: a
    /// `sips:` URI when the dialog was set up with one, with our TLS
    /// address).
    pub(super) fn contact_for(&self, peer: Peer, secure: bool) -> String {
        if secure {
            let tls = Peer {
                transport: Transport::Tls,
                ..peer
            };
            return format!("<sips:rtcgw@{}>", self.local(tls));
        }
        let l = self.local(peer);
        match peer.transport {
            Transport::Udp => format!("<sip:rtcgw@{l}>"),
            Transport::Tcp => format!("<sip:rtcgw@{l};transport=tcp>"),
            Transport::Tls => format!("<sip:rtcgw@{l};transport=tls>"),
        }
    }

    pub(super) fn contact(&self, d: &Dialog) -> String {
        self.contact_for(d.peer, d.secure)
    }

    /// Whether SIP listens on TLS (a `sips:` dialog is possible).
    pub(super) fn has_tls(&self) -> bool {
        self.cfg.local.iter().any(|(t, _)| *t == Transport::Tls)
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
        let peer = self.next_hop(d);
        let local = self.local(peer).to_string();
        self.metrics.request(&method, Direction::Out);
        let key = self.tsx.send_request(now, peer, &local, req);
        self.pump(now);
        key
    }

    /// Next hop of an in-dialog request (RFC 3261 section 8.1.2): the
    /// configured softswitch; else the first Route (loose routing) or the
    /// remote target when it is an IP address; else back where the dialog
    /// came from. The transport is the one the hop's URI asks for (`sips:`,
    /// `transport=`), else the dialog's; always TLS in a `sips:` dialog.
    pub(super) fn next_hop(&self, d: &Dialog) -> Peer {
        let first_hop = d
            .route_set
            .first()
            .and_then(|r| NameAddr::parse(r))
            .map(|n| n.uri);
        let target = first_hop.as_deref().unwrap_or(&d.remote_target);
        let hop = uri_hop(target);
        let (ip, port, transport) = match (self.cfg.next_hop, hop) {
            (Some(h), hop) => (
                h.addr.ip(),
                Some(h.addr.port()),
                h.transport.or(hop.and_then(|h| h.2)),
            ),
            (None, Some(hop)) => hop,
            (None, None) => (d.peer.addr.ip(), Some(d.peer.addr.port()), None),
        };
        // A URI that does not say is UDP (RFC 3263 section 4.1), but back
        // to the peer the dialog came from we keep its transport (a phone
        // on TCP whose Contact has no transport=tcp).
        let toward_peer = ip == d.peer.addr.ip()
            && port.unwrap_or(d.peer.transport.default_port()) == d.peer.addr.port();
        let transport = match (d.secure, transport) {
            (true, _) => Transport::Tls,
            (false, Some(t)) => t,
            (false, None) if toward_peer => d.peer.transport,
            (false, None) => Transport::Udp,
        };
        let addr = SocketAddr::new(ip, port.unwrap_or(transport.default_port()));
        Peer { addr, transport }
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

/// The transport a SIP URI asks for, if it says (RFC 3261 section 19.1.2,
/// RFC 3263 section 4.1): `sips:` is TLS whatever `transport=` says; else
/// `transport=tls`, `tcp`, `udp`. None for `transport=ws` and the like,
/// and when it is silent.
pub fn uri_transport(uri: &SipUri) -> Option<Transport> {
    let param = uri
        .param("transport")
        .flatten()
        .map(str::to_ascii_lowercase);
    match (uri.secure, param.as_deref()) {
        (true, _) => Some(Transport::Tls),
        (false, Some("tls")) => Some(Transport::Tls),
        (false, Some("tcp")) => Some(Transport::Tcp),
        (false, Some("udp")) => Some(Transport::Udp),
        _ => None,
    }
}

/// A SIP URI whose host is an IP literal: the address, the port if it
/// gives one, and the transport it asks for. None for names (no DNS here)
/// and for what is not a SIP URI.
fn uri_hop(uri: &str) -> Option<(IpAddr, Option<u16>, Option<Transport>)> {
    let u = SipUri::parse(uri).ok()?;
    let host = u.host.trim_start_matches('[').trim_end_matches(']');
    Some((host.parse().ok()?, u.port, uri_transport(&u)))
}

/// Where a SIP URI whose host is an IP literal points
/// ("sip:user@192.0.2.1:5070;transport=tcp"): its address (the port
/// defaulting to 5061 for TLS, else 5060) and the transport it asks for.
/// None for names (no DNS here) and for what is not a SIP URI.
pub fn uri_target(uri: &str) -> Option<(SocketAddr, Option<Transport>)> {
    let (ip, port, transport) = uri_hop(uri)?;
    let port = port.unwrap_or(transport.unwrap_or(Transport::Udp).default_port());
    Some((SocketAddr::new(ip, port), transport))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_targets() {
        let t = |u: &str| uri_target(u).map(|(a, t)| (a.to_string(), t));
        assert_eq!(
            t("sip:a@192.0.2.1:5070;transport=tcp"),
            Some(("192.0.2.1:5070".into(), Some(Transport::Tcp)))
        );
        assert_eq!(t("sip:192.0.2.1;lr"), Some(("192.0.2.1:5060".into(), None)));
        assert_eq!(
            t("sip:u@[2001:db8::1]:5080"),
            Some(("[2001:db8::1]:5080".into(), None))
        );
        // TLS: sips: or transport=tls, 5061 when no port is given.
        assert_eq!(
            t("sips:u@192.0.2.1"),
            Some(("192.0.2.1:5061".into(), Some(Transport::Tls)))
        );
        assert_eq!(
            t("sips:u@192.0.2.1:5062;transport=tcp"),
            Some(("192.0.2.1:5062".into(), Some(Transport::Tls)))
        );
        assert_eq!(
            t("sip:192.0.2.1;transport=TLS;lr"),
            Some(("192.0.2.1:5061".into(), Some(Transport::Tls)))
        );
        assert_eq!(
            t("sip:u@192.0.2.1;transport=udp"),
            Some(("192.0.2.1:5060".into(), Some(Transport::Udp)))
        );
        assert_eq!(t("sip:u@192.0.2.1;transport=ws").unwrap().1, None);
        assert_eq!(t("sip:u@proxy.example.com"), None);
        assert_eq!(t("tel:+123"), None);
    }
}
