//! The attacks of an outside review, each kept as a regression test, and
//! the classes they belong to, on whichever backend `KEYGATE_TEST_DATABASE`
//! names (SQLite by default): every test talks to a real keygate over real
//! HTTP, and those about proxies go through the real nginx and Caddy with
//! the files keygate ships.
//!
//! - `climbing`: no principal ends up with more than the rules grant it —
//!   invitations, ranks, blocks, keys minted by keys;
//! - `model`: the same, as a property: random sequences of those
//!   operations by random principals, checked after every step against a
//!   model written from the rules;
//! - `proxies`: no request reaches the API that keygate did not approve, or
//!   approved as something else (header families, paths, identity headers);
//! - `races`: no change commits after the fact that forbids it — each check
//!   raced, fifty requests at a time, against the change that overturns it,
//!   and read back from the audit log's commit order;
//! - `exhaustion`: no unauthenticated request makes the server hold memory;
//! - `leaks`: no secret reaches the log.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod climbing;
mod exhaustion;
mod leaks;
mod model;
mod proxies;
mod races;
