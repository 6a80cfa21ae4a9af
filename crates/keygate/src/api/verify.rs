//! `POST /verify`: other services ask whether a key may do something.
//!
//! Enabled only when `serve` was given verifier tokens; the calling service
//! presents one as `authorization: Bearer <token>`, compared in constant
//! time. The answer is the same decision every keygate endpoint makes:
//! mode ∩ the owner's current role ∩ the key's scope, then the key's
//! limits ([`crate::admission::quota`]): a VALID verdict spends one from each rate
//! limit and `cost` credits; any other spends nothing.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keygate_core::authz::Action;
use keygate_core::{AppId, Mode};
use keygate_store::ApiKeyRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::admission::Admission;
use crate::admission::authenticated::Authenticated;
use crate::admission::authenticator::KeyLookup;
use crate::admission::quota::Outcome;
use crate::admission::usage::DeniedKey;
use crate::admission::verification::{Credential, charge, guarded, permits, record_spent, strip_bearer};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{RawBody, parse_org_id};
use crate::state::AppState;
use keygate_core::limits::LimitReport;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    /// The key a client presented to the calling service.
    key: Option<String>,
    /// read, write, upload, admin or own; read by default.
    #[schema(schema_with = action)]
    action: Option<String>,
    /// The organization acted on; by default the app's, or the key's own.
    /// One that names no organization makes the verdict FORBIDDEN.
    org_id: Option<String>,
    /// The app acted on, if any.
    #[schema(schema_with = crate::api::schema::optional_app_id)]
    app_id: Option<String>,
    /// The credits a valid verification spends, 1 by default (0 spends
    /// none); a refused one spends nothing.
    #[serde(default, deserialize_with = "crate::http::extract::whole")]
    #[schema(schema_with = cost)]
    cost: Option<i64>,
}

fn cost() -> utoipa::openapi::Object {
    crate::api::schema::optional_integer(0, keygate_core::limits::MAX_COST as i64)
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
    /// VALID, NOT_FOUND, EXPIRED, DISABLED, FORBIDDEN, RATE_LIMITED or USAGE_EXCEEDED.
    code: &'static str,
    /// Present when the key was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<VerifiedKey>,
    /// The key's tightest rate limit, when it has one and the verdict is
    /// VALID or RATE_LIMITED.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratelimit: Option<RateLimitState>,
    /// The key's credits, when they are limited and the verdict is VALID or
    /// USAGE_EXCEEDED.
    #[serde(skip_serializing_if = "Option::is_none")]
    credits: Option<CreditsState>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitState {
    limit: u64,
    /// Requests left in the current window.
    remaining: u64,
    /// When the window resets, in milliseconds since the Unix epoch.
    reset: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreditsState {
    /// After this verification.
    remaining: u64,
}

/// What a verdict adds about the key's limits.
#[derive(Debug, Default)]
struct Limits {
    ratelimit: Option<LimitReport>,
    credits: Option<u64>,
}

fn action() -> utoipa::openapi::Object {
    let mut values: Vec<serde_json::Value> = Action::ALL.map(|a| a.as_str().into()).into();
    values.push(serde_json::Value::Null);
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            utoipa::openapi::schema::Type::String,
            utoipa::openapi::schema::Type::Null,
        ]))
        .enum_values(Some(values))
        .build()
}

fn parse_action(raw: Option<&str>) -> ApiResult<Action> {
    Action::parse(raw.unwrap_or("read")).ok_or_else(|| {
        ApiError::bad_request("invalid_action", "action must be one of: read, write, upload, admin, own")
    })
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
    guarded(&state.admission, address, async {
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

/// A verdict, counted in `keygate_verifications_total`, as JSON: the shape
/// of [`Verdict`], written by hand around the key's description, which is
/// rendered once per cached key ([`Authenticated::described`]) rather than
/// on every call.
fn verdict(valid: bool, code: &'static str, key: Option<&Authenticated>) -> Response {
    verdict_with(valid, code, key, &Limits::default())
}

/// [`verdict`], with the key's limits.
fn verdict_with(valid: bool, code: &'static str, key: Option<&Authenticated>, limits: &Limits) -> Response {
    use std::io::Write as _;
    if let Some(metrics) = crate::telemetry::metrics::get() {
        metrics.verification(code);
    }
    let described = key.map(|k| k.described.get_or_init(|| describe(&k.key)));
    let mut body = Vec::with_capacity(128 + described.map_or(0, |d| d.len()));
    body.extend_from_slice(if valid {
        b"{\"valid\":true,\"code\":\""
    } else {
        b"{\"valid\":false,\"code\":\""
    });
    // A code is one of a few fixed upper-case words: nothing to escape.
    body.extend_from_slice(code.as_bytes());
    body.push(b'"');
    if let Some(described) = described {
        body.extend_from_slice(b",\"key\":");
        body.extend_from_slice(described);
    }
    // Numbers only: nothing to escape. Writing to a Vec cannot fail.
    if let Some(limit) = &limits.ratelimit {
        let _ = write!(
            body,
            ",\"ratelimit\":{{\"limit\":{},\"remaining\":{},\"reset\":{}}}",
            limit.limit, limit.remaining, limit.reset_ms
        );
    }
    if let Some(remaining) = limits.credits {
        let _ = write!(body, ",\"credits\":{{\"remaining\":{remaining}}}");
    }
    body.push(b'}');
    ([(CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// The key's part of a verdict, as JSON.
fn describe(key: &ApiKeyRecord) -> Bytes {
    let described = VerifiedKey {
        id: key.id,
        user_id: key.user_id,
        org_id: key.org_id,
        mode: key.mode,
        limited_to_apps: key.limited_to_apps.clone(),
    };
    serde_json::to_vec(&described).map(Bytes::from).unwrap_or_else(|_| Bytes::from_static(b"null"))
}

/// `FORBIDDEN` for a live key, counted as a denial of that key.
fn forbidden(key: &Authenticated) -> Response {
    let mut response = verdict(false, "FORBIDDEN", Some(key));
    response.extensions_mut().insert(DeniedKey(key.key.id));
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
        (status = 503, description = "The database is unavailable and the key is not cached: retry", body = ErrorBody),
    ),
    security(("verifier_token" = []))
)]
pub async fn verify(
    State(admission): State<Admission>,
    _service: VerifyingService,
    body: RawBody,
) -> ApiResult<Response> {
    let result = decide(&admission, body).await;
    if let Err(error) = &result {
        count_refusal(error);
    }
    result
}

fn count_refusal(error: &ApiError) {
    if let Some(metrics) = crate::telemetry::metrics::get() {
        metrics.verification(error.code);
    }
}

/// A service presenting a verifier token, checked before anything of the
/// request's body is read.
pub struct VerifyingService;

impl FromRequestParts<AppState> for VerifyingService {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let address = state.client_address(parts);
        check_token(state, parts.headers.get(AUTHORIZATION), address).await.inspect_err(count_refusal)?;
        Ok(Self)
    }
}

/// The verdict (each counted by [`verdict`]), or why the call was refused.
async fn decide(admission: &Admission, body: RawBody) -> ApiResult<Response> {
    let request = body
        .json::<VerifyRequest>()?
        .ok_or_else(|| ApiError::bad_request("key_required", "key is required"))?;
    let raw = request.key.ok_or_else(|| ApiError::bad_request("key_required", "key is required"))?;
    let action = parse_action(request.action.as_deref())?;
    let org_id = request.org_id.as_deref().map(|raw| parse_org_id(raw).ok());
    let app_id = request
        .app_id
        .as_deref()
        .map(|a| AppId::parse(a).map_err(|e| ApiError::bad_request("invalid_app_id", e.to_string())))
        .transpose()?;
    let cost = match request.cost {
        None => 1,
        Some(cost) => keygate_core::bounds::within(cost, &keygate_core::bounds::COST)
            .and_then(|cost| u64::try_from(cost).ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_cost",
                    format!("cost must be a whole number from 0 to {}", keygate_core::limits::MAX_COST),
                )
            })?,
    };
    let live = match admission.authenticator.look_up(&raw).await? {
        KeyLookup::Live(live) => live,
        KeyLookup::Expired(expired) => return Ok(verdict(false, "EXPIRED", Some(&expired))),
        KeyLookup::Disabled(disabled) => return Ok(verdict(false, "DISABLED", Some(&disabled))),
        KeyLookup::Unknown => return Ok(verdict(false, "NOT_FOUND", None)),
    };
    if !permits(admission, &live, org_id, app_id.as_ref(), action).await? {
        return Ok(forbidden(&live));
    }
    Ok(match charge(admission, &live, cost).await? {
        Outcome::Admitted(charge) => {
            record_spent(admission, &live, &charge);
            let limits = Limits { ratelimit: charge.ratelimit.clone(), credits: charge.credits_remaining };
            verdict_with(true, "VALID", Some(&live), &limits)
        }
        Outcome::RateLimited(limit) => verdict_with(
            false,
            "RATE_LIMITED",
            Some(&live),
            &Limits { ratelimit: Some(limit), credits: None },
        ),
        Outcome::UsageExceeded { remaining } => verdict_with(
            false,
            "USAGE_EXCEEDED",
            Some(&live),
            &Limits { ratelimit: None, credits: Some(remaining) },
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(response: Response) -> serde_json::Value {
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).expect("JSON")
    }

    /// The hand-written verdict is exactly what serde makes of [`Verdict`],
    /// the shape the OpenAPI document describes.
    #[tokio::test]
    async fn a_rendered_verdict_is_the_documented_shape() {
        let key = ApiKeyRecord {
            id: 7,
            digest: keygate_core::ApiKeySecret::generate().expect("random").digest(),
            preview: "ak_…".into(),
            mode: Mode::Upload,
            name: "ci \"deploy\"".into(),
            user_id: Uuid::now_v7(),
            org_id: Some(Uuid::now_v7()),
            limited_to_apps: vec![AppId::parse("com.example.app").expect("app id")],
            expires_at: None,
            last_used_at: None,
            created_by_key_id: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            enabled: true,
            ratelimits: Vec::new(),
            credits: None,
        };
        let authenticated = Authenticated::new(key.clone(), None);
        let limit = LimitReport {
            name: "default".into(),
            limit: 100,
            remaining: 42,
            duration_ms: 60_000,
            reset_ms: 1_790_000_000_000,
            reset_seconds: 17,
            shared: false,
        };
        let none = || Limits::default();
        for (valid, code, with_key, limits) in [
            (true, "VALID", true, none()),
            (true, "VALID", true, Limits { ratelimit: Some(limit.clone()), credits: Some(7) }),
            (false, "RATE_LIMITED", true, Limits { ratelimit: Some(limit.clone()), credits: None }),
            (false, "USAGE_EXCEEDED", true, Limits { ratelimit: None, credits: Some(0) }),
            (false, "DISABLED", true, none()),
            (false, "FORBIDDEN", true, none()),
            (false, "EXPIRED", true, none()),
            (false, "NOT_FOUND", false, none()),
        ] {
            let expected = Verdict {
                valid,
                code,
                key: with_key.then(|| VerifiedKey {
                    id: key.id,
                    user_id: key.user_id,
                    org_id: key.org_id,
                    mode: key.mode,
                    limited_to_apps: key.limited_to_apps.clone(),
                }),
                ratelimit: limits.ratelimit.as_ref().map(|l| RateLimitState {
                    limit: l.limit,
                    remaining: l.remaining,
                    reset: l.reset_ms,
                }),
                credits: limits.credits.map(|remaining| CreditsState { remaining }),
            };
            let rendered = verdict_with(valid, code, with_key.then_some(&authenticated), &limits);
            assert_eq!(rendered.headers()[CONTENT_TYPE], "application/json");
            assert_eq!(body(rendered).await, serde_json::to_value(&expected).expect("serialize"), "{code}");
        }
    }
}
