//! SDP: an offer is parsed once, at the edge, into a typed [`Offer`] that
//! says which kind of leg it belongs to; `webrtc` holds the WebRTC checks
//! (libwebrtc does the full parse of those), `legacy` the plain-RTP leg's
//! RFC 3264 offer/answer.

pub mod legacy;
mod webrtc;

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
a=fingerprint:sha-256 AA:BB\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
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
