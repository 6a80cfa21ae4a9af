//! `/apikey`: list, read, create, change, rotate and delete API keys, read
//! their usage, and revoke a leaked one; one module per concern.
//!
//! Every request but `POST /apikey/revoke` (which needs no key at all) needs
//! a key of mode `all`. Which keys a caller sees is
//! [`rules::may_see_key`]; any other key answers 404, never 403, so that ids
//! cannot be probed. Nobody creates or changes a key into more than the
//! caller has ([`Principal::may_grant`]), and an organization's expiry
//! policy binds every key scoped to it.
//!
//! [`Principal::may_grant`]: keygate_core::authz::Principal::may_grant

mod create;
mod key;
mod lifecycle;
pub mod limit_fields;
mod manage;
mod usage;

pub use create::*;
pub use lifecycle::*;
pub use manage::*;
pub use usage::*;

pub use key::{ApiKeyView, KeyPath, ManagedKey, OneKey, new_key_material};
