//! `/auth` and `/auth/{*rest}`, any method: forward authentication, so that
//! a reverse proxy (nginx `auth_request`, Caddy `forward_auth`, Traefik
//! `ForwardAuth`, Envoy `ext_authz`) lets a request through to the API it
//! protects only with a key that may make it.
//!
//! What the request needs comes from [`crate::forward_auth`]; the decision
//! is the one `/verify` makes ([`super::verify::permits`]). The body is
//! never read. The answer:
//!
//! - **allow**: exactly 200 (Envoy denies any other 2xx), with the identity
//!   headers `X-Keygate-Key-Id`, `X-Keygate-User-Id`, `X-Keygate-Org-Id`
//!   (empty for an unscoped key) and `X-Keygate-Mode`, always present (empty
//!   on a public path) so that a proxy copying them overwrites whatever a
//!   client sent under those names;
//! - **deny**: 401 with `WWW-Authenticate` for a missing, unknown, expired or
//!   revoked key, 403 for a key that may not make the request, each with the
//!   contract's error body and `X-Keygate-Reason: <code>`; a disabled key
//!   401 `api_key_disabled`. A throttled address, and a key whose rate
//!   limit or credits refuse the request (`rate_limited`,
//!   `usage_exceeded`), get 403 (nginx turns anything but 401 and 403 into a
//!   500) or, with `--forward-auth-throttled-status 429`, 429. Never a
//!   redirect. Only an allowed request spends from the key's limits.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use keygate_core::AppId;

use crate::AppState;
use crate::auth::{ClientAddress, Credential, guarded, presented_key};
use crate::authenticator::{Authenticated, KeyLookup};
use crate::error::ApiError;
use crate::extract::parse_org_id;
use crate::forward_auth::Need;
use crate::usage::DeniedKey;

pub const KEY_ID: HeaderName = HeaderName::from_static("x-keygate-key-id");
pub const USER_ID: HeaderName = HeaderName::from_static("x-keygate-user-id");
pub const ORG_ID: HeaderName = HeaderName::from_static("x-keygate-org-id");
pub const MODE: HeaderName = HeaderName::from_static("x-keygate-mode");
pub const REASON: HeaderName = HeaderName::from_static("x-keygate-reason");

/// What `/auth` answers instead of 200: each an [`ErrorBody`](crate::error::ErrorBody).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "describes responses; never constructed")]
pub enum Refusals {
    /// No key, or one that is unknown, expired, revoked or disabled
    #[response(status = 401)]
    Unauthorized(crate::error::ErrorBody),
    /// The key may not make this request, or the address is throttled, or the key's rate limit or credits refuse it
    #[response(status = 403)]
    Forbidden(crate::error::ErrorBody),
    /// The address is throttled, or the key's limits refuse (with --forward-auth-throttled-status 429)
    #[response(status = 429)]
    Throttled(crate::error::ErrorBody),
    /// The database is unavailable and the key is not cached
    #[response(status = 503)]
    Unavailable(crate::error::ErrorBody),
}

#[utoipa::path(
    method(get, head, post, put, patch, delete, options, trace),
    path = "/auth",
    tag = "forward-auth",
    params(
        ("x-original-method" = Option<String>, Header, description = "The original method (nginx)"),
        ("x-original-uri" = Option<String>, Header, description = "The original path and query (nginx)"),
        ("x-forwarded-method" = Option<String>, Header, description = "The original method (Traefik, Caddy)"),
        ("x-forwarded-uri" = Option<String>, Header, description = "The original path and query (Traefik, Caddy)"),
    ),
    responses(
        (status = 200, description = "Let the request through", headers(
            ("x-keygate-key-id" = String, description = "The key's id; empty on a public path"),
            ("x-keygate-user-id" = String, description = "The key's owner"),
            ("x-keygate-org-id" = String, description = "The key's organization; empty for an unscoped key"),
            ("x-keygate-mode" = String, description = "read, write, upload or all"),
        )),
        Refusals,
    ),
)]
pub async fn auth(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    decide(&state, address, &method, "", uri.query(), &headers).await
}

/// Like `/auth`, for proxies (Envoy) that append the original path.
#[utoipa::path(
    method(get, head, post, put, patch, delete, options, trace),
    path = "/auth/{rest}",
    tag = "forward-auth",
    params(("rest" = String, Path, description = "The original path, after /auth (Envoy); any number of segments")),
    responses(
        (status = 200, description = "Let the request through, with the identity headers of `/auth`"),
        Refusals,
    ),
)]
pub async fn auth_path(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    Path(rest): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    decide(&state, address, &method, &rest, uri.query(), &headers).await
}

async fn decide(
    state: &AppState,
    address: Option<IpAddr>,
    method: &Method,
    rest: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    let (method, uri) = crate::forward_auth::original(method, rest, query, headers);
    let judged = state.forward_auth.judge(&method, &uri, headers);
    let action = match judged.need {
        Need::Public => return allow(None),
        Need::Key(action) => action,
    };
    let looked_up = guarded(state, address, async {
        let presented = presented_key(headers).ok_or_else(ApiError::missing_api_key)?;
        Ok(match state.authenticator.look_up(presented.unwrap_or_default()).await? {
            KeyLookup::Live(live) => Credential::Accepted(live),
            KeyLookup::Expired(_) => Credential::Refused(ApiError::api_key_expired()),
            KeyLookup::Unknown => Credential::Refused(ApiError::invalid_api_key()),
            KeyLookup::Disabled(_) => return Err(ApiError::api_key_disabled()),
        })
    })
    .await;
    let live = match looked_up {
        Ok(live) => live,
        Err(error) => return deny(state, error, None),
    };
    let org = judged.org_id.as_deref().map(|raw| parse_org_id(raw).ok());
    // An app id that is not one names nothing the key could act on.
    let app = match judged.app_id.as_deref().map(AppId::parse).transpose() {
        Ok(app) => app,
        Err(_) => return deny(state, ApiError::forbidden(action), Some(&live)),
    };
    match super::verify::permits(state, &live, org, app.as_ref(), action).await {
        Ok(true) => {}
        Ok(false) => return deny(state, ApiError::forbidden(action), Some(&live)),
        Err(error) => return deny(state, error, None),
    }
    // Permitted: the request spends what the key's limits allow.
    match crate::auth::spend(state, &live, 1, None).await {
        Ok(charge) => {
            if charge.credits() > 0 {
                state.usage.record_credits(live.key.id, chrono::Utc::now(), charge.credits());
            }
            allow(Some(&live))
        }
        Err(error) => deny(state, error, None),
    }
}

fn allow(live: Option<&Authenticated>) -> Response {
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    let value = |text: String| HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""));
    let empty = || HeaderValue::from_static("");
    match live {
        Some(live) => {
            let key = &live.key;
            headers.insert(KEY_ID, HeaderValue::from(key.id));
            headers.insert(USER_ID, value(key.user_id.to_string()));
            headers.insert(ORG_ID, key.org_id.map_or_else(empty, |org| value(org.to_string())));
            headers.insert(MODE, HeaderValue::from_static(key.mode.as_str()));
        }
        None => {
            for name in [KEY_ID, USER_ID, ORG_ID, MODE] {
                headers.insert(name, empty());
            }
        }
    }
    response
}

/// A refusal in the contract's shape, with its code in `X-Keygate-Reason`;
/// a 403 for `live` counts as a denial of that key.
fn deny(state: &AppState, mut error: ApiError, live: Option<&Authenticated>) -> Response {
    if matches!(error.code, "rate_limited" | "usage_exceeded") {
        error.status = state.forward_auth_throttled;
    }
    let status = error.status;
    let reason = HeaderValue::from_static(error.code);
    let mut response = error.into_response();
    let headers = response.headers_mut();
    headers.insert(REASON, reason);
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            axum::http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"keygate\""),
        );
    }
    if let (StatusCode::FORBIDDEN, Some(live)) = (status, live) {
        response.extensions_mut().insert(DeniedKey(live.key.id));
    }
    response
}
