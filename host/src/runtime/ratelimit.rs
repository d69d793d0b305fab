//! Failed-login rate limiting, per source address.
//!
//! Each address may fail [`FREE_FAILURES`] times; after that every attempt
//! must wait, the wait doubling with each failure up to [`MAX_DELAY`]. A
//! success clears the address. An attempt is checked and counted in one
//! call ([`LoginLimiter::attempt`]), before the password is: parallel
//! attempts from one address cannot all pass the check while the slow
//! password checks run. Entries expire after [`FORGET_AFTER`] of
//! quiet, and the table never holds more than [`MAX_TRACKED`] addresses
//! (the oldest is dropped), so a flood of sources cannot exhaust memory.
//! Time comes in as an argument; nothing here reads a clock.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

/// Failures allowed before delays start.
pub const FREE_FAILURES: u32 = 3;
/// The first delay after the free failures.
pub const BASE_DELAY: Duration = Duration::from_secs(2);
/// The longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// How long an address is remembered after its last failure.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// The most addresses tracked at once.
pub const MAX_TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

/// The verdict for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check the password.
    Allow,
    /// Refuse without checking; the address may try again after this long.
    Wait(Duration),
}

/// Failure counts per source address.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    entries: HashMap<IpAddr, Entry>,
}

impl LoginLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    fn delay_for(failures: u32) -> Duration {
        if failures < FREE_FAILURES {
            return Duration::ZERO;
        }
        let shift = (failures - FREE_FAILURES).min(16);
        BASE_DELAY.saturating_mul(1 << shift).min(MAX_DELAY)
    }

    /// May `addr` try a password now? An allowed attempt is counted as a
    /// failure at once; [`LoginLimiter::succeeded`] clears it when the
    /// password turns out right.
    pub fn attempt(&mut self, addr: IpAddr, now: Instant) -> Verdict {
        if let Some(e) = self.entries.get(&addr).copied() {
            if now.saturating_duration_since(e.last) >= FORGET_AFTER {
                self.entries.remove(&addr);
            } else {
                let ready_at = e.last + Self::delay_for(e.failures);
                if now < ready_at {
                    return Verdict::Wait(ready_at - now);
                }
            }
        }
        self.record(addr, now);
        Verdict::Allow
    }

    /// The failures counted for `addr`.
    pub fn failures(&self, addr: IpAddr) -> u32 {
        self.entries.get(&addr).map_or(0, |e| e.failures)
    }

    /// Count a failure; returns the address's failure count.
    fn record(&mut self, addr: IpAddr, now: Instant) -> u32 {
        if !self.entries.contains_key(&addr) && self.entries.len() >= MAX_TRACKED {
            self.entries
                .retain(|_, e| now.saturating_duration_since(e.last) < FORGET_AFTER);
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(a, _)| *a);
            if let (true, Some(oldest)) = (self.entries.len() >= MAX_TRACKED, oldest) {
                self.entries.remove(&oldest);
            }
        }
        let e = self.entries.entry(addr).or_insert(Entry {
            failures: 0,
            last: now,
        });
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        e.failures
    }

    /// Record a success: the address starts afresh.
    pub fn succeeded(&mut self, addr: IpAddr) {
        self.entries.remove(&addr);
    }

    /// How many addresses are tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn free_failures_then_doubling_delays() {
        let mut l = LoginLimiter::new();
        let t0 = Instant::now();
        let a = ip(10);
        for n in 1..=FREE_FAILURES {
            assert_eq!(l.attempt(a, t0), Verdict::Allow);
            assert_eq!(l.failures(a), n);
        }
        assert_eq!(l.attempt(a, t0), Verdict::Wait(BASE_DELAY));
        assert_eq!(
            l.failures(a),
            FREE_FAILURES,
            "a refused attempt is not counted"
        );
        assert_eq!(l.attempt(a, t0 + BASE_DELAY), Verdict::Allow);
        assert_eq!(l.attempt(a, t0 + BASE_DELAY), Verdict::Wait(BASE_DELAY * 2));
        // Other addresses are not affected.
        assert_eq!(l.attempt(ip(11), t0), Verdict::Allow);
        // Success clears.
        l.succeeded(a);
        assert_eq!(l.failures(a), 0);
        assert_eq!(l.attempt(a, t0 + BASE_DELAY), Verdict::Allow);
    }

    #[test]
    fn delays_are_capped_and_forgotten() {
        let mut l = LoginLimiter::new();
        let mut t = Instant::now();
        let a = ip(1);
        for _ in 0..100 {
            assert_eq!(l.attempt(a, t), Verdict::Allow);
            t += MAX_DELAY;
        }
        t -= MAX_DELAY;
        assert_eq!(l.attempt(a, t), Verdict::Wait(MAX_DELAY));
        assert_eq!(l.attempt(a, t + FORGET_AFTER), Verdict::Allow);
        assert_eq!(l.failures(a), 1, "forgotten, then counted afresh");
    }

    #[test]
    fn parallel_attempts_from_one_address_pass_only_the_free_ones() {
        let l = std::sync::Mutex::new(LoginLimiter::new());
        let t0 = Instant::now();
        let allowed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| s.spawn(|| l.lock().unwrap().attempt(ip(7), t0) == Verdict::Allow))
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(allowed, FREE_FAILURES as usize);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_sources() {
        let mut l = LoginLimiter::new();
        let t0 = Instant::now();
        for n in 0..(MAX_TRACKED as u32 * 3) {
            l.attempt(ip(n), t0 + Duration::from_millis(u64::from(n)));
        }
        assert_eq!(l.len(), MAX_TRACKED);
    }
}
