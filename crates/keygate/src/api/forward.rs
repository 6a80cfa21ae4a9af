//! `/auth` and `/auth/{*rest}`, any method: forward authentication, so that
//! a reverse proxy (nginx `auth_request`, Caddy `forward_auth`, Traefik
//! `ForwardAuth`, Envoy `ext_authz`) lets a request through to the API it
//! protects only with a key that may make it.
//!
//! What the request needs comes from [`crate::admission::forward_auth`], which reads
//! only what the proxy named by `--forward-auth-proxy` writes and refuses
//! what is missing, repeated, unreadable or ambiguous; without that flag
//! `/auth` is disabled (404 `forward_auth_disabled`). The decision is the
//! one `/verify` makes ([`permits`]), for every reading of
//! the request (its method and any method override). The body is never
//! read. The answer:
//!
//! - **allow**: exactly 200 (Envoy denies any other 2xx), with the identity
//!   headers `X-Keygate-Key-Id`, `X-Keygate-User-Id`, `X-Keygate-Org-Id`
//!   (empty for an unscoped key) and `X-Keygate-Mode`, always present (empty
//!   on a public path) so that a proxy copying them overwrites whatever a
//!   client sent under those names;
//! - **deny**: 401 with `WWW-Authenticate` for a missing, unknown, expired,
//!   revoked or disabled key, 403 for a key that may not make the request,
//!   400 for a forwarded request that is malformed or ambiguous (403 behind
//!   nginx, which turns any status but 401 and 403 into a 500), each with
//!   the contract's error body, `X-Keygate-Reason: <code>` and
//!   `X-Keygate-Error: <text>` (JSON-escaped, for a proxy that writes the
//!   body itself). A throttled address, and a key whose rate limit or
//!   credits refuse the request (`rate_limited`, `usage_exceeded`), get 403
//!   or, with `--forward-auth-throttled-status 429`, 429. Never a redirect.
//!   Only an allowed request spends from the key's limits.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use keygate_core::AppId;

use crate::admission::Admission;
use crate::admission::authenticated::Authenticated;
use crate::admission::forward_auth::{BadForward, Forwarding, Need};
use crate::admission::usage::DeniedKey;
use crate::admission::verification::{authenticate, permits, record_spent, spend};
use crate::http::client_address::ClientAddress;
use crate::http::error::ApiError;
use crate::http::extract::parse_org_id;

pub const KEY_ID: HeaderName = HeaderName::from_static("x-keygate-key-id");
pub const USER_ID: HeaderName = HeaderName::from_static("x-keygate-user-id");
pub const ORG_ID: HeaderName = HeaderName::from_static("x-keygate-org-id");
pub const MODE: HeaderName = HeaderName::from_static("x-keygate-mode");
pub const REASON: HeaderName = HeaderName::from_static("x-keygate-reason");
pub const ERROR: HeaderName = HeaderName::from_static("x-keygate-error");

/// What `/auth` answers instead of 200: each an [`ErrorBody`](crate::http::error::ErrorBody).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "describes responses; never constructed")]
pub enum Refusals {
    /// No key, or one that is unknown, expired, revoked or disabled
    #[response(status = 401)]
    Unauthorized(crate::http::error::ErrorBody),
    /// The forwarded request is malformed or ambiguous
    #[response(status = 400)]
    BadRequest(crate::http::error::ErrorBody),
    /// The key may not make this request, or the address is throttled, or the key's rate limit or credits refuse it; behind nginx, also a malformed or ambiguous forwarded request
    #[response(status = 403)]
    Forbidden(crate::http::error::ErrorBody),
    /// The address is throttled, or the key's limits refuse (with --forward-auth-throttled-status 429)
    #[response(status = 429)]
    Throttled(crate::http::error::ErrorBody),
    /// Forward authentication is not enabled (start `keygate serve` with --forward-auth-proxy)
    #[response(status = 404)]
    Disabled(crate::http::error::ErrorBody),
    /// The database is unavailable and the key is not cached
    #[response(status = 503)]
    Unavailable(crate::http::error::ErrorBody),
}

#[utoipa::path(
    method(get, head, post, put, patch, delete, options, trace),
    path = "/auth",
    tag = "forward-auth",
    params(
        ("x-original-method" = Option<String>, Header, description = "The original method (--forward-auth-proxy nginx)"),
        ("x-original-uri" = Option<String>, Header, description = "The original path and query (--forward-auth-proxy nginx)"),
        ("x-forwarded-method" = Option<String>, Header, description = "The original method (--forward-auth-proxy caddy or traefik)"),
        ("x-forwarded-uri" = Option<String>, Header, description = "The original path and query (--forward-auth-proxy caddy or traefik)"),
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
    State(admission): State<Admission>,
    State(forwarding): State<Forwarding>,
    ClientAddress(address): ClientAddress,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    decide(&admission, &forwarding, address, &method, &uri, &headers).await
}

/// Like `/auth`, for proxies (Envoy) that append the original path.
#[utoipa::path(
    method(get, head, post, put, patch, delete, options, trace),
    path = "/auth/{rest}",
    tag = "forward-auth",
    params(("rest" = String, Path, description = "The original path, after /auth (--forward-auth-proxy envoy); any number of segments")),
    responses(
        (status = 200, description = "Let the request through, with the identity headers of `/auth`"),
        Refusals,
    ),
)]
pub async fn auth_path(
    State(admission): State<Admission>,
    State(forwarding): State<Forwarding>,
    ClientAddress(address): ClientAddress,
    method: Method,
    uri: Uri,
    sent: Option<axum::Extension<crate::http::SentTarget>>,
    headers: HeaderMap,
) -> Response {
    // The path as Envoy sent it, trailing slashes and all.
    let uri = sent.map_or(uri, |axum::Extension(sent)| sent.0);
    decide(&admission, &forwarding, address, &method, &uri, &headers).await
}

async fn decide(
    admission: &Admission,
    forwarding: &Forwarding,
    address: Option<IpAddr>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let Some(forward_auth) = &forwarding.judge else {
        return deny(forwarding, disabled(), None);
    };
    let judged = match forward_auth.judge(method, uri, headers) {
        Ok(judged) => judged,
        Err(bad) => {
            return deny(forwarding, bad_forward(bad, forward_auth.proxy().bad_request_status()), None);
        }
    };
    if judged.iter().all(|judged| judged.need == Need::Public) {
        return allow(None);
    }
    let live = match authenticate(admission, address, headers).await {
        Ok(live) => live,
        Err(error) => return deny(forwarding, error, None),
    };
    for judged in &judged {
        let Need::Key(action) = judged.need else { continue };
        let org = judged.org_id.as_deref().map(|raw| parse_org_id(raw).ok());
        // An app id that is not one names nothing the key could act on.
        let app = match judged.app_id.as_deref().map(AppId::parse).transpose() {
            Ok(app) => app,
            Err(_) => return deny(forwarding, ApiError::forbidden(action), Some(&live)),
        };
        match permits(admission, &live, org, app.as_ref(), action).await {
            Ok(true) => {}
            Ok(false) => return deny(forwarding, ApiError::forbidden(action), Some(&live)),
            Err(error) => return deny(forwarding, error, None),
        }
    }
    // Permitted: the request spends what the key's limits allow.
    match spend(admission, &live, 1, None).await {
        Ok(charge) => {
            record_spent(admission, &live, &charge);
            allow(Some(&live))
        }
        Err(error) => deny(forwarding, error, None),
    }
}

fn disabled() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "forward_auth_disabled",
        "Forward authentication is not enabled on this server: start `keygate serve` with \
         --forward-auth-proxy nginx|caddy|traefik|envoy, naming the proxy in front",
    )
}

fn bad_forward(bad: BadForward, status: StatusCode) -> ApiError {
    ApiError::new(status, bad.code, bad.message)
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
fn deny(forwarding: &Forwarding, mut error: ApiError, live: Option<&Authenticated>) -> Response {
    if matches!(error.code, "rate_limited" | "usage_exceeded") {
        error.status = forwarding.throttled;
    }
    let status = error.status;
    let reason = HeaderValue::from_static(error.code);
    let text = HeaderValue::from_str(&json_escaped(&keygate_core::key::redact(&error.message)))
        .unwrap_or_else(|_| HeaderValue::from_static(""));
    let mut response = error.into_response();
    let headers = response.headers_mut();
    headers.insert(REASON, reason);
    headers.insert(ERROR, text);
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

/// `text` as the inside of a JSON string, in visible ASCII only: what a
/// proxy writing the error body itself (nginx) puts between quotes.
fn json_escaped(text: &str) -> String {
    use std::fmt::Write as _;
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            ' '..='~' => escaped.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(escaped, "\\u{unit:04x}");
                }
            }
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_texts_travel_as_visible_ascii_json() {
        let escaped = super::json_escaped("a \"b\" \\ é … ok");
        assert_eq!(escaped, "a \\\"b\\\" \\\\ \\u00e9 \\u2026 ok");
        let parsed: String = serde_json::from_str(&format!("\"{escaped}\"")).expect("JSON string");
        assert_eq!(parsed, "a \"b\" \\ é … ok");
    }
}
