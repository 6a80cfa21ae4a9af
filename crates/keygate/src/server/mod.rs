//! The server, on top of everything else: the [`router`] (every route and
//! layer), the [`observe`] layer every request passes, `GET /metrics`
//! ([`metrics`]); and start-up and shutdown here: serve until told to stop,
//! then let in-flight requests finish, write pending usage and close the
//! database.

pub mod metrics;
pub mod observe;
pub mod router;

use std::future::Future;
use std::sync::Arc;

use keygate_store::Store;
use tokio::net::TcpListener;

use crate::admission::usage::UsageRecorder;
use crate::state::{AppState, MetricsListener, Settings};
use crate::telemetry::access_log::AccessLog;

/// Serves keygate on `listener` until `shutdown` resolves (and `GET
/// /metrics` on the settings' metrics listener, if any).
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn Store>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::telemetry::metrics::install();
    let usage = UsageRecorder::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let flusher = tokio::spawn(usage.clone().run(store.clone(), stopped));
    let metrics_listener = match settings.metrics_listener.as_ref().map(MetricsListener::take) {
        Some(Some(listener)) => Some(TcpListener::from_std(listener)?),
        Some(None) => return Err(std::io::Error::other("the metrics listener was already taken")),
        None => None,
    };
    let (access_log, writer) = if settings.access_log {
        let policy = crate::http::client_address::ClientAddressPolicy::new(
            settings.client_ip_header.clone(),
            settings.trusted_proxies.clone(),
        );
        let (log, writer) = AccessLog::start(policy, settings.log_format)?;
        (Some(log), Some(writer))
    } else {
        (None, None)
    };
    let edge = settings.edge;
    let tls = settings.tls.clone();
    let state = AppState::new(store.clone(), usage, settings, access_log);
    let quotas = tokio::spawn(state.admission.quotas.clone().run(stop.subscribe()));
    // Both listeners stop together.
    let (quit, quitting) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = quit.send(true);
    });
    // The metrics listener has the same limits at the edge as the main one:
    // a scraper that stalls, or a flood of connections, cannot pile up there.
    let metrics_server = metrics_listener.map(|listener| {
        let app = metrics::router(state.admission.clone());
        tokio::spawn(crate::http::edge::serve(listener, app, edge, None, quitting.clone()))
    });
    let app = router::app(state);
    if let Some(tls) = &tls {
        tokio::spawn(reload_on_sighup(tls.clone()));
    }
    crate::http::edge::serve(listener, app, edge, tls, quitting).await;
    if let Some(server) = metrics_server
        && let Err(error) = server.await
        && !error.is_cancelled()
    {
        tracing::error!(%error, "metrics listener failed");
    }
    let _ = stop.send(true);
    if let Err(error) = flusher.await {
        tracing::error!(%error, "usage writer failed");
    }
    // Unused leases of credits and rate limits go back to the database.
    if let Err(error) = quotas.await {
        tracing::error!(%error, "handing back unused leases failed");
    }
    if let Some(writer) = writer {
        writer.finish().await;
    }
    store.close().await;
    Ok(())
}

/// Reads the TLS certificate and key again on each SIGHUP.
async fn reload_on_sighup(tls: Arc<crate::http::tls::Tls>) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGHUP: the TLS certificate will not be reloaded");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("TLS certificate and key reloaded"),
            Err(error) => {
                tracing::error!(%error, "TLS certificate and key not reloaded; the previous ones stay")
            }
        }
    }
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
