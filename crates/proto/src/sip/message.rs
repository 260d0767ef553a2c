//! SIP messages at the edge (RFC 3261 sections 7 and 25): a tolerant parser
//! and a serialiser, producing the typed values the state machines use.
//!
//! The parser follows RFC 4475's advice: accept tortuous but valid input
//! (line folding, compact header names, odd whitespace and case, extension
//! methods, unknown headers) and refuse what is invalid, saying why.
//!
//! Why not rsip: rsip 0.4 (the crate named in the design) was measured on
//! RFC 4475 section 3.1.1.1 ("wsinv", valid) and on an extension method
//! ("NEWMETHOD", valid): it rejects both, and it does not expand compact
//! header names (`v:`, `l:`). A gateway must answer such requests, so the
//! edge parser is our own; it is small, fuzzed (fuzz/) and unit-tested.

use std::fmt::{self, Write as _};

/// A SIP method; extension methods are kept by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other(String),
}

impl Method {
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() || !s.bytes().all(is_token_char) {
            return None;
        }
        // Methods are case-sensitive (RFC 3261 section 7.1).
        Some(match s {
            "INVITE" => Self::Invite,
            "ACK" => Self::Ack,
            "BYE" => Self::Bye,
            "CANCEL" => Self::Cancel,
            "OPTIONS" => Self::Options,
            "REGISTER" => Self::Register,
            "INFO" => Self::Info,
            "UPDATE" => Self::Update,
            "PRACK" => Self::Prack,
            "SUBSCRIBE" => Self::Subscribe,
            "NOTIFY" => Self::Notify,
            "REFER" => Self::Refer,
            "MESSAGE" => Self::Message,
            "PUBLISH" => Self::Publish,
            other => Self::Other(other.to_string()),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Options => "OPTIONS",
            Self::Register => "REGISTER",
            Self::Info => "INFO",
            Self::Update => "UPDATE",
            Self::Prack => "PRACK",
            Self::Subscribe => "SUBSCRIBE",
            Self::Notify => "NOTIFY",
            Self::Refer => "REFER",
            Self::Message => "MESSAGE",
            Self::Publish => "PUBLISH",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Header fields in order, with canonical names (compact forms expanded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

const COMPACT: &[(&str, &str)] = &[
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("e", "Content-Encoding"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("f", "From"),
    ("s", "Subject"),
    ("k", "Supported"),
    ("t", "To"),
    ("v", "Via"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("u", "Allow-Events"),
];

const CANONICAL: &[&str] = &[
    "Accept",
    "Allow",
    "Call-ID",
    "Contact",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "From",
    "Max-Forwards",
    "Record-Route",
    "Require",
    "Route",
    "Supported",
    "To",
    "Via",
    "User-Agent",
    "Server",
    "Unsupported",
    "Retry-After",
    "Proxy-Require",
    "Session-Expires",
    "Min-SE",
];

fn canonical_name(name: &str) -> String {
    if name.len() == 1 {
        if let Some((_, long)) = COMPACT.iter().find(|(c, _)| c.eq_ignore_ascii_case(name)) {
            return (*long).to_string();
        }
    }
    CANONICAL
        .iter()
        .find(|c| c.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_string(), |c| (*c).to_string())
}

impl Headers {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, comma-separated lists split (outside quotes
    /// and angle brackets), in order.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| split_list(v))
            .collect()
    }

    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((canonical_name(name), value.into()));
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.push(name, value),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Copies every `name` field from `other`, in order.
    pub fn copy_from(&mut self, other: &Headers, name: &str) {
        for (n, v) in other.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
            self.0.push((n.to_string(), v.to_string()));
        }
    }

    /// Replaces the first value of `name` (e.g. the top Via).
    pub fn replace_first(&mut self, name: &str, value: String) {
        if let Some(slot) = self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            // A field may hold several comma-separated values: only the first changes.
            let mut items = split_list(&slot.1);
            if items.is_empty() {
                slot.1 = value;
            } else {
                items[0] = value;
                slot.1 = items.join(", ");
            }
        }
    }
}

/// Splits a comma-separated header value, respecting quotes and <...>.
pub fn split_list(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut cur, mut quoted, mut angle, mut escaped) = (String::new(), false, false, false);
    for c in v.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// Why a message could not be used. `answerable` says whether enough was
/// understood to send a 400 back (RFC 3261 section 16.3 / 8.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    pub reason: String,
    /// The request as far as it was understood, when a 400 can be sent.
    pub partial: Option<Box<Request>>,
}

impl ParseError {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            partial: None,
        }
    }
}

/// Where the header block ends: the index of the body's first byte.
pub fn header_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The Content-Length of a header block, for stream framing.
pub fn content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let text =
        std::str::from_utf8(head).map_err(|_| ParseError::new("header block is not UTF-8"))?;
    for (name, value) in unfold(text)
        .iter()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
    {
        if canonical_name(name.trim()) == "Content-Length" {
            return value
                .trim()
                .parse::<usize>()
                .map(Some)
                .map_err(|_| ParseError::new(format!("bad Content-Length: {}", value.trim())));
        }
    }
    Ok(None)
}

fn unfold(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.starts_with([' ', '\t']) && !lines.is_empty() {
            let last = lines.last_mut().expect("non-empty");
            last.push(' ');
            last.push_str(line.trim_start());
        } else {
            lines.push(line.to_string());
        }
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

impl Message {
    /// Parses one message. With `datagram`, a body longer than
    /// Content-Length is cut to it (RFC 3261 section 18.3).
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let end = header_end(buf).ok_or_else(|| ParseError::new("no end of headers"))?;
        let head = std::str::from_utf8(&buf[..end])
            .map_err(|_| ParseError::new("header block is not UTF-8"))?;
        let body = &buf[end..];
        let lines = unfold(head);
        let start = lines
            .first()
            .ok_or_else(|| ParseError::new("empty message"))?;
        let mut headers = Headers::default();
        for l in &lines[1..] {
            let Some((name, value)) = l.split_once(':') else {
                return Err(ParseError::new(format!(
                    "header line without colon: {:.40}",
                    l
                )));
            };
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(is_token_char) {
                return Err(ParseError::new(format!("bad header name: {:.40}", name)));
            }
            headers.push(name, value.trim());
        }
        // A bad Content-Length is reported once the request is understood,
        // so that it can still be answered with 400 (RFC 4475 3.1.2.7).
        let (body, body_error) = match headers.get("Content-Length") {
            Some(cl) => match cl.trim().parse::<usize>() {
                Ok(n) if n <= body.len() => (body[..n].to_vec(), None),
                Ok(n) => (
                    Vec::new(),
                    Some(format!(
                        "Content-Length {n} exceeds the {} body bytes received",
                        body.len()
                    )),
                ),
                Err(_) => (Vec::new(), Some(format!("bad Content-Length: {cl}"))),
            },
            None => (body.to_vec(), None),
        };
        let parts: Vec<&str> = start.split_whitespace().collect();
        if start.starts_with("SIP/") {
            if parts.len() < 2 || !parts[0].eq_ignore_ascii_case("SIP/2.0") {
                return Err(ParseError::new(format!("bad status line: {:.60}", start)));
            }
            let status: u16 = parts[1]
                .parse()
                .map_err(|_| ParseError::new(format!("bad status code: {}", parts[1])))?;
            if !(100..=699).contains(&status) {
                return Err(ParseError::new(format!(
                    "status code out of range: {status}"
                )));
            }
            let reason = start.splitn(3, ' ').nth(2).unwrap_or("").trim().to_string();
            let r = Response {
                status,
                reason,
                headers,
                body,
            };
            r.check()?;
            return Ok(Message::Response(r));
        }
        if parts.len() != 3 {
            return Err(ParseError::new(format!("bad request line: {:.60}", start)));
        }
        let method = Method::parse(parts[0])
            .ok_or_else(|| ParseError::new(format!("bad method: {:.20}", parts[0])))?;
        let req = Request {
            method,
            uri: parts[1].to_string(),
            headers,
            body,
        };
        if !parts[2].eq_ignore_ascii_case("SIP/2.0") {
            return Err(req.partial(format!("unsupported version {}", parts[2])));
        }
        if !parts[1].contains(':') {
            return Err(req.partial(format!("bad Request-URI: {:.60}", parts[1])));
        }
        if let Some(e) = body_error {
            return Err(req.partial(e));
        }
        req.check()?;
        Ok(Message::Request(req))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let (start, headers, body) = match self {
            Message::Request(r) => (
                format!("{} {} SIP/2.0", r.method, r.uri),
                &r.headers,
                &r.body,
            ),
            Message::Response(r) => (
                format!("SIP/2.0 {} {}", r.status, r.reason),
                &r.headers,
                &r.body,
            ),
        };
        let mut out = String::with_capacity(512 + body.len());
        out.push_str(&start);
        out.push_str("\r\n");
        for (n, v) in headers.iter().filter(|(n, _)| *n != "Content-Length") {
            let _ = write!(out, "{n}: {v}\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }
}

/// A Via value (RFC 3261 section 20.42), whitespace-tolerant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    pub fn parse(v: &str) -> Option<Self> {
        let (proto, rest) = split_sent_protocol(v)?;
        let mut parts = rest.split(';');
        let sent_by = parts.next()?.trim();
        let (host, port) = split_host_port(sent_by)?;
        let params = parts.map(parse_param).collect();
        Some(Via {
            transport: proto,
            host,
            port,
            params,
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        match self
            .params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.params.push((name.to_string(), value)),
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.sent_by())?;
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

fn split_sent_protocol(v: &str) -> Option<(String, &str)> {
    // "SIP / 2.0 / UDP host" with any whitespace around the slashes.
    let mut rest = v.trim_start();
    let mut fields = Vec::new();
    for i in 0..3 {
        let end = rest
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(rest.len());
        fields.push(&rest[..end]);
        rest = rest[end..].trim_start();
        if i < 2 {
            rest = rest.strip_prefix('/')?.trim_start();
        }
    }
    if !fields[0].eq_ignore_ascii_case("SIP") || fields[1] != "2.0" || fields[2].is_empty() {
        return None;
    }
    Some((fields[2].to_ascii_uppercase(), rest))
}

fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(v6) = s.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        let port = match rest.trim().strip_prefix(':') {
            Some(p) => Some(p.trim().parse().ok()?),
            None => None,
        };
        return Some((format!("[{host}]"), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h.trim().to_string(), Some(p.trim().parse().ok()?))),
        None => Some((s.to_string(), None)),
    }
}

fn parse_param(p: &str) -> (String, Option<String>) {
    match p.split_once('=') {
        Some((n, v)) => (n.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
        None => (p.trim().to_ascii_lowercase(), None),
    }
}

/// A name-addr or addr-spec header value (From, To, Contact, Route...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: String,
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn parse(v: &str) -> Option<Self> {
        let v = v.trim();
        let (display, uri, rest) = if let Some(open) = find_unquoted(v, '<') {
            let close = v[open..].find('>')? + open;
            let display = v[..open].trim().trim_matches('"').trim();
            (
                (!display.is_empty()).then(|| display.to_string()),
                v[open + 1..close].trim().to_string(),
                &v[close + 1..],
            )
        } else {
            // addr-spec: header parameters follow the URI after ';'.
            let (uri, rest) = v.split_once(';').map_or((v, ""), |(u, r)| (u, r));
            (None, uri.trim().to_string(), rest)
        };
        if uri.is_empty() || !uri.contains(':') {
            return None;
        }
        let params = rest
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(parse_param)
            .collect();
        Some(NameAddr {
            display,
            uri,
            params,
        })
    }

    pub fn tag(&self) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == "tag")
            .and_then(|(_, v)| v.as_deref())
    }
}

fn find_unquoted(s: &str, needle: char) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == needle && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Fields every request and response needs, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Core {
    pub via: Via,
    pub from: NameAddr,
    pub to: NameAddr,
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: Method,
}

fn core(h: &Headers) -> Result<Core, String> {
    let via = h.list("Via").into_iter().next().ok_or("missing Via")?;
    let via = Via::parse(&via).ok_or_else(|| format!("bad Via: {:.60}", via))?;
    let from = h.get("From").ok_or("missing From")?;
    let from = NameAddr::parse(from).ok_or_else(|| format!("bad From: {:.60}", from))?;
    let to = h.get("To").ok_or("missing To")?;
    let to = NameAddr::parse(to).ok_or_else(|| format!("bad To: {:.60}", to))?;
    let call_id = h
        .get("Call-ID")
        .filter(|c| !c.is_empty())
        .ok_or("missing Call-ID")?
        .to_string();
    let cseq = h.get("CSeq").ok_or("missing CSeq")?;
    let mut it = cseq.split_whitespace();
    let num = it
        .next()
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or_else(|| format!("bad CSeq: {cseq}"))?;
    let m = it
        .next()
        .and_then(Method::parse)
        .ok_or_else(|| format!("bad CSeq: {cseq}"))?;
    if it.next().is_some() || num >= 1 << 31 {
        return Err(format!("bad CSeq: {cseq}"));
    }
    Ok(Core {
        via,
        from,
        to,
        call_id,
        cseq: num,
        cseq_method: m,
    })
}

impl Request {
    pub fn core(&self) -> Result<Core, String> {
        core(&self.headers)
    }

    fn partial(&self, reason: String) -> ParseError {
        // A 400 needs the fields to copy back; without them, drop.
        let partial = self.core().is_ok().then(|| Box::new(self.clone()));
        ParseError { reason, partial }
    }

    fn check(&self) -> Result<(), ParseError> {
        let c = self
            .core()
            .map_err(|r| ParseError::new(r.clone()).with_partial_if(self, &r))?;
        if c.cseq_method != self.method
            && !(self.method == Method::Ack && c.cseq_method == Method::Invite)
        {
            return Err(self.partial(format!(
                "CSeq method {} does not match {}",
                c.cseq_method, self.method
            )));
        }
        if let Some(mf) = self.headers.get("Max-Forwards")
            && mf.trim().parse::<u8>().is_err()
        {
            return Err(self.partial(format!("bad Max-Forwards: {mf}")));
        }
        Ok(())
    }
}

impl ParseError {
    fn with_partial_if(mut self, req: &Request, _reason: &str) -> Self {
        // Only when the fields a response copies are all present.
        let h = &req.headers;
        if ["Via", "From", "To", "Call-ID", "CSeq"]
            .iter()
            .all(|n| h.get(n).is_some())
        {
            self.partial = Some(Box::new(req.clone()));
        }
        self
    }
}

impl Response {
    pub fn core(&self) -> Result<Core, String> {
        core(&self.headers)
    }

    fn check(&self) -> Result<(), ParseError> {
        self.core().map(|_| ()).map_err(ParseError::new)
    }

    /// A response to `req` (RFC 3261 section 8.2.6): Via, From, To, Call-ID
    /// and CSeq copied; a To tag added when given and absent.
    pub fn to(req: &Request, status: u16, reason: &str, to_tag: Option<&str>) -> Self {
        let mut headers = Headers::default();
        headers.copy_from(&req.headers, "Via");
        headers.copy_from(&req.headers, "From");
        let mut to = req.headers.get("To").unwrap_or_default().to_string();
        if let Some(tag) = to_tag
            && NameAddr::parse(&to).is_some_and(|n| n.tag().is_none())
        {
            to.push_str(";tag=");
            to.push_str(tag);
        }
        headers.push("To", to);
        headers.copy_from(&req.headers, "Call-ID");
        headers.copy_from(&req.headers, "CSeq");
        Response {
            status,
            reason: reason.to_string(),
            headers,
            body: Vec::new(),
        }
    }
}

/// Standard reason phrases for the codes rtcgw sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        420 => "Bad Extension",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4475 section 3.1.1.1, "wsinv": valid, however it looks.
    const WSINV: &str = concat!(
        "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n",
        "TO :\r\n",
        " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n",
        "from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n",
        "  ;\r\n",
        "  tag = 98asjd8\r\n",
        "MaX-fOrWaRdS: 0068\r\n",
        "Call-ID: wsinv.ndaksdj@192.0.2.1\r\n",
        "Content-Length   : 150\r\n",
        "cseq: 0009\r\n",
        "  INVITE\r\n",
        "Via  : SIP  /   2.0\r\n",
        "  /UDP\r\n",
        "    192.0.2.2;branch=390skdjuw\r\n",
        "s :\r\n",
        "NewFangledHeader:   newfangled value\r\n",
        " continued newfangled value\r\n",
        "UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n",
        "Content-Type: application/sdp\r\n",
        "Route:\r\n",
        " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n",
        "v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n",
        "  branch  =   z9hG4bK9ikj8  ,\r\n",
        " SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n",
        " z9hG4bK30239\r\n",
        "m:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n",
        "      newvalue ;\r\n",
        "  secondparam ; q = 0.33\r\n",
        "\r\n",
        "v=0\r\n",
        "o=mhandley 29739 7272939 IN IP4 192.0.2.3\r\n",
        "s=-\r\n",
        "c=IN IP4 192.0.2.4\r\n",
        "t=0 0\r\n",
        "m=audio 49217 RTP/AVP 0 12\r\n",
        "m=video 3227 RTP/AVP 31\r\n",
        "a=rtpmap:31 LPC\r\n",
    );

    #[test]
    fn accepts_rfc4475_wsinv() {
        let Message::Request(r) = Message::parse(WSINV.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(r.method, Method::Invite);
        let c = r.core().unwrap();
        assert_eq!(c.cseq, 9);
        assert_eq!(c.to.tag(), Some("1918181833n"));
        assert_eq!(c.from.tag(), Some("98asjd8"));
        assert_eq!(c.via.host, "192.0.2.2");
        assert_eq!(c.via.branch(), Some("390skdjuw"));
        let vias = r.headers.list("Via");
        assert_eq!(vias.len(), 3);
        assert_eq!(Via::parse(&vias[1]).unwrap().branch(), Some("z9hG4bK9ikj8"));
        assert_eq!(r.body.len(), 150);
    }

    #[test]
    fn extension_method_and_compact_forms() {
        let m = "NEWMETHOD sip:user@example.com SIP/2.0\r\nt: sip:j.user@example.com\r\n\
f: sip:caller@example.net;tag=34525\r\nMax-Forwards: 6\r\ni: unkmeth@example.com\r\n\
CSeq: 8 NEWMETHOD\r\nv: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw\r\nl: 0\r\n\r\n";
        let Message::Request(r) = Message::parse(m.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(r.method, Method::Other("NEWMETHOD".into()));
        assert_eq!(r.core().unwrap().call_id, "unkmeth@example.com");
        assert_eq!(r.core().unwrap().from.tag(), Some("34525"));
    }

    #[test]
    fn invalid_messages_say_why() {
        let base = "OPTIONS sip:u@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n\
To: <sip:u@h>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n";
        let err = |s: String| Message::parse(s.as_bytes()).unwrap_err();
        // Content-Length larger than the body (RFC 4475 3.1.2.7): answerable.
        let e = err(format!("{base}Content-Length: 10\r\n\r\nabc"));
        assert!(e.reason.contains("exceeds") && e.partial.is_some());
        let e = err(base.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE") + "\r\n");
        assert!(e.reason.contains("does not match") && e.partial.is_some());
        let e = err(base.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia") + "\r\n");
        assert!(e.reason.contains("version") && e.partial.is_some());
        let e = err(base.replace("Call-ID: x\r\n", "") + "\r\n");
        assert_eq!(e.reason, "missing Call-ID");
        assert!(e.partial.is_none(), "no Call-ID to copy back: drop");
        assert!(Message::parse(b"\x00\x01garbage\r\n\r\n").is_err());
        assert!(Message::parse(b"SIP/2.0 999 Nope\r\n\r\n").is_err());
    }

    #[test]
    fn serialises_with_content_length() {
        let m = "OPTIONS sip:u@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n\
To: <sip:u@h>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let Message::Request(r) = Message::parse(m.as_bytes()).unwrap() else {
            panic!()
        };
        let resp = Response::to(&r, 200, "OK", Some("abc"));
        let bytes = Message::Response(resp).to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"));
        assert!(text.contains("To: <sip:u@h>;tag=abc\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        assert!(matches!(Message::parse(&bytes), Ok(Message::Response(_))));
    }
}
