//! The one path every presented key takes: format and checksum (no I/O) →
//! SHA-256 digest → the store (the key with its owner's current role, in one
//! query) → expiry → a [`Principal`]. Each authenticated use is recorded for
//! the usage counters, off the request path.
//!
//! With a [`KeyCache`] (on by default; `serve --key-cache false` turns it
//! off), the store's answer for a digest is kept, and a hit costs no
//! database access, no write and no lock held across `.await`; expiry and a
//! rotated secret's grace end are checked on every hit. The store keeps the
//! cache coherent (see [`crate::admission::key_cache`]); checksum failures never reach
//! it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use keygate_core::ApiKeySecret;
use keygate_core::key_writes::{Liveness, secret_answers};
use keygate_store::{DigestMatch, KeyStore, Store, StoreError};

use crate::admission::authenticated::Authenticated;
use crate::admission::key_cache::{Cached, KeyCache};
use crate::admission::usage::UsageRecorder;

#[derive(Clone)]
pub struct Authenticator {
    keys: Arc<dyn KeyStore>,
    usage: UsageRecorder,
    cache: Option<Arc<KeyCache>>,
}

/// What a presented key turned out to be.
#[derive(Debug)]
pub enum KeyLookup {
    /// Malformed, mistyped, unknown, deleted, or past its rotation grace.
    Unknown,
    Expired(Arc<Authenticated>),
    /// Disabled by an administrator; counted as refused.
    Disabled(Arc<Authenticated>),
    /// Valid now; its use has been recorded.
    Live(Arc<Authenticated>),
}

impl Authenticator {
    /// Every lookup reads the store.
    pub fn new(store: Arc<dyn Store>, usage: UsageRecorder) -> Self {
        Self { keys: store, usage, cache: None }
    }

    /// Lookups go through a cache of verified keys, attached to `store`,
    /// which keeps it coherent.
    pub fn cached(store: Arc<dyn Store>, usage: UsageRecorder, cache: Arc<KeyCache>) -> Self {
        store.attach_cache(cache.clone());
        Self { keys: store, usage, cache: Some(cache) }
    }

    /// The cache of verified keys, if lookups go through one.
    pub fn cache(&self) -> Option<&Arc<KeyCache>> {
        self.cache.as_ref()
    }

    pub async fn look_up(&self, presented: &str) -> Result<KeyLookup, StoreError> {
        let Ok(secret) = ApiKeySecret::parse(presented.trim()) else {
            return Ok(KeyLookup::Unknown);
        };
        let digest = secret.digest();
        let now = Utc::now();
        let Some(cache) = &self.cache else {
            return Ok(match self.keys.key_for_authentication(&digest).await?.map(authenticated) {
                Some((found, valid_until)) if secret_answers(valid_until, now) => self.live(found, now),
                _ => KeyLookup::Unknown,
            });
        };
        let bytes = *digest.as_bytes();
        let cached = cache.get(&bytes);
        if let Some(metrics) = crate::telemetry::metrics::get() {
            let counter = match cached {
                Some(Cached::Verified(_)) => &metrics.cache_hit,
                Some(Cached::Unknown) => &metrics.cache_unknown,
                None => &metrics.cache_miss,
            };
            counter.increment(1);
        }
        let (authenticated, valid_until) = match cached {
            Some(Cached::Verified(hit)) => (hit.authenticated.clone(), hit.valid_until),
            Some(Cached::Unknown) => return Ok(KeyLookup::Unknown),
            None => {
                let ticket = cache.ticket();
                let found = self.keys.key_for_authentication(&digest).await?.map(authenticated);
                // A previous secret past its grace period is cached as unknown.
                let found = found.filter(|(_, valid_until)| secret_answers(*valid_until, now));
                cache.insert(ticket, bytes, found.clone());
                let Some(found) = found else {
                    return Ok(KeyLookup::Unknown);
                };
                found
            }
        };
        if !secret_answers(valid_until, now) {
            // A rotated key's previous secret, past its grace period.
            cache.forget(&bytes);
            return Ok(KeyLookup::Unknown);
        }
        Ok(self.live(authenticated, now))
    }

    /// Expiry, whether it is enabled, then the use recorded.
    fn live(&self, authenticated: Arc<Authenticated>, now: DateTime<Utc>) -> KeyLookup {
        let key = &authenticated.key;
        match Liveness::of(key.enabled, key.expires_at, now) {
            Liveness::Expired => KeyLookup::Expired(authenticated),
            Liveness::Disabled => {
                self.usage.record_refused(key.id, now, crate::admission::usage::Refused::Disabled);
                KeyLookup::Disabled(authenticated)
            }
            Liveness::Live => {
                self.usage.record(key.id, now);
                KeyLookup::Live(authenticated)
            }
        }
    }
}

/// What the store found for a digest, as the rules see it, with the end of
/// a rotated secret's grace period.
fn authenticated(found: DigestMatch) -> (Arc<Authenticated>, Option<DateTime<Utc>>) {
    let mut authenticated = Authenticated {
        org_ratelimits: found.org_ratelimits,
        ..Authenticated::new(found.key, found.owner_role)
    };
    // Matched by a secret rotated away: it acts, and manages nothing.
    authenticated.principal.retiring = found.valid_until.is_some();
    (Arc::new(authenticated), found.valid_until)
}
