//! Accepting connections when the process runs out of descriptors: EMFILE
//! and ENFILE (and ENOBUFS/ENOMEM) do not clear by retrying at once, and an
//! accept loop that retries at once spins a core and logs without end.
//! [`AcceptBackoff`] waits (10 ms doubling to 1 s) and logs once a second;
//! [`raise_fd_limit`] lifts the soft descriptor limit to the hard one at
//! start (1024 is the soft default under systemd and most shells).

use std::time::{Duration, Instant};

use rtcgw_proto::log_gate::LogGate;

/// The wait after failed accepts of one listener.
#[derive(Debug)]
pub struct AcceptBackoff {
    what: &'static str,
    delay: Duration,
    log: LogGate,
}

impl AcceptBackoff {
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            delay: Duration::ZERO,
            log: LogGate::new(Duration::from_secs(1)),
        }
    }

    /// A connection was accepted: no more waiting.
    pub fn accepted(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// After a failed accept: waits when the error is a lack of resources
    /// (not for a connection reset before it was accepted).
    pub async fn failed(&mut self, e: &std::io::Error) {
        use rustix::io::Errno;
        let exhausted = Errno::from_io_error(e).is_some_and(|n| {
            [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM].contains(&n)
        });
        if exhausted {
            self.delay = (self.delay * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        }
        if let Some(held) = self.log.pass(Instant::now()) {
            tracing::warn!(
                listener = self.what,
                held_back = held,
                wait_ms = self.delay.as_millis() as u64,
                "accept failed: {e}"
            );
        }
        if exhausted {
            tokio::time::sleep(self.delay).await;
        }
    }
}

/// Raises the soft descriptor limit to the hard one; returns (before,
/// after).
pub fn raise_fd_limit() -> std::io::Result<(u64, u64)> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    let before = l.current.unwrap_or(u64::MAX);
    if l.current != l.maximum {
        l.current = l.maximum;
        setrlimit(Resource::Nofile, l).map_err(std::io::Error::from)?;
    }
    let after = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    Ok((before, after))
}
