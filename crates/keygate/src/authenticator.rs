//! The one path every presented key takes: format and checksum (no I/O) →
//! SHA-256 digest → the store (the key with its owner's current role, in one
//! query) → expiry → a [`Principal`]. Each authenticated use is recorded for
//! the usage counters, off the request path.
//!
//! This is the seam for a cache of verified keys: it reads only through
//! [`KeyStore`], and every write that changes what it returns is announced
//! by the store as an [`AuthChange`](keygate_store::AuthChange) after its
//! commit (see [`Store::auth_changes`](keygate_store::Store::auth_changes)).

use std::sync::Arc;

use keygate_core::authz::Principal;
use keygate_core::{ApiKeySecret, Role};
use keygate_store::{ApiKeyRecord, KeyStore, Store, StoreError};

use crate::usage::UsageRecorder;

#[derive(Clone)]
pub struct Authenticator {
    keys: Arc<dyn KeyStore>,
    usage: UsageRecorder,
}

/// A live key behind a request.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub key: ApiKeyRecord,
    pub principal: Principal,
    /// The owner's current role in the key's own organization; `None` for
    /// an unscoped key or an owner who is no longer a member.
    pub own_role: Option<Role>,
}

/// What a presented key turned out to be.
#[derive(Debug)]
pub enum KeyLookup {
    /// Malformed, mistyped, unknown, deleted, or past its rotation grace.
    Unknown,
    Expired(ApiKeyRecord),
    /// Valid now; its use has been recorded.
    Live(Authenticated),
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, usage: UsageRecorder) -> Self {
        Self { keys: store, usage }
    }

    pub async fn look_up(&self, presented: &str) -> Result<KeyLookup, StoreError> {
        let Ok(secret) = ApiKeySecret::parse(presented.trim()) else {
            return Ok(KeyLookup::Unknown);
        };
        let Some((key, own_role)) = self.keys.key_and_owner_role(&secret.digest()).await? else {
            return Ok(KeyLookup::Unknown);
        };
        let now = chrono::Utc::now();
        if key.expires_at.is_some_and(|at| at <= now) {
            return Ok(KeyLookup::Expired(key));
        }
        self.usage.record(key.id, now);
        Ok(KeyLookup::Live(Authenticated { principal: key.principal(), key, own_role }))
    }
}
