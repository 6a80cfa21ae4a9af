//! keygate over real HTTP: each test starts its own server on a loopback
//! port with its own database, and talks to it with a real client.

mod apikey_create;
mod apikey_manage;
mod apps;
mod audit;
mod auth;
mod bundles;
mod cache;
mod forward_auth;
mod helpers;
mod http_edges;
mod input;
mod invites;
mod key_limits;
mod limits;
mod members;
mod metrics;
mod openapi;
mod org_keys;
mod organizations;
mod permissions;
mod verify;
