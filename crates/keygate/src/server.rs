//! Start-up and shutdown: serve until told to stop, then let in-flight
//! requests finish, write pending usage and close the database.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::ServiceExt;
use axum::extract::Request;
use keygate_store::Store;
use tokio::net::TcpListener;

use crate::router;
use crate::state::{AppState, Settings};
use crate::usage::UsageRecorder;

/// Serves keygate on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn Store>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let usage = UsageRecorder::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let flusher = tokio::spawn(usage.clone().run(store.clone(), stopped));
    let app = router::app(AppState::new(store.clone(), usage, settings));
    let served =
        axum::serve(listener, ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app))
            .with_graceful_shutdown(shutdown)
            .await;
    let _ = stop.send(true);
    if let Err(error) = flusher.await {
        tracing::error!(%error, "usage writer failed");
    }
    store.close().await;
    served
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
