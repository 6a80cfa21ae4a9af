//! `GET /health`: 200 when the database answers, 503 when it does not. No key needed.

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
