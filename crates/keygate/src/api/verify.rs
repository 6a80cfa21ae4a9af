//! `POST /verify`: other services ask whether a key may do something.
//!
//! Enabled only when `serve` was given verifier tokens; the calling service
//! presents one as `authorization: Bearer <token>`, compared in constant
//! time. The answer is the same decision every keygate endpoint makes:
//! mode ∩ the owner's current role ∩ the key's scope.

use std::net::IpAddr;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use keygate_core::authz::{Action, Target};
use keygate_core::{AppId, Mode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ErrorBody;
use crate::AppState;
use crate::auth::{ClientAddress, KeyLookup, look_up, principal, strip_bearer};
use crate::error::{ApiError, ApiResult};
use crate::extract::{RawBody, parse_org_id};

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
/// configured one without an early exit. Wrong tokens count as failed
/// authentications of the caller's address, like wrong keys.
fn check_token(state: &AppState, headers: &HeaderMap, address: Option<IpAddr>) -> ApiResult<()> {
    if state.verifier_tokens.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "verify_disabled",
            "POST /verify is not enabled on this server: start `keygate serve` with --verifier-token",
        ));
    }
    if let Some(wait) = address.and_then(|a| state.failed_auth.blocked_for(a, Instant::now())) {
        return Err(ApiError::rate_limited(wait));
    }
    let presented =
        headers.get("authorization").and_then(|v| v.to_str().ok()).map(strip_bearer).unwrap_or_default();
    if state.verifier_tokens.iter().fold(false, |found, token| found | token.matches(presented)) {
        return Ok(());
    }
    if let Some(address) = address {
        state.failed_auth.record_failure(address, Instant::now());
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_verifier_token",
        "POST /verify needs `authorization: Bearer <verifier token>`, as given to `keygate serve`",
    ))
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
    headers: HeaderMap,
    body: RawBody,
) -> ApiResult<Json<Verdict>> {
    check_token(&state, &headers, address)?;
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
    let verdict = |valid, code, key: Option<&keygate_store::ApiKeyRecord>| Verdict {
        valid,
        code,
        key: key.map(|k| VerifiedKey {
            id: k.id,
            user_id: k.user_id,
            org_id: k.org_id,
            mode: k.mode,
            limited_to_apps: k.limited_to_apps.clone(),
        }),
    };
    let key = match look_up(&state, &raw).await? {
        KeyLookup::Live(key, _) => key,
        KeyLookup::Expired(key) => return Ok(Json(verdict(false, "EXPIRED", Some(&key)))),
        KeyLookup::Unknown => return Ok(Json(verdict(false, "NOT_FOUND", None))),
    };
    let now = chrono::Utc::now();
    let principal = principal(key.clone());

    let app = match &app_id {
        Some(app_id) => match state.store.app(app_id).await? {
            Some(app) => Some(app),
            None => {
                state.usage.record_denied(key.id, now);
                return Ok(Json(verdict(false, "FORBIDDEN", Some(&key))));
            }
        },
        None => None,
    };
    // An organization id that is not a UUID names none: nothing to act on.
    let Ok(named_org) = org_id else {
        state.usage.record_denied(key.id, now);
        return Ok(Json(verdict(false, "FORBIDDEN", Some(&key))));
    };
    let target_org = named_org.or(app.as_ref().map(|a| a.org_id)).or(key.org_id);
    let allowed = match target_org {
        Some(org) if app.as_ref().is_some_and(|a| a.org_id != org) => false,
        Some(org) => {
            let role = state.store.role(org, key.user_id).await?;
            let target = Target { org, app: app.as_ref().map(|a| &a.app_id) };
            principal.decide(role, target, action).is_allowed()
        }
        // An unscoped key, and nothing named: only its mode can be judged.
        None => principal.mode.actions().contains(action),
    };
    if !allowed {
        state.usage.record_denied(key.id, now);
        return Ok(Json(verdict(false, "FORBIDDEN", Some(&key))));
    }
    Ok(Json(verdict(true, "VALID", Some(&key))))
}
