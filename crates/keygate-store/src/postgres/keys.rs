//! API keys. A key is found by its current digest, or by its previous one
//! inside the rotation grace period; a scoped key is created only while its
//! user is a member, under the organization's shared lock; every write is
//! audited in its transaction, and every change of an existing key is
//! announced after the commit.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keygate_core::KeyDigest;
use keygate_core::limits::Balance;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use super::PostgresStore;
use crate::change::revoke_lineage;
use crate::decisions::{decide_key_write, may_create, owner_may_hold_key};
use crate::error::write_error;
use crate::event::{AuditLog, Event};
use crate::model::check_expiry;
use crate::params::{BindModel, Rotation};
use crate::rows::{BY_EITHER_DIGEST, DigestMatchRow, KEY_COLUMNS, KeyRow, VALID_UNTIL, one, select};
use crate::{
    Actor, ApiKeyRecord, AuditAction, AuthChange, CreditLease, DigestMatch, Entity, KeyChanges, KeyMaterial,
    KeyStore, NewApiKey, Result, StoreError,
};
use keygate_core::key_writes::KeyWrite;

/// What authenticating a digest reads, in one query: the key, its owner's
/// role in the key's organization, and until when a previous secret
/// answers. Built once: it runs on every request.
static AUTHENTICATION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {KEY_COLUMNS}, (SELECT role FROM memberships m \
         WHERE m.org_id = k.org_id AND m.user_id = k.user_id) AS owner_role, \
         (SELECT ratelimits FROM organizations o WHERE o.id = k.org_id) AS org_ratelimits, \
         {VALID_UNTIL} AS valid_until \
         FROM api_keys k WHERE {BY_EITHER_DIGEST}"
    )
});

/// `statement`, returning the columns of the keys it touches.
fn returning_keys(statement: &str) -> String {
    format!("{statement} RETURNING {KEY_COLUMNS}")
}

/// The keys `filter` selects, oldest first.
fn keys_where(filter: &str) -> String {
    format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE {filter} ORDER BY id")
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKeyRecord>> {
        Ok(self.key_and_owner_role(digest).await?.map(|(key, _)| key))
    }

    async fn key_for_authentication(&self, digest: &KeyDigest) -> Result<Option<DigestMatch>> {
        let lookup = sqlx::query_as(AUTHENTICATION.as_str()).bind(&digest.as_bytes()[..]);
        one::<DigestMatchRow, _>(lookup.fetch_optional(&self.pool).await?)
    }

    async fn key_by_id(&self, id: i64) -> Result<Option<ApiKeyRecord>> {
        Ok(select::<KeyRow, _, _>(&self.pool, &keys_where("id = $1"), id).await?.pop())
    }

    async fn keys_of_user(&self, user_id: Uuid) -> Result<Vec<ApiKeyRecord>> {
        select::<KeyRow, _, _>(&self.pool, &keys_where("user_id = $1"), user_id).await
    }

    async fn keys_of_org(&self, org_id: Uuid) -> Result<Vec<ApiKeyRecord>> {
        select::<KeyRow, _, _>(&self.pool, &keys_where("org_id = $1"), org_id).await
    }

    async fn insert_key(&self, key: NewApiKey, actor: &Actor) -> Result<ApiKeyRecord> {
        let mut tx = self.pool.begin().await?;
        let mut policy = None;
        if let Some(org_id) = key.org_id {
            // Keys are created side by side, but never while a membership
            // or the policy changes, so a member removed meanwhile cannot
            // keep a new key, nor a key escape a policy just tightened.
            policy = Some(super::lock_org_policy(&mut tx, org_id).await?);
            if !may_create(&mut crate::sql::Db::Postgres(&mut *tx), org_id, &key, actor).await? {
                owner_may_hold_key(&mut crate::sql::Db::Postgres(&mut *tx), org_id, key.user_id).await?;
            }
        }
        let key = insert(&mut tx, &key, actor).await?;
        if let Some(policy) = policy {
            check_expiry(policy, &key)?;
        }
        tx.commit().await?;
        Ok(key)
    }

    async fn update_key(&self, id: i64, changes: KeyChanges, actor: &Actor) -> Result<Option<ApiKeyRecord>> {
        let sql = returning_keys(
            "UPDATE api_keys SET name = COALESCE($2, name), mode = COALESCE($3, mode), \
             limited_to_apps = COALESCE($4, limited_to_apps), \
             expires_at = CASE WHEN $5 THEN $6 ELSE expires_at END, updated_at = $7, \
             enabled = COALESCE($8, enabled), ratelimits = COALESCE($9, ratelimits), \
             credits_remaining = CASE WHEN $10 THEN $11 ELSE credits_remaining END, \
             credits_refill = CASE WHEN $10 THEN $12 ELSE credits_refill END, \
             credits_period = CASE WHEN $10 THEN $13 ELSE credits_period END, \
             credits_generation = credits_generation + CASE WHEN $10 THEN 1 ELSE 0 END WHERE id = $1",
        );
        let mut tx = self.pool.begin().await?;
        let edit = changes.edit();
        if decide_key_write(
            &mut crate::sql::Db::Postgres(&mut *tx),
            id,
            actor,
            KeyWrite::Edit(&edit),
            crate::now(),
        )
        .await?
        .is_none()
        {
            return Ok(None);
        }
        let update = sqlx::query_as(&sql).bind(id).bind_key_changes(&changes);
        self.changes.change_key(tx, update, AuditAction::ApiKeyUpdate, actor).await
    }

    async fn delete_key(&self, id: i64, actor: &Actor) -> Result<bool> {
        let sql = returning_keys("DELETE FROM api_keys WHERE id = $1");
        let mut tx = self.pool.begin().await?;
        if decide_key_write(
            &mut crate::sql::Db::Postgres(&mut *tx),
            id,
            actor,
            KeyWrite::Delete,
            crate::now(),
        )
        .await?
        .is_none()
        {
            return Ok(false);
        }
        let delete = sqlx::query_as(&sql).bind(id);
        let deleted = self.changes.change_key(tx, delete, AuditAction::ApiKeyDelete, actor).await?;
        Ok(deleted.is_some())
    }

    async fn revoke_key(&self, digest: &KeyDigest, actor: &Actor) -> Result<Vec<ApiKeyRecord>> {
        // Reports of one lineage at once may deadlock on its rows: the one
        // PostgreSQL aborts runs again, and finds what is left.
        let mut attempts = 0;
        loop {
            match revoke(self, digest, actor).await {
                Err(error) if attempts < 3 && is_deadlock(&error) => attempts += 1,
                done => return done,
            }
        }
    }

    async fn rotate_key(
        &self,
        id: i64,
        current: &KeyDigest,
        material: KeyMaterial,
        grace_until: Option<DateTime<Utc>>,
        actor: &Actor,
    ) -> Result<Option<ApiKeyRecord>> {
        let sql = returning_keys(
            "UPDATE api_keys SET previous_digest = CASE WHEN $4 THEN digest ELSE NULL END, \
             previous_expires_at = $5, digest = $2, preview = $3, updated_at = $6 \
             WHERE id = $1 AND digest = $7",
        );
        let mut tx = self.pool.begin().await?;
        if decide_key_write(
            &mut crate::sql::Db::Postgres(&mut *tx),
            id,
            actor,
            KeyWrite::Rotate,
            crate::now(),
        )
        .await?
        .is_none()
        {
            return Ok(None);
        }
        let rotation = Rotation { material: &material, current, grace_until };
        let update = sqlx::query_as(&sql).bind(id).bind_rotation(&rotation);
        self.changes.change_key(tx, update, AuditAction::ApiKeyRotate, actor).await
    }

    async fn lease_credits(&self, id: i64, need: u64, now: DateTime<Utc>) -> Result<Option<CreditLease>> {
        let mut tx = self.pool.begin().await?;
        let lease = crate::credits::lease::<Postgres>(&mut tx, CREDITS_OF, id, need, now).await?;
        tx.commit().await?;
        Ok(lease)
    }

    async fn return_credits(&self, id: i64, amount: u64, lease: Balance) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        crate::credits::give_back::<Postgres>(&mut conn, id, amount, lease).await
    }
}

/// A key's credits, as a lease reads them: locked, so that replicas leasing
/// at once take turns.
const CREDITS_OF: &str = "SELECT credits_remaining, credits_refill, credits_period, credits_generation \
    FROM api_keys WHERE id = $1 FOR UPDATE";

/// Inserts the key's row and its `apikey.create` event(s); the caller has
/// checked its organization and membership.
pub(super) async fn insert(conn: &mut PgConnection, key: &NewApiKey, actor: &Actor) -> Result<ApiKeyRecord> {
    let sql = returning_keys(
        "INSERT INTO api_keys (digest, preview, mode, name, user_id, org_id, limited_to_apps, expires_at, \
         created_by_key_id, created_at, updated_at, enabled, ratelimits, credits_remaining, \
         credits_refill, credits_period) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14, $15)",
    );
    let row = sqlx::query_as::<_, KeyRow>(&sql)
        .bind_new_key(key)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| write_error(e, Entity::Organization, Entity::ApiKey))?;
    let key = ApiKeyRecord::try_from(row)?;
    Postgres::log_key(conn, &key, Event::new(AuditAction::ApiKeyCreate, key.id, actor)).await?;
    Ok(key)
}

/// Revokes the key answering to `digest` and every key it made, in one
/// transaction. The reported key is locked first, then its lineage is
/// deleted until nothing is left of it: a key minted meanwhile by one of
/// them (which holds its parent `FOR SHARE` until it commits) is taken by
/// the next round, and one still being minted finds its parent gone.
async fn revoke(store: &PostgresStore, digest: &KeyDigest, actor: &Actor) -> Result<Vec<ApiKeyRecord>> {
    let mut tx = store.pool.begin().await?;
    let reported = crate::change::answering::<Postgres>(&mut tx, digest, crate::now(), " FOR UPDATE").await?;
    if reported.is_empty() {
        return Ok(Vec::new());
    }
    let mut keys = Vec::new();
    loop {
        let lineage = sqlx::query_as(REVOKE_LINEAGE_OF.as_str()).bind(&reported);
        let more = revoke_lineage::<Postgres>(&mut tx, lineage, actor).await?;
        if more.is_empty() {
            break;
        }
        keys.extend(more);
    }
    store.changes.commit(tx, keys.iter().map(|key| AuthChange::Key { id: key.id })).await?;
    Ok(keys)
}

/// The keys `$1` and every key descending from them, deleted.
static REVOKE_LINEAGE_OF: LazyLock<String> = LazyLock::new(|| {
    returning_keys(
        "DELETE FROM api_keys WHERE id = ANY($1) \
         OR id IN (SELECT descendant_id FROM key_ancestry WHERE ancestor_id = ANY($1))",
    )
});

/// Whether PostgreSQL aborted the transaction to break a deadlock.
fn is_deadlock(error: &StoreError) -> bool {
    match error {
        StoreError::Unavailable(sqlx::Error::Database(e))
        | StoreError::Database(sqlx::Error::Database(e)) => e.code().as_deref() == Some("40P01"),
        _ => false,
    }
}
