//! A minimal client of rtpengine's ng control protocol (bencoded
//! dictionaries over UDP, each datagram `<cookie> <bencode>`), for the
//! capacity comparison of `rtcgw load-bridge --rtpengine-ng`: the same
//! offer/answer flags as the QoS lab's rtpengine driver
//! (tests/e2e/qoslab.py, class `Rtpengine`), WebRTC (ICE, DTLS-SRTP, Opus)
//! on the offering side, RTP/AVP PCMU on the answering side, transcoding.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::load::LoadError;

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bencode {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Bencode>),
    /// Keys are kept sorted, as bencode requires.
    Dict(BTreeMap<Vec<u8>, Bencode>),
}

impl From<&str> for Bencode {
    fn from(s: &str) -> Self {
        Bencode::Bytes(s.as_bytes().to_vec())
    }
}

impl Bencode {
    pub fn dict<'a>(entries: impl IntoIterator<Item = (&'a str, Bencode)>) -> Self {
        Bencode::Dict(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    pub fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> Self {
        Bencode::List(items.into_iter().map(Bencode::from).collect())
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Bencode::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Bencode::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Bencode::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode(out);
                }
                out.push(b'e');
            }
            Bencode::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Bencode::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes one value from the start of `b`; returns it and the rest.
    pub fn decode(b: &[u8]) -> Option<(Bencode, &[u8])> {
        Self::decode_depth(b, 0)
    }

    fn decode_depth(b: &[u8], depth: usize) -> Option<(Bencode, &[u8])> {
        if depth > 32 {
            return None; // bounded nesting: no reply of rtpengine's goes deeper
        }
        match *b.first()? {
            b'i' => {
                let end = b.iter().position(|&c| c == b'e')?;
                let i = std::str::from_utf8(&b[1..end]).ok()?.parse().ok()?;
                Some((Bencode::Int(i), &b[end + 1..]))
            }
            b'l' => {
                let mut rest = &b[1..];
                let mut items = Vec::new();
                while *rest.first()? != b'e' {
                    let (v, r) = Self::decode_depth(rest, depth + 1)?;
                    items.push(v);
                    rest = r;
                }
                Some((Bencode::List(items), &rest[1..]))
            }
            b'd' => {
                let mut rest = &b[1..];
                let mut d = BTreeMap::new();
                while *rest.first()? != b'e' {
                    let (Bencode::Bytes(k), r) = Self::decode_depth(rest, depth + 1)? else {
                        return None;
                    };
                    let (v, r) = Self::decode_depth(r, depth + 1)?;
                    d.insert(k, v);
                    rest = r;
                }
                Some((Bencode::Dict(d), &rest[1..]))
            }
            b'0'..=b'9' => {
                let colon = b.iter().position(|&c| c == b':')?;
                let n: usize = std::str::from_utf8(&b[..colon]).ok()?.parse().ok()?;
                let body = b.get(colon + 1..colon + 1 + n)?;
                Some((Bencode::Bytes(body.to_vec()), &b[colon + 1 + n..]))
            }
            _ => None,
        }
    }

    /// A dictionary entry as text.
    pub fn text(&self, key: &str) -> Option<String> {
        match self {
            Bencode::Dict(d) => match d.get(key.as_bytes())? {
                Bencode::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Sends ng commands to one rtpengine; each request on its own ephemeral
/// socket, so concurrent call setups need no reply dispatch.
pub struct NgClient {
    addr: SocketAddr,
    next: AtomicU64,
}

impl NgClient {
    pub fn new(addr: SocketAddr) -> Self {
        NgClient {
            addr,
            next: AtomicU64::new(1),
        }
    }

    /// One command and its reply; retransmitted with the same cookie (which
    /// rtpengine answers from its cache) up to 3 times, 2 s apart.
    pub async fn request(&self, msg: &Bencode) -> Result<Bencode, LoadError> {
        let err = |e: String| LoadError::Sip(format!("rtpengine ng {}: {e}", self.addr));
        let cookie = format!(
            "lb{}_{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let mut datagram = format!("{cookie} ").into_bytes();
        msg.encode(&mut datagram);
        let bind = SocketAddr::new(self.addr.ip(), 0);
        let sock = UdpSocket::bind(bind)
            .await
            .map_err(|e| err(e.to_string()))?;
        let mut buf = vec![0u8; 65536];
        for _ in 0..3 {
            sock.send_to(&datagram, self.addr)
                .await
                .map_err(|e| err(e.to_string()))?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while let Ok(r) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
                let (n, _) = r.map_err(|e| err(e.to_string()))?;
                let reply = &buf[..n];
                let Some(sp) = reply.iter().position(|&c| c == b' ') else {
                    continue;
                };
                if reply.get(..sp) != Some(cookie.as_bytes()) {
                    continue;
                }
                return Bencode::decode(&reply[sp + 1..])
                    .map(|(v, _)| v)
                    .ok_or_else(|| err("unparsable reply".into()));
            }
        }
        Err(err("no reply".into()))
    }

    /// A command whose reply must say `result: ok`.
    async fn ok(&self, msg: &Bencode) -> Result<Bencode, LoadError> {
        let r = self.request(msg).await?;
        if r.text("result").as_deref() != Some("ok") {
            return Err(LoadError::Sip(format!(
                "rtpengine: {} (reason: {})",
                r.text("result").unwrap_or_default(),
                r.text("error-reason").unwrap_or_default()
            )));
        }
        Ok(r)
    }

    /// The WebRTC caller's `offer` (Opus only) to rtpengine, transcoded to
    /// plain RTP/AVP PCMU; the plain side (`echo_sdp`) answers. Returns
    /// rtpengine's answer for the WebRTC caller (ICE, DTLS-SRTP, Opus).
    pub async fn bridge(
        &self,
        call_id: &str,
        offer: &str,
        echo_sdp: &str,
    ) -> Result<String, LoadError> {
        let r = self
            .ok(&Bencode::dict([
                ("command", "offer".into()),
                ("call-id", call_id.into()),
                ("from-tag", "webrtc".into()),
                ("sdp", opus_only(offer).as_str().into()),
                ("ICE", "remove".into()),
                ("DTLS", "off".into()),
                ("transport-protocol", "RTP/AVP".into()),
                ("rtcp-mux", Bencode::list(["demux"])),
                (
                    "codec",
                    Bencode::dict([
                        ("transcode", Bencode::list(["PCMU"])),
                        ("mask", Bencode::list(["opus"])),
                    ]),
                ),
                ("replace", Bencode::list(["origin", "session-connection"])),
            ]))
            .await?;
        if r.text("sdp").is_none() {
            return Err(LoadError::Sip("rtpengine offer: no SDP".into()));
        }
        let r = self
            .ok(&Bencode::dict([
                ("command", "answer".into()),
                ("call-id", call_id.into()),
                ("from-tag", "webrtc".into()),
                ("to-tag", "echo".into()),
                ("sdp", echo_sdp.into()),
                ("ICE", "force".into()),
                ("transport-protocol", "UDP/TLS/RTP/SAVPF".into()),
                ("rtcp-mux", Bencode::list(["offer"])),
                ("replace", Bencode::list(["origin", "session-connection"])),
            ]))
            .await?;
        r.text("sdp")
            .map(|a| with_bundle(&a))
            .ok_or_else(|| LoadError::Sip("rtpengine answer: no SDP".into()))
    }

    pub async fn delete(&self, call_id: &str) -> Result<(), LoadError> {
        self.ok(&Bencode::dict([
            ("command", "delete".into()),
            ("call-id", call_id.into()),
            ("from-tag", "webrtc".into()),
        ]))
        .await
        .map(|_| ())
    }

    pub async fn ping(&self) -> Result<(), LoadError> {
        let r = self
            .request(&Bencode::dict([("command", "ping".into())]))
            .await?;
        match r.text("result").as_deref() {
            Some("pong") => Ok(()),
            other => Err(LoadError::Sip(format!("rtpengine ping: {other:?}"))),
        }
    }
}

/// The offer with Opus as its only audio codec, as a browser told to use
/// Opus would send (the QoS lab's callers do the same with codec
/// preferences): otherwise rtpengine would pass libwebrtc's PCMU through
/// and transcode nothing.
pub fn opus_only(sdp: &str) -> String {
    let opus: Vec<String> = sdp
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("a=rtpmap:")?;
            let (pt, codec) = rest.split_once(' ')?;
            codec
                .to_ascii_lowercase()
                .starts_with("opus/")
                .then(|| pt.to_string())
        })
        .collect();
    let keep_pt = |attr: &str| {
        // a=rtpmap:PT, a=fmtp:PT, a=rtcp-fb:PT: only for Opus's.
        for p in ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"] {
            if let Some(rest) = attr.strip_prefix(p) {
                let pt = rest.split([' ', '\t']).next().unwrap_or("");
                return pt == "*" || opus.iter().any(|o| o == pt);
            }
        }
        true
    };
    let mut out = String::with_capacity(sdp.len());
    let mut in_audio = false;
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            in_audio = m.starts_with("audio ");
            if in_audio && !opus.is_empty() {
                let f: Vec<&str> = line.split(' ').collect();
                if f.len() > 3 {
                    out.push_str(&f[..3].join(" "));
                    for o in &opus {
                        out.push(' ');
                        out.push_str(o);
                    }
                    out.push_str("\r\n");
                    continue;
                }
            }
        } else if in_audio && !opus.is_empty() && !keep_pt(line) {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// rtpengine (10.5) answers without `a=group:BUNDLE`, which libwebrtc's
/// offerer (bundle already negotiated in its offer) rejects as removing the
/// m= section from the group; aiortc, the QoS lab's caller, does not mind.
/// Puts the group back, over the answer's one audio `a=mid`, after `t=`.
pub fn with_bundle(answer: &str) -> String {
    if answer.contains("a=group:BUNDLE") {
        return answer.to_string();
    }
    let Some(mid) = answer.lines().find_map(|l| l.strip_prefix("a=mid:")) else {
        return answer.to_string();
    };
    let mut out = String::with_capacity(answer.len() + 24);
    for line in answer.lines() {
        out.push_str(line);
        out.push_str("\r\n");
        if line.starts_with("t=") {
            out.push_str(&format!("a=group:BUNDLE {}\r\n", mid.trim()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn puts_the_bundle_group_back() {
        let a = "v=0\r\ns=-\r\nt=0 0\r\nm=audio 1 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n";
        let out = super::with_bundle(a);
        assert!(
            out.contains("t=0 0\r\na=group:BUNDLE 0\r\nm=audio"),
            "{out}"
        );
        assert_eq!(super::with_bundle(&out), out);
    }

    use super::*;

    #[test]
    fn bencode_round_trips_an_ng_command() {
        let msg = Bencode::dict([
            ("command", "offer".into()),
            ("rtcp-mux", Bencode::list(["demux"])),
            ("n", Bencode::Int(-3)),
            (
                "codec",
                Bencode::dict([("transcode", Bencode::list(["PCMU"]))]),
            ),
        ]);
        let mut b = Vec::new();
        msg.encode(&mut b);
        assert_eq!(
            b,
            b"d5:codecd9:transcodel4:PCMUee7:command5:offer1:ni-3e8:rtcp-muxl5:demuxee".to_vec()
        );
        let (back, rest) = Bencode::decode(&b).expect("decodes");
        assert!(rest.is_empty());
        assert_eq!(back, msg);
        assert_eq!(back.text("command").as_deref(), Some("offer"));
        assert!(Bencode::decode(b"d3:abc").is_none());
        assert!(Bencode::decode(b"5:ab").is_none());
    }

    #[test]
    fn keeps_only_opus_in_the_offer() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 9 0 8 13\r\na=mid:0\r\n\
                   a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n\
                   a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:9 G722/8000\r\n\
                   a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\n\
                   a=ssrc:1 cname:x\r\n";
        let out = opus_only(sdp);
        assert!(out.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"), "{out}");
        assert!(out.contains("a=fmtp:111 minptime"));
        assert!(out.contains("a=rtcp-fb:111 transport-cc"));
        assert!(out.contains("a=ssrc:1 cname:x"));
        assert!(!out.contains("PCMU") && !out.contains("G722") && !out.contains("CN/"));
    }
}
