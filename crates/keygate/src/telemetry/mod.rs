//! What the server records about itself, off the request path: the
//! metrics registry ([`metrics`]), the access log ([`access_log`]) and the
//! writer both log to ([`log_writer`]).

pub mod access_log;
pub mod log_writer;
pub mod metrics;
