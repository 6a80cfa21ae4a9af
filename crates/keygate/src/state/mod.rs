//! What every handler can reach ([`AppState`]), the sub-states extractors
//! take from it (`FromRef`), and how a server is set up ([`Settings`]).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::HeaderName;
use keygate_store::Store;

use axum::extract::FromRef;

use crate::admission::authenticator::Authenticator;
use crate::admission::forward_auth::Forwarding;
use crate::admission::quota::Quotas;
use crate::admission::throttle::FailedAuthThrottle;
use crate::admission::usage::UsageRecorder;
use crate::admission::{Admission, Gate};
use crate::http::client_address::ClientAddressPolicy;
use crate::http::extract::BodyBudget;
use crate::telemetry::access_log::AccessLog;
use blobs::BlobStore;

pub mod blobs;

/// Uploaded bundles larger than this are refused with 413, unless configured.
pub const DEFAULT_MAX_BUNDLE_SIZE: u64 = 50 * 1024 * 1024;

/// What every handler can reach: cloned for every request and layer, so
/// one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Arc<dyn Store>,
    /// Who is calling and what they may spend.
    pub admission: Admission,
    pub blobs: BlobStore,
    pub max_bundle_size: u64,
    pub max_org_storage: Option<u64>,
    pub verifier_tokens: Box<[VerifierToken]>,
    /// How `/auth` reads and judges a forwarded request; `None`: disabled.
    pub forwarding: Forwarding,
    /// Where access log lines go; `None`: not logged.
    pub access_log: Option<AccessLog>,
    /// Whether `GET /metrics` is served (and described) on the main listener.
    pub metrics_on_main: bool,
    /// Who may scrape `GET /metrics` on the main listener.
    pub metrics_access: MetricsAccess,
    /// How long a request may take, body included, before it is answered 408.
    pub request_timeout: std::time::Duration,
    /// The bytes of request bodies held at once.
    pub body_budget: BodyBudget,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The sub-states extractors take, so that they need not know the whole.
impl FromRef<AppState> for Admission {
    fn from_ref(state: &AppState) -> Self {
        state.admission.clone()
    }
}

impl FromRef<AppState> for Arc<dyn Store> {
    fn from_ref(state: &AppState) -> Self {
        state.store.clone()
    }
}

impl FromRef<AppState> for BlobStore {
    fn from_ref(state: &AppState) -> Self {
        state.blobs.clone()
    }
}

impl FromRef<AppState> for MetricsAccess {
    fn from_ref(state: &AppState) -> Self {
        state.metrics_access.clone()
    }
}

impl FromRef<AppState> for Forwarding {
    fn from_ref(state: &AppState) -> Self {
        state.forwarding.clone()
    }
}

/// How large bundles may be: what an upload is checked against.
#[derive(Clone, Copy, Debug)]
pub struct BundleLimits {
    pub max_bundle_size: u64,
    pub max_org_storage: Option<u64>,
}

impl FromRef<AppState> for BundleLimits {
    fn from_ref(state: &AppState) -> Self {
        BundleLimits { max_bundle_size: state.max_bundle_size, max_org_storage: state.max_org_storage }
    }
}

impl FromRef<AppState> for BodyBudget {
    fn from_ref(state: &AppState) -> Self {
        state.body_budget.clone()
    }
}

impl FromRef<AppState> for ClientAddressPolicy {
    fn from_ref(state: &AppState) -> Self {
        state.admission.client_addresses.clone()
    }
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        usage: UsageRecorder,
        settings: Settings,
        access_log: Option<AccessLog>,
    ) -> Self {
        let throttle = Arc::new(FailedAuthThrottle::new(settings.failed_auth_limit));
        if settings.failed_auth_limit > 0 {
            store.attach_failure_feed(throttle.clone(), crate::admission::throttle::WINDOW);
        }
        let admission = Admission::new(Gate {
            authenticator: if settings.key_cache {
                Authenticator::cached(store.clone(), usage.clone(), Arc::default())
            } else {
                Authenticator::new(store.clone(), usage.clone())
            },
            quotas: Quotas::new(store.clone(), settings.clock),
            store: store.clone(),
            usage,
            throttle,
            client_addresses: ClientAddressPolicy::new(settings.client_ip_header, settings.trusted_proxies),
        });
        Self(Arc::new(Shared {
            store,
            admission,
            blobs: settings.blobs,
            max_bundle_size: settings.max_bundle_size,
            max_org_storage: settings.max_org_storage,
            verifier_tokens: settings.verifier_tokens.into(),
            forwarding: Forwarding {
                judge: settings.forward_auth.map(Arc::new),
                throttled: settings.forward_auth_throttled,
            },
            access_log,
            metrics_on_main: settings.metrics_listener.is_none(),
            metrics_access: MetricsAccess { token: settings.metrics_token.map(Arc::new) },
            request_timeout: settings.edge.request_timeout,
            body_budget: BodyBudget::new(settings.body_budget),
        }))
    }

    /// The client's address as rate limiting and the audit log see it.
    pub fn client_address(&self, parts: &mut axum::http::request::Parts) -> Option<IpAddr> {
        crate::http::client_address::client_address(parts, &self.admission.client_addresses)
    }
}

/// Who may scrape `GET /metrics` on the main listener: a loopback client,
/// or whoever presents the token (see [`crate::server::metrics`]).
#[derive(Debug, Clone, Default)]
pub struct MetricsAccess {
    pub token: Option<Arc<VerifierToken>>,
}

/// A token that lets a service call `POST /verify` (or scrape `GET
/// /metrics`, `--metrics-token`). Never printed; kept as its SHA-256 so
/// that comparisons take the same time whatever the length.
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
    /// (its last entry), such as `x-forwarded-for`. `None`: the peer
    /// address, or `x-forwarded-for` with `trusted_proxies`.
    pub client_ip_header: Option<HeaderName>,
    /// Peers trusted to name the client in `client_ip_header`; empty:
    /// every peer when a header is set (see [`crate::http::client_address::ClientAddressPolicy`]).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The proxy in front of `/auth` (`--forward-auth-proxy`) and what it
    /// requires of a forwarded request (`--forward-auth-rules`); `None`:
    /// `/auth` is disabled.
    pub forward_auth: Option<crate::admission::forward_auth::ForwardAuth>,
    /// How `/auth` answers a throttled address: 403 (nginx turns any status
    /// but 401 and 403 into a 500) unless 429 is asked for.
    pub forward_auth_throttled: axum::http::StatusCode,
    /// Tokens that enable `POST /verify`; none disables it.
    pub verifier_tokens: Vec<VerifierToken>,
    /// Whether verified keys are cached (coherently: see
    /// [`crate::admission::key_cache`]); on by default.
    pub key_cache: bool,
    /// Whether each request is logged (to stderr, off the request path: see
    /// [`crate::telemetry::access_log`]). The CLI turns it on unless told not to.
    pub access_log: bool,
    /// How the access log writes its lines (the rest of the log is the
    /// subscriber's, set up by the CLI).
    pub log_format: crate::telemetry::LogFormat,
    /// A listener of its own for `GET /metrics`, which is then not served
    /// on the main one. `None`: `/metrics` is on the main listener.
    pub metrics_listener: Option<MetricsListener>,
    /// A token that lets a scrape of `GET /metrics` on the main listener
    /// come from anywhere; without it, only loopback clients may scrape.
    pub metrics_token: Option<VerifierToken>,
    /// Timeouts and the connection cap of the main listener.
    pub edge: crate::http::edge::EdgeLimits,
    /// TLS on the main listener (`--tls-cert`, `--tls-key`); `None`: plain HTTP.
    pub tls: Option<Arc<crate::http::tls::Tls>>,
    /// Failed authentications per address within 5 minutes before it is
    /// answered 429; 0: no throttle (see [`crate::admission::throttle`]).
    pub failed_auth_limit: usize,
    /// The most bytes an organization's bundles may take; `None`: no limit.
    pub max_org_storage: Option<u64>,
    /// The time rate-limit windows and credit refills are reckoned in.
    pub clock: crate::admission::quota::Clock,
    /// The most bytes of request bodies held at once; a body that would
    /// take more is refused (503 `server_busy`).
    pub body_budget: usize,
}

impl Settings {
    pub fn new(blobs: BlobStore) -> Self {
        Self {
            blobs,
            max_bundle_size: DEFAULT_MAX_BUNDLE_SIZE,
            client_ip_header: None,
            trusted_proxies: Vec::new(),
            forward_auth: None,
            forward_auth_throttled: axum::http::StatusCode::FORBIDDEN,
            verifier_tokens: Vec::new(),
            key_cache: true,
            access_log: false,
            metrics_listener: None,
            metrics_token: None,
            log_format: crate::telemetry::LogFormat::Text,
            tls: None,
            edge: crate::http::edge::EdgeLimits::default(),
            failed_auth_limit: crate::admission::throttle::THRESHOLD,
            max_org_storage: None,
            clock: crate::admission::quota::Clock::default(),
            body_budget: BodyBudget::DEFAULT_BYTES,
        }
    }
}

/// A bound listener for `GET /metrics` (`serve --metrics-listen`), handed
/// to [`crate::server::serve`] through [`Settings`]; taken by the first server
/// that runs with it.
#[derive(Debug, Clone)]
pub struct MetricsListener(Arc<Mutex<Option<std::net::TcpListener>>>);

impl MetricsListener {
    pub fn bind(address: impl std::net::ToSocketAddrs) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
        Ok(Self(Arc::new(Mutex::new(Some(listener)))))
    }

    /// The address it listens on; `None` once taken.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).as_ref().and_then(|l| l.local_addr().ok())
    }

    pub(crate) fn take(&self) -> Option<std::net::TcpListener> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}
