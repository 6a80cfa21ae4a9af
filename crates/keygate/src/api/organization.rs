//! `/organization` and `/organization/members`: the organizations a key
//! sees, their settings, and who belongs to them.
//!
//! Reading needs R, changing settings and members and reading the audit
//! log A, deleting O, decided by [`Caller::require`]. Creating an
//! organization is [`rules::may_create_organization`]; membership changes
//! are checked by the store, under the organization's lock, with
//! [`rules::may_change_membership`] and [`rules::keeps_a_super_admin`].

use crate::admission::Admission;
use crate::state::blobs::BlobStore;
use axum::Json;
use axum::extract::State;
use keygate_core::authz::{Action, Target};
use keygate_core::rules;
use keygate_core::{Email, OrgName, Role};
use keygate_store::Store;
use keygate_store::{Member, OrgChanges, Organization};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Data, ReadErrors, SUCCESS, Success, Timestamp, WriteErrors};
use crate::admission::caller::Caller;
use crate::api::apikey::limit_fields::{LimitChanges, RateLimitInput, RateLimitView};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Params, RawBody, int_in_range, present, present_whole, require_org_id, required};

#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationView {
    id: Uuid,
    name: String,
    /// The caller's role.
    #[schema(value_type = String, example = "super_admin")]
    role: Role,
    require_apikey_expiration: bool,
    max_apikey_expiration_days: Option<i32>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
    /// The shared rate limit named `default`, if any.
    ratelimit: Option<RateLimitView>,
    /// Rate limits every key scoped to the organization shares: one
    /// customer cannot escape them by minting more keys.
    ratelimits: Vec<RateLimitView>,
}

impl OrganizationView {
    fn new(org: Organization, role: Role) -> Self {
        let limits = &org.ratelimits.0;
        Self {
            ratelimit: limits
                .iter()
                .find(|l| l.name == keygate_core::limits::DEFAULT_NAME)
                .map(RateLimitView::from),
            ratelimits: limits.iter().map(RateLimitView::from).collect(),
            id: org.id,
            name: org.name,
            role,
            require_apikey_expiration: org.require_apikey_expiration,
            max_apikey_expiration_days: org.max_apikey_expiration_days,
            created_at: Timestamp(org.created_at),
            updated_at: Timestamp(org.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OneOrganization {
    organization: OrganizationView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    user_id: Uuid,
    email: String,
    #[schema(value_type = String, example = "write")]
    role: Role,
}

impl From<Member> for MemberView {
    fn from(m: Member) -> Self {
        Self { user_id: m.user_id, email: m.email, role: m.role }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OneMember {
    member: MemberView,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgQuery {
    org_id: Option<String>,
}

impl OrgQuery {
    pub(crate) fn org_id(&self) -> Option<&str> {
        self.org_id.as_deref()
    }
}

impl IntoParams for OrgQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![super::schema::query("org_id", true, super::schema::uuid(), "The organization")]
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberQuery {
    org_id: Option<String>,
    user_id: Option<String>,
}

impl IntoParams for MemberQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        use super::schema::{query, uuid};
        vec![query("org_id", true, uuid(), "The organization"), query("user_id", true, uuid(), "The member")]
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateOrganization {
    #[schema(required = true, schema_with = super::schema::name)]
    name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateOrganization {
    #[schema(required = true, schema_with = super::schema::uuid)]
    org_id: Option<String>,
    #[schema(schema_with = super::schema::optional_name)]
    name: Option<String>,
    require_apikey_expiration: Option<bool>,
    /// 1–365, or `null` to lift the limit.
    #[serde(default, deserialize_with = "present_whole")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 365)]
    max_apikey_expiration_days: Option<Option<i64>>,
    /// One rate limit, named `default`, shared by every key scoped to the
    /// organization; `null` removes the shared limits.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = true)]
    ratelimit: Option<Option<RateLimitInput>>,
    /// Every shared rate limit, replacing those there were; `null` or `[]`
    /// removes them.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = true, max_items = 5)]
    ratelimits: Option<Option<Vec<RateLimitInput>>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SetMember {
    #[schema(required = true, schema_with = super::schema::uuid)]
    org_id: Option<String>,
    #[schema(required = true, schema_with = super::schema::email)]
    email: Option<String>,
    #[schema(required = true, schema_with = super::schema::role)]
    role: Option<String>,
}

fn parse_org_name(raw: Option<&str>) -> ApiResult<OrgName> {
    let raw = raw.ok_or_else(|| ApiError::bad_request("name_required", "name is required"))?;
    OrgName::parse(raw).map_err(|e| ApiError::bad_request("invalid_name", e.to_string()))
}

/// A member as `POST /organization/members` and invitations name them: an
/// email and a role, each required.
pub(crate) fn parse_member(email: Option<&str>, role: Option<&str>) -> ApiResult<(Email, Role)> {
    let email =
        required(email).ok_or_else(|| ApiError::bad_request("email_required", "email is required"))?;
    let email = Email::parse(email).map_err(|e| ApiError::bad_request("invalid_email", e.to_string()))?;
    let role = role.and_then(Role::parse).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_role",
            "Invalid role specified. Must be one of: read, upload, write, admin, super_admin",
        )
    })?;
    Ok((email, role))
}

fn parse_max_days(days: i64) -> ApiResult<i32> {
    let range = &keygate_core::bounds::POLICY_MAX_DAYS;
    match keygate_core::bounds::within(days, range).and_then(|days| i32::try_from(days).ok()) {
        Some(days) => Ok(days),
        None => Err(ApiError::bad_request(
            "invalid_max_apikey_expiration_days",
            format!(
                "max_apikey_expiration_days must be a whole number of days from {} to {}, or null",
                range.start(),
                range.end()
            ),
        )),
    }
}

#[utoipa::path(
    get,
    path = "/organization",
    tag = "organization",
    responses(
        (status = 200, description = "The organizations the key sees, with the caller's role", body = Data<OrganizationView>),
        ReadErrors,
    ),
)]
pub async fn list(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
) -> ApiResult<Json<Data<OrganizationView>>> {
    let memberships = store.memberships(caller.user_id()).await?;
    let mut data = Vec::with_capacity(memberships.len());
    for m in memberships {
        // As the calling key acts there: within its scope, and not blocked.
        if caller.decide(&admission, Target::org(m.organization.id), Action::Read).await?.is_allowed() {
            data.push(OrganizationView::new(m.organization, m.role));
        }
    }
    Ok(Json(Data { data }))
}

#[utoipa::path(
    post,
    path = "/organization",
    tag = "organization",
    request_body = CreateOrganization,
    responses(
        (status = 200, description = "The new organization; the caller is its super_admin", body = OneOrganization),
        ReadErrors,
        WriteErrors,
    ),
)]
pub async fn create(
    State(store): State<Arc<dyn Store>>,
    caller: Caller,
    body: RawBody,
) -> ApiResult<Json<OneOrganization>> {
    if !rules::may_create_organization(&caller.principal) {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "insufficient_permissions",
            "Creating an organization needs an unscoped API key of mode all (as `keygate bootstrap` issues)",
        ));
    }
    let request =
        body.json::<CreateOrganization>()?.ok_or_else(|| ApiError::invalid_body("Send {\"name\": …}"))?;
    let name = parse_org_name(request.name.as_deref())?;
    let org = store.create_organization(&name, caller.user_id(), &caller.actor()).await?;
    tracing::info!(org_id = %org.id, "organization created");
    Ok(Json(OneOrganization { organization: OrganizationView::new(org, rules::CREATOR_ROLE) }))
}

#[utoipa::path(
    put,
    path = "/organization",
    tag = "organization",
    request_body = UpdateOrganization,
    responses(
        (status = 200, description = "The changed organization (needs A)", body = OneOrganization),
        ReadErrors,
        WriteErrors,
    ),
)]
pub async fn update(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    body: RawBody,
) -> ApiResult<Json<OneOrganization>> {
    let request = body.json::<UpdateOrganization>()?.ok_or_else(ApiError::org_id_required)?;
    let org_id = require_org_id(request.org_id.as_deref())?;
    let role =
        caller.require(&admission, Target::org(org_id), Action::Administer, ApiError::org_not_found).await?;
    let changes = OrgChanges {
        name: request.name.as_deref().map(|n| parse_org_name(Some(n))).transpose()?,
        require_apikey_expiration: request.require_apikey_expiration,
        max_apikey_expiration_days: request
            .max_apikey_expiration_days
            .map(|d| d.map(parse_max_days).transpose())
            .transpose()?,
        ratelimits: LimitChanges::parse(None, request.ratelimit, request.ratelimits, None)?.ratelimits,
    };
    // They bind every key there, its owners' too.
    if changes.ratelimits.is_some() {
        rules::may_change_shared_limits(role)?;
    }
    let org = store
        .update_organization(org_id, changes, &caller.actor())
        .await?
        .ok_or_else(ApiError::org_not_found)?;
    Ok(Json(OneOrganization { organization: OrganizationView::new(org, role) }))
}

#[utoipa::path(
    delete,
    path = "/organization",
    tag = "organization",
    params(OrgQuery),
    responses(
        (status = 200, description = "Deleted with its apps, bundles, memberships and scoped keys (needs O)", body = Success),
        ReadErrors,
    ),
)]
pub async fn delete(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    State(blobs): State<BlobStore>,
    caller: Caller,
    Params(query): Params<OrgQuery>,
) -> ApiResult<Json<Success>> {
    let org_id = require_org_id(query.org_id.as_deref())?;
    caller.require(&admission, Target::org(org_id), Action::Own, ApiError::org_not_found).await?;
    let actor = caller.actor();
    // The rows, then the bytes, even if the client leaves meanwhile.
    let deleted = crate::state::blobs::to_completion(async move {
        let removed = store.delete_organization(org_id, &actor).await?;
        if let Some(removed) = &removed {
            blobs.remove(removed).await;
        }
        Ok::<_, keygate_store::StoreError>(removed)
    });
    let blobs = deleted.await?.ok_or_else(ApiError::org_not_found)?;
    tracing::info!(%org_id, bundles = blobs.len(), "organization deleted");
    Ok(Json(SUCCESS))
}

#[utoipa::path(
    get,
    path = "/organization/members",
    tag = "organization",
    params(OrgQuery),
    responses(
        (status = 200, description = "The members (needs R)", body = Data<MemberView>),
        ReadErrors,
    ),
)]
pub async fn members(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    Params(query): Params<OrgQuery>,
) -> ApiResult<Json<Data<MemberView>>> {
    let org_id = require_org_id(query.org_id.as_deref())?;
    caller.require(&admission, Target::org(org_id), Action::Read, ApiError::org_not_found).await?;
    let members = store.members(org_id).await?;
    Ok(Json(Data { data: members.into_iter().map(MemberView::from).collect() }))
}

#[utoipa::path(
    post,
    path = "/organization/members",
    tag = "organization",
    request_body = SetMember,
    responses(
        (status = 200, description = "Added, or role changed (needs A; never above the caller's role)", body = OneMember),
        ReadErrors,
        WriteErrors,
    ),
)]
pub async fn set_member(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    body: RawBody,
) -> ApiResult<Json<OneMember>> {
    let request = body.json::<SetMember>()?.ok_or_else(ApiError::org_id_required)?;
    let org_id = require_org_id(request.org_id.as_deref())?;
    caller.require(&admission, Target::org(org_id), Action::Administer, ApiError::org_not_found).await?;
    let (email, role) = parse_member(request.email.as_deref(), request.role.as_deref())?;
    let member = store.set_member(org_id, &email, role, &caller.actor()).await?;
    tracing::info!(%org_id, user_id = %member.user_id, role = role.as_str(), "membership set");
    Ok(Json(OneMember { member: member.into() }))
}

#[utoipa::path(
    delete,
    path = "/organization/members",
    tag = "organization",
    params(MemberQuery),
    responses(
        (status = 200, description = "Removed, with their keys scoped to the organization (needs A)", body = Success),
        ReadErrors,
        WriteErrors,
    ),
)]
pub async fn remove_member(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    Params(query): Params<MemberQuery>,
) -> ApiResult<Json<Success>> {
    let org_id = require_org_id(query.org_id.as_deref())?;
    caller.require(&admission, Target::org(org_id), Action::Administer, ApiError::org_not_found).await?;
    let user_id = required(query.user_id.as_deref())
        .ok_or_else(|| ApiError::bad_request("user_id_required", "user_id is required"))?;
    let user_id = Uuid::parse_str(user_id).map_err(|_| ApiError::member_not_found())?;
    if !store.remove_member(org_id, user_id, &caller.actor()).await? {
        return Err(ApiError::member_not_found());
    }
    tracing::info!(%org_id, %user_id, "member removed");
    Ok(Json(SUCCESS))
}

/// The most events one page of the audit log holds.
const MAX_AUDIT_PAGE: i64 = 200;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    org_id: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

impl IntoParams for AuditQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        use super::schema::{integer, query, uuid};
        vec![
            query("org_id", true, uuid(), "The organization"),
            query("limit", false, integer(1, MAX_AUDIT_PAGE), "Events per page: 1–200, default 50"),
            query(
                "before",
                false,
                integer(1, crate::http::extract::MAX_SAFE_INTEGER),
                "Only events older than this event id: the last `id` of the previous page",
            ),
        ]
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    id: i64,
    #[schema(value_type = String, format = DateTime)]
    at: Timestamp,
    #[schema(example = "apikey.create")]
    action: String,
    actor_user_id: Option<Uuid>,
    actor_key_id: Option<i64>,
    #[schema(example = "apikey")]
    target_type: String,
    target_id: String,
    ip: Option<String>,
}

impl From<keygate_store::AuditEvent> for AuditEventView {
    fn from(e: keygate_store::AuditEvent) -> Self {
        Self {
            id: e.id,
            at: Timestamp(e.at),
            action: e.action,
            actor_user_id: e.actor_user_id,
            actor_key_id: e.actor_key_id,
            target_type: e.target_type,
            target_id: e.target_id,
            ip: e.ip,
        }
    }
}

#[utoipa::path(
    get,
    path = "/organization/audit",
    tag = "organization",
    params(AuditQuery),
    responses(
        (status = 200, description = "The organization's audit log, newest first (needs A)", body = Data<AuditEventView>),
        ReadErrors,
    ),
)]
pub async fn audit_log(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    Params(query): Params<AuditQuery>,
) -> ApiResult<Json<Data<AuditEventView>>> {
    let org_id = require_org_id(query.org_id.as_deref())?;
    caller.require(&admission, Target::org(org_id), Action::Administer, ApiError::org_not_found).await?;
    let limit =
        int_in_range(query.limit.as_deref(), "limit", 1..=MAX_AUDIT_PAGE, "invalid_query")?.unwrap_or(50);
    let before = int_in_range(
        query.before.as_deref(),
        "before",
        1..=crate::http::extract::MAX_SAFE_INTEGER,
        "invalid_query",
    )?;
    let events = store.audit_events(org_id, before, limit).await?;
    Ok(Json(Data { data: events.into_iter().map(AuditEventView::from).collect() }))
}
