//! ng requests as Kamailio's rtpengine module sends them, typed: the
//! datagram `<cookie> <bencoded dictionary>`, the command, and the keys and
//! flags of offer/answer that matter for a WebRTC <-> SIP relay. Key
//! spellings are taken the way rtpengine takes them (`call-id`, `call-ID`,
//! `call id`; `sdp`, `SDP`...). Keys and flags nothing here knows are
//! collected in [`OfferAnswer::ignored`], to be logged: existing configs
//! keep working.

use super::bencode::Bencode;

/// Why a request gets `result: error`; the reason strings are rtpengine's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NgError {
    #[error("Invalid data (no payload)")]
    NoPayload,
    #[error("Could not decode bencode dictionary")]
    BadBencode,
    #[error("Invalid NG data format")]
    NotADictionary,
    #[error("Dictionary contains no key \"command\"")]
    NoCommand,
    #[error("Unrecognized command")]
    UnknownCommand(String),
    #[error("No call-id in message")]
    NoCallId,
    #[error("No from-tag in message")]
    NoFromTag,
    #[error("No to-tag in message")]
    NoToTag,
    #[error("No SDP body in message")]
    NoSdp,
    #[error("invalid limit, must be >= 0")]
    BadLimit,
}

impl NgError {
    /// The metric label of the refusal.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoPayload | Self::BadBencode | Self::NotADictionary => "malformed",
            Self::NoCommand | Self::UnknownCommand(_) => "unknown_command",
            Self::NoCallId | Self::NoFromTag | Self::NoToTag | Self::NoSdp | Self::BadLimit => {
                "missing_key"
            }
        }
    }
}

/// Splits a datagram into its cookie and payload; None when there is no
/// cookie (no space, or nothing before it): such a datagram gets no reply.
pub fn split_cookie(datagram: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = datagram.iter().position(|&b| b == b' ')?;
    (space > 0).then(|| (&datagram[..space], &datagram[space + 1..]))
}

/// A key as rtpengine compares it: lower case, spaces as hyphens.
fn canonical(key: &[u8]) -> String {
    String::from_utf8_lossy(key)
        .to_ascii_lowercase()
        .replace(' ', "-")
}

/// The codec rules of an offer or answer (`codec: {mask: [...], ...}`, or
/// `codec-mask-X` words in `flags`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodecFlags {
    pub mask: Vec<String>,
    pub transcode: Vec<String>,
    pub strip: Vec<String>,
    pub accept: Vec<String>,
    /// Exempt from `strip` (`codec-strip-all codec-except-PCMU`).
    pub except: Vec<String>,
    /// Added to what is offered.
    pub offer: Vec<String>,
    /// Parameters of a codec (`codec-set-opus/48000/...`): taken, not used.
    pub set: Vec<String>,
}

/// An offer or an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferAnswer {
    pub call_id: String,
    /// The offerer's tag (for an answer too: Kamailio swaps them).
    pub from_tag: String,
    /// The answerer's tag, when known.
    pub to_tag: Option<String>,
    pub via_branch: Option<String>,
    pub sdp: String,
    /// `ICE=...`: force, remove, default, force-relay...
    pub ice: Option<String>,
    /// `DTLS=...`: off, passive, active...
    pub dtls: Option<String>,
    /// `transport-protocol`: RTP/AVP, RTP/SAVP, UDP/TLS/RTP/SAVPF...
    pub transport: Option<String>,
    /// `rtcp-mux`: offer, require, demux, accept...
    pub rtcp_mux: Vec<String>,
    pub codec: CodecFlags,
    /// `replace`: origin, session-connection...
    pub replace: Vec<String>,
    pub direction: Vec<String>,
    /// `received-from`: address family and address of the SIP message.
    pub received_from: Option<(String, String)>,
    pub label: Option<String>,
    /// The bare words of `flags` (hyphenated): trust-address,
    /// SIP-source-address, symmetric...
    pub flags: Vec<String>,
    /// Keys and flags taken but not acted on, for the log.
    pub ignored: Vec<String>,
}

impl OfferAnswer {
    /// Whether a bare flag is set (case-insensitive, as rtpengine's).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }
}

/// `delete`: the call, or one side or branch of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delete {
    pub call_id: String,
    pub from_tag: Option<String>,
    pub to_tag: Option<String>,
    pub via_branch: Option<String>,
    /// `delete-delay` / `delete delay`, seconds, when given.
    pub delay_s: Option<i64>,
    /// `flags: [fatal]`: an unknown call is an error, not a warning.
    pub fatal: bool,
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    Ping,
    Offer(OfferAnswer),
    Answer(OfferAnswer),
    Delete(Delete),
    Query {
        call_id: String,
        from_tag: Option<String>,
        to_tag: Option<String>,
    },
    List {
        limit: usize,
    },
}

impl Command {
    /// The command word, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Offer(_) => "offer",
            Self::Answer(_) => "answer",
            Self::Delete(_) => "delete",
            Self::Query { .. } => "query",
            Self::List { .. } => "list",
        }
    }

    /// Parses a payload (the datagram after its cookie).
    pub fn parse(payload: &[u8]) -> Result<Self, NgError> {
        match payload.first() {
            None => return Err(NgError::NoPayload),
            Some(b'd') => {}
            Some(_) => return Err(NgError::NotADictionary),
        }
        let (dict, _) = Bencode::decode(payload).ok_or(NgError::BadBencode)?;
        let Bencode::Dict(entries) = &dict else {
            return Err(NgError::BadBencode);
        };
        // Keys as rtpengine reads them; a repeated key's last value wins.
        let mut keys: Vec<(String, &Bencode)> =
            entries.iter().map(|(k, v)| (canonical(k), v)).collect();
        keys.reverse();
        let get = |k: &str| keys.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
        let text = |k: &str| get(k).and_then(Bencode::as_text);
        let command = text("command").ok_or(NgError::NoCommand)?;
        let call_id = || text("call-id").filter(|c| !c.is_empty());
        Ok(match command.as_str() {
            "ping" => Self::Ping,
            "list" => {
                let limit = get("limit").map_or(Some(32), Bencode::as_int);
                match limit {
                    Some(n) if n >= 0 => Self::List {
                        limit: usize::try_from(n).unwrap_or(usize::MAX),
                    },
                    _ => return Err(NgError::BadLimit),
                }
            }
            "query" => Self::Query {
                call_id: call_id().ok_or(NgError::NoCallId)?,
                from_tag: text("from-tag"),
                to_tag: text("to-tag"),
            },
            "delete" => Self::Delete(Delete {
                call_id: call_id().ok_or(NgError::NoCallId)?,
                from_tag: text("from-tag").filter(|t| !t.is_empty()),
                to_tag: text("to-tag").filter(|t| !t.is_empty()),
                via_branch: text("via-branch").filter(|t| !t.is_empty()),
                delay_s: get("delete-delay").and_then(Bencode::as_int),
                fatal: get("flags")
                    .map(Bencode::as_strings)
                    .unwrap_or_default()
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case("fatal")),
            }),
            "offer" | "answer" => {
                // rtpengine's order of checks.
                let sdp = text("sdp").ok_or(NgError::NoSdp)?;
                let call_id = call_id().ok_or(NgError::NoCallId)?;
                let from_tag = text("from-tag")
                    .filter(|t| !t.is_empty())
                    .ok_or(NgError::NoFromTag)?;
                let to_tag = text("to-tag").filter(|t| !t.is_empty());
                if command == "answer" && to_tag.is_none() {
                    return Err(NgError::NoToTag);
                }
                let mut oa = OfferAnswer {
                    call_id,
                    from_tag,
                    to_tag,
                    sdp,
                    ..Default::default()
                };
                let mut seen = std::collections::HashSet::new();
                for (key, value) in keys.iter().rev() {
                    if !seen.insert(key.clone()) {
                        continue; // the last value was taken
                    }
                    take_key(&mut oa, key, value);
                }
                if command == "offer" {
                    Self::Offer(oa)
                } else {
                    Self::Answer(oa)
                }
            }
            other => return Err(NgError::UnknownCommand(other.to_string())),
        })
    }
}

/// One key of an offer or answer.
fn take_key(oa: &mut OfferAnswer, key: &str, value: &Bencode) {
    let text = || value.as_text();
    match key {
        "command" | "sdp" | "call-id" | "from-tag" | "to-tag" | "supports" => {}
        "via-branch" => oa.via_branch = text().filter(|t| !t.is_empty()),
        "ice" => oa.ice = text(),
        "dtls" => oa.dtls = text(),
        "transport-protocol" => oa.transport = text(),
        "rtcp-mux" => oa.rtcp_mux.extend(value.as_strings()),
        "replace" => oa.replace.extend(value.as_strings()),
        "direction" => oa.direction.extend(value.as_strings()),
        "label" | "from-label" => oa.label = text(),
        "received-from" => {
            let v = value.as_strings();
            if let [family, addr] = v.as_slice() {
                oa.received_from = Some((family.clone(), addr.clone()));
            }
        }
        "codec" => {
            for (sub, list) in [
                ("mask", &mut oa.codec.mask),
                ("transcode", &mut oa.codec.transcode),
                ("strip", &mut oa.codec.strip),
                ("accept", &mut oa.codec.accept),
                ("except", &mut oa.codec.except),
                ("offer", &mut oa.codec.offer),
                ("set", &mut oa.codec.set),
            ] {
                list.extend(value.get(sub).map(Bencode::as_strings).unwrap_or_default());
            }
        }
        "flags" => {
            for f in value.as_strings() {
                take_flag(oa, &f.replace(' ', "-"));
            }
        }
        other => oa.ignored.push(other.to_string()),
    }
}

/// One word of `flags`: the prefixed forms Kamailio leaves there
/// (`codec-accept-X`...) go where their key would, bare words are kept.
fn take_flag(oa: &mut OfferAnswer, flag: &str) {
    let lower = flag.to_ascii_lowercase();
    let rest = |prefix: &str| {
        (lower.starts_with(prefix) && flag.len() > prefix.len())
            .then(|| flag[prefix.len()..].to_string())
    };
    if let Some(c) = rest("codec-mask-") {
        oa.codec.mask.push(c);
    } else if let Some(c) = rest("codec-transcode-").or_else(|| rest("transcode-")) {
        oa.codec.transcode.push(c);
    } else if let Some(c) = rest("codec-strip-") {
        oa.codec.strip.push(c);
    } else if let Some(c) = rest("codec-accept-") {
        oa.codec.accept.push(c);
    } else if let Some(c) = rest("codec-except-") {
        oa.codec.except.push(c);
    } else if let Some(c) = rest("codec-offer-") {
        oa.codec.offer.push(c);
    } else if let Some(c) = rest("codec-set-") {
        oa.codec.set.push(c);
    } else if let Some(m) = rest("rtcp-mux-") {
        oa.rtcp_mux.push(m);
    } else if let Some(r) = rest("replace-") {
        oa.replace.push(r);
    } else {
        oa.flags.push(flag.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Kamailio 5.6's rtpengine_offer() sends for the usual WebRTC ->
    /// SIP flags, in its order.
    fn kamailio_offer() -> Vec<u8> {
        let d = Bencode::dict([
            ("supports", Bencode::strings(["load limit"])),
            ("sdp", "v=0\r\n".into()),
            ("ICE", "remove".into()),
            ("DTLS", "off".into()),
            (
                "flags",
                Bencode::strings(["trust-address", "codec-accept-PCMA", "bogus-flag"]),
            ),
            (
                "replace",
                Bencode::strings(["origin", "session-connection"]),
            ),
            (
                "codec",
                Bencode::dict([
                    ("mask", Bencode::strings(["opus"])),
                    ("transcode", Bencode::strings(["PCMU"])),
                ]),
            ),
            ("transport-protocol", "RTP/AVP".into()),
            ("rtcp-mux", Bencode::strings(["demux"])),
            ("call-id", "a84b4c76e66710".into()),
            ("via-branch", "z9hG4bK776".into()),
            ("received-from", Bencode::strings(["IP4", "192.0.2.10"])),
            ("from-tag", "1928301774".into()),
            ("label", "caller".into()),
            ("record-call", "yes".into()),
            ("command", "offer".into()),
        ]);
        let mut out = b"0_4242_17 ".to_vec();
        d.encode(&mut out);
        out
    }

    #[test]
    fn a_kamailio_offer_is_read_key_by_key() {
        let datagram = kamailio_offer();
        let (cookie, payload) = split_cookie(&datagram).unwrap();
        assert_eq!(cookie, b"0_4242_17");
        let Command::Offer(o) = Command::parse(payload).unwrap() else {
            panic!("an offer")
        };
        assert_eq!(
            (o.call_id.as_str(), o.from_tag.as_str()),
            ("a84b4c76e66710", "1928301774")
        );
        assert_eq!(o.to_tag, None);
        assert_eq!(o.via_branch.as_deref(), Some("z9hG4bK776"));
        assert_eq!(
            (o.ice.as_deref(), o.dtls.as_deref()),
            (Some("remove"), Some("off"))
        );
        assert_eq!(o.transport.as_deref(), Some("RTP/AVP"));
        assert_eq!(o.rtcp_mux, vec!["demux"]);
        assert_eq!(o.codec.mask, vec!["opus"]);
        assert_eq!(o.codec.transcode, vec!["PCMU"]);
        assert_eq!(o.codec.accept, vec!["PCMA"]);
        assert_eq!(o.replace, vec!["origin", "session-connection"]);
        assert_eq!(
            o.received_from,
            Some(("IP4".to_string(), "192.0.2.10".to_string()))
        );
        assert_eq!(o.label.as_deref(), Some("caller"));
        assert!(o.has_flag("Trust-Address"));
        assert!(o.has_flag("bogus-flag"));
        assert_eq!(o.ignored, vec!["record-call"]);
    }

    #[test]
    fn errors_are_rtpengines() {
        let parse = |d: Bencode| Command::parse(&d.to_bytes());
        assert_eq!(Command::parse(b""), Err(NgError::NoPayload));
        assert_eq!(Command::parse(b"d3:foo"), Err(NgError::BadBencode));
        assert_eq!(Command::parse(b"li1ee"), Err(NgError::NotADictionary));
        assert_eq!(
            parse(Bencode::dict([("a", Bencode::Int(1))])),
            Err(NgError::NoCommand)
        );
        let cmd = |c: &str| Bencode::dict([("command", c.into())]);
        assert_eq!(
            parse(cmd("play media")),
            Err(NgError::UnknownCommand("play media".into()))
        );
        assert_eq!(parse(cmd("offer")), Err(NgError::NoSdp));
        let mut o = cmd("answer");
        o.insert("sdp", "v=0".into());
        assert_eq!(parse(o.clone()), Err(NgError::NoCallId));
        o.insert("call-ID", "c".into());
        assert_eq!(parse(o.clone()), Err(NgError::NoFromTag));
        o.insert("from-tag", "f".into());
        assert_eq!(parse(o.clone()), Err(NgError::NoToTag));
        o.insert("to-tag", "t".into());
        assert!(matches!(parse(o), Ok(Command::Answer(_))));
        assert_eq!(
            NgError::BadBencode.to_string(),
            "Could not decode bencode dictionary"
        );
        assert_eq!(split_cookie(b"nocookie"), None);
        assert_eq!(split_cookie(b" d4:ping"), None);
    }

    #[test]
    fn delete_query_list_and_ping() {
        let parse = |d: Bencode| Command::parse(&d.to_bytes()).unwrap();
        assert_eq!(
            parse(Bencode::dict([("command", "ping".into())])),
            Command::Ping
        );
        assert_eq!(
            parse(Bencode::dict([("command", "list".into())])),
            Command::List { limit: 32 }
        );
        assert_eq!(
            Command::parse(
                &Bencode::dict([("command", "list".into()), ("limit", Bencode::Int(-1))])
                    .to_bytes()
            ),
            Err(NgError::BadLimit)
        );
        let d = parse(Bencode::dict([
            ("command", "delete".into()),
            ("call-id", "c".into()),
            ("from-tag", "f".into()),
            ("delete-delay", "0".into()),
            ("delete delay", Bencode::Int(0)),
            ("flags", Bencode::strings(["fatal"])),
        ]));
        assert_eq!(
            d,
            Command::Delete(Delete {
                call_id: "c".into(),
                from_tag: Some("f".into()),
                delay_s: Some(0),
                fatal: true,
                ..Default::default()
            })
        );
    }
}
