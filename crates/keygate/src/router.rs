//! Every route keygate serves, in one place, and the layers around them.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::Layer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};
use tower_http::trace::TraceLayer;

use crate::api::{apikey, app, bundle, health, organization};
use crate::error::ApiError;
use crate::{AppState, BODY_LIMIT};

/// The application: the routes, with a trailing slash accepted on every path.
pub fn app(state: AppState) -> NormalizePath<Router> {
    NormalizePathLayer::trim_trailing_slash().layer(router(state))
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/apikey", get(apikey::list).post(apikey::create))
        .route(
            "/apikey/{id_or_key}",
            get(apikey::get).put(apikey::update).delete(apikey::delete),
        )
        .route(
            "/organization",
            get(organization::list).post(organization::create).put(organization::update).delete(organization::delete),
        )
        .route(
            "/organization/members",
            get(organization::members).post(organization::set_member).delete(organization::remove_member),
        )
        .route("/app", get(app::list).post(app::create))
        .route("/app/{app_id}", get(app::get).put(app::rename).delete(app::delete))
        .route("/bundle", get(bundle::list).post(bundle::upload).delete(bundle::delete))
        .route("/bundle/download", get(bundle::download))
        .fallback(|| async { ApiError::from_status(axum::http::StatusCode::NOT_FOUND) })
        .layer(middleware::from_fn(errors_as_json))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a handler panicked");
            ApiError::internal().into_response()
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    tracing::info_span!("request", method = %req.method(), path = %redact(req.uri().path()))
                })
                .on_response(|res: &Response, latency: Duration, _: &tracing::Span| {
                    tracing::info!(status = res.status().as_u16(), ms = latency.as_millis() as u64, "served");
                }),
        )
        .with_state(state)
}

/// Gives every error the contract's JSON shape, including those produced by
/// the framework itself (wrong method, unreadable path).
async fn errors_as_json(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        return ApiError::from_status(status).into_response();
    }
    response
}

/// A path as it may be logged: a key in it (`/apikey/ak_…`) is masked.
pub fn redact(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with(keygate_core::key::PREFIX) {
                "ak_[redacted]"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_in_paths_are_redacted() {
        assert_eq!(
            super::redact("/apikey/ak_abc123/"),
            "/apikey/ak_[redacted]/"
        );
        assert_eq!(super::redact("/apikey/12"), "/apikey/12");
    }
}
