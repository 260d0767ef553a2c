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

use super::uri;

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

/// Why a message could not be used. `partial` says whether enough was
/// understood to answer it (RFC 3261 sections 8.2 and 16.3), `status` with
/// what: 400, or 505 for a SIP version other than 2.0 (section 8.2.2 /
/// 21.5.7, RFC 4475 section 3.1.2.16).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    pub reason: String,
    /// The status code to answer `partial` with.
    pub status: u16,
    /// The request as far as it was understood, when it can be answered.
    pub partial: Option<Box<Request>>,
}

impl ParseError {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            status: 400,
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

/// SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT (case-insensitive).
fn is_sip_version(v: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
        && v[4..]
            .split_once('.')
            .is_some_and(|(major, minor)| digits(major) && digits(minor))
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
        // Request-Line = Method SP Request-URI SP SIP-Version CRLF (section
        // 7.1). It is read leniently first (method, URI, version) so that a
        // malformed one can still be answered.
        if parts.len() < 3 {
            return Err(ParseError::new(format!("bad request line: {:.60}", start)));
        }
        let method = Method::parse(parts[0])
            .ok_or_else(|| ParseError::new(format!("bad method: {:.20}", parts[0])))?;
        let version = parts[parts.len() - 1];
        let req = Request {
            method,
            uri: parts[1..parts.len() - 1].join(" "),
            headers,
            body,
        };
        if !version.eq_ignore_ascii_case("SIP/2.0") {
            // A SIP version we do not speak is 505, anything else 400.
            return Err(if is_sip_version(version) {
                req.error(505, format!("unsupported version {version:.20}"))
            } else {
                req.partial(format!("bad SIP version: {version:.20}"))
            });
        }
        // RFC 4475 3.1.2.8: LWS inside the Request-URI.
        if parts.len() > 3 {
            return Err(req.partial(format!("whitespace in Request-URI: {:.60}", req.uri)));
        }
        // RFC 4475 3.1.2.9 and 3.1.2.10: one SP between the elements and
        // none after the version. Either may be rejected as malformed.
        if *start != parts.join(" ") {
            return Err(req.partial("extra whitespace in request line".into()));
        }
        // RFC 4475 3.1.2.7 and 3.1.2.11: <> around it, headers in it...
        if let Err(e) = uri::check_request_uri(&req.uri) {
            return Err(req.partial(format!("bad Request-URI: {e}")));
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
    /// `None` when the value is neither form: no URI, an unterminated
    /// quoted string (RFC 4475 section 3.1.2.6) or `<`, text after the `>`
    /// other than parameters. The URI itself is not checked here: see
    /// [`uri::check_uri`].
    pub fn parse(v: &str) -> Option<Self> {
        let v = v.trim();
        let (display, uri, rest) = if let Some(open) = find_unquoted(v, '<') {
            let close = v[open..].find('>')? + open;
            let rest = &v[close + 1..];
            if !rest.trim_start().is_empty() && !rest.trim_start().starts_with(';') {
                return None;
            }
            // Quotes before the '<' are balanced (find_unquoted saw them).
            let display = v[..open].trim();
            let quoted = display
                .strip_prefix('"')
                .and_then(|q| Some(q).zip(closing_quote(q)))
                .filter(|(q, end)| q.len() == end + 1);
            let display = match quoted {
                // The quoted-string's content, escapes kept as written.
                Some((q, end)) => Some(q[..end].to_string()),
                None => (!display.is_empty()).then(|| display.to_string()),
            };
            (display, v[open + 1..close].trim(), rest)
        } else {
            // addr-spec: header parameters follow the URI after ';'. A
            // quote or angle bracket before them means a name-addr gone
            // wrong (an unterminated quote hides the '<').
            let (uri, rest) = v.find(';').map_or((v, ""), |i| v.split_at(i));
            let uri = uri.trim();
            if uri.contains(['"', '<', '>']) || uri.contains(char::is_whitespace) {
                return None;
            }
            (None, uri, rest)
        };
        if uri.is_empty() || !uri.contains(':') {
            return None;
        }
        let params = split_unquoted(rest, ';')?
            .into_iter()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(parse_param)
            .collect();
        Some(NameAddr {
            display,
            uri: uri.to_string(),
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

/// Where the quoted string whose opening quote precedes `q` ends.
fn closing_quote(q: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in q.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// `s` split at every `sep` outside quoted strings; `None` when a quoted
/// string is not terminated.
fn split_unquoted(s: &str, sep: char) -> Option<Vec<&str>> {
    let (mut out, mut start) = (Vec::new(), 0);
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    out.push(&s[start..]);
    Some(out)
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

    /// A 400 for this request.
    fn partial(&self, reason: String) -> ParseError {
        self.error(400, reason)
    }

    fn error(&self, status: u16, reason: String) -> ParseError {
        // A response copies these fields back (section 8.2.6), even when
        // one is malformed; without them, drop.
        let h = &self.headers;
        let answerable = ["Via", "From", "To", "Call-ID", "CSeq"]
            .iter()
            .all(|n| h.get(n).is_some());
        ParseError {
            reason,
            status,
            partial: answerable.then(|| Box::new(self.clone())),
        }
    }

    fn check(&self) -> Result<(), ParseError> {
        let c = self.core().map_err(|r| self.partial(r))?;
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
        // An INVITE's Contact becomes the dialog's remote target (section
        // 12.1.1): it must be usable. "*" is only for REGISTER, but it is
        // no malformed value.
        if self.method == Method::Invite {
            for contact in self.headers.list("Contact") {
                if contact == "*" {
                    continue;
                }
                let Some(n) = NameAddr::parse(&contact) else {
                    return Err(self.partial(format!("bad Contact: {contact:.60}")));
                };
                if let Err(e) = uri::check_uri(&n.uri) {
                    return Err(self.partial(format!("bad Contact URI: {e}")));
                }
            }
        }
        Ok(())
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
        505 => "Version Not Supported",
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
        assert_eq!(e.status, 505);
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

    fn request(m: &[u8]) -> Request {
        match Message::parse(m) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn response(m: &[u8]) -> Response {
        match Message::parse(m) {
            Ok(Message::Response(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    // RFC 4475 section 3.1.1, valid messages, reduced to what each one
    // exercises (wsinv is above).
    #[test]
    fn accepts_rfc4475_valid_messages() {
        // 3.1.1.2 "intmeth": token characters in the method, a Request-URI
        // with ";?/" and a password in its userinfo, quoted-pairs of control
        // characters, a quoted UTF-8 parameter value, '"' in a Call-ID.
        let m = concat!(
            "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*",
            ":&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\r\n",
            "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\r\n",
            "To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>\r\n",
            "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>",
            ";fromParam''~+*_!.-%=\"работающий\";tag=_token~1'+`*%!-.\r\n",
            "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\r\n",
            "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\r\n",
            "Max-Forwards: 255\r\n",
            "extensionHeader-!.%*+_`'~:\u{feff}大停電\r\n",
            "Content-Length: 0\r\n\r\n",
        );
        let r = request(m.as_bytes());
        assert_eq!(
            r.method,
            Method::Other("!interesting-Method0123456789_*+`.%indeed'~".into())
        );
        let u = uri::SipUri::parse(&r.uri).unwrap();
        assert_eq!(
            u.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(u.host, "example.com");
        let c = r.core().unwrap();
        assert_eq!(
            c.to.display.as_deref(),
            Some("BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F")
        );
        assert_eq!(
            c.from.display.as_deref(),
            Some("token1~` token2'+_ token3*%!.-")
        );
        assert_eq!(c.from.tag(), Some("_token~1'+`*%!-."));
        assert_eq!(c.from.params[0].1.as_deref(), Some("\"работающий\""));
        assert_eq!(c.call_id, "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");

        // 3.1.1.3 "esc01": escapes in Request-URI, To, From and a folded
        // Contact (in its parameter names too).
        let m = "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\r\nTo: sip:%75se%72@example.com\r\n\
From: <sip:I%20have%20spaces@example.net>;tag=938\r\nMax-Forwards: 87\r\ni: esc01.239409asdfakjkn23onasd0-3234\r\n\
CSeq: 234234 INVITE\r\nVia: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw\r\n\
Contact:\r\n  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>\r\nl: 0\r\n\r\n";
        let r = request(m.as_bytes());
        let u = uri::SipUri::parse(&r.uri).unwrap();
        assert_eq!(
            (u.user.as_deref(), u.host.as_str()),
            (Some("sips%3Auser%40example.com"), "example.net")
        );
        assert_eq!(r.core().unwrap().to.uri, "sip:%75se%72@example.com");

        // 3.1.1.4 "escnull": %00 in URIs stays an escape.
        let m = "REGISTER sip:example.com SIP/2.0\r\nTo: sip:null-%00-null@example.com\r\n\
From: sip:null-%00-null@example.com;tag=839923423\r\nMax-Forwards: 70\r\nCall-ID: escnull.39203ndfvkjdasfkq3w4\r\n\
CSeq: 14398234 REGISTER\r\nVia: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\r\n\
Contact: <sip:%00@host5.example.com>\r\nContact: <sip:%00%00@host5.example.com>\r\nL:0\r\n\r\n";
        let r = request(m.as_bytes());
        assert_eq!(r.headers.list("Contact").len(), 2);
        assert_eq!(r.core().unwrap().from.uri, "sip:null-%00-null@example.com");

        // 3.1.1.6 "lwsdisp": no LWS between display name and '<'.
        let m = "OPTIONS sip:user@example.com SIP/2.0\r\nTo: sip:user@example.com\r\n\
From: caller<sip:caller@example.com>;tag=323\r\nMax-Forwards: 70\r\nCall-ID: lwsdisp.1234abcd@funky.example.com\r\n\
CSeq: 60 OPTIONS\r\nVia: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw\r\nl: 0\r\n\r\n";
        let c = request(m.as_bytes()).core().unwrap();
        assert_eq!(
            (c.from.display.as_deref(), c.from.uri.as_str()),
            (Some("caller"), "sip:caller@example.com")
        );

        // 3.1.1.7 "longreq": long values everywhere, 34 Via values under
        // every case of the name.
        let mut m = format!(
            "INVITE sip:user@example.com SIP/2.0\r\nTo: \"I have a user name of {} proportion\"\
<sip:user@example.com:6000;unknownparam1=very{}value;longparam{}=shortvalue;very{}ParameterNameWithNoValue>\r\n\
F: sip:{}@example.net;tag=12{}424;unknownheaderparam{}=unknowheaderparam{};unknownValueless{}\r\n\
Call-ID: longreq.one{}longcallid\r\nCSeq: 3882340 INVITE\r\n\
Unknown-{}-Name: unknown-{}-value; unknown-{}-parameter-name = unknown-{}-parameter-value\r\n",
            "extreme".repeat(10),
            "long".repeat(20),
            "name".repeat(25),
            "long".repeat(25),
            "amazinglylongcallername".repeat(5),
            "982".repeat(50),
            "name".repeat(20),
            "value".repeat(15),
            "paramname".repeat(10),
            "really".repeat(20),
            "Long".repeat(20),
            "long".repeat(20),
            "long".repeat(20),
            "long".repeat(20),
        );
        let names = [
            "Via", "v", "V", "ViA", "VIa", "VIA", "via", "viA", "vIa", "vIA", "V ", "v  ", "Via  ",
        ];
        for i in (1..=33).rev() {
            let _ = write!(
                m,
                "{}: SIP/2.0/TCP sip{i}.example.com\r\n",
                names[i % names.len()]
            );
        }
        let _ = write!(
            m,
            "Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=very{}branchvalue\r\n\
Max-Forwards: 70\r\nContact: <sip:{}@host5.example.net>\r\nl: 0\r\n\r\n",
            "long".repeat(50),
            "amazinglylongcallername".repeat(5)
        );
        let r = request(m.as_bytes());
        assert_eq!(r.headers.list("Via").len(), 34);
        let c = r.core().unwrap();
        assert_eq!(c.via.host, "sip33.example.com");
        assert_eq!(c.from.tag().map(str::len), Some(155));
        assert!(c.to.display.unwrap().ends_with("extreme proportion"));

        // 3.1.1.9 "semiuri": ';' in the user part, a folded Accept.
        let m = "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0\r\nTo: sip:j_user@example.com\r\n\
From: sip:caller@example.org;tag=33242\r\nMax-Forwards: 3\r\nCall-ID: semiuri.0ha0isndaksdj\r\nCSeq: 8 OPTIONS\r\n\
Accept: application/sdp, application/pkcs7-mime,\r\n        multipart/mixed,\r\n\
\x20       multipart/signed, message/sip, message/sipfrag\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw\r\nl: 0\r\n\r\n";
        let r = request(m.as_bytes());
        let u = uri::SipUri::parse(&r.uri).unwrap();
        assert_eq!(
            (u.user.as_deref(), u.params.len()),
            (Some("user;par=u%40example.net"), 0)
        );
        assert_eq!(r.headers.list("Accept").len(), 6);

        // 3.1.1.10 "transports": known and unknown transports in Via.
        let mut m = String::from(
            "OPTIONS sip:user@example.com SIP/2.0\r\nTo: sip:user@example.com\r\n\
From: <sip:caller@example.com>;tag=323\r\nMax-Forwards: 70\r\nCall-ID:  transports.kijh4akdnaqjkwendsasfdj\r\n\
Accept: application/sdp\r\nCSeq: 60 OPTIONS\r\n",
        );
        for (i, t) in ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"].iter().enumerate() {
            let _ = write!(
                m,
                "Via: SIP/2.0/{t} t{}.example.com;branch=z9hG4bK{i}\r\n",
                i + 1
            );
        }
        m.push_str("l: 0\r\n\r\n");
        let r = request(m.as_bytes());
        let vias: Vec<String> = r
            .headers
            .list("Via")
            .iter()
            .map(|v| Via::parse(v).unwrap().transport)
            .collect();
        assert_eq!(vias, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);

        // 3.1.1.11 "mpart01": a multipart MESSAGE body with binary octets
        // (NUL, CRLF CRLF, non-UTF-8), framed by Content-Length.
        let body: &[u8] = b"--7a9cbec02ceef655\r\nContent-Type: text/plain\r\n\r\nHello\r\n--7a9cbec02ceef655\r\n\
Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x30\x82\x00\xff\r\n\r\n\x00\x01\r\n\
--7a9cbec02ceef655--\r\n";
        let mut m = format!(
            "MESSAGE sip:kumiko@example.org SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport\r\n\
Max-Forwards: 70\r\nRoute: <sip:127.0.0.1:5080>\r\nContact: <sip:fluffy@127.0.0.1:5070>\r\nTo: <sip:kumiko@example.org>\r\n\
From: <sip:fluffy@example.com>;tag=2fb0dcc9\r\nCall-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..\r\nCSeq: 1 MESSAGE\r\n\
Content-Type: multipart/mixed;boundary=7a9cbec02ceef655\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        m.extend_from_slice(body);
        let r = request(&m);
        assert_eq!((r.method, r.body.as_slice()), (Method::Message, body));

        // 3.1.1.12 "unreason" and 3.1.1.13 "noreason": any reason phrase,
        // UTF-8 or empty.
        let tail = "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\r\nCall-ID: unreason.1234ksdfak3j2erwedfsASdf\r\n\
CSeq: 35 INVITE\r\nFrom: sip:user@example.com;tag=11141343\r\nTo: sip:user@example.edu;tag=2229\r\n\
Contact: <sip:user@host198.example.com>\r\nContent-Length: 0\r\n\r\n";
        let phrase = "= 2**3 * 5**2 но сто девяносто девять - простое";
        let r = response(format!("SIP/2.0 200 {phrase}\r\n{tail}").as_bytes());
        assert_eq!((r.status, r.reason.as_str()), (200, phrase));
        let r = response(format!("SIP/2.0 100 \r\n{tail}").as_bytes());
        assert_eq!((r.status, r.reason.as_str()), (100, ""));
    }

    #[test]
    fn name_addr_quotes_and_brackets() {
        let na = |s: &str| NameAddr::parse(s);
        // RFC 4475 3.1.2.6: the quote hides the '<'; no addr-spec either.
        assert_eq!(na("\"Mr. J. User <sip:j.user@example.com>"), None);
        assert_eq!(na("<sip:j.user@example.com"), None);
        assert_eq!(na("\"J\" <sip:j@example.com"), None);
        assert_eq!(na("sip:j@example.com;x=\"open"), None);
        assert_eq!(na("<sip:j@example.com>;x=\"open"), None);
        assert_eq!(na("<sip:j@example.com> <sip:k@example.com>"), None);
        assert_eq!(na("T. Watson sip:t@example.org"), None);
        assert_eq!(na("\"T. Watson\" sip:t@example.org"), None);
        assert_eq!(na("sip:t@example.org>"), None);
        // Escaped quotes and ';' inside quotes are no delimiters.
        let n = na("\"J \\\"Q\\\" <R>;\" <sip:j@example.com> ; tag = 1 ;x=\"a;b\"").unwrap();
        assert_eq!(n.display.as_deref(), Some("J \\\"Q\\\" <R>;"));
        assert_eq!((n.uri.as_str(), n.tag()), ("sip:j@example.com", Some("1")));
        assert_eq!(n.params[1], ("x".into(), Some("\"a;b\"".into())));
        let n = na("sip:j@example.com;tag=2;x=\"a;b\"").unwrap();
        assert_eq!(
            (n.display.as_deref(), n.tag(), n.params.len()),
            (None, Some("2"), 2)
        );
        // Unquoted display names (RFC 4475 3.1.2.16 uses "A. Bell").
        assert_eq!(
            na("A. Bell <sip:a.g.bell@example.com>")
                .unwrap()
                .display
                .as_deref(),
            Some("A. Bell")
        );
        assert_eq!(
            na("\"\" <sip:a@example.com>").unwrap().display.as_deref(),
            Some("")
        );
    }

    // RFC 4475 section 3.1.2 (and RFC 3261 section 19.1.1): invalid requests
    // that must be answered, with a reason saying what is wrong.
    #[test]
    fn rfc4475_invalid_requests_get_400() {
        let base = "INVITE sip:user@example.com SIP/2.0\r\nTo: sip:user@example.com\r\n\
From: sip:caller@example.net;tag=93334\r\nMax-Forwards: 10\r\nCall-ID: quotbal.aksdj\r\n\
Contact: <sip:caller@host59.example.net>\r\nCSeq: 8 INVITE\r\n\
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234\r\nl: 0\r\n\r\n";
        let bad = |from: &str, to: &str| {
            let m = base.replacen(from, to, 1);
            assert_ne!(m, base);
            let e = Message::parse(m.as_bytes()).unwrap_err();
            assert_eq!(e.status, 400, "{}", e.reason);
            assert!(e.partial.is_some(), "{}", e.reason);
            assert!(!e.reason.contains(['\r', '\n']));
            e.reason
        };
        let line = "INVITE sip:user@example.com SIP/2.0";
        // 3.1.2.6 "quotbal", and the same faults elsewhere.
        assert_eq!(
            bad(
                "To: sip:user@example.com",
                "To: \"Mr. J. User <sip:j.user@example.com>"
            ),
            "bad To: \"Mr. J. User <sip:j.user@example.com>"
        );
        assert_eq!(
            bad("To: sip:user@example.com", "To: <sip:user@example.com"),
            "bad To: <sip:user@example.com"
        );
        assert!(bad(";tag=93334", ";tag=\"93334").starts_with("bad From: "));
        assert_eq!(
            bad("Contact: <sip:", "Contact: \"Caller <sip:"),
            "bad Contact: \"Caller <sip:caller@host59.example.net>"
        );
        assert_eq!(
            bad(
                "Contact: <sip:caller@host59.example.net>",
                "Contact: <sip:caller@>"
            ),
            "bad Contact URI: no host"
        );
        assert_eq!(
            bad(".example.net>", ".example.net;lr;>"),
            "bad Contact URI: empty URI parameter"
        );
        // 3.1.2.7 "ltgtruri".
        assert_eq!(
            bad(line, "INVITE <sip:user@example.com> SIP/2.0"),
            "bad Request-URI: bad scheme: <sip"
        );
        // 3.1.2.8 "lwsruri": answered, not dropped.
        assert_eq!(
            bad(line, "INVITE sip:user@example.com; lr SIP/2.0"),
            "whitespace in Request-URI: sip:user@example.com; lr"
        );
        // 3.1.2.9 "lwsstart" and 3.1.2.10 "trws": RFC 4475 allows either
        // rejecting or ignoring the extra SP; rtcgw keeps to the grammar.
        assert_eq!(
            bad(line, "INVITE  sip:user@example.com  SIP/2.0"),
            "extra whitespace in request line"
        );
        assert_eq!(
            bad(line, "INVITE sip:user@example.com SIP/2.0  "),
            "extra whitespace in request line"
        );
        assert_eq!(
            bad(line, "INVITE\tsip:user@example.com SIP/2.0"),
            "extra whitespace in request line"
        );
        // 3.1.2.11 "escruri".
        assert_eq!(
            bad(
                line,
                "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0"
            ),
            "bad Request-URI: headers not allowed in a Request-URI"
        );
        // Other malformed SIP Request-URIs.
        for (uri, why) in [
            ("sip:", "no host"),
            ("sip:user@", "no host"),
            ("sips:user@exam_ple..com", "bad host: exam_ple..com"),
            ("sip:user@example.com:99999", "port out of range: 99999"),
            ("sip:user@example.com:http", "bad port: http"),
            ("sip:user@[2001:db8::1", "unterminated IPv6 reference"),
            ("sip:user@example.com;", "empty URI parameter"),
            (
                "sip:user@example.com;transport=",
                "bad URI parameter: transport=",
            ),
            ("sip:us\"er@example.com", "bad character in user part"),
            ("user@example.com", "no scheme"),
            ("tel:", "empty URI"),
        ] {
            assert_eq!(
                bad(line, &format!("INVITE {uri} SIP/2.0")),
                format!("bad Request-URI: {why}")
            );
        }
        assert_eq!(
            bad(line, "INVITE sip:user@example.com HTTP/1.1"),
            "bad SIP version: HTTP/1.1"
        );
    }

    #[test]
    fn unknown_sip_version_gets_505() {
        // RFC 4475 3.1.2.16 "badvers": the Via says 7.0 too, so the fields
        // to copy back are there but not all parse; still answered.
        let m = "OPTIONS sip:t.watson@example.org SIP/7.0\r\nVia:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\r\n\
Max-Forwards:     70\r\nFrom:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe\r\nTo:      T. Watson <sip:t.watson@example.org>\r\n\
Call-ID: badvers.31417@c.example.com\r\nCSeq:    1 OPTIONS\r\nl: 0\r\n\r\n";
        let e = Message::parse(m.as_bytes()).unwrap_err();
        assert_eq!(
            (e.status, e.reason.as_str()),
            (505, "unsupported version SIP/7.0")
        );
        let req = e.partial.unwrap();
        let resp = Response::to(&req, e.status, reason_phrase(e.status), None);
        assert!(String::from_utf8(Message::Response(resp).to_bytes()).unwrap().starts_with(
            "SIP/2.0 505 Version Not Supported\r\nVia: SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\r\n"
        ));
        // Without Call-ID there is nothing to answer.
        let e = Message::parse(m.replace("Call-ID", "X-Call-ID").as_bytes()).unwrap_err();
        assert_eq!((e.status, e.partial), (505, None));
    }

    #[test]
    fn valid_values_stay_valid() {
        let base = "INVITE sip:user@example.com SIP/2.0\r\nTo: sip:user@example.com\r\n\
From: sip:caller@example.net;tag=1\r\nCall-ID: ok.1\r\nContact: <sip:caller@host59.example.net>\r\nCSeq: 8 INVITE\r\n\
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234\r\nl: 0\r\n\r\n";
        let ok = |from: &str, to: &str| {
            let m = base.replacen(from, to, 1);
            assert_ne!(m, base);
            request(m.as_bytes())
        };
        // Free text may hold a lone '"' (RFC 4475 3.1.1.2 has one in Call-ID).
        ok("l: 0", "Subject: the 3.5\" floppy\r\nl: 0");
        ok("l: 0", "X-Note: \"unbalanced <\r\nl: 0");
        // "Contact: *" is REGISTER's; it is not malformed.
        ok("Contact: <sip:caller@host59.example.net>", "Contact: *");
        ok(
            "Contact: <sip:caller@host59.example.net>",
            "m: \"Joe, \\\"Jr\\\"\" <sips:caller@[2001:db8::5]:5061;transport=tls>;+sip.instance=\"<urn:uuid:1>\";expires=60, tel:+15551234",
        );
        ok(
            "Contact: <sip:caller@host59.example.net>",
            "Contact: <urn:service:sos>",
        );
        // Other Request-URI schemes are for the UAS to judge (416).
        for uri in [
            "tel:+1-201-555-0123",
            "urn:service:sos",
            "nobodyKnowsThisScheme:totallyopaquecontent",
            "SIP:user@192.0.2.1:5060;lr;maddr=[::1]",
        ] {
            assert_eq!(
                ok(
                    "INVITE sip:user@example.com SIP/2.0",
                    &format!("INVITE {uri} SIP/2.0")
                )
                .uri,
                uri
            );
        }
        // Version case-insensitive (RFC 3261 section 7.1).
        ok("SIP/2.0\r\nTo", "sip/2.0\r\nTo");
    }
}
