//! Invitations: how an organization's admin brings a teammate in, over the
//! API, without the server's command line.
//!
//! - `POST /organization/invites` (A) issues a code, shown this once and
//!   kept only as its SHA-256, to someone who is not a member, for a role
//!   strictly below the inviter's own ([`keygate_core::rules::may_invite`]). It expires
//!   after `expires_in_days` (1–30, default 7).
//! - `GET` lists the pending ones (never a code); `DELETE` withdraws one
//!   (its issuer, or an admin above the role it offers).
//! - `POST /invites/redeem` takes the code, single use, and stands only
//!   while its inviter could still issue it ([`keygate_core::rules::may_redeem`]):
//!   - for an address no account has, it needs no key: it makes the
//!     account, its membership and its first key (organization-scoped, mode
//!     `all`: the role caps what it does), shown once;
//!   - for an existing account, it is accepted only with one of that
//!     account's own keys of mode `all`, and makes no key: the account
//!     joins with the invitation's role.
//!
//!   An unknown, used, withdrawn, expired or void code is 404; each counts
//!   as a failed authentication of the address, like a wrong key.
//!
//! Every change is audited: `invite.create`, `invite.revoke`,
//! `invite.redeem` (with the client's address), then a new account's
//! `apikey.create`. Each decision is the store's, over what it reads in the
//! write's own transaction.

use crate::admission::Admission;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use keygate_core::Role;
use keygate_core::authz::{Action, Target};
use keygate_core::rules::Refusal;
use keygate_store::Store;
use keygate_store::{Invite, NewInvite, PresentedKey, Redeemer, StoreError};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::sync::Arc;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{ReadErrors, SUCCESS, Success, Timestamp, WriteErrors};
use crate::admission::caller::{Caller, OptionalCaller};
use crate::admission::verification::{Credential, guarded};
use crate::api::Data;
use crate::api::apikey::new_key_material;
use crate::http::client_address::ClientAddress;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Params, RawBody, SmallBody, require_org_id, required};
use keygate_core::bounds;
use keygate_core::key::INVITATION_CODE_PREFIX;

/// How long an invitation lasts unless told otherwise, and at most.
pub const MAX_DAYS: i64 = *bounds::INVITATION_DAYS.end();

#[derive(Debug, Serialize, ToSchema)]
pub struct InviteView {
    id: i64,
    /// The code to redeem; only in the answer that creates it.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    email: String,
    #[schema(value_type = String, example = "write")]
    role: Role,
    org_id: Uuid,
    #[schema(value_type = String, format = DateTime)]
    expires_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
}

impl InviteView {
    fn new(invite: Invite, code: Option<String>) -> Self {
        Self {
            id: invite.id,
            code,
            email: invite.email,
            role: invite.role,
            org_id: invite.org_id,
            expires_at: Timestamp(invite.expires_at),
            created_at: Timestamp(invite.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OneInvite {
    invite: InviteView,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateInvite {
    #[schema(required = true, schema_with = super::schema::uuid)]
    org_id: Option<String>,
    /// Who is invited (not a member yet); the code is theirs to redeem.
    #[schema(required = true, schema_with = super::schema::email)]
    email: Option<String>,
    /// Strictly below the inviter's own.
    #[schema(required = true, schema_with = super::schema::role)]
    role: Option<String>,
    /// Days until the code expires: 1–30, 7 by default.
    #[serde(default, deserialize_with = "crate::http::extract::whole")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 30)]
    expires_in_days: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RedeemInvite {
    /// The code the invitation gave.
    #[schema(required = true, nullable = false, example = "kgi_…")]
    code: Option<String>,
}

/// What redeeming gives: the member, and for a new account its first key,
/// shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedeemedView {
    user_id: Uuid,
    org_id: Uuid,
    #[schema(value_type = String, example = "write")]
    role: Role,
    /// A new account's first key; absent when an existing account joined.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<i64>,
    /// The full key, shown this once; absent when an existing account joined.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteQuery {
    org_id: Option<String>,
    id: Option<String>,
}

impl IntoParams for InviteQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        use super::schema::{integer, query, uuid};
        vec![
            query("org_id", true, uuid(), "The organization"),
            query("id", true, integer(1, crate::http::extract::MAX_SAFE_INTEGER), "The invitation"),
        ]
    }
}

/// A fresh code and its digest.
fn new_code() -> ApiResult<(String, [u8; 32])> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| {
        tracing::error!(%error, "the operating system's random generator failed");
        ApiError::internal()
    })?;
    let code = format!("{INVITATION_CODE_PREFIX}{}", hex::encode(bytes));
    let digest = digest(&code);
    Ok((code, digest))
}

fn digest(code: &str) -> [u8; 32] {
    sha2::Sha256::digest(code.as_bytes()).into()
}

fn invite_not_found() -> ApiError {
    ApiError::not_found("invite_not_found", "Invitation")
}

#[utoipa::path(
    post,
    path = "/organization/invites",
    tag = "organization",
    request_body = CreateInvite,
    responses(
        (status = 200, description = "The invitation with its code, shown this once (needs A)", body = OneInvite),
        ReadErrors,
        WriteErrors,
    ),
)]
pub async fn create(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    body: RawBody,
) -> ApiResult<Json<OneInvite>> {
    let request = body.json::<CreateInvite>()?.ok_or_else(ApiError::org_id_required)?;
    let org_id = require_org_id(request.org_id.as_deref())?;
    caller.require(&admission, Target::org(org_id), Action::Administer, ApiError::org_not_found).await?;
    // An invitation is a credential the calling key makes: a key with
    // limits or app limits makes none, as it mints no keys.
    if !caller.principal.may_mint() {
        return Err(Refusal::RestrainedKey.into());
    }
    let (email, role) = super::organization::parse_member(request.email.as_deref(), request.role.as_deref())?;
    let days = match request.expires_in_days.map(|days| bounds::within(days, &bounds::INVITATION_DAYS)) {
        None => bounds::INVITATION_DEFAULT_DAYS,
        Some(Some(days)) => days,
        Some(None) => {
            return Err(ApiError::bad_request(
                "invalid_expires_in_days",
                format!("expires_in_days must be a whole number of days from 1 to {MAX_DAYS}"),
            ));
        }
    };
    let (code, digest) = new_code()?;
    let expires_at: DateTime<Utc> = keygate_store::truncate(Utc::now() + chrono::Duration::days(days));
    let new = NewInvite { org_id, email, role, digest, expires_at };
    let invite = store.create_invite(new, &caller.actor()).await?;
    tracing::info!(%org_id, invite_id = invite.id, role = role.as_str(), "invitation created");
    Ok(Json(OneInvite { invite: InviteView::new(invite, Some(code)) }))
}

#[utoipa::path(
    get,
    path = "/organization/invites",
    tag = "organization",
    params(super::organization::OrgQuery),
    responses(
        (status = 200, description = "Invitations neither redeemed nor expired, newest first; never a code (needs A)", body = Data<InviteView>),
        ReadErrors,
    ),
)]
pub async fn list(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    Params(query): Params<super::organization::OrgQuery>,
) -> ApiResult<Json<Data<InviteView>>> {
    let org_id = require_org_id(query.org_id())?;
    caller.require(&admission, Target::org(org_id), Action::Administer, ApiError::org_not_found).await?;
    let invites = store.pending_invites(org_id, Utc::now()).await?;
    Ok(Json(Data { data: invites.into_iter().map(|invite| InviteView::new(invite, None)).collect() }))
}

#[utoipa::path(
    delete,
    path = "/organization/invites",
    tag = "organization",
    params(InviteQuery),
    responses(
        (status = 200, description = "Withdrawn: the code no longer redeems (needs A)", body = Success),
        ReadErrors,
    ),
)]
pub async fn revoke(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    Params(query): Params<InviteQuery>,
) -> ApiResult<Json<Success>> {
    let org_id = require_org_id(query.org_id.as_deref())?;
    caller.require(&admission, Target::org(org_id), Action::Administer, ApiError::org_not_found).await?;
    let id = crate::http::extract::int_in_range(
        query.id.as_deref(),
        "id",
        1..=crate::http::extract::MAX_SAFE_INTEGER,
        "invalid_invite_id",
    )?
    .ok_or_else(|| ApiError::bad_request("invite_id_required", "id is required"))?;
    if !store.revoke_invite(org_id, id, &caller.actor()).await? {
        return Err(invite_not_found());
    }
    tracing::info!(%org_id, invite_id = id, "invitation withdrawn");
    Ok(Json(SUCCESS))
}

#[utoipa::path(
    post,
    path = "/invites/redeem",
    tag = "organization",
    request_body = RedeemInvite,
    responses(
        (status = 200, description = "You are a member; a new account's first key, shown this once", body = RedeemedView),
        (status = 400, description = "Bad input: the text says which field", body = crate::http::error::ErrorBody),
        (status = 401, description = "The invitation is for an existing account: send one of its keys of mode all; or the key sent is not valid", body = crate::http::error::ErrorBody),
        (status = 403, description = "The invitation is addressed to another account", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such invitation, or used, withdrawn, expired or void", body = crate::http::error::ErrorBody),
        (status = 409, description = "Already a member", body = crate::http::error::ErrorBody),
        (status = 413, description = "The body is too large", body = crate::http::error::ErrorBody),
        (status = 429, description = "Too many failed attempts from this address", body = crate::http::error::ErrorBody),
        (status = 503, description = "The database is unavailable: retry", body = crate::http::error::ErrorBody),
    ),
    security((), ("api_key" = []))
)]
pub async fn redeem(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    ClientAddress(address): ClientAddress,
    OptionalCaller(caller): OptionalCaller,
    body: SmallBody,
) -> ApiResult<Json<RedeemedView>> {
    let request = body
        .json::<RedeemInvite>()?
        .ok_or_else(|| ApiError::bad_request("code_required", "Send {\"code\": …}"))?;
    let code = required(request.code.as_deref())
        .ok_or_else(|| ApiError::bad_request("code_required", "code is required"))?
        .trim()
        .to_owned();
    let presented = caller.map(|caller| PresentedKey {
        user_id: caller.user_id(),
        key_id: caller.principal.key_id,
        mode: caller.principal.mode,
        free: caller.principal.may_mint(),
        digest: caller.digest(),
    });
    let (secret, first_key) = new_key_material()?;
    let redeemer = Redeemer { presented, first_key, ip: address };
    let redeemed = guarded(&admission, address, async {
        match store.redeem_invite(&digest(&code), Utc::now(), redeemer).await {
            Ok(Some(redeemed)) => Ok(Credential::Accepted(redeemed)),
            Ok(None) | Err(StoreError::Refused(Refusal::InvitationVoid)) => {
                Ok(Credential::Refused(invite_not_found()))
            }
            Err(error) => Err(error.into()),
        }
    })
    .await?;
    tracing::info!(org_id = %redeemed.org_id, invite_id = redeemed.invite_id, user_id = %redeemed.user_id, role = redeemed.role.as_str(), new_account = redeemed.key.is_some(), "invitation redeemed");
    Ok(Json(RedeemedView {
        user_id: redeemed.user_id,
        org_id: redeemed.org_id,
        role: redeemed.role,
        key_id: redeemed.key.as_ref().map(|key| key.id),
        key: redeemed.key.map(|_| secret.expose().to_owned()),
    }))
}
