//! SIP over a byte stream (RFC 3261 section 18.3): messages are cut out of
//! a TCP (or TLS) stream by their Content-Length. Sans-IO: bytes in,
//! whole messages out; the driver owns the connection.

use super::message::{content_length, header_end};

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
