//! What each backend gives the code both share: a place to read, and a
//! transaction to write in. A write reads the facts it is decided on in its
//! own transaction, before the statement that changes anything: under
//! SQLite's single writer nothing moves meanwhile; PostgreSQL takes the row
//! locks [`lock_org`] and [`Db::locking`] name, which SQLite reads as plain
//! reads.

use async_trait::async_trait;
use uuid::Uuid;

use crate::sql::{Db, sql};
use crate::usage::KeyTotal;
use crate::{AuthChange, Entity, Result, StoreError};

pub(crate) type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What a write that succeeded hands back: its value, and the changes it
/// made to what authentication returns (announced once it commits).
pub(crate) type Written<T> = (T, Vec<AuthChange>);

#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    /// Where reads run: a pool.
    fn reads(&self) -> Db<'_>;

    /// Runs `work` in a transaction of its own and commits it; returns its
    /// value once the commit is durable and its changes are announced (the
    /// caches attached to the store invalidated). An error of `work` rolls
    /// back what it did, and nothing is announced.
    async fn transact<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Db<'c>) -> BoxFuture<'c, Result<Written<T>>> + Send + 'static;

    /// Writes a batch of usage ([`crate::usage::per_key`]) in one
    /// transaction, in as few statements as the database allows.
    async fn write_usage(&self, keys: Vec<KeyTotal>) -> Result<()>;
}

/// How a transaction holds a row it read until it ends (on PostgreSQL; under
/// SQLite's single writer every row read in a write stays as read).
#[derive(Debug, Clone, Copy)]
pub(crate) enum RowLock {
    /// For a change of memberships or of an organization: such changes, and
    /// [`RowLock::Share`] holders, wait for each other.
    ///
    /// `FOR NO KEY UPDATE` rather than `FOR UPDATE`: it excludes every other
    /// explicit lock just the same, but not the `KEY SHARE` lock of a
    /// foreign-key check. A transaction that holds a key's row and then
    /// writes its audit event (a key check on the organization) must not
    /// wait for us while we wait for that key's row (`remove_member`
    /// deleting it): that is a deadlock.
    Exclusive,
    /// For creating a scoped key or an app, and for deciding a change of a
    /// key: side by side with other holders, never while an
    /// [`RowLock::Exclusive`] holder is at work.
    Share,
    /// For the rows a statement is about to change.
    Update,
    /// For a row others may change but not delete, nor change the key of:
    /// an app a bundle is added to.
    KeyShare,
}

impl Db<'_> {
    /// What a `SELECT` ends with to hold the rows it reads as `lock` says.
    pub(crate) fn locking(&self, lock: RowLock) -> &'static str {
        match (self.is_postgres(), lock) {
            (false, _) => "",
            (true, RowLock::Exclusive) => " FOR NO KEY UPDATE",
            (true, RowLock::Share) => " FOR SHARE",
            (true, RowLock::Update) => " FOR UPDATE",
            (true, RowLock::KeyShare) => " FOR KEY SHARE",
        }
    }
}

/// Holds the organization's row as `lock` says where the database needs it
/// (PostgreSQL), without checking that it exists: SQLite's single writer
/// already keeps every other write out, and costs no statement for it.
pub(crate) async fn hold_org(db: &mut Db<'_>, org_id: Uuid, lock: RowLock) -> Result<()> {
    if db.is_postgres() { lock_org(db, org_id, lock).await } else { Ok(()) }
}

/// Holds the organization's row as `lock` says; [`Entity::Organization`]
/// when there is no such organization.
pub(crate) async fn lock_org(db: &mut Db<'_>, org_id: Uuid, lock: RowLock) -> Result<()> {
    let text = format!("SELECT id FROM organizations WHERE id = $1{}", db.locking(lock));
    let locked: Option<Uuid> = sql(&text).bind(org_id).scalar(db).await?;
    locked.map(drop).ok_or(StoreError::NotFound(Entity::Organization))
}
