//! Failed authentications per client address.
//!
//! Every 401 `invalid_api_key` or `api_key_expired` counts against the
//! address that sent it (checksum failures included). An address is blocked
//! — 429 `rate_limited` with `Retry-After` — only once it has at least
//! the threshold's failures (`serve --failed-auth-limit`, [`THRESHOLD`] by
//! default, 0 turns the throttle off) within [`WINDOW`], and only until enough of them
//! age out of the window; a block on one address never touches another.
//! The exact sliding window is what the contract states, so it is counted
//! directly rather than approximated by a token bucket. IPv6 addresses count
//! by their /64, the block one client usually holds. Checking and counting
//! are separate steps, so a burst of parallel failures may pass a few more
//! than the threshold before the block starts; never fewer. The table is a
//! bounded moka cache, so a flood of distinct addresses (cheap with IPv6)
//! costs O(1) per failure, never a scan.
//!
//! With PostgreSQL, the failures other replicas record count too: they come
//! through the store's [`keygate_store::FailureFeed`], each with its row id,
//! and are kept apart from this process's own, so that a reload after a
//! lost subscription replaces them instead of counting any twice.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use moka::policy::EvictionPolicy;
use moka::sync::Cache;

pub const THRESHOLD: usize = 20;
pub const WINDOW: Duration = Duration::from_secs(5 * 60);
/// Addresses tracked at most. An address idle for a whole window holds no
/// failure that counts and is dropped; when full, the least recently seen
/// goes. Both in O(1), whatever the number of addresses.
const MAX_ADDRESSES: u64 = 100_000;

/// One client's failures within the window: this process's own, and those
/// other replicas announced, with their id (to recognise one announced
/// again by a reload).
#[derive(Debug, Default)]
struct Window {
    own: VecDeque<Instant>,
    others: VecDeque<(Instant, i64)>,
}

type Failures = Arc<Mutex<Window>>;

pub struct FailedAuthThrottle {
    /// Failures within a window that block an address; 0: never blocked.
    threshold: usize,
    failures: Cache<IpAddr, Failures>,
    /// Nanoseconds after `base` of the latest failure from any address, plus
    /// one; 0: none yet. No address can be blocked a whole window after it,
    /// so the common case, a server seeing no failures, costs one atomic
    /// load per request instead of a lookup.
    latest_failure: AtomicU64,
    base: Instant,
}

impl Default for FailedAuthThrottle {
    fn default() -> Self {
        Self::new(THRESHOLD)
    }
}

impl FailedAuthThrottle {
    /// Blocks an address once it has `threshold` failures within the
    /// window; `0` never blocks and keeps no table.
    pub fn new(threshold: usize) -> Self {
        let failures = Cache::builder()
            .max_capacity(MAX_ADDRESSES)
            .time_to_idle(WINDOW)
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Self { threshold, failures, latest_failure: AtomicU64::new(0), base: Instant::now() }
    }
}

impl std::fmt::Debug for FailedAuthThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailedAuthThrottle").field("addresses", &self.failures.entry_count()).finish()
    }
}

/// The unit an address is counted in: itself for IPv4, its /64 for IPv6.
fn client_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl FailedAuthThrottle {
    /// How long `address` must wait, if it is blocked now.
    pub fn blocked_for(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        if self.threshold == 0 {
            return None;
        }
        let latest = self.latest_failure.load(Ordering::Relaxed);
        let window_end = Duration::from_nanos(latest.checked_sub(1)?) + WINDOW;
        if now.saturating_duration_since(self.base) >= window_end {
            return None;
        }
        let failures = self.failures.get(&client_of(address))?;
        let mut window = failures.lock().unwrap_or_else(PoisonError::into_inner);
        window.forget_older(now);
        if window.own.len() + window.others.len() < self.threshold {
            return None;
        }
        // Unblocked once all but threshold - 1 of the failures have aged out.
        let mut times: Vec<Instant> =
            window.own.iter().copied().chain(window.others.iter().map(|o| o.0)).collect();
        times.sort_unstable();
        let pivot = times[times.len() - self.threshold];
        Some((pivot + WINDOW).saturating_duration_since(now).max(Duration::from_secs(1)))
    }

    /// Whether failures are counted at all (`--failed-auth-limit` is not 0).
    pub fn is_on(&self) -> bool {
        self.threshold > 0
    }

    /// A failure of this process's own (other replicas learn of it through
    /// the store: see [`crate::admission::verification::guarded`]).
    pub fn record_failure(&self, address: IpAddr, now: Instant) {
        if self.threshold == 0 {
            return;
        }
        self.saw_failure_at(now);
        let failures = self.failures.get_with(client_of(address), Failures::default);
        let mut window = failures.lock().unwrap_or_else(PoisonError::into_inner);
        window.forget_older(now);
        window.own.push_back(now);
        // Only the most recent `threshold` failures decide a block.
        while window.own.len() > self.threshold {
            window.own.pop_front();
        }
    }

    /// A failure another replica recorded at `at` (wall-clock time).
    fn record_other(&self, id: i64, address: IpAddr, at: SystemTime) {
        let (now, wall_now) = (Instant::now(), SystemTime::now());
        let age = wall_now.duration_since(at).unwrap_or_default();
        if age >= WINDOW {
            return;
        }
        let instant = now.checked_sub(age).unwrap_or(now);
        self.saw_failure_at(instant);
        let failures = self.failures.get_with(client_of(address), Failures::default);
        let mut window = failures.lock().unwrap_or_else(PoisonError::into_inner);
        window.forget_older(now);
        if window.others.iter().any(|&(_, seen)| seen == id) {
            return;
        }
        let position = window.others.iter().rposition(|&(t, _)| t <= instant).map_or(0, |p| p + 1);
        window.others.insert(position, (instant, id));
        while window.others.len() > self.threshold {
            window.others.pop_front();
        }
    }

    fn saw_failure_at(&self, at: Instant) {
        let since_base =
            u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1);
        self.latest_failure.fetch_max(since_base + 1, Ordering::Relaxed);
    }
}

/// Other replicas' failures, from the store (PostgreSQL; see
/// [`keygate_store::Store::attach_failure_feed`]).
impl keygate_store::FailureFeed for FailedAuthThrottle {
    fn failed(&self, id: i64, client: IpAddr, at: SystemTime) {
        if self.threshold > 0 {
            self.record_other(id, client, at);
        }
    }

    fn reload(&self, failures: Vec<(i64, IpAddr, SystemTime)>) {
        if self.threshold == 0 {
            return;
        }
        for (_, window) in self.failures.iter() {
            window.lock().unwrap_or_else(PoisonError::into_inner).others.clear();
        }
        for (id, client, at) in failures {
            self.record_other(id, client, at);
        }
    }
}

impl Window {
    fn forget_older(&mut self, now: Instant) {
        while self.own.front().is_some_and(|&t| now.saturating_duration_since(t) >= WINDOW) {
            self.own.pop_front();
        }
        while self.others.front().is_some_and(|&(t, _)| now.saturating_duration_since(t) >= WINDOW) {
            self.others.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn blocks_only_after_the_threshold_within_the_window() {
        let limiter = FailedAuthThrottle::default();
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
    fn ipv6_addresses_count_by_their_64() {
        let limiter = FailedAuthThrottle::default();
        let start = Instant::now();
        for i in 0..THRESHOLD as u16 {
            let address = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i + 1));
            limiter.record_failure(address, start);
        }
        let sibling = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0xffff, 0, 0, 7));
        assert!(limiter.blocked_for(sibling, start).is_some());
        let elsewhere = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert_eq!(limiter.blocked_for(elsewhere, start), None);
    }

    #[test]
    fn a_flood_of_addresses_stays_bounded_and_keeps_recent_offenders() {
        let limiter = FailedAuthThrottle::default();
        let start = Instant::now();
        for _ in 0..THRESHOLD {
            limiter.record_failure(A, start);
        }
        for i in 0..(MAX_ADDRESSES as u32 + 5_000) {
            limiter.record_failure(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)), start);
            if i % 10_000 == 0 {
                assert!(limiter.blocked_for(A, start).is_some(), "a recent offender stays blocked");
            }
        }
        limiter.failures.run_pending_tasks();
        assert!(limiter.failures.entry_count() <= MAX_ADDRESSES);
        assert!(limiter.blocked_for(A, start).is_some(), "the offender seen recently is kept");
    }

    #[test]
    fn other_replicas_failures_count_once_each_and_a_reload_replaces_them() {
        use keygate_store::FailureFeed;
        let limiter = FailedAuthThrottle::new(4);
        let now = Instant::now();
        let wall = SystemTime::now();
        limiter.record_failure(A, now);
        limiter.record_failure(A, now);
        // Two failures in the same millisecond are still two.
        let theirs = [(1, wall - Duration::from_secs(1)), (2, wall - Duration::from_secs(1))];
        for (id, at) in theirs {
            limiter.failed(id, A, at);
            limiter.failed(id, A, at); // announced, then read again by a reload
        }
        assert!(limiter.blocked_for(A, Instant::now()).is_some(), "2 here + 2 there");
        limiter.reload(vec![(1, A, theirs[0].1)]);
        assert_eq!(
            limiter.blocked_for(A, Instant::now()),
            None,
            "the reload says only one of theirs is left"
        );
        limiter.failed(3, B, wall - WINDOW - Duration::from_secs(1));
        assert_eq!(limiter.blocked_for(B, Instant::now()), None, "older than the window");
        FailedAuthThrottle::new(0).failed(4, A, wall);
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_block() {
        let limiter = FailedAuthThrottle::default();
        let start = Instant::now();
        let step = WINDOW / (THRESHOLD as u32 - 1) + Duration::from_millis(10);
        for i in 0..3 * THRESHOLD as u32 {
            let now = start + step * i;
            assert_eq!(limiter.blocked_for(A, now), None, "blocked at failure {i}");
            limiter.record_failure(A, now);
        }
    }
}
