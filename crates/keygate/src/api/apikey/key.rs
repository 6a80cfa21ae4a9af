//! The key as every `/apikey` handler reads and shows it: the views
//! ([`ApiKeyView`], [`OneKey`]), the key a path names ([`ManagedKey`]),
//! new key material, and the parsing of a key's fields.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use keygate_core::authz::{Action, Target};
use keygate_core::key_writes::{self, KeyState, KeyWrite, KeyWriteFacts, Liveness};
use keygate_core::rules;
use keygate_core::{ApiKeySecret, AppId, KeyName, Mode};
use keygate_store::{ApiKeyRecord, KeyMaterial};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::limit_fields;
use crate::admission::Admission;
use crate::admission::caller::Caller;
use crate::admission::quota::Quotas;
use crate::api::Timestamp;
use crate::http::error::{ApiError, ApiResult};
use axum::extract::FromRef;

/// At most this many apps in `limited_to_apps`.
pub(crate) const MAX_APPS: usize = keygate_core::bounds::MAX_APPS;

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ApiKeyView {
    id: i64,
    /// The masked preview, or the full secret in the one response that creates it.
    #[schema(example = "ak_Ab3d…x9Zq")]
    key: String,
    #[schema(value_type = String, example = "read")]
    mode: Mode,
    #[schema(example = "New API Key")]
    name: String,
    user_id: Uuid,
    /// `null` for an unscoped key (issued by the CLI).
    org_id: Option<Uuid>,
    /// `[org_id]` for an org-scoped key, `[]` for an unscoped one.
    limited_to_orgs: Vec<Uuid>,
    #[schema(value_type = Vec<String>)]
    limited_to_apps: Vec<AppId>,
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    last_used_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
    /// A disabled key is refused (401 `api_key_disabled`) until enabled again.
    enabled: bool,
    /// The rate limit named `default`, if any (the one `ratelimit` sets).
    ratelimit: Option<limit_fields::RateLimitView>,
    /// Every rate limit of the key.
    ratelimits: Vec<limit_fields::RateLimitView>,
    /// `null`: unlimited.
    credits: Option<limit_fields::CreditsView>,
}

impl ApiKeyView {
    /// The key with its secret masked; its credits as `quotas` knows them.
    pub fn masked(key: ApiKeyRecord, quotas: &Quotas) -> Self {
        let credits = quotas.credits_remaining(&key).map(|remaining| limit_fields::CreditsView {
            remaining,
            refill: key.credits.and_then(|c| c.refill).map(limit_fields::RefillView::from),
        });
        Self {
            enabled: key.enabled,
            ratelimit: key
                .ratelimits
                .iter()
                .find(|l| l.name == keygate_core::limits::DEFAULT_NAME)
                .map(limit_fields::RateLimitView::from),
            ratelimits: key.ratelimits.iter().map(limit_fields::RateLimitView::from).collect(),
            credits,
            id: key.id,
            key: key.preview,
            mode: key.mode,
            name: key.name,
            user_id: key.user_id,
            org_id: key.org_id,
            limited_to_orgs: key.org_id.into_iter().collect(),
            limited_to_apps: key.limited_to_apps,
            expires_at: key.expires_at.map(Timestamp),
            last_used_at: key.last_used_at.map(Timestamp),
            created_at: Timestamp(key.created_at),
            updated_at: Timestamp(key.updated_at),
        }
    }

    pub fn revealed(key: ApiKeyRecord, secret: &ApiKeySecret, quotas: &Quotas) -> Self {
        Self { key: secret.expose().to_owned(), ..Self::masked(key, quotas) }
    }
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct OneKey {
    pub(super) apikey: ApiKeyView,
}

/// Generates a key and the half of it the store keeps.
pub fn new_key_material() -> ApiResult<(ApiKeySecret, KeyMaterial)> {
    let secret = ApiKeySecret::generate().map_err(|error| {
        tracing::error!(%error, "the operating system's random generator failed");
        ApiError::internal()
    })?;
    let material = KeyMaterial { digest: secret.digest(), preview: secret.preview() };
    Ok((secret, material))
}

/// A key named in a path: by numeric id or by its full text.
enum KeyRef {
    Id(i64),
    Secret(ApiKeySecret),
    /// Neither a well-formed id nor a well-formed key: no key can match it.
    Nothing,
}

impl KeyRef {
    fn parse(raw: &str) -> Self {
        if raw.starts_with(keygate_core::key::PREFIX) {
            return ApiKeySecret::parse(raw).map_or(KeyRef::Nothing, KeyRef::Secret);
        }
        if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
            return raw.parse().map_or(KeyRef::Nothing, KeyRef::Id);
        }
        KeyRef::Nothing
    }
}

pub(super) fn parse_mode(value: Option<&Value>) -> ApiResult<Mode> {
    match value {
        Some(Value::String(s)) => Mode::parse(s).ok_or_else(ApiError::invalid_mode),
        // The contract's text, then what to fix.
        None | Some(Value::Null) => Err(ApiError {
            message: "Invalid mode specified. Must be one of: read, write, upload, all; mode is required"
                .into(),
            ..ApiError::invalid_mode()
        }),
        _ => Err(ApiError::invalid_mode()),
    }
}

pub(super) fn parse_name(raw: &str) -> ApiResult<KeyName> {
    KeyName::parse(raw).map_err(|e| ApiError::bad_request("invalid_name", e.to_string()))
}

pub(super) fn parse_apps(raw: &[String]) -> ApiResult<Vec<AppId>> {
    if keygate_core::bounds::within(raw.len(), &keygate_core::bounds::APP_COUNT).is_none() {
        return Err(ApiError::bad_request(
            "invalid_limited_to_apps",
            format!("limited_to_apps holds at most {MAX_APPS} apps"),
        ));
    }
    let mut apps = Vec::with_capacity(raw.len());
    for app in raw {
        let app =
            AppId::parse(app).map_err(|e| ApiError::bad_request("invalid_limited_to_apps", e.to_string()))?;
        if !apps.contains(&app) {
            apps.push(app);
        }
    }
    Ok(apps)
}

pub(super) fn parse_expiry(raw: &str, now: DateTime<Utc>) -> ApiResult<DateTime<Utc>> {
    let at = DateTime::parse_from_rfc3339(raw.trim())
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_expires_at",
                "expires_at must be an RFC 3339 timestamp such as 2030-01-01T00:00:00Z",
            )
        })?
        .with_timezone(&Utc);
    // chrono reads second 60 (a leap second) as a nanosecond count past one
    // second; many clients cannot read it back.
    if chrono::Timelike::nanosecond(&at) >= 1_000_000_000 {
        return Err(ApiError::bad_request(
            "invalid_expires_at",
            "expires_at must have seconds from 00 to 59: leap seconds are not accepted",
        ));
    }
    // A key given it would be born expired.
    if Liveness::of(true, Some(at), now) == Liveness::Expired {
        return Err(ApiError::bad_request("invalid_expires_at", "expires_at must be in the future"));
    }
    Ok(keygate_store::truncate(at))
}

/// The key named in a `/apikey/{id_or_key}` path, with its caller: the
/// calling key is of mode `all` (else 403) and may see the named key
/// ([`rules::may_see_key`]; else 404, so that ids cannot be probed).
pub struct ManagedKey {
    pub caller: Caller,
    pub key: ApiKeyRecord,
}

impl ManagedKey {
    /// Whether `write` of the key may go ahead, decided
    /// ([`key_writes::may_write_key`]) over what this request read: a quick,
    /// clear answer. The store decides again, over the rows as its
    /// transaction finds them, before it commits.
    pub async fn may_write(&self, admission: &Admission, write: KeyWrite<'_>) -> ApiResult<()> {
        let caller = &self.caller;
        let (mut caller_role, mut owner_role, mut policy) = (None, None, None);
        if let Some(org) = self.key.org_id {
            if caller.principal.scope.contains_org(org) {
                caller_role = caller.role_in(admission, org).await?;
            }
            owner_role = match self.key.user_id == caller.user_id() {
                true => caller_role,
                false => admission.store.role(org, self.key.user_id).await?,
            };
            if matches!(write, KeyWrite::Edit(edit) if edit.expires_at.is_some()) {
                let org = admission.store.organization(org).await?.ok_or_else(ApiError::api_key_not_found)?;
                policy = Some(org.expiry_policy());
            }
        }
        let facts = KeyWriteFacts {
            caller: Some(KeyState { principal: caller.principal.clone(), enabled: true }),
            caller_role,
            key: self.key.principal(),
            owner_role,
            policy,
            now: keygate_store::now(),
        };
        Ok(key_writes::may_write_key(&facts, write)?)
    }
}

/// The path parameter of every `/apikey/{id_or_key}` route.
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    /// The key's numeric id, or the full key.
    id_or_key: String,
}

impl<S> FromRequestParts<S> for ManagedKey
where
    S: Send + Sync,
    Admission: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require_key_management()?;
        let Path(KeyPath { id_or_key }) = Path::<KeyPath>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::from_status(rejection.status()))?;
        let key = match KeyRef::parse(&id_or_key) {
            KeyRef::Id(id) => Admission::from_ref(state).store.key_by_id(id).await?,
            KeyRef::Secret(secret) => {
                Admission::from_ref(state).store.key_by_digest(&secret.digest()).await?
            }
            KeyRef::Nothing => None,
        };
        let key = key.ok_or_else(ApiError::api_key_not_found)?;
        let admin = match key.org_id {
            Some(org) => caller.decide(state, Target::org(org), Action::Administer).await?,
            None => keygate_core::Decision::Invisible,
        };
        if !rules::may_see_key(&caller.principal, &key.principal(), admin) {
            return Err(ApiError::api_key_not_found());
        }
        Ok(Self { caller, key })
    }
}
