//! keygate's storage: one trait per area, gathered in [`Store`], and a
//! backend per database, each with its own SQL and `migrations/`.
//!
//! The URL's scheme picks the backend (`sqlite://` or `postgres://`); any
//! other scheme is refused. Every backend runs its migrations on connect.
//! A write returns only once it is durable, and every change commits in one
//! transaction with its audit event: a change that cannot be audited does
//! not happen ([`StoreError::AuditUnavailable`]). Rules that must hold
//! against the rows as they stand (who may change a membership, the last
//! `super_admin`) are [`keygate_core::rules`] functions, called by the
//! backends under the organization's lock, over facts read in the write's
//! own transaction (see `decisions.rs`).

// A build without any backend still type-checks everything above the SQL.
#![cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]

mod apps;
mod audit;
mod backend;
pub mod blob;
mod change;
mod decisions;
mod error;
mod event;
mod invites;
mod key_blocks;
mod keys;
mod membership;
mod migrations;
mod model;
mod orgs;
mod outage;
#[cfg(feature = "postgres")]
pub mod postgres;
mod rows;
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod usage;
mod watchers;
mod windows;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keygate_core::limits::Window;
use keygate_core::{AppId, Email, KeyDigest, OrgName, Role};
use uuid::Uuid;

pub use error::{Entity, Result, StoreError};
pub use migrations::{Migration, MigrationPlan};
pub use model::*;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use windows::LocalWindows;

/// API keys: what authentication reads, and the writes of `/apikey`.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The key whose current secret has this digest, or whose previous
    /// secret has it and is still inside its rotation grace period.
    async fn key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKeyRecord>>;
    /// Like [`KeyStore::key_by_digest`], with the owner's current role in
    /// the key's organization (see [`DigestMatch::owner_role`]; `None` for a
    /// non-member), read in the same query: what authenticating a request needs.
    async fn key_and_owner_role(&self, digest: &KeyDigest) -> Result<Option<(ApiKeyRecord, Option<Role>)>> {
        let now = crate::now();
        let found = self.key_for_authentication(digest).await?;
        Ok(found
            .filter(|found| keygate_core::key_writes::secret_answers(found.valid_until, now))
            .map(|found| (found.key, found.owner_role)))
    }
    /// The key whose current or previous secret has `digest`, with what
    /// [`KeyStore::key_and_owner_role`] tells and until when the digest
    /// answers (the end of a rotation's grace period when it is the key's
    /// previous secret): what a cache of verified keys needs. Whether it
    /// still answers is [`keygate_core::key_writes::secret_answers`]'s to
    /// say: a previous secret is found after its grace period too.
    async fn key_for_authentication(&self, digest: &KeyDigest) -> Result<Option<DigestMatch>>;
    async fn key_by_id(&self, id: i64) -> Result<Option<ApiKeyRecord>>;
    /// Oldest first.
    async fn keys_of_user(&self, user_id: Uuid) -> Result<Vec<ApiKeyRecord>>;
    /// Keys scoped to the organization, oldest first.
    async fn keys_of_org(&self, org_id: Uuid) -> Result<Vec<ApiKeyRecord>>;
    /// A scoped key is created under its organization's lock, only while
    /// its organization exists and its user is a member
    /// ([`Entity::Organization`], [`Entity::Membership`] otherwise), and
    /// only if its expiry meets the organization's policy as it stands then
    /// ([`Refusal::ExpiryPolicy`](keygate_core::rules::Refusal::ExpiryPolicy)).
    /// Made with a key (`actor.key_id`), it is decided by
    /// [`keygate_core::key_writes::may_create_key`] over that key as it
    /// stands in the same transaction (held until the commit, so that a
    /// revocation of it meanwhile takes the new key too).
    async fn insert_key(&self, key: NewApiKey, actor: &Actor) -> Result<ApiKeyRecord>;
    /// `None` when the key no longer exists: an update never resurrects it.
    /// Made with a key, decided by [`keygate_core::key_writes::may_write_key`]
    /// over the facts read in the same transaction, as are
    /// [`KeyStore::delete_key`] and [`KeyStore::rotate_key`].
    async fn update_key(&self, id: i64, changes: KeyChanges, actor: &Actor) -> Result<Option<ApiKeyRecord>>;
    /// `false` when there was no such key.
    async fn delete_key(&self, id: i64, actor: &Actor) -> Result<bool>;
    /// Revokes a leaked key reported through `POST /apikey/revoke`: deletes
    /// the key that [`KeyStore::key_by_digest`] would find and, in the same
    /// transaction, every key it created, transitively (each audited as
    /// `apikey.revoke`). Returns the keys deleted, none when no key answers
    /// to the digest.
    async fn revoke_key(&self, digest: &KeyDigest, actor: &Actor) -> Result<Vec<ApiKeyRecord>>;
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
        actor: &Actor,
    ) -> Result<Option<ApiKeyRecord>>;
    /// Takes a lease of at least `need` of the key's credits, refilling its
    /// balance first if a refill period began by `now` (once, whatever the
    /// number of replicas): the whole lease is committed before it returns,
    /// and `granted` is 0 when the balance cannot cover `need`. `None` when
    /// the key is gone or its credits are unlimited.
    async fn lease_credits(&self, id: i64, need: u64, now: DateTime<Utc>) -> Result<Option<CreditLease>>;
    /// Hands back `amount` unused credits of a lease, unless the key's
    /// balance was set anew or refilled since `lease` was its balance.
    async fn return_credits(&self, id: i64, amount: u64, lease: keygate_core::limits::Balance) -> Result<()>;
}

/// Rate-limit windows that every replica serving the database shares: each
/// replica leases part of a window's `limit` and admits only what it
/// leased, so that together they never admit more than the limit.
#[async_trait]
pub trait RateWindows: Send + Sync {
    /// Leases at least `need` (all or nothing) of what is left of
    /// `window` of `subject`'s limit `name`: what was granted (0 when the
    /// window cannot cover `need`) and what is left after.
    async fn lease(
        &self,
        subject: &str,
        name: &str,
        window: Window,
        limit: u64,
        need: u64,
    ) -> Result<(u64, u64)>;
    /// Hands back `amount` unused of a lease, if that window is still the
    /// current one.
    async fn give_back(&self, subject: &str, name: &str, window_start_ms: i64, amount: u64) -> Result<()>;
}

/// Users, organizations and memberships.
#[async_trait]
pub trait OrgStore: Send + Sync {
    async fn has_users(&self) -> Result<bool>;
    /// Creates the user if the email is new, then the organization or the
    /// membership, then an unscoped `all` key: all or nothing, audited as
    /// the operator's.
    async fn enroll(&self, enrollee: Enrollee) -> Result<Enrollment>;
    async fn organization(&self, id: Uuid) -> Result<Option<Organization>>;
    /// A new organization with `owner` as its `super_admin`.
    async fn create_organization(&self, name: &OrgName, owner: Uuid, actor: &Actor) -> Result<Organization>;
    async fn update_organization(
        &self,
        id: Uuid,
        changes: OrgChanges,
        actor: &Actor,
    ) -> Result<Option<Organization>>;
    /// Deletes the organization with its memberships, scoped keys, apps,
    /// bundles and audit log, if [`keygate_core::rules::may_delete_organization`]
    /// lets `actor` (as its key acts there, read in the same transaction);
    /// leaves `organization.delete` in the instance's log, with what it
    /// held; returns the blob keys of the deleted bundles.
    async fn delete_organization(&self, id: Uuid, actor: &Actor) -> Result<Option<Vec<String>>>;
    /// The user's role in the organization, `None` when not a member.
    async fn role(&self, org_id: Uuid, user_id: Uuid) -> Result<Option<Role>>;
    /// Every organization the user belongs to, with their role, oldest first.
    async fn memberships(&self, user_id: Uuid) -> Result<Vec<Membership>>;
    async fn members(&self, org_id: Uuid) -> Result<Vec<Member>>;
    /// Changes a member's role. With an acting member (`actor.user_id`),
    /// their role is read under the organization's lock and
    /// [`keygate_core::rules::may_change_membership`] decides (only members
    /// change: a newcomer joins by invitation); the operator
    /// ([`Actor::OPERATOR`]) may also add anyone, creating the user if the
    /// email is new. [`keygate_core::rules::keeps_a_super_admin`] always
    /// binds.
    async fn set_member(&self, org_id: Uuid, email: &Email, role: Role, actor: &Actor) -> Result<Member>;
    /// Removes a member and the keys they hold scoped to the organization,
    /// under the same rules as [`OrgStore::set_member`]. `false` when they
    /// were not a member.
    async fn remove_member(&self, org_id: Uuid, user_id: Uuid, actor: &Actor) -> Result<bool>;
}

/// What an organization's admins see and stop of the keys that can act in
/// it: its scoped keys and its members' unscoped keys.
#[async_trait]
pub trait KeyBlockStore: Send + Sync {
    /// The user's role in the organization as key `key_id` acts there:
    /// `None` when not a member, or when that key is blocked there.
    async fn role_of_key(&self, org_id: Uuid, user_id: Uuid, key_id: i64) -> Result<Option<Role>>;
    /// Every key that can act in the organization, oldest first.
    async fn keys_acting_in(&self, org_id: Uuid) -> Result<Vec<KeyInOrg>>;
    /// Stops a member's unscoped key from acting in the organization
    /// (`apikey.block`), as [`keygate_core::rules::may_block`] decides over
    /// the acting member's role (as their key `actor.key_id` acts there) and
    /// the key's owner's, read under the organization's lock. Blocking
    /// twice is once.
    async fn block_key(&self, org_id: Uuid, key_id: i64, actor: &Actor) -> Result<()>;
    /// Lifts a block (`apikey.unblock`), as
    /// [`keygate_core::rules::may_unblock`] decides; `false` when there was none.
    async fn unblock_key(&self, org_id: Uuid, key_id: i64, actor: &Actor) -> Result<bool>;
}

/// Invitations to organizations.
#[async_trait]
pub trait InviteStore: Send + Sync {
    /// A new invitation, audited as `invite.create`, if
    /// [`keygate_core::rules::may_invite`] lets the acting member
    /// (`actor.user_id`) issue it, over their role and the invitee's read
    /// under the organization's lock ([`Entity::Organization`] when the
    /// organization is gone or the actor is not a member).
    async fn create_invite(&self, invite: NewInvite, actor: &Actor) -> Result<Invite>;
    /// The organization's invitations neither redeemed nor expired at
    /// `now`, newest first.
    async fn pending_invites(&self, org_id: Uuid, now: DateTime<Utc>) -> Result<Vec<Invite>>;
    /// Withdraws a pending invitation (`invite.revoke`), as
    /// [`keygate_core::rules::may_withdraw_invite`] decides; `false` when
    /// there was none with that id in that organization.
    async fn revoke_invite(&self, org_id: Uuid, id: i64, actor: &Actor) -> Result<bool>;
    /// Redeems the unexpired, unredeemed invitation whose code has
    /// `digest`, all at once, as [`keygate_core::rules::may_redeem`]
    /// decides over the inviter's role now and the invitee's account, read
    /// under the organization's lock: marks it used, adds the membership
    /// with the invitation's role, and, for a new address, creates the
    /// account and its first key (of `redeemer.first_key`). `None` when no
    /// such invitation exists; a refusal changes nothing.
    async fn redeem_invite(
        &self,
        digest: &[u8; 32],
        now: DateTime<Utc>,
        redeemer: Redeemer,
    ) -> Result<Option<Redeemed>>;
}

/// Apps and their bundles.
#[async_trait]
pub trait AppStore: Send + Sync {
    async fn create_app(&self, org_id: Uuid, app_id: &AppId, name: &str, actor: &Actor) -> Result<App>;
    async fn app(&self, app_id: &AppId) -> Result<Option<App>>;
    /// By app id.
    async fn apps_of_org(&self, org_id: Uuid) -> Result<Vec<App>>;
    /// Apps of every organization the user belongs to, by app id.
    async fn apps_of_user(&self, user_id: Uuid) -> Result<Vec<App>>;
    async fn rename_app(&self, app_id: &AppId, name: &str, actor: &Actor) -> Result<Option<App>>;
    /// Returns the blob keys of the app's bundles, `None` if there was no app.
    async fn delete_app(&self, app_id: &AppId, actor: &Actor) -> Result<Option<Vec<String>>>;
    async fn insert_bundle(&self, bundle: NewBundle, actor: &Actor) -> Result<Bundle>;
    /// Oldest first.
    async fn bundles(&self, app_id: &AppId) -> Result<Vec<Bundle>>;
    async fn bundle(&self, app_id: &AppId, version: &str) -> Result<Option<Bundle>>;
    /// Returns the deleted bundle, whose blob the caller removes.
    async fn delete_bundle(&self, app_id: &AppId, version: &str, actor: &Actor) -> Result<Option<Bundle>>;
    /// The blob key of every bundle: what the blob directory must keep.
    async fn blob_keys(&self) -> Result<Vec<String>>;
    /// The bytes the bundles of the organization's apps take.
    async fn org_storage(&self, org_id: Uuid) -> Result<u64>;
}

/// What keys did, per day.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Records what keys did, many at once: when last used (never moving
    /// backwards) and requests per day, added to what is there. Keys deleted
    /// meanwhile are skipped.
    async fn record_usage(&self, uses: &[KeyUse]) -> Result<()>;
    /// A key's requests per day from `since` on, oldest first; days without
    /// requests are absent.
    async fn key_usage(&self, key_id: i64, since: chrono::NaiveDate) -> Result<Vec<DailyUse>>;
}

/// The audit log, written by every change inside its own transaction.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// An organization's audit log, newest first: at most `limit` events,
    /// older than the event `before` when given.
    async fn audit_events(&self, org_id: Uuid, before: Option<i64>, limit: i64) -> Result<Vec<AuditEvent>>;
    /// The instance's own log (users created, organizations deleted),
    /// newest first, as [`AuditStore::audit_events`] pages.
    async fn instance_events(&self, before: Option<i64>, limit: i64) -> Result<Vec<InstanceEvent>>;
}

/// Everything keygate keeps. The HTTP layer and the CLI see only this; a
/// decorator (a cache) wraps just the area traits it needs.
#[async_trait]
pub trait Store:
    KeyStore + OrgStore + InviteStore + KeyBlockStore + AppStore + UsageStore + AuditStore + 'static
{
    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> Result<()>;
    /// Waits for in-flight queries and closes every connection.
    async fn close(&self);
    /// Keeps `cache` coherent with the database: every change committed by
    /// this store invalidates it before the write returns, and a backend
    /// that can see other processes' writes starts a watcher (it needs a
    /// Tokio runtime; [`Store::close`] stops it) that invalidates on theirs
    /// and tells the cache how long it may be trusted. By default nothing
    /// is watched, so the cache is never trusted.
    fn attach_cache(&self, cache: Arc<dyn AuthCache>) {
        let _ = cache;
    }
    /// How the connection pools are used right now, for monitoring; read
    /// without waiting. By default nothing is reported.
    fn pool_use(&self) -> Vec<PoolUse> {
        Vec::new()
    }
    /// Shares a failed authentication from `client` with every other
    /// process serving the database (which tells its [`FailureFeed`]),
    /// without waiting: it is queued, and dropped when the queue is full.
    /// By default, a backend served by one process (SQLite), there is
    /// nobody to tell.
    fn share_auth_failure(&self, client: IpAddr) {
        let _ = client;
    }
    /// Tells `feed` of the failed authentications other processes record,
    /// from those of the last `window` on (it needs a Tokio runtime;
    /// [`Store::close`] stops it). By default nothing is told.
    fn attach_failure_feed(&self, feed: Arc<dyn FailureFeed>, window: std::time::Duration) {
        let _ = (feed, window);
    }
    /// Where bundle bytes live when the database keeps them for every
    /// replica; `None` (the default, SQLite) leaves them to a directory.
    fn shared_blobs(&self) -> Option<Arc<dyn blob::SharedBlobs>> {
        None
    }
    /// Where rate-limit windows live when other replicas may share them;
    /// `None` (the default, SQLite: one process serves the file) leaves
    /// them to the process's memory.
    fn rate_windows(&self) -> Option<Arc<dyn RateWindows>> {
        None
    }
}

/// What the failed-authentication throttle learns from other replicas
/// ([`Store::attach_failure_feed`]); called synchronously.
pub trait FailureFeed: Send + Sync + 'static {
    /// Another replica recorded a failure from `client` at `at`; `id` tells
    /// it from every other failure (the same one may come twice).
    fn failed(&self, id: i64, client: IpAddr, at: std::time::SystemTime);
    /// Every failure other replicas recorded within the window, read after
    /// (re)subscribing: replaces all that was known of theirs, so that
    /// nothing missed meanwhile is lost and nothing is counted twice.
    fn reload(&self, failures: Vec<(i64, IpAddr, std::time::SystemTime)>);
}

/// One connection pool's use at an instant (see [`Store::pool_use`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUse {
    /// A fixed name, such as `main` or `listen`: never a URL or a secret.
    pub pool: &'static str,
    /// Connections open, idle or in use.
    pub size: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// The most connections the pool may open.
    pub max: u32,
}

/// A cache of what authentication reads, kept honest by the store it is
/// attached to ([`Store::attach_cache`]). Every method is called
/// synchronously, never across an `.await`.
pub trait AuthCache: Send + Sync + 'static {
    /// `change` was committed: drop what it may have made stale.
    fn changed(&self, change: &AuthChange);
    /// Anything may have changed: drop everything.
    fn flush(&self);
    /// Every change committed before `checked` has been applied: the cache
    /// may be trusted until `checked` plus the lease the cache chooses.
    fn confirmed(&self, checked: std::time::Instant);
    /// Changes may be missed from now on: do not trust the cache until the
    /// next [`AuthCache::confirmed`] (which a [`AuthCache::flush`] precedes).
    fn distrust(&self);
}

/// What a process opens the database for; it matters for a SQLite file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `keygate serve`: a missing file is created (with a warning), and the
    /// file is held for this process alone while it runs.
    Serve,
    /// A missing file is created (`keygate bootstrap`).
    Create,
    /// The database must exist already (`keygate user add`): a mistyped
    /// path must not leave a stray empty database behind.
    Existing,
}

/// Opens the database named by `url`, creating a missing SQLite file, and
/// runs its migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    connect_for(url, Access::Create).await
}

/// Opens the database named by `url` for `access`, running its migrations.
pub async fn connect_for(url: &str, access: Access) -> Result<Arc<dyn Store>> {
    match backend_of(url)? {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => Ok(Arc::new(SqliteStore::connect(url, access).await?)),
        #[cfg(feature = "postgres")]
        Backend::Postgres => Ok(Arc::new(PostgresStore::connect(url).await?)),
    }
}

/// The schema steps the database at `url` has not had yet, and any it has
/// that this binary does not know, read without changing anything.
pub async fn migration_plan(url: &str) -> Result<MigrationPlan> {
    match backend_of(url)? {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => sqlite::migration_plan(url).await,
        #[cfg(feature = "postgres")]
        Backend::Postgres => postgres::migration_plan(url).await,
    }
}

/// `Ok` when `url` names a backend this build has, without connecting.
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    backend_of(url).map(|_| ()).map_err(|e| e.to_string())
}

/// The backends a URL's scheme can name.
enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
}

fn backend_of(url: &str) -> Result<Backend> {
    // `postgres:user:password@…` is no URL: PostgreSQL would read it all as
    // a database name and echo it, password included, in its error.
    if url.starts_with("postgres") && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        return Err(StoreError::Config(
            "a PostgreSQL URL begins with postgres:// (postgres://USER@HOST/DATABASE)".into(),
        ));
    }
    match url.split_once(':').map(|(scheme, _)| scheme) {
        #[cfg(feature = "sqlite")]
        Some("sqlite") => Ok(Backend::Sqlite),
        #[cfg(feature = "postgres")]
        Some("postgres" | "postgresql") => Ok(Backend::Postgres),
        Some(other) => Err(StoreError::Config(format!(
            "unsupported database scheme `{other}:` (or a backend left out of this build); \
             use sqlite://PATH or postgres://USER@HOST/DATABASE"
        ))),
        None => {
            Err(StoreError::Config("the database URL needs a scheme, such as sqlite://keygate.db".into()))
        }
    }
}

/// The database URL as it may be logged: no credentials, no parameters.
pub fn describe_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let rest = rest.split('?').next().unwrap_or_default();
            format!("{scheme}://{rest}")
        }
        None => "<unparsable URL>".to_owned(),
    }
}

/// A text (such as a driver's error) as it may be logged: the credentials
/// of any URL in it are cut out.
pub fn redact_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (head, tail) = rest.split_at(start + 3);
        out.push_str(head);
        let authority_end =
            tail.find(|c: char| c == '/' || c == '?' || c.is_whitespace()).unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => {
                out.push('…');
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
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

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_never_appear_in_what_is_logged() {
        let url = "postgres://admin:s3cret@db.example:5432/keygate?sslmode=require";
        assert_eq!(super::describe_url(url), "postgres://db.example:5432/keygate");
        assert_eq!(super::describe_url("sqlite://keygate.db"), "sqlite://keygate.db");
        let error = format!("cannot connect to {url}: refused");
        let redacted = super::redact_credentials(&error);
        assert!(!redacted.contains("s3cret") && !redacted.contains("admin"), "{redacted}");
        assert!(redacted.contains("db.example:5432/keygate"), "{redacted}");
        assert_eq!(super::redact_credentials("no url here"), "no url here");
    }
}
