//! Plain RTP/AVP SDP for the legacy leg: parsing an offer (with Mozilla's
//! webrtc-sdp crate) and answering it (RFC 3264), with the codec preference
//! list from config. Generation is a small writer: answers are short and
//! their exact form matters to old SIP equipment.

use std::fmt::Write as _;
use std::net::IpAddr;

use webrtc_sdp::address::ExplicitlyTypedAddress;

use crate::rtp::id::Pt;
use webrtc_sdp::attribute_type::{SdpAttribute, SdpAttributeType};
use webrtc_sdp::media_type::{SdpFormatList, SdpMedia, SdpMediaValue, SdpProtocolValue};

/// A codec on the legacy leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub pt: Pt,
    /// As written in SDP ("PCMU", "opus", "telephone-event").
    pub name: String,
    /// RTP clock rate (8000 for G.722, RFC 3551).
    pub clock_rate: u32,
    pub channels: u32,
    pub fmtp: String,
}

impl Codec {
    fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The static payload types of RFC 3551 we know, for m-lines without rtpmap.
    fn static_pt(pt: Pt) -> Option<Self> {
        let (name, rate) = match pt.0 {
            0 => ("PCMU", 8000),
            8 => ("PCMA", 8000),
            9 => ("G722", 8000),
            _ => return None,
        };
        Some(Codec {
            pt,
            name: name.into(),
            clock_rate: rate,
            channels: 1,
            fmtp: String::new(),
        })
    }
}

/// A codec rtcgw can run on the legacy leg, by its SDP name (the
/// `legacy.codecs` preference list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CodecName {
    Pcmu,
    Pcma,
    G722,
    Opus,
}

impl CodecName {
    pub const ALL: [CodecName; 4] = [Self::Pcmu, Self::Pcma, Self::G722, Self::Opus];

    /// As SDP writes it (RFC 3551, RFC 7587).
    pub fn sdp_name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
            Self::G722 => "G722",
            Self::Opus => "opus",
        }
    }

    /// What we offer for it: RFC 3551 static payload types, 111 for Opus.
    fn offered(self) -> Codec {
        match self {
            Self::Pcmu | Self::Pcma | Self::G722 => {
                let pt = match self {
                    Self::Pcmu => 0,
                    Self::Pcma => 8,
                    _ => 9,
                };
                Codec::static_pt(Pt(pt)).expect("RFC 3551 static payload type")
            }
            Self::Opus => Codec {
                pt: Pt(111),
                name: "opus".into(),
                clock_rate: 48000,
                channels: 2,
                fmtp: "useinbandfec=1".into(),
            },
        }
    }
}

impl std::fmt::Display for CodecName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.sdp_name())
    }
}

impl std::str::FromStr for CodecName {
    type Err = String;
    /// SDP encoding names are case-insensitive (RFC 4566 section 6).
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.sdp_name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown codec {s:?} (known: PCMU, PCMA, G722, opus)"))
    }
}

impl TryFrom<String> for CodecName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<CodecName> for String {
    fn from(c: CodecName) -> Self {
        c.sdp_name().to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The answer's direction for an offered one (RFC 3264 section 6.1).
    pub fn answer(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            d => d,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }
}

/// The audio stream an SDP describes, from its sender's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioStream {
    pub addr: IpAddr,
    pub port: u16,
    pub rtcp_port: Option<u16>,
    pub rtcp_mux: bool,
    /// In the SDP's order of preference; telephone-event excluded.
    pub codecs: Vec<Codec>,
    pub telephone_events: Vec<Codec>,
    pub ptime: Option<u32>,
    pub maxptime: Option<u32>,
    pub direction: Direction,
    /// RTP/SAVP: SDES-SRTP keys follow in `crypto`.
    pub secure: bool,
    pub crypto: Vec<Crypto>,
}

/// An `a=crypto` line (RFC 4568 section 9.1), inline key only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub suite: String,
    /// Master key || salt (30 bytes for the AES_CM_128 suites).
    pub key: Vec<u8>,
}

/// The SRTP suites rtcgw takes, in preference order.
pub const SRTP_SUITES: &[&str] = &["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"];

fn parse_crypto(line: &str) -> Option<Crypto> {
    use base64::Engine as _;
    let rest = line.strip_prefix("a=crypto:")?;
    let mut it = rest.split_whitespace();
    let tag = it.next()?.parse().ok()?;
    let suite = it.next()?.to_string();
    let params = it.next()?;
    let inline = params.strip_prefix("inline:")?;
    let b64 = inline.split('|').next()?;
    let key = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some(Crypto { tag, suite, key })
}

/// The text of the `index`-th m-section of an SDP.
fn media_section(sdp: &str, index: usize) -> &str {
    let mut starts: Vec<usize> = sdp.match_indices("\nm=").map(|(i, _)| i + 1).collect();
    if sdp.starts_with("m=") {
        starts.insert(0, 0);
    }
    let Some(&start) = starts.get(index) else {
        return "";
    };
    let end = starts.get(index + 1).copied().unwrap_or(sdp.len());
    &sdp[start..end]
}

/// Why a legacy SDP cannot be answered; the SIP side maps these to 488/400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LegacySdpError {
    #[error("unparseable SDP: {0}")]
    Parse(String),
    #[error("no active RTP/AVP audio stream")]
    NoAudio,
    #[error("connection address is not an IP address: {0}")]
    NotIp(String),
    #[error("no codec in common (offered: {offered}; ours: {ours})")]
    NoCommonCodec { offered: String, ours: String },
    #[error("no usable SDES-SRTP key (offered: {0})")]
    NoCrypto(String),
}

fn media_dir(m: &SdpMedia, session: &[SdpAttribute]) -> Direction {
    let find = |attrs: &[SdpAttribute]| {
        attrs.iter().find_map(|a| match a {
            SdpAttribute::Sendrecv => Some(Direction::SendRecv),
            SdpAttribute::Sendonly => Some(Direction::SendOnly),
            SdpAttribute::Recvonly => Some(Direction::RecvOnly),
            SdpAttribute::Inactive => Some(Direction::Inactive),
            _ => None,
        })
    };
    find(m.get_attributes())
        .or_else(|| find(session))
        .unwrap_or(Direction::SendRecv)
}

/// One m-line as offered, for mirroring in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MLine {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    pub formats: String,
}

/// A parsed legacy offer: every m-line, and the audio stream we take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSdp {
    pub mlines: Vec<MLine>,
    pub audio_index: usize,
    pub audio: AudioStream,
}

/// Parses an SDP, finding its first active plain-RTP audio stream.
pub fn parse(sdp: &str) -> Result<ParsedSdp, LegacySdpError> {
    let session =
        webrtc_sdp::parse_sdp(sdp, false).map_err(|e| LegacySdpError::Parse(e.to_string()))?;
    let mlines = session
        .media
        .iter()
        .map(|m| {
            let fmts = match m.get_formats() {
                SdpFormatList::Integers(v) => {
                    v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
                }
                SdpFormatList::Strings(v) => v.join(" "),
                SdpFormatList::Unknown(s) => s.clone(),
            };
            MLine {
                kind: m.get_type().to_string(),
                port: m.get_port() as u16,
                proto: m.get_proto().to_string(),
                formats: fmts,
            }
        })
        .collect();
    let (index, m) = session
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| {
            *m.get_type() == SdpMediaValue::Audio
                && m.get_port() != 0
                && matches!(
                    m.get_proto(),
                    SdpProtocolValue::RtpAvp | SdpProtocolValue::RtpSavp
                )
        })
        .ok_or(LegacySdpError::NoAudio)?;
    let conn = m
        .get_connection()
        .as_ref()
        .or(session.connection.as_ref())
        .ok_or(LegacySdpError::NoAudio)?;
    let addr = match &conn.address {
        ExplicitlyTypedAddress::Ip(ip) => *ip,
        ExplicitlyTypedAddress::Fqdn { domain, .. } => {
            return Err(LegacySdpError::NotIp(domain.clone()));
        }
    };
    let pts: Vec<Pt> = match m.get_formats() {
        SdpFormatList::Integers(v) => v
            .iter()
            .filter_map(|p| u8::try_from(*p).ok().filter(|p| *p < 128).map(Pt))
            .collect(),
        _ => Vec::new(),
    };
    let mut all = Vec::new();
    for pt in pts {
        let rtpmap = m.get_attributes().iter().find_map(|a| match a {
            SdpAttribute::Rtpmap(r) if r.payload_type == pt.0 => Some(r),
            _ => None,
        });
        let fmtp = m
            .get_attributes()
            .iter()
            .find_map(|a| match a {
                SdpAttribute::Fmtp(f) if f.payload_type == pt.0 => {
                    let s = f.to_string();
                    Some(
                        s.split_once(' ')
                            .map(|(_, p)| p.to_string())
                            .unwrap_or_default(),
                    )
                }
                _ => None,
            })
            .unwrap_or_default();
        let codec = match rtpmap {
            Some(r) => Codec {
                pt,
                name: r.codec_name.clone(),
                clock_rate: r.frequency,
                channels: r.channels.unwrap_or(1),
                fmtp,
            },
            None => match Codec::static_pt(pt) {
                Some(c) => c,
                None => continue,
            },
        };
        all.push(codec);
    }
    let (telephone_events, codecs): (Vec<Codec>, Vec<Codec>) =
        all.into_iter().partition(|c| c.is("telephone-event"));
    let mut direction = media_dir(m, &session.attribute);
    // RFC 2543 hold: c=0.0.0.0 means "do not send to me".
    if addr.is_unspecified() && direction == Direction::SendRecv {
        direction = Direction::SendOnly;
    }
    let num = |t| match m.get_attribute(t) {
        Some(SdpAttribute::Ptime(p)) | Some(SdpAttribute::MaxPtime(p)) => u32::try_from(*p).ok(),
        _ => None,
    };
    let secure = *m.get_proto() == SdpProtocolValue::RtpSavp;
    let crypto = media_section(sdp, index)
        .lines()
        .filter_map(|l| parse_crypto(l.trim_end_matches('\r')))
        .collect();
    let rtcp_port = match m.get_attribute(SdpAttributeType::Rtcp) {
        Some(SdpAttribute::Rtcp(r)) => Some(r.port),
        _ => None,
    };
    Ok(ParsedSdp {
        mlines,
        audio_index: index,
        audio: AudioStream {
            addr,
            port: m.get_port() as u16,
            rtcp_port,
            rtcp_mux: m.get_attribute(SdpAttributeType::RtcpMux).is_some(),
            codecs,
            telephone_events,
            ptime: num(SdpAttributeType::Ptime),
            maxptime: num(SdpAttributeType::MaxPtime),
            direction,
            secure,
            crypto,
        },
    })
}

/// The first of `remote`'s codecs that `usable` accepts, and telephone-event
/// at its clock rate.
fn choose(
    remote: &AudioStream,
    prefs: &[CodecName],
    usable: impl Fn(&Codec) -> bool,
) -> Result<(Codec, Option<Codec>), LegacySdpError> {
    let codec = remote
        .codecs
        .iter()
        .find(|c| usable(c))
        .cloned()
        .ok_or_else(|| LegacySdpError::NoCommonCodec {
            offered: remote
                .codecs
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
                .join(","),
            ours: prefs
                .iter()
                .map(|p| p.sdp_name())
                .collect::<Vec<_>>()
                .join(","),
        })?;
    let telephone_event = remote
        .telephone_events
        .iter()
        .find(|t| t.clock_rate == codec.clock_rate)
        .cloned();
    Ok((codec, telephone_event))
}

/// What an answer settles: what we send and receive, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec both sides use (its payload type is the offerer's).
    pub codec: Codec,
    /// telephone-event at the codec's clock rate, if both have it.
    pub telephone_event: Option<Codec>,
    pub ptime: u32,
    /// Our direction.
    pub direction: Direction,
    pub remote: AudioStream,
    pub rtcp_mux: bool,
    /// SDES-SRTP keys when the offer was RTP/SAVP.
    pub srtp: Option<SrtpKeys>,
}

/// Both directions' SRTP master keys for one negotiated suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    pub suite: String,
    /// Theirs: unprotects what arrives.
    pub remote_key: Vec<u8>,
    /// Ours: protects what we send.
    pub local_key: Vec<u8>,
    pub tag: u32,
}

/// Answers an offer: the first offered codec that is in `prefs` (the offerer's
/// order wins, RFC 3264 section 6.1), telephone-event at that codec's clock
/// rate, the offer's ptime when given (else `default_ptime`), the mirrored
/// direction. Returns the answer text and the settled parameters.
pub fn answer(
    offer: &ParsedSdp,
    prefs: &[CodecName],
    local: IpAddr,
    port: u16,
    default_ptime: u32,
    session_id: u64,
    allow_srtp: bool,
) -> Result<(String, Negotiated), LegacySdpError> {
    let ParsedSdp {
        mlines,
        audio_index: index,
        audio: remote,
    } = offer;
    let (index, remote) = (*index, remote.clone());
    let (codec, telephone_event) =
        choose(&remote, prefs, |c| prefs.iter().any(|p| c.is(p.sdp_name())))?;
    let ptime = remote.ptime.unwrap_or(default_ptime);
    let direction = remote.direction.answer();
    let srtp = if remote.secure {
        let offered = || {
            remote
                .crypto
                .iter()
                .map(|c| c.suite.clone())
                .collect::<Vec<_>>()
                .join(",")
        };
        if !allow_srtp {
            return Err(LegacySdpError::NoCrypto(format!(
                "{} (SDES-SRTP is disabled)",
                offered()
            )));
        }
        let c = SRTP_SUITES
            .iter()
            .find_map(|s| {
                remote
                    .crypto
                    .iter()
                    .find(|c| c.suite == *s && c.key.len() == 30)
            })
            .ok_or_else(|| LegacySdpError::NoCrypto(offered()))?;
        let local_key: [u8; 30] = rand::random();
        Some(SrtpKeys {
            suite: c.suite.clone(),
            remote_key: c.key.clone(),
            local_key: local_key.to_vec(),
            tag: c.tag,
        })
    } else {
        None
    };
    let mut sdp = String::new();
    let ipv = if local.is_ipv4() { "IP4" } else { "IP6" };
    let _ = write!(
        sdp,
        "v=0\r\no=rtcgw {session_id} {session_id} IN {ipv} {local}\r\ns=rtcgw\r\nc=IN {ipv} {local}\r\nt=0 0\r\n"
    );
    for (i, m) in mlines.iter().enumerate() {
        if i != index {
            // Streams we do not take are rejected with port 0 (section 6).
            let _ = write!(sdp, "m={} 0 {} {}\r\n", m.kind, m.proto, m.formats);
            continue;
        }
        let mut pts = vec![codec.pt.to_string()];
        if let Some(t) = &telephone_event {
            pts.push(t.pt.to_string());
        }
        let proto = if srtp.is_some() {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        };
        let _ = write!(sdp, "m=audio {port} {proto} {}\r\n", pts.join(" "));
        write_codec(&mut sdp, &codec);
        if let Some(t) = &telephone_event {
            write_codec(&mut sdp, t);
        }
        let _ = write!(sdp, "a=ptime:{ptime}\r\n");
        if remote.rtcp_mux {
            sdp.push_str("a=rtcp-mux\r\n");
        } else {
            let _ = write!(sdp, "a=rtcp:{}\r\n", port + 1);
        }
        let _ = write!(sdp, "a={}\r\n", direction.as_str());
        if let Some(k) = &srtp {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&k.local_key);
            let _ = write!(sdp, "a=crypto:{} {} inline:{b64}\r\n", k.tag, k.suite);
        }
    }
    let rtcp_mux = remote.rtcp_mux;
    Ok((
        sdp,
        Negotiated {
            codec,
            telephone_event,
            ptime,
            direction,
            remote,
            rtcp_mux,
            srtp,
        },
    ))
}

/// An SDP of ours with its origin version set (RFC 3264 section 8: a new
/// offer or answer in a session keeps the o= id and raises its version).
pub fn with_origin_version(sdp: &str, session_id: u64, version: u64) -> String {
    sdp.replacen(
        &format!("o=rtcgw {session_id} {session_id} "),
        &format!("o=rtcgw {session_id} {version} "),
        1,
    )
}

/// The codecs rtcgw offers on the legacy leg, from the preference list, with
/// their RFC 3551 static or our dynamic payload types, and telephone-event at
/// 8000 (and 48000 when Opus is offered).
pub fn offer_codecs(prefs: &[CodecName]) -> Vec<Codec> {
    let mut out: Vec<Codec> = prefs.iter().map(|p| p.offered()).collect();
    out.push(Codec {
        pt: Pt(101),
        name: "telephone-event".into(),
        clock_rate: 8000,
        channels: 1,
        fmtp: "0-16".into(),
    });
    if out
        .iter()
        .any(|c| c.clock_rate == 48000 && !c.is("telephone-event"))
    {
        out.push(Codec {
            pt: Pt(110),
            name: "telephone-event".into(),
            clock_rate: 48000,
            channels: 1,
            fmtp: "0-16".into(),
        });
    }
    out
}

/// rtcgw's RTP/AVP offer for an outbound legacy leg.
pub fn offer(prefs: &[CodecName], local: IpAddr, port: u16, ptime: u32, session_id: u64) -> String {
    offer_with(
        prefs,
        local,
        port,
        ptime,
        session_id,
        &OfferExtras::default(),
    )
}

/// What an offer of ours may carry beyond RTP/AVP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferExtras {
    /// SDES-SRTP (RTP/SAVP, RFC 4568): our key (tag 1, [`SRTP_SUITES`]'s
    /// first suite), 30 bytes of master key and salt.
    pub sdes_key: Option<Vec<u8>>,
    /// Offer rtcp-mux (RFC 5761) besides the separate RTCP port.
    pub rtcp_mux: bool,
}

/// [`offer`], with SDES-SRTP and rtcp-mux when asked for.
pub fn offer_with(
    prefs: &[CodecName],
    local: IpAddr,
    port: u16,
    ptime: u32,
    session_id: u64,
    extras: &OfferExtras,
) -> String {
    let codecs = offer_codecs(prefs);
    let ipv = if local.is_ipv4() { "IP4" } else { "IP6" };
    let pts: Vec<String> = codecs.iter().map(|c| c.pt.to_string()).collect();
    let proto = if extras.sdes_key.is_some() {
        "RTP/SAVP"
    } else {
        "RTP/AVP"
    };
    let mut sdp = String::new();
    let _ = write!(
        sdp,
        "v=0\r\no=rtcgw {session_id} {session_id} IN {ipv} {local}\r\ns=rtcgw\r\nc=IN {ipv} {local}\r\nt=0 0\r\nm=audio {port} {proto} {}\r\n",
        pts.join(" ")
    );
    for c in &codecs {
        write_codec(&mut sdp, c);
    }
    let _ = write!(sdp, "a=ptime:{ptime}\r\na=rtcp:{}\r\n", port + 1);
    if extras.rtcp_mux {
        sdp.push_str("a=rtcp-mux\r\n");
    }
    sdp.push_str("a=sendrecv\r\n");
    if let Some(key) = &extras.sdes_key {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let _ = write!(sdp, "a=crypto:1 {} inline:{b64}\r\n", SRTP_SUITES[0]);
    }
    sdp
}

/// Settles an answer to our [`offer`]: the answer's first codec that we
/// offered, and telephone-event at its clock rate.
pub fn accept_answer(
    answer: &str,
    prefs: &[CodecName],
    default_ptime: u32,
) -> Result<Negotiated, LegacySdpError> {
    accept_answer_with(answer, prefs, default_ptime, None)
}

/// [`accept_answer`] for an offer that carried our SDES key
/// (`sdes_key`): the answer must be RTP/SAVP with a key of the suite we
/// offered (RFC 4568 section 5.1.2).
pub fn accept_answer_with(
    answer: &str,
    prefs: &[CodecName],
    default_ptime: u32,
    sdes_key: Option<&[u8]>,
) -> Result<Negotiated, LegacySdpError> {
    let remote = parse(answer)?.audio;
    let ours = offer_codecs(prefs);
    let (codec, telephone_event) = choose(&remote, prefs, |c| {
        ours.iter()
            .any(|o| o.is(&c.name) && o.clock_rate == c.clock_rate)
    })?;
    let srtp = match sdes_key {
        None => None,
        Some(local_key) => {
            let theirs = remote
                .crypto
                .iter()
                .find(|c| c.suite == SRTP_SUITES[0] && c.key.len() == 30)
                .filter(|_| remote.secure)
                .ok_or_else(|| {
                    LegacySdpError::NoCrypto(format!(
                        "the answer to our {} offer has none",
                        SRTP_SUITES[0]
                    ))
                })?;
            Some(SrtpKeys {
                suite: theirs.suite.clone(),
                remote_key: theirs.key.clone(),
                local_key: local_key.to_vec(),
                tag: theirs.tag,
            })
        }
    };
    Ok(Negotiated {
        ptime: remote.ptime.unwrap_or(default_ptime),
        direction: remote.direction.answer(),
        rtcp_mux: remote.rtcp_mux,
        codec,
        telephone_event,
        remote,
        srtp,
    })
}

fn write_codec(sdp: &mut String, c: &Codec) {
    if c.channels > 1 {
        let _ = write!(
            sdp,
            "a=rtpmap:{} {}/{}/{}\r\n",
            c.pt, c.name, c.clock_rate, c.channels
        );
    } else {
        let _ = write!(sdp, "a=rtpmap:{} {}/{}\r\n", c.pt, c.name, c.clock_rate);
    }
    if !c.fmtp.is_empty() {
        let _ = write!(sdp, "a=fmtp:{} {}\r\n", c.pt, c.fmtp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(mline: &str, attrs: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n{mline}\r\n{attrs}"
        )
    }

    fn prefs(p: &[&str]) -> Vec<CodecName> {
        p.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ans(o: &str, p: &[&str]) -> Result<(String, Negotiated), LegacySdpError> {
        answer(
            &parse(o)?,
            &prefs(p),
            "127.0.0.1".parse().unwrap(),
            20000,
            20,
            42,
            true,
        )
    }

    #[test]
    fn codec_intersection_follows_the_offerers_order() {
        let o = offer(
            "m=audio 4000 RTP/AVP 8 0 101",
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        );
        let (sdp, n) = ans(&o, &["PCMU", "PCMA"]).unwrap();
        assert_eq!(
            n.codec.name, "PCMA",
            "static PT without rtpmap, offerer's first choice"
        );
        assert!(sdp.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{sdp}");
        assert!(
            sdp.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"),
            "{sdp}"
        );
        assert_eq!(n.remote.addr, "192.0.2.10".parse::<IpAddr>().unwrap());
        assert_eq!(n.remote.port, 4000);
        let (_, n) = ans(&o, &["PCMU"]).unwrap();
        assert_eq!(n.codec.name, "PCMU", "our list filters");
        let err = ans(&o, &["G722"]).unwrap_err();
        assert!(matches!(err, LegacySdpError::NoCommonCodec { .. }), "{err}");
    }

    #[test]
    fn telephone_event_matches_the_codec_clock_rate() {
        let o = offer(
            "m=audio 4000 RTP/AVP 111 0 100 101",
            "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:100 telephone-event/48000\r\na=rtpmap:101 telephone-event/8000\r\n",
        );
        let (sdp, n) = ans(&o, &["opus", "PCMU"]).unwrap();
        assert_eq!(n.codec.clock_rate, 48000);
        assert_eq!(n.telephone_event.as_ref().unwrap().pt, Pt(100));
        assert!(sdp.contains("a=rtpmap:111 opus/48000/2\r\n"), "{sdp}");
        let (_, n) = ans(&o, &["PCMU"]).unwrap();
        assert_eq!(
            n.telephone_event.as_ref().unwrap().pt,
            Pt(101),
            "8000 for PCMU"
        );
        // G.722's RTP clock is 8000 (RFC 3551): its events are at 8000 too.
        let g = offer(
            "m=audio 4000 RTP/AVP 9 101",
            "a=rtpmap:101 telephone-event/8000\r\n",
        );
        assert_eq!(
            ans(&g, &["G722"]).unwrap().1.telephone_event.unwrap().pt,
            Pt(101)
        );
    }

    #[test]
    fn ptime_and_directions() {
        let o = offer("m=audio 4000 RTP/AVP 0", "a=ptime:30\r\na=sendonly\r\n");
        let (sdp, n) = ans(&o, &["PCMU"]).unwrap();
        assert_eq!(n.ptime, 30);
        assert!(
            sdp.contains("a=ptime:30\r\n") && sdp.contains("a=recvonly\r\n"),
            "{sdp}"
        );
        for (offered, answered) in [
            ("sendrecv", "sendrecv"),
            ("recvonly", "sendonly"),
            ("inactive", "inactive"),
        ] {
            let o = offer("m=audio 4000 RTP/AVP 0", &format!("a={offered}\r\n"));
            let (sdp, n) = ans(&o, &["PCMU"]).unwrap();
            assert!(
                sdp.contains(&format!("a={answered}\r\n")),
                "{offered}: {sdp}"
            );
            assert_eq!(n.direction.as_str(), answered);
        }
        let (_, n) = ans(&offer("m=audio 4000 RTP/AVP 0", ""), &["PCMU"]).unwrap();
        assert_eq!(
            (n.ptime, n.direction),
            (20, Direction::SendRecv),
            "defaults"
        );
        // RFC 2543 hold.
        let hold =
            offer("m=audio 4000 RTP/AVP 0", "").replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0");
        assert_eq!(
            ans(&hold, &["PCMU"]).unwrap().1.direction,
            Direction::RecvOnly
        );
    }

    #[test]
    fn other_streams_are_rejected_and_rtcp_mux_is_taken() {
        let o = offer(
            "m=video 5000 RTP/AVP 96",
            "a=rtpmap:96 H264/90000\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp-mux\r\na=rtcp:4000\r\n",
        );
        let (sdp, n) = ans(&o, &["PCMU"]).unwrap();
        let m: Vec<&str> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(m, vec!["m=video 0 RTP/AVP 96", "m=audio 20000 RTP/AVP 0"]);
        assert!(n.rtcp_mux && sdp.contains("a=rtcp-mux\r\n"));
        let (sdp, _) = ans(
            &offer("m=audio 4000 RTP/AVP 0", "a=rtcp:4001\r\n"),
            &["PCMU"],
        )
        .unwrap();
        assert!(sdp.contains("a=rtcp:20001\r\n"), "{sdp}");
    }

    #[test]
    fn sdes_srtp_offer_gets_our_own_key() {
        let key = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        let o = offer(
            "m=audio 4000 RTP/SAVP 0",
            &format!(
                "a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{key}\r\na=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^20|1:4\r\n"
            ),
        );
        let (sdp, n) = ans(&o, &["PCMU"]).unwrap();
        let k = n.srtp.expect("SRTP negotiated");
        assert_eq!(
            (k.suite.as_str(), k.tag),
            ("AES_CM_128_HMAC_SHA1_80", 2),
            "the stronger tag wins"
        );
        assert_eq!(k.remote_key.len(), 30);
        assert_ne!(k.local_key, k.remote_key);
        assert!(sdp.contains("m=audio 20000 RTP/SAVP 0\r\n"), "{sdp}");
        assert!(
            sdp.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{sdp}"
        );
        let weak = offer(
            "m=audio 4000 RTP/SAVP 0",
            &format!("a=crypto:1 F8_128_HMAC_SHA1_80 inline:{key}\r\n"),
        );
        assert!(matches!(
            ans(&weak, &["PCMU"]),
            Err(LegacySdpError::NoCrypto(_))
        ));
        let off = answer(
            &parse(&o).unwrap(),
            &prefs(&["PCMU"]),
            "127.0.0.1".parse().unwrap(),
            20000,
            20,
            42,
            false,
        );
        assert!(matches!(off, Err(LegacySdpError::NoCrypto(_))));
        // Plain RTP/AVP carries no key.
        assert!(
            ans(&offer("m=audio 4000 RTP/AVP 0", ""), &["PCMU"])
                .unwrap()
                .1
                .srtp
                .is_none()
        );
    }

    /// Our SDES offer (RTP/SAVP, our key), answered by our own answer
    /// function as a far end would: both keys end up where they belong.
    #[test]
    fn our_sdes_offer_and_its_answer() {
        let p = prefs(&["PCMU"]);
        let key = vec![7u8; 30];
        let extras = OfferExtras {
            sdes_key: Some(key.clone()),
            rtcp_mux: true,
        };
        let o = offer_with(&p, "127.0.0.1".parse().unwrap(), 30000, 20, 1, &extras);
        assert!(o.contains("m=audio 30000 RTP/SAVP 0 101\r\n"), "{o}");
        assert!(
            o.contains("a=rtcp-mux\r\n")
                && o.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
        );
        let (a, far) = answer(
            &parse(&o).unwrap(),
            &p,
            "192.0.2.5".parse().unwrap(),
            4000,
            20,
            9,
            true,
        )
        .unwrap();
        assert_eq!(
            far.srtp.as_ref().unwrap().remote_key,
            key,
            "the far end has our key"
        );
        let n = accept_answer_with(&a, &p, 20, Some(&key)).unwrap();
        let k = n.srtp.expect("keys");
        assert_eq!(
            (k.local_key, k.remote_key),
            (key.clone(), far.srtp.unwrap().local_key)
        );
        assert!(n.rtcp_mux);
        // A plain answer to an SDES offer is refused.
        let plain = super::offer(&p, "192.0.2.5".parse().unwrap(), 4000, 20, 3);
        assert!(matches!(
            accept_answer_with(&plain, &p, 20, Some(&key)),
            Err(LegacySdpError::NoCrypto(_))
        ));
    }

    #[test]
    fn our_offer_and_their_answer() {
        let p = prefs(&["PCMA", "PCMU", "opus"]);
        let o = super::offer(&p, "127.0.0.1".parse().unwrap(), 30000, 20, 1);
        assert!(
            o.contains("m=audio 30000 RTP/AVP 8 0 111 101 110\r\n"),
            "{o}"
        );
        assert!(o.contains("a=rtpmap:110 telephone-event/48000\r\n"), "{o}");
        // The far end answers our offer with our own answer function.
        let (a, far) = answer(
            &parse(&o).unwrap(),
            &prefs(&["PCMU"]),
            "192.0.2.5".parse().unwrap(),
            4000,
            20,
            9,
            false,
        )
        .unwrap();
        assert_eq!(far.codec.name, "PCMU");
        let n = accept_answer(&a, &p, 20).unwrap();
        assert_eq!(
            (n.codec.pt, n.telephone_event.as_ref().map(|t| t.pt)),
            (Pt(0), Some(Pt(101)))
        );
        assert_eq!(
            (n.remote.addr, n.remote.port),
            ("192.0.2.5".parse::<IpAddr>().unwrap(), 4000)
        );
        let bad = a
            .replace("RTP/AVP 0 101", "RTP/AVP 3")
            .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:3 GSM/8000");
        assert!(
            matches!(
                accept_answer(&bad, &p, 20),
                Err(LegacySdpError::NoCommonCodec { .. })
            ),
            "{bad}"
        );
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            ans("garbage", &["PCMU"]),
            Err(LegacySdpError::Parse(_))
        ));
        let no_audio = offer("m=audio 0 RTP/AVP 0", "");
        assert_eq!(
            ans(&no_audio, &["PCMU"]).unwrap_err(),
            LegacySdpError::NoAudio
        );
        let webrtc = offer(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=rtpmap:111 opus/48000/2\r\n",
        );
        assert_eq!(
            ans(&webrtc, &["opus"]).unwrap_err(),
            LegacySdpError::NoAudio
        );
    }
}
