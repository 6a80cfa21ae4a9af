//! `GET /readyz` (and its alias `GET /health`): 200 when the database
//! answers (on SQLite: and the path still names the file the server opened)
//! and bundles can be written; 503 saying which is not, otherwise.
//! `GET /livez`: 200 as long as the process serves HTTP, without any I/O.
//! None needs a key.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keygate_store::Store;
use serde_json::{Value, json};

use crate::state::blobs::BlobStore;

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    responses(
        (status = 200, description = "Ready: the database answers and bundles can be written: `{\"status\": \"ok\"}`", body = Object),
        (status = 503, description = "`database_unavailable` or `storage_unavailable`, with `\"status\": \"KO\"`", body = super::ErrorBody),
    ),
    security(())
)]
pub async fn readyz(
    State(store): State<Arc<dyn Store>>,
    State(blobs): State<BlobStore>,
) -> (StatusCode, Json<Value>) {
    ready(store.as_ref(), &blobs).await
}

/// The same as `GET /readyz`, under the name the Capgo contract gives it.
#[utoipa::path(
    get,
    path = "/health",
    tag = "meta",
    responses(
        (status = 200, description = "As `GET /readyz`: `{\"status\": \"ok\"}`", body = Object),
        (status = 503, description = "As `GET /readyz`", body = super::ErrorBody),
    ),
    security(())
)]
pub async fn health(
    State(store): State<Arc<dyn Store>>,
    State(blobs): State<BlobStore>,
) -> (StatusCode, Json<Value>) {
    ready(store.as_ref(), &blobs).await
}

async fn ready(store: &dyn Store, blobs: &BlobStore) -> (StatusCode, Json<Value>) {
    if let Err(error) = store.ping().await {
        tracing::warn!(error = %error, "readiness: the database is unavailable");
        return not_ready("database_unavailable", "The database is unavailable");
    }
    if let Err(error) = blobs.check_writable().await {
        tracing::warn!(error = %error, "readiness: bundles cannot be written");
        return not_ready("storage_unavailable", "Bundle storage cannot be written");
    }
    (StatusCode::OK, Json(json!({ "status": "ok" })))
}

fn not_ready(code: &str, error: &str) -> (StatusCode, Json<Value>) {
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "KO", "error": error, "code": code })))
}

/// Liveness only: answers from memory, never touching the database, so it
/// says the process is up (and is the floor the benchmark measures against).
#[utoipa::path(
    get,
    path = "/livez",
    tag = "meta",
    responses((status = 200, description = "The process is up: `{\"status\": \"ok\"}`", body = Object)),
    security(())
)]
pub async fn livez() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// What a newcomer's browser or curl finds at the root: what this is, and
/// where to go next.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Root {
    #[schema(example = "keygate")]
    service: &'static str,
    #[schema(example = "0.1.0")]
    version: &'static str,
    /// The OpenAPI document of every route.
    #[schema(example = "/openapi.json")]
    openapi: &'static str,
    /// Readiness: the database and bundle storage.
    #[schema(example = "/health")]
    health: &'static str,
    /// The web console.
    #[schema(example = "/console")]
    console: &'static str,
    /// Where the API's documentation lives.
    documentation: &'static str,
}

#[utoipa::path(
    get,
    path = "/",
    tag = "meta",
    responses((status = 200, description = "The service, its version and where to go next", body = Root)),
    security(())
)]
pub async fn root() -> Json<Root> {
    Json(Root {
        service: "keygate",
        version: env!("CARGO_PKG_VERSION"),
        openapi: "/openapi.json",
        health: "/health",
        console: "/console",
        documentation: "https://capgo.app/docs/public-api/api-keys/",
    })
}
