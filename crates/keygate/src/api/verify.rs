//! `POST /verify`: other services ask whether a key may do something.
//!
//! Enabled only when `serve` was given verifier tokens; the calling service
//! presents one as `authorization: Bearer <token>`, compared in constant
//! time. The answer is the same decision every keygate endpoint makes:
//! mode ∩ the owner's current role ∩ the key's scope.

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keygate_core::authz::Action;
use keygate_core::rules::{self, VerifyTarget};
use keygate_core::{AppId, Mode};
use keygate_store::ApiKeyRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{ClientAddress, Credential, guarded, strip_bearer};
use crate::authenticator::KeyLookup;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Authorization, RawBody, parse_org_id};
use crate::usage::DeniedKey;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    /// The key a client presented to the calling service.
    key: Option<String>,
    /// read, write, upload, admin or own; read by default.
    action: Option<String>,
    /// The organization acted on; by default the app's, or the key's own.
    org_id: Option<String>,
    /// The app acted on, if any.
    app_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifiedKey {
    id: i64,
    user_id: Uuid,
    org_id: Option<Uuid>,
    #[schema(value_type = String, example = "upload")]
    mode: Mode,
    #[schema(value_type = Vec<String>)]
    limited_to_apps: Vec<AppId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Verdict {
    valid: bool,
    /// VALID, NOT_FOUND, EXPIRED, FORBIDDEN or RATE_LIMITED.
    code: &'static str,
    /// Present when the key was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<VerifiedKey>,
}

fn parse_action(raw: Option<&str>) -> ApiResult<Action> {
    match raw.unwrap_or("read") {
        "read" => Ok(Action::Read),
        "write" => Ok(Action::Write),
        "upload" => Ok(Action::Upload),
        "admin" => Ok(Action::Administer),
        "own" => Ok(Action::Own),
        _ => Err(ApiError::bad_request(
            "invalid_action",
            "action must be one of: read, write, upload, admin, own",
        )),
    }
}

/// The token the calling service presents, checked against every
/// configured one without an early exit, inside the failed-authentication
/// guard like every credential.
async fn check_token(
    state: &AppState,
    authorization: Option<&HeaderValue>,
    address: Option<IpAddr>,
) -> ApiResult<()> {
    if state.verifier_tokens.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "verify_disabled",
            "POST /verify is not enabled on this server: start `keygate serve` with --verifier-token",
        ));
    }
    let presented = authorization.and_then(|v| v.to_str().ok()).map(strip_bearer).unwrap_or_default();
    let matched = state.verifier_tokens.iter().fold(false, |found, token| found | token.matches(presented));
    guarded(state, address, async {
        Ok(if matched {
            Credential::Accepted(())
        } else {
            Credential::Refused(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_verifier_token",
                "POST /verify needs `authorization: Bearer <verifier token>`, as given to `keygate serve`",
            ))
        })
    })
    .await
}

/// A verdict, counted in `keygate_verifications_total`.
fn verdict(valid: bool, code: &'static str, key: Option<&ApiKeyRecord>) -> Verdict {
    if let Some(metrics) = crate::metrics::get() {
        metrics.verification(code);
    }
    Verdict {
        valid,
        code,
        key: key.map(|k| VerifiedKey {
            id: k.id,
            user_id: k.user_id,
            org_id: k.org_id,
            mode: k.mode,
            limited_to_apps: k.limited_to_apps.clone(),
        }),
    }
}

/// `FORBIDDEN` for a live key, counted as a denial of that key.
fn forbidden(key: &ApiKeyRecord) -> Response {
    let mut response = Json(verdict(false, "FORBIDDEN", Some(key))).into_response();
    response.extensions_mut().insert(DeniedKey(key.id));
    response
}

#[utoipa::path(
    post,
    path = "/verify",
    tag = "apikey",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "The verdict", body = Verdict),
        (status = 400, description = "Bad input: the text says which field", body = ErrorBody),
        (status = 401, description = "Missing or wrong verifier token", body = ErrorBody),
        (status = 404, description = "No verifier token was configured", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
    ),
    security(("verifier_token" = []))
)]
pub async fn verify(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    Authorization(authorization): Authorization,
    body: RawBody,
) -> ApiResult<Response> {
    let result = decide(state, address, authorization, body).await;
    if let (Err(error), Some(metrics)) = (&result, crate::metrics::get()) {
        metrics.verification(error.code);
    }
    result
}

/// The verdict (each counted by [`verdict`]), or why the call was refused.
async fn decide(
    state: AppState,
    address: Option<IpAddr>,
    authorization: Option<HeaderValue>,
    body: RawBody,
) -> ApiResult<Response> {
    check_token(&state, authorization.as_ref(), address).await?;
    let request = body
        .json::<VerifyRequest>()?
        .ok_or_else(|| ApiError::bad_request("key_required", "key is required"))?;
    let raw = request.key.ok_or_else(|| ApiError::bad_request("key_required", "key is required"))?;
    let action = parse_action(request.action.as_deref())?;
    let org_id = request.org_id.as_deref().map(parse_org_id).transpose();
    let app_id = request
        .app_id
        .as_deref()
        .map(|a| AppId::parse(a).map_err(|e| ApiError::bad_request("invalid_app_id", e.to_string())))
        .transpose()?;
    let live = match state.authenticator.look_up(&raw).await? {
        KeyLookup::Live(live) => live,
        KeyLookup::Expired(expired) => {
            return Ok(Json(verdict(false, "EXPIRED", Some(&expired.key))).into_response());
        }
        KeyLookup::Unknown => return Ok(Json(verdict(false, "NOT_FOUND", None)).into_response()),
    };
    let key = &live.key;
    // An organization id that is not a UUID, or an app that does not exist,
    // names nothing the key could act on.
    let Ok(org) = org_id else {
        return Ok(forbidden(key));
    };
    let app = match &app_id {
        Some(app_id) => match state.store.app(app_id).await? {
            Some(app) => Some(app),
            None => return Ok(forbidden(key)),
        },
        None => None,
    };
    let target = VerifyTarget { org, app: app.as_ref().map(|a| (a.org_id, &a.app_id)) };
    let role = match target.org(&live.principal) {
        Ok(Some(org)) if live.principal.scope.org == Some(org) => live.own_role,
        Ok(Some(org)) => state.store.role(org, key.user_id).await?,
        _ => None,
    };
    if !rules::verify(&live.principal, target, role, action) {
        return Ok(forbidden(key));
    }
    Ok(Json(verdict(true, "VALID", Some(key))).into_response())
}
