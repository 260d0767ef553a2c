//! DTMF in SIP INFO bodies: `application/dtmf-relay` (Cisco's de facto
//! format, `Signal=5` / `Duration=160` lines) and `application/dtmf` (the
//! digit alone). RFC 6086 left these "legacy INFO usages"; they are what
//! softswitches and PBXs still send.

/// Digit duration when the body gives none.
pub const DEFAULT_DURATION_MS: u32 = 160;

/// Why an INFO body is not a digit we take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DtmfInfoError {
    /// Not a DTMF content type: the INFO gets 415.
    #[error("unsupported INFO content type {0}")]
    ContentType(String),
    /// A DTMF content type with an unusable body: the INFO gets 400.
    #[error("malformed DTMF INFO body: {0}")]
    Malformed(String),
}

/// The content types [`parse`] takes (for the Accept header of a 415).
pub const ACCEPTED: &str = "application/dtmf-relay, application/dtmf";

fn digit_of(s: &str) -> Option<char> {
    let s = s.trim();
    match s {
        "10" => Some('*'),
        "11" => Some('#'),
        _ if s.len() == 1 => {
            let c = s.chars().next()?.to_ascii_uppercase();
            "0123456789*#ABCD".contains(c).then_some(c)
        }
        _ => None,
    }
}

/// The digit and its duration in ms from an INFO's content type and body.
pub fn parse(content_type: &str, body: &[u8]) -> Result<(char, u32), DtmfInfoError> {
    let ctype = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let text =
        std::str::from_utf8(body).map_err(|_| DtmfInfoError::Malformed("not UTF-8".into()))?;
    let bad = || DtmfInfoError::Malformed(text.chars().take(40).collect());
    match ctype.as_str() {
        "application/dtmf-relay" => {
            let (mut digit, mut duration) = (None, DEFAULT_DURATION_MS);
            for line in text.lines() {
                let Some((k, v)) = line.split_once('=') else {
                    continue;
                };
                match k.trim().to_ascii_lowercase().as_str() {
                    "signal" => digit = Some(digit_of(v).ok_or_else(bad)?),
                    "duration" => duration = v.trim().parse().map_err(|_| bad())?,
                    _ => {}
                }
            }
            Ok((digit.ok_or_else(bad)?, duration.clamp(40, 5000)))
        }
        "application/dtmf" => Ok((digit_of(text).ok_or_else(bad)?, DEFAULT_DURATION_MS)),
        other => Err(DtmfInfoError::ContentType(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_relay_and_dtmf_bodies() {
        assert_eq!(
            parse("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Ok(('5', 160))
        );
        assert_eq!(
            parse("Application/DTMF-Relay", b"Signal= #\nDuration= 250"),
            Ok(('#', 250))
        );
        assert_eq!(
            parse("application/dtmf-relay", b"Signal=11"),
            Ok(('#', 160))
        );
        assert_eq!(parse("application/dtmf", b"*"), Ok(('*', 160)));
        assert_eq!(parse("application/dtmf", b"a\r\n"), Ok(('A', 160)));
    }

    #[test]
    fn bad_bodies_and_types() {
        assert!(matches!(
            parse("application/dtmf-relay", b"Signal=Z"),
            Err(DtmfInfoError::Malformed(_))
        ));
        assert!(matches!(
            parse("application/dtmf-relay", b"Duration=100"),
            Err(DtmfInfoError::Malformed(_))
        ));
        assert!(matches!(
            parse("application/dtmf-relay", b"Signal=1\nDuration=x"),
            Err(DtmfInfoError::Malformed(_))
        ));
        assert!(matches!(
            parse("application/dtmf", b"12"),
            Err(DtmfInfoError::Malformed(_))
        ));
        assert!(matches!(
            parse("application/foo", b"x"),
            Err(DtmfInfoError::ContentType(_))
        ));
        assert!(matches!(
            parse("application/dtmf", &[0xff]),
            Err(DtmfInfoError::Malformed(_))
        ));
    }
}
