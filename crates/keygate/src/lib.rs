//! keygate: a self-hostable API key service implementing the Capgo `/apikey`
//! API and the authorization model behind it.
//!
//! The path of a request: [`router`] (one file, every route and layer) →
//! [`auth`] (the [`auth::Caller`] extractor: client address, the
//! failed-authentication guard, then [`authenticator`]: header → key format
//! → digest → store → principal) → a handler in [`api`] that declares the
//! action it needs and asks [`keygate_core::authz`] and
//! [`keygate_core::rules`] → the store, which commits each change with its
//! audit event → one [`error::ApiError`] shape.

pub mod access_log;
pub mod admin;
pub mod api;
pub mod auth;
pub mod authenticator;
pub mod blobs;
pub mod cli;
pub mod client;
pub mod console;
pub mod edge;
pub mod error;
pub mod extract;
pub mod forward_auth;
pub mod key_cache;
pub mod limits;
pub mod log_writer;
pub mod metrics;
pub mod observe;
pub mod quota;
pub mod router;
pub mod server;
pub mod state;
pub mod usage;

pub use blobs::BlobStore;
pub use server::{serve, shutdown_signal};
pub use state::{AppState, BODY_LIMIT, DEFAULT_MAX_BUNDLE_SIZE, MetricsListener, Settings, VerifierToken};
pub use usage::UsageRecorder;
