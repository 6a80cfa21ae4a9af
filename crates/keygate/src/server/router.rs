//! Every route keygate serves, in one place, and the layers around them.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;

use tower::Layer;
use tower::util::{MapRequest, MapRequestLayer};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{ApiDoc, apikey, app, bundle, forward, health, invites, org_keys, organization, verify};
use crate::http::BODY_LIMIT;
use crate::http::SentTarget;
use crate::http::error::ApiError;
use crate::server::observe::ObserveLayer;
use crate::state::AppState;

/// The application: the routes, with a trailing slash accepted on every
/// path — but `/auth/…` keeps the target as sent, for its handler to judge.
pub fn app(state: AppState) -> MapRequest<NormalizePath<Router>, fn(Request) -> Request> {
    let keep: fn(Request) -> Request = keep_forwarded_target;
    MapRequestLayer::new(keep).layer(NormalizePathLayer::trim_trailing_slash().layer(router(state)))
}

/// After `/auth`, Envoy sends the protected request's own path, whose
/// trailing slashes are the upstream's to read: trimmed, `/x//` would be
/// judged as `/x`.
fn keep_forwarded_target(mut request: Request) -> Request {
    if request.uri().path().starts_with("/auth/") {
        let sent = SentTarget(request.uri().clone());
        request.extensions_mut().insert(sent);
    }
    request
}

/// Every route with its OpenAPI description: a handler is routed only
/// through `routes!`, which reads its `#[utoipa::path]`, so the document and
/// the router cannot drift apart. `metrics`: whether `GET /metrics` is on
/// this listener (not when it has one of its own).
fn routes(metrics: bool) -> OpenApiRouter<AppState> {
    let routes = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::root))
        .routes(routes!(health::health))
        .routes(routes!(health::readyz))
        .routes(routes!(health::livez))
        .routes(routes!(openapi_json));
    let routes = if metrics { routes.routes(routes!(super::metrics::metrics)) } else { routes };
    routes
        .routes(routes!(apikey::list, apikey::create))
        .routes(routes!(apikey::revoke))
        .routes(routes!(apikey::rotate))
        .routes(routes!(apikey::usage))
        .routes(routes!(verify::verify))
        .routes(routes!(apikey::get, apikey::update, apikey::delete))
        .routes(routes!(organization::list, organization::create, organization::update, organization::delete))
        .routes(routes!(organization::members, organization::set_member, organization::remove_member))
        .routes(routes!(organization::audit_log))
        .routes(routes!(invites::create, invites::list, invites::revoke))
        .routes(routes!(invites::redeem))
        .routes(routes!(org_keys::list))
        .routes(routes!(org_keys::block, org_keys::unblock))
        .routes(routes!(app::list, app::create))
        .routes(routes!(app::get, app::rename, app::delete))
        .routes(routes!(bundle::list, bundle::upload, bundle::delete))
        .routes(routes!(bundle::download))
        // Every method OpenAPI names (Envoy asks with the original one);
        // others, such as QUERY or WebDAV's, are refused with 405.
        // The web console: static files, outside the API's document.
        .route("/console", axum::routing::get(crate::api::console::index))
        .route("/console/console.js", axum::routing::get(crate::api::console::script))
        .route("/console/console.css", axum::routing::get(crate::api::console::style))
        .route("/auth", every_method(forward::auth))
        .route("/auth/{*rest}", every_method(forward::auth_path))
}

/// `handler` for each method `/auth` documents.
fn every_method<H, T>(handler: H) -> axum::routing::MethodRouter<AppState>
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    use axum::routing::MethodFilter;
    let methods = [
        MethodFilter::GET,
        MethodFilter::HEAD,
        MethodFilter::POST,
        MethodFilter::PUT,
        MethodFilter::PATCH,
        MethodFilter::DELETE,
        MethodFilter::OPTIONS,
        MethodFilter::TRACE,
    ];
    let filter = methods.into_iter().reduce(MethodFilter::or).unwrap_or(MethodFilter::GET);
    axum::routing::on(filter, handler)
}

/// The OpenAPI document of every route, as JSON; `metrics`: whether
/// `GET /metrics` is served on the main listener.
pub fn openapi(metrics: bool) -> &'static str {
    fn document(metrics: bool) -> String {
        let (_, document) = routes(metrics).split_for_parts();
        document.to_json().unwrap_or_else(|_| "{}".to_owned())
    }
    static WITH_METRICS: LazyLock<String> = LazyLock::new(|| document(true));
    static WITHOUT_METRICS: LazyLock<String> = LazyLock::new(|| document(false));
    if metrics { &WITH_METRICS } else { &WITHOUT_METRICS }
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document", body = Object)),
    security(())
)]
async fn openapi_json(State(state): State<AppState>) -> Response {
    ([(CONTENT_TYPE, "application/json")], openapi(state.metrics_on_main)).into_response()
}

pub fn router(state: AppState) -> Router {
    let (router, _) = routes(state.metrics_on_main).split_for_parts();
    router
        .fallback(|| async { ApiError::from_status(axum::http::StatusCode::NOT_FOUND) })
        // One `layer` call, outermost first: each call boxes every route
        // once more, and its future once more per request.
        .layer(
            tower::ServiceBuilder::new()
                .layer(ObserveLayer::new(
                    state.access_log.clone(),
                    state.admission.usage.clone(),
                    state.request_timeout,
                ))
                .map_response(|response: Response<_>| response.map(axum::body::Body::new))
                .layer(CatchPanicLayer::custom(|_| {
                    tracing::error!("a handler panicked");
                    ApiError::internal().into_response()
                }))
                .layer(DefaultBodyLimit::max(BODY_LIMIT)),
        )
        .with_state(state)
}
