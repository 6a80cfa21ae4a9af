//! The one layer that watches every request, and the last word on every
//! response:
//!
//! - every error leaves in the contract's JSON shape, including those the
//!   framework produces itself (wrong method, unreadable path);
//! - no response may be kept by a cache (`Cache-Control: no-store`): a
//!   new or rotated key travels in a response body, and a shared cache or a
//!   browser's disk must never hold one; marking every response is simpler
//!   and safer than remembering which carry secrets;
//! - a denial is counted against the key it denied ([`crate::admission::usage`]);
//! - what the key's limits took is refunded if the request failed (4xx or
//!   5xx), its credits counted if not, and the key's tightest rate limit
//!   reported in the IETF `RateLimit` and `RateLimit-Policy` headers
//!   ([`crate::admission::quota`]);
//! - the request is counted and timed ([`crate::telemetry::metrics`]) and leaves its
//!   access log line ([`crate::telemetry::access_log`]);
//! - a request that takes longer than `serve --request-timeout` is dropped
//!   and answered 408. The timer is armed only once the request has to
//!   wait: most answers (a cached key's `/verify`) are ready at the first
//!   poll and never touch tokio's timer wheel.
//!
//! One hand-written future rather than a middleware per duty: no boxing,
//! no service clone per request. On the request path it only copies a few
//! values and does atomic adds: no formatting, no span.
//!
//! It is applied through `Router::layer`, so it runs once a route matched
//! and sees the route's template ([`MatchedPath`]): labels and log lines
//! name `/apikey/{id_or_key}`, never the raw path.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use tokio::time::Sleep;
use tower::{Layer, Service};

use crate::admission::usage::{DeniedKey, RequestKey, UsageRecorder};
use crate::http::error::ApiError;
use crate::telemetry::access_log::{AccessLog, Client, Entry};
use keygate_core::limits::LimitReport;

/// See the module's documentation.
#[derive(Clone)]
pub struct ObserveLayer {
    access_log: Option<AccessLog>,
    usage: UsageRecorder,
    timeout: Duration,
}

impl ObserveLayer {
    pub fn new(access_log: Option<AccessLog>, usage: UsageRecorder, timeout: Duration) -> Self {
        Self { access_log, usage, timeout }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            access_log: self.access_log.clone(),
            usage: self.usage.clone(),
            timeout: self.timeout,
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    access_log: Option<AccessLog>,
    usage: UsageRecorder,
    timeout: Duration,
}

/// What is kept of the request until its response is ready.
struct Seen {
    start: Instant,
    method: Method,
    route: Option<MatchedPath>,
    /// Filled by authentication with the key behind the request.
    key: RequestKey,
    usage: UsageRecorder,
    /// Only with the access log on.
    logged: Option<Logged>,
}

struct Logged {
    access_log: AccessLog,
    path: Option<Box<str>>,
    client: Client,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let start = Instant::now();
        let key = RequestKey::default();
        req.extensions_mut().insert(key.clone());
        let route = req.extensions().get::<MatchedPath>().cloned();
        let path = loggable_path(req.uri().path(), route.as_ref());
        if tracing::enabled!(tracing::Level::DEBUG) {
            let shown =
                path.map_or(route.as_ref().map_or("", |r| r.as_str()).into(), crate::http::redact::redact);
            tracing::debug!(method = %req.method(), path = %shown, "started processing request");
        }
        let logged = self.access_log.as_ref().map(|access_log| Logged {
            access_log: access_log.clone(),
            path: path.map(Into::into),
            client: access_log
                .client(req.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0), req.headers()),
        });
        let seen =
            Seen { start, method: req.method().clone(), route, key, usage: self.usage.clone(), logged };
        ObserveFuture {
            inner: self.inner.call(req),
            // Past what an `Instant` can hold: never.
            deadline: start.checked_add(self.timeout),
            timer: None,
            seen: Some(seen),
        }
    }
}

/// The path a request's log line names, or `None` when that is its route:
/// one equal to its route, and any under `/auth`, whose paths are the
/// protected API's, not keygate's to log.
fn loggable_path<'a>(path: &'a str, route: Option<&MatchedPath>) -> Option<&'a str> {
    match route {
        Some(route) if route.as_str() == path || route.as_str().starts_with("/auth") => None,
        _ => Some(path),
    }
}

pin_project_lite::pin_project! {
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        deadline: Option<Instant>,
        // Armed at the first `Pending`.
        #[pin]
        timer: Option<Sleep>,
        seen: Option<Seen>,
    }
}

impl<F, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut result = match this.inner.poll(cx) {
            Poll::Ready(result) => result,
            Poll::Pending => {
                if this.timer.is_none()
                    && let Some(deadline) = *this.deadline
                {
                    this.timer.set(Some(tokio::time::sleep_until(deadline.into())));
                }
                match this.timer.as_pin_mut().map(|timer| timer.poll(cx)) {
                    Some(Poll::Ready(())) => {
                        Ok(ApiError::from_status(StatusCode::REQUEST_TIMEOUT).into_response())
                    }
                    _ => return Poll::Pending,
                }
            }
        };
        if let (Ok(response), Some(seen)) = (&mut result, this.seen.take()) {
            let status = response.status();
            if (status.is_client_error() || status.is_server_error()) && !is_json(response) {
                *response = ApiError::from_status(status).into_response();
            }
            response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            let denied = match response.extensions().get::<DeniedKey>() {
                Some(&DeniedKey(key_id)) => Some(key_id),
                None if status == StatusCode::FORBIDDEN => seen.key.get(),
                None => None,
            };
            if let Some(key_id) = denied {
                seen.usage.record_denied(key_id, Utc::now());
            }
            let (charge, refused_by) = seen.key.take_limits();
            let mut limit = refused_by;
            if let Some(charge) = charge {
                limit = limit.or_else(|| charge.ratelimit.clone());
                if !keygate_core::limits::charge_kept(status.as_u16()) {
                    charge.refund();
                } else if let (credits @ 1.., Some(key_id)) = (charge.credits(), seen.key.get()) {
                    seen.usage.record_credits(key_id, Utc::now(), credits);
                }
            }
            if let Some(limit) = limit {
                ratelimit_headers(response, &limit);
            }
            let latency = seen.start.elapsed();
            if let Some(metrics) = crate::telemetry::metrics::get() {
                metrics.http.record(
                    &seen.method,
                    seen.route.as_ref().map(MatchedPath::as_str),
                    status,
                    latency,
                );
            }
            if let Some(logged) = seen.logged {
                logged.access_log.send(Entry {
                    at: SystemTime::now(),
                    method: seen.method,
                    path: logged.path,
                    route: seen.route,
                    status,
                    latency,
                    client: logged.client,
                });
            }
        }
        Poll::Ready(result)
    }
}

/// The IETF `RateLimit-Policy` and `RateLimit` headers
/// (draft-ietf-httpapi-ratelimit-headers) of the key's tightest limit.
fn ratelimit_headers(response: &mut Response, limit: &LimitReport) {
    let window = limit.duration_ms.div_ceil(1000);
    let reset = limit.reset_seconds;
    let policy = format!("\"{}\";q={};w={window}", limit.name, limit.limit);
    let state = format!("\"{}\";r={};t={reset}", limit.name, limit.remaining);
    let headers = response.headers_mut();
    for (name, value) in [(RATELIMIT_POLICY, policy), (RATELIMIT, state)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

fn is_json(response: &Response) -> bool {
    response.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// Set when the handler's future is dropped.
    struct Dropped(Arc<AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A handler that waits `wait` before answering 200; the flag tells
    /// whether its future was dropped.
    fn waiting(
        wait: Duration,
        timeout: Duration,
    ) -> (
        Observe<impl Service<Request, Response = Response, Error = Infallible, Future = impl Send> + Clone>,
        Arc<AtomicBool>,
    ) {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        let service = ObserveLayer::new(None, UsageRecorder::default(), timeout).layer(tower::service_fn(
            move |_: Request| {
                let guard = Dropped(flag.clone());
                async move {
                    tokio::time::sleep(wait).await;
                    drop(guard);
                    Ok::<_, Infallible>(StatusCode::OK.into_response())
                }
            },
        ));
        (service, dropped)
    }

    #[tokio::test]
    async fn a_request_that_waits_past_the_timeout_is_dropped_and_answered_408() {
        let (service, dropped) = waiting(Duration::from_secs(30), Duration::from_millis(50));
        let response = service.oneshot(Request::new(Body::empty())).await.expect("infallible");
        assert!(dropped.load(Ordering::SeqCst), "the handler still runs");
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        let body = response.into_body().collect().await.expect("body").to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["code"], "request_timeout", "{body}");
    }

    #[tokio::test]
    async fn a_request_that_waits_less_is_answered_and_a_huge_timeout_never_fires() {
        for timeout in [Duration::from_secs(5), Duration::MAX] {
            let (service, _) = waiting(Duration::from_millis(20), timeout);
            let response = service.oneshot(Request::new(Body::empty())).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::OK, "{timeout:?}");
        }
    }
}
