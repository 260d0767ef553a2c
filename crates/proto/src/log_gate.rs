//! Log lines that a peer can trigger at will (a failed handshake, a bad
//! packet, a refused call) go through a gate: at most one line per
//! interval, saying how many were held back since, so that a flood costs
//! neither disk nor CPU. Time is passed in.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One line per `every`; the rest counted.
#[derive(Debug)]
pub struct LogGate {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogGate {
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Whether a line may be logged at `now`; if so, how many were held
    /// back since the last one.
    pub fn pass(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.0 {
            Some(last) if now.duration_since(last) < self.every => {
                s.1 += 1;
                None
            }
            _ => {
                let held = s.1;
                *s = (Some(now), 0);
                Some(held)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let g = LogGate::new(Duration::from_secs(1));
        let t = Instant::now();
        assert_eq!(g.pass(t), Some(0));
        for i in 1..=5 {
            assert_eq!(g.pass(t + Duration::from_millis(i * 100)), None);
        }
        assert_eq!(g.pass(t + Duration::from_millis(1000)), Some(5));
        assert_eq!(g.pass(t + Duration::from_millis(1500)), None);
    }
}
