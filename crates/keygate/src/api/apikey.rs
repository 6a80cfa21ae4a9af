//! `/apikey`: list, read, create, change, rotate and delete API keys, read
//! their usage, and revoke a leaked one.
//!
//! Every request but `POST /apikey/revoke` (which needs no key at all) needs
//! a key of mode `all`. A caller sees its own keys inside its scope and, as
//! an admin of an organization, every key scoped to it; any other key
//! answers 404, never 403, so that ids cannot be probed.
//! Nobody creates or changes a key into more than the caller has
//! ([`Principal::may_grant`]), and an organization's expiry policy binds
//! every key scoped to it.
//!
//! [`Principal::may_grant`]: keygate_core::authz::Principal::may_grant

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use keygate_core::authz::{Action, Decision, Grant, Target};
use keygate_core::{ApiKeySecret, AppId, KeyName, Mode, Role, Scope};
use keygate_store::{ApiKeyRecord, KeyChanges, KeyMaterial, NewApiKey, Organization, StoreError};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Data, ReadErrors, SUCCESS, Success, Timestamp, WriteErrors};
use crate::AppState;
use crate::audit;
use crate::auth::{Caller, ClientAddress, scope_of};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Params, RawBody, int_in_range, parse_org_id, present, required};

/// At most this many apps in `limited_to_apps`.
const MAX_APPS: usize = 100;

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
}

impl ApiKeyView {
    pub fn masked(key: ApiKeyRecord) -> Self {
        Self {
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

    pub fn revealed(key: ApiKeyRecord, secret: &ApiKeySecret) -> Self {
        Self { key: secret.expose().to_owned(), ..Self::masked(key) }
    }
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct OneKey {
    apikey: ApiKeyView,
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

// ---- requests, parsed at the edge -----------------------------------------

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

fn parse_mode(value: Option<&Value>) -> ApiResult<Mode> {
    match value {
        Some(Value::String(s)) => Mode::parse(s).ok_or_else(ApiError::invalid_mode),
        _ => Err(ApiError::invalid_mode()),
    }
}

fn parse_name(raw: &str) -> ApiResult<KeyName> {
    KeyName::parse(raw).map_err(|e| ApiError::bad_request("invalid_name", e.to_string()))
}

fn parse_apps(raw: &[String]) -> ApiResult<Vec<AppId>> {
    if raw.len() > MAX_APPS {
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

fn parse_expiry(raw: &str, now: DateTime<Utc>) -> ApiResult<DateTime<Utc>> {
    let at = DateTime::parse_from_rfc3339(raw.trim())
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_expires_at",
                "expires_at must be an RFC 3339 timestamp such as 2030-01-01T00:00:00Z",
            )
        })?
        .with_timezone(&Utc);
    if at <= now {
        return Err(ApiError::bad_request("invalid_expires_at", "expires_at must be in the future"));
    }
    Ok(keygate_store::truncate(at))
}

/// The fields of `POST /apikey`, from a JSON body or the query string.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateFields {
    /// Required.
    org_id: Option<String>,
    /// Required: read, write, upload or all.
    #[schema(value_type = Option<String>, example = "read")]
    mode: Option<Value>,
    name: Option<String>,
    limited_to_apps: Option<Vec<String>>,
    expires_at: Option<String>,
    /// Capgo clients may send it; the scope comes from `org_id`.
    #[serde(rename = "limited_to_orgs")]
    #[schema(ignore)]
    _limited_to_orgs: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CreateQuery {
    org_id: Option<String>,
    mode: Option<String>,
    name: Option<String>,
    /// Comma-separated.
    limited_to_apps: Option<String>,
    expires_at: Option<String>,
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
            _limited_to_orgs: None,
        }
    }
}

struct CreateKey {
    org_id: Uuid,
    mode: Mode,
    name: KeyName,
    limited_to_apps: Vec<AppId>,
    expires_at: Option<DateTime<Utc>>,
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
        let org_id = parse_org_id(&org_id)?;
        Ok(Self { org_id, mode, name, limited_to_apps, expires_at })
    }
}

/// The fields of `PUT /apikey/:id`. The read-only fields of the ApiKey
/// object are accepted and ignored, so a client may send back what it read.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateFields {
    name: Option<String>,
    #[schema(value_type = Option<String>, example = "write")]
    mode: Option<Value>,
    limited_to_apps: Option<Vec<String>>,
    /// RFC 3339; `null` removes the expiry.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
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
    org_id: Option<String>,
}

// ---- rules --------------------------------------------------------------------

/// An organization's expiry policy, for a key scoped to it.
fn check_policy(org: &Organization, expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> ApiResult<()> {
    if org.require_apikey_expiration && expires_at.is_none() {
        return Err(ApiError::bad_request(
            "expiration_required",
            "This organization requires API keys to expire: set expires_at",
        ));
    }
    if let Some(days) = org.max_apikey_expiration_days {
        let limit = now + chrono::Duration::days(i64::from(days));
        if expires_at.is_none_or(|at| at > limit) {
            return Err(ApiError::bad_request(
                "expiration_exceeds_max",
                format!(
                    "This organization's API keys must expire within {days} days: set an earlier expires_at"
                ),
            ));
        }
    }
    Ok(())
}

/// The organization a key management request concerns, with the caller's
/// role: 404 when it is unknown, outside the calling key's scope, or the
/// caller is not a member (so a scoped key learns nothing of other orgs).
async fn member_org(state: &AppState, caller: &Caller, org_id: Uuid) -> ApiResult<(Organization, Role)> {
    if !caller.principal.scope.contains_org(org_id) {
        return Err(ApiError::org_not_found());
    }
    let org = state.store.organization(org_id).await?.ok_or_else(ApiError::org_not_found)?;
    let role = caller.role_in(state, org_id).await?.ok_or_else(ApiError::org_not_found)?;
    Ok((org, role))
}

/// A key the caller may see: its own inside its scope, or one scoped to an
/// organization the caller administers.
async fn is_visible(state: &AppState, caller: &Caller, key: &ApiKeyRecord) -> ApiResult<bool> {
    if key.user_id == caller.user_id() && caller.principal.scope.covers(&scope_of(key)) {
        return Ok(true);
    }
    match key.org_id {
        Some(org) => Ok(caller.decide(state, Target::org(org), Action::Administer).await? == Decision::Allow),
        None => Ok(false),
    }
}

async fn find_visible(state: &AppState, caller: &Caller, raw: &str) -> ApiResult<ApiKeyRecord> {
    let key = match KeyRef::parse(raw) {
        KeyRef::Id(id) => state.store.key_by_id(id).await?,
        KeyRef::Secret(secret) => state.store.key_by_digest(&secret.digest()).await?,
        KeyRef::Nothing => None,
    };
    match key {
        Some(key) if is_visible(state, caller, &key).await? => Ok(key),
        _ => Err(ApiError::api_key_not_found()),
    }
}

// ---- handlers -------------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/apikey",
    tag = "apikey",
    params(ListQuery),
    responses(
        (status = 200, description = "The caller's keys, secrets masked", body = Data<ApiKeyView>),
        ReadErrors,
    ),
    security(("api_key" = []))
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
            keys.retain(|key| caller.principal.scope.covers(&scope_of(key)));
            keys
        }
    };
    Ok(Json(Data { data: keys.into_iter().map(ApiKeyView::masked).collect() }))
}

#[utoipa::path(
    get,
    path = "/apikey/{id_or_key}",
    tag = "apikey",
    params(("id_or_key" = String, Path, description = "The key's numeric id, or the full key")),
    responses(
        (status = 200, description = "The key, secret masked", body = OneKey),
        ReadErrors,
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id_or_key): Path<String>,
) -> ApiResult<Json<OneKey>> {
    caller.require_key_management()?;
    let key = find_visible(&state, &caller, &id_or_key).await?;
    Ok(Json(OneKey { apikey: ApiKeyView::masked(key) }))
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
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Params(query): Params<CreateQuery>,
    body: RawBody,
) -> ApiResult<Json<OneKey>> {
    caller.require_key_management()?;
    let now = Utc::now();
    let fields = body.json::<CreateFields>()?.unwrap_or_default().merge(query);
    let request = CreateKey::parse(fields, now)?;
    let (org, _) = member_org(&state, &caller, request.org_id).await?;
    check_policy(&org, request.expires_at, now)?;
    let scope = Scope { org: Some(org.id), apps: request.limited_to_apps };
    let grant = Grant { mode: request.mode, scope: &scope, expires_at: request.expires_at };
    if !caller.principal.may_grant(&grant) {
        return Err(ApiError::insufficient_permissions());
    }
    let (secret, material) = new_key_material()?;
    let key = state
        .store
        .insert_key(NewApiKey {
            material,
            mode: request.mode,
            name: request.name,
            user_id: caller.user_id(),
            org_id: scope.org,
            limited_to_apps: scope.apps,
            expires_at: request.expires_at,
            created_by_key_id: Some(caller.principal.key_id),
        })
        .await
        .map_err(|e| match e {
            // The organization, or the caller's membership, went meanwhile.
            StoreError::NotFound(_) => ApiError::org_not_found(),
            e => e.into(),
        })?;
    tracing::info!(key_id = key.id, org_id = %org.id, mode = key.mode.as_str(), "api key created");
    audit::record(&state, org.id, &caller, "apikey.create", "apikey", key.id).await;
    Ok(Json(OneKey { apikey: ApiKeyView::revealed(key, &secret) }))
}

#[utoipa::path(
    put,
    path = "/apikey/{id_or_key}",
    tag = "apikey",
    params(("id_or_key" = String, Path, description = "The key's numeric id, or the full key")),
    request_body = UpdateFields,
    responses(
        (status = 200, description = "The changed key, secret masked", body = OneKey),
        ReadErrors,
        WriteErrors,
    ),
    security(("api_key" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id_or_key): Path<String>,
    body: RawBody,
) -> ApiResult<Json<OneKey>> {
    caller.require_key_management()?;
    let key = find_visible(&state, &caller, &id_or_key).await?;
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
        let (org, caller_role) = member_org(&state, &caller, org_id).await?;
        if changes.expires_at.is_some() {
            check_policy(&org, expires_at, now)?;
        }
        // An admin may change another member's key only if it does not
        // outrank them: what a key can do is its mode ∩ its owner's role.
        if key.user_id != caller.user_id() {
            let owner_role = state.store.role(org_id, key.user_id).await?;
            if owner_role.is_some_and(|owner| !caller_role.covers(owner)) {
                return Err(ApiError::insufficient_permissions());
            }
        }
    }
    let scope = Scope {
        org: key.org_id,
        apps: changes.limited_to_apps.clone().unwrap_or_else(|| key.limited_to_apps.clone()),
    };
    let grant = Grant { mode: changes.mode.unwrap_or(key.mode), scope: &scope, expires_at };
    if !caller.principal.may_grant(&grant) {
        return Err(ApiError::insufficient_permissions());
    }
    let updated = state.store.update_key(key.id, changes).await?.ok_or_else(ApiError::api_key_not_found)?;
    tracing::info!(key_id = updated.id, "api key updated");
    audit::record_key(&state, &updated, &caller, "apikey.update").await;
    Ok(Json(OneKey { apikey: ApiKeyView::masked(updated) }))
}

#[utoipa::path(
    delete,
    path = "/apikey/{id_or_key}",
    tag = "apikey",
    params(("id_or_key" = String, Path, description = "The key's numeric id, or the full key")),
    responses(
        (status = 200, description = "The key no longer works", body = Success),
        ReadErrors,
    ),
    security(("api_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id_or_key): Path<String>,
) -> ApiResult<Json<Success>> {
    caller.require_key_management()?;
    let key = find_visible(&state, &caller, &id_or_key).await?;
    if !state.store.delete_key(key.id).await? {
        return Err(ApiError::api_key_not_found());
    }
    tracing::info!(key_id = key.id, "api key deleted");
    audit::record_key(&state, &key, &caller, "apikey.delete").await;
    Ok(Json(SUCCESS))
}

/// The body of `POST /apikey/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeKey {
    /// The full key, as found.
    key: Option<String>,
}

/// Anyone who finds a leaked key can kill it: no authentication, and the
/// answer is the same whatever was sent and whether or not the key existed,
/// so it tells nothing. Only an unreachable database answers otherwise (503),
/// so that the reporter knows to try again.
#[utoipa::path(
    post,
    path = "/apikey/revoke",
    tag = "apikey",
    request_body = RevokeKey,
    responses(
        (status = 200, description = "The key, if it was one, no longer works", body = Success),
        (status = 503, description = "The database is unavailable: report again", body = super::ErrorBody),
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    body: RawBody,
) -> ApiResult<Json<Success>> {
    // Whatever was sent, the answer is the same; only a key can change anything.
    let presented = body.json::<RevokeKey>().ok().flatten().and_then(|r| r.key);
    let Some(secret) = presented.and_then(|raw| ApiKeySecret::parse(raw.trim()).ok()) else {
        return Ok(Json(SUCCESS));
    };
    if let Some(key) = state.store.delete_key_by_digest(&secret.digest()).await? {
        tracing::warn!(key_id = key.id, "an api key was revoked as leaked");
        let reporter = audit::Actor { user_id: None, key_id: None, ip: address };
        audit::record_key(&state, &key, reporter, "apikey.revoke").await;
    }
    Ok(Json(SUCCESS))
}

/// The longest rotation grace period: a week.
const MAX_GRACE_SECONDS: i64 = 604_800;

/// The body of `POST /apikey/:id/rotate`; it may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateKey {
    /// How long the old secret keeps working, 0–604800 seconds (default 0).
    grace_period_seconds: Option<i64>,
}

/// A new secret for the same key: same id, mode, scope and expiry. Only the
/// key's own user rotates it; during the grace period either secret works,
/// and deleting or reporting either one removes the key.
#[utoipa::path(
    post,
    path = "/apikey/{id_or_key}/rotate",
    tag = "apikey",
    params(("id_or_key" = String, Path, description = "The key's numeric id, or the full key")),
    request_body = RotateKey,
    responses(
        (status = 200, description = "The key with its new full secret: shown this once", body = OneKey),
        ReadErrors,
        WriteErrors,
    ),
    security(("api_key" = []))
)]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id_or_key): Path<String>,
    body: RawBody,
) -> ApiResult<Json<OneKey>> {
    caller.require_key_management()?;
    let key = find_visible(&state, &caller, &id_or_key).await?;
    if key.user_id != caller.user_id() {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "insufficient_permissions",
            "Only the key's own user can rotate it; an admin can revoke it instead",
        ));
    }
    // A new secret is a new credential: never one outliving the caller's own.
    let scope = scope_of(&key);
    if !caller.principal.may_grant(&Grant { mode: key.mode, scope: &scope, expires_at: key.expires_at }) {
        return Err(ApiError::insufficient_permissions());
    }
    let grace = body.json::<RotateKey>()?.unwrap_or_default().grace_period_seconds.unwrap_or(0);
    if !(0..=MAX_GRACE_SECONDS).contains(&grace) {
        return Err(ApiError::bad_request(
            "invalid_grace_period",
            format!("grace_period_seconds must be from 0 to {MAX_GRACE_SECONDS} (a week)"),
        ));
    }
    let grace_until = (grace > 0).then(|| keygate_store::now() + chrono::Duration::seconds(grace));
    let (secret, material) = new_key_material()?;
    let Some(rotated) = state.store.rotate_key(key.id, &key.digest, material, grace_until).await? else {
        return Err(match state.store.key_by_id(key.id).await? {
            Some(_) => ApiError::conflict(
                "rotation_conflict",
                "The key changed while rotating it; read it again and retry",
            ),
            None => ApiError::api_key_not_found(),
        });
    };
    tracing::info!(key_id = rotated.id, grace_seconds = grace, "api key rotated");
    audit::record_key(&state, &rotated, &caller, "apikey.rotate").await;
    Ok(Json(OneKey { apikey: ApiKeyView::revealed(rotated, &secret) }))
}

/// The longest usage history one request returns.
const MAX_USAGE_DAYS: i64 = 90;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// How many days, today included: 1–90, default 30.
    days: Option<String>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct DayView {
    #[schema(value_type = String, format = Date, example = "2024-02-12")]
    date: chrono::NaiveDate,
    requests: i64,
    /// Requests authenticated with the key but refused (403).
    denied: i64,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct UsageView {
    /// One entry per day, oldest first, days without requests included.
    data: Vec<DayView>,
    #[schema(value_type = Option<String>, format = DateTime)]
    last_used_at: Option<Timestamp>,
}

#[utoipa::path(
    get,
    path = "/apikey/{id_or_key}/usage",
    tag = "apikey",
    params(("id_or_key" = String, Path, description = "The key's numeric id, or the full key"), UsageQuery),
    responses(
        (status = 200, description = "Requests per UTC day (may lag by a second)", body = UsageView),
        ReadErrors,
    ),
    security(("api_key" = []))
)]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(id_or_key): Path<String>,
    Params(query): Params<UsageQuery>,
) -> ApiResult<Json<UsageView>> {
    caller.require_key_management()?;
    let days = int_in_range(query.days.as_deref(), "days", 1..=MAX_USAGE_DAYS, "invalid_days")?.unwrap_or(30);
    let key = find_visible(&state, &caller, &id_or_key).await?;
    let today = Utc::now().date_naive();
    let first = today - chrono::Duration::days(days - 1);
    let recorded = state.store.key_usage(key.id, first).await?;
    let data = first
        .iter_days()
        .take_while(|d| *d <= today)
        .map(|date| {
            let found = recorded.iter().find(|u| u.date == date);
            DayView { date, requests: found.map_or(0, |u| u.requests), denied: found.map_or(0, |u| u.denied) }
        })
        .collect();
    Ok(Json(UsageView { data, last_used_at: key.last_used_at.map(Timestamp) }))
}
