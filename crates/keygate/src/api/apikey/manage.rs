//! Listing, reading, changing and deleting keys.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use keygate_core::Decision;
use keygate_core::Scope;
use keygate_core::authz::{Action, Grant, Target};
use keygate_core::rules;
use keygate_store::KeyChanges;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{ApiKeyView, KeyPath, ManagedKey, OneKey, parse_apps, parse_expiry, parse_mode, parse_name};
use crate::AppState;
use crate::api::{Data, ReadErrors, SUCCESS, Success, WriteErrors};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Params, RawBody, parse_org_id, present};

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
    crate::api::schema::optional_app_ids(super::MAX_APPS)
}

impl UpdateFields {
    fn parse(self, now: DateTime<Utc>) -> ApiResult<KeyChanges> {
        Ok(KeyChanges {
            name: self.name.as_deref().map(parse_name).transpose()?,
            mode: self.mode.as_ref().map(|m| parse_mode(Some(m))).transpose()?,
            limited_to_apps: self.limited_to_apps.as_deref().map(parse_apps).transpose()?,
            expires_at: self
                .expires_at
                .map(|at| at.map(|raw| parse_expiry(&raw, now)).transpose())
                .transpose()?,
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
    State(state): State<AppState>,
    caller: Caller,
    Params(query): Params<ListQuery>,
) -> ApiResult<Json<Data<ApiKeyView>>> {
    caller.require_key_management()?;
    let keys = match query.org_id {
        Some(raw) => {
            let org = parse_org_id(&raw)?;
            match caller.decide(&state, Target::org(org), Action::Administer).await? {
                Decision::Allow => state.store.keys_of_org(org).await?,
                Decision::Forbidden => return Err(ApiError::insufficient_permissions()),
                Decision::Invisible => return Err(ApiError::org_not_found()),
            }
        }
        None => {
            let mut keys = state.store.keys_of_user(caller.user_id()).await?;
            keys.retain(|key| rules::may_see_key(&caller.principal, &key.principal(), Decision::Invisible));
            keys
        }
    };
    Ok(Json(Data { data: keys.into_iter().map(ApiKeyView::masked).collect() }))
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
pub async fn get(ManagedKey { key, .. }: ManagedKey) -> ApiResult<Json<OneKey>> {
    Ok(Json(OneKey { apikey: ApiKeyView::masked(key) }))
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
    State(state): State<AppState>,
    ManagedKey { caller, key }: ManagedKey,
    body: RawBody,
) -> ApiResult<Json<OneKey>> {
    let now = Utc::now();
    let changes = match body.json::<UpdateFields>()? {
        Some(fields) => fields.parse(now)?,
        None => KeyChanges::default(),
    };
    if changes.is_empty() {
        return Ok(Json(OneKey { apikey: ApiKeyView::masked(key) }));
    }
    let expires_at = changes.expires_at.unwrap_or(key.expires_at);
    if let Some(org_id) = key.org_id {
        let caller_role =
            rules::key_management_role(&caller.principal, org_id, caller.role_in(&state, org_id).await?)?;
        if changes.expires_at.is_some() {
            let org = state.store.organization(org_id).await?.ok_or_else(ApiError::org_not_found)?;
            org.expiry_policy().check(expires_at, now)?;
        }
        let owner_role = match key.user_id == caller.user_id() {
            true => Some(caller_role),
            false => state.store.role(org_id, key.user_id).await?,
        };
        rules::may_change_key(&caller.principal, caller_role, &key.principal(), owner_role)?;
    }
    let scope = Scope {
        org: key.org_id,
        apps: changes.limited_to_apps.clone().unwrap_or_else(|| key.limited_to_apps.clone()),
    };
    let grant = Grant { mode: changes.mode.unwrap_or(key.mode), scope: &scope, expires_at };
    if !caller.principal.may_grant(&grant) {
        return Err(ApiError::insufficient_permissions());
    }
    let updated = state
        .store
        .update_key(key.id, changes, &caller.actor())
        .await?
        .ok_or_else(ApiError::api_key_not_found)?;
    tracing::info!(key_id = updated.id, "api key updated");
    Ok(Json(OneKey { apikey: ApiKeyView::masked(updated) }))
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
    State(state): State<AppState>,
    ManagedKey { caller, key }: ManagedKey,
) -> ApiResult<Json<Success>> {
    if !state.store.delete_key(key.id, &caller.actor()).await? {
        return Err(ApiError::api_key_not_found());
    }
    tracing::info!(key_id = key.id, "api key deleted");
    Ok(Json(SUCCESS))
}
