//! keygate: a self-hostable API key service implementing the Capgo `/apikey`
//! API and the authorization model behind it.
//!
//! The path of a request: [`router`] (one file, every route) → [`auth`]
//! (header → key format → digest → store) → a handler in [`api`] that
//! declares the action it needs → one [`error::ApiError`] shape.

pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod blobs;
pub mod cli;
pub mod error;
pub mod extract;
pub mod limits;
pub mod router;
pub mod usage;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::ServiceExt;
use axum::extract::Request;
use keygate_store::Store;
use tokio::net::TcpListener;

pub use blobs::BlobStore;
pub use usage::UsageRecorder;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Uploaded bundles larger than this are refused with 413, unless configured.
pub const DEFAULT_MAX_BUNDLE_SIZE: u64 = 50 * 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub usage: UsageRecorder,
    pub blobs: Arc<BlobStore>,
    pub max_bundle_size: u64,
    pub failed_auth: Arc<limits::FailedAuthLimiter>,
    pub client_ip_header: Option<axum::http::HeaderName>,
    pub verifier_tokens: Arc<[VerifierToken]>,
}

/// A token that lets a service call `POST /verify`. Never printed; kept as
/// its SHA-256 so that comparisons take the same time whatever the length.
#[derive(Clone)]
pub struct VerifierToken([u8; 32]);

impl VerifierToken {
    /// `None` for an empty token.
    pub fn new(token: &str) -> Option<Self> {
        let token = token.trim();
        (!token.is_empty()).then(|| Self(Self::digest(token)))
    }

    fn digest(text: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(text.as_bytes()).into()
    }

    /// Constant-time comparison with what a caller presented.
    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&Self::digest(presented)).into()
    }
}

impl std::fmt::Debug for VerifierToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifierToken(<redacted>)")
    }
}

/// How a server is set up, beyond its database.
#[derive(Debug, Clone)]
pub struct Settings {
    pub blobs: BlobStore,
    pub max_bundle_size: u64,
    /// Behind a trusted proxy: the header holding the client's address
    /// (its last entry), such as `x-forwarded-for`. `None`: the peer address.
    pub client_ip_header: Option<axum::http::HeaderName>,
    /// Tokens that enable `POST /verify`; none disables it.
    pub verifier_tokens: Vec<VerifierToken>,
}

impl Settings {
    pub fn new(blobs: BlobStore) -> Self {
        Self {
            blobs,
            max_bundle_size: DEFAULT_MAX_BUNDLE_SIZE,
            client_ip_header: None,
            verifier_tokens: Vec::new(),
        }
    }
}

/// Serves keygate on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish, writes pending usage and closes the database.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn Store>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let usage = UsageRecorder::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let flusher = tokio::spawn(usage.clone().run(store.clone(), stopped));
    let app = router::app(AppState {
        store: store.clone(),
        usage,
        blobs: Arc::new(settings.blobs),
        max_bundle_size: settings.max_bundle_size,
        failed_auth: Arc::default(),
        client_ip_header: settings.client_ip_header,
        verifier_tokens: settings.verifier_tokens.into(),
    });
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
