//! Who is calling: the [`Caller`] extractor and the failed-authentication
//! guard.
//!
//! The key may come in `authorization` (bare or `Bearer`), `x-api-key` or
//! `capgkey`; the [`Authenticator`](crate::authenticator::Authenticator)
//! checks it. A missing, malformed, unknown or deleted key is a 401; so is an
//! expired one, with its own code.
//!
//! Every credential check — API keys here, verifier tokens in
//! [`crate::api::verify`] — runs inside [`guarded`]: a blocked address gets
//! 429 before its credential is looked at, and a refused credential counts
//! against it ([`crate::limits`]).
//!
//! What the caller may then do is not decided here: handlers declare the
//! action they need and [`Caller`] asks [`keygate_core::authz`].

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use keygate_core::Role;
use keygate_core::authz::{Action, Decision, Principal, Target};
use keygate_store::Actor;
use uuid::Uuid;

use chrono::Utc;

use crate::AppState;
use crate::authenticator::{Authenticated, KeyLookup};
use crate::error::{ApiError, ApiResult};
use crate::quota::{Charge, Outcome};
use crate::usage::{Refused, RequestKey};

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

/// The client's address of a request, for handlers without a [`Caller`].
pub struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(state.client_address(parts)))
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
    state: &AppState,
    address: Option<IpAddr>,
    check: impl Future<Output = ApiResult<Credential<T>>>,
) -> ApiResult<T> {
    if let Some(wait) = address.and_then(|a| state.failed_auth.blocked_for(a, Instant::now())) {
        return Err(ApiError::rate_limited(wait));
    }
    match check.await? {
        Credential::Accepted(value) => Ok(value),
        Credential::Refused(error) => {
            if let Some(address) = address
                && state.failed_auth.is_on()
            {
                state.failed_auth.record_failure(address, Instant::now());
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

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let address = state.client_address(parts);
        let authenticated = guarded(state, address, async {
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
        let charge = spend(state, &authenticated, 1, slot).await?;
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

impl FromRequestParts<AppState> for OptionalCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        if KEY_HEADERS.iter().all(|name| !parts.headers.contains_key(*name)) {
            return Ok(Self(None));
        }
        Caller::from_request_parts(parts, state).await.map(|caller| Self(Some(caller)))
    }
}

/// Spends what a request of `key` costs from its limits ([`crate::quota`]):
/// the charge, or the refusal, counted against the key: 429 `rate_limited`
/// (the limit noted in `slot`, for its headers) or 429 `usage_exceeded`.
pub(crate) async fn spend(
    state: &AppState,
    key: &Authenticated,
    cost: u64,
    slot: Option<&RequestKey>,
) -> ApiResult<Charge> {
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

/// Where a request's client address comes from: the peer's address, or,
/// from a proxy trusted to speak for clients, the last entry the proxy wrote
/// into a header (such as `x-forwarded-for`).
///
/// - With `--trusted-proxy CIDR`s, only a peer inside one of them is read
///   from the header (by default `x-forwarded-for`); any other peer is the
///   client itself, whatever it claims.
/// - With `--client-ip-header` alone, every peer is taken to be the proxy
///   (keygate is reachable only through it).
/// - With a header to read but unusable, `None`: counting such a request
///   against the peer would let one client get the proxy itself blocked.
#[derive(Debug, Clone, Default)]
pub struct ClientAddressPolicy {
    header: Option<HeaderName>,
    trusted: std::sync::Arc<[ipnet::IpNet]>,
}

impl ClientAddressPolicy {
    pub fn new(header: Option<HeaderName>, trusted: Vec<ipnet::IpNet>) -> Self {
        let header =
            header.or_else(|| (!trusted.is_empty()).then(|| HeaderName::from_static("x-forwarded-for")));
        Self { header, trusted: trusted.into() }
    }

    /// The header to read for a request from `peer`; `None`: the peer is the client.
    pub fn header_for(&self, peer: Option<IpAddr>) -> Option<&HeaderName> {
        let header = self.header.as_ref()?;
        let trusted = self.trusted.is_empty()
            || peer.is_some_and(|peer| self.trusted.iter().any(|net| net.contains(&peer)));
        trusted.then_some(header)
    }

    /// The client's address of a request from `peer` with `headers`.
    pub fn address(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        match self.header_for(peer) {
            Some(header) => address_from_header_value(headers.get_all(header).iter().next_back()?),
            None => peer,
        }
    }
}

/// The client's address of a request (see [`ClientAddressPolicy`]).
pub(crate) fn client_address(parts: &Parts, policy: &ClientAddressPolicy) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    policy.address(peer, &parts.headers)
}

/// The last entry of a client address header's value.
pub(crate) fn address_from_header_value(value: &HeaderValue) -> Option<IpAddr> {
    let last_entry = value.as_bytes().rsplit(|&b| b == b',').next()?;
    parse_address(std::str::from_utf8(last_entry).ok()?.trim())
}

/// `203.0.113.5`, `2001:db8::1`, `203.0.113.5:4711` or `[2001:db8::1]:4711`.
fn parse_address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().ok().or_else(|| text.parse::<SocketAddr>().ok().map(|a| a.ip()))
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
    pub async fn role_in(&self, state: &AppState, org_id: Uuid) -> ApiResult<Option<Role>> {
        if self.principal.scope.org == Some(org_id) {
            return Ok(self.own_role);
        }
        // Unless an admin there blocked this key.
        Ok(state.store.role_of_key(org_id, self.user_id(), self.principal.key_id).await?)
    }

    /// Decides `action` on `target`, reading the caller's current role.
    pub async fn decide(&self, state: &AppState, target: Target<'_>, action: Action) -> ApiResult<Decision> {
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
    pub async fn require(
        &self,
        state: &AppState,
        target: Target<'_>,
        action: Action,
        invisible: fn() -> ApiError,
    ) -> ApiResult<Role> {
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
    use axum::http::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn forwarded_addresses_are_read_from_the_last_entry_only() {
        let parts = |value: &'static [u8]| {
            let mut request = axum::http::Request::new(());
            request.headers_mut().insert("x-forwarded-for", HeaderValue::from_bytes(value).expect("header"));
            request.into_parts().0
        };
        let policy = ClientAddressPolicy::new(Some(HeaderName::from_static("x-forwarded-for")), Vec::new());
        let address = |value| client_address(&parts(value), &policy);
        assert_eq!(address(b"198.51.100.1, 203.0.113.5"), "203.0.113.5".parse().ok());
        assert_eq!(address(b"203.0.113.5:4711"), "203.0.113.5".parse().ok());
        assert_eq!(address(b"[2001:db8::1]:4711"), "2001:db8::1".parse().ok());
        assert_eq!(address(b"1.2.3.4, \x80garbage"), None);
        assert_eq!(address(b"\x80, 203.0.113.9"), "203.0.113.9".parse().ok());
        assert_eq!(address(b"unknown"), None);
    }

    #[test]
    fn only_trusted_proxies_speak_for_clients() {
        let policy = ClientAddressPolicy::new(None, vec!["10.0.0.0/8".parse().expect("cidr")]);
        let forwarded = headers(&[("x-forwarded-for", "203.0.113.5")]);
        let proxy: IpAddr = "10.1.2.3".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.7".parse().expect("ip");
        assert_eq!(policy.address(Some(proxy), &forwarded), "203.0.113.5".parse().ok());
        assert_eq!(
            policy.address(Some(stranger), &forwarded),
            Some(stranger),
            "a stranger cannot claim an address"
        );
        assert_eq!(policy.address(Some(proxy), &headers(&[])), None, "a proxy that names nobody");
        assert_eq!(ClientAddressPolicy::default().address(Some(stranger), &forwarded), Some(stranger));
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
