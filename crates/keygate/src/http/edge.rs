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
//!   and retried after a pause, never a busy loop;
//! - a client that stops reading its response holds its connection for at
//!   most [`EdgeLimits::request_timeout`] more: a write that makes no
//!   progress for that long closes the connection;
//! - a response to a request whose body was not read to its end (refused
//!   before it: keygate reads no body it does not need) says
//!   `Connection: close`, since the connection cannot carry another
//!   request after it: a client then opens a new one rather than send its
//!   next request into a closed socket.
//!
//! With [`Tls`], each connection first completes a TLS handshake within the
//! header read timeout.
//!
//! The request timeout is kept by [`crate::server::observe`], after routing, so
//! that its 408 leaves in the contract's shape.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, header};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::tls::Tls;

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

/// Serves `app` on `listener` (over `tls` if given) until `quit` turns
/// true, then lets every open connection finish its request in flight.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    limits: EdgeLimits,
    tls: Option<Arc<Tls>>,
    mut quit: watch::Receiver<bool>,
) where
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
            // Only a request with a body is tracked: most (a GET, /auth) have none.
            let read = (!request.body().is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
            let mut request = match &read {
                Some(read) => {
                    request.map(|inner| axum::body::Body::new(Tracked { inner, read: read.clone() }))
                }
                None => request.map(axum::body::Body::new),
            };
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let answer = app.clone().oneshot(request);
            async move {
                let mut response = answer.await?;
                if read.is_some_and(|read| !read.load(Ordering::Relaxed)) {
                    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let quit = quit.clone();
        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
        connections.spawn(async move {
            match acceptor {
                None => run(stream, service, limits, quit).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => run(stream, service, limits, quit).await,
                        Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    connections.close();
    connections.wait().await;
}

/// Serves one connection's requests until it closes, or until `quit`, then
/// finishes the request in flight.
async fn run<I, S>(io: I, service: S, limits: EdgeLimits, mut quit: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming> + Send,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut io = tokio_io_timeout::TimeoutStream::new(io);
    io.set_write_timeout(Some(limits.request_timeout));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(Box::pin(io)), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stopping(&mut quit) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Resolves once `quit` is true (or its sender is gone).
async fn stopping(quit: &mut watch::Receiver<bool>) {
    let _ = quit.wait_for(|quit| *quit).await;
}

/// A request's body that notes when it was read to its end.
struct Tracked {
    inner: Incoming,
    read: Arc<AtomicBool>,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
