//! Blocks of members' unscoped keys on PostgreSQL: each one transaction
//! that first locks its organization, as membership changes do, so that
//! the roles it decides on stay as read until it commits.

use async_trait::async_trait;
use keygate_core::Role;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use super::{OrgLock, PostgresStore, lock_org};
use crate::event::{AuditLog, Event};
use crate::key_blocks::{
    BLOCK, BlockFacts, KEY_AND_OWNER_ROLE, KeyInOrgRow, ROLE_OF_KEY, UNBLOCK, acting, keys_acting_in,
    role_as_key_acts,
};
use crate::{Actor, AuditAction, KeyBlockStore, KeyInOrg, Result};

#[async_trait]
impl KeyBlockStore for PostgresStore {
    async fn role_of_key(&self, org_id: Uuid, user_id: Uuid, key_id: i64) -> Result<Option<Role>> {
        let row: Option<(String, bool)> = sqlx::query_as(ROLE_OF_KEY)
            .bind(org_id)
            .bind(user_id)
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?;
        role_as_key_acts(row)
    }

    async fn keys_acting_in(&self, org_id: Uuid) -> Result<Vec<KeyInOrg>> {
        let rows =
            sqlx::query_as::<_, KeyInOrgRow>(&keys_acting_in()).bind(org_id).fetch_all(&self.pool).await?;
        crate::key_blocks::acting_in(rows, org_id)
    }

    async fn block_key(&self, org_id: Uuid, key_id: i64, actor: &Actor) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        facts(&mut tx, org_id, key_id, actor).await?.may_block(org_id, actor)?;
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
        facts(&mut tx, org_id, key_id, actor).await?.may_unblock()?;
        let gone: Option<i64> =
            sqlx::query_scalar(UNBLOCK).bind(key_id).bind(org_id).fetch_optional(&mut *tx).await?;
        if gone.is_some() {
            Postgres::log(&mut tx, org_id, Event::new(AuditAction::ApiKeyUnblock, key_id, actor)).await?;
        }
        tx.commit().await?;
        Ok(gone.is_some())
    }
}

/// What blocking or unblocking `key_id` in `org_id` by `actor` is decided
/// on, read under the organization's lock.
async fn facts(conn: &mut PgConnection, org_id: Uuid, key_id: i64, actor: &Actor) -> Result<BlockFacts> {
    let (user, acting_key) = acting(actor)?;
    lock_org(&mut *conn, org_id, OrgLock::Exclusive).await?;
    crate::decisions::still_administers::<sqlx::Postgres>(&mut *conn, org_id, actor).await?;
    let actor_role = sqlx::query_as(ROLE_OF_KEY)
        .bind(org_id)
        .bind(user)
        .bind(acting_key)
        .fetch_optional(&mut *conn)
        .await?;
    let key = sqlx::query_as(KEY_AND_OWNER_ROLE.as_str())
        .bind(key_id)
        .bind(org_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(BlockFacts { actor_role, key })
}
