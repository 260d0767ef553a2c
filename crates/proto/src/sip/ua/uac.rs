//! The UAC side of a call (RFC 3261 sections 13.2 and 9.1): the gateway's
//! outbound INVITE (a B2BUA's second leg), its provisional and final
//! responses, the ACK for a 2xx, and CANCEL by [`UserAgent::hangup`].

use std::time::Instant;

use super::dialog::{Dialog, DialogKey, DialogState};
use super::{ALLOW, DialogRef, Outgoing, UaEvent, UserAgent, origin};
use crate::sip::message::{Headers, Message, Method, NameAddr, Request, Response};
use crate::sip::metrics::Direction;
use crate::sip::session_timer::{Refresher, SessionExpires, SessionTimer};
use crate::sip::tsx::{Peer, Transport};
use crate::sip::uri::SipUri;

/// What an outbound INVITE says about its caller and carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundInvite {
    /// The Request-URI (and To).
    pub uri: String,
    /// The From user part; the host is ours (the dialog is ours).
    pub from_user: String,
    /// The From display name, quoted as needed.
    pub from_display: Option<String>,
    /// RFC 3325 P-Asserted-Identity to pass on (to a trusted next hop).
    pub asserted_identity: Option<String>,
    /// RFC 3323 Privacy to pass on with it.
    pub privacy: Option<String>,
    pub sdp: String,
}

/// A display name as a quoted-string (RFC 3261 section 25.1).
fn quoted(display: &str) -> String {
    let mut out = String::with_capacity(display.len() + 2);
    out.push('"');
    for c in display.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A user part as it may stand in a SIP URI: unreserved and user-unreserved
/// characters as they are, everything else %-escaped (section 25.1).
fn escape_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for b in user.bytes() {
        let ok = b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/%".contains(&b);
        if ok {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl UserAgent {
    /// Starts an outbound call (UAC, RFC 3261 section 13.2): an INVITE with
    /// the offer to `inv.uri`, sent to the next hop (configured, else the
    /// URI's IP). None when there is nowhere to send it.
    pub fn invite(&mut self, now: Instant, inv: OutboundInvite) -> Option<DialogRef> {
        let uri = SipUri::parse(&inv.uri).ok();
        let (addr, hop_transport) = match self.cfg.next_hop {
            Some(h) => (h.addr, h.transport),
            None => (super::uri_target(&inv.uri)?.0, None),
        };
        // A sips: URI is TLS on every hop (RFC 3261 section 26.2).
        let secure = uri.as_ref().is_some_and(|u| u.secure);
        let transport = if secure {
            Transport::Tls
        } else {
            hop_transport
                .or_else(|| uri.as_ref().and_then(super::uri_transport))
                .unwrap_or(Transport::Udp)
        };
        let peer = Peer { addr, transport };
        if transport == Transport::Tls && !self.has_tls() {
            // Via and Contact would name a TLS address we do not have.
            tracing::warn!(uri = %inv.uri, "SIP over TLS needs sip.tls_listen: call not placed");
            return None;
        }
        let local = self.local(peer);
        let local_tag = self.new_tag();
        let call_id = format!("{}-{:x}@rtcgw", self.new_tag(), self.cfg.branch_salt);
        let user = escape_user(&inv.from_user);
        let local_uri = match inv.from_display.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => format!("{} <sip:{user}@{local}>", quoted(d)),
            None => format!("<sip:{user}@{local}>"),
        };
        let mut h = Headers::default();
        h.push("From", format!("{local_uri};tag={local_tag}"));
        h.push("To", format!("<{}>", inv.uri));
        h.push("Call-ID", call_id.clone());
        h.push("CSeq", "1 INVITE");
        h.push("Max-Forwards", "70");
        h.push("Contact", self.contact_for(peer, secure));
        h.push("Allow", ALLOW);
        h.push("User-Agent", self.cfg.user_agent.clone());
        if let Some(pai) = &inv.asserted_identity {
            h.push("P-Asserted-Identity", pai.clone());
            if let Some(p) = &inv.privacy {
                h.push("Privacy", p.clone());
            }
        }
        if let Some(st) = self.cfg.session_timer {
            // We offer to refresh (RFC 4028 section 7.1); the callee decides.
            h.push("Supported", "timer");
            h.push("Session-Expires", st.expires.to_string());
            h.push("Min-SE", st.min_se.to_string());
        }
        h.push("Content-Type", "application/sdp");
        let req = Request {
            method: Method::Invite,
            uri: inv.uri.clone(),
            headers: h,
            body: inv.sdp.clone().into_bytes(),
        };
        self.metrics.request(&Method::Invite, Direction::Out);
        let key = self.tsx.send_request(now, peer, &local.to_string(), req);
        let id = self.next_ref();
        self.insert(
            id,
            Dialog {
                state: DialogState::Outgoing,
                invite_tsx: key,
                peer,
                key: DialogKey {
                    call_id,
                    local_tag,
                    remote_tag: String::new(),
                },
                remote_uri: format!("<{}>", inv.uri),
                local_uri,
                remote_target: inv.uri,
                route_set: Vec::new(),
                local_cseq: 1,
                remote_cseq: 0,
                invite_cseq: 1,
                late_offer: false,
                offer_in_2xx: false,
                ok: None,
                retransmit: None,
                ack_deadline: None,
                local_sdp: Some(inv.sdp),
                ack: None,
                remote_origin: None,
                reoffer: None,
                session_expires: None,
                timer: None,
                secure,
            },
        );
        self.pump(now);
        Some(id)
    }

    pub(super) fn handle_uac_response(&mut self, now: Instant, id: DialogRef, resp: Response) {
        let body = (!resp.body.is_empty()).then(|| String::from_utf8_lossy(&resp.body).to_string());
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        let cancelling = d.state == DialogState::Cancelling;
        match resp.status {
            100..=199 => {
                if resp.status > 100 && !cancelling {
                    self.events.push_back(UaEvent::Progress {
                        dialog: id,
                        status: resp.status,
                        sdp: body,
                    });
                }
            }
            200..=299 => {
                if matches!(d.state, DialogState::Outgoing | DialogState::Cancelling) {
                    let to = resp.headers.get("To").unwrap_or_default().to_string();
                    d.key.remote_tag = NameAddr::parse(&to)
                        .and_then(|n| n.tag().map(str::to_string))
                        .unwrap_or_default();
                    d.remote_uri = to;
                    if let Some(contact) = resp
                        .headers
                        .list("Contact")
                        .first()
                        .and_then(|c| NameAddr::parse(c))
                    {
                        d.remote_target = contact.uri;
                    }
                    // UAC: the route set is Record-Route in reverse (12.1.2).
                    d.route_set = resp
                        .headers
                        .list("Record-Route")
                        .into_iter()
                        .rev()
                        .collect();
                    d.state = DialogState::Confirmed;
                    d.remote_origin = body.as_deref().and_then(origin);
                    // RFC 4028 section 7.2: the 2xx names the refresher;
                    // none: no timer.
                    if self.cfg.session_timer.is_some()
                        && let Some(se) = resp
                            .headers
                            .get("Session-Expires")
                            .and_then(SessionExpires::parse)
                    {
                        let we = se.refresher.unwrap_or(Refresher::Uac) == Refresher::Uac;
                        d.timer = Some(SessionTimer::new(now, se.interval, we));
                    }
                    let key = d.key.clone();
                    self.by_key.insert(key, id);
                    let (peer, ack) = self.build_ack(id);
                    let d = self.dialogs.get_mut(&id).expect("present");
                    d.ack = Some((peer, ack.clone()));
                    self.out.push_back(Outgoing { peer, bytes: ack });
                    if cancelling {
                        // The 2xx crossed our CANCEL: end the dialog it made.
                        self.hangup(now, id);
                    } else {
                        self.events.push_back(UaEvent::Accepted {
                            dialog: id,
                            sdp: body,
                        });
                    }
                } else if let Some((peer, ack)) = d.ack.clone() {
                    // A retransmitted 2xx: the same ACK again.
                    self.out.push_back(Outgoing { peer, bytes: ack });
                }
            }
            _ => {
                self.remove(id);
                if !cancelling {
                    self.events.push_back(UaEvent::Rejected {
                        dialog: id,
                        status: resp.status,
                        reason: resp.reason,
                    });
                }
            }
        }
    }

    /// The ACK for a 2xx (section 13.2.2.4): its own branch, the dialog's
    /// route set and tags, the INVITE's CSeq number; sent like any request
    /// in the dialog (to its first route).
    fn build_ack(&mut self, id: DialogRef) -> (Peer, Vec<u8>) {
        let branch = self.tsx.new_branch();
        let d = &self.dialogs[&id];
        let peer = self.next_hop(d);
        let local = self.local(peer);
        let mut h = Headers::default();
        h.push(
            "Via",
            format!(
                "SIP/2.0/{} {local};branch={branch};rport",
                peer.transport.as_str()
            ),
        );
        for r in &d.route_set {
            h.push("Route", r.clone());
        }
        h.push("From", format!("{};tag={}", d.local_uri, d.key.local_tag));
        h.push("To", d.remote_uri.clone());
        h.push("Call-ID", d.key.call_id.clone());
        h.push("CSeq", format!("{} ACK", d.invite_cseq));
        h.push("Max-Forwards", "70");
        let ack = Message::Request(Request {
            method: Method::Ack,
            uri: d.remote_target.clone(),
            headers: h,
            body: Vec::new(),
        });
        (peer, ack.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_and_users_are_escaped() {
        assert_eq!(quoted("Alice \"A\" \\ B"), r#""Alice \"A\" \\ B""#);
        assert_eq!(quoted("Bob\r\nEvil: x"), "\"BobEvil: x\"");
        assert_eq!(escape_user("+49 30"), "+49%2030");
        assert_eq!(escape_user("al<ice>@x"), "al%3Cice%3E%40x");
    }
}
