//! Blocks of members' unscoped keys on PostgreSQL.

use async_trait::async_trait;
use keygate_core::Role;
use sqlx::Postgres;
use uuid::Uuid;

use super::PostgresStore;
use crate::event::{AuditLog, Event};
use crate::key_blocks::{BLOCK, BLOCKABLE, KeyInOrgRow, ROLE_OF_KEY, UNBLOCK, keys_acting_in};
use crate::{Actor, AuditAction, Entity, KeyBlockStore, KeyInOrg, Result, StoreError, rows};

#[async_trait]
impl KeyBlockStore for PostgresStore {
    async fn role_of_key(&self, org_id: Uuid, user_id: Uuid, key_id: i64) -> Result<Option<Role>> {
        let role: Option<String> = sqlx::query_scalar(ROLE_OF_KEY)
            .bind(org_id)
            .bind(user_id)
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?;
        role.as_deref().map(rows::role).transpose()
    }

    async fn keys_acting_in(&self, org_id: Uuid) -> Result<Vec<KeyInOrg>> {
        let rows =
            sqlx::query_as::<_, KeyInOrgRow>(&keys_acting_in()).bind(org_id).fetch_all(&self.pool).await?;
        rows::all(rows)
    }

    async fn block_key(&self, org_id: Uuid, key_id: i64, actor: &Actor) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let blockable: Option<i64> =
            sqlx::query_scalar(BLOCKABLE).bind(key_id).bind(org_id).fetch_optional(&mut *tx).await?;
        blockable.ok_or(StoreError::NotFound(Entity::ApiKey))?;
        let added: Option<i64> = sqlx::query_scalar(BLOCK)
            .bind(key_id)
            .bind(org_id)
            .bind(crate::now())
            .fetch_optional(&mut *tx)
            .await?;
        if added.is_some() {
            Postgres::log(&mut tx, org_id, Event::new(AuditAction::ApiKeyBlock, key_id, actor)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn unblock_key(&self, org_id: Uuid, key_id: i64, actor: &Actor) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let gone: Option<i64> =
            sqlx::query_scalar(UNBLOCK).bind(key_id).bind(org_id).fetch_optional(&mut *tx).await?;
        if gone.is_some() {
            Postgres::log(&mut tx, org_id, Event::new(AuditAction::ApiKeyUnblock, key_id, actor)).await?;
        }
        tx.commit().await?;
        Ok(gone.is_some())
    }
}
