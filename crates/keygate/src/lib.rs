//! keygate: a self-hostable API key service implementing the Capgo `/apikey`
//! API and the authorization model behind it.
//!
//! The modules, in layers: each imports only from layers below it (and from
//! `keygate_core` and `keygate_store`), never from one above; nothing
//! imports through this root, and no modules import each other in a
//! circle. `.ci/module-graph` checks it. Handlers and extractors take the
//! part of the state they need through axum's `FromRef` where one part
//! suffices ([`admission::Admission`], `/auth`'s configuration
//! ([`admission::forward_auth::Forwarding`]), the store, the blob store,
//! the body budget, the client-address policy).
//!
//! 1. [`http`]: the edge listener, client addresses, extractors, the one
//!    error shape, redaction.
//! 2. [`telemetry`]: the metrics registry, the access log.
//! 3. [`admission`]: who is calling and what they may spend: the
//!    [`Caller`](admission::caller::Caller) extractor, the one
//!    verification path `/verify` and `/auth` share, the authenticator and
//!    its key cache, quotas, usage, the failed-authentication throttle,
//!    forward-auth rules and judging.
//! 4. [`state`]: what handlers share ([`AppState`]), its sub-states, the
//!    settings, the blob store.
//! 5. [`api`]: the handlers, one module per resource, and the OpenAPI
//!    document; they declare the action they need and ask
//!    [`keygate_core::authz`] and [`keygate_core::rules`].
//! 6. [`server`]: the router, the observe layer, `/metrics`, start-up and
//!    shutdown.
//! 7. [`cli`]: the commands, the HTTP client, enrolling users.
//!
//! The path of a request: [`server::router`] → the
//! [`Caller`](admission::caller::Caller) extractor (client address, the
//! failed-authentication throttle, then the authenticator: header → key
//! format → digest → store → principal) → a handler in [`api`] → the store,
//! which commits each change with its audit event → one
//! [`ApiError`](http::error::ApiError) shape.

pub mod admission;
pub mod api;
pub mod cli;
pub mod http;
pub mod server;
pub mod state;
pub mod telemetry;

pub use cli::admin;
pub use http::BODY_LIMIT;
pub use server::{serve, shutdown_signal};
pub use state::blobs::BlobStore;
pub use state::{AppState, DEFAULT_MAX_BUNDLE_SIZE, MetricsListener, Settings, VerifierToken};
pub use telemetry::{COMMIT, VERSION};
