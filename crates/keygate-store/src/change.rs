//! How every backend ends a change: the commit, then the announcement of
//! what it changed for authentication; and the one change made alike to
//! any key, whatever the statement.

use std::sync::{Arc, PoisonError, RwLock};

use sqlx::query::QueryAs;
use sqlx::{Executor, FromRow, IntoArguments, Transaction};

use crate::error::{Entity, write_error};
use crate::event::{AuditLog, Event};
use crate::rows::{BY_EITHER_DIGEST, KeyRow, VALID_UNTIL, one};
use crate::{Actor, ApiKeyRecord, AuditAction, AuthCache, AuthChange, Result};
use keygate_core::key_writes::secret_answers;

/// Where a backend announces [`AuthChange`]s after its commits: to the
/// caches attached to the store, synchronously, then to subscribers.
#[derive(Clone)]
pub(crate) struct ChangeFeed {
    sender: tokio::sync::broadcast::Sender<AuthChange>,
    caches: Arc<RwLock<Vec<Arc<dyn AuthCache>>>>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self { sender: tokio::sync::broadcast::channel(1024).0, caches: Arc::default() }
    }
}

impl ChangeFeed {
    /// Announces every change of the transaction inside it (where the
    /// database can tell other processes, delivered only on commit), commits
    /// `tx`, then invalidates the attached caches before returning, and
    /// announces the changes to subscribers; nobody listening is fine. A
    /// transaction that fails to commit announces nothing.
    pub(crate) async fn commit<DB: AuditLog>(
        &self,
        mut tx: Transaction<'_, DB>,
        changes: impl IntoIterator<Item = AuthChange>,
    ) -> Result<()> {
        let changes: Vec<AuthChange> = changes.into_iter().collect();
        if !changes.is_empty() {
            DB::announce(&mut tx, &changes).await?;
        }
        tx.commit().await?;
        self.published(changes);
        Ok(())
    }

    /// Announces `changes`, just committed: invalidates the attached caches,
    /// then tells subscribers.
    pub(crate) fn published(&self, changes: Vec<AuthChange>) {
        if !changes.is_empty() {
            let caches = self.caches.read().unwrap_or_else(PoisonError::into_inner);
            for change in &changes {
                caches.iter().for_each(|cache| cache.changed(change));
            }
        }
        for change in changes {
            let _ = self.sender.send(change);
        }
    }

    /// From now on, every change committed through this feed invalidates
    /// `cache` before the write returns.
    pub(crate) fn attach(&self, cache: Arc<dyn AuthCache>) {
        self.caches.write().unwrap_or_else(PoisonError::into_inner).push(cache);
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<AuthChange> {
        self.sender.subscribe()
    }

    /// Runs `statement`, a change of one existing key that returns it, in
    /// `tx`; if it found the key, writes the change's event, commits and
    /// announces [`AuthChange::Key`]. A new secret already in use is a
    /// conflict.
    pub(crate) async fn change_key<'q, DB>(
        &self,
        mut tx: Transaction<'_, DB>,
        statement: QueryAs<'q, DB, KeyRow, DB::Arguments<'q>>,
        action: AuditAction,
        actor: &Actor,
    ) -> Result<Option<ApiKeyRecord>>
    where
        DB: AuditLog,
        KeyRow: for<'r> FromRow<'r, DB::Row>,
        DB::Arguments<'q>: IntoArguments<'q, DB>,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    {
        let Some(key) = change_key(&mut *tx, statement, action, actor).await? else {
            return Ok(None);
        };
        self.commit(tx, [AuthChange::Key { id: key.id }]).await?;
        Ok(Some(key))
    }
}

/// Runs `statement`, a change of one existing key that returns it, on
/// `conn`; if it found the key, writes the change's event. A new secret
/// already in use is a conflict. The caller commits and announces
/// [`AuthChange::Key`].
pub(crate) async fn change_key<'q, DB>(
    conn: &mut DB::Connection,
    statement: QueryAs<'q, DB, KeyRow, DB::Arguments<'q>>,
    action: AuditAction,
    actor: &Actor,
) -> Result<Option<ApiKeyRecord>>
where
    DB: AuditLog,
    KeyRow: for<'r> FromRow<'r, DB::Row>,
    DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let row = statement
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| write_error(e, Entity::ApiKey, Entity::ApiKey))?;
    let Some(key) = one::<_, ApiKeyRecord>(row)? else {
        return Ok(None);
    };
    // The owner's memberships are untouched, even by a delete: an unscoped
    // key's event still finds its organizations.
    DB::log_key(conn, &key, Event::new(action, key.id, actor)).await?;
    Ok(Some(key))
}

/// The keys a leak report of the digest `$1` names: those it answers for
/// at `now` ([`secret_answers`]), its current secret or a previous one
/// inside the rotation's grace period. `lock` is appended to the read.
pub(crate) async fn answering<DB>(
    conn: &mut DB::Connection,
    digest: &keygate_core::KeyDigest,
    now: chrono::DateTime<chrono::Utc>,
    lock: &str,
) -> Result<Vec<i64>>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> Vec<u8>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (i64, Option<chrono::DateTime<chrono::Utc>>): FromRow<'r, DB::Row>,
{
    let sql = format!("SELECT id, {VALID_UNTIL} AS valid_until FROM api_keys WHERE {BY_EITHER_DIGEST}{lock}");
    let rows: Vec<(i64, Option<chrono::DateTime<chrono::Utc>>)> =
        sqlx::query_as(&sql).bind(digest.as_bytes().to_vec()).fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().filter(|(_, until)| secret_answers(*until, now)).map(|(id, _)| id).collect())
}

/// Runs `statement`, which deletes a lineage of keys, on `conn` and writes an
/// `apikey.revoke` event for each key it deleted, which it returns. The
/// caller commits and announces [`AuthChange::Key`] for each.
pub(crate) async fn revoke_lineage<'q, DB>(
    conn: &mut DB::Connection,
    statement: QueryAs<'q, DB, KeyRow, DB::Arguments<'q>>,
    actor: &Actor,
) -> Result<Vec<ApiKeyRecord>>
where
    DB: AuditLog,
    KeyRow: for<'r> FromRow<'r, DB::Row>,
    DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let rows = statement.fetch_all(&mut *conn).await?;
    let keys: Vec<ApiKeyRecord> = crate::rows::all(rows)?;
    for key in &keys {
        DB::log_key(conn, key, Event::new(AuditAction::ApiKeyRevoke, key.id, actor)).await?;
    }
    Ok(keys)
}
