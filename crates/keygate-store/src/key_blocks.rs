//! Blocks of members' unscoped keys: each block or unblock one transaction
//! that first holds its organization ([`RowLock::Exclusive`], as membership
//! changes do), so that the roles it is decided on
//! ([`keygate_core::rules::may_block`], [`keygate_core::rules::may_unblock`])
//! stay as read until it commits.
//! A block only ever narrows: the key's role in that one organization reads
//! as no membership, so every decision there refuses it, and nothing
//! changes elsewhere.

use std::sync::LazyLock;

use async_trait::async_trait;
use keygate_core::Role;
use keygate_core::rules::{self, Refusal};
use uuid::Uuid;

use crate::backend::{Backend, RowLock, lock_org};
use crate::event::{Event, log};
use crate::rows::KeyRow;
use crate::sql::{Db, sql};
use crate::{
    Actor, ApiKeyRecord, AuditAction, AuthChange, Entity, KeyBlockStore, KeyInOrg, Result, StoreError,
};

#[async_trait]
impl<B: Backend> KeyBlockStore for B {
    async fn role_of_key(&self, org_id: Uuid, user_id: Uuid, key_id: i64) -> Result<Option<Role>> {
        let row = sql(ROLE_OF_KEY)
            .bind(org_id)
            .bind(user_id)
            .bind(key_id)
            .fetch_optional(&mut self.reads())
            .await?;
        role_as_key_acts(row)
    }

    async fn keys_acting_in(&self, org_id: Uuid) -> Result<Vec<KeyInOrg>> {
        let rows: Vec<KeyInOrgRow> = sql(&keys_acting_in()).bind(org_id).fetch_all(&mut self.reads()).await?;
        acting_in(rows, org_id)
    }

    async fn block_key(&self, org_id: Uuid, key_id: i64, actor: &Actor) -> Result<()> {
        let actor = *actor;
        self.transact(move |mut db| {
            Box::pin(async move {
                facts(&mut db, org_id, key_id, &actor).await?.may_block(org_id, &actor)?;
                let added: Option<i64> =
                    sql(BLOCK).bind(key_id).bind(org_id).bind(crate::now()).scalar(&mut db).await?;
                if added.is_none() {
                    return Ok(((), vec![]));
                }
                log(&mut db, org_id, Event::new(AuditAction::ApiKeyBlock, key_id, &actor)).await?;
                // A cached unscoped key knows where its owner may act with it.
                Ok(((), vec![AuthChange::Key { id: key_id }]))
            })
        })
        .await
    }

    async fn unblock_key(&self, org_id: Uuid, key_id: i64, actor: &Actor) -> Result<bool> {
        let actor = *actor;
        self.transact(move |mut db| {
            Box::pin(async move {
                facts(&mut db, org_id, key_id, &actor).await?.may_unblock()?;
                let gone: Option<i64> = sql(UNBLOCK).bind(key_id).bind(org_id).scalar(&mut db).await?;
                if gone.is_none() {
                    return Ok((false, vec![]));
                }
                log(&mut db, org_id, Event::new(AuditAction::ApiKeyUnblock, key_id, &actor)).await?;
                Ok((true, vec![AuthChange::Key { id: key_id }]))
            })
        })
        .await
    }
}

/// What blocking or unblocking `key_id` in `org_id` by `actor` is decided
/// on, read under the organization's lock.
async fn facts(db: &mut Db<'_>, org_id: Uuid, key_id: i64, actor: &Actor) -> Result<BlockFacts> {
    let (user, acting_key) = acting(actor)?;
    lock_org(db, org_id, RowLock::Exclusive).await?;
    crate::decisions::still_administers(db, org_id, actor).await?;
    let actor_role = sql(ROLE_OF_KEY).bind(org_id).bind(user).bind(acting_key).fetch_optional(db).await?;
    let key = sql(KEY_AND_OWNER_ROLE.as_str()).bind(key_id).bind(org_id).fetch_optional(db).await?;
    Ok(BlockFacts { actor_role, key })
}

/// The role of `$2` in `$1`, and whether their key `$3` is blocked there:
/// what [`rules::role_as_key_acts`] takes.
pub(crate) const ROLE_OF_KEY: &str = "SELECT m.role, \
     EXISTS (SELECT 1 FROM key_blocks b WHERE b.org_id = $1 AND b.key_id = $3) AS blocked \
     FROM memberships m WHERE m.org_id = $1 AND m.user_id = $2";

/// The role [`ROLE_OF_KEY`] read, as the key acts.
pub(crate) fn role_as_key_acts(row: Option<(String, bool)>) -> Result<Option<Role>> {
    let Some((role, blocked)) = row else { return Ok(None) };
    Ok(rules::role_as_key_acts(Some(crate::rows::role(&role)?), blocked))
}

/// The key `$1`, with its owner's role in the organization `$2`.
pub(crate) static KEY_AND_OWNER_ROLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {columns}, (SELECT m.role FROM memberships m WHERE m.org_id = $2 \
         AND m.user_id = api_keys.user_id) AS owner_role FROM api_keys WHERE id = $1",
        columns = crate::rows::KEY_COLUMNS
    )
});

pub(crate) const BLOCK: &str = "INSERT INTO key_blocks (key_id, org_id, created_at) VALUES ($1, $2, $3) \
     ON CONFLICT (key_id, org_id) DO NOTHING RETURNING key_id";

pub(crate) const UNBLOCK: &str = "DELETE FROM key_blocks WHERE key_id = $1 AND org_id = $2 RETURNING key_id";

/// The keys tied to `$1` or owned by its members, with whether each is
/// blocked there: [`acting_in`] keeps those that act there.
fn keys_acting_in() -> String {
    format!(
        "SELECT {columns}, EXISTS (SELECT 1 FROM key_blocks b WHERE b.key_id = api_keys.id AND b.org_id = $1) \
         AS blocked FROM api_keys WHERE org_id = $1 \
         OR user_id IN (SELECT user_id FROM memberships WHERE org_id = $1) ORDER BY id",
        columns = crate::rows::KEY_COLUMNS
    )
}

/// The keys of `rows` ([`keys_acting_in()`]) whose scope reaches `org`
/// ([`keygate_core::Scope::contains_org`]): those scoped to it, and its
/// members' unscoped keys.
fn acting_in(rows: Vec<KeyInOrgRow>, org: Uuid) -> Result<Vec<crate::KeyInOrg>> {
    let keys: Vec<crate::KeyInOrg> = crate::rows::all(rows)?;
    Ok(keys.into_iter().filter(|k| k.key.principal().scope.contains_org(org)).collect())
}

/// A key with whether it is blocked in an organization.
#[derive(sqlx::FromRow)]
pub(crate) struct KeyInOrgRow {
    #[sqlx(flatten)]
    key: KeyRow,
    blocked: bool,
}

impl TryFrom<KeyInOrgRow> for crate::KeyInOrg {
    type Error = crate::StoreError;

    fn try_from(row: KeyInOrgRow) -> Result<Self, Self::Error> {
        Ok(crate::KeyInOrg { key: row.key.try_into()?, blocked: row.blocked })
    }
}

/// What [`KEY_AND_OWNER_ROLE`] read.
#[derive(sqlx::FromRow)]
pub(crate) struct KeyAndOwnerRow {
    #[sqlx(flatten)]
    key: KeyRow,
    owner_role: Option<String>,
}

/// What a block or an unblock is decided on: the acting member's role as
/// their key acts in the organization, and the key with its owner's role.
pub(crate) struct BlockFacts {
    pub(crate) actor_role: Option<(String, bool)>,
    pub(crate) key: Option<KeyAndOwnerRow>,
}

impl BlockFacts {
    fn actor_role(&self) -> Result<Option<Role>> {
        role_as_key_acts(self.actor_role.clone())
    }

    fn key(self) -> Result<Option<(ApiKeyRecord, Option<Role>)>> {
        let Some(row) = self.key else { return Ok(None) };
        let owner_role = row.owner_role.as_deref().map(crate::rows::role).transpose()?;
        Ok(Some((row.key.try_into()?, owner_role)))
    }

    /// Whether `actor` may block the key in `org_id` ([`rules::may_block`]).
    pub(crate) fn may_block(self, org_id: Uuid, actor: &Actor) -> Result<()> {
        let (user, key_id) = acting(actor)?;
        let actor_role = self.actor_role()?;
        // Nothing of the key is told to someone who may not block at all.
        rules::administrator(actor_role).map_err(refused)?;
        let (key, owner_role) = self.key()?.ok_or(StoreError::NotFound(Entity::ApiKey))?;
        rules::may_block(user, key_id, actor_role, org_id, &key.principal(), owner_role).map_err(refused)
    }

    /// Whether `actor` may lift a block of the key ([`rules::may_unblock`]).
    pub(crate) fn may_unblock(self) -> Result<()> {
        let actor_role = self.actor_role()?;
        rules::administrator(actor_role).map_err(refused)?;
        let (_, owner_role) = self.key()?.ok_or(StoreError::NotFound(Entity::ApiKey))?;
        rules::may_unblock(actor_role, owner_role).map_err(refused)
    }
}

/// The acting member and their key: a block is always a member's doing.
pub(crate) fn acting(actor: &Actor) -> Result<(Uuid, i64)> {
    actor.user_id.zip(actor.key_id).ok_or(StoreError::NotFound(Entity::Organization))
}

fn refused(refusal: Refusal) -> StoreError {
    match refusal {
        Refusal::Invisible => StoreError::NotFound(Entity::Organization),
        Refusal::NotBlockable => StoreError::NotFound(Entity::ApiKey),
        refusal => StoreError::Refused(refusal),
    }
}
