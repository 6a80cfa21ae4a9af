//! The HTTP edge, below everything that knows about keys: the listener and
//! its limits ([`edge`]), where a request comes from ([`client_address`]),
//! the request parts handlers read ([`extract`]), the one error shape every
//! answer takes ([`error`]), and what of a request may be shown
//! ([`redact`]).

pub mod client_address;
pub mod edge;
pub mod error;
pub mod extract;
pub mod redact;
pub mod tls;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A request's target as the client sent it, before the router trimmed its
/// trailing slashes (kept for `/auth/…`, see `server::router`).
#[derive(Debug, Clone)]
pub struct SentTarget(pub axum::http::Uri);
