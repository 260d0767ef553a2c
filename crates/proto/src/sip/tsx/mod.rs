//! SIP transactions (RFC 3261 section 17, with RFC 6026's Accepted state),
//! sans-IO. [`Transactions`] matches messages to transactions and runs their
//! timers; each kind's state machine lives in its own file.
//!
//! Drive it like this (the driver owns sockets and the clock):
//! ```text
//! loop {
//!     // input: a parsed message from `peer`, or a timeout
//!     tsx.handle_request(now, peer, req) / tsx.handle_response(now, resp) / tsx.handle_timeout(now)
//!     while let Some(t) = tsx.poll_transmit() { send t.msg to t.peer }
//!     while let Some(e) = tsx.poll_event() { the TU reacts }
//!     sleep until tsx.poll_timeout()
//! }
//! ```

mod client_invite;
mod client_non_invite;
mod server_invite;
mod server_non_invite;

use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::message::{Message, Method, Request, Response};

pub use client_invite::ClientInvite;
pub use client_non_invite::ClientNonInvite;
pub use server_invite::ServerInvite;
pub use server_non_invite::ServerNonInvite;

/// RFC 3261's timer base values, in one place (section 17.1.1.1, table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate: first retransmission interval.
    pub t1: Duration,
    /// Longest retransmission interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// How long a message may remain in the network.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64*T1: timers B, F, H, J, L, M.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// TLS over TCP (RFC 3261 section 26.2; `sips:` and `transport=tls`).
    Tls,
}

impl Transport {
    /// Reliable transports need no retransmissions and no wait states.
    pub fn reliable(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The port a URI without one means (RFC 3263 section 4.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
}

/// Where a message came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: SocketAddr,
    pub transport: Transport,
}

/// Identifies a transaction (section 17.1.3 and 17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TsxKey {
    /// RFC 3261: the top Via's branch (magic cookie), sent-by and method.
    /// ACK is matched as INVITE; CANCEL is its own transaction.
    Branch {
        branch: String,
        sent_by: String,
        method: Method,
        server: bool,
    },
    /// RFC 2543 fallback (no magic cookie): Request-URI, From tag, Call-ID,
    /// CSeq number, top Via and method.
    Rfc2543 {
        uri: String,
        from_tag: String,
        call_id: String,
        cseq: u32,
        via: String,
        method: Method,
    },
}

const MAGIC: &str = "z9hG4bK";

impl TsxKey {
    /// The server transaction a request belongs to.
    pub fn for_request(req: &Request) -> Result<Self, String> {
        let c = req.core()?;
        let method = match &req.method {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        Ok(match c.via.branch() {
            Some(b) if b.starts_with(MAGIC) => TsxKey::Branch {
                branch: b.to_string(),
                sent_by: c.via.sent_by().to_ascii_lowercase(),
                method,
                server: true,
            },
            _ => TsxKey::Rfc2543 {
                // The ACK for a non-2xx carries the INVITE's Request-URI, so it matches.
                uri: req.uri.clone(),
                from_tag: c.from.tag().unwrap_or_default().to_string(),
                call_id: c.call_id,
                cseq: c.cseq,
                via: c.via.to_string(),
                method,
            },
        })
    }

    /// The client transaction a response belongs to (section 17.1.3).
    pub fn for_response(resp: &Response) -> Result<Self, String> {
        let c = resp.core()?;
        let branch = c
            .via
            .branch()
            .ok_or("response Via has no branch")?
            .to_string();
        Ok(TsxKey::Branch {
            branch,
            sent_by: String::new(),
            method: c.cseq_method,
            server: false,
        })
    }

    fn client(branch: &str, method: &Method) -> Self {
        TsxKey::Branch {
            branch: branch.to_string(),
            sent_by: String::new(),
            method: method.clone(),
            server: false,
        }
    }

    /// The INVITE server transaction a CANCEL refers to (section 9.2).
    pub fn invite_for_cancel(&self) -> Option<Self> {
        match self {
            TsxKey::Branch {
                branch,
                sent_by,
                method: Method::Cancel,
                server: true,
            } => Some(TsxKey::Branch {
                branch: branch.clone(),
                sent_by: sent_by.clone(),
                method: Method::Invite,
                server: true,
            }),
            TsxKey::Rfc2543 {
                uri,
                from_tag,
                call_id,
                cseq,
                via,
                method: Method::Cancel,
            } => Some(TsxKey::Rfc2543 {
                uri: uri.clone(),
                from_tag: from_tag.clone(),
                call_id: call_id.clone(),
                cseq: *cseq,
                via: via.clone(),
                method: Method::Invite,
            }),
            _ => None,
        }
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub peer: Peer,
    pub msg: Message,
}

/// What transactions tell the transaction user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsxEvent {
    /// A response for a client transaction.
    Response { key: TsxKey, response: Response },
    /// Timer B/F (client: no final response) or H (server: no ACK).
    Timeout { key: TsxKey },
    /// The transaction is gone (its key may be reused).
    Terminated { key: TsxKey },
}

/// What became of a received request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A new server transaction: the TU must respond to it.
    New(TsxKey),
    /// A retransmission, or an ACK for a non-2xx final: absorbed.
    Absorbed,
    /// An ACK matching no transaction (the ACK for a 2xx): the TU's.
    Ack,
    /// A merged request (section 8.2.2.2): answered 482 here.
    Merged,
}

/// Output sink shared by the state machines.
#[derive(Debug, Default)]
pub(crate) struct Out {
    pub transmits: VecDeque<Transmit>,
    pub events: VecDeque<TsxEvent>,
}

impl Out {
    pub fn transmit(&mut self, peer: Peer, msg: Message) {
        self.transmits.push_back(Transmit { peer, msg });
    }

    /// Timer B, F or H fired for `key`.
    pub fn timeout(&mut self, key: &TsxKey) {
        self.events
            .push_back(TsxEvent::Timeout { key: key.clone() });
    }
}

/// A retransmission timer that doubles up to a cap (timers A, E, G).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub at: Instant,
    pub interval: Duration,
    pub cap: Option<Duration>,
}

impl Backoff {
    pub fn new(now: Instant, first: Duration, cap: Option<Duration>) -> Self {
        Self {
            at: now + first,
            interval: first,
            cap,
        }
    }

    /// Schedules the next firing after one at `now`.
    pub fn fire(&mut self, now: Instant) {
        self.interval *= 2;
        if let Some(cap) = self.cap {
            self.interval = self.interval.min(cap);
        }
        self.at = now + self.interval;
    }
}

fn earliest(times: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    times.into_iter().flatten().min()
}

/// One transaction of any kind (the names are RFC 3261's).
#[allow(clippy::enum_variant_names)]
enum Tsx {
    ServerInvite(ServerInvite),
    ServerNonInvite(ServerNonInvite),
    ClientInvite(ClientInvite),
    ClientNonInvite(ClientNonInvite),
}

impl Tsx {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Tsx::ServerInvite(t) => t.poll_timeout(),
            Tsx::ServerNonInvite(t) => t.poll_timeout(),
            Tsx::ClientInvite(t) => t.poll_timeout(),
            Tsx::ClientNonInvite(t) => t.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Out) {
        match self {
            Tsx::ServerInvite(t) => t.handle_timeout(now, out),
            Tsx::ServerNonInvite(t) => t.handle_timeout(now, out),
            Tsx::ClientInvite(t) => t.handle_timeout(now, out),
            Tsx::ClientNonInvite(t) => t.handle_timeout(now, out),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Tsx::ServerInvite(t) => t.is_terminated(),
            Tsx::ServerNonInvite(t) => t.is_terminated(),
            Tsx::ClientInvite(t) => t.is_terminated(),
            Tsx::ClientNonInvite(t) => t.is_terminated(),
        }
    }
}

/// A deadline in the timer heap; stale entries (the transaction moved on
/// or is gone) are skipped when they surface.
struct Due(Instant, TsxKey);

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.cmp(&self.0) // earliest first
    }
}

type MergeKey = (String, String, u32, Method);

/// All transactions of one SIP endpoint. Timers sit in a heap, so finding
/// the next deadline does not walk every transaction (thousands linger in
/// their wait states at a few hundred calls per second).
pub struct Transactions {
    timers: Timers,
    tsx: HashMap<TsxKey, Tsx>,
    due: BinaryHeap<Due>,
    /// (From tag, Call-ID, CSeq, method) of server transactions without To
    /// tag, for merged-request detection, and the reverse for cleanup.
    merge_index: HashMap<MergeKey, TsxKey>,
    merge_of: HashMap<TsxKey, MergeKey>,
    out: Out,
    branch_seq: u64,
    branch_salt: u64,
    /// INVITEs to CANCEL once their first provisional response comes
    /// (section 9.1: a CANCEL must not be sent before one).
    deferred_cancels: HashSet<TsxKey>,
}

impl Transactions {
    pub fn new(timers: Timers, branch_salt: u64) -> Self {
        Self {
            timers,
            tsx: HashMap::new(),
            due: BinaryHeap::new(),
            merge_index: HashMap::new(),
            merge_of: HashMap::new(),
            out: Out::default(),
            branch_seq: 0,
            branch_salt,
            deferred_cancels: HashSet::new(),
        }
    }

    pub fn timers(&self) -> Timers {
        self.timers
    }

    pub fn len(&self) -> usize {
        self.tsx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tsx.is_empty()
    }

    /// A fresh RFC 3261 branch.
    pub fn new_branch(&mut self) -> String {
        self.branch_seq += 1;
        format!("{MAGIC}{:x}{:06x}", self.branch_salt, self.branch_seq)
    }

    /// Puts a transaction's next deadline in the heap.
    fn schedule(&mut self, key: &TsxKey) {
        if let Some(t) = self.tsx.get(key).and_then(Tsx::poll_timeout) {
            self.due.push(Due(t, key.clone()));
        }
    }

    fn insert(&mut self, key: TsxKey, tsx: Tsx) {
        self.tsx.insert(key.clone(), tsx);
        self.schedule(&key);
    }

    /// Matches a received request to a server transaction, creating one
    /// when it is new.
    pub fn handle_request(
        &mut self,
        now: Instant,
        peer: Peer,
        req: Request,
    ) -> Result<Received, String> {
        let key = TsxKey::for_request(&req)?;
        match self.tsx.get_mut(&key) {
            Some(Tsx::ServerInvite(t)) => t.handle_request(now, &req, &mut self.out),
            Some(Tsx::ServerNonInvite(t)) => t.handle_request(&req, &mut self.out),
            _ => {
                if req.method == Method::Ack {
                    return Ok(Received::Ack);
                }
                return self.new_server(now, peer, key, req);
            }
        }
        self.schedule(&key);
        Ok(Received::Absorbed)
    }

    fn new_server(
        &mut self,
        now: Instant,
        peer: Peer,
        key: TsxKey,
        req: Request,
    ) -> Result<Received, String> {
        let c = req.core()?;
        if c.to.tag().is_none() {
            let mk = (
                c.from.tag().unwrap_or_default().to_string(),
                c.call_id.clone(),
                c.cseq,
                req.method.clone(),
            );
            if let Some(other) = self.merge_index.get(&mk)
                && *other != key
                && self.tsx.contains_key(other)
            {
                let resp = Response::to(&req, 482, "Loop Detected", None);
                self.out.transmit(peer, Message::Response(resp));
                return Ok(Received::Merged);
            }
            self.merge_index.insert(mk.clone(), key.clone());
            self.merge_of.insert(key.clone(), mk);
        }
        let tsx = if req.method == Method::Invite {
            Tsx::ServerInvite(ServerInvite::new(
                now,
                key.clone(),
                peer,
                req,
                self.timers,
                &mut self.out,
            ))
        } else {
            Tsx::ServerNonInvite(ServerNonInvite::new(key.clone(), peer, req, self.timers))
        };
        self.insert(key.clone(), tsx);
        Ok(Received::New(key))
    }

    /// The request that created a server transaction.
    pub fn request(&self, key: &TsxKey) -> Option<&Request> {
        match self.tsx.get(key)? {
            Tsx::ServerInvite(t) => Some(t.request()),
            Tsx::ServerNonInvite(t) => Some(t.request()),
            _ => None,
        }
    }

    pub fn peer(&self, key: &TsxKey) -> Option<Peer> {
        match self.tsx.get(key)? {
            Tsx::ServerInvite(t) => Some(t.peer()),
            Tsx::ServerNonInvite(t) => Some(t.peer()),
            _ => None,
        }
    }

    /// Whether a server INVITE transaction still awaits a final response.
    pub fn is_proceeding(&self, key: &TsxKey) -> bool {
        matches!(self.tsx.get(key), Some(Tsx::ServerInvite(t)) if t.is_proceeding())
    }

    /// Sends a response through its server transaction. False when there is
    /// no such transaction or it already has a final response.
    pub fn send_response(&mut self, now: Instant, key: &TsxKey, resp: Response) -> bool {
        let sent = match self.tsx.get_mut(key) {
            Some(Tsx::ServerInvite(t)) => t.send_response(now, resp, &mut self.out),
            Some(Tsx::ServerNonInvite(t)) => t.send_response(now, resp, &mut self.out),
            _ => false,
        };
        self.schedule(key);
        sent
    }

    /// Starts a client transaction: puts our Via (sent-by `local`, a fresh
    /// branch) on top and sends.
    pub fn send_request(
        &mut self,
        now: Instant,
        peer: Peer,
        local: &str,
        mut req: Request,
    ) -> TsxKey {
        let branch = self.new_branch();
        let mut headers = super::message::Headers::default();
        headers.push(
            "Via",
            format!(
                "SIP/2.0/{} {local};branch={branch};rport",
                peer.transport.as_str()
            ),
        );
        for (n, v) in req.headers.iter() {
            headers.push(n, v);
        }
        req.headers = headers;
        let key = TsxKey::client(&branch, &req.method);
        let tsx = if req.method == Method::Invite {
            Tsx::ClientInvite(ClientInvite::new(
                now,
                key.clone(),
                peer,
                req,
                self.timers,
                &mut self.out,
            ))
        } else {
            Tsx::ClientNonInvite(ClientNonInvite::new(
                now,
                key.clone(),
                peer,
                req,
                self.timers,
                &mut self.out,
            ))
        };
        self.insert(key.clone(), tsx);
        key
    }

    /// Cancels a pending client INVITE (RFC 3261 section 9.1): a CANCEL
    /// with the INVITE's Request-URI, top Via (branch), Call-ID, From, To and
    /// CSeq number, in its own non-INVITE transaction. False when the INVITE
    /// already has a final response.
    pub fn send_cancel(&mut self, now: Instant, invite: &TsxKey) -> bool {
        let Some(Tsx::ClientInvite(t)) = self.tsx.get_mut(invite) else {
            return false;
        };
        if !t.is_pending() {
            return false;
        }
        // The give-up clock starts now either way (Timer B still ends an
        // INVITE that never got any response).
        t.cancel_sent(now);
        if t.state() == client_invite::State::Calling {
            self.deferred_cancels.insert(invite.clone());
            self.schedule(invite);
            return true;
        }
        self.emit_cancel(now, invite)
    }

    /// Builds the CANCEL for a pending INVITE and starts its transaction.
    fn emit_cancel(&mut self, now: Instant, invite: &TsxKey) -> bool {
        let Some(Tsx::ClientInvite(t)) = self.tsx.get(invite) else {
            return false;
        };
        let (inv, peer) = (t.request().clone(), t.peer());
        let mut h = super::message::Headers::default();
        if let Some(via) = inv.headers.list("Via").into_iter().next() {
            h.push("Via", via);
        }
        h.copy_from(&inv.headers, "Route");
        h.copy_from(&inv.headers, "From");
        h.copy_from(&inv.headers, "To");
        h.copy_from(&inv.headers, "Call-ID");
        let cseq = inv.core().map(|c| c.cseq).unwrap_or(1);
        h.push("CSeq", format!("{cseq} CANCEL"));
        h.push("Max-Forwards", "70");
        let cancel = Request {
            method: Method::Cancel,
            uri: inv.uri.clone(),
            headers: h,
            body: Vec::new(),
        };
        let TsxKey::Branch { branch, .. } = invite else {
            return false;
        };
        self.schedule(invite);
        let key = TsxKey::client(branch, &Method::Cancel);
        let tsx = Tsx::ClientNonInvite(ClientNonInvite::new(
            now,
            key.clone(),
            peer,
            cancel,
            self.timers,
            &mut self.out,
        ));
        self.insert(key, tsx);
        true
    }

    /// Matches a response to its client transaction. False: stray (no such
    /// transaction); the TU may still want it (a 2xx retransmission).
    pub fn handle_response(&mut self, now: Instant, resp: Response) -> bool {
        let Ok(key) = TsxKey::for_response(&resp) else {
            return false;
        };
        let status = resp.status;
        match self.tsx.get_mut(&key) {
            Some(Tsx::ClientInvite(t)) => t.handle_response(now, resp, &mut self.out),
            Some(Tsx::ClientNonInvite(t)) => t.handle_response(now, resp, &mut self.out),
            _ => return false,
        }
        self.schedule(&key);
        if self.deferred_cancels.remove(&key) && (100..200).contains(&status) {
            self.emit_cancel(now, &key);
        }
        true
    }

    /// A fatal transport error toward `peer` (a connection to it could not
    /// be opened): each client transaction to it that nothing has answered
    /// yet ends as if answered 503 (RFC 3261 section 8.1.3.1), at once
    /// rather than at Timer B or F. One that got a provisional response
    /// went out on an earlier connection and is left to its timers.
    pub fn transport_error(&mut self, peer: Peer) {
        let failed: Vec<(TsxKey, Request)> = self
            .tsx
            .iter()
            .filter_map(|(k, t)| match t {
                Tsx::ClientInvite(c)
                    if c.peer() == peer && c.state() == client_invite::State::Calling =>
                {
                    Some((k.clone(), c.request().clone()))
                }
                Tsx::ClientNonInvite(c)
                    if c.peer() == peer && c.state() == client_non_invite::State::Trying =>
                {
                    Some((k.clone(), c.request().clone()))
                }
                _ => None,
            })
            .collect();
        for (key, req) in failed {
            self.tsx.remove(&key);
            self.deferred_cancels.remove(&key);
            let response = Response::to(&req, 503, "Service Unavailable", None);
            self.out.events.push_back(TsxEvent::Response {
                key: key.clone(),
                response,
            });
            self.out.events.push_back(TsxEvent::Terminated { key });
        }
    }

    /// Fires every timer due by `now`; terminated transactions are removed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut fired = Vec::new();
        while self.due.peek().is_some_and(|d| d.0 <= now) {
            fired.push(self.due.pop().expect("peeked").1);
        }
        let mut seen = std::collections::HashSet::new();
        fired.retain(|k| seen.insert(k.clone()));
        for key in fired {
            let Some(tsx) = self.tsx.get_mut(&key) else {
                continue;
            };
            if tsx.poll_timeout().is_some_and(|t| t <= now) {
                tsx.handle_timeout(now, &mut self.out);
            }
            if tsx.is_terminated() {
                self.tsx.remove(&key);
                self.deferred_cancels.remove(&key);
                if let Some(mk) = self.merge_of.remove(&key) {
                    self.merge_index.remove(&mk);
                }
                self.out.events.push_back(TsxEvent::Terminated { key });
            } else {
                self.schedule(&key);
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TsxEvent> {
        self.out.events.pop_front()
    }

    /// The earliest deadline (drops stale heap entries on the way).
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Due(t, key)) = self.due.peek() {
            match self.tsx.get(key).and_then(Tsx::poll_timeout) {
                Some(current) if current == *t => return Some(*t),
                // Moved later (or gone): this entry is stale; the live
                // deadline has its own entry.
                _ => {
                    self.due.pop();
                }
            }
        }
        None
    }
}
