//! How a presented credential is checked and what a key may then do: the
//! one path `/verify`, `/auth` and the [`Caller`](super::caller::Caller)
//! extractor share.
//!
//! - [`presented_key`]: the key may come in `authorization` (bare or
//!   `Bearer`), `x-api-key` or `capgkey`;
//! - [`guarded`]: every credential check (API keys, verifier tokens) runs
//!   inside the one failed-authentication guard: a blocked address gets 429
//!   before its credential is looked at, and a refused credential counts
//!   against it ([`throttle`](super::throttle));
//! - [`authenticate`]: a key from a request's headers, through the
//!   [`Authenticator`](super::authenticator::Authenticator): a missing,
//!   malformed, unknown or deleted key is a 401; so is an expired one, with
//!   its own code; a disabled one is a 401 that does not count as failed;
//! - [`permits`]: may a live key take an action on an organization and app
//!   named by a service (`/verify`) or a forwarded request (`/auth`);
//! - [`charge`] and [`spend`]: what a use costs against the key's rate
//!   limits and credits ([`quota`](super::quota)), a refusal recorded
//!   against the key; [`record_spent`]: the credits of an answer with no
//!   request slot to record them later.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::http::HeaderMap;
use chrono::Utc;
use keygate_core::AppId;
use keygate_core::authz::Action;
use keygate_core::rules::{self, VerifyTarget};
use uuid::Uuid;

use super::Admission;
use crate::admission::authenticated::Authenticated;
use crate::admission::authenticator::KeyLookup;
use crate::admission::quota::{Charge, Outcome};
use crate::admission::usage::{Refused, RequestKey};
use crate::http::error::{ApiError, ApiResult};

/// The headers a key is read from, in this order.
pub const KEY_HEADERS: [&str; 3] = ["authorization", "x-api-key", "capgkey"];

/// The key presented with the request, if any, without its `Bearer `
/// prefix (none when several are).
pub fn presented_key(headers: &HeaderMap) -> Option<Result<&str, ()>> {
    presented(headers).ok().flatten()
}

/// [`presented_key`], found in one pass over the credential headers;
/// `Err` when more than one value was sent (a service behind keygate might
/// read the other).
fn presented(headers: &HeaderMap) -> ApiResult<Option<Result<&str, ()>>> {
    let mut sent = KEY_HEADERS.iter().flat_map(|name| headers.get_all(*name));
    let Some(value) = sent.next() else { return Ok(None) };
    if sent.next().is_some() {
        return Err(ApiError::ambiguous_credentials());
    }
    let Ok(text) = value.to_str() else {
        return Ok(Some(Err(())));
    };
    let text = strip_bearer(text);
    Ok((!text.is_empty()).then_some(Ok(text)))
}

/// A credential as sent: bare, or after a case-insensitive `Bearer`.
pub fn strip_bearer(value: &str) -> &str {
    let value = value.trim();
    match value.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        None if value.eq_ignore_ascii_case("bearer") => "",
        _ => value,
    }
}

/// What checking a credential found.
pub enum Credential<T> {
    Accepted(T),
    /// Wrong, unknown or expired: counts as a failed authentication.
    Refused(ApiError),
}

/// The one failed-authentication guard around every credential check: a
/// blocked address is refused (429) before anything is looked at, and a
/// refused credential counts against the address. Errors of the check
/// itself (a missing header, an unavailable database) count for nothing.
pub async fn guarded<T>(
    state: &Admission,
    address: Option<IpAddr>,
    check: impl Future<Output = ApiResult<Credential<T>>>,
) -> ApiResult<T> {
    if let Some(wait) = address.and_then(|a| state.throttle.blocked_for(a, Instant::now())) {
        return Err(ApiError::rate_limited(wait));
    }
    match check.await? {
        Credential::Accepted(value) => Ok(value),
        Credential::Refused(error) => {
            if let Some(address) = address
                && state.throttle.is_on()
            {
                state.throttle.record_failure(address, Instant::now());
                state.store.share_auth_failure(address);
            }
            Err(error)
        }
    }
}

/// The live key a request presents in its headers ([`presented_key`]),
/// checked inside [`guarded`].
pub async fn authenticate(
    state: &Admission,
    address: Option<IpAddr>,
    headers: &HeaderMap,
) -> ApiResult<Arc<Authenticated>> {
    guarded(state, address, async {
        let presented = presented(headers)?.ok_or_else(ApiError::missing_api_key)?;
        Ok(match state.authenticator.look_up(presented.unwrap_or_default()).await? {
            KeyLookup::Live(authenticated) => Credential::Accepted(authenticated),
            KeyLookup::Expired(_) => Credential::Refused(ApiError::api_key_expired()),
            KeyLookup::Unknown => Credential::Refused(ApiError::invalid_api_key()),
            // A known key: not a failed authentication.
            KeyLookup::Disabled(_) => return Err(ApiError::api_key_disabled()),
        })
    })
    .await
}

/// The one decision of `/verify` and `/auth` for a live key: may it take
/// `action` on the organization and app named? `org` is `Some(None)` for an
/// organization id that is not one: like an app that does not exist, it
/// names nothing the key could act on.
pub async fn permits(
    state: &Admission,
    live: &Authenticated,
    org: Option<Option<Uuid>>,
    app_id: Option<&AppId>,
    action: Action,
) -> ApiResult<bool> {
    let org = match org {
        None => None,
        Some(Some(org)) => Some(org),
        Some(None) => return Ok(false),
    };
    let app = match app_id {
        Some(app_id) => match state.store.app(app_id).await? {
            Some(app) => Some(app),
            None => return Ok(false),
        },
        None => None,
    };
    let target = VerifyTarget { org, app: app.as_ref().map(|a| (a.org_id, &a.app_id)) };
    let role = match target.org(&live.principal) {
        Ok(Some(org)) if live.principal.scope.org == Some(org) => live.own_role,
        Ok(Some(org)) => state.store.role_of_key(org, live.key.user_id, live.key.id).await?,
        // An unscoped key with nothing named: whether its owner is a member
        // anywhere it may act, read with the key.
        Ok(None) => live.own_role,
        Err(_) => None,
    };
    Ok(rules::verify(&live.principal, target, role, action))
}

/// Charges `cost` to the key's limits ([`quota`](super::quota)); a refusal
/// (a spent rate limit, credits that cannot cover the cost) is recorded
/// against the key.
pub async fn charge(state: &Admission, key: &Authenticated, cost: u64) -> ApiResult<Outcome> {
    let outcome = state.quotas.charge(key, cost).await?;
    let refused = |why| state.usage.record_refused(key.key.id, Utc::now(), why);
    match &outcome {
        Outcome::Admitted(_) => {}
        Outcome::RateLimited(_) => refused(Refused::RateLimited),
        Outcome::UsageExceeded { .. } => refused(Refused::UsageExceeded),
    }
    Ok(outcome)
}

/// Spends what a request of `key` costs from its limits, as [`charge`]
/// does: the charge, or the refusal as an error: 429 `rate_limited`
/// (the limit noted in `slot`, for its headers) or 429 `usage_exceeded`.
pub async fn spend(
    state: &Admission,
    key: &Authenticated,
    cost: u64,
    slot: Option<&RequestKey>,
) -> ApiResult<Charge> {
    match charge(state, key, cost).await? {
        Outcome::Admitted(charge) => Ok(charge),
        Outcome::RateLimited(limit) => {
            let error = ApiError::key_rate_limited(&limit, limit.reset_seconds);
            if let Some(slot) = slot {
                slot.refused_by(limit);
            }
            Err(error)
        }
        Outcome::UsageExceeded { remaining } => Err(ApiError::usage_exceeded(remaining)),
    }
}

/// Records the credits an admitted charge spent, now: for an answer that
/// is final when given (`/verify`, `/auth`), with no request slot to
/// record them when the request ends.
pub fn record_spent(state: &Admission, key: &Authenticated, charge: &Charge) {
    if charge.credits() > 0 {
        state.usage.record_credits(key.key.id, Utc::now(), charge.credits());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn every_header_form_is_read() {
        assert_eq!(presented_key(&headers(&[("authorization", "ak_x")])), Some(Ok("ak_x")));
        assert_eq!(presented_key(&headers(&[("authorization", "Bearer ak_x")])), Some(Ok("ak_x")));
        assert_eq!(presented_key(&headers(&[("authorization", "bearer  ak_x ")])), Some(Ok("ak_x")));
        assert_eq!(presented_key(&headers(&[("x-api-key", "ak_x")])), Some(Ok("ak_x")));
        assert_eq!(presented_key(&headers(&[("capgkey", "ak_x")])), Some(Ok("ak_x")));
        assert_eq!(presented_key(&headers(&[])), None);
        assert_eq!(presented_key(&headers(&[("authorization", "  ")])), None);
        assert_eq!(presented_key(&headers(&[("authorization", "Bearer ")])), None);
    }
}
