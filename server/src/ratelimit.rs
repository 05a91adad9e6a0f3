//! Limits on failed authentication (sign-in, API keys), per client address and per account.
//!
//! - An expensive check (a password's Argon2) first *reserves* an attempt, atomically: with
//!   `max_failures` attempts failed or in flight within `window`, the next one gets 429 with a
//!   Retry-After before any work is done, however many arrive at once. A check that succeeds
//!   gives its reservation back; one that fails keeps it as a failure.
//! - A cheap check (an API key's digest) runs first and is counted only when it fails: a key
//!   that verifies is never refused by the failure limiter, whoever else failed from the same
//!   address (behind a proxy, everybody shares one).
//! - IPv6 clients are counted per /64 (one host usually holds a whole /64), IPv4-mapped IPv6 as
//!   IPv4. Client addresses come from `X-Forwarded-For` only when the peer is a trusted proxy
//!   (`CONNVAULT_TRUSTED_PROXIES`); see [`client_addr`].

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;

/// What one limit counts: a client address (IPv6 per /64) or an account (its email, lower case).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Bucket {
    Addr(IpAddr),
    Account(String),
}

impl Bucket {
    /// The bucket of a client address: IPv4 as is, IPv4-mapped IPv6 as IPv4, IPv6 by its /64.
    pub fn addr(addr: IpAddr) -> Bucket {
        Bucket::Addr(match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
            },
            v4 => v4,
        })
    }

    pub fn account(email: &str) -> Bucket {
        Bucket::Account(email.trim().to_lowercase())
    }
}

#[derive(Debug, Default)]
struct Inner {
    buckets: Mutex<HashMap<Bucket, VecDeque<(Instant, u64)>>>,
    next_id: AtomicU64,
}

#[derive(Clone, Debug)]
pub struct Limiter {
    inner: Arc<Inner>,
    max_failures: usize,
    window: Duration,
}

/// An attempt counted before its check. Dropped, it stays counted (a failure); [`release`]
/// gives it back (the check succeeded, or never ran).
///
/// [`release`]: Reservation::release
#[must_use = "a reservation counts as a failure unless the check succeeded"]
#[derive(Debug)]
pub struct Reservation {
    limiter: Limiter,
    entries: Vec<(Bucket, u64)>,
}

impl Reservation {
    /// The check succeeded (or never ran): the attempt no longer counts.
    pub fn release(self) {
        let mut map = self.limiter.inner.buckets.lock().expect("limiter lock");
        for (bucket, id) in &self.entries {
            if let Some(list) = map.get_mut(bucket) {
                list.retain(|(_, i)| i != id);
                if list.is_empty() {
                    map.remove(bucket);
                }
            }
        }
    }
}

fn too_many(retry: Duration) -> Error {
    Error::TooManyRequests { retry_after_secs: retry.as_secs().max(1) }
}

impl Limiter {
    pub fn new(max_failures: usize, window: Duration) -> Limiter {
        Limiter { inner: Arc::default(), max_failures, window }
    }

    pub fn max_failures(&self) -> usize {
        self.max_failures
    }

    fn prune(&self, list: &mut VecDeque<(Instant, u64)>, now: Instant) {
        while list.front().is_some_and(|(t, _)| now.duration_since(*t) >= self.window) {
            list.pop_front();
        }
    }

    fn retry_after(&self, list: &VecDeque<(Instant, u64)>, now: Instant) -> Duration {
        let oldest = list.front().map(|(t, _)| *t).unwrap_or(now);
        self.window.saturating_sub(now.duration_since(oldest)).max(Duration::from_secs(1))
    }

    fn bound_memory(&self, map: &mut HashMap<Bucket, VecDeque<(Instant, u64)>>, now: Instant) {
        if map.len() > 100_000 {
            // Bound memory under a spray of addresses or names: forget the quiet ones.
            map.retain(|_, l| l.back().is_some_and(|(t, _)| now.duration_since(*t) < self.window));
        }
    }

    /// Reserves one attempt in every bucket, all or none, under one lock: `Err` (429) when any
    /// of them already holds `max_failures` failures or attempts in flight.
    pub fn reserve(&self, buckets: &[Bucket]) -> Result<Reservation, Error> {
        self.reserve_at(buckets, Instant::now()).map_err(too_many)
    }

    fn reserve_at(&self, buckets: &[Bucket], now: Instant) -> Result<Reservation, Duration> {
        let mut map = self.inner.buckets.lock().expect("limiter lock");
        self.bound_memory(&mut map, now);
        for b in buckets {
            if let Some(list) = map.get_mut(b) {
                self.prune(list, now);
                if list.len() >= self.max_failures {
                    return Err(self.retry_after(list, now));
                }
            }
        }
        let mut entries = Vec::with_capacity(buckets.len());
        for b in buckets {
            let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            map.entry(b.clone()).or_default().push_back((now, id));
            entries.push((b.clone(), id));
        }
        Ok(Reservation { limiter: self.clone(), entries })
    }

    /// The reservation of `addr`'s bucket (none without an address).
    pub fn reserve_addr(&self, addr: Option<IpAddr>) -> Result<Reservation, Error> {
        self.reserve(&addr.map(Bucket::addr).into_iter().collect::<Vec<_>>())
    }

    /// Counts a failed cheap check from `addr`: `Err` (429) when it is one too many.
    pub fn record_failure(&self, addr: Option<IpAddr>) -> Result<(), Error> {
        let Some(addr) = addr else { return Ok(()) };
        self.record_failure_at(&Bucket::addr(addr), Instant::now()).map_err(too_many)
    }

    fn record_failure_at(&self, bucket: &Bucket, now: Instant) -> Result<(), Duration> {
        let mut map = self.inner.buckets.lock().expect("limiter lock");
        self.bound_memory(&mut map, now);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let list = map.entry(bucket.clone()).or_default();
        self.prune(list, now);
        list.push_back((now, id));
        if list.len() > self.max_failures {
            return Err(self.retry_after(list, now));
        }
        Ok(())
    }
}

impl Default for Limiter {
    /// 10 failures per 5 minutes.
    fn default() -> Self {
        Limiter::new(10, Duration::from_secs(300))
    }
}

/// An address range in CIDR form (or a single address).
pub fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a.parse::<IpAddr>().ok()?, b.parse::<u8>().ok()?),
        None => {
            let a: IpAddr = text.parse().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

pub fn in_cidr(addr: IpAddr, (net, bits): (IpAddr, u8)) -> bool {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    };
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The client's address: the peer's, unless the peer is one of the `trusted` proxies; then the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries further left
/// are whatever the client chose to send). A header that cannot be read leaves the peer.
pub fn client_addr(peer: Option<IpAddr>, headers: &axum::http::HeaderMap, trusted: &[(IpAddr, u8)]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |a: IpAddr| trusted.iter().any(|c| in_cidr(a, *c));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut entries = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else { return Some(peer) };
        for part in text.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(a) => entries.push(a),
                Err(_) => return Some(peer),
            }
        }
    }
    Some(entries.into_iter().rev().find(|a| !is_trusted(*a)).unwrap_or(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_eleventh_failure_within_the_window_is_refused_and_others_are_unaffected() {
        let l = Limiter::default();
        let bad = Bucket::addr(ip("203.0.113.9"));
        let good = Bucket::addr(ip("198.51.100.7"));
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(l.record_failure_at(&bad, t0).is_ok(), "attempt {}", i + 1);
        }
        assert_eq!(l.record_failure_at(&bad, t0 + Duration::from_secs(10)).unwrap_err(), Duration::from_secs(290));
        assert_eq!(l.reserve_at(&[bad.clone()], t0 + Duration::from_secs(10)).unwrap_err(), Duration::from_secs(290));
        assert!(l.reserve_at(&[good], t0).is_ok());
        assert!(l.reserve_at(&[bad], t0 + Duration::from_secs(301)).is_ok(), "the window has passed");
    }

    #[test]
    fn reservations_count_until_they_succeed_and_are_all_or_nothing() {
        let l = Limiter::new(2, Duration::from_secs(300));
        let (a, acct) = (Bucket::addr(ip("192.0.2.1")), Bucket::account("A@example.com"));
        let t0 = Instant::now();
        let r1 = l.reserve_at(&[a.clone(), acct.clone()], t0).unwrap();
        let r2 = l.reserve_at(&[a.clone(), acct.clone()], t0).unwrap();
        assert!(l.reserve_at(&[a.clone()], t0).is_err(), "two in flight fill the bucket");
        r1.release();
        let r3 = l.reserve_at(&[a.clone()], t0).unwrap();
        drop(r2);
        drop(r3);
        assert!(l.reserve_at(&[a.clone()], t0).is_err(), "dropped reservations are failures");
        // A full account bucket refuses without using the address's room.
        let b = Bucket::addr(ip("192.0.2.2"));
        assert!(l.reserve_at(&[b.clone(), Bucket::account("a@EXAMPLE.com ")], t0).is_ok());
        assert!(l.reserve_at(&[b.clone(), Bucket::account("a@example.com")], t0).is_err());
        assert!(l.reserve_at(&[b], t0).is_ok(), "the refused reservation took nothing");
    }

    #[test]
    fn ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(Bucket::addr(ip("2001:db8:1:2:aaaa::1")), Bucket::addr(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        assert_ne!(Bucket::addr(ip("2001:db8:1:2::1")), Bucket::addr(ip("2001:db8:1:3::1")));
        assert_eq!(Bucket::addr(ip("::ffff:192.0.2.1")), Bucket::addr(ip("192.0.2.1")));
        assert_ne!(Bucket::addr(ip("192.0.2.1")), Bucket::addr(ip("192.0.2.2")));
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let mut h = axum::http::HeaderMap::new();
        h.insert("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.0.0.2".parse().unwrap());
        let trusted = [parse_cidr("10.0.0.0/8").unwrap()];
        assert_eq!(client_addr(Some(ip("10.0.0.1")), &h, &trusted), Some(ip("203.0.113.7")), "right-most untrusted entry");
        assert_eq!(client_addr(Some(ip("192.0.2.9")), &h, &trusted), Some(ip("192.0.2.9")), "an untrusted peer's header is ignored");
        assert_eq!(client_addr(Some(ip("10.0.0.1")), &h, &[]), Some(ip("10.0.0.1")), "no trusted proxies: never the header");
        assert_eq!(client_addr(Some(ip("10.0.0.1")), &axum::http::HeaderMap::new(), &trusted), Some(ip("10.0.0.1")));
        h.insert("x-forwarded-for", "nonsense".parse().unwrap());
        assert_eq!(client_addr(Some(ip("10.0.0.1")), &h, &trusted), Some(ip("10.0.0.1")));
        assert_eq!(client_addr(None, &h, &trusted), None);
    }

    #[test]
    fn cidr_matching() {
        let net = parse_cidr("10.1.0.0/16").unwrap();
        assert!(in_cidr(ip("10.1.200.3"), net));
        assert!(!in_cidr(ip("10.2.0.1"), net));
        assert!(in_cidr(ip("::ffff:10.1.0.9"), net), "IPv4-mapped IPv6");
        assert!(in_cidr(ip("192.0.2.1"), parse_cidr("192.0.2.1").unwrap()));
        assert!(in_cidr(ip("2001:db8::1"), parse_cidr("2001:db8::/32").unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("nonsense").is_none());
    }
}
