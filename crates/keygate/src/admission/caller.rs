//! Who is calling: the [`Caller`] extractor, for every endpoint that
//! needs a key. The key is read, checked and charged as
//! [`verification`](super::verification) does it for `/auth` too.
//!
//! What the caller may then do is not decided here: handlers declare the
//! action they need and [`Caller`] asks [`keygate_core::authz`].

use std::net::IpAddr;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use keygate_core::Role;
use keygate_core::authz::{Action, Decision, Principal, Target};
use keygate_store::Actor;
use uuid::Uuid;

use super::Admission;
use crate::admission::usage::RequestKey;
use crate::admission::verification::{KEY_HEADERS, authenticate, spend};
use crate::http::client_address::client_address;
use crate::http::error::{ApiError, ApiResult};

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

impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    Admission: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let state = &Admission::from_ref(state);
        let address = client_address(parts, &state.client_addresses);
        let authenticated = authenticate(state, address, &parts.headers).await?;
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
