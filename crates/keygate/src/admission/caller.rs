//! Who is calling: the [`Caller`] extractor and the failed-authentication
//! guard.
//!
//! The key may come in `authorization` (bare or `Bearer`), `x-api-key` or
//! `capgkey`; the [`Authenticator`](crate::admission::authenticator::Authenticator)
//! checks it. A missing, malformed, unknown or deleted key is a 401; so is an
//! expired one, with its own code.
//!
//! Every credential check — API keys here, verifier tokens in
//! [`crate::api::verify`] — runs inside [`guarded`]: a blocked address gets
//! 429 before its credential is looked at, and a refused credential counts
//! against it ([`crate::admission::throttle`]).
//!
//! What the caller may then do is not decided here: handlers declare the
//! action they need and [`Caller`] asks [`keygate_core::authz`].

use std::future::Future;
use std::net::IpAddr;
use std::time::Instant;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use keygate_core::Role;
use keygate_core::authz::{Action, Decision, Principal, Target};
use keygate_store::Actor;
use uuid::Uuid;

use chrono::Utc;

use super::Admission;
use crate::admission::authenticated::Authenticated;
use crate::admission::authenticator::KeyLookup;
use crate::admission::quota::{Charge, Outcome};
use crate::admission::usage::{Refused, RequestKey};
use crate::http::client_address::client_address;
use crate::http::error::{ApiError, ApiResult};

/// The headers a key is read from, in this order.
pub(crate) const KEY_HEADERS: [&str; 3] = ["authorization", "x-api-key", "capgkey"];

/// The key presented with the request, if any, without its `Bearer ` prefix.
pub(crate) fn presented_key(headers: &HeaderMap) -> Option<Result<&str, ()>> {
    let value = KEY_HEADERS.iter().find_map(|name| headers.get(*name))?;
    let Ok(text) = value.to_str() else {
        return Some(Err(()));
    };
    let text = strip_bearer(text);
    (!text.is_empty()).then_some(Ok(text))
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

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// Where the request came from, as rate limiting and the audit log see it.
    pub address: Option<IpAddr>,
    /// The owner's role in the key's own organization, read with the key.
    own_role: Option<Role>,
    /// The key's current digest as authentication found it.
    digest: keygate_core::KeyDigest,
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
pub async fn guarded<S, T>(
    state: &S,
    address: Option<IpAddr>,
    check: impl Future<Output = ApiResult<Credential<T>>>,
) -> ApiResult<T>
where
    Admission: FromRef<S>,
{
    let state = Admission::from_ref(state);
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
                // Other replicas count it too; the 401 does not wait for that.
                let store = state.store.clone();
                tokio::spawn(async move {
                    if let Err(error) = store.record_auth_failure(address).await {
                        tracing::debug!(%error, "cannot share a failed authentication with other replicas");
                    }
                });
            }
            Err(error)
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    Admission: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let state = &Admission::from_ref(state);
        let address = client_address(parts, &state.client_addresses);
        let authenticated = guarded::<Admission, _>(state, address, async {
            let presented = presented_key(&parts.headers).ok_or_else(ApiError::missing_api_key)?;
            Ok(match state.authenticator.look_up(presented.unwrap_or_default()).await? {
                KeyLookup::Live(authenticated) => Credential::Accepted(authenticated),
                KeyLookup::Expired(_) => Credential::Refused(ApiError::api_key_expired()),
                KeyLookup::Unknown => Credential::Refused(ApiError::invalid_api_key()),
                // A known key: not a failed authentication.
                KeyLookup::Disabled(_) => return Err(ApiError::api_key_disabled()),
            })
        })
        .await?;
        let slot = parts.extensions.get::<RequestKey>();
        if let Some(slot) = slot {
            slot.set(authenticated.key.id);
        }
        let charge = spend::<Admission>(state, &authenticated, 1, slot).await?;
        if let Some(slot) = slot {
            slot.charged(charge);
        }
        Ok(Caller {
            principal: authenticated.principal.clone(),
            address,
            own_role: authenticated.own_role,
            digest: authenticated.key.digest,
        })
    }
}

/// The caller of a request that may come with a key or without one: `None`
/// when no key header is present; a key that is present is checked exactly
/// as [`Caller`] checks it (a bad one is refused, never ignored).
pub struct OptionalCaller(pub Option<Caller>);

impl<S: Send + Sync> FromRequestParts<S> for OptionalCaller
where
    Admission: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        if KEY_HEADERS.iter().all(|name| !parts.headers.contains_key(*name)) {
            return Ok(Self(None));
        }
        Caller::from_request_parts(parts, state).await.map(|caller| Self(Some(caller)))
    }
}

/// Spends what a request of `key` costs from its limits ([`crate::admission::quota`]):
/// the charge, or the refusal, counted against the key: 429 `rate_limited`
/// (the limit noted in `slot`, for its headers) or 429 `usage_exceeded`.
pub(crate) async fn spend<S>(
    state: &S,
    key: &Authenticated,
    cost: u64,
    slot: Option<&RequestKey>,
) -> ApiResult<Charge>
where
    Admission: FromRef<S>,
{
    let state = Admission::from_ref(state);
    let refused = |why| state.usage.record_refused(key.key.id, Utc::now(), why);
    match state.quotas.charge(key, cost).await? {
        Outcome::Admitted(charge) => Ok(charge),
        Outcome::RateLimited(limit) => {
            refused(Refused::RateLimited);
            let error = ApiError::key_rate_limited(&limit, limit.reset_seconds);
            if let Some(slot) = slot {
                slot.refused_by(limit);
            }
            Err(error)
        }
        Outcome::UsageExceeded { remaining } => {
            refused(Refused::UsageExceeded);
            Err(ApiError::usage_exceeded(remaining))
        }
    }
}

impl Caller {
    pub fn user_id(&self) -> Uuid {
        self.principal.user_id
    }

    /// The caller as the audit log records it.
    /// The key's current digest as authentication found it.
    pub fn digest(&self) -> keygate_core::KeyDigest {
        self.digest
    }

    pub fn actor(&self) -> Actor {
        Actor {
            user_id: Some(self.user_id()),
            key_id: Some(self.principal.key_id),
            ip: self.address,
            // A secret in its grace period is already judged as such.
            presented: (!self.principal.retiring).then_some(self.digest),
        }
    }

    /// Listing, creating, changing or deleting keys needs a key of mode `all`.
    pub fn require_key_management(&self) -> ApiResult<()> {
        if self.principal.may_manage_keys() { Ok(()) } else { Err(ApiError::insufficient_permissions()) }
    }

    /// The caller's role in `org_id`, `None` when not a member. For the
    /// key's own organization it was read with the key, in the same query.
    pub async fn role_in<S>(&self, state: &S, org_id: Uuid) -> ApiResult<Option<Role>>
    where
        Admission: FromRef<S>,
    {
        if self.principal.scope.org == Some(org_id) {
            return Ok(self.own_role);
        }
        // Unless an admin there blocked this key.
        Ok(Admission::from_ref(state)
            .store
            .role_of_key(org_id, self.user_id(), self.principal.key_id)
            .await?)
    }

    /// Decides `action` on `target`, reading the caller's current role.
    pub async fn decide<S>(&self, state: &S, target: Target<'_>, action: Action) -> ApiResult<Decision>
    where
        Admission: FromRef<S>,
    {
        if !self.principal.scope.contains_org(target.org) {
            return Ok(Decision::Invisible);
        }
        let role = self.role_in(state, target.org).await?;
        Ok(self.principal.decide(role, target, action))
    }

    /// What a handler calls before acting: the caller's role in the target's
    /// organization when [`Principal::decide`] allows `action` on `target`,
    /// else 403, or `invisible()` (a 404) when the target is outside the
    /// caller's view.
    pub async fn require<S>(
        &self,
        state: &S,
        target: Target<'_>,
        action: Action,
        invisible: fn() -> ApiError,
    ) -> ApiResult<Role>
    where
        Admission: FromRef<S>,
    {
        if !self.principal.scope.contains_org(target.org) {
            return Err(invisible());
        }
        let role = self.role_in(state, target.org).await?;
        match (self.principal.decide(role, target, action), role) {
            (Decision::Allow, Some(role)) => Ok(role),
            (Decision::Forbidden, _) => Err(ApiError::forbidden(action)),
            _ => Err(invisible()),
        }
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
