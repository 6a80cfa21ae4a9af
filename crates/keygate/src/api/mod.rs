//! HTTP handlers, one module per resource, the JSON views they answer with,
//! and the OpenAPI document that describes them.

pub mod apikey;
pub mod app;
pub mod bundle;
pub mod console;
pub mod forward;
pub mod health;
pub mod invites;
pub mod org_keys;
pub mod organization;
pub mod schema;
pub mod verify;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

pub use crate::http::error::ErrorBody;

/// An RFC 3339 UTC timestamp such as `2024-02-12T00:00:00Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub DateTime<Utc>);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Self(at)
    }
}

/// `{"data": [...]}`, the shape of every list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Data<T> {
    pub data: Vec<T>,
}

/// `{"success": true}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Success {
    pub success: bool,
}

pub const SUCCESS: Success = Success { success: true };

/// The errors of a request that reads: each an [`ErrorBody`].
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "describes responses; never constructed")]
pub enum ReadErrors {
    /// Bad input: the text says which field
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Missing, invalid or expired API key
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Visible, but the key's mode, its app scope or the member's role forbids it
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Unknown, or outside the key's scope
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The database, or the audit log a change must be written to, is unavailable: nothing changed; retry
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// What a request that writes may answer besides [`ReadErrors`]; such a
/// path lists both.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "describes responses; never constructed")]
pub enum WriteErrors {
    /// Already exists, or would leave the organization without a super_admin
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body is over the size limit
    #[response(status = 413)]
    TooLarge(ErrorBody),
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keygate",
        description = "A self-hostable API key service implementing the Capgo /apikey API. \
                       Send the key as `authorization: <key>`, `authorization: Bearer <key>`, \
                       `x-api-key: <key>` or `capgkey: <key>`. Every error is an ErrorBody."
    ),
    modifiers(&KeySecurity),
    // Routed by hand (any method, and a catch-all path): see `crate::server::router`.
    paths(forward::auth, forward::auth_path),
    // Every route needs an API key unless its own path says otherwise.
    security(("api_key" = [])),
    components(schemas(ErrorBody)),
    tags(
        (name = "apikey", description = "API keys: list, create, change, revoke"),
        (name = "organization", description = "Organizations and their members"),
        (name = "app", description = "Apps of an organization"),
        (name = "bundle", description = "Uploaded bundles of an app"),
        (name = "forward-auth", description = "Forward authentication for reverse proxies"),
        (name = "meta", description = "Health and this document"),
    )
)]
pub struct ApiDoc;

struct KeySecurity;

impl Modify for KeySecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "verifier_token",
            SecurityScheme::Http(utoipa::openapi::security::Http::new(
                utoipa::openapi::security::HttpAuthScheme::Bearer,
            )),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(utoipa::openapi::security::Http::new(
                utoipa::openapi::security::HttpAuthScheme::Bearer,
            )),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "authorization",
                "An API key (ak_…), bare or as `Bearer ak_…`; `x-api-key` and `capgkey` work too",
            ))),
        );
    }
}
