//! How much audio bandwidth the sound a WebRTC leg sends really has, so that
//! its Opus encoder codes no more than that (`webrtc.opus.match_bandwidth`).
//!
//! On a call bridged to G.711 everything the browser hears comes through
//! an 8 kHz codec: nothing above 4 kHz. libopus does not find that out by
//! itself at the complexities WebRTC uses, and coding fullband costs about
//! twice the CPU of narrowband (`rtcgw-bench ceiling`, BENCHMARKS.md) for
//! no audible difference. The detector looks at the 48 kHz frames the
//! encoder is given (after the legacy leg's decoder and the resampler) and
//! says whether narrowband covers them. Wideband (G.722) is not worth a cap:
//! it saves little CPU, and every change of cap restarts the encoder.
//!
//! Only active frames count (RMS above about -50 dBFS): silence says
//! nothing. A frame is flagged when its energy above 6 kHz (an 8th-order
//! Butterworth high-pass) is more than -45 dB of the whole. Measured on the
//! asterisk prompts at 48 kHz: speech from 8 kHz recordings flags at most
//! 12% of any 300 active frames (resampling leaves a trace, onsets click),
//! the same prompts from the wideband (G.722) recordings at least 61%.
//! So: narrowband once 300 active frames in a row (3 s of speech) flagged
//! fewer than 20%; back to fullband as soon as half of the last 50 are
//! flagged, and then not down again for 30 s of speech.

/// Opus audio bandwidths, as the highest sample rate they need (what
/// libwebrtc's `SetMaxPlaybackRate` takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Band {
    Narrow = 8000,
    Full = 48000,
}

/// RMS of an active frame: about -50 dBFS.
const ACTIVE_RMS: f64 = 100.0;
/// A frame is flagged above -45 dB of its energy above 6 kHz.
const FLAGGED: f64 = 3.162e-5;
/// Active frames looked back on to come down, and the most of them that
/// may be flagged for that.
const LOWER_WINDOW: usize = 300;
const LOWER_MAX_FLAGGED: usize = LOWER_WINDOW / 5;
/// Active frames looked back on to go up, and how many flagged do it.
const RAISE_WINDOW: usize = 50;
const RAISE_FLAGGED: usize = RAISE_WINDOW / 2;
/// Active frames after going up before coming down may be considered.
const HOLD_AFTER_RAISE: u32 = 3000;

/// RBJ high-pass biquad (direct form I) at 48 kHz.
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    x: [f64; 2],
    y: [f64; 2],
}

impl Biquad {
    fn high_pass(cutoff_hz: f64, q: f64) -> Self {
        let w = 2.0 * std::f64::consts::PI * cutoff_hz / 48000.0;
        let (sin, cos) = w.sin_cos();
        let alpha = sin / (2.0 * q);
        let a0 = 1.0 + alpha;
        Self {
            b: [
                (1.0 + cos) / 2.0 / a0,
                -(1.0 + cos) / a0,
                (1.0 + cos) / 2.0 / a0,
            ],
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
            x: [0.0; 2],
            y: [0.0; 2],
        }
    }

    fn step(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.b[1] * self.x[0] + self.b[2] * self.x[1]
            - self.a[0] * self.y[0]
            - self.a[1] * self.y[1];
        self.x = [x, self.x[0]];
        self.y = [y, self.y[0]];
        y
    }
}

/// An 8th-order Butterworth high-pass: four biquads (28 dB down at 2/3 of
/// the edge, where telephone speech still has energy).
#[derive(Debug, Clone, Copy)]
struct HighPass([Biquad; 4]);

impl HighPass {
    fn new(cutoff_hz: f64) -> Self {
        Self(
            [0.509_795_6, 0.601_344_9, 0.899_976_2, 2.562_915_4]
                .map(|q| Biquad::high_pass(cutoff_hz, q)),
        )
    }

    fn step(&mut self, x: f64) -> f64 {
        self.0.iter_mut().fold(x, |y, b| b.step(y))
    }
}

/// One WebRTC leg's detector; feed it every 10 ms frame at 48 kHz.
#[derive(Debug, Clone)]
pub struct BandDetector {
    above_narrow: HighPass,
    cap: Band,
    /// The last active frames, flagged or not (newest at the back), and
    /// how many of them are flagged.
    recent: std::collections::VecDeque<bool>,
    flagged: usize,
    /// Active frames to go before coming down is considered.
    hold: u32,
}

impl Default for BandDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl BandDetector {
    /// Starts at fullband: nothing is capped until the audio shows it.
    pub fn new() -> Self {
        Self {
            above_narrow: HighPass::new(6000.0),
            cap: Band::Full,
            recent: std::collections::VecDeque::with_capacity(LOWER_WINDOW + 1),
            flagged: 0,
            hold: 0,
        }
    }

    pub fn cap(&self) -> Band {
        self.cap
    }

    /// One 10 ms frame (48 kHz mono); returns the band to encode from now.
    pub fn update(&mut self, pcm: &[i16]) -> Band {
        let (mut total, mut high) = (0.0, 0.0);
        for &s in pcm {
            let x = f64::from(s);
            let h = self.above_narrow.step(x);
            total += x * x;
            high += h * h;
        }
        if pcm.is_empty() || total / (pcm.len() as f64) < ACTIVE_RMS * ACTIVE_RMS {
            return self.cap;
        }
        let flag = high > total * FLAGGED;
        self.recent.push_back(flag);
        self.flagged += usize::from(flag);
        if self.recent.len() > LOWER_WINDOW && self.recent.pop_front() == Some(true) {
            self.flagged -= 1;
        }
        self.hold = self.hold.saturating_sub(1);
        match self.cap {
            Band::Full => {
                if self.hold == 0
                    && self.recent.len() == LOWER_WINDOW
                    && self.flagged < LOWER_MAX_FLAGGED
                {
                    self.cap = Band::Narrow;
                }
            }
            Band::Narrow => {
                let last = self.recent.iter().rev().take(RAISE_WINDOW);
                if last.filter(|f| **f).count() >= RAISE_FLAGGED {
                    self.cap = Band::Full;
                    self.hold = HOLD_AFTER_RAISE;
                }
            }
        }
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOICE: &[(f64, f64)] = &[(300.0, 6000.0), (1200.0, 3000.0), (3400.0, 800.0)];
    /// The same with a component at 6.5 kHz 20 dB down: wideband speech.
    const WIDE: &[(f64, f64)] = &[(300.0, 6000.0), (1200.0, 3000.0), (6500.0, 600.0)];

    /// `seconds` of 10 ms frames at 48 kHz: frame `f` is the sum of
    /// `tones(f)` (Hz, amplitude).
    fn frames_of(tones: impl Fn(usize) -> &'static [(f64, f64)], seconds: f64) -> Vec<Vec<i16>> {
        let n = (seconds * 100.0).round() as usize;
        (0..n)
            .map(|f| {
                (0..480)
                    .map(|i| {
                        let t = (f * 480 + i) as f64 / 48000.0;
                        let v: f64 = tones(f)
                            .iter()
                            .map(|(hz, a)| a * (2.0 * std::f64::consts::PI * hz * t).sin())
                            .sum();
                        v as i16
                    })
                    .collect()
            })
            .collect()
    }

    fn frames(tones: &'static [(f64, f64)], seconds: f64) -> Vec<Vec<i16>> {
        frames_of(|_| tones, seconds)
    }

    fn feed(d: &mut BandDetector, frames: &[Vec<i16>]) -> Band {
        frames.iter().fold(d.cap(), |_, f| d.update(f))
    }

    #[test]
    fn telephone_band_audio_comes_down_to_narrowband_after_three_seconds() {
        let mut d = BandDetector::new();
        assert_eq!(
            feed(&mut d, &frames(VOICE, 2.9)),
            Band::Full,
            "not before 3 s"
        );
        assert_eq!(feed(&mut d, &frames(VOICE, 0.2)), Band::Narrow);
    }

    #[test]
    fn wideband_speech_stays_fullband() {
        let mut d = BandDetector::new();
        assert_eq!(feed(&mut d, &frames(WIDE, 10.0)), Band::Full);
        // Half its frames wideband (vowels and fricatives): still fullband.
        let mixed = frames_of(|f| if f % 2 == 0 { WIDE } else { VOICE }, 10.0);
        assert_eq!(feed(&mut d, &mixed), Band::Full);
    }

    #[test]
    fn a_few_flagged_frames_neither_hold_narrowband_back_nor_lift_it() {
        // One frame in twenty with content above 6 kHz (onsets, resampling;
        // each also clicks into the next).
        let mut d = BandDetector::new();
        let spotty = frames_of(|f| if f % 20 == 0 { WIDE } else { VOICE }, 3.1);
        assert_eq!(feed(&mut d, &spotty), Band::Narrow);
        assert_eq!(
            feed(
                &mut d,
                &frames_of(|f| if f % 20 == 0 { WIDE } else { VOICE }, 5.0)
            ),
            Band::Narrow
        );
    }

    #[test]
    fn silence_and_faint_sound_decide_nothing() {
        let mut d = BandDetector::new();
        let faint = frames(&[(300.0, 50.0), (15000.0, 50.0)], 5.0);
        assert_eq!(feed(&mut d, &faint), Band::Full);
        let silence = vec![vec![0i16; 480]; 500];
        assert_eq!(feed(&mut d, &silence), Band::Full);
        assert_eq!(feed(&mut d, &frames(VOICE, 3.1)), Band::Narrow);
        assert_eq!(
            feed(&mut d, &silence),
            Band::Narrow,
            "silence keeps the cap"
        );
    }

    #[test]
    fn wideband_speech_lifts_the_cap_at_once_and_it_stays_up_for_thirty_seconds() {
        let mut d = BandDetector::new();
        feed(&mut d, &frames(VOICE, 3.1));
        assert_eq!(d.cap(), Band::Narrow);
        assert_eq!(feed(&mut d, &frames(WIDE, 0.3)), Band::Full, "within 0.3 s");
        assert_eq!(feed(&mut d, &frames(VOICE, 29.0)), Band::Full);
        assert_eq!(feed(&mut d, &frames(VOICE, 1.1)), Band::Narrow);
    }
}
