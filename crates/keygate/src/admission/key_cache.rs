//! The cache of verified keys behind the [`Authenticator`](crate::admission::authenticator::Authenticator):
//! digest → what the store answered (key, owner's role, end of a rotation's
//! grace), plus a smaller, short-lived cache of unknown digests, so that a
//! flood of random keys cannot evict real ones.
//!
//! Coherence: the store it is attached to ([`keygate_store::Store::attach_cache`])
//! invalidates it synchronously on every change this process commits, and
//! its watcher (PostgreSQL `LISTEN`, SQLite's `auth_epoch` counter) on other
//! processes' changes. The cache is trusted only within a lease of the
//! watcher's last confirmation; outside it every lookup reads the database.
//! A lookup that raced an invalidation does not keep what it read.
//!
//! Storage is `quick_cache` (CLOCK-PRO, sharded; a hit is a shard read lock
//! and an `Arc` clone): invalidations walk the entries at once, under the
//! shards' write locks, so nothing stale is ever served after `changed`
//! returns. Entries carry the instant they were read; past [`TTL`] (or
//! [`UNKNOWN_TTL`]) they count as misses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keygate_store::{AuthCache, AuthChange};
use quick_cache::sync::Cache;

use crate::admission::authenticated::Authenticated;

/// Real keys kept at most.
pub const CAPACITY: usize = 100_000;
/// Unknown digests kept at most, and for how long.
pub const UNKNOWN_CAPACITY: usize = 10_000;
pub const UNKNOWN_TTL: Duration = Duration::from_secs(10);
/// A second line of defence: no entry outlives this.
pub const TTL: Duration = Duration::from_secs(60);
/// How long after the watcher's last confirmation the cache is trusted.
pub const LEASE: Duration = Duration::from_millis(750);

/// A verified key as cached.
#[derive(Debug)]
pub struct Verified {
    pub authenticated: Arc<Authenticated>,
    /// When the digest stops answering (a rotated key's previous secret).
    pub valid_until: Option<DateTime<Utc>>,
    /// The flush generation it was read in.
    generation: u64,
    /// When it was read from the store.
    read_at: Instant,
}

/// An unknown digest as cached: the flush generation and instant it was read in.
#[derive(Debug, Clone, Copy)]
struct Unknown {
    generation: u64,
    read_at: Instant,
}

/// What the cache knows of a digest.
#[derive(Debug, Clone)]
pub enum Cached {
    Verified(Arc<Verified>),
    Unknown,
}

pub struct KeyCache {
    verified: Cache<[u8; 32], Arc<Verified>>,
    unknown: Cache<[u8; 32], Unknown>,
    /// Bumped by every flush; entries of an older generation are misses.
    generation: AtomicU64,
    /// Bumped by every invalidation, to catch a lookup that raced one.
    invalidations: AtomicU64,
    /// Nanoseconds after `base` until which the cache is trusted; 0: not.
    trusted_until: AtomicU64,
    base: Instant,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new(CAPACITY, UNKNOWN_CAPACITY)
    }
}

impl KeyCache {
    pub fn new(capacity: usize, unknown_capacity: usize) -> Self {
        Self {
            verified: Cache::new(capacity),
            unknown: Cache::new(unknown_capacity),
            generation: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            trusted_until: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the cache may be read now.
    pub fn trusted(&self) -> bool {
        self.trusted_at(Instant::now())
    }

    fn trusted_at(&self, now: Instant) -> bool {
        self.nanos(now) < self.trusted_until.load(Ordering::SeqCst)
    }

    /// What the cache holds for `digest`; `None` when untrusted or absent.
    pub fn get(&self, digest: &[u8; 32]) -> Option<Cached> {
        // One clock read serves every check.
        let now = Instant::now();
        if !self.trusted_at(now) {
            return None;
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let fresh = |read_at: Instant, ttl| now.saturating_duration_since(read_at) < ttl;
        if let Some(verified) = self.verified.get(digest)
            && verified.generation == generation
            && fresh(verified.read_at, TTL)
        {
            return Some(Cached::Verified(verified));
        }
        match self.unknown.get(digest) {
            Some(unknown) if unknown.generation == generation && fresh(unknown.read_at, UNKNOWN_TTL) => {
                Some(Cached::Unknown)
            }
            _ => None,
        }
    }

    /// Taken before reading the store, handed back to [`KeyCache::insert`].
    pub fn ticket(&self) -> Ticket {
        Ticket {
            generation: self.generation.load(Ordering::SeqCst),
            invalidations: self.invalidations.load(Ordering::SeqCst),
            taken: Instant::now(),
        }
    }

    /// Keeps what the store answered for `digest`, unless an invalidation
    /// came in since `ticket` was taken.
    pub fn insert(
        &self,
        ticket: Ticket,
        digest: [u8; 32],
        found: Option<(Arc<Authenticated>, Option<DateTime<Utc>>)>,
    ) {
        let read_at = ticket.taken;
        match found {
            Some((authenticated, valid_until)) => {
                let entry = Verified { authenticated, valid_until, generation: ticket.generation, read_at };
                self.verified.insert(digest, Arc::new(entry));
                self.unknown.remove(&digest);
            }
            None => {
                // What the store says now replaces whatever was kept before.
                self.unknown.insert(digest, Unknown { generation: ticket.generation, read_at });
                self.verified.remove(&digest);
            }
        }
        if self.invalidations.load(Ordering::SeqCst) != ticket.invalidations {
            self.forget(&digest);
        }
    }

    /// Drops what the cache holds for `digest`.
    pub fn forget(&self, digest: &[u8; 32]) {
        self.verified.remove(digest);
        self.unknown.remove(digest);
    }

    /// Drops every verified entry `stale` picks. The counter moves first, so
    /// a lookup that read the store before the walk keeps nothing.
    fn invalidate_if(&self, stale: impl Fn(&Verified) -> bool) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.verified.retain(|_, entry| !stale(entry));
    }
}

/// The cache's state when a lookup started.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    generation: u64,
    invalidations: u64,
    taken: Instant,
}

impl AuthCache for KeyCache {
    fn changed(&self, change: &AuthChange) {
        if let Some(metrics) = crate::telemetry::metrics::get() {
            metrics.invalidation(match change {
                AuthChange::Key { .. } => "key",
                AuthChange::Member { .. } => "member",
                AuthChange::Organization { .. } => "organization",
                AuthChange::App { .. } => "app",
            });
        }
        match *change {
            AuthChange::Key { id } => self.invalidate_if(move |e| e.authenticated.key.id == id),
            AuthChange::Member { user_id, .. } => {
                self.invalidate_if(move |e| e.authenticated.key.user_id == user_id)
            }
            // Unscoped keys too: their owner may have been a member there only.
            AuthChange::Organization { org_id } => {
                self.invalidate_if(move |e| e.authenticated.key.org_id.is_none_or(|scoped| scoped == org_id))
            }
            AuthChange::App { .. } => self.flush(),
        }
    }

    fn flush(&self) {
        if let Some(metrics) = crate::telemetry::metrics::get() {
            metrics.invalidation("flush");
        }
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.verified.clear();
        self.unknown.clear();
    }

    fn confirmed(&self, checked: Instant) {
        self.trusted_until.fetch_max(self.nanos(checked + LEASE), Ordering::SeqCst);
    }

    fn distrust(&self) {
        self.trusted_until.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_core::Mode;
    use keygate_store::ApiKeyRecord;

    fn verified(id: i64) -> Arc<Authenticated> {
        let key = ApiKeyRecord {
            id,
            digest: keygate_core::ApiKeySecret::generate().expect("random").digest(),
            preview: "ak_…".into(),
            mode: Mode::All,
            name: "k".into(),
            user_id: uuid::Uuid::now_v7(),
            org_id: None,
            limited_to_apps: Vec::new(),
            expires_at: None,
            last_used_at: None,
            created_by_key_id: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            enabled: true,
            ratelimits: Vec::new(),
            credits: None,
        };
        Arc::new(Authenticated::new(key, None))
    }

    fn trusted_cache() -> KeyCache {
        let cache = KeyCache::default();
        cache.confirmed(Instant::now() + Duration::from_secs(3600));
        cache
    }

    #[test]
    fn a_flood_of_unknown_keys_does_not_evict_real_ones() {
        let cache = trusted_cache();
        let real: Vec<[u8; 32]> = (0..100)
            .map(|_| *keygate_core::ApiKeySecret::generate().expect("random").digest().as_bytes())
            .collect();
        for (id, digest) in real.iter().enumerate() {
            cache.insert(cache.ticket(), *digest, Some((verified(id as i64), None)));
        }
        for _ in 0..50_000 {
            let digest = *keygate_core::ApiKeySecret::generate().expect("random").digest().as_bytes();
            assert!(cache.get(&digest).is_none());
            cache.insert(cache.ticket(), digest, None);
        }
        assert!(cache.unknown.len() <= UNKNOWN_CAPACITY);
        for digest in &real {
            assert!(matches!(cache.get(digest), Some(Cached::Verified(_))), "a real key was evicted");
        }
    }

    #[test]
    fn invalidations_are_precise_and_races_keep_nothing() {
        let cache = trusted_cache();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        cache.insert(cache.ticket(), a, Some((verified(1), None)));
        cache.insert(cache.ticket(), b, Some((verified(2), None)));
        cache.changed(&AuthChange::Key { id: 1 });
        assert!(cache.get(&a).is_none());
        assert!(cache.get(&b).is_some());

        // A lookup that read the store before an invalidation keeps nothing.
        let ticket = cache.ticket();
        cache.changed(&AuthChange::Key { id: 3 });
        cache.insert(ticket, a, Some((verified(1), None)));
        assert!(cache.get(&a).is_none());

        cache.flush();
        assert!(cache.get(&b).is_none());
    }

    #[test]
    fn an_untrusted_cache_answers_nothing() {
        let cache = KeyCache::default();
        cache.insert(cache.ticket(), [1u8; 32], Some((verified(1), None)));
        assert!(cache.get(&[1u8; 32]).is_none(), "trusted before any confirmation");
        cache.confirmed(Instant::now());
        assert!(cache.get(&[1u8; 32]).is_some());
        cache.distrust();
        assert!(cache.get(&[1u8; 32]).is_none());
    }
}
