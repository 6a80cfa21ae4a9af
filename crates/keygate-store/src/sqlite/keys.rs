//! API keys. A key answers to its current digest, or to its previous one
//! until the rotation's grace period ends. A scoped key is created only
//! while its user is a member of its organization; every change is audited
//! in the same transaction and announced as [`AuthChange::Key`] after it.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keygate_core::KeyDigest;
use keygate_core::limits::Balance;
use sqlx::Sqlite;
use sqlx::sqlite::SqliteConnection;
use uuid::Uuid;

use super::{SqliteStore, key_changed};
use crate::change::{answering, change_key, revoke_lineage};
use crate::decisions::{decide_key_write, may_create, owner_may_hold_key};
use crate::error::{Entity, write_error};
use crate::event::{AuditLog, Event};
use crate::params::{BindModel, Rotation};
use crate::rows::{self, BY_EITHER_DIGEST, DigestMatchRow, KEY_COLUMNS, KeyRow, VALID_UNTIL, select};
use crate::{
    Actor, ApiKeyRecord, AuditAction, AuthChange, CreditLease, DigestMatch, KeyChanges, KeyMaterial,
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

/// What a leak report revokes (`$1` the reported keys' ids, a JSON array):
/// those keys and every key they created, transitively, as `key_ancestry`
/// keeps them (deleted keys in between included). SQLite's one writer lets
/// nobody mint meanwhile.
static REVOKE_LINEAGE: LazyLock<String> = LazyLock::new(|| {
    returning_keys(
        "DELETE FROM api_keys WHERE id IN (SELECT value FROM json_each($1)) \
         OR id IN (SELECT descendant_id FROM key_ancestry WHERE ancestor_id IN (SELECT value FROM json_each($1)))",
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
impl KeyStore for SqliteStore {
    async fn key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKeyRecord>> {
        Ok(self.key_and_owner_role(digest).await?.map(|(key, _)| key))
    }

    async fn key_for_authentication(&self, digest: &KeyDigest) -> Result<Option<DigestMatch>> {
        let lookup = sqlx::query_as(AUTHENTICATION.as_str()).bind(&digest.as_bytes()[..]);
        rows::one::<DigestMatchRow, _>(lookup.fetch_optional(&self.reader).await?)
    }

    async fn key_by_id(&self, id: i64) -> Result<Option<ApiKeyRecord>> {
        Ok(select::<KeyRow, _, _>(&self.reader, &keys_where("id = $1"), id).await?.pop())
    }

    async fn keys_of_user(&self, user_id: Uuid) -> Result<Vec<ApiKeyRecord>> {
        select::<KeyRow, _, _>(&self.reader, &keys_where("user_id = $1"), user_id).await
    }

    async fn keys_of_org(&self, org_id: Uuid) -> Result<Vec<ApiKeyRecord>> {
        select::<KeyRow, _, _>(&self.reader, &keys_where("org_id = $1"), org_id).await
    }

    async fn insert_key(&self, key: NewApiKey, actor: &Actor) -> Result<ApiKeyRecord> {
        let actor = *actor;
        self.write(move |conn| {
            Box::pin(async move {
                // Under the write lock, so that a member removed, a policy
                // tightened or the calling key revoked, blocked or narrowed
                // at the same moment cannot be left behind.
                let Some(org) = key.org_id else {
                    return Ok((insert(conn, &key, &actor).await?, vec![]));
                };
                // The decision read the membership and the policy here.
                if !may_create(&mut crate::sql::Db::Sqlite(&mut *conn), org, &key, &actor).await? {
                    let policy =
                        owner_may_hold_key(&mut crate::sql::Db::Sqlite(&mut *conn), org, key.user_id).await?;
                    policy
                        .check(key.expires_at, crate::now())
                        .map_err(|v| StoreError::Refused(keygate_core::Refusal::ExpiryPolicy(v)))?;
                }
                Ok((insert(conn, &key, &actor).await?, vec![]))
            })
        })
        .await
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
        let actor = *actor;
        self.write(move |conn| {
            Box::pin(async move {
                let edit = changes.edit();
                if decide_key_write(
                    &mut crate::sql::Db::Sqlite(&mut *conn),
                    id,
                    &actor,
                    KeyWrite::Edit(&edit),
                    crate::now(),
                )
                .await?
                .is_none()
                {
                    return Ok((None, vec![]));
                }
                let update = sqlx::query_as(&sql).bind(id).bind_key_changes(&changes);
                Ok(key_changed(change_key::<Sqlite>(conn, update, AuditAction::ApiKeyUpdate, &actor).await?))
            })
        })
        .await
    }

    async fn delete_key(&self, id: i64, actor: &Actor) -> Result<bool> {
        let sql = returning_keys("DELETE FROM api_keys WHERE id = $1");
        let actor = *actor;
        let deleted = self
            .write(move |conn| {
                Box::pin(async move {
                    if decide_key_write(
                        &mut crate::sql::Db::Sqlite(&mut *conn),
                        id,
                        &actor,
                        KeyWrite::Delete,
                        crate::now(),
                    )
                    .await?
                    .is_none()
                    {
                        return Ok((None, vec![]));
                    }
                    let delete = sqlx::query_as(&sql).bind(id);
                    Ok(key_changed(
                        change_key::<Sqlite>(conn, delete, AuditAction::ApiKeyDelete, &actor).await?,
                    ))
                })
            })
            .await?;
        Ok(deleted.is_some())
    }

    async fn revoke_key(&self, digest: &KeyDigest, actor: &Actor) -> Result<Vec<ApiKeyRecord>> {
        let (digest, actor) = (*digest, *actor);
        self.write(move |conn| {
            Box::pin(async move {
                let reported = answering::<Sqlite>(conn, &digest, crate::now(), "").await?;
                if reported.is_empty() {
                    return Ok((Vec::new(), vec![]));
                }
                let ids = serde_json::Value::from(reported).to_string();
                let revoke = sqlx::query_as(REVOKE_LINEAGE.as_str()).bind(ids);
                let keys = revoke_lineage::<Sqlite>(conn, revoke, &actor).await?;
                let changes = keys.iter().map(|key| AuthChange::Key { id: key.id }).collect();
                Ok((keys, changes))
            })
        })
        .await
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
        let (current, actor) = (*current, *actor);
        self.write(move |conn| {
            Box::pin(async move {
                if decide_key_write(
                    &mut crate::sql::Db::Sqlite(&mut *conn),
                    id,
                    &actor,
                    KeyWrite::Rotate,
                    crate::now(),
                )
                .await?
                .is_none()
                {
                    return Ok((None, vec![]));
                }
                let rotation = Rotation { material: &material, current: &current, grace_until };
                let update = sqlx::query_as(&sql).bind(id).bind_rotation(&rotation);
                Ok(key_changed(change_key::<Sqlite>(conn, update, AuditAction::ApiKeyRotate, &actor).await?))
            })
        })
        .await
    }

    async fn lease_credits(&self, id: i64, need: u64, now: DateTime<Utc>) -> Result<Option<CreditLease>> {
        self.write(move |conn| {
            Box::pin(async move {
                Ok((crate::credits::lease::<Sqlite>(conn, CREDITS_OF, id, need, now).await?, vec![]))
            })
        })
        .await
    }

    async fn return_credits(&self, id: i64, amount: u64, lease: Balance) -> Result<()> {
        self.write(move |conn| {
            Box::pin(async move {
                crate::credits::give_back::<Sqlite>(conn, id, amount, lease).await?;
                Ok(((), vec![]))
            })
        })
        .await
    }
}

/// A key's credits, as a lease reads them (the writer holds the only lock).
const CREDITS_OF: &str = "SELECT credits_remaining, credits_refill, credits_period, credits_generation FROM api_keys WHERE id = $1";

/// Inserts a key and its `apikey.create` event; the caller has checked its
/// organization and membership.
pub(super) async fn insert(
    conn: &mut SqliteConnection,
    key: &NewApiKey,
    actor: &Actor,
) -> Result<ApiKeyRecord> {
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
    Sqlite::log_key(conn, &key, Event::new(AuditAction::ApiKeyCreate, key.id, actor)).await?;
    Ok(key)
}
