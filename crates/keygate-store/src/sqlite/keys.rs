//! API keys. A key answers to its current digest, or to its previous one
//! until the rotation's grace period ends. A scoped key is created only
//! while its user is a member of its organization; every change is audited
//! in the same transaction and announced as [`AuthChange::Key`] after it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keygate_core::{KeyDigest, Role};
use sqlx::sqlite::SqliteConnection;

use super::{SqliteStore, audit};
use crate::error::{Entity, write_error};
use crate::rows::{self, AppList, KeyRoleRow, KeyRow, key_columns};
use crate::{
    Actor, ApiKeyRecord, AuditAction, AuthChange, KeyChanges, KeyMaterial, KeyStore, NewApiKey, Result,
    StoreError,
};

#[async_trait]
impl KeyStore for SqliteStore {
    async fn key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKeyRecord>> {
        let row: Option<KeyRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE digest = $1 OR (previous_digest = $1 AND previous_expires_at > $2)"
        ))
        .bind(&digest.as_bytes()[..])
        .bind(crate::now())
        .fetch_optional(&self.reader)
        .await?;
        rows::one(row)
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
        .fetch_optional(&self.reader)
        .await?;
        rows::one(row)
    }

    async fn key_by_id(&self, id: i64) -> Result<Option<ApiKeyRecord>> {
        let row: Option<KeyRow> =
            sqlx::query_as(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.reader)
                .await?;
        rows::one(row)
    }

    async fn keys_of_user(&self, user_id: uuid::Uuid) -> Result<Vec<ApiKeyRecord>> {
        let rows: Vec<KeyRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE user_id = $1 ORDER BY id"
        ))
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?;
        rows::all(rows)
    }

    async fn keys_of_org(&self, org_id: uuid::Uuid) -> Result<Vec<ApiKeyRecord>> {
        let rows: Vec<KeyRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE org_id = $1 ORDER BY id"
        ))
        .bind(org_id)
        .fetch_all(&self.reader)
        .await?;
        rows::all(rows)
    }

    async fn insert_key(&self, key: NewApiKey, actor: &Actor) -> Result<ApiKeyRecord> {
        let mut tx = self.begin().await?;
        if let Some(org_id) = key.org_id {
            // Under the organization's lock, so that a member removed at the
            // same moment cannot be left holding a new key.
            super::lock_org(&mut tx, org_id).await?;
            if super::role_of(&mut tx, org_id, key.user_id).await?.is_none() {
                return Err(StoreError::NotFound(Entity::Membership));
            }
        }
        let key = insert_key(&mut tx, key).await?;
        audit::record_key(&mut tx, &key, AuditAction::ApiKeyCreate, actor).await?;
        self.commit(tx, []).await?;
        Ok(key)
    }

    async fn update_key(&self, id: i64, changes: KeyChanges, actor: &Actor) -> Result<Option<ApiKeyRecord>> {
        let mut tx = self.begin().await?;
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
        let Some(key) = rows::one::<_, ApiKeyRecord>(row)? else {
            return Ok(None);
        };
        audit::record_key(&mut tx, &key, AuditAction::ApiKeyUpdate, actor).await?;
        self.commit(tx, [AuthChange::Key { id }]).await?;
        Ok(Some(key))
    }

    async fn delete_key(&self, id: i64, actor: &Actor) -> Result<bool> {
        let mut tx = self.begin().await?;
        let row: Option<KeyRow> =
            sqlx::query_as(concat!("DELETE FROM api_keys WHERE id = $1 RETURNING ", key_columns!()))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(key) = rows::one::<_, ApiKeyRecord>(row)? else {
            return Ok(false);
        };
        // The owner's memberships are untouched by the delete: still readable.
        audit::record_key(&mut tx, &key, AuditAction::ApiKeyDelete, actor).await?;
        self.commit(tx, [AuthChange::Key { id }]).await?;
        Ok(true)
    }

    async fn delete_key_by_digest(&self, digest: &KeyDigest, actor: &Actor) -> Result<Option<ApiKeyRecord>> {
        let mut tx = self.begin().await?;
        let row: Option<KeyRow> = sqlx::query_as(concat!(
            "DELETE FROM api_keys \
             WHERE digest = $1 OR (previous_digest = $1 AND previous_expires_at > $2) RETURNING ",
            key_columns!()
        ))
        .bind(&digest.as_bytes()[..])
        .bind(crate::now())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(key) = rows::one::<_, ApiKeyRecord>(row)? else {
            return Ok(None);
        };
        audit::record_key(&mut tx, &key, AuditAction::ApiKeyRevoke, actor).await?;
        self.commit(tx, [AuthChange::Key { id: key.id }]).await?;
        Ok(Some(key))
    }

    async fn rotate_key(
        &self,
        id: i64,
        current: &KeyDigest,
        material: KeyMaterial,
        grace_until: Option<DateTime<Utc>>,
        actor: &Actor,
    ) -> Result<Option<ApiKeyRecord>> {
        let mut tx = self.begin().await?;
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
        let Some(key) = rows::one::<_, ApiKeyRecord>(row)? else {
            return Ok(None);
        };
        audit::record_key(&mut tx, &key, AuditAction::ApiKeyRotate, actor).await?;
        self.commit(tx, [AuthChange::Key { id }]).await?;
        Ok(Some(key))
    }
}

/// Inserts a key; the caller has checked its organization and membership.
pub(super) async fn insert_key(conn: &mut SqliteConnection, key: NewApiKey) -> Result<ApiKeyRecord> {
    let row: KeyRow = sqlx::query_as(concat!(
        "INSERT INTO api_keys (digest, preview, mode, name, user_id, org_id, limited_to_apps, expires_at, \
         created_by_key_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING ",
        key_columns!()
    ))
    .bind(&key.material.digest.as_bytes()[..])
    .bind(&key.material.preview)
    .bind(key.mode.as_str())
    .bind(key.name.as_str())
    .bind(key.user_id)
    .bind(key.org_id)
    .bind(AppList::from(&key.limited_to_apps[..]))
    .bind(key.expires_at)
    .bind(key.created_by_key_id)
    .bind(crate::now())
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| write_error(e, Entity::Organization, Entity::ApiKey))?;
    row.try_into()
}
