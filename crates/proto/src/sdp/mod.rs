//! SDP: an offer is parsed once, at the edge, into a typed [`Offer`] that
//! says which kind of leg it belongs to; `webrtc` holds the WebRTC checks
//! (libwebrtc does the full parse of those), `legacy` the plain-RTP leg's
//! RFC 3264 offer/answer.

mod dtmf;
pub mod legacy;
mod webrtc;

pub use dtmf::match_telephone_events;

pub use webrtc::{OfferError, candidate_addresses, first_audio_codec};

/// The two kinds of call leg rtcgw joins.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LegKind {
    /// ICE + DTLS-SRTP, run by libwebrtc.
    Webrtc,
    /// Plain RTP/AVP or SDES-SRTP (RTP/SAVP), run by rtcgw.
    Legacy,
}

impl LegKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webrtc => "webrtc",
            Self::Legacy => "legacy",
        }
    }
}

/// A WebRTC offer: an active audio stream over UDP/TLS/RTP/SAVPF with ICE
/// credentials and a DTLS fingerprint. libwebrtc parses the text itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebrtcOffer {
    sdp: String,
}

impl WebrtcOffer {
    pub fn sdp(&self) -> &str {
        &self.sdp
    }
}

/// A plain-RTP offer, parsed (webrtc-sdp) into what the answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyOffer {
    sdp: String,
    parsed: legacy::ParsedSdp,
}

impl LegacyOffer {
    pub fn parsed(&self) -> &legacy::ParsedSdp {
        &self.parsed
    }
}

/// An offer, parsed once at the edge (SIP, HTTP) and handed on as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    Webrtc(WebrtcOffer),
    Legacy(LegacyOffer),
}

impl Offer {
    /// Classifies by the first active audio stream's transport and checks
    /// what that kind of leg needs.
    pub fn parse(sdp: &str) -> Result<Self, OfferError> {
        match webrtc::audio_transport(sdp)? {
            "RTP/AVP" | "RTP/SAVP" => {
                let parsed = legacy::parse(sdp).map_err(|e| match e {
                    legacy::LegacySdpError::NoAudio => OfferError::NoAudio,
                    legacy::LegacySdpError::NotIp(h) => {
                        OfferError::Unsupported(format!("connection address is a name: {h}"))
                    }
                    other => OfferError::Malformed(other.to_string()),
                })?;
                Ok(Self::Legacy(LegacyOffer {
                    sdp: sdp.to_string(),
                    parsed,
                }))
            }
            _ => {
                webrtc::check_webrtc_offer(sdp)?;
                Ok(Self::Webrtc(WebrtcOffer {
                    sdp: sdp.to_string(),
                }))
            }
        }
    }

    pub fn kind(&self) -> LegKind {
        match self {
            Self::Webrtc(_) => LegKind::Webrtc,
            Self::Legacy(_) => LegKind::Legacy,
        }
    }

    /// The offer as received.
    pub fn sdp(&self) -> &str {
        match self {
            Self::Webrtc(o) => &o.sdp,
            Self::Legacy(o) => &o.sdp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_classified_by_their_audio_transport() {
        let webrtc = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=fingerprint:sha-256 A8:B4:C4:05:BD:1F:9C:6E:00:56:D8:A5:59:CC:E3:DA:E0:2D:14:77:0F:C8:1F:44:07:BE:90:DB:D8:51:E8:63\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(Offer::parse(webrtc).unwrap().kind(), LegKind::Webrtc);
        let plain = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\n";
        let o = Offer::parse(plain).unwrap();
        assert_eq!(o.kind(), LegKind::Legacy);
        assert_eq!(o.sdp(), plain);
        let Offer::Legacy(l) = o else { panic!() };
        assert_eq!(l.parsed().audio.port, 4000);
        let named = plain.replace("c=IN IP4 192.0.2.1", "c=IN IP4 pbx.example.com");
        assert!(matches!(
            Offer::parse(&named),
            Err(OfferError::Unsupported(_))
        ));
        assert!(matches!(
            Offer::parse("v=0\r\ngarbage"),
            Err(OfferError::Malformed(_))
        ));
        let video = plain.replace("m=audio", "m=video");
        assert_eq!(Offer::parse(&video), Err(OfferError::NoAudio));
        let savpf_without_ice = webrtc.replace("a=ice-ufrag:abcd\r\n", "");
        assert!(matches!(
            Offer::parse(&savpf_without_ice),
            Err(OfferError::NotWebrtc(_))
        ));
    }
}

/// Rewrites our own SDP for a 1:1 NAT: every address in `map`'s first
/// column becomes its second, wherever an address is written (ICE
/// candidates, including `raddr`; `c=`; `o=`; `a=rtcp:`), the `IP4`/`IP6`
/// token following the new address. libwebrtc gathers on the local
/// addresses; peers must be told the public ones (what rtpengine's
/// `interface=private!public` and Janus's `nat_1_1_mapping` do).
pub fn announce_addresses(sdp: &str, map: &[(std::net::IpAddr, std::net::IpAddr)]) -> String {
    if map.is_empty() {
        return sdp.to_string();
    }
    let public = |word: &str| -> Option<std::net::IpAddr> {
        let ip: std::net::IpAddr = word.parse().ok()?;
        map.iter().find(|(l, _)| *l == ip).map(|(_, p)| *p)
    };
    let family = |ip: std::net::IpAddr| if ip.is_ipv6() { "IP6" } else { "IP4" };
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix("\r\n") {
            Some(b) => (b, "\r\n"),
            None => match line.strip_suffix('\n') {
                Some(b) => (b, "\n"),
                None => (line, ""),
            },
        };
        let mut words: Vec<String> = body.split(' ').map(str::to_string).collect();
        let addr_at: &[usize] = if body.starts_with("a=candidate:") {
            // foundation component transport priority ADDRESS port typ t
            // [raddr ADDRESS rport p] ...
            &[4]
        } else if body.starts_with("c=") {
            &[2]
        } else if body.starts_with("o=") {
            &[5]
        } else if body.starts_with("a=rtcp:") {
            &[3]
        } else {
            &[]
        };
        let mut at: Vec<usize> = addr_at.to_vec();
        if body.starts_with("a=candidate:")
            && let Some(i) = words.iter().position(|w| w == "raddr")
        {
            at.push(i + 1);
        }
        for i in at {
            if let Some(p) = words.get(i).and_then(|w| public(w)) {
                words[i] = p.to_string();
                // c=, o= and a=rtcp: say the family just before the address.
                if !body.starts_with("a=candidate:")
                    && i > 0
                    && matches!(words[i - 1].as_str(), "IP4" | "IP6")
                {
                    words[i - 1] = family(p).to_string();
                }
            }
        }
        out.push_str(&words.join(" "));
        out.push_str(end);
    }
    out
}

#[cfg(test)]
mod announce_tests {
    use super::announce_addresses;

    #[test]
    fn our_sdp_names_the_public_address_everywhere() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 10.0.0.5\r\ns=-\r\nt=0 0\r\n\
m=audio 20000 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 10.0.0.5\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1 1 udp 2122260223 10.0.0.5 20000 typ host generation 0\r\n\
a=candidate:2 1 udp 1686052607 198.51.100.1 20000 typ srflx raddr 10.0.0.5 rport 20000\r\n\
a=candidate:3 1 udp 2122260223 10.0.0.6 20001 typ host\r\n";
        let map = [("10.0.0.5".parse().unwrap(), "2001:db8::5".parse().unwrap())];
        let out = announce_addresses(sdp, &map);
        assert!(out.contains("o=- 1 2 IN IP6 2001:db8::5\r\n"), "{out}");
        assert!(out.contains("c=IN IP6 2001:db8::5\r\n"), "{out}");
        assert!(
            out.contains("a=rtcp:9 IN IP4 0.0.0.0\r\n"),
            "untouched: {out}"
        );
        assert!(out.contains("2122260223 2001:db8::5 20000 typ host generation 0\r\n"));
        assert!(out.contains("raddr 2001:db8::5 rport 20000\r\n"));
        assert!(
            out.contains("10.0.0.6 20001 typ host\r\n"),
            "other addresses stay"
        );
        assert_eq!(announce_addresses(sdp, &[]), sdp);
    }
}
