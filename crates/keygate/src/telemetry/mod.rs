//! What the server records about itself, off the request path: the
//! metrics registry ([`metrics`]), the access log ([`access_log`]) and the
//! writer both log to ([`log_writer`]).

/// The release, from the workspace's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit the binary was built from (see `build.rs`).
pub const COMMIT: &str = env!("KEYGATE_COMMIT");

pub mod access_log;
pub mod log_writer;
pub mod metrics;

/// How log lines are written (`--log-format`): `text` for people, `json`
/// (one object per line, the access log's too) for log shippers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}
