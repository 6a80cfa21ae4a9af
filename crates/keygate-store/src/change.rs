//! How every backend ends a change: the commit, then the announcement of
//! what it changed for authentication; and the one change made alike to
//! any key, whatever the statement.

use sqlx::query::QueryAs;
use sqlx::{Database, Executor, FromRow, IntoArguments, Transaction};

use crate::error::{Entity, write_error};
use crate::event::{AuditLog, Event};
use crate::rows::{KeyRow, one};
use crate::{Actor, ApiKeyRecord, AuditAction, AuthChange, Result};

/// Where a backend announces [`AuthChange`]s after its commits.
#[derive(Debug, Clone)]
pub(crate) struct ChangeFeed(tokio::sync::broadcast::Sender<AuthChange>);

impl Default for ChangeFeed {
    fn default() -> Self {
        Self(tokio::sync::broadcast::channel(1024).0)
    }
}

impl ChangeFeed {
    /// Commits `tx`, then announces what it changed; nobody listening is
    /// fine. A transaction that fails to commit announces nothing.
    pub(crate) async fn commit<DB: Database>(
        &self,
        tx: Transaction<'_, DB>,
        changes: impl IntoIterator<Item = AuthChange>,
    ) -> Result<()> {
        tx.commit().await?;
        for change in changes {
            let _ = self.0.send(change);
        }
        Ok(())
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<AuthChange> {
        self.0.subscribe()
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
        let row = statement
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| write_error(e, Entity::ApiKey, Entity::ApiKey))?;
        let Some(key) = one::<_, ApiKeyRecord>(row)? else {
            return Ok(None);
        };
        // The owner's memberships are untouched, even by a delete: an
        // unscoped key's event still finds its organizations.
        DB::log_key(&mut tx, &key, Event::new(action, key.id, actor)).await?;
        self.commit(tx, [AuthChange::Key { id: key.id }]).await?;
        Ok(Some(key))
    }
}
