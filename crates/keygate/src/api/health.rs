//! `GET /health`: 200 when the database answers, 503 when it does not.
//! `GET /livez`: 200 as long as the process serves HTTP, without any I/O.
//! Neither needs a key.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;

#[utoipa::path(
    get,
    path = "/health",
    tag = "meta",
    responses(
        (status = 200, description = "The database answers: `{\"status\": \"ok\"}`", body = Object),
        (status = 503, description = "The database is unreachable", body = super::ErrorBody),
    ),
    security(())
)]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ok" }))),
        Err(error) => {
            tracing::warn!(error = %error, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "KO",
                    "error": "The database is unavailable",
                    "code": "database_unavailable",
                })),
            )
        }
    }
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
