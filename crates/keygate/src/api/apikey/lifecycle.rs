//! A key's lifecycle beyond plain changes: rotation with a grace period,
//! and revocation of a leaked key by whoever holds it.

use crate::admission::Admission;
use axum::Json;
use axum::extract::State;
use keygate_core::ApiKeySecret;
use keygate_core::bounds;
use keygate_core::key_writes::KeyWrite;
use keygate_store::Actor;
use keygate_store::Store;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::ToSchema;

use super::key::{ApiKeyView, KeyPath, ManagedKey, OneKey, new_key_material};
use crate::api::{ReadErrors, SUCCESS, Success, WriteErrors};
use crate::http::client_address::ClientAddress;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{RawBody, SmallBody};

/// The body of `POST /apikey/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeKey {
    /// The full key, as found.
    key: Option<String>,
}

/// Anyone who finds a leaked key can kill it: no authentication, and the
/// answer is the same whatever was sent and whether or not the key existed,
/// so it tells nothing. Every key the leaked one created, transitively, is
/// revoked with it: whoever held it may have minted more. Only an unreachable database answers otherwise (503),
/// so that the reporter knows to try again.
#[utoipa::path(
    post,
    path = "/apikey/revoke",
    tag = "apikey",
    request_body(
        content = Option<serde_json::Value>,
        description = "`{\"key\": \"ak_…\"}`; any other body is answered the same, so that the answer tells nothing",
    ),
    responses(
        (status = 200, description = "The key, if it was one, no longer works", body = Success),
        (status = 413, description = "The body is over 4 KiB", body = crate::http::error::ErrorBody),
        (status = 503, description = "The database is unavailable: report again", body = crate::http::error::ErrorBody),
    ),
    security(())
)]
pub async fn revoke(
    State(store): State<Arc<dyn Store>>,
    ClientAddress(address): ClientAddress,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    body: SmallBody,
) -> ApiResult<Json<Success>> {
    // Whatever was sent, the answer is the same; only a key can change
    // anything. The key in the body or, as every POST takes its fields, in
    // the query: each one reported is revoked.
    let in_body = body.json::<RevokeKey>().ok().flatten().and_then(|r| r.key);
    let in_query = query.as_deref().unwrap_or_default().split('&').find_map(|pair| {
        let value = pair.strip_prefix("key=")?;
        Some(percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned())
    });
    let reporter = Actor { user_id: None, key_id: None, ip: address, presented: None };
    for presented in [in_body, in_query].into_iter().flatten() {
        // As found in a leak: often with the `Bearer` it was sent with.
        let raw = crate::admission::verification::strip_bearer(presented.trim());
        let Ok(secret) = ApiKeySecret::parse(raw) else { continue };
        let revoked = store.revoke_key(&secret.digest(), &reporter).await?;
        if !revoked.is_empty() {
            let key_ids: Vec<i64> = revoked.iter().map(|key| key.id).collect();
            tracing::warn!(?key_ids, "an api key was revoked as leaked, with every key it created");
        }
    }
    Ok(Json(SUCCESS))
}

/// The body of `POST /apikey/:id/rotate`; it may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateKey {
    /// How long the old secret keeps working, 0–604800 seconds (default 0).
    #[serde(default, deserialize_with = "crate::http::extract::whole")]
    #[schema(minimum = 0, maximum = 604_800)]
    grace_period_seconds: Option<i64>,
}

/// A new secret for the same key: same id, mode, scope and expiry. Only the
/// key's own user rotates it; during the grace period either secret works,
/// and deleting or reporting either one removes the key.
#[utoipa::path(
    post,
    path = "/apikey/{id_or_key}/rotate",
    tag = "apikey",
    params(KeyPath),
    request_body = RotateKey,
    responses(
        (status = 200, description = "The key with its new full secret: shown this once", body = OneKey),
        ReadErrors,
        WriteErrors,
    ),
)]
pub async fn rotate(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    managed: ManagedKey,
    body: RawBody,
) -> ApiResult<Json<OneKey>> {
    managed.may_write(&admission, KeyWrite::Rotate).await?;
    let ManagedKey { caller, key } = managed;
    let grace = body.json::<RotateKey>()?.unwrap_or_default().grace_period_seconds.unwrap_or(0);
    let Some(grace) = bounds::within(grace, &bounds::GRACE_SECONDS) else {
        return Err(ApiError::bad_request(
            "invalid_grace_period",
            format!("grace_period_seconds must be from 0 to {} (a week)", bounds::GRACE_SECONDS.end()),
        ));
    };
    let grace_until = (grace > 0).then(|| keygate_store::now() + chrono::Duration::seconds(grace));
    let (secret, material) = new_key_material()?;
    let rotated = store.rotate_key(key.id, &key.digest, material, grace_until, &caller.actor()).await?;
    let Some(rotated) = rotated else {
        return Err(match store.key_by_id(key.id).await? {
            Some(_) => ApiError::conflict(
                "rotation_conflict",
                "The key changed while rotating it; read it again and retry",
            ),
            None => ApiError::api_key_not_found(),
        });
    };
    tracing::info!(key_id = rotated.id, grace_seconds = grace, "api key rotated");
    Ok(Json(OneKey { apikey: ApiKeyView::revealed(rotated, &secret, &admission.quotas) }))
}
