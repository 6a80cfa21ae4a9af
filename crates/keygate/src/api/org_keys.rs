//! What an organization's admins see and stop of every key that can act in
//! it: the keys scoped to it, and its members' unscoped keys (issued by the
//! command line), all masked.
//!
//! A scoped key is stopped like any key, by disabling or deleting it
//! (`PUT`/`DELETE /apikey/:id`). A member's unscoped key also acts in the
//! member's other organizations, which are not this admin's to change: it
//! is **blocked** here instead, and in this organization alone its owner's
//! role then reads as no membership (404 everywhere, `FORBIDDEN` from
//! `/verify`), at once. Only a key whose owner the admin outranks is
//! blocked, and only from above its owner is a block lifted
//! ([`keygate_core::rules::may_block`], [`keygate_core::rules::may_unblock`],
//! decided by the store over what it reads in the write's own transaction).
//! Blocks are audited (`apikey.block`, `apikey.unblock`).

use crate::admission::Admission;
use axum::Json;
use axum::extract::State;
use keygate_core::authz::{Action, Target};
use keygate_store::Store;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};

use super::apikey::ApiKeyView;
use super::{Data, ReadErrors, SUCCESS, Success, WriteErrors};
use crate::admission::caller::Caller;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Params, RawBody, require_org_id};

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyInOrgView {
    #[serde(flatten)]
    apikey: ApiKeyView,
    /// Blocked from acting in this organization (an unscoped key only).
    blocked: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BlockKey {
    #[schema(required = true, schema_with = super::schema::uuid)]
    org_id: Option<String>,
    /// The id of a member's unscoped key.
    #[serde(default, deserialize_with = "crate::http::extract::whole")]
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 9_007_199_254_740_991_i64)]
    key_id: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockQuery {
    org_id: Option<String>,
    key_id: Option<String>,
}

impl IntoParams for BlockQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        use super::schema::{integer, query, uuid};
        vec![
            query("org_id", true, uuid(), "The organization"),
            query("key_id", true, integer(1, crate::http::extract::MAX_SAFE_INTEGER), "The key"),
        ]
    }
}

#[utoipa::path(
    get,
    path = "/organization/keys",
    tag = "organization",
    params(super::organization::OrgQuery),
    responses(
        (status = 200, description = "Every key that can act in the organization, masked, oldest first (needs A)", body = Data<KeyInOrgView>),
        ReadErrors,
    ),
)]
pub async fn list(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    Params(query): Params<super::organization::OrgQuery>,
) -> ApiResult<Json<Data<KeyInOrgView>>> {
    let org_id = require_org_id(query.org_id())?;
    caller.require(&admission, Target::org(org_id), Action::Administer, ApiError::org_not_found).await?;
    let keys = store.keys_acting_in(org_id).await?;
    let data = keys
        .into_iter()
        .map(|k| KeyInOrgView { apikey: ApiKeyView::masked(k.key, &admission.quotas), blocked: k.blocked })
        .collect();
    Ok(Json(Data { data }))
}

#[utoipa::path(
    post,
    path = "/organization/keys/block",
    tag = "organization",
    request_body = BlockKey,
    responses(
        (status = 200, description = "The member's unscoped key no longer acts in the organization (needs A)", body = Success),
        ReadErrors,
        WriteErrors,
    ),
)]
pub async fn block(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    body: RawBody,
) -> ApiResult<Json<Success>> {
    let request = body.json::<BlockKey>()?.ok_or_else(ApiError::org_id_required)?;
    let org_id = require_org_id(request.org_id.as_deref())?;
    caller.require(&admission, Target::org(org_id), Action::Administer, ApiError::org_not_found).await?;
    let key_id =
        request.key_id.ok_or_else(|| ApiError::bad_request("key_id_required", "key_id is required"))?;
    store.block_key(org_id, key_id, &caller.actor()).await?;
    tracing::info!(%org_id, key_id, "key blocked in the organization");
    Ok(Json(SUCCESS))
}

#[utoipa::path(
    delete,
    path = "/organization/keys/block",
    tag = "organization",
    params(BlockQuery),
    responses(
        (status = 200, description = "The key acts in the organization again, as its owner's role allows (needs A)", body = Success),
        ReadErrors,
    ),
)]
pub async fn unblock(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    Params(query): Params<BlockQuery>,
) -> ApiResult<Json<Success>> {
    let org_id = require_org_id(query.org_id.as_deref())?;
    caller.require(&admission, Target::org(org_id), Action::Administer, ApiError::org_not_found).await?;
    let key_id = crate::http::extract::int_in_range(
        query.key_id.as_deref(),
        "key_id",
        1..=crate::http::extract::MAX_SAFE_INTEGER,
        "invalid_key_id",
    )?
    .ok_or_else(|| ApiError::bad_request("key_id_required", "key_id is required"))?;
    if !store.unblock_key(org_id, key_id, &caller.actor()).await? {
        return Err(ApiError::api_key_not_found());
    }
    tracing::info!(%org_id, key_id, "key unblocked in the organization");
    Ok(Json(SUCCESS))
}
