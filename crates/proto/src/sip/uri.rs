//! SIP and SIPS URIs (RFC 3261 section 19.1, grammar in section 25.1),
//! parsed as written: escapes stay escaped (`%00` never becomes a NUL
//! byte) and names keep their case, so a URI serialises back to its text
//! (but for the scheme's case and a port's leading zeros).
//!
//! The user part is found before the parameters and headers: it may itself
//! hold `;`, `?` and `/` (RFC 4475 sections 3.1.1.2 and 3.1.1.9), but never
//! an unescaped `@`, so the first `@` ends it.

use std::fmt;
use std::net::Ipv6Addr;

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part, escapes kept (`sips%3Auser%40example.com`).
    pub user: Option<String>,
    pub password: Option<String>,
    /// A host name, an IPv4 address or an IPv6 reference with its brackets.
    pub host: String,
    pub port: Option<u16>,
    /// URI parameters in order, names and values as written.
    pub params: Vec<(String, Option<String>)>,
    /// `?name=value&...` headers, as written.
    pub headers: Vec<(String, String)>,
}

impl SipUri {
    /// Parses a whole `sip:`/`sips:` URI; the error names what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s.split_once(':').ok_or("no scheme")?;
        let secure = if scheme.eq_ignore_ascii_case("sip") {
            false
        } else if scheme.eq_ignore_ascii_case("sips") {
            true
        } else {
            return Err(format!("not a SIP URI scheme: {scheme:.20}"));
        };
        let (userinfo, rest) = match rest.split_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, password) = match u.split_once(':') {
                    Some((user, pw)) => (user, Some(pw)),
                    None => (u, None),
                };
                if user.is_empty() {
                    return Err("empty user part".into());
                }
                check_chars(user, is_user_char, "user part")?;
                if let Some(pw) = password {
                    check_chars(pw, is_password_char, "password")?;
                }
                (Some(user.to_string()), password.map(str::to_string))
            }
        };
        let end = rest.find([';', '?']).unwrap_or(rest.len());
        let (host, port) = parse_hostport(&rest[..end])?;
        let tail = &rest[end..];
        let (params, headers) = match tail.split_once('?') {
            Some((p, h)) => (p, Some(h)),
            None => (tail, None),
        };
        let params = match params.strip_prefix(';') {
            Some(p) => p
                .split(';')
                .map(parse_uri_param)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let headers = match headers {
            Some(h) => h.split('&').map(parse_header).collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// A URI parameter by name (case-insensitive): `Some(None)` when it has
    /// no value (`;lr`).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(pw) = &self.password {
                write!(f, ":{pw}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// Checks any URI found where SIP expects one (Request-URI, Contact...):
/// `sip:`/`sips:` URIs are parsed in full and returned; other schemes
/// (`tel:`, `urn:`...) need a valid scheme name and non-empty content
/// without whitespace, and give `None`. Whether such a scheme is supported
/// is for the caller (416, RFC 3261 section 8.2.2.1).
pub fn check_uri(s: &str) -> Result<Option<SipUri>, String> {
    let (scheme, rest) = s.split_once(':').ok_or("no scheme")?;
    if !is_scheme(scheme) {
        return Err(format!("bad scheme: {scheme:.20}"));
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        return SipUri::parse(s).map(Some);
    }
    if rest.is_empty() {
        return Err("empty URI".into());
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("whitespace or control character in URI".into());
    }
    Ok(None)
}

/// Checks a Request-URI (RFC 3261 sections 7.1 and 19.1.1): a URI as for
/// [`check_uri`], and a SIP URI there carries no headers.
pub fn check_request_uri(s: &str) -> Result<Option<SipUri>, String> {
    let uri = check_uri(s)?;
    if uri.as_ref().is_some_and(|u| !u.headers.is_empty()) {
        return Err("headers not allowed in a Request-URI".into());
    }
    Ok(uri)
}

/// Checks a URI's user part on its own (a number or name to dial):
/// user characters and `%HH` escapes, not empty.
pub fn check_user(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty user part".into());
    }
    check_chars(s, is_user_char, "user part")
}

/// scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// user: unreserved / escaped / user-unreserved. `#` is tolerated: phones
/// send feature codes (`*72#`) unescaped.
fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || b"&=+$,;?/#".contains(&b)
}

fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || b"&=+$,".contains(&b)
}

/// paramchar = param-unreserved / unreserved / escaped
fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || b"[]/:&+$".contains(&b)
}

/// hname and hvalue: hnv-unreserved / unreserved / escaped
fn is_header_char(b: u8) -> bool {
    is_unreserved(b) || b"[]/?:+$".contains(&b)
}

/// Every byte allowed by `ok`, or a `%HH` escape.
fn check_chars(s: &str, ok: fn(u8) -> bool, what: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !(i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return Err(format!("bad escape in {what}"));
            }
            i += 3;
        } else if ok(b[i]) {
            i += 1;
        } else {
            return Err(format!("bad character in {what}"));
        }
    }
    Ok(())
}

fn parse_hostport(s: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (addr, rest) = v6.split_once(']').ok_or("unterminated IPv6 reference")?;
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(format!("bad IPv6 address: {addr:.40}"));
        }
        let port = match rest {
            "" => None,
            _ => Some(
                rest.strip_prefix(':')
                    .ok_or("bad text after IPv6 reference")?,
            ),
        };
        (&s[..addr.len() + 2], port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if !host.starts_with('[') && !is_hostname_or_ipv4(host) {
        return Err(format!("bad host: {host:.40}"));
    }
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("bad port: {p:.10}"));
            }
            Some(p.parse().map_err(|_| format!("port out of range: {p}"))?)
        }
    };
    Ok((host.to_string(), port))
}

/// hostname = *( domainlabel "." ) toplabel [ "." ], or IPv4address.
/// `_` is tolerated in labels (seen in container and SRV-style names).
fn is_hostname_or_ipv4(h: &str) -> bool {
    let labels: Vec<&str> = h.split('.').collect();
    if labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return labels.len() == 4
            && labels
                .iter()
                .all(|l| (1..=3).contains(&l.len()) && l.parse::<u16>().is_ok_and(|n| n <= 255));
    }
    let name = h.strip_suffix('.').unwrap_or(h);
    let labels: Vec<&str> = name.split('.').collect();
    labels.iter().all(|l| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) && labels
        .last()
        .is_some_and(|t| t.as_bytes()[0].is_ascii_alphabetic())
}

fn parse_uri_param(p: &str) -> Result<(String, Option<String>), String> {
    if p.is_empty() {
        return Err("empty URI parameter".into());
    }
    let (name, value) = match p.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (p, None),
    };
    if name.is_empty() || value == Some("") {
        return Err(format!("bad URI parameter: {p:.30}"));
    }
    check_chars(name, is_param_char, "URI parameter")?;
    if let Some(v) = value {
        check_chars(v, is_param_char, "URI parameter")?;
    }
    Ok((name.to_string(), value.map(str::to_string)))
}

fn parse_header(h: &str) -> Result<(String, String), String> {
    let (name, value) = h
        .split_once('=')
        .ok_or_else(|| format!("bad URI header: {h:.30}"))?;
    if name.is_empty() {
        return Err(format!("bad URI header: {h:.30}"));
    }
    check_chars(name, is_header_char, "URI header")?;
    check_chars(value, is_header_char, "URI header")?;
    Ok((name.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_parts() {
        let u =
            SipUri::parse("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?Subject=hi&X=")
                .unwrap();
        assert!(u.secure);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, "[2001:db8::1]");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param("TRANSPORT"), Some(Some("tcp")));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.param("maddr"), None);
        assert_eq!(
            u.headers,
            [("Subject".into(), "hi".into()), ("X".into(), String::new())]
        );
        assert_eq!(
            u.to_string(),
            "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?Subject=hi&X="
        );
        let u = SipUri::parse("SIP:192.0.2.1").unwrap();
        assert_eq!((u.user, u.host.as_str(), u.port), (None, "192.0.2.1", None));
        assert_eq!(SipUri::parse("sip:[::1]").unwrap().host, "[::1]");
        assert_eq!(
            SipUri::parse("sip:h.example.com.").unwrap().host,
            "h.example.com."
        );
    }

    #[test]
    fn rfc4475_user_parts() {
        // 3.1.1.2: ";", "?", "/" and ":" (the password) before the "@".
        let u = SipUri::parse(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        )
        .unwrap();
        assert_eq!(
            u.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password.as_deref(),
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        assert_eq!((u.host.as_str(), u.params.len()), ("example.com", 0));
        // 3.1.1.3, 3.1.1.4, 3.1.1.9: escapes stay as written.
        let u = SipUri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(
            (u.user.as_deref(), u.host.as_str()),
            (Some("sips%3Auser%40example.com"), "example.net")
        );
        assert_eq!(
            SipUri::parse("sip:null-%00-null@example.com")
                .unwrap()
                .user
                .as_deref(),
            Some("null-%00-null")
        );
        let u = SipUri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(
            (u.user.as_deref(), u.host.as_str()),
            (Some("user;par=u%40example.net"), "example.com")
        );
        let u =
            SipUri::parse("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31").unwrap();
        assert_eq!(u.param("%6C%72"), Some(None));
    }

    #[test]
    fn invalid_uris_say_why() {
        let err = |s: &str| SipUri::parse(s).unwrap_err();
        assert_eq!(err("sip:"), "no host");
        assert_eq!(err("sip:user@"), "no host");
        assert_eq!(err("sip:user@:5060"), "no host");
        assert_eq!(err("sip:@example.com"), "empty user part");
        assert_eq!(err("sip:example.com:"), "bad port: ");
        assert_eq!(err("sip:example.com:5o60"), "bad port: 5o60");
        assert_eq!(err("sip:example.com:65536"), "port out of range: 65536");
        assert_eq!(err("sip:example.com:123456"), "bad port: 123456");
        assert_eq!(err("sip:exa mple.com"), "bad host: exa mple.com");
        assert_eq!(err("sip:user@example.com>"), "bad host: example.com>");
        assert_eq!(err("sip:a..b"), "bad host: a..b");
        assert_eq!(err("sip:-a.com"), "bad host: -a.com");
        assert_eq!(err("sip:192.0.2.300"), "bad host: 192.0.2.300");
        assert_eq!(err("sip:1.2.3"), "bad host: 1.2.3");
        assert_eq!(err("sip:[::1"), "unterminated IPv6 reference");
        assert_eq!(err("sip:[::g]"), "bad IPv6 address: ::g");
        assert_eq!(err("sip:[::1]5060"), "bad text after IPv6 reference");
        assert_eq!(err("sip:u%4@h"), "bad escape in user part");
        assert_eq!(err("sip:u%"), "bad host: u%");
        assert_eq!(err("sip:u<x@h"), "bad character in user part");
        assert_eq!(err("sip:u:p@ss@h"), "bad host: ss@h");
        assert_eq!(err("sip:h;"), "empty URI parameter");
        assert_eq!(err("sip:h;lr;;x"), "empty URI parameter");
        assert_eq!(err("sip:h; lr"), "bad character in URI parameter");
        assert_eq!(err("sip:h;transport="), "bad URI parameter: transport=");
        assert_eq!(err("sip:h;=x"), "bad URI parameter: =x");
        assert_eq!(err("sip:h?Route"), "bad URI header: Route");
        assert_eq!(err("sip:h?Route=<sip:x>"), "bad character in URI header");
        assert_eq!(err("tel:+1"), "not a SIP URI scheme: tel");
        assert_eq!(err("sip"), "no scheme");
    }

    #[test]
    fn request_uris() {
        assert!(check_request_uri("sip:user@example.com").unwrap().is_some());
        assert!(check_request_uri("sip:vivekg@chair-dnrc.example.com;unknownparam").is_ok());
        // Other schemes: only their shape (416 is the UAS's business).
        assert_eq!(check_request_uri("tel:+1-201-555-0123"), Ok(None));
        assert_eq!(
            check_request_uri("nobodyKnowsThisScheme:totallyopaquecontent"),
            Ok(None)
        );
        assert_eq!(check_request_uri("soap.beep://192.0.2.103:3002"), Ok(None));
        let err = |s: &str| check_request_uri(s).unwrap_err();
        // RFC 4475 3.1.2.7, 3.1.2.11.
        assert_eq!(err("<sip:user@example.com>"), "bad scheme: <sip");
        assert_eq!(
            err("sip:user@example.com?Route=%3Csip:example.com%3E"),
            "headers not allowed in a Request-URI"
        );
        assert_eq!(err("urn:"), "empty URI");
        assert_eq!(err("urn:a\tb"), "whitespace or control character in URI");
        assert_eq!(err("user@example.com"), "no scheme");
        assert_eq!(err("1sip:x"), "bad scheme: 1sip");
        // Headers are fine elsewhere (a Contact: RFC 4475's "regescrt").
        assert!(check_uri("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_ok());
    }
}
