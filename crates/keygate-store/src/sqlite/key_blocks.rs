//! Blocks of members' unscoped keys on SQLite: each a job of the writer,
//! deciding over what it reads in that job.

use async_trait::async_trait;
use keygate_core::Role;
use sqlx::Sqlite;
use sqlx::sqlite::SqliteConnection;
use uuid::Uuid;

use super::SqliteStore;
use crate::event::{AuditLog, Event};
use crate::key_blocks::{
    BLOCK, BlockFacts, KEY_AND_OWNER_ROLE, KeyInOrgRow, ROLE_OF_KEY, UNBLOCK, acting, keys_acting_in,
    role_as_key_acts,
};
use crate::{Actor, AuditAction, KeyBlockStore, KeyInOrg, Result};

#[async_trait]
impl KeyBlockStore for SqliteStore {
    async fn role_of_key(&self, org_id: Uuid, user_id: Uuid, key_id: i64) -> Result<Option<Role>> {
        let row: Option<(String, bool)> = sqlx::query_as(ROLE_OF_KEY)
            .bind(org_id)
            .bind(user_id)
            .bind(key_id)
            .fetch_optional(&self.reader)
            .await?;
        role_as_key_acts(row)
    }

    async fn keys_acting_in(&self, org_id: Uuid) -> Result<Vec<KeyInOrg>> {
        let rows =
            sqlx::query_as::<_, KeyInOrgRow>(&keys_acting_in()).bind(org_id).fetch_all(&self.reader).await?;
        crate::key_blocks::acting_in(rows, org_id)
    }

    async fn block_key(&self, org_id: Uuid, key_id: i64, actor: &Actor) -> Result<()> {
        let actor = *actor;
        self.write(move |conn| {
            Box::pin(async move {
                facts(conn, org_id, key_id, &actor).await?.may_block(org_id, &actor)?;
                let added: Option<i64> = sqlx::query_scalar(BLOCK)
                    .bind(key_id)
                    .bind(org_id)
                    .bind(crate::now())
                    .fetch_optional(&mut *conn)
                    .await?;
                if added.is_some() {
                    Sqlite::log(conn, org_id, Event::new(AuditAction::ApiKeyBlock, key_id, &actor)).await?;
                }
                Ok(((), vec![]))
            })
        })
        .await
    }

    async fn unblock_key(&self, org_id: Uuid, key_id: i64, actor: &Actor) -> Result<bool> {
        let actor = *actor;
        self.write(move |conn| {
            Box::pin(async move {
                facts(conn, org_id, key_id, &actor).await?.may_unblock()?;
                let gone: Option<i64> =
                    sqlx::query_scalar(UNBLOCK).bind(key_id).bind(org_id).fetch_optional(&mut *conn).await?;
                if gone.is_some() {
                    Sqlite::log(conn, org_id, Event::new(AuditAction::ApiKeyUnblock, key_id, &actor)).await?;
                }
                Ok((gone.is_some(), vec![]))
            })
        })
        .await
    }
}

/// What blocking or unblocking `key_id` in `org_id` by `actor` is decided on.
async fn facts(conn: &mut SqliteConnection, org_id: Uuid, key_id: i64, actor: &Actor) -> Result<BlockFacts> {
    let (user, acting_key) = acting(actor)?;
    crate::decisions::still_administers::<sqlx::Sqlite>(&mut *conn, org_id, actor).await?;
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
