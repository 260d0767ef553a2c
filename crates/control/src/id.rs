//! Identifiers of calls and of requests waiting for an answer.

use std::fmt;

/// A call's identifier, unique in the process: it names the call in the
/// API (`/v1/calls/{id}`), the logs, the recordings and the stats export.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub String);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A front-end request waiting for its reply ([`crate::Output::Reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiToken(pub u64);

/// Makes call ids: a counter, and a salt so that ids differ across
/// restarts (recordings of an earlier run are not overwritten).
#[derive(Debug)]
pub(crate) struct CallIds {
    next: u64,
    salt: u32,
}

impl CallIds {
    pub fn new(salt: u32) -> Self {
        Self { next: 1, salt }
    }

    pub fn next(&mut self) -> CallId {
        let n = self.next;
        self.next += 1;
        CallId(format!("c{n}-{:06x}", self.salt & 0xff_ffff))
    }
}
