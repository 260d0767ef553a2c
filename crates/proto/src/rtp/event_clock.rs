//! Which clock a WebRTC peer counts its RFC 4733 durations on.
//!
//! libwebrtc's event sender (Chrome's, and every browser or app built on
//! libwebrtc, this gateway's own included) sizes a digit on the event's
//! clock but grows the duration field with the audio stream's RTP
//! timestamps. With `telephone-event/8000` in an Opus (48 kHz) stream the
//! field grows 960 per 20 ms frame against a length of 8 ticks per ms: a
//! 100 ms digit lasts one frame on the wire and says 960 (120 ms at 8 kHz),
//! a 160 ms one two frames and 1920 (240 ms), a 400 ms one four and 3840
//! (480 ms). What was asked for is then only known to lie within the last
//! frame's worth of the field: (120 (n-1), 120 n] ms for n frames.
//!
//! rtcgw answers Chrome's offers with the event at the Opus clock only
//! (`sdp::match_telephone_events`), where the two clocks are one and this
//! does not arise. When a peer offers `telephone-event/8000` alone, this
//! learns from the packets whether the peer counts on the audio clock and
//! gives the SIP side the best estimate of the digit's length. Sans-IO:
//! arrival times are passed in.

use std::time::{Duration, Instant};

use super::dtmf::{Digit, EventPayload};

/// One audio packet of a WebRTC sender (Opus at 20 ms, libwebrtc's ptime).
const FRAME: Duration = Duration::from_millis(20);
/// RTCDTMFSender's default tone duration (W3C webrtc-pc section 7.2).
const DEFAULT_MS: u32 = 100;
/// Arrivals closer than this say nothing about the field's growth rate.
const MIN_SPAN: Duration = Duration::from_millis(15);

/// Per WebRTC leg: the event and audio clocks and what the packets have
/// shown so far.
#[derive(Debug)]
pub struct EventClock {
    event_clock: u32,
    audio_clock: u32,
    /// The peer grows the field on the audio clock (None: not yet seen).
    on_audio_clock: Option<bool>,
    /// The current event: its timestamp, first duration and arrival.
    first: Option<(u32, u16, Instant)>,
}

impl EventClock {
    pub fn new(event_clock: u32, audio_clock: u32) -> Self {
        Self {
            event_clock,
            audio_clock,
            on_audio_clock: None,
            first: None,
        }
    }

    pub fn clocks(&self) -> (u32, u32) {
        (self.event_clock, self.audio_clock)
    }

    /// Whether the peer has been seen counting on the audio clock.
    pub fn counts_on_audio_clock(&self) -> bool {
        self.on_audio_clock == Some(true)
    }

    /// The audio clock's ticks in one frame, when the two clocks differ in
    /// the way that matters (an event clock below the audio clock).
    fn frame_ticks(&self) -> Option<u32> {
        (0 < self.event_clock && self.event_clock < self.audio_clock)
            .then(|| (u64::from(self.audio_clock) * FRAME.as_millis() as u64 / 1000) as u32)
    }

    /// A received event packet (every one, retransmitted ends included).
    /// Returns true when this packet settled that the peer counts on the
    /// audio clock (for one log line).
    pub fn observe(&mut self, now: Instant, rtp_timestamp: u32, ev: &EventPayload) -> bool {
        let Some(frame) = self.frame_ticks() else {
            return false;
        };
        let before = self.on_audio_clock;
        match self.first {
            Some((ts, dur0, at)) if ts == rtp_timestamp => {
                let span = now.saturating_duration_since(at);
                if span >= MIN_SPAN && ev.duration > dur0 {
                    // Ticks per second of arrival: the event clock's rate
                    // from a right sender, the audio clock's from libwebrtc.
                    // Between the two: their geometric mean.
                    let rate = f64::from(ev.duration - dur0) / span.as_secs_f64();
                    let between =
                        (f64::from(self.event_clock) * f64::from(self.audio_clock)).sqrt();
                    if rate > between {
                        self.on_audio_clock = Some(true);
                    } else if rate < between / 2.0 {
                        self.on_audio_clock = Some(false);
                    }
                }
            }
            _ => {
                self.first = Some((rtp_timestamp, ev.duration, now));
                // An event first seen at its end, a whole number of audio
                // frames long: libwebrtc's one-frame digit (its start is
                // not sent). A right sender would have sent a start and
                // updates before, all lost; one clear sign from the rate
                // outweighs this.
                if self.on_audio_clock.is_none()
                    && ev.end
                    && ev.duration > 0
                    && u32::from(ev.duration) % frame == 0
                {
                    self.on_audio_clock = Some(true);
                }
            }
        }
        before != Some(true) && self.on_audio_clock == Some(true)
    }

    /// The digit's length in ms, as its sender meant it.
    pub fn duration_ms(&self, d: &Digit) -> u32 {
        let Some(frame) = self.frame_ticks().filter(|_| self.counts_on_audio_clock()) else {
            return d.duration_ms(self.event_clock);
        };
        // n frames went out; the length asked for lies in the last one,
        // measured on the event clock: (hi - step, hi].
        let n = d.duration_ticks.div_ceil(frame).max(1);
        let step = frame * 1000 / self.event_clock;
        let hi = n * step;
        let lo = hi - step;
        if lo < DEFAULT_MS && DEFAULT_MS <= hi {
            DEFAULT_MS
        } else {
            lo + step / 2
        }
    }

    /// What to ask libwebrtc's own sender for, on this leg, so that the
    /// digit's field comes out nearest `ms` on the event clock: it can
    /// only say whole frames' worth of the audio clock (120 ms steps for
    /// telephone-event/8000 beside Opus).
    pub fn request_ms(&self, ms: u32) -> u32 {
        let Some(frame) = self.frame_ticks() else {
            return ms;
        };
        let step = frame * 1000 / self.event_clock;
        let n = ((ms + step / 2) / step).max(1);
        // Any length within the n-th step gives n frames: the middle of it.
        n * step - step / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(end: bool, duration: u16) -> EventPayload {
        EventPayload {
            event: 1,
            end,
            volume: 10,
            duration,
        }
    }

    fn digit(ticks: u32) -> Digit {
        Digit {
            digit: '1',
            duration_ticks: ticks,
            rtp_timestamp: 0,
        }
    }

    /// The packets libwebrtc sends for a digit of `ms` with
    /// telephone-event/8000 beside 48 kHz Opus (rtp_sender_audio.cc):
    /// length in 8 kHz ticks, field grown by 960 per 20 ms frame, no
    /// packet at the first frame, the end three times.
    fn libwebrtc_8k_in_opus(ms: u32) -> Vec<(u64, EventPayload)> {
        let length = ms * 8;
        let mut out = Vec::new();
        let mut frame = 1;
        loop {
            let field = 960 * frame;
            let at = 20 * u64::from(frame);
            if field >= length {
                for _ in 0..3 {
                    out.push((at, ev(true, field as u16)));
                }
                return out;
            }
            out.push((at, ev(false, field as u16)));
            frame += 1;
        }
    }

    /// A sender that counts on the event clock: 160 ticks per 20 ms.
    fn right_8k(ms: u32) -> Vec<(u64, EventPayload)> {
        let mut out: Vec<_> = (1..ms / 20)
            .map(|i| (20 * u64::from(i), ev(false, (160 * i) as u16)))
            .collect();
        for _ in 0..3 {
            out.push((u64::from(ms), ev(true, (ms * 8) as u16)));
        }
        out
    }

    fn feed(c: &mut EventClock, t0: Instant, ts: u32, packets: &[(u64, EventPayload)]) -> u32 {
        let mut last = 0;
        for (at, e) in packets {
            c.observe(t0 + Duration::from_millis(*at), ts, e);
            last = u32::from(e.duration);
        }
        last
    }

    #[test]
    fn libwebrtc_digits_on_an_8k_event_beside_opus_come_out_within_their_last_frame() {
        let t0 = Instant::now();
        for (ms, want) in [(100, 100), (160, 180), (400, 420), (40, 100), (240, 180)] {
            let mut c = EventClock::new(8000, 48000);
            let ticks = feed(&mut c, t0, 1000, &libwebrtc_8k_in_opus(ms));
            assert!(c.counts_on_audio_clock(), "{ms} ms");
            let got = c.duration_ms(&digit(ticks));
            assert_eq!(got, want, "{ms} ms");
            // Within the frame's worth the field can say (120 ms here).
            assert!(got.abs_diff(ms) <= 60, "{ms} ms -> {got}");
        }
    }

    #[test]
    fn a_sender_counting_on_the_event_clock_is_taken_at_its_word() {
        let t0 = Instant::now();
        for ms in [100, 160, 400] {
            let mut c = EventClock::new(8000, 48000);
            let ticks = feed(&mut c, t0, 1000, &right_8k(ms));
            assert!(!c.counts_on_audio_clock(), "{ms} ms");
            assert_eq!(c.duration_ms(&digit(ticks)), ms);
        }
    }

    #[test]
    fn one_clear_rate_outweighs_a_lone_end_packet() {
        let t0 = Instant::now();
        let mut c = EventClock::new(8000, 48000);
        // All but the end of a 120 ms digit lost: looks like libwebrtc's.
        feed(&mut c, t0, 1000, &[(120, ev(true, 960))]);
        assert!(c.counts_on_audio_clock());
        // The next digit grows at 8 kHz: the peer counts right after all.
        let ticks = feed(&mut c, t0 + Duration::from_secs(1), 9000, &right_8k(200));
        assert!(!c.counts_on_audio_clock());
        assert_eq!(c.duration_ms(&digit(ticks)), 200);
    }

    #[test]
    fn matching_clocks_change_nothing() {
        assert_eq!(
            EventClock::new(0, 48000).request_ms(160),
            160,
            "no event negotiated"
        );
        let t0 = Instant::now();
        let mut c = EventClock::new(48000, 48000);
        let settled = c.observe(t0, 1, &ev(true, 960));
        assert!(!settled && !c.counts_on_audio_clock());
        assert_eq!(c.duration_ms(&digit(4800)), 100);
        assert_eq!(c.request_ms(160), 160);
        let pcmu = EventClock::new(8000, 8000);
        assert_eq!(pcmu.duration_ms(&digit(1280)), 160);
    }

    #[test]
    fn own_requests_land_on_the_nearest_field() {
        let c = EventClock::new(8000, 48000);
        // The field says 120 ms per frame: 100 -> one frame (120), 160 ->
        // one (120), 200 -> two (240), 400 -> three (360).
        for (ms, frames) in [(40, 1), (100, 1), (160, 1), (200, 2), (400, 3), (1000, 8)] {
            let asked = c.request_ms(ms);
            // libwebrtc's count: the first frame where 960 n >= 8 asked.
            let n = (asked * 8).div_ceil(960);
            assert_eq!(n, frames, "{ms} ms asked as {asked}");
        }
    }
}
