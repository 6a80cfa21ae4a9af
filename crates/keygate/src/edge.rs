//! The HTTP/1.1 listener, with limits at the edge so that slow or many
//! clients cannot hold the server:
//!
//! - a client must send a request's whole head within
//!   [`EdgeLimits::header_read_timeout`], and an idle keep-alive connection
//!   is closed after the same time (hyper's header read timeout starts as
//!   soon as the connection waits for a head);
//! - at most [`EdgeLimits::max_connections`] connections are served at
//!   once; beyond, new ones wait in the kernel's accept queue;
//! - a failed `accept` (such as running out of file descriptors) is logged
//!   and retried after a pause, never a busy loop.
//!
//! The request timeout is kept by [`crate::observe`], after routing, so
//! that its 408 leaves in the contract's shape.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// See the module's documentation.
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    }
}

/// How long to wait before accepting again after `accept` failed.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `quit` turns true, then lets every open
/// connection finish its request in flight.
pub async fn serve<S>(listener: TcpListener, app: S, limits: EdgeLimits, mut quit: watch::Receiver<bool>)
where
    S: tower::Service<Request, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = stopping(&mut quit) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection; retrying shortly");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
            _ = stopping(&mut quit) => break,
        };
        // Like axum::serve, Nagle stays on: every response is one write, and
        // turning it off measured no gain.
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            app.clone().oneshot(request)
        });
        let mut quit = quit.clone();
        connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stopping(&mut quit) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(permit);
        });
    }
    connections.close();
    connections.wait().await;
}

/// Resolves once `quit` is true (or its sender is gone).
async fn stopping(quit: &mut watch::Receiver<bool>) {
    let _ = quit.wait_for(|quit| *quit).await;
}
