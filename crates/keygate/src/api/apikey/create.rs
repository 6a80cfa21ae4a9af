//! `POST /apikey`: a new key, its secret shown this once.

use crate::admission::Admission;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use keygate_core::rules;
use keygate_core::{AppId, KeyName, Mode, Scope};
use keygate_store::Store;
use keygate_store::{KeyLimits, NewApiKey};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::key::{ApiKeyView, OneKey, new_key_material, parse_apps, parse_expiry, parse_mode, parse_name};
use super::limit_fields::{CreditsInput, LimitChanges, RateLimitInput};
use crate::admission::caller::Caller;
use crate::api::{ReadErrors, WriteErrors};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Params, RawBody, parse_org_id, required};

/// The fields of `POST /apikey`, from a JSON body or the query string.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateFields {
    /// The organization the key is scoped to.
    #[schema(required = true, schema_with = crate::api::schema::uuid)]
    org_id: Option<String>,
    #[schema(required = true, schema_with = crate::api::schema::mode)]
    mode: Option<Value>,
    /// `New API Key` by default.
    #[schema(schema_with = crate::api::schema::optional_name)]
    name: Option<String>,
    /// Apps the key is limited to; none: every app of the organization.
    #[schema(schema_with = limited_to_apps)]
    limited_to_apps: Option<Vec<String>>,
    /// In the future, and within the organization's policy.
    #[schema(schema_with = crate::api::schema::optional_date_time)]
    expires_at: Option<String>,
    /// Enabled (the default) or not: a disabled key is refused until enabled.
    #[schema(nullable = true)]
    enabled: Option<bool>,
    /// One rate limit, named `default`.
    #[schema(nullable = true)]
    ratelimit: Option<RateLimitInput>,
    /// Several named rate limits (at most 5); each must allow the request.
    #[schema(nullable = true, max_items = 5)]
    ratelimits: Option<Vec<RateLimitInput>>,
    /// A credit balance each request spends from; none: unlimited.
    #[schema(nullable = true)]
    credits: Option<CreditsInput>,
    /// Capgo clients may send it; the scope comes from `org_id`, and
    /// anything but `[org_id]` here is refused rather than ignored.
    #[schema(ignore)]
    limited_to_orgs: Option<Value>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CreateQuery {
    #[param(schema_with = crate::api::schema::uuid)]
    org_id: Option<String>,
    #[param(schema_with = crate::api::schema::mode)]
    mode: Option<String>,
    #[param(schema_with = crate::api::schema::name)]
    name: Option<String>,
    /// Comma-separated app ids.
    limited_to_apps: Option<String>,
    #[param(schema_with = crate::api::schema::date_time)]
    expires_at: Option<String>,
}

fn limited_to_apps() -> utoipa::openapi::schema::Schema {
    crate::api::schema::optional_app_ids(super::key::MAX_APPS)
}

impl CreateFields {
    /// The body's fields, completed by the query's.
    fn merge(self, query: CreateQuery) -> Self {
        Self {
            org_id: self.org_id.or(query.org_id),
            mode: self.mode.or(query.mode.map(Value::String)),
            name: self.name.or(query.name),
            limited_to_apps: self.limited_to_apps.or_else(|| {
                query.limited_to_apps.map(|list| {
                    list.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect()
                })
            }),
            expires_at: self.expires_at.or(query.expires_at),
            ..self
        }
    }
}

struct CreateKey {
    org_id: Uuid,
    mode: Mode,
    name: KeyName,
    limited_to_apps: Vec<AppId>,
    expires_at: Option<DateTime<Utc>>,
    limits: KeyLimits,
}

impl CreateKey {
    fn parse(fields: CreateFields, now: DateTime<Utc>) -> ApiResult<Self> {
        let org_id = required(fields.org_id.as_deref()).ok_or_else(ApiError::org_id_required)?.to_owned();
        let mode = parse_mode(fields.mode.as_ref())?;
        let name = match fields.name {
            Some(name) => parse_name(&name)?,
            None => KeyName::default_name(),
        };
        let limited_to_apps = parse_apps(fields.limited_to_apps.as_deref().unwrap_or_default())?;
        let expires_at = fields.expires_at.map(|raw| parse_expiry(&raw, now)).transpose()?;
        let limits = LimitChanges::parse(
            fields.enabled,
            fields.ratelimit.map(Some),
            fields.ratelimits.map(Some),
            fields.credits.map(Some),
        )?;
        let org_id = parse_org_id(&org_id)?;
        if let Some(orgs) = fields.limited_to_orgs {
            let same = orgs.as_array().is_some_and(|orgs| {
                orgs.len() == 1
                    && orgs[0].as_str().is_some_and(|org| parse_org_id(org).is_ok_and(|o| o == org_id))
            });
            if !same {
                return Err(ApiError::invalid_body(
                    "limited_to_orgs must be [org_id] or left out: a key's organization is the one org_id names",
                ));
            }
        }
        let limits = KeyLimits {
            enabled: limits.enabled.unwrap_or(true),
            ratelimits: limits.ratelimits.unwrap_or_default(),
            credits: limits.credits.flatten(),
        };
        Ok(Self { org_id, mode, name, limited_to_apps, expires_at, limits })
    }
}

#[utoipa::path(
    post,
    path = "/apikey",
    tag = "apikey",
    params(CreateQuery),
    request_body(content = CreateFields, description = "JSON body, or the same fields as query parameters"),
    responses(
        (status = 200, description = "The new key, with its full secret: shown this once", body = OneKey),
        ReadErrors,
        WriteErrors,
    ),
)]
pub async fn create(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    Params(query): Params<CreateQuery>,
    body: RawBody,
) -> ApiResult<Json<OneKey>> {
    caller.require_key_management()?;
    // A key with limits or app limits would mint children free of them.
    if !caller.principal.may_mint() {
        return Err(rules::Refusal::RestrainedKey.into());
    }
    let now = Utc::now();
    let fields = body.json::<CreateFields>()?.unwrap_or_default().merge(query);
    let request = CreateKey::parse(fields, now)?;
    let scope = Scope { org: Some(request.org_id), apps: request.limited_to_apps };
    let (secret, material) = new_key_material()?;
    let new = NewApiKey {
        material,
        mode: request.mode,
        name: request.name,
        user_id: caller.user_id(),
        org_id: scope.org,
        limited_to_apps: scope.apps,
        expires_at: request.expires_at,
        created_by_key_id: Some(caller.principal.key_id),
        limits: request.limits,
    };
    // The store decides, in the insert's transaction, over the calling key,
    // its role there and the organization's policy as they stand then
    // (`key_writes::may_create_key`): 404 outside the caller's view, 400
    // against the policy, 403 beyond what the calling key may grant.
    let key = store.insert_key(new, &caller.actor()).await?;
    tracing::info!(key_id = key.id, org_id = %request.org_id, mode = key.mode.as_str(), "api key created");
    Ok(Json(OneKey { apikey: ApiKeyView::revealed(key, &secret, &admission.quotas) }))
}
