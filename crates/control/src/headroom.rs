//! Admission by measured headroom: whether the gateway can take another
//! call without hurting the ones it has. `media.max_calls` is a fixed
//! number; what a call costs depends on its codecs and on what else runs on
//! the machine. Once a second the driver hands over the media clock's
//! counters (10 ms frames due, and those handled late) and the process's
//! CPU time; [`Headroom`] says when to stop admitting and when to start
//! again. While it says overloaded, INVITEs and API calls get 503 with
//! Retry-After and OPTIONS does too, so that a dispatcher moves on.
//!
//! Overloaded when, over the last [`WINDOW`] seconds, either
//! - late frames reach `max_late_pct` of the frames due (the admitted calls
//!   are already being hurt: stop before it reaches the 1% that degrades
//!   them), or
//! - the process used `max_cpu_pct` of the cores it may run on (the next
//!   calls would make frames late).
//!
//! Back to admitting once both have stayed below their limits' recovery
//! marks (a fifth of the late limit; the CPU limit less 10 points) for
//! [`RECOVER_AFTER`] seconds in a row, so that it does not flap with each
//! call that ends.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back the figures look.
pub const WINDOW: Duration = Duration::from_secs(2);
/// How long the figures must stay low before admitting again.
pub const RECOVER_AFTER: Duration = Duration::from_secs(5);

/// Limits (`[media] admit_max_late_pct` and `admit_max_cpu_pct`); 0
/// turns one off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadroomLimits {
    pub max_late_pct: f64,
    pub max_cpu_pct: f64,
}

/// One reading of cumulative counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadSample {
    /// 10 ms media frames due so far, and of those handled late.
    pub frames: u64,
    pub late_frames: u64,
    /// CPU seconds the process has used so far.
    pub cpu_s: f64,
    /// Cores the process may run on.
    pub cores: f64,
}

/// What changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Stop admitting: why, for the log and the refusals.
    Overloaded(String),
    Recovered,
}

#[derive(Debug)]
pub struct Headroom {
    limits: HeadroomLimits,
    samples: VecDeque<(Instant, LoadSample)>,
    overloaded: bool,
    /// Since when the figures have been below the recovery marks.
    calm_since: Option<Instant>,
}

impl Headroom {
    pub fn new(limits: HeadroomLimits) -> Self {
        Self {
            limits,
            samples: VecDeque::new(),
            overloaded: false,
            calm_since: None,
        }
    }

    pub fn is_overloaded(&self) -> bool {
        self.overloaded
    }

    /// Takes a reading; returns a change of verdict.
    pub fn sample(&mut self, now: Instant, s: LoadSample) -> Option<Verdict> {
        self.samples.push_back((now, s));
        while self
            .samples
            .get(1)
            .is_some_and(|(t, _)| now.duration_since(*t) >= WINDOW)
        {
            self.samples.pop_front();
        }
        let (t0, first) = *self.samples.front()?;
        let secs = now.duration_since(t0).as_secs_f64();
        if secs < WINDOW.as_secs_f64() * 0.5 {
            return None;
        }
        let frames = s.frames.saturating_sub(first.frames);
        let late = s.late_frames.saturating_sub(first.late_frames);
        let late_pct = if frames == 0 {
            0.0
        } else {
            late as f64 * 100.0 / frames as f64
        };
        let cpu_pct = (s.cpu_s - first.cpu_s).max(0.0) / secs / s.cores.max(1.0) * 100.0;
        let l = self.limits;
        let late_over = l.max_late_pct > 0.0 && late_pct >= l.max_late_pct;
        let cpu_over = l.max_cpu_pct > 0.0 && cpu_pct >= l.max_cpu_pct;
        if !self.overloaded {
            if !(late_over || cpu_over) {
                return None;
            }
            self.overloaded = true;
            self.calm_since = None;
            let why = if late_over {
                format!(
                    "{late_pct:.2}% of 10 ms frames late over the last {} s (limit {}%)",
                    WINDOW.as_secs(),
                    l.max_late_pct
                )
            } else {
                format!(
                    "CPU at {cpu_pct:.0}% of {} core(s) over the last {} s (limit {}%)",
                    s.cores,
                    WINDOW.as_secs(),
                    l.max_cpu_pct
                )
            };
            return Some(Verdict::Overloaded(why));
        }
        let calm = (l.max_late_pct <= 0.0 || late_pct < l.max_late_pct / 5.0)
            && (l.max_cpu_pct <= 0.0 || cpu_pct < l.max_cpu_pct - 10.0);
        if !calm {
            self.calm_since = None;
            return None;
        }
        let since = *self.calm_since.get_or_insert(now);
        if now.duration_since(since) < RECOVER_AFTER {
            return None;
        }
        self.overloaded = false;
        self.calm_since = None;
        Some(Verdict::Recovered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadroomLimits = HeadroomLimits {
        max_late_pct: 0.5,
        max_cpu_pct: 85.0,
    };

    /// Feeds one reading a second: (frames, late, cpu seconds) per second.
    struct Feed {
        h: Headroom,
        t: Instant,
        s: LoadSample,
    }

    impl Feed {
        fn new() -> Self {
            Self {
                h: Headroom::new(LIMITS),
                t: Instant::now(),
                s: LoadSample {
                    frames: 0,
                    late_frames: 0,
                    cpu_s: 0.0,
                    cores: 2.0,
                },
            }
        }

        fn second(&mut self, frames: u64, late: u64, cpu_s: f64) -> Option<Verdict> {
            self.t += Duration::from_secs(1);
            self.s.frames += frames;
            self.s.late_frames += late;
            self.s.cpu_s += cpu_s;
            self.h.sample(self.t, self.s)
        }
    }

    #[test]
    fn late_frames_over_the_limit_stop_admission() {
        let mut f = Feed::new();
        for _ in 0..5 {
            assert_eq!(f.second(10_000, 10, 0.5), None, "0.1% late is fine");
        }
        match f.second(10_000, 200, 0.5) {
            Some(Verdict::Overloaded(why)) => assert!(why.contains("late"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(f.h.is_overloaded());
    }

    #[test]
    fn cpu_over_the_limit_stops_admission_before_frames_are_late() {
        let mut f = Feed::new();
        assert_eq!(f.second(10_000, 0, 1.5), None);
        match f.second(10_000, 0, 1.8) {
            Some(Verdict::Overloaded(why)) => assert!(why.contains("CPU at 90%"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recovery_needs_five_calm_seconds_in_a_row() {
        let mut f = Feed::new();
        f.second(10_000, 0, 1.9);
        assert!(matches!(
            f.second(10_000, 0, 1.9),
            Some(Verdict::Overloaded(_))
        ));
        // CPU 77% (below 85 but not below 75): not calm.
        for _ in 0..10 {
            assert_eq!(f.second(10_000, 0, 1.55), None);
        }
        assert!(f.h.is_overloaded());
        // Calm (50%) but once interrupted by late frames.
        for _ in 0..3 {
            f.second(10_000, 0, 1.0);
        }
        assert_eq!(f.second(10_000, 100, 1.0), None);
        for _ in 0..6 {
            assert_eq!(f.second(10_000, 0, 1.0), None);
        }
        assert_eq!(f.second(10_000, 0, 1.0), Some(Verdict::Recovered));
        assert!(!f.h.is_overloaded());
    }

    #[test]
    fn zero_turns_a_limit_off_and_no_frames_is_no_lateness() {
        let mut f = Feed::new();
        f.h = Headroom::new(HeadroomLimits {
            max_late_pct: 0.0,
            max_cpu_pct: 0.0,
        });
        for _ in 0..5 {
            assert_eq!(f.second(100, 100, 2.0), None);
        }
        let mut f = Feed::new();
        for _ in 0..5 {
            assert_eq!(f.second(0, 0, 0.0), None, "idle");
        }
    }
}
