//! rtpengine's ng control protocol (the one Kamailio's `rtpengine` module
//! speaks), sans-IO: [`bencode`], typed requests ([`command`]), replies
//! ([`Reply`]) and the reply cache that makes retransmissions harmless
//! ([`cache`]). What the commands do is call control's business.

pub mod bencode;
pub mod cache;
pub mod command;

pub use bencode::Bencode;
pub use command::{CodecFlags, Command, Delete, NgError, OfferAnswer, split_cookie};

/// A reply dictionary; `result` goes last, as rtpengine puts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    entries: Bencode,
    result: &'static str,
}

impl Reply {
    /// `result: ok`.
    pub fn ok() -> Self {
        Self {
            entries: Bencode::Dict(Vec::new()),
            result: "ok",
        }
    }

    /// `result: pong`.
    pub fn pong() -> Self {
        Self {
            result: "pong",
            ..Self::ok()
        }
    }

    /// `result: error` with its `error-reason`.
    pub fn error(reason: impl Into<String>) -> Self {
        Self {
            result: "error",
            ..Self::ok()
        }
        .with("error-reason", Bencode::from(reason.into()))
    }

    /// `result: ok` with a `warning`.
    pub fn warning(text: impl Into<String>) -> Self {
        Self::ok().with("warning", Bencode::from(text.into()))
    }

    pub fn with(mut self, key: &str, value: Bencode) -> Self {
        self.entries.insert(key, value);
        self
    }

    pub fn is_error(&self) -> bool {
        self.result == "error"
    }

    /// The datagram: the request's cookie, a space, the dictionary.
    pub fn encode(&self, cookie: &[u8]) -> Vec<u8> {
        let mut d = self.entries.clone();
        d.insert("result", self.result.into());
        let mut out = Vec::with_capacity(cookie.len() + 64);
        out.extend_from_slice(cookie);
        out.push(b' ');
        d.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_carry_the_cookie_and_result_last() {
        assert_eq!(
            Reply::pong().encode(b"5_6_7"),
            b"5_6_7 d6:result4:ponge".to_vec()
        );
        let r = Reply::ok().with("sdp", "v=0".into()).encode(b"c");
        assert_eq!(r, b"c d3:sdp3:v=06:result2:oke".to_vec());
        assert_eq!(
            Reply::error("Unknown call-id").encode(b"c"),
            b"c d12:error-reason15:Unknown call-id6:result5:errore".to_vec()
        );
    }
}
