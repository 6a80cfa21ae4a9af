//! API keys. A key is found by its current digest, or by its previous one
//! inside the rotation grace period; a scoped key is created only while its
//! user is a member, under the organization's lock; every write is audited
//! in its transaction, and every change of an existing key is announced
//! after the commit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keygate_core::{KeyDigest, Role};
use uuid::Uuid;

use super::{PostgresStore, audit};
use crate::error::write_error;
use crate::rows::{AppList, KeyRoleRow, KeyRow, all, key_columns, one};
use crate::{
    Actor, ApiKeyRecord, AuditAction, AuthChange, Entity, KeyChanges, KeyMaterial, KeyStore, NewApiKey,
    Result, StoreError,
};

impl PostgresStore {
    /// Commits a change to an existing key with its event, then announces it.
    async fn commit_key_change(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        key: Option<ApiKeyRecord>,
        action: AuditAction,
        actor: &Actor,
    ) -> Result<Option<ApiKeyRecord>> {
        let Some(key) = key else {
            return Ok(None);
        };
        audit::record_for_key(&mut tx, &key, action, actor).await?;
        tx.commit().await?;
        self.changes.announce([AuthChange::Key { id: key.id }]);
        Ok(Some(key))
    }
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKeyRecord>> {
        let row: Option<KeyRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE digest = $1 OR (previous_digest = $1 AND previous_expires_at > $2)"
        ))
        .bind(&digest.as_bytes()[..])
        .bind(crate::now())
        .fetch_optional(&self.pool)
        .await?;
        one(row)
    }

    async fn key_and_owner_role(&self, digest: &KeyDigest) -> Result<Option<(ApiKeyRecord, Option<Role>)>> {
        let row: Option<KeyRoleRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            ", (SELECT role FROM memberships m \
             WHERE m.org_id = api_keys.org_id AND m.user_id = api_keys.user_id) AS owner_role \
             FROM api_keys WHERE digest = $1 OR (previous_digest = $1 AND previous_expires_at > $2)"
        ))
        .bind(&digest.as_bytes()[..])
        .bind(crate::now())
        .fetch_optional(&self.pool)
        .await?;
        one(row)
    }

    async fn key_by_id(&self, id: i64) -> Result<Option<ApiKeyRecord>> {
        let row: Option<KeyRow> =
            sqlx::query_as(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        one(row)
    }

    async fn keys_of_user(&self, user_id: Uuid) -> Result<Vec<ApiKeyRecord>> {
        let rows: Vec<KeyRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE user_id = $1 ORDER BY id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn keys_of_org(&self, org_id: Uuid) -> Result<Vec<ApiKeyRecord>> {
        let rows: Vec<KeyRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE org_id = $1 ORDER BY id"
        ))
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn insert_key(&self, key: NewApiKey, actor: &Actor) -> Result<ApiKeyRecord> {
        let mut tx = self.pool.begin().await?;
        if let Some(org_id) = key.org_id {
            // A shared lock: keys are created side by side, but never while
            // a membership change (which takes `lock_org`) is under way, so a
            // member removed meanwhile cannot keep a new key.
            super::share_org(&mut tx, org_id).await?;
            if super::role_of(&mut tx, org_id, key.user_id).await?.is_none() {
                return Err(StoreError::NotFound(Entity::Membership));
            }
        }
        let key = super::insert_key(&mut tx, key, actor).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn update_key(&self, id: i64, changes: KeyChanges, actor: &Actor) -> Result<Option<ApiKeyRecord>> {
        let mut tx = self.pool.begin().await?;
        let row: Option<KeyRow> = sqlx::query_as(concat!(
            "UPDATE api_keys SET name = COALESCE($2, name), mode = COALESCE($3, mode), \
             limited_to_apps = COALESCE($4, limited_to_apps), \
             expires_at = CASE WHEN $5 THEN $6 ELSE expires_at END, updated_at = $7 \
             WHERE id = $1 RETURNING ",
            key_columns!()
        ))
        .bind(id)
        .bind(changes.name.as_ref().map(|n| n.as_str()))
        .bind(changes.mode.map(|m| m.as_str()))
        .bind(changes.limited_to_apps.as_deref().map(AppList::from))
        .bind(changes.expires_at.is_some())
        .bind(changes.expires_at.flatten())
        .bind(crate::now())
        .fetch_optional(&mut *tx)
        .await?;
        self.commit_key_change(tx, one(row)?, AuditAction::ApiKeyUpdate, actor).await
    }

    async fn delete_key(&self, id: i64, actor: &Actor) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // The owner's memberships stay readable in this transaction, so the
        // events of an unscoped key still find their organizations.
        let row: Option<KeyRow> =
            sqlx::query_as(concat!("DELETE FROM api_keys WHERE id = $1 RETURNING ", key_columns!()))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let deleted = self.commit_key_change(tx, one(row)?, AuditAction::ApiKeyDelete, actor).await?;
        Ok(deleted.is_some())
    }

    async fn delete_key_by_digest(&self, digest: &KeyDigest, actor: &Actor) -> Result<Option<ApiKeyRecord>> {
        let mut tx = self.pool.begin().await?;
        let row: Option<KeyRow> = sqlx::query_as(concat!(
            "DELETE FROM api_keys \
             WHERE digest = $1 OR (previous_digest = $1 AND previous_expires_at > $2) RETURNING ",
            key_columns!()
        ))
        .bind(&digest.as_bytes()[..])
        .bind(crate::now())
        .fetch_optional(&mut *tx)
        .await?;
        self.commit_key_change(tx, one(row)?, AuditAction::ApiKeyRevoke, actor).await
    }

    async fn rotate_key(
        &self,
        id: i64,
        current: &KeyDigest,
        material: KeyMaterial,
        grace_until: Option<DateTime<Utc>>,
        actor: &Actor,
    ) -> Result<Option<ApiKeyRecord>> {
        let mut tx = self.pool.begin().await?;
        let row: Option<KeyRow> = sqlx::query_as(concat!(
            "UPDATE api_keys SET \
             previous_digest = CASE WHEN $4 THEN digest ELSE NULL END, \
             previous_expires_at = $5, digest = $2, preview = $3, updated_at = $6 \
             WHERE id = $1 AND digest = $7 RETURNING ",
            key_columns!()
        ))
        .bind(id)
        .bind(&material.digest.as_bytes()[..])
        .bind(&material.preview)
        .bind(grace_until.is_some())
        .bind(grace_until)
        .bind(crate::now())
        .bind(&current.as_bytes()[..])
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| write_error(e, Entity::ApiKey, Entity::ApiKey))?;
        self.commit_key_change(tx, one(row)?, AuditAction::ApiKeyRotate, actor).await
    }
}
