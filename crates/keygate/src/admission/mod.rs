//! Who is calling and whether they are let in.
//!
//! - [`verification`]: the one path of a presented credential, shared by
//!   `/verify`, `/auth` and the [`Caller`](caller::Caller) extractor
//!   ([`caller`]): the failed-authentication guard ([`throttle`] keeps the
//!   table), looking the key up, the permission decision, charging;
//! - [`authenticator`]: header → key format → digest → the store (or the
//!   [`key_cache`]) → an [`Authenticated`](authenticated::Authenticated) key;
//! - [`quota`]: what a use costs against the key's rate limits and credits
//!   (the limits themselves are [`keygate_core::limits`]); [`usage`]: the
//!   counters a use leaves;
//! - [`forward_auth`]: how a forwarded request (`/auth`) is read and judged.
//!
//! Everything here needs only the [`Admission`] sub-state, taken from the
//! app's state with axum's `FromRef`.

pub mod authenticated;
pub mod authenticator;
pub mod caller;
pub mod forward_auth;
pub mod key_cache;
pub mod quota;
pub mod throttle;
pub mod usage;
pub mod verification;

use std::sync::Arc;

use keygate_store::Store;

use crate::http::client_address::ClientAddressPolicy;
use authenticator::Authenticator;
use quota::Quotas;
use throttle::FailedAuthThrottle;
use usage::UsageRecorder;

/// What checking and charging a caller needs: one reference count to
/// clone, as the app's state is.
#[derive(Clone)]
pub struct Admission(Arc<Gate>);

pub struct Gate {
    pub store: Arc<dyn Store>,
    pub authenticator: Authenticator,
    /// What keys may spend (rate limits, credits).
    pub quotas: Quotas,
    pub usage: UsageRecorder,
    pub throttle: Arc<FailedAuthThrottle>,
    pub client_addresses: ClientAddressPolicy,
}

impl Admission {
    pub fn new(gate: Gate) -> Self {
        Self(Arc::new(gate))
    }
}

impl std::ops::Deref for Admission {
    type Target = Gate;

    fn deref(&self) -> &Gate {
        &self.0
    }
}
