//! Access control: who may send requests (the softswitch's networks) and
//! whose asserted identity is believed (RFC 3325 trust domain); and what a
//! request's top Via really says about where it came from (RFC 3261
//! section 18.2.1, RFC 3581).

use std::net::IpAddr;

use super::UserAgent;
use crate::sip::message::{Request, Via};
use crate::sip::tsx::Peer;

/// An IP network, for access control ("127.0.0.0/8"; an address alone is
/// a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.parse().map_err(|_| format!("not an IP address: {a}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse().map_err(|_| format!("bad prefix: {p}"))?
        };
        if prefix > max {
            return Err(format!("prefix /{prefix} too long"));
        }
        Ok(Self { addr, prefix })
    }
}

impl TryFrom<String> for IpNet {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<IpNet> for String {
    fn from(n: IpNet) -> Self {
        n.to_string()
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl UserAgent {
    pub(super) fn allowed(&self, peer: Peer) -> bool {
        self.cfg.allowed.iter().any(|n| n.contains(peer.addr.ip()))
    }

    pub(super) fn trusted(&self, peer: Peer) -> bool {
        self.cfg.trusted.iter().any(|n| n.contains(peer.addr.ip()))
    }
}

/// RFC 3261 section 18.2.1 and RFC 3581: record where the request really
/// came from in the top Via (received, rport).
pub(super) fn stamp_via(req: &mut Request, peer: Peer) {
    let Some(top) = req.headers.list("Via").into_iter().next() else {
        return;
    };
    let Some(mut via) = Via::parse(&top) else {
        return;
    };
    if via.host != peer.addr.ip().to_string() {
        via.set_param("received", Some(peer.addr.ip().to_string()));
    }
    if via.param("rport").is_some() {
        via.set_param("rport", Some(peer.addr.port().to_string()));
        via.set_param("received", Some(peer.addr.ip().to_string()));
    }
    req.headers.replace_first("Via", via.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_networks() {
        let n: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(
            n.contains("::ffff:10.1.0.9".parse().unwrap()),
            "v4-mapped v6"
        );
        let any: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("192.0.2.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!(
            "::1/128"
                .parse::<IpNet>()
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert_eq!(n.to_string(), "10.1.0.0/16");
    }
}
