//! The legacy leg's RTP port pool: even RTP ports (RTCP on the odd one
//! above) from a configured range, handed out as leases that return their
//! port when dropped, so a failed or ended call can never leak one.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct PortPool {
    free: Mutex<BTreeSet<u16>>,
    total: usize,
}

/// An RTP port (and the RTCP port above it) owned until dropped.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    pool: Arc<PortPool>,
}

impl PortLease {
    pub fn rtp(&self) -> u16 {
        self.port
    }

    pub fn rtcp(&self) -> u16 {
        self.port + 1
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool
            .free
            .lock()
            .expect("port pool lock")
            .insert(self.port);
    }
}

impl PortPool {
    pub fn new(min: u16, max: u16) -> Arc<Self> {
        let first = min + (min % 2);
        let free: BTreeSet<u16> = (first..max).step_by(2).collect();
        Arc::new(Self {
            total: free.len(),
            free: Mutex::new(free),
        })
    }

    /// A free pair picked at random (a guessable port invites media
    /// injection), or None when the range is used up.
    pub fn lease(self: &Arc<Self>) -> Option<PortLease> {
        let mut free = self.free.lock().expect("port pool lock");
        let (lo, hi) = (*free.first()?, *free.last()?);
        let start = rand::random_range(lo..=hi);
        let port = *free.range(start..).next().or(free.first())?;
        free.remove(&port);
        drop(free);
        Some(PortLease {
            port,
            pool: self.clone(),
        })
    }

    pub fn in_use(&self) -> usize {
        self.total - self.free.lock().expect("port pool lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_even_pairs_and_returns_them_on_drop() {
        let pool = PortPool::new(30001, 30008);
        let mut got: Vec<PortLease> = (0..3).map(|_| pool.lease().unwrap()).collect();
        got.sort_by_key(PortLease::rtp);
        let ports: Vec<(u16, u16)> = got.iter().map(|l| (l.rtp(), l.rtcp())).collect();
        assert_eq!(ports, vec![(30002, 30003), (30004, 30005), (30006, 30007)]);
        assert!(
            pool.lease().is_none(),
            "30008 would need 30009, outside the range"
        );
        assert_eq!(pool.in_use(), 3);
        let b = got.remove(1);
        drop(b);
        assert_eq!(pool.in_use(), 2);
        assert_eq!(pool.lease().unwrap().rtp(), 30004, "the only one free");
        drop(got);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn ports_are_not_handed_out_in_order() {
        // The first call must not always get the first port (guessable).
        let firsts: std::collections::BTreeSet<u16> = (0..50)
            .map(|_| PortPool::new(20000, 30000).lease().unwrap().rtp())
            .collect();
        assert!(firsts.len() > 40, "{firsts:?}");
    }
}
