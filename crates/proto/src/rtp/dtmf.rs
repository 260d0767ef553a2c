//! RFC 4733 telephone-events: decoding received events into digits with
//! their durations, ignoring the retransmitted end packets (section 2.5.1.4),
//! and sending digits as events in place of audio packets (section 2.5.1).

use std::collections::VecDeque;

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

/// The event code of a digit (section 3.2), or None.
pub fn event_code(digit: char) -> Option<u8> {
    let d = digit.to_ascii_uppercase() as u8;
    b"0123456789*#ABCD"
        .iter()
        .position(|c| *c == d)
        .map(|i| i as u8)
}

/// One telephone-event packet to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    pub payload: [u8; 4],
    /// The event's start (the same in every packet of the event).
    pub timestamp: u32,
    /// Set on the first packet of an event (section 2.5.1.3).
    pub marker: bool,
}

#[derive(Debug)]
struct Sending {
    event: u8,
    start: u32,
    elapsed: u32,
    total: u32,
    ends_sent: u8,
}

/// Sends digits as RFC 4733 events, one packet per audio packet slot: while
/// an event lasts it replaces the audio (section 2.5.1.2), its duration
/// grows by the packet's ticks, the end packet goes three times (section
/// 2.5.1.4), then [`GAP_PACKETS`] audio packets pass before the next digit.
/// Sans-IO: the media task asks at each packet slot.
#[derive(Debug, Default)]
pub struct DtmfSender {
    queue: VecDeque<(u8, u32)>,
    active: Option<Sending>,
    gap: u32,
}

/// Audio packets between two events (40 ms at 20 ms ptime).
pub const GAP_PACKETS: u32 = 2;
const END_REPEATS: u8 = 3;
/// -10 dBm0, a usual DTMF level.
const VOLUME: u8 = 10;

impl DtmfSender {
    /// Queues a digit; false (nothing queued) when it is not a DTMF digit.
    /// The duration is kept within 40 ms..5 s.
    pub fn queue(&mut self, digit: char, duration_ms: u32) -> bool {
        let Some(event) = event_code(digit) else {
            return false;
        };
        self.queue.push_back((event, duration_ms.clamp(40, 5000)));
        true
    }

    pub fn is_idle(&self) -> bool {
        self.active.is_none() && self.queue.is_empty()
    }

    /// An audio packet with RTP `timestamp` covering `ticks` is due: the
    /// event packet to send instead, or None to send the audio.
    pub fn on_packet(
        &mut self,
        timestamp: u32,
        ticks: u32,
        clock_rate: u32,
    ) -> Option<EventPacket> {
        if let Some(s) = &mut self.active {
            if s.ends_sent == 0 {
                s.elapsed = (s.elapsed + ticks).min(s.total);
            }
            let end = s.elapsed >= s.total;
            if end {
                if s.ends_sent == END_REPEATS {
                    self.active = None;
                    self.gap = GAP_PACKETS.saturating_sub(1);
                    return None;
                }
                s.ends_sent += 1;
            }
            return Some(packet(s.event, end, s.elapsed, s.start, false));
        }
        if self.gap > 0 {
            self.gap -= 1;
            return None;
        }
        let (event, ms) = self.queue.pop_front()?;
        // The duration field is 16 bits (section 2.5.1.3): long events at
        // 48 kHz are shortened rather than split into segments.
        let total = (u64::from(ms) * u64::from(clock_rate) / 1000).min(u64::from(u16::MAX)) as u32;
        let elapsed = ticks.min(total);
        self.active = Some(Sending {
            event,
            start: timestamp,
            elapsed,
            total,
            ends_sent: 0,
        });
        Some(packet(event, false, elapsed, timestamp, true))
    }
}

fn packet(event: u8, end: bool, duration: u32, timestamp: u32, marker: bool) -> EventPacket {
    EventPacket {
        payload: EventPayload {
            event,
            end,
            volume: VOLUME,
            duration: duration as u16,
        }
        .write(),
        timestamp,
        marker,
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

    #[test]
    fn sender_replaces_audio_then_ends_three_times_and_the_receiver_agrees() {
        let mut tx = DtmfSender::default();
        assert!(!tx.queue('x', 100), "not a digit");
        assert!(tx.queue('5', 100) && tx.queue('#', 60));
        let mut rx = DtmfReceiver::default();
        let (mut ts, mut sent, mut audio, mut digits) = (1000u32, Vec::new(), 0, Vec::new());
        for _ in 0..20 {
            match tx.on_packet(ts, 160, 8000) {
                Some(p) => {
                    digits.extend(rx.handle(p.timestamp, &p.payload));
                    sent.push(p);
                }
                None => audio += 1,
            }
            ts = ts.wrapping_add(160);
        }
        // '5': 100 ms = 800 ticks at 8 kHz in 20 ms packets: 160, 320, ...
        // 800 (end) sent three times; then the gap; then '#'.
        let first: Vec<_> = sent
            .iter()
            .take(7)
            .map(|p| EventPayload::parse(&p.payload).unwrap())
            .collect();
        assert_eq!(
            first.iter().map(|e| e.duration).collect::<Vec<_>>(),
            [160, 320, 480, 640, 800, 800, 800]
        );
        assert_eq!(first.iter().filter(|e| e.end).count(), 3);
        assert!(sent[0].marker && !sent[1].marker);
        assert!(sent.iter().take(7).all(|p| p.timestamp == 1000));
        assert_eq!(sent[7].timestamp, 1000 + 160 * (7 + GAP_PACKETS));
        assert_eq!(digits.iter().map(|d| d.digit).collect::<String>(), "5#");
        assert_eq!(digits[0].duration_ms(8000), 100);
        assert_eq!(digits[1].duration_ms(8000), 60);
        assert!(tx.is_idle());
        assert_eq!(audio, 20 - sent.len());
    }

    #[test]
    fn sender_at_48k_and_long_digits_fit_the_16_bit_duration() {
        let mut tx = DtmfSender::default();
        tx.queue('9', 5000);
        let mut last = 0;
        for i in 0..400 {
            if let Some(p) = tx.on_packet(i * 960, 960, 48000) {
                last = EventPayload::parse(&p.payload).unwrap().duration;
            }
        }
        assert_eq!(last, u16::MAX);
        assert!(tx.is_idle());
        assert_eq!(event_code('a'), Some(12));
    }
}
