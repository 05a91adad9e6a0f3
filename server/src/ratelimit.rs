//! Per-client-address limits on failed authentication (sign-in, API keys): after
//! `max_failures` failures within `window`, further attempts from that address get 429 with a
//! Retry-After until the oldest failure leaves the window. Successful attempts from other
//! addresses are never affected.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Limiter {
    inner: Arc<Mutex<HashMap<IpAddr, VecDeque<Instant>>>>,
    max_failures: usize,
    window: Duration,
}

impl Limiter {
    pub fn new(max_failures: usize, window: Duration) -> Limiter {
        Limiter { inner: Arc::default(), max_failures, window }
    }

    /// `Err(retry_after)` when `addr` has used up its failures.
    pub fn check(&self, addr: IpAddr) -> Result<(), Duration> {
        self.check_at(addr, Instant::now())
    }

    /// `check` for an optional address, as the API's 429 error.
    pub fn guard(&self, addr: Option<IpAddr>) -> Result<(), crate::error::Error> {
        match addr.map(|ip| self.check(ip)) {
            Some(Err(d)) => Err(crate::error::Error::TooManyRequests { retry_after_secs: d.as_secs().max(1) }),
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, addr: IpAddr) {
        self.record_failure_at(addr, Instant::now())
    }

    fn prune(&self, list: &mut VecDeque<Instant>, now: Instant) {
        while list.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            list.pop_front();
        }
    }

    fn check_at(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut map = self.inner.lock().expect("limiter lock");
        let Some(list) = map.get_mut(&addr) else { return Ok(()) };
        self.prune(list, now);
        if list.len() >= self.max_failures {
            let oldest = *list.front().expect("non-empty");
            return Err(self.window.saturating_sub(now.duration_since(oldest)).max(Duration::from_secs(1)));
        }
        if list.is_empty() {
            map.remove(&addr);
        }
        Ok(())
    }

    fn record_failure_at(&self, addr: IpAddr, now: Instant) {
        let mut map = self.inner.lock().expect("limiter lock");
        if map.len() > 100_000 {
            // Bound memory under a spray of addresses: forget the quiet ones.
            map.retain(|_, l| l.back().is_some_and(|t| now.duration_since(*t) < self.window));
        }
        let list = map.entry(addr).or_default();
        self.prune(list, now);
        list.push_back(now);
    }
}

impl Default for Limiter {
    /// 10 failures per 5 minutes.
    fn default() -> Self {
        Limiter::new(10, Duration::from_secs(300))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_failure_within_the_window_is_refused_and_others_are_unaffected() {
        let l = Limiter::default();
        let bad: IpAddr = "203.0.113.9".parse().unwrap();
        let good: IpAddr = "198.51.100.7".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(l.check_at(bad, t0).is_ok(), "attempt {}", i + 1);
            l.record_failure_at(bad, t0);
        }
        let retry = l.check_at(bad, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(retry, Duration::from_secs(290));
        assert!(l.check_at(good, t0).is_ok());
        assert!(l.check_at(bad, t0 + Duration::from_secs(301)).is_ok(), "the window has passed");
    }
}
