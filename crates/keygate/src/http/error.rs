//! One error type, one JSON shape: `{"error": text, "status": "KO", "code": code}`.
//!
//! Texts say what to fix; codes are stable snake_case. 5xx bodies never carry
//! internals: the cause goes to the log (which never holds a secret) and the
//! client gets a generic sentence.

use std::borrow::Cow;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keygate_core::Refusal;
use keygate_core::rules::PolicyViolation;
use keygate_store::{Entity, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

/// Every error: a human text that says what to fix, `status: "KO"`, and a
/// stable snake_case code.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    #[schema(example = "Invalid API key")]
    pub error: String,
    #[schema(example = "KO")]
    pub status: &'static str,
    #[schema(example = "invalid_api_key")]
    pub code: &'static str,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    /// Seconds, for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error answer. A message built at run time (which may quote what
    /// the client sent) has every quoted word shaped like a secret masked:
    /// an error never repeats a key or a code, even to its sender.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        let message = match message.into() {
            Cow::Owned(text) => Cow::Owned(crate::http::redact::redact_quoted(&text)),
            fixed => fixed,
        };
        Self { status, code, message, retry_after: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn missing_api_key() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "missing_api_key", "Missing API key")
    }

    pub fn ambiguous_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "ambiguous_credentials",
            "More than one API key was sent (authorization, x-api-key, capgkey): send exactly one",
        )
    }

    pub fn invalid_api_key() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_api_key", "Invalid API key")
    }

    pub fn api_key_expired() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "api_key_expired", "API key expired")
    }

    pub fn api_key_disabled() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "api_key_disabled",
            "API key disabled: an administrator of its organization can enable it again",
        )
    }

    /// 429: the key's rate limit `limit` allows no more requests in its
    /// current window.
    pub fn key_rate_limited(limit: &keygate_core::limits::LimitReport, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "Rate limit `{}` {} reached: {} requests per {} ms; retry in {retry_after} seconds",
                    limit.name,
                    if limit.shared { "that this organization's keys share" } else { "of this API key" },
                    limit.limit,
                    limit.duration_ms
                ),
            )
        }
    }

    /// 429: the key's credits cannot cover the request.
    pub fn usage_exceeded(remaining: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "usage_exceeded",
            format!(
                "This API key's credits are used up ({remaining} left); wait for their refill or ask an \
                 administrator for more"
            ),
        )
    }

    pub fn insufficient_permissions() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_permissions",
            "Insufficient permissions to manage API keys",
        )
    }

    pub fn api_key_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "api_key_not_found", "API key not found")
    }

    /// 403 for a resource the caller sees but may not act on.
    pub fn forbidden(action: keygate_core::Action) -> Self {
        let right = action.as_str();
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_permissions",
            format!(
                "Insufficient permissions: this needs the `{right}` right, which the API key's mode, \
                 its app scope or your role in the organization does not grant"
            ),
        )
    }

    pub fn not_found(code: &'static str, what: &'static str) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, format!("{what} not found"))
    }

    pub fn app_not_found() -> Self {
        Self::not_found("app_not_found", "App")
    }

    pub fn bundle_not_found() -> Self {
        Self::not_found("bundle_not_found", "Bundle")
    }

    pub fn member_not_found() -> Self {
        Self::not_found("member_not_found", "Member")
    }

    pub fn conflict(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn org_id_required() -> Self {
        Self::bad_request("org_id_required", "org_id is required")
    }

    pub fn org_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "org_not_found", "Organization not found")
    }

    pub fn invalid_mode() -> Self {
        Self::bad_request("invalid_mode", "Invalid mode specified. Must be one of: read, write, upload, all")
    }

    pub fn invalid_body(message: impl Into<Cow<'static, str>>) -> Self {
        Self::bad_request("invalid_body", message)
    }

    /// 413: `what` (the request body, a bundle) is over `limit` bytes.
    pub fn payload_too_large(what: &str, limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("{what} is larger than the limit of {limit} bytes"),
        )
    }

    /// 429: too many failed authentications from this address.
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        // Rounded up: retrying at the advertised time must find the block lifted.
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        Self {
            retry_after: Some(seconds),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("Too many failed authentications from this address; retry in {seconds} seconds"),
            )
        }
    }

    /// 503: the server holds as many request bodies as it allows at once.
    pub fn server_busy() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_busy",
                "The server is reading as many request bodies as it allows at once; retry in a second",
            )
        }
    }

    /// 503: the change's audit event could not be written, so the change
    /// was rolled back.
    pub fn audit_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "The audit log cannot be written, so the change was not made; retry shortly",
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "The database is unavailable; retry shortly",
        )
    }

    /// A bundle could not be stored: 507 when the disk is full, 503 for
    /// any other storage failure. Nothing of the upload is kept.
    pub fn blob_storage(error: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        if matches!(error.kind(), ErrorKind::StorageFull | ErrorKind::FileTooLarge | ErrorKind::QuotaExceeded)
        {
            Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                "The server's storage for bundles is full; nothing was stored",
            )
        } else {
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "The server cannot write bundles right now; nothing was stored, retry shortly",
            )
        }
    }

    /// An upload that would take its organization past `--max-org-storage`.
    pub fn storage_quota_exceeded(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "storage_quota_exceeded",
            format!(
                "This organization's bundles may take at most {limit} bytes in all; \
                 delete old bundles before uploading more. Nothing was stored"
            ),
        )
    }

    /// A listed bundle whose bytes cannot be read: the storage is missing or
    /// broken (a directory removed, a volume not mounted), which an
    /// operator fixes; the client may retry later.
    pub fn blob_unreadable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "The server cannot read this bundle's bytes right now; retry later",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error; the details are in the server's log",
        )
    }

    /// The generic error for a status produced outside our handlers (an
    /// unknown route, a wrong method, a framework rejection).
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::new(status, "not_found", "No such endpoint"),
            StatusCode::METHOD_NOT_ALLOWED => {
                Self::new(status, "method_not_allowed", "This endpoint does not accept that HTTP method")
            }
            StatusCode::PAYLOAD_TOO_LARGE => {
                Self::payload_too_large("The request body", crate::http::BODY_LIMIT as u64)
            }
            StatusCode::REQUEST_TIMEOUT => Self::new(
                status,
                "request_timeout",
                "The request took longer than the server allows (serve --request-timeout); nothing of it was done",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                status,
                "unsupported_media_type",
                "Send the request body as JSON (content-type: application/json)",
            ),
            s if s.is_server_error() => Self::internal(),
            s => Self::new(
                s,
                "bad_request",
                s.canonical_reason().unwrap_or("The request could not be processed").to_owned(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            // A message may echo what the client sent: never a key.
            error: keygate_core::key::redact(&self.message).into_owned(),
            status: "KO",
            code: self.code,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// The one mapping of a missing row to its contract error.
fn not_found(entity: Entity) -> ApiError {
    match entity {
        // A membership that is not there hides the organization (404, not 403).
        Entity::Organization | Entity::Membership => ApiError::org_not_found(),
        Entity::App => ApiError::app_not_found(),
        Entity::Bundle => ApiError::bundle_not_found(),
        Entity::ApiKey => ApiError::api_key_not_found(),
        Entity::User => ApiError::member_not_found(),
    }
}

fn conflict(entity: Entity) -> ApiError {
    match entity {
        Entity::App => ApiError::conflict("app_exists", "An app with that app_id already exists"),
        Entity::Bundle => ApiError::conflict("bundle_exists", "The app already has a bundle of that version"),
        other => ApiError::conflict("conflict", format!("That {other} already exists")),
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let forbidden =
            |message: &'static str| Self::new(StatusCode::FORBIDDEN, "insufficient_permissions", message);
        match refusal {
            Refusal::Invisible => Self::org_not_found(),
            Refusal::Forbidden => Self::insufficient_permissions(),
            Refusal::NotAnAdministrator => {
                forbidden("Insufficient permissions: this needs the `admin` right in the organization")
            }
            Refusal::RoleAboveOwn => {
                forbidden("Insufficient permissions: nobody grants a role above their own")
            }
            Refusal::Outranked => forbidden(
                "Insufficient permissions: that member's role is equal to or above yours; only a higher \
                 role changes them, their keys or their invitations",
            ),
            Refusal::NotTheOwner => {
                forbidden("Only the key's own user can rotate it; an admin can revoke it instead")
            }
            Refusal::ExpiryPolicy(violation) => violation.into(),
            Refusal::StorageQuota(limit) => Self::storage_quota_exceeded(limit),
            Refusal::LastSuperAdmin => Self::conflict(
                "last_super_admin",
                "An organization keeps at least one super_admin; promote another member first",
            ),
            Refusal::NotAMember => Self::new(
                StatusCode::NOT_FOUND,
                "member_not_found",
                "Member not found: only members' roles change here; bring someone new in with an \
                 invitation (POST /organization/invites)",
            ),
            Refusal::InviteAtOrAboveOwn => {
                forbidden("Insufficient permissions: an invitation offers only a role below your own")
            }
            Refusal::AlreadyMember => Self::conflict(
                "already_member",
                "Already a member of this organization: change their role with POST /organization/members",
            ),
            Refusal::InvitationVoid => Self::not_found("invite_not_found", "Invitation"),
            Refusal::InvitationNeedsOwnKey => Self::new(
                StatusCode::UNAUTHORIZED,
                "invitation_needs_key",
                "This invitation is for an existing account: redeem it with one of that account's own \
                 API keys of mode all (in the authorization header)",
            ),
            Refusal::ExistingAccount => Self::new(
                StatusCode::CONFLICT,
                "existing_account",
                "That email already has an account: it joins this organization by an invitation it accepts with \
                 its own key",
            ),
            Refusal::NotTheInvitee => Self::new(
                StatusCode::FORBIDDEN,
                "not_the_invitee",
                "This invitation is addressed to another account: redeem it as that account, or, for a \
                 new account, without an API key",
            ),
            Refusal::RestrainedKey => forbidden(
                "Insufficient permissions: a key with rate limits, credits or app limits creates no keys \
                 or invitations and changes or rotates no other key; use an unrestricted key of mode all",
            ),
            Refusal::OwnLimits => forbidden(
                "Insufficient permissions: a key cannot change its own enabled, ratelimit(s) or credits; \
                 an administrator changes them with another key",
            ),
            Refusal::LimitsNeedAdministrator => forbidden(
                "Changing a key's enabled, ratelimit(s) or credits needs the `admin` right in its organization",
            ),
            Refusal::UnscopedLimits => {
                forbidden("The limits of an unscoped key are set by an operator, not through the API")
            }
            Refusal::OwnKeyBlock => Self::bad_request(
                "cannot_block_own_key",
                "This is the key making the request: block it with another admin's key",
            ),
            Refusal::ScopedKeyBlock(key_id) => Self::bad_request(
                "key_is_scoped",
                format!(
                    "Key {key_id} is scoped to this organization: disable it (PUT /apikey/{key_id} \
                     {{\"enabled\": false}}) or delete it"
                ),
            ),
            Refusal::NotBlockable => Self::api_key_not_found(),
            Refusal::SharedLimitsNeedOwner => forbidden(
                "Insufficient permissions: the rate limits every key of the organization shares bind its \
                 owners too, and only a super_admin sets them",
            ),
            Refusal::KeyNotFound => Self::api_key_not_found(),
            Refusal::CallerRevoked => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "The calling API key was deleted, disabled or expired while this request ran: nothing changed",
            ),
        }
    }
}

impl From<PolicyViolation> for ApiError {
    fn from(violation: PolicyViolation) -> Self {
        match violation {
            PolicyViolation::ExpirationRequired => Self::bad_request(
                "expiration_required",
                "This organization requires API keys to expire: set expires_at",
            ),
            PolicyViolation::ExceedsMaxDays(days) => Self::bad_request(
                "expiration_exceeds_max",
                format!(
                    "This organization's API keys must expire within {days} days: set an earlier expires_at"
                ),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %error, "database unavailable");
                Self::unavailable()
            }
            StoreError::AuditUnavailable(_) => {
                tracing::error!(error = %error, "a change was refused: its audit event cannot be written");
                Self::audit_unavailable()
            }
            StoreError::NotFound(entity) => not_found(entity),
            StoreError::Conflict(entity) => conflict(entity),
            StoreError::Refused(refusal) => refusal.into(),
            StoreError::Corrupt(_) | StoreError::Database(_) | StoreError::Config(_) => {
                tracing::error!(error = %error, "storage failure");
                Self::internal()
            }
        }
    }
}
