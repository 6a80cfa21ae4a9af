//! API keys. A key answers to its current digest, or to its previous one
//! until the rotation's grace period ends. A scoped key is created only
//! while its user is a member of its organization, which it holds
//! ([`RowLock::Share`]) so that a membership or a policy cannot change
//! meanwhile; a change of an existing key is decided over the rows
//! [`decide_key_write`] holds. Every write is audited in its transaction;
//! every change of an existing key is announced as [`AuthChange::Key`]
//! after it.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keygate_core::limits::{Balance, Credits};
use keygate_core::{KeyDigest, key_writes::KeyWrite};
use uuid::Uuid;

use crate::backend::{Backend, RowLock, Written, hold_org};
use crate::decisions::{decide_key_write, may_create, owner_may_hold_key};
use crate::error::{Entity, write_error};
use crate::event::{Event, log_key};
use crate::rows::{
    AppList, BY_EITHER_DIGEST, CreditRow, DigestMatchRow, KEY_COLUMNS, KeyRow, VALID_UNTIL, all, one,
    ratelimits_json, refill_json,
};
use crate::sql::{Db, Statement, sql};
use crate::{
    Actor, ApiKeyRecord, AuditAction, AuthChange, CreditLease, DigestMatch, KeyChanges, KeyMaterial,
    KeyStore, NewApiKey, Result, StoreError,
};

/// What authenticating a digest reads, in one query: the key, its owner's
/// role in the key's organization (for an unscoped key, in any organization
/// where it is not blocked), and until when a previous secret answers.
/// Built once: it runs on every request the cache cannot answer.
static AUTHENTICATION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {KEY_COLUMNS}, CASE WHEN k.org_id IS NULL THEN \
         (SELECT m.role FROM memberships m WHERE m.user_id = k.user_id AND NOT EXISTS \
          (SELECT 1 FROM key_blocks b WHERE b.key_id = k.id AND b.org_id = m.org_id) LIMIT 1) \
         ELSE (SELECT role FROM memberships m \
         WHERE m.org_id = k.org_id AND m.user_id = k.user_id) END AS owner_role, \
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
impl<B: Backend> KeyStore for B {
    async fn key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKeyRecord>> {
        Ok(self.key_and_owner_role(digest).await?.map(|(key, _)| key))
    }

    async fn key_for_authentication(&self, digest: &KeyDigest) -> Result<Option<DigestMatch>> {
        let lookup = sql(&AUTHENTICATION).bind(&digest.as_bytes()[..]);
        one::<DigestMatchRow, _>(lookup.fetch_optional(&mut self.reads()).await?)
    }

    async fn key_by_id(&self, id: i64) -> Result<Option<ApiKeyRecord>> {
        Ok(one::<KeyRow, _>(sql(&keys_where("id = $1")).bind(id).fetch_optional(&mut self.reads()).await?)?)
    }

    async fn keys_of_user(&self, user_id: Uuid) -> Result<Vec<ApiKeyRecord>> {
        all::<KeyRow, _>(sql(&keys_where("user_id = $1")).bind(user_id).fetch_all(&mut self.reads()).await?)
    }

    async fn keys_of_org(&self, org_id: Uuid) -> Result<Vec<ApiKeyRecord>> {
        all::<KeyRow, _>(sql(&keys_where("org_id = $1")).bind(org_id).fetch_all(&mut self.reads()).await?)
    }

    async fn insert_key(&self, key: NewApiKey, actor: &Actor) -> Result<ApiKeyRecord> {
        let actor = *actor;
        self.transact(move |mut db| {
            Box::pin(async move {
                // Keys are created side by side, but never while a membership
                // or the policy changes, nor while the calling key is
                // revoked, blocked or narrowed: none can be left behind.
                if let Some(org) = key.org_id {
                    hold_org(&mut db, org, RowLock::Share).await?;
                    // The decision read the membership and the policy here.
                    if !may_create(&mut db, org, &key, &actor).await? {
                        let policy = owner_may_hold_key(&mut db, org, key.user_id).await?;
                        policy
                            .check(key.expires_at, crate::now())
                            .map_err(|v| StoreError::Refused(keygate_core::Refusal::ExpiryPolicy(v)))?;
                    }
                }
                Ok((insert(&mut db, &key, &actor).await?, vec![]))
            })
        })
        .await
    }

    async fn update_key(&self, id: i64, changes: KeyChanges, actor: &Actor) -> Result<Option<ApiKeyRecord>> {
        static UPDATE: LazyLock<String> = LazyLock::new(|| {
            returning_keys(
                "UPDATE api_keys SET name = COALESCE($2, name), mode = COALESCE($3, mode), \
                 limited_to_apps = COALESCE($4, limited_to_apps), \
                 expires_at = CASE WHEN $5 THEN $6 ELSE expires_at END, updated_at = $7, \
                 enabled = COALESCE($8, enabled), ratelimits = COALESCE($9, ratelimits), \
                 credits_remaining = CASE WHEN $10 THEN $11 ELSE credits_remaining END, \
                 credits_refill = CASE WHEN $10 THEN $12 ELSE credits_refill END, \
                 credits_period = CASE WHEN $10 THEN $13 ELSE credits_period END, \
                 credits_generation = credits_generation + CASE WHEN $10 THEN 1 ELSE 0 END WHERE id = $1",
            )
        });
        let actor = *actor;
        self.transact(move |mut db| {
            Box::pin(async move {
                let edit = changes.edit();
                if decide_key_write(&mut db, id, &actor, KeyWrite::Edit(&edit), crate::now()).await?.is_none()
                {
                    return Ok((None, vec![]));
                }
                let update = sql(&UPDATE)
                    .bind(id)
                    .bind(changes.name.as_ref().map(|name| name.as_str()))
                    .bind(changes.mode.map(|mode| mode.as_str()))
                    .bind(changes.limited_to_apps.as_deref().map(AppList::from))
                    .bind(changes.expires_at.is_some())
                    .bind(changes.expires_at.flatten())
                    .bind(crate::now())
                    .bind(changes.enabled)
                    .bind(changes.ratelimits.as_deref().map(ratelimits_json))
                    .bind(changes.credits.is_some());
                let update = bind_credits(update, changes.credits.flatten().as_ref());
                key_changed(change_key(&mut db, update, AuditAction::ApiKeyUpdate, &actor).await?)
            })
        })
        .await
    }

    async fn delete_key(&self, id: i64, actor: &Actor) -> Result<bool> {
        static DELETE: LazyLock<String> =
            LazyLock::new(|| returning_keys("DELETE FROM api_keys WHERE id = $1"));
        let actor = *actor;
        let deleted = self
            .transact(move |mut db| {
                Box::pin(async move {
                    if decide_key_write(&mut db, id, &actor, KeyWrite::Delete, crate::now()).await?.is_none()
                    {
                        return Ok((None, vec![]));
                    }
                    let delete = sql(&DELETE).bind(id);
                    key_changed(change_key(&mut db, delete, AuditAction::ApiKeyDelete, &actor).await?)
                })
            })
            .await?;
        Ok(deleted.is_some())
    }

    async fn revoke_key(&self, digest: &KeyDigest, actor: &Actor) -> Result<Vec<ApiKeyRecord>> {
        // Reports of one lineage at once may deadlock on its rows
        // (PostgreSQL): the one aborted runs again, and finds what is left.
        let mut attempts = 0;
        loop {
            let (digest, actor) = (*digest, *actor);
            let revoked =
                self.transact(move |mut db| Box::pin(async move { revoke(&mut db, &digest, &actor).await }));
            match revoked.await {
                Err(error) if attempts < 3 && error.is_deadlock() => attempts += 1,
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
        static ROTATE: LazyLock<String> = LazyLock::new(|| {
            returning_keys(
                "UPDATE api_keys SET previous_digest = CASE WHEN $4 THEN digest ELSE NULL END, \
                 previous_expires_at = $5, digest = $2, preview = $3, updated_at = $6 \
                 WHERE id = $1 AND digest = $7",
            )
        });
        let (current, actor) = (*current, *actor);
        self.transact(move |mut db| {
            Box::pin(async move {
                if decide_key_write(&mut db, id, &actor, KeyWrite::Rotate, crate::now()).await?.is_none() {
                    return Ok((None, vec![]));
                }
                let update = sql(&ROTATE)
                    .bind(id)
                    .bind(&material.digest.as_bytes()[..])
                    .bind(material.preview.as_str())
                    .bind(grace_until.is_some())
                    .bind(grace_until)
                    .bind(crate::now())
                    .bind(&current.as_bytes()[..]);
                key_changed(change_key(&mut db, update, AuditAction::ApiKeyRotate, &actor).await?)
            })
        })
        .await
    }

    async fn lease_credits(&self, id: i64, need: u64, now: DateTime<Utc>) -> Result<Option<CreditLease>> {
        self.transact(move |mut db| {
            Box::pin(async move { Ok((lease(&mut db, id, need, now).await?, vec![])) })
        })
        .await
    }

    async fn return_credits(&self, id: i64, amount: u64, lease: Balance) -> Result<()> {
        self.transact(move |mut db| {
            Box::pin(async move {
                sql("UPDATE api_keys SET credits_remaining = credits_remaining + $2 \
                     WHERE id = $1 AND credits_generation = $3 AND credits_period IS NOT DISTINCT FROM $4 \
                     AND credits_remaining IS NOT NULL")
                .bind(id)
                .bind(i64::try_from(amount).unwrap_or(i64::MAX))
                .bind(lease.generation)
                .bind(lease.period_ms)
                .execute(&mut db)
                .await?;
                Ok(((), vec![]))
            })
        })
        .await
    }
}

/// A change of one key, announced as [`AuthChange::Key`] if it found it.
fn key_changed(key: Option<ApiKeyRecord>) -> Result<Written<Option<ApiKeyRecord>>> {
    let changes = key.iter().map(|key| AuthChange::Key { id: key.id }).collect();
    Ok((key, changes))
}

/// Binds a credit balance, its refill, and the start of the refill period
/// it belongs to (each `NULL` for unlimited credits).
fn bind_credits<'s>(statement: Statement<'s>, credits: Option<&Credits>) -> Statement<'s> {
    let now = crate::now();
    statement
        .bind(credits.map(|c| c.remaining))
        .bind(credits.and_then(|c| refill_json(c.refill.as_ref())))
        .bind(credits.and_then(|c| c.refill).map(|refill| refill.period_start(now).timestamp_millis()))
}

/// Inserts the key's row and its `apikey.create` event(s); the caller has
/// checked its organization and membership.
pub(crate) async fn insert(db: &mut Db<'_>, key: &NewApiKey, actor: &Actor) -> Result<ApiKeyRecord> {
    static INSERT: LazyLock<String> = LazyLock::new(|| {
        returning_keys(
            "INSERT INTO api_keys (digest, preview, mode, name, user_id, org_id, limited_to_apps, expires_at, \
             created_by_key_id, created_at, updated_at, enabled, ratelimits, credits_remaining, \
             credits_refill, credits_period) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14, $15)",
        )
    });
    let insert = sql(&INSERT)
        .bind(&key.material.digest.as_bytes()[..])
        .bind(key.material.preview.as_str())
        .bind(key.mode.as_str())
        .bind(key.name.as_str())
        .bind(key.user_id)
        .bind(key.org_id)
        .bind(AppList::from(&key.limited_to_apps[..]))
        .bind(key.expires_at)
        .bind(key.created_by_key_id)
        .bind(crate::now())
        .bind(key.limits.enabled)
        .bind(ratelimits_json(&key.limits.ratelimits));
    let row: KeyRow = bind_credits(insert, key.limits.credits.as_ref())
        .fetch_one(db)
        .await
        .map_err(|e| write_error(e, Entity::Organization, Entity::ApiKey))?;
    let key = ApiKeyRecord::try_from(row)?;
    log_key(db, &key, Event::new(AuditAction::ApiKeyCreate, key.id, actor)).await?;
    Ok(key)
}

/// Runs `statement`, a change of one existing key that returns it; if it
/// found the key, writes the change's event. A new secret already in use is
/// a conflict.
async fn change_key(
    db: &mut Db<'_>,
    statement: Statement<'_>,
    action: AuditAction,
    actor: &Actor,
) -> Result<Option<ApiKeyRecord>> {
    let row: Option<KeyRow> =
        statement.fetch_optional(db).await.map_err(|e| write_error(e, Entity::ApiKey, Entity::ApiKey))?;
    let Some(key) = one::<_, ApiKeyRecord>(row)? else {
        return Ok(None);
    };
    // The owner's memberships are untouched, even by a delete: an unscoped
    // key's event still finds its organizations.
    log_key(db, &key, Event::new(action, key.id, actor)).await?;
    Ok(Some(key))
}

/// Revokes the keys answering to `digest` ([`answering`]) and every key they
/// made, each with its `apikey.revoke` event. The reported keys are locked
/// first, then their lineage is deleted until nothing is left of it: on
/// PostgreSQL, a key minted meanwhile by one of them (which holds its parent
/// `FOR SHARE` until it commits) is taken by the next round, and one still
/// being minted finds its parent gone.
async fn revoke(db: &mut Db<'_>, digest: &KeyDigest, actor: &Actor) -> Result<Written<Vec<ApiKeyRecord>>> {
    let reported = answering(db, digest, crate::now()).await?;
    let mut keys = Vec::new();
    if reported.is_empty() {
        return Ok((keys, vec![]));
    }
    // `$1` the reported keys' ids: those keys and every key they created,
    // transitively, as `key_ancestry` keeps them (deleted keys in between
    // included).
    let lineage = returning_keys(if db.is_postgres() {
        "DELETE FROM api_keys WHERE id = ANY($1) \
         OR id IN (SELECT descendant_id FROM key_ancestry WHERE ancestor_id = ANY($1))"
    } else {
        "DELETE FROM api_keys WHERE id IN (SELECT value FROM json_each($1)) \
         OR id IN (SELECT descendant_id FROM key_ancestry WHERE ancestor_id IN (SELECT value FROM json_each($1)))"
    });
    loop {
        let rows: Vec<KeyRow> = sql(&lineage).bind(reported.clone()).fetch_all(db).await?;
        if rows.is_empty() {
            break;
        }
        for key in all::<_, ApiKeyRecord>(rows)? {
            log_key(db, &key, Event::new(AuditAction::ApiKeyRevoke, key.id, actor)).await?;
            keys.push(key);
        }
    }
    let changes = keys.iter().map(|key| AuthChange::Key { id: key.id }).collect();
    Ok((keys, changes))
}

/// The keys a leak report of `digest` names, held for update: those it
/// answers for at `now` ([`keygate_core::key_writes::secret_answers`]), its
/// current secret or a previous one inside the rotation's grace period.
pub(crate) async fn answering(db: &mut Db<'_>, digest: &KeyDigest, now: DateTime<Utc>) -> Result<Vec<i64>> {
    let text = format!(
        "SELECT id, {VALID_UNTIL} AS valid_until FROM api_keys WHERE {BY_EITHER_DIGEST}{}",
        db.locking(RowLock::Update)
    );
    let rows: Vec<(i64, Option<DateTime<Utc>>)> =
        sql(&text).bind(&digest.as_bytes()[..]).fetch_all(db).await?;
    Ok(rows
        .into_iter()
        .filter(|(_, until)| keygate_core::key_writes::secret_answers(*until, now))
        .map(|(id, _)| id)
        .collect())
}

/// Takes up to `need` credits of key `id` at `now` from its balance, held
/// for update: `None` for a key without credits.
async fn lease(db: &mut Db<'_>, id: i64, need: u64, now: DateTime<Utc>) -> Result<Option<CreditLease>> {
    let read = format!(
        "SELECT credits_remaining, credits_refill, credits_period, credits_generation FROM api_keys WHERE id = $1{}",
        db.locking(RowLock::Update)
    );
    let row: Option<CreditRow> = sql(&read).bind(id).fetch_optional(db).await?;
    let Some(credits) = row.map(|row| row.credits(id)).transpose()?.flatten() else {
        return Ok(None);
    };
    let (balance, granted) = credits.balance.lease(credits.refill.as_ref(), now, need);
    if balance != credits.balance {
        sql("UPDATE api_keys SET credits_remaining = $2, credits_period = $3 WHERE id = $1")
            .bind(id)
            .bind(balance.remaining)
            .bind(balance.period_ms)
            .execute(db)
            .await?;
    }
    Ok(Some(CreditLease { granted, balance }))
}
