//! keygate's storage: one [`Store`] trait and a backend per database.
//!
//! The URL's scheme picks the backend (`sqlite://` or `postgres://`); any
//! other scheme is refused. Every backend runs its own embedded migrations
//! on connect, and a write returns only once it is durable.

mod model;
mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keygate_core::{AppId, Email, KeyDigest, OrgName, Role};
use uuid::Uuid;

pub use model::*;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A storage failure. Its `Display` never holds a secret or a bound value.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is too busy: retry later (503).
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("an organization keeps at least one super_admin")]
    LastSuperAdmin,
    /// The change would touch or grant a role above the acting member's.
    #[error("that role is above the acting member's own")]
    RoleAboveOwn,
    /// A row that the code cannot read back: a bug or a hand-edited database.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("cannot open the database: {0}")]
    Config(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &error {
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::Protocol(_) => {
                StoreError::Unavailable(error)
            }
            E::Database(db) if is_transient(db.code().as_deref()) => StoreError::Unavailable(error),
            _ => StoreError::Database(error),
        }
    }
}

/// SQLite's BUSY/LOCKED, PostgreSQL's connection and shutdown classes, and
/// a cancelled statement.
fn is_transient(code: Option<&str>) -> bool {
    // 57014: statement_timeout, a stalled database; 40001 and 40P01: a
    // serialization failure or deadlock, which a retry resolves.
    matches!(code, Some("5" | "6" | "517" | "261" | "262" | "57014" | "40001" | "40P01"))
        || code.is_some_and(|c| c.starts_with("08") || c.starts_with("57P"))
}

/// Everything keygate keeps. One implementation per database; the HTTP layer
/// and the CLI see only this trait.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> Result<()>;
    /// Waits for in-flight queries and closes every connection.
    async fn close(&self);

    async fn has_users(&self) -> Result<bool>;
    /// Creates the user if the email is new, then the organization or the
    /// membership, then an unscoped `all` key: all or nothing.
    async fn enroll(&self, enrollee: Enrollee) -> Result<Enrollment>;

    async fn organization(&self, id: Uuid) -> Result<Option<Organization>>;
    async fn update_organization(&self, id: Uuid, changes: OrgChanges) -> Result<Option<Organization>>;
    /// The user's role in the organization, `None` when not a member.
    async fn role(&self, org_id: Uuid, user_id: Uuid) -> Result<Option<Role>>;

    /// A new organization with `owner` as its `super_admin`.
    async fn create_organization(&self, name: &OrgName, owner: Uuid) -> Result<Organization>;
    /// Every organization the user belongs to, with their role, oldest first.
    async fn memberships(&self, user_id: Uuid) -> Result<Vec<Membership>>;
    /// Deletes the organization with its memberships, scoped keys, apps and
    /// bundles; returns the blob keys of the deleted bundles.
    async fn delete_organization(&self, id: Uuid) -> Result<Option<Vec<String>>>;

    async fn members(&self, org_id: Uuid) -> Result<Vec<Member>>;
    /// Adds the user (created if the email is new) or changes their role.
    async fn set_member(&self, change: MemberChange, email: &Email, role: Role) -> Result<Member>;
    /// Removes a member and the keys they hold scoped to the organization.
    /// `false` when they were not a member.
    async fn remove_member(&self, change: MemberChange, user_id: Uuid) -> Result<bool>;

    async fn create_app(&self, org_id: Uuid, app_id: &AppId, name: &str) -> Result<App>;
    async fn app(&self, app_id: &AppId) -> Result<Option<App>>;
    async fn apps_of_org(&self, org_id: Uuid) -> Result<Vec<App>>;
    /// Apps of every organization the user belongs to.
    async fn apps_of_user(&self, user_id: Uuid) -> Result<Vec<App>>;
    async fn rename_app(&self, app_id: &AppId, name: &str) -> Result<Option<App>>;
    /// Returns the blob keys of the app's bundles, `None` if there was no app.
    async fn delete_app(&self, app_id: &AppId) -> Result<Option<Vec<String>>>;

    async fn insert_bundle(&self, bundle: NewBundle) -> Result<Bundle>;
    async fn bundles(&self, app_id: &AppId) -> Result<Vec<Bundle>>;
    async fn bundle(&self, app_id: &AppId, version: &str) -> Result<Option<Bundle>>;
    /// Returns the deleted bundle, whose blob the caller removes.
    async fn delete_bundle(&self, app_id: &AppId, version: &str) -> Result<Option<Bundle>>;

    /// The key whose current secret has this digest, or whose previous
    /// secret has it and is still inside its rotation grace period.
    async fn key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKeyRecord>>;
    async fn key_by_id(&self, id: i64) -> Result<Option<ApiKeyRecord>>;
    async fn keys_of_user(&self, user_id: Uuid) -> Result<Vec<ApiKeyRecord>>;
    async fn keys_of_org(&self, org_id: Uuid) -> Result<Vec<ApiKeyRecord>>;
    async fn insert_key(&self, key: NewApiKey) -> Result<ApiKeyRecord>;
    /// `None` when the key no longer exists: an update never resurrects it.
    async fn update_key(&self, id: i64, changes: KeyChanges) -> Result<Option<ApiKeyRecord>>;
    /// `false` when there was no such key.
    async fn delete_key(&self, id: i64) -> Result<bool>;
    /// Like [`Store::key_by_digest`], with the owner's current role in the
    /// key's organization (`None` for an unscoped key or a non-member), read
    /// in the same query: what authenticating a request needs.
    async fn key_and_owner_role(&self, digest: &KeyDigest) -> Result<Option<(ApiKeyRecord, Option<Role>)>>;
    /// Deletes the key that [`Store::key_by_digest`] would find, returning it.
    async fn delete_key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKeyRecord>>;
    /// Gives the key a new secret, if its current secret is still `current`:
    /// of two rotations at once, one wins and the other finds `None`. With
    /// `grace_until`, the current secret keeps working until then; without,
    /// it stops at once. `None` when the key is gone or changed meanwhile.
    async fn rotate_key(
        &self,
        id: i64,
        current: &KeyDigest,
        material: KeyMaterial,
        grace_until: Option<DateTime<Utc>>,
    ) -> Result<Option<ApiKeyRecord>>;
    /// Appends to an organization's audit log; an organization deleted
    /// meanwhile takes the event with it.
    async fn record_audit(&self, event: NewAuditEvent) -> Result<()>;
    /// An organization's audit log, newest first: at most `limit` events,
    /// older than the event `before` when given.
    async fn audit_events(&self, org_id: Uuid, before: Option<i64>, limit: i64) -> Result<Vec<AuditEvent>>;

    /// Records what keys did, many at once: when last used (never moving
    /// backwards) and requests per day, added to what is there. Keys deleted
    /// meanwhile are skipped.
    async fn record_usage(&self, uses: &[KeyUse]) -> Result<()>;
    /// A key's requests per day from `since` on, oldest first; days without
    /// requests are absent.
    async fn key_usage(&self, key_id: i64, since: chrono::NaiveDate) -> Result<Vec<DailyUse>>;
}

/// Opens the database named by `url`, running its migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("sqlite") => Ok(Arc::new(SqliteStore::connect(url).await?)),
        Some("postgres" | "postgresql") => Ok(Arc::new(PostgresStore::connect(url).await?)),
        Some(other) => Err(StoreError::Config(format!(
            "unsupported database scheme `{other}:`; use sqlite://PATH or postgres://USER@HOST/DATABASE"
        ))),
        None => {
            Err(StoreError::Config("the database URL needs a scheme, such as sqlite://keygate.db".into()))
        }
    }
}

/// Times are kept to the millisecond, so that every backend hands back
/// exactly what it was given.
pub fn now() -> DateTime<Utc> {
    truncate(Utc::now())
}

pub fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::DurationRound;
    at.duration_trunc(chrono::Duration::milliseconds(1)).unwrap_or(at)
}
