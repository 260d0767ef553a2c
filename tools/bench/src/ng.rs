//! A minimal client of rtpengine's ng control protocol (bencoded
//! dictionaries over UDP, each datagram `<cookie> <bencode>`), for the
//! capacity comparison of `rtcgw load-bridge --rtpengine-ng`: the same
//! offer/answer flags as the QoS lab's rtpengine driver
//! (tests/e2e/qoslab.py, class `Rtpengine`), WebRTC (ICE, DTLS-SRTP, Opus)
//! on the offering side, RTP/AVP PCMU on the answering side, transcoding.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rtcgw_proto::ng::Bencode;
use tokio::net::UdpSocket;

use crate::load::LoadError;

/// A dictionary entry as text.
fn text(v: &Bencode, key: &str) -> Option<String> {
    v.get(key).and_then(Bencode::as_text)
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
        if text(&r, "result").as_deref() != Some("ok") {
            return Err(LoadError::Sip(format!(
                "rtpengine: {} (reason: {})",
                text(&r, "result").unwrap_or_default(),
                text(&r, "error-reason").unwrap_or_default()
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
                ("rtcp-mux", Bencode::strings(["demux"])),
                (
                    "codec",
                    Bencode::dict([
                        ("transcode", Bencode::strings(["PCMU"])),
                        ("mask", Bencode::strings(["opus"])),
                    ]),
                ),
                (
                    "replace",
                    Bencode::strings(["origin", "session-connection"]),
                ),
            ]))
            .await?;
        if text(&r, "sdp").is_none() {
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
                ("rtcp-mux", Bencode::strings(["offer"])),
                (
                    "replace",
                    Bencode::strings(["origin", "session-connection"]),
                ),
            ]))
            .await?;
        text(&r, "sdp")
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
        match text(&r, "result").as_deref() {
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
