//! SIP over a byte stream (RFC 3261 section 18.3): messages are cut out of
//! a TCP (or TLS) stream by their Content-Length. Sans-IO: bytes in,
//! whole messages out; the driver owns the connection.

use super::message::{Message, Method, Response, content_length, header_end};

/// Why a stream cannot be read on: the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    #[error("message over {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    BadContentLength(String),
}

/// Cuts a stream into SIP messages.
#[derive(Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    max_message: usize,
}

impl StreamFramer {
    /// `max_message`: the largest message (headers and body) taken.
    pub fn new(max_message: usize) -> Self {
        Self {
            buf: Vec::with_capacity(8192),
            max_message,
        }
    }

    /// Bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if the stream holds one; keep-alive CRLFs
    /// between messages (RFC 5626 section 3.5.1) are skipped. An error
    /// means the stream is not SIP any more.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let skip = self
            .buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        self.buf.drain(..skip);
        let Some(end) = header_end(&self.buf) else {
            if self.buf.len() > self.max_message {
                return Err(FramingError::TooLarge(self.max_message));
            }
            return Ok(None);
        };
        let body = content_length(&self.buf[..end])
            .map_err(|e| FramingError::BadContentLength(e.reason))?
            .unwrap_or(0);
        if end + body > self.max_message {
            return Err(FramingError::TooLarge(self.max_message));
        }
        if self.buf.len() < end + body {
            return Ok(None);
        }
        Ok(Some(self.buf.drain(..end + body).collect()))
    }

    /// Bytes held that are not a whole message yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// After [`FramingError::TooLarge`]: the 513 (Message Too Large, RFC
    /// 3261 section 21.5.14) to send before closing, when what was too
    /// large is a request whose head could be read.
    pub fn too_large_response(&self) -> Option<Vec<u8>> {
        let end = header_end(&self.buf)?;
        let text = std::str::from_utf8(&self.buf[..end]).ok()?;
        // The head without its Content-Length: the body never comes.
        let mut head: String = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .take_while(|l| !l.is_empty())
            .filter(|l| {
                let name = l.split(':').next().unwrap_or("").trim();
                !(name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l"))
            })
            .flat_map(|l| [l, "\r\n"])
            .collect();
        head.push_str("Content-Length: 0\r\n\r\n");
        let Ok(Message::Request(req)) = Message::parse(head.as_bytes()) else {
            return None;
        };
        if req.method == Method::Ack {
            return None;
        }
        // A final response needs a To tag (RFC 3261 section 8.2.6.2).
        let resp = Response::to(&req, 513, "Message Too Large", Some("rtcgw513"));
        Some(Message::Response(resp).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 4\r\n\r\nabcd";

    #[test]
    fn messages_are_cut_by_content_length_whatever_the_segments() {
        let mut stream = b"\r\n\r\n".to_vec(); // keep-alives first
        stream.extend_from_slice(OPTIONS);
        stream.extend_from_slice(OPTIONS);
        for split in 0..stream.len() {
            let mut f = StreamFramer::new(1000);
            let mut got = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                f.push(part);
                while let Some(m) = f.next_message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(
                got,
                vec![OPTIONS.to_vec(), OPTIONS.to_vec()],
                "split {split}"
            );
            assert_eq!(f.pending(), 0);
        }
    }

    #[test]
    fn a_request_too_large_gets_513_from_its_head() {
        let mut f = StreamFramer::new(200);
        f.push(
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: big\r\nCSeq: 1 INVITE\r\n\
Content-Length: 100000\r\n\r\nv=0\r\n",
        );
        assert_eq!(f.next_message(), Err(FramingError::TooLarge(200)));
        let r = String::from_utf8(f.too_large_response().unwrap()).unwrap();
        assert!(r.starts_with("SIP/2.0 513 Message Too Large\r\n"), "{r}");
        assert!(
            r.contains("Call-ID: big\r\n") && r.contains("CSeq: 1 INVITE\r\n"),
            "{r}"
        );
        assert!(r.contains("branch=z9hG4bK1"), "{r}");
        // Garbage without a head, or a response: nothing to answer.
        let mut f = StreamFramer::new(100);
        f.push(&[b'X'; 101]);
        assert!(f.next_message().is_err());
        assert_eq!(f.too_large_response(), None);
        let mut f = StreamFramer::new(100);
        f.push(b"SIP/2.0 200 OK\r\nContent-Length: 1000\r\n\r\n");
        assert!(f.next_message().is_err());
        assert_eq!(f.too_large_response(), None);
    }

    #[test]
    fn oversize_and_bad_lengths_end_the_stream() {
        let mut f = StreamFramer::new(100);
        f.push(&[b'X'; 101]);
        assert_eq!(f.next_message(), Err(FramingError::TooLarge(100)));
        let mut f = StreamFramer::new(100);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1000\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::TooLarge(100)));
        let mut f = StreamFramer::new(100);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n");
        assert!(matches!(
            f.next_message(),
            Err(FramingError::BadContentLength(_))
        ));
    }
}
