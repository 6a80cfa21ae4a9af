//! A live key behind a request, as authentication found it: the key, its
//! principal and what was read with it. What the key cache keeps, the
//! quotas charge and the handlers act with.

use std::sync::OnceLock;

use axum::body::Bytes;
use keygate_core::Role;
use keygate_core::authz::Principal;
use keygate_core::limits::RateLimit;
use keygate_store::ApiKeyRecord;

/// A live key behind a request.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub key: ApiKeyRecord,
    pub principal: Principal,
    /// The owner's current role in the key's own organization; for an
    /// unscoped key, in any organization where it is not blocked (`None`:
    /// a member nowhere it may act).
    pub own_role: Option<Role>,
    /// The rate limits the key's organization shares among its keys.
    pub org_ratelimits: Vec<RateLimit>,
    /// The key as `POST /verify` describes it, rendered once and kept with
    /// the cached entry (see [`crate::api::verify`]).
    pub described: OnceLock<Bytes>,
}

impl Authenticated {
    pub fn new(key: ApiKeyRecord, own_role: Option<Role>) -> Self {
        Self {
            principal: key.principal(),
            key,
            own_role,
            org_ratelimits: Vec::new(),
            described: OnceLock::new(),
        }
    }
}
