//! Bencode (BEP 3), the encoding of the ng control protocol: integers,
//! byte strings, lists and dictionaries. Decoding is as tolerant as
//! rtpengine's: dictionary keys in any order, a repeated key's last value
//! wins; and bounded: nesting stops at [`MAX_DEPTH`].

/// Deeper nesting than any ng message has is refused.
pub const MAX_DEPTH: usize = 32;

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bencode {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Bencode>),
    /// Entries in the order they came (or were added); see [`Bencode::get`].
    Dict(Vec<(Vec<u8>, Bencode)>),
}

impl From<&str> for Bencode {
    fn from(s: &str) -> Self {
        Bencode::Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for Bencode {
    fn from(s: String) -> Self {
        Bencode::Bytes(s.into_bytes())
    }
}

impl From<i64> for Bencode {
    fn from(i: i64) -> Self {
        Bencode::Int(i)
    }
}

impl From<u64> for Bencode {
    fn from(i: u64) -> Self {
        Bencode::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}

impl Bencode {
    /// A dictionary of `entries`, in that order.
    pub fn dict<K: Into<Vec<u8>>>(entries: impl IntoIterator<Item = (K, Bencode)>) -> Self {
        Bencode::Dict(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A list of strings.
    pub fn strings<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Self {
        Bencode::List(items.into_iter().map(|s| s.as_ref().into()).collect())
    }

    /// Adds an entry to a dictionary (nothing for other values).
    pub fn insert(&mut self, key: &str, value: Bencode) {
        if let Bencode::Dict(d) = self {
            d.push((key.as_bytes().to_vec(), value));
        }
    }

    /// A dictionary's value for `key`; a repeated key's last value.
    pub fn get(&self, key: &str) -> Option<&Bencode> {
        match self {
            Bencode::Dict(d) => d
                .iter()
                .rev()
                .find(|(k, _)| k == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A string value, lossily as UTF-8.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Bencode::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// An integer, or a string holding one (clients send both).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Bencode::Int(i) => Some(*i),
            Bencode::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            _ => None,
        }
    }

    /// A list's strings, or a lone string as a one-item list.
    pub fn as_strings(&self) -> Vec<String> {
        match self {
            Bencode::List(l) => l.iter().filter_map(Bencode::as_text).collect(),
            Bencode::Bytes(_) => self.as_text().into_iter().collect(),
            _ => Vec::new(),
        }
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
                    out.extend_from_slice(format!("{}:", k.len()).as_bytes());
                    out.extend_from_slice(k);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes one value from the start of `b`; returns it and the rest.
    pub fn decode(b: &[u8]) -> Option<(Bencode, &[u8])> {
        Self::decode_depth(b, 0)
    }

    fn decode_depth(b: &[u8], depth: usize) -> Option<(Bencode, &[u8])> {
        if depth > MAX_DEPTH {
            return None;
        }
        match *b.first()? {
            b'i' => {
                let end = b.iter().position(|&c| c == b'e')?;
                let digits = std::str::from_utf8(&b[1..end]).ok()?;
                if digits.is_empty() || digits.starts_with('+') {
                    return None;
                }
                Some((Bencode::Int(digits.parse().ok()?), &b[end + 1..]))
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
                let mut d = Vec::new();
                while *rest.first()? != b'e' {
                    let (Bencode::Bytes(k), r) = Self::decode_depth(rest, depth + 1)? else {
                        return None;
                    };
                    let (v, r) = Self::decode_depth(r, depth + 1)?;
                    d.push((k, v));
                    rest = r;
                }
                Some((Bencode::Dict(d), &rest[1..]))
            }
            b'0'..=b'9' => {
                let colon = b.iter().take(20).position(|&c| c == b':')?;
                let n: usize = std::str::from_utf8(&b[..colon]).ok()?.parse().ok()?;
                let body = b.get(colon + 1..colon.checked_add(1 + n)?)?;
                Some((Bencode::Bytes(body.to_vec()), &b[colon + 1 + n..]))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_what_kamailio_sends() {
        let v = Bencode::dict([
            ("sdp", "v=0\r\n".into()),
            ("flags", Bencode::strings(["trust-address"])),
            ("delete delay", Bencode::Int(-3)),
        ]);
        let bytes = v.to_bytes();
        assert_eq!(
            bytes,
            b"d3:sdp5:v=0\r\n5:flagsl13:trust-addresse12:delete delayi-3ee".to_vec()
        );
        assert_eq!(Bencode::decode(&bytes), Some((v, &b""[..])));
        // Unsorted keys, a repeated key (the last wins), trailing bytes.
        let (d, rest) = Bencode::decode(b"d3:ICE5:force3:ICE6:remove1:ai1eeXYZ").unwrap();
        assert_eq!(
            d.get("ICE").and_then(Bencode::as_text).as_deref(),
            Some("remove")
        );
        assert_eq!(d.get("a").and_then(Bencode::as_int), Some(1));
        assert_eq!(rest, b"XYZ");
        assert_eq!(Bencode::from("30").as_int(), Some(30));
    }

    #[test]
    fn broken_input_is_none_not_a_panic() {
        for bad in [
            &b"d3:sdp"[..],
            b"i12",
            b"ie",
            b"i+1e",
            b"99999999999999999999999:x",
            b"5:abc",
            b"di1ei2ee",
            b"l",
            b"x",
            b"",
        ] {
            assert_eq!(Bencode::decode(bad), None, "{bad:?}");
        }
        let deep = "l".repeat(MAX_DEPTH + 2) + &"e".repeat(MAX_DEPTH + 2);
        assert_eq!(Bencode::decode(deep.as_bytes()), None);
    }
}
