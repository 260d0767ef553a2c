//! Replies by cookie: Kamailio resends a request with the same cookie
//! (every `rtpengine_tout_ms`, up to `rtpengine_retr` times) until it hears
//! back, so a repeated cookie must get the first reply again, byte for
//! byte, and never run twice. Like rtpengine's cookie cache: two
//! generations that swap every [`GENERATION`], so a reply is kept 30 to
//! 60 s; a cookie still being answered is known as in progress.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long one generation of replies lasts.
pub const GENERATION: Duration = Duration::from_secs(30);

/// Most replies kept per generation: a flood of distinct cookies from an
/// allowed source cannot grow the cache past this.
pub const MAX_PER_GENERATION: usize = 100_000;

/// What a request's cookie says about it.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    /// Not seen: run it.
    New,
    /// Answered already: send this again.
    Answered(&'a [u8]),
    /// Being answered: its reply will go out when ready; drop this copy.
    InProgress,
}

#[derive(Debug)]
pub struct ReplyCache {
    current: HashMap<Vec<u8>, Vec<u8>>,
    old: HashMap<Vec<u8>, Vec<u8>>,
    in_progress: HashSet<Vec<u8>>,
    swapped: Instant,
}

impl ReplyCache {
    pub fn new(now: Instant) -> Self {
        Self {
            current: HashMap::new(),
            old: HashMap::new(),
            in_progress: HashSet::new(),
            swapped: now,
        }
    }

    fn age(&mut self, now: Instant) {
        if now.saturating_duration_since(self.swapped) >= GENERATION {
            self.old = std::mem::take(&mut self.current);
            self.swapped = now;
        }
    }

    /// Looks a cookie up; a new one is marked in progress.
    pub fn check(&mut self, now: Instant, cookie: &[u8]) -> Seen<'_> {
        self.age(now);
        if self.in_progress.contains(cookie) {
            return Seen::InProgress;
        }
        if let Some(r) = self.current.get(cookie).or_else(|| self.old.get(cookie)) {
            return Seen::Answered(r);
        }
        self.in_progress.insert(cookie.to_vec());
        Seen::New
    }

    /// The reply to a request marked in progress.
    pub fn answered(&mut self, now: Instant, cookie: &[u8], reply: &[u8]) {
        self.age(now);
        self.in_progress.remove(cookie);
        if self.current.len() < MAX_PER_GENERATION {
            self.current.insert(cookie.to_vec(), reply.to_vec());
        }
    }

    /// Replies held.
    pub fn len(&self) -> usize {
        self.current.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_runs_once_and_its_reply_is_kept_30_to_60_s() {
        let t0 = Instant::now();
        let mut c = ReplyCache::new(t0);
        assert_eq!(c.check(t0, b"1_2_3"), Seen::New);
        assert_eq!(c.check(t0, b"1_2_3"), Seen::InProgress);
        c.answered(t0, b"1_2_3", b"d6:result2:oke");
        let t = t0 + Duration::from_secs(29);
        assert_eq!(c.check(t, b"1_2_3"), Seen::Answered(b"d6:result2:oke"));
        let t = t0 + Duration::from_secs(45); // swapped once: in the old generation
        assert_eq!(c.check(t, b"1_2_3"), Seen::Answered(b"d6:result2:oke"));
        let t = t0 + Duration::from_secs(75); // swapped twice: gone
        assert_eq!(c.check(t, b"1_2_3"), Seen::New);
    }
}
