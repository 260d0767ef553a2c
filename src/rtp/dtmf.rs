//! RFC 4733 telephone-events: decoding received events into digits with
//! their durations, ignoring the retransmitted end packets (section 2.5.1.4).

/// The event codes 0-15 as characters (RFC 4733 section 3.2).
pub fn event_char(event: u8) -> Option<char> {
    b"0123456789*#ABCD"
        .get(usize::from(event))
        .map(|c| char::from(*c))
}

/// One telephone-event payload (section 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

impl EventPayload {
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < 4 {
            return None;
        }
        Some(Self {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    pub fn write(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            u8::from(self.end) << 7 | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }
}

/// A completed digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    pub digit: char,
    /// In RTP clock ticks (the event's duration field).
    pub duration_ticks: u32,
    pub rtp_timestamp: u32,
}

impl Digit {
    pub fn duration_ms(&self, clock_rate: u32) -> u32 {
        self.duration_ticks * 1000 / clock_rate.max(1)
    }
}

/// Turns a stream of telephone-event packets into digits. An event is
/// identified by its RTP timestamp (the event's start); it completes at
/// its first end packet, and later packets with that timestamp (the
/// retransmitted ends) are ignored. A new timestamp without an end for
/// the previous one completes the previous one too (its end was lost).
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    current: Option<(u32, EventPayload)>,
    last_done: Option<u32>,
}

impl DtmfReceiver {
    pub fn handle(&mut self, rtp_timestamp: u32, payload: &[u8]) -> Vec<Digit> {
        let Some(ev) = EventPayload::parse(payload) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if self.last_done == Some(rtp_timestamp) {
            return out; // retransmitted end
        }
        if let Some((ts, prev)) = self.current
            && ts != rtp_timestamp
        {
            // The previous event's end packets were all lost.
            if let Some(d) = event_char(prev.event) {
                out.push(Digit {
                    digit: d,
                    duration_ticks: u32::from(prev.duration),
                    rtp_timestamp: ts,
                });
            }
            self.last_done = Some(ts);
            self.current = None;
        }
        if ev.end {
            if let Some(d) = event_char(ev.event) {
                out.push(Digit {
                    digit: d,
                    duration_ticks: u32::from(ev.duration),
                    rtp_timestamp,
                });
            }
            self.last_done = Some(rtp_timestamp);
            self.current = None;
        } else {
            self.current = Some((rtp_timestamp, ev));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(event: u8, end: bool, duration: u16) -> [u8; 4] {
        EventPayload {
            event,
            end,
            volume: 10,
            duration,
        }
        .write()
    }

    #[test]
    fn digit_with_retransmitted_ends_counts_once() {
        let mut r = DtmfReceiver::default();
        let mut digits = Vec::new();
        for d in [160u16, 320, 480, 640] {
            digits.extend(r.handle(8000, &p(5, false, d)));
        }
        for _ in 0..3 {
            digits.extend(r.handle(8000, &p(5, true, 800)));
        }
        assert_eq!(
            digits,
            vec![Digit {
                digit: '5',
                duration_ticks: 800,
                rtp_timestamp: 8000
            }]
        );
        assert_eq!(digits[0].duration_ms(8000), 100);
        // At 48 kHz (WebRTC's telephone-event/48000) the same field means 100 ms too.
        assert_eq!(
            Digit {
                digit: '5',
                duration_ticks: 4800,
                rtp_timestamp: 0
            }
            .duration_ms(48000),
            100
        );
    }

    #[test]
    fn lost_end_is_completed_by_the_next_event_and_specials_decode() {
        let mut r = DtmfReceiver::default();
        let mut digits = Vec::new();
        digits.extend(r.handle(100, &p(11, false, 160)));
        digits.extend(r.handle(100, &p(11, false, 320)));
        digits.extend(r.handle(900, &p(10, true, 480)));
        let chars: String = digits.iter().map(|d| d.digit).collect();
        assert_eq!(chars, "#*");
        assert_eq!(digits[0].duration_ticks, 320);
        assert!(r.handle(5, &[1, 2]).is_empty(), "short payload ignored");
        assert!(
            r.handle(6, &p(99, true, 1)).is_empty(),
            "unknown event ignored"
        );
    }
}
