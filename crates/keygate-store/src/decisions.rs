//! The facts a write is decided on, read by either backend in the write's
//! own transaction, before the statement that changes anything: under
//! SQLite's single writer nothing moves meanwhile; PostgreSQL locks first.
//!
//! - A change of an existing key ([`keygate_core::key_writes::may_write_key`]):
//!   the organization's row `FOR SHARE` (membership, block and policy changes
//!   take it exclusively), then both keys `FOR UPDATE`, in id order, so that
//!   two writes on each other's keys cannot deadlock.
//! - A new key ([`keygate_core::key_writes::may_create_key`]), a change of
//!   an organization's settings or its deletion: the calling key (`FOR
//!   SHARE`: a revocation, a block or a change of it waits, and then sees
//!   the new key among its children) and its role there as it acts, read
//!   after the caller locked the organization.

use chrono::{DateTime, Utc};
use keygate_core::authz::Principal;
use keygate_core::key_writes::{KeyState, KeyWrite, KeyWriteFacts, may_write_key};
use keygate_core::rules;
use keygate_core::{Refusal, Role};
use sqlx::FromRow;
use uuid::Uuid;

use crate::backend::RowLock;
use crate::rows::{KEY_COLUMNS, KeyRow, role};
use crate::sql::{Db, sql};
use crate::{Actor, ApiKeyRecord, Result, StoreError};

#[derive(FromRow)]
pub(crate) struct OrgFacts {
    require_apikey_expiration: bool,
    max_apikey_expiration_days: Option<i32>,
    owner_role: Option<String>,
    caller_role: Option<String>,
    caller_blocked: bool,
}

/// Decides `write` of key `id` by `actor` in the transaction on `conn`,
/// returning the key as it stands. `Ok(None)`: no such key. The operator
/// (an actor without a key) is bound by no rule here.
pub(crate) async fn decide_key_write(
    db: &mut Db<'_>,
    id: i64,
    actor: &Actor,
    write: KeyWrite<'_>,
    now: DateTime<Utc>,
) -> Result<Option<ApiKeyRecord>> {
    // A key's organization never changes: read first, to lock in order.
    let org: Option<Option<Uuid>> =
        sql("SELECT org_id FROM api_keys WHERE id = $1").bind(id).scalar(db).await?;
    let Some(org) = org else { return Ok(None) };
    if let Some(org) = org {
        let lock = format!("SELECT id FROM organizations WHERE id = $1{}", db.locking(RowLock::Share));
        let locked: Option<Uuid> = sql(&lock).bind(org).scalar(db).await?;
        if locked.is_none() {
            return Ok(None);
        }
    }
    let caller_key = actor.key_id.unwrap_or(id);
    let keys = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 OR id = $2 ORDER BY id{}",
        db.locking(RowLock::Update)
    );
    let rows: Vec<KeyRow> = sql(&keys).bind(id).bind(caller_key).fetch_all(db).await?;
    let keys: Vec<ApiKeyRecord> = crate::rows::all(rows)?;
    let Some(key) = keys.iter().find(|key| key.id == id).cloned() else { return Ok(None) };
    let (Some(caller_id), Some(user)) = (actor.key_id, actor.user_id) else {
        return Ok(Some(key));
    };
    let caller = keys.iter().find(|key| key.id == caller_id).map(|caller| calling_key(caller, actor));
    let (mut caller_role, mut owner_role, mut policy) = (None, None, None);
    if let Some(org) = org {
        let facts: OrgFacts = sql("SELECT require_apikey_expiration, max_apikey_expiration_days, \
             (SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2) AS owner_role, \
             (SELECT role FROM memberships WHERE org_id = $1 AND user_id = $3) AS caller_role, \
             EXISTS (SELECT 1 FROM key_blocks b WHERE b.org_id = $1 AND b.key_id = $4) AS caller_blocked \
             FROM organizations WHERE id = $1")
        .bind(org)
        .bind(key.user_id)
        .bind(user)
        .bind(caller_id)
        .fetch_one(db)
        .await?;
        owner_role = facts.owner_role.as_deref().map(role).transpose()?;
        caller_role = rules::role_as_key_acts(
            facts.caller_role.as_deref().map(role).transpose()?,
            facts.caller_blocked,
        );
        policy = Some(crate::model::expiry_policy(
            facts.require_apikey_expiration,
            facts.max_apikey_expiration_days,
        ));
    }
    let facts = KeyWriteFacts { caller, caller_role, key: key.principal(), owner_role, policy, now };
    may_write_key(&facts, write).map_err(StoreError::Refused)?;
    Ok(Some(key))
}

/// The calling key as the transaction finds it: rotated since the request
/// was authenticated, its secret is on its way out
/// ([`Principal::retiring`]).
fn calling_key(key: &ApiKeyRecord, actor: &Actor) -> KeyState {
    let mut principal = key.principal();
    principal.retiring = actor.presented.is_some_and(|presented| presented != key.digest);
    KeyState { principal, enabled: key.enabled }
}

/// What a calling key acts with, and no more: the columns [`CallerRow`]
/// reads.
const CALLER_COLUMNS: &str =
    "id, digest, mode, user_id, org_id, limited_to_apps, expires_at, enabled, ratelimits, credits_remaining";

/// A calling key as a decision reads it.
#[derive(FromRow)]
pub(crate) struct CallerRow {
    id: i64,
    digest: Vec<u8>,
    mode: String,
    user_id: Uuid,
    org_id: Option<Uuid>,
    limited_to_apps: crate::rows::AppList,
    expires_at: Option<DateTime<Utc>>,
    enabled: bool,
    ratelimits: String,
    credits_remaining: Option<i64>,
}

impl CallerRow {
    /// The key as it acts for `actor` ([`calling_key`]).
    fn state(self, actor: &Actor) -> Result<KeyState> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("api_keys.{what} of key {}", self.id));
        let mode = keygate_core::Mode::parse(&self.mode).ok_or_else(|| corrupt("mode"))?;
        let digest = keygate_core::KeyDigest::from_slice(&self.digest).ok_or_else(|| corrupt("digest"))?;
        let ratelimits: Vec<keygate_core::limits::RateLimit> =
            serde_json::from_str(&self.ratelimits).map_err(|_| corrupt("ratelimits"))?;
        let principal = Principal {
            key_id: self.id,
            user_id: self.user_id,
            mode,
            scope: keygate_core::Scope { org: self.org_id, apps: self.limited_to_apps.0 },
            expires_at: self.expires_at,
            limited: crate::model::is_limited(&ratelimits, self.credits_remaining.is_some()),
            retiring: actor.presented.is_some_and(|presented| presented != digest),
        };
        Ok(KeyState { principal, enabled: self.enabled })
    }
}

#[derive(FromRow)]
pub(crate) struct ActingRow {
    #[sqlx(flatten)]
    key: CallerRow,
    role: Option<String>,
    blocked: bool,
    require_expiration: Option<bool>,
    max_days: Option<i32>,
}

/// What a calling key acts with in an organization, as [`acting_in_org`]
/// reads it.
pub(crate) struct Acting {
    pub(crate) caller: Principal,
    /// As the key acts there: `None` when not a member, or blocked there.
    pub(crate) role: Option<Role>,
    /// The organization's expiry policy.
    pub(crate) policy: keygate_core::rules::ExpiryPolicy,
}

/// The calling key of `actor`, if it still works at `now`, with its
/// owner's role in `org` as that key acts there (`None`: not a member, or
/// the key is blocked there), held until the commit. `Ok(None)` for the operator, whom no rule
/// binds; [`Refusal::CallerRevoked`](keygate_core::Refusal::CallerRevoked)
/// for a key gone meanwhile.
pub(crate) async fn acting_in_org(
    db: &mut Db<'_>,
    org: Uuid,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Option<Acting>> {
    let Some(key_id) = actor.key_id else { return Ok(None) };
    let row: Option<ActingRow> = sql(acting_sql(db)).bind(key_id).bind(org).fetch_optional(db).await?;
    let Some(row) = row else { return Err(StoreError::Refused(Refusal::CallerRevoked)) };
    let state = row.key.state(actor)?;
    KeyState::acting(Some(&state), now).map_err(StoreError::Refused)?;
    let role = rules::role_as_key_acts(row.role.as_deref().map(role).transpose()?, row.blocked);
    let policy = crate::model::expiry_policy(row.require_expiration.unwrap_or(false), row.max_days);
    Ok(Some(Acting { caller: state.principal, role, policy }))
}

/// The statement [`acting_in_org`] runs (`$1` the key, `$2` the
/// organization), built once per backend.
fn acting_sql(db: &Db<'_>) -> &'static str {
    static SHARED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static UNLOCKED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let lock = db.locking(RowLock::Share);
    let build = || {
        format!(
            "SELECT {CALLER_COLUMNS}, \
             (SELECT m.role FROM memberships m WHERE m.org_id = $2 AND m.user_id = api_keys.user_id) AS role, \
             EXISTS (SELECT 1 FROM key_blocks b WHERE b.org_id = $2 AND b.key_id = $1) AS blocked, \
             (SELECT o.require_apikey_expiration FROM organizations o WHERE o.id = $2) AS require_expiration, \
             (SELECT o.max_apikey_expiration_days FROM organizations o WHERE o.id = $2) AS max_days \
             FROM api_keys WHERE id = $1{lock}"
        )
    };
    if lock.is_empty() { UNLOCKED.get_or_init(build) } else { SHARED.get_or_init(build) }
}

/// What an organization holds, read just before it is deleted, as the
/// instance's log keeps it: `$1` the organization.
pub(crate) const HOLDINGS: &str = "SELECT name, \
    (SELECT COUNT(*) FROM memberships WHERE org_id = $1) AS members, \
    (SELECT COUNT(*) FROM api_keys WHERE org_id = $1) AS keys, \
    (SELECT COUNT(*) FROM apps WHERE org_id = $1) AS apps, \
    (SELECT COUNT(*) FROM bundles b JOIN apps a ON a.app_id = b.app_id WHERE a.org_id = $1) AS bundles \
    FROM organizations WHERE id = $1";

/// What [`HOLDINGS`] read.
#[derive(FromRow)]
pub(crate) struct Holdings {
    pub(crate) name: String,
    pub(crate) members: i64,
    pub(crate) keys: i64,
    pub(crate) apps: i64,
    pub(crate) bundles: i64,
}

impl Holdings {
    pub(crate) fn detail(&self) -> String {
        let Self { name, members, keys, apps, bundles } = self;
        serde_json::json!({ "name": name, "members": members, "keys": keys, "apps": apps, "bundles": bundles })
            .to_string()
    }
}

/// Whether the calling key of `actor` may create `key` in `org`
/// ([`keygate_core::key_writes::may_create_key`]), over the key and its
/// standing there as they are now, and the organization's policy; the
/// operator is bound by no rule here. `Ok(true)` when the decision covered
/// the new key's owner too: the calling key's, a member of `org` (the
/// decision needs a role there) under the policy it checked.
pub(crate) async fn may_create(
    db: &mut Db<'_>,
    org: Uuid,
    key: &crate::NewApiKey,
    actor: &Actor,
) -> Result<bool> {
    let now = crate::now();
    let Some(acting) = acting_in_org(db, org, actor, now).await? else { return Ok(false) };
    let scope = keygate_core::Scope { org: Some(org), apps: key.limited_to_apps.clone() };
    let grant = keygate_core::authz::Grant { mode: key.mode, scope: &scope, expires_at: key.expires_at };
    let owner = acting.caller.user_id;
    let caller = KeyState { principal: acting.caller, enabled: true };
    keygate_core::key_writes::may_create_key(Some(&caller), acting.role, &grant, acting.policy, now)
        .map_err(StoreError::Refused)?;
    Ok(owner == key.user_id)
}

/// The expiry policy of `org`, once its member `owner` may hold a key
/// there ([`rules::may_hold_key_in_org`]), read (shared on PostgreSQL)
/// where the key is inserted: for a key no calling key's decision covered
/// ([`may_create`] answered `false`: the operator's).
pub(crate) async fn owner_may_hold_key(
    db: &mut Db<'_>,
    org: Uuid,
    owner: Uuid,
) -> Result<rules::ExpiryPolicy> {
    let text = format!(
        "SELECT require_apikey_expiration, max_apikey_expiration_days, \
         (SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2) AS role \
         FROM organizations WHERE id = $1{}",
        db.locking(RowLock::Share)
    );
    let row: Option<(bool, Option<i32>, Option<String>)> =
        sql(&text).bind(org).bind(owner).fetch_optional(db).await?;
    let (require_expiration, max_days, owner_role) =
        row.ok_or(StoreError::NotFound(crate::Entity::Organization))?;
    rules::may_hold_key_in_org(owner_role.as_deref().map(role).transpose()?)
        .map_err(|_| StoreError::NotFound(crate::Entity::Membership))?;
    Ok(crate::model::expiry_policy(require_expiration, max_days))
}

/// Whether the calling key of `actor` still administers `org`, as it stands
/// in this transaction ([`rules::may_administer`]): the check of every
/// change of members, blocks and invitations, before its own rules. The
/// operator is bound by no rule here.
pub(crate) async fn still_administers(db: &mut Db<'_>, org: Uuid, actor: &Actor) -> Result<()> {
    let Some(acting) = acting_in_org(db, org, actor, crate::now()).await? else { return Ok(()) };
    match rules::may_administer(&acting.caller, acting.role, org) {
        Ok(_) => Ok(()),
        Err(Refusal::Invisible) => Err(StoreError::NotFound(crate::Entity::Organization)),
        Err(refusal) => Err(StoreError::Refused(refusal)),
    }
}

/// Whether the calling key of `actor`, as it stands now, may make `write`
/// to app `app_id` of `org` ([`Principal::decide`] over
/// [`AppWrite::action`](keygate_core::AppWrite::action)); the operator is
/// bound by no rule here. What it may not see answers as absent: the app,
/// or the organization for a new app.
pub(crate) async fn may_write_app(
    db: &mut Db<'_>,
    org: Uuid,
    app_id: &keygate_core::AppId,
    actor: &Actor,
    write: keygate_core::AppWrite,
) -> Result<()> {
    let Some(acting) = acting_in_org(db, org, actor, crate::now()).await? else { return Ok(()) };
    let target = keygate_core::authz::Target::app(org, app_id);
    match acting.caller.decide(acting.role, target, write.action()) {
        keygate_core::Decision::Allow => Ok(()),
        keygate_core::Decision::Forbidden => Err(StoreError::Refused(Refusal::Forbidden)),
        keygate_core::Decision::Invisible if write == keygate_core::AppWrite::Create => {
            Err(StoreError::NotFound(crate::Entity::Organization))
        }
        keygate_core::Decision::Invisible => Err(StoreError::NotFound(crate::Entity::App)),
    }
}

/// The calling key of `actor` as this transaction finds it (held `FOR
/// SHARE` on PostgreSQL, so that a revocation or a change of it waits):
/// `None` for the operator, [`Refusal::CallerRevoked`] for a key gone or no
/// longer working.
pub(crate) async fn calling_key_now(db: &mut Db<'_>, actor: &Actor) -> Result<Option<Principal>> {
    let Some(key_id) = actor.key_id else { return Ok(None) };
    let text = format!("SELECT {CALLER_COLUMNS} FROM api_keys WHERE id = $1{}", db.locking(RowLock::Share));
    let row: Option<CallerRow> = sql(&text).bind(key_id).fetch_optional(db).await?;
    let Some(row) = row else { return Err(StoreError::Refused(Refusal::CallerRevoked)) };
    let state = row.state(actor)?;
    Ok(Some(KeyState::acting(Some(&state), crate::now()).map_err(StoreError::Refused)?.clone()))
}

/// Whether the key presented with a redemption is, as it stands now, free
/// to speak for its account ([`keygate_core::rules::Presented::free`]):
/// live, unrestrained, presented by its current secret.
pub(crate) async fn presented_is_free(db: &mut Db<'_>, presented: &crate::PresentedKey) -> Result<bool> {
    let actor = Actor {
        user_id: Some(presented.user_id),
        key_id: Some(presented.key_id),
        ip: None,
        presented: Some(presented.digest),
    };
    match calling_key_now(db, &actor).await {
        // Free when authenticated (a secret in its grace period never is),
        // and still free now.
        Ok(key) => {
            Ok(presented.free && key.is_some_and(|key| key.user_id == presented.user_id && key.may_mint()))
        }
        Err(StoreError::Refused(Refusal::CallerRevoked)) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Whether the calling key of `actor`, as it stands now, may create an
/// organization ([`rules::may_create_organization`]).
pub(crate) async fn may_create_organization_now(db: &mut Db<'_>, actor: &Actor) -> Result<()> {
    match calling_key_now(db, actor).await? {
        Some(caller) if !rules::may_create_organization(&caller) => {
            Err(StoreError::Refused(Refusal::Forbidden))
        }
        _ => Ok(()),
    }
}
