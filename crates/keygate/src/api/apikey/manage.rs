//! Listing, reading, changing and deleting keys.

use crate::admission::Admission;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use keygate_core::Decision;
use keygate_core::authz::{Action, Target};
use keygate_core::key_writes::KeyWrite;
use keygate_core::rules;
use keygate_store::Store;
use keygate_store::{ApiKeyRecord, KeyChanges};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

use super::key::{ApiKeyView, KeyPath, ManagedKey, OneKey, parse_apps, parse_expiry, parse_mode, parse_name};
use super::limit_fields::{CreditsInput, LimitChanges, RateLimitInput};
use crate::admission::caller::Caller;
use crate::api::{Data, ReadErrors, SUCCESS, Success, WriteErrors};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Params, RawBody, parse_org_id, present};

/// The fields of `PUT /apikey/:id`. The read-only fields of the ApiKey
/// object are accepted and ignored, so a client may send back what it read.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateFields {
    #[schema(schema_with = crate::api::schema::optional_name)]
    name: Option<String>,
    #[schema(schema_with = crate::api::schema::optional_mode)]
    mode: Option<Value>,
    #[schema(schema_with = limited_to_apps)]
    limited_to_apps: Option<Vec<String>>,
    /// RFC 3339, in the future and within the organization's policy;
    /// `null` removes the expiry.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::api::schema::optional_date_time)]
    expires_at: Option<Option<String>>,
    /// Enable or disable the key (needs the `admin` right in its organization).
    #[schema(nullable = true)]
    enabled: Option<bool>,
    /// One rate limit, named `default`; `null` removes every limit (needs
    /// the `admin` right in the key's organization, as every limit field).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = true)]
    ratelimit: Option<Option<RateLimitInput>>,
    /// Every rate limit of the key, replacing those it had; `null` or `[]`
    /// removes them.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = true, max_items = 5)]
    ratelimits: Option<Option<Vec<RateLimitInput>>>,
    /// Sets the credits anew (balance and refill); `null`: unlimited.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = true)]
    credits: Option<Option<CreditsInput>>,
    #[serde(rename = "id")]
    #[schema(ignore)]
    _id: Option<IgnoredAny>,
    #[serde(rename = "key")]
    #[schema(ignore)]
    _key: Option<IgnoredAny>,
    #[serde(rename = "user_id")]
    #[schema(ignore)]
    _user_id: Option<IgnoredAny>,
    #[serde(rename = "org_id")]
    #[schema(ignore)]
    _org_id: Option<IgnoredAny>,
    #[serde(rename = "limited_to_orgs")]
    #[schema(ignore)]
    _limited_to_orgs: Option<IgnoredAny>,
    #[serde(rename = "last_used_at")]
    #[schema(ignore)]
    _last_used_at: Option<IgnoredAny>,
    #[serde(rename = "created_at")]
    #[schema(ignore)]
    _created_at: Option<IgnoredAny>,
    #[serde(rename = "updated_at")]
    #[schema(ignore)]
    _updated_at: Option<IgnoredAny>,
}

fn limited_to_apps() -> utoipa::openapi::schema::Schema {
    crate::api::schema::optional_app_ids(super::key::MAX_APPS)
}

impl UpdateFields {
    fn parse(self, now: DateTime<Utc>) -> ApiResult<KeyChanges> {
        let limits = LimitChanges::parse(self.enabled, self.ratelimit, self.ratelimits, self.credits)?;
        Ok(KeyChanges {
            name: self.name.as_deref().map(parse_name).transpose()?,
            mode: self.mode.as_ref().map(|m| parse_mode(Some(m))).transpose()?,
            limited_to_apps: self.limited_to_apps.as_deref().map(parse_apps).transpose()?,
            expires_at: self
                .expires_at
                .map(|at| at.map(|raw| parse_expiry(&raw, now)).transpose())
                .transpose()?,
            enabled: limits.enabled,
            ratelimits: limits.ratelimits,
            credits: limits.credits,
        })
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// As an admin of this organization: every key scoped to it.
    #[param(value_type = Option<uuid::Uuid>)]
    org_id: Option<String>,
}

#[utoipa::path(
    get,
    path = "/apikey",
    tag = "apikey",
    params(ListQuery),
    responses(
        (status = 200, description = "The caller's keys, secrets masked", body = Data<ApiKeyView>),
        ReadErrors,
    ),
)]
pub async fn list(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    Params(query): Params<ListQuery>,
) -> ApiResult<Json<Data<ApiKeyView>>> {
    caller.require_key_management()?;
    let keys = match query.org_id {
        Some(raw) => {
            let org = parse_org_id(&raw)?;
            match caller.decide(&admission, Target::org(org), Action::Administer).await? {
                Decision::Allow => store.keys_of_org(org).await?,
                Decision::Forbidden => return Err(ApiError::insufficient_permissions()),
                Decision::Invisible => return Err(ApiError::org_not_found()),
            }
        }
        None => {
            let keys = store.keys_of_user(caller.user_id()).await?;
            // How the calling key acts in each organization its owner's keys are scoped to.
            let mut decisions = std::collections::HashMap::new();
            for org in keys.iter().filter_map(|key| key.org_id) {
                if let std::collections::hash_map::Entry::Vacant(entry) = decisions.entry(org) {
                    entry.insert(caller.decide(&admission, Target::org(org), Action::Administer).await?);
                }
            }
            let decision = |key: &ApiKeyRecord| {
                key.org_id.and_then(|org| decisions.get(&org).copied()).unwrap_or(Decision::Invisible)
            };
            keys.into_iter()
                .filter(|key| rules::may_see_key(&caller.principal, &key.principal(), decision(key)))
                .collect()
        }
    };
    Ok(Json(Data { data: keys.into_iter().map(|key| ApiKeyView::masked(key, &admission.quotas)).collect() }))
}

#[utoipa::path(
    get,
    path = "/apikey/{id_or_key}",
    tag = "apikey",
    params(KeyPath),
    responses(
        (status = 200, description = "The key, secret masked", body = OneKey),
        ReadErrors,
    ),
)]
pub async fn get(
    State(admission): State<Admission>,
    ManagedKey { key, .. }: ManagedKey,
) -> ApiResult<Json<OneKey>> {
    Ok(Json(OneKey { apikey: ApiKeyView::masked(key, &admission.quotas) }))
}

#[utoipa::path(
    put,
    path = "/apikey/{id_or_key}",
    tag = "apikey",
    params(KeyPath),
    request_body = UpdateFields,
    responses(
        (status = 200, description = "The changed key, secret masked", body = OneKey),
        ReadErrors,
        WriteErrors,
    ),
)]
pub async fn update(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    managed: ManagedKey,
    body: RawBody,
) -> ApiResult<Json<OneKey>> {
    let now = Utc::now();
    let key = &managed.key;
    let mut changes = match body.json::<UpdateFields>()? {
        Some(fields) => fields.parse(now)?,
        None => KeyChanges::default(),
    };
    unchanged_limits_dropped(&mut changes, key, &admission.quotas);
    // Decided even when nothing changes: a PUT is answered alike whatever it carries.
    managed.may_write(&admission, KeyWrite::Edit(&changes.edit())).await?;
    if changes.is_empty() {
        return Ok(Json(OneKey { apikey: ApiKeyView::masked(managed.key, &admission.quotas) }));
    }
    let caller = &managed.caller;
    let updated =
        store.update_key(key.id, changes, &caller.actor()).await?.ok_or_else(ApiError::api_key_not_found)?;
    tracing::info!(key_id = updated.id, "api key updated");
    Ok(Json(OneKey { apikey: ApiKeyView::masked(updated, &admission.quotas) }))
}

/// Limit fields sent with the value they already have (an ApiKey object
/// sent back) are no change: they need no `admin` right.
fn unchanged_limits_dropped(
    changes: &mut KeyChanges,
    key: &ApiKeyRecord,
    quotas: &crate::admission::quota::Quotas,
) {
    if changes.enabled == Some(key.enabled) {
        changes.enabled = None;
    }
    if changes.ratelimits.as_ref() == Some(&key.ratelimits) {
        changes.ratelimits = None;
    }
    let current = key.credits.map(|credits| keygate_core::limits::Credits {
        remaining: quotas.credits_remaining(key).map_or(0, |left| i64::try_from(left).unwrap_or(i64::MAX)),
        refill: credits.refill,
    });
    if changes.credits == Some(current) {
        changes.credits = None;
    }
}

#[utoipa::path(
    delete,
    path = "/apikey/{id_or_key}",
    tag = "apikey",
    params(KeyPath),
    responses(
        (status = 200, description = "The key no longer works", body = Success),
        ReadErrors,
    ),
)]
pub async fn delete(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    managed: ManagedKey,
) -> ApiResult<Json<Success>> {
    managed.may_write(&admission, KeyWrite::Delete).await?;
    let ManagedKey { caller, key } = managed;
    if !store.delete_key(key.id, &caller.actor()).await? {
        return Err(ApiError::api_key_not_found());
    }
    tracing::info!(key_id = key.id, "api key deleted");
    Ok(Json(SUCCESS))
}
