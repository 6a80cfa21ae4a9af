//! keygate's pure core: the API key format and the authorization decision.
//!
//! Nothing here performs I/O, so every rule in this crate can be tested in
//! isolation and reused by every storage backend and transport.

pub mod authz;
pub mod bounds;
pub mod domain;
pub mod key;
pub mod key_writes;
pub mod limits;
pub mod rules;

pub use authz::{Action, AppWrite, Decision, Mode, Role, Scope};
pub use domain::{AppId, Email, KeyName, OrgName};
pub use key::{ApiKeySecret, KeyDigest, KeyFormatError};
pub use rules::Refusal;
