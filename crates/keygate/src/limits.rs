//! Failed authentications per client address.
//!
//! Every 401 `invalid_api_key` or `api_key_expired` counts against the
//! address that sent it (checksum failures included). An address is blocked
//! — 429 `rate_limited` with `Retry-After` — only once it has at least
//! [`THRESHOLD`] failures within [`WINDOW`], and only until enough of them
//! age out of the window; a block on one address never touches another.
//! The exact sliding window is what the contract states, so it is counted
//! directly rather than approximated by a token bucket.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub const THRESHOLD: usize = 20;
pub const WINDOW: Duration = Duration::from_secs(5 * 60);
/// Addresses tracked at most; beyond it the quietest are forgotten first.
const MAX_ADDRESSES: usize = 100_000;

#[derive(Debug, Default)]
pub struct FailedAuthLimiter {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailedAuthLimiter {
    /// How long `address` must wait, if it is blocked now.
    pub fn blocked_for(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let times = failures.get_mut(&address)?;
        forget_older(times, now);
        if times.len() < THRESHOLD {
            return None;
        }
        // Unblocked once all but THRESHOLD - 1 of the failures have aged out.
        let pivot = times[times.len() - THRESHOLD];
        Some((pivot + WINDOW).saturating_duration_since(now).max(Duration::from_secs(1)))
    }

    pub fn record_failure(&self, address: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&address) {
            failures.retain(|_, times| {
                forget_older(times, now);
                !times.is_empty()
            });
            if failures.len() >= MAX_ADDRESSES {
                return;
            }
        }
        let times = failures.entry(address).or_default();
        forget_older(times, now);
        times.push_back(now);
        // Only the most recent THRESHOLD failures decide a block.
        while times.len() > THRESHOLD {
            times.pop_front();
        }
    }
}

fn forget_older(times: &mut VecDeque<Instant>, now: Instant) {
    while times.front().is_some_and(|&t| now.saturating_duration_since(t) >= WINDOW) {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn blocks_only_after_the_threshold_within_the_window() {
        let limiter = FailedAuthLimiter::default();
        let start = Instant::now();
        for i in 0..THRESHOLD {
            assert_eq!(limiter.blocked_for(A, start), None, "blocked after {i} failures");
            limiter.record_failure(A, start);
        }
        let wait = limiter.blocked_for(A, start).expect("blocked at the threshold");
        assert!(wait <= WINDOW && wait > WINDOW - Duration::from_secs(1));
        assert_eq!(limiter.blocked_for(B, start), None, "another address is untouched");
        assert_eq!(limiter.blocked_for(A, start + WINDOW), None, "the window passed");
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_block() {
        let limiter = FailedAuthLimiter::default();
        let start = Instant::now();
        let step = WINDOW / (THRESHOLD as u32 - 1) + Duration::from_millis(10);
        for i in 0..3 * THRESHOLD as u32 {
            let now = start + step * i;
            assert_eq!(limiter.blocked_for(A, now), None, "blocked at failure {i}");
            limiter.record_failure(A, now);
        }
    }
}
