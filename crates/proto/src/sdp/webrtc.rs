//! Sanity checks of a WebRTC offer before libwebrtc sees it, so that the API
//! can say precisely what is wrong (libwebrtc does the full parse).

/// Why an offer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("the offer has no audio m-line")]
    NoAudio,
    #[error("not a WebRTC offer: {0}")]
    NotWebrtc(String),
    /// Valid SDP that rtcgw cannot take (e.g. a host name where it needs
    /// an address).
    #[error("unsupported SDP: {0}")]
    Unsupported(String),
}

impl OfferError {
    /// Short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_sdp",
            Self::NoAudio => "no_audio",
            Self::NotWebrtc(_) => "not_webrtc",
            Self::Unsupported(_) => "unsupported_sdp",
        }
    }
}

/// The transport of the first active audio m-line ("RTP/AVP",
/// "UDP/TLS/RTP/SAVPF"...), once the SDP is seen to be made of
/// `<type>=<value>` lines starting with v=0.
pub(super) fn audio_transport(sdp: &str) -> Result<&str, OfferError> {
    let (_, _, proto) = first_audio(sdp)?;
    Ok(proto)
}

/// The session part, the first active audio section and its transport.
fn first_audio(sdp: &str) -> Result<(&str, &str, &str), OfferError> {
    let mut lines = sdp.lines().map(|l| l.trim_end_matches('\r'));
    if lines.next() != Some("v=0") {
        return Err(OfferError::Malformed("first line must be v=0".into()));
    }
    for l in sdp.lines() {
        let l = l.trim_end_matches('\r');
        if l.is_empty() {
            continue;
        }
        let b = l.as_bytes();
        if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
            return Err(OfferError::Malformed(format!(
                "not a <type>=<value> line: {:.60}",
                l
            )));
        }
    }
    // Session-level attributes apply to every m-line.
    let session_end = sdp.find("\nm=").unwrap_or(sdp.len());
    let session = &sdp[..session_end];
    let mut audio = None;
    for section in sdp[session_end..]
        .split("\nm=")
        .filter(|s| !s.trim().is_empty())
    {
        let section = section.trim_start_matches('\n');
        let section = section.strip_prefix("m=").unwrap_or(section);
        if section.starts_with("audio ") {
            let mline = section.lines().next().unwrap_or("");
            let fields: Vec<&str> = mline.split_whitespace().collect();
            if fields.len() < 4 {
                return Err(OfferError::Malformed(format!("short m-line: m={mline}")));
            }
            if fields[1] != "0" {
                audio = Some((section, fields[2]));
                break;
            }
        }
    }
    let (section, proto) = audio.ok_or(OfferError::NoAudio)?;
    Ok((session, section, proto))
}

/// Checks that `sdp` is a WebRTC audio offer: an active audio m-line over
/// DTLS-SRTP (UDP/TLS/RTP/SAVPF) with ICE credentials and a fingerprint.
pub fn check_webrtc_offer(sdp: &str) -> Result<(), OfferError> {
    let (session, section, proto) = first_audio(sdp)?;
    if !proto.ends_with("SAVPF") || !proto.contains("TLS") {
        return Err(OfferError::NotWebrtc(format!(
            "audio uses {proto}; WebRTC needs UDP/TLS/RTP/SAVPF (ICE + DTLS-SRTP)"
        )));
    }
    let has = |attr: &str| section.contains(attr) || session.contains(attr);
    if !has("a=ice-ufrag:") || !has("a=ice-pwd:") {
        return Err(OfferError::NotWebrtc(
            "no ICE credentials (a=ice-ufrag/a=ice-pwd)".into(),
        ));
    }
    if !has("a=fingerprint:") {
        return Err(OfferError::NotWebrtc(
            "no DTLS fingerprint (a=fingerprint)".into(),
        ));
    }
    for line in session.lines().chain(section.lines()) {
        if let Some(fp) = line.trim_end_matches('\r').strip_prefix("a=fingerprint:") {
            check_fingerprint(fp)?;
        }
    }
    Ok(())
}

/// An `a=fingerprint` value (RFC 8122 section 5): a hash function
/// libwebrtc knows and a digest of its length as colon-separated hex pairs.
/// libwebrtc itself takes a digest of the wrong length and fails only when
/// it applies the description.
fn check_fingerprint(value: &str) -> Result<(), OfferError> {
    let bad = |why: String| OfferError::Malformed(format!("a=fingerprint:{value:.120}: {why}"));
    let (hash, digest) = value
        .split_once(' ')
        .ok_or_else(|| bad("no digest".into()))?;
    let want = match hash.to_ascii_lowercase().as_str() {
        "sha-1" => 20,
        "sha-224" => 28,
        "sha-256" => 32,
        "sha-384" => 48,
        "sha-512" => 64,
        "md5" | "md2" => 16,
        _ => return Err(bad(format!("unknown hash function {hash:.20}"))),
    };
    let pairs: Vec<&str> = digest.trim().split(':').collect();
    if !pairs
        .iter()
        .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(bad("the digest is not colon-separated hex pairs".into()));
    }
    if pairs.len() != want {
        return Err(bad(format!(
            "a {hash} digest has {want} bytes, this one {}",
            pairs.len()
        )));
    }
    Ok(())
}

/// The codec of the first audio payload type in an SDP (e.g. "opus/48000/2").
pub fn first_audio_codec(sdp: &str) -> Option<String> {
    let mline = sdp.lines().find(|l| l.starts_with("m=audio "))?;
    let pt = mline.split_whitespace().nth(3)?;
    let prefix = format!("a=rtpmap:{pt} ");
    sdp.lines().find_map(|l| {
        l.trim_end_matches('\r')
            .strip_prefix(prefix.as_str())
            .map(str::to_string)
    })
}

/// The connection addresses of the candidates in an SDP.
pub fn candidate_addresses(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("a=candidate:"))
        .filter_map(|c| c.split_whitespace().nth(4).map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
a=fingerprint:sha-256 A8:B4:C4:05:BD:1F:9C:6E:00:56:D8:A5:59:CC:E3:DA:E0:2D:14:77:0F:C8:1F:44:07:BE:90:DB:D8:51:E8:63\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=rtpmap:111 opus/48000/2\r\n\
a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n";

    #[test]
    fn accepts_webrtc_audio_offer() {
        assert_eq!(check_webrtc_offer(OFFER), Ok(()));
        assert_eq!(first_audio_codec(OFFER).as_deref(), Some("opus/48000/2"));
        assert_eq!(candidate_addresses(OFFER), vec!["127.0.0.1"]);
    }

    #[test]
    fn refuses_with_reasons() {
        assert!(matches!(
            check_webrtc_offer("hello"),
            Err(OfferError::Malformed(_))
        ));
        assert!(matches!(
            check_webrtc_offer("v=0\r\nthis is not sdp\r\n"),
            Err(OfferError::Malformed(_))
        ));
        let video = OFFER.replace("m=audio", "m=video");
        assert_eq!(check_webrtc_offer(&video), Err(OfferError::NoAudio));
        let rejected = OFFER.replace("m=audio 9", "m=audio 0");
        assert_eq!(check_webrtc_offer(&rejected), Err(OfferError::NoAudio));
        let avp = OFFER.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP");
        assert!(matches!(
            check_webrtc_offer(&avp),
            Err(OfferError::NotWebrtc(_))
        ));
        let no_fp = OFFER.replace(&format!("a=fingerprint:sha-256 {FP}\r\n"), "");
        assert!(matches!(
            check_webrtc_offer(&no_fp),
            Err(OfferError::NotWebrtc(_))
        ));
    }

    const FP: &str = "A8:B4:C4:05:BD:1F:9C:6E:00:56:D8:A5:59:CC:E3:DA:E0:2D:14:77:0F:C8:1F:44:07:BE:90:DB:D8:51:E8:63";

    #[test]
    fn fingerprints_need_a_known_hash_and_a_digest_of_its_length() {
        let with = |fp: &str| OFFER.replace(&format!("sha-256 {FP}"), fp);
        let err = |fp: &str| match check_webrtc_offer(&with(fp)) {
            Err(OfferError::Malformed(m)) => m,
            other => panic!("{fp}: {other:?}"),
        };
        // What libwebrtc accepts at parse time and fails on when applying.
        assert!(err(&format!("sha-256 {}", &FP[..20])).contains("has 32 bytes, this one 7"));
        assert!(err(&format!("sha-1 {FP}")).contains("a sha-1 digest has 20 bytes, this one 32"));
        assert!(err(&format!("foo-9 {FP}")).contains("unknown hash function foo-9"));
        assert!(err("sha-256 ZZ:ZZ").contains("not colon-separated hex pairs"));
        assert!(err("sha-256").contains("no digest"));
        // Case does not matter.
        assert_eq!(
            check_webrtc_offer(&with(&format!("SHA-256 {}", FP.to_lowercase()))),
            Ok(())
        );
    }
}
