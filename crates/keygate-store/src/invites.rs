//! Invitations: each write one transaction that first holds its
//! organization ([`RowLock::Exclusive`], as membership changes do), so that
//! the roles it decides on stay as read until it commits. The decisions
//! are [`keygate_core::rules::may_invite`], [`rules::may_redeem`] and
//! [`rules::may_withdraw_invite`], taken over facts read in the write's own
//! transaction.
//!
//! A code is single use because redeeming marks the row in the same
//! statement that finds it (`UPDATE … WHERE redeemed_at IS NULL …
//! RETURNING`): of two redemptions at once, one finds nothing. A redemption
//! that a rule refuses rolls back whole, that mark included.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keygate_core::rules::{self, ExpiryPolicy, Invitee, IssuingKey, Presented, Redemption, Refusal};
use keygate_core::{KeyName, Role};
use uuid::Uuid;

use crate::backend::{Backend, RowLock, lock_org};
use crate::event::{Event, log, log_instance};
use crate::key_blocks::KeyInOrgRow;
use crate::model::expiry_policy;
use crate::sql::{Db, sql};
use crate::{
    Actor, ApiKeyRecord, AuditAction, AuthChange, Entity, Invite, InviteStore, KeyInOrg, KeyLimits,
    KeyMaterial, NewApiKey, NewInvite, Redeemed, Redeemer, Result, StoreError, rows,
};

#[async_trait]
impl<B: Backend> InviteStore for B {
    async fn create_invite(&self, invite: NewInvite, actor: &Actor) -> Result<Invite> {
        let actor = *actor;
        self.transact(move |mut db| {
            Box::pin(async move {
                lock_org(&mut db, invite.org_id, RowLock::Exclusive).await?;
                crate::decisions::still_administers(&mut db, invite.org_id, &actor).await?;
                let parties: Parties = sql(PARTIES)
                    .bind(invite.org_id)
                    .bind(actor.user_id)
                    .bind(invite.email.as_str())
                    .fetch_one(&mut db)
                    .await?;
                parties.may_issue(&invite)?;
                let row: InviteRow = sql(&INSERT)
                    .bind(invite.org_id)
                    .bind(invite.email.as_str())
                    .bind(invite.role.as_str())
                    .bind(&invite.digest[..])
                    .bind(actor.user_id)
                    .bind(actor.key_id)
                    .bind(crate::now())
                    .bind(invite.expires_at)
                    .fetch_one(&mut db)
                    .await?;
                let invite = Invite::try_from(row)?;
                log(&mut db, invite.org_id, Event::new(AuditAction::InviteCreate, invite.id, &actor)).await?;
                Ok((invite, vec![]))
            })
        })
        .await
    }

    async fn pending_invites(&self, org_id: Uuid, now: DateTime<Utc>) -> Result<Vec<Invite>> {
        open_at(sql(&PENDING).bind(org_id).fetch_all(&mut self.reads()).await?, now)
    }

    async fn revoke_invite(&self, org_id: Uuid, id: i64, actor: &Actor) -> Result<bool> {
        let actor = *actor;
        self.transact(move |mut db| {
            Box::pin(async move {
                let acting = actor.user_id.ok_or(StoreError::NotFound(Entity::Organization))?;
                lock_org(&mut db, org_id, RowLock::Exclusive).await?;
                let role: Option<String> = sql(ACTING_ROLE).bind(org_id).bind(acting).scalar(&mut db).await?;
                let found: Option<InviteRow> =
                    sql(&PENDING_ONE).bind(org_id).bind(id).fetch_optional(&mut db).await?;
                let Some(invite) = found.map(Invite::try_from).transpose()? else {
                    return Ok((false, vec![]));
                };
                let issuer_role: Option<String> =
                    sql(ACTING_ROLE).bind(org_id).bind(invite.created_by).scalar(&mut db).await?;
                may_withdraw(acting, role.as_deref(), &invite, issuer_role.as_deref())?;
                sql(REVOKE).bind(id).execute(&mut db).await?;
                log(&mut db, org_id, Event::new(AuditAction::InviteRevoke, id, &actor)).await?;
                Ok((true, vec![]))
            })
        })
        .await
    }

    async fn redeem_invite(
        &self,
        digest: &[u8; 32],
        now: DateTime<Utc>,
        redeemer: Redeemer,
    ) -> Result<Option<Redeemed>> {
        let digest = *digest;
        self.transact(move |mut db| Box::pin(async move { redeem(&mut db, &digest, now, redeemer).await }))
            .await
    }
}

/// Redeems the invitation whose code has `digest`, if it is open and the
/// rules let `redeemer` have it: the membership, a new account's first key.
async fn redeem(
    db: &mut Db<'_>,
    digest: &[u8; 32],
    now: DateTime<Utc>,
    mut redeemer: Redeemer,
) -> Result<crate::backend::Written<Option<Redeemed>>> {
    // The organization first, then the invitation, as every other write of
    // invitations and memberships holds them.
    let org: Option<Uuid> = sql(ORG_OF_CODE).bind(&digest[..]).scalar(db).await?;
    let Some(org_id) = org else { return Ok((None, vec![])) };
    lock_org(db, org_id, RowLock::Exclusive).await?;
    let claimed: Option<InviteRow> = sql(&CLAIM).bind(&digest[..]).bind(now).fetch_optional(db).await?;
    let Some(invite) = claimed.map(Invite::try_from).transpose()? else { return Ok((None, vec![])) };
    let parties: Parties =
        sql(PARTIES).bind(org_id).bind(invite.created_by).bind(invite.email.as_str()).fetch_one(db).await?;
    let issuing_key: Option<KeyInOrg> = match invite.created_by_key_id {
        Some(key_id) => {
            let text = format!("{}{}", ISSUING_KEY.as_str(), db.locking(RowLock::Share));
            rows::one::<KeyInOrgRow, _>(sql(&text).bind(key_id).bind(org_id).fetch_optional(db).await?)?
        }
        None => None,
    };
    // The presented key as it stands now, not as authentication saw it.
    if let Some(presented) = redeemer.presented.as_mut() {
        presented.free = crate::decisions::presented_is_free(db, presented).await?;
    }
    let redemption = parties.redemption(&invite, issuing_key.as_ref(), now, &redeemer)?;
    let user_id = match redemption {
        Redemption::Join { user } => user,
        Redemption::NewAccount => {
            let user_id = Uuid::now_v7();
            sql(NEW_USER)
                .bind(user_id)
                .bind(invite.email.as_str())
                .bind(crate::now())
                .execute(db)
                .await
                .map_err(|e| crate::error::write_error(e, Entity::User, Entity::User))?;
            let created =
                Event::new(AuditAction::UserCreate, user_id, &Actor { ip: redeemer.ip, ..Actor::OPERATOR });
            log_instance(db, created, None).await?;
            user_id
        }
    };
    sql(REDEEMED_BY).bind(invite.id).bind(user_id).execute(db).await?;
    sql(JOIN).bind(org_id).bind(user_id).bind(invite.role.as_str()).bind(crate::now()).execute(db).await?;
    let redeemer_actor = Actor {
        user_id: Some(user_id),
        key_id: redeemer.presented.map(|key| key.key_id),
        ip: redeemer.ip,
        presented: None,
    };
    log(db, org_id, Event::new(AuditAction::InviteRedeem, invite.id, &redeemer_actor)).await?;
    let key = match redemption {
        Redemption::Join { .. } => None,
        Redemption::NewAccount => {
            let (require, max_days): (bool, Option<i32>) = sql(POLICY).bind(org_id).fetch_one(db).await?;
            // Only reached when the issuing key stands.
            let issuing = issuing_key.as_ref().ok_or(StoreError::NotFound(Entity::ApiKey))?;
            let policy = expiry_policy(require, max_days);
            let new = first_key(redeemer.first_key, user_id, org_id, policy, now, &issuing.key);
            Some(crate::keys::insert(db, &new, &redeemer_actor).await?)
        }
    };
    let redeemed = Redeemed { invite_id: invite.id, user_id, org_id, role: invite.role, key };
    Ok((Some(redeemed), vec![AuthChange::Member { org_id, user_id }]))
}

/// The columns an invitation is read from.
const INVITE_COLUMNS: &str = "id, org_id, email, role, created_by, created_by_key_id, created_at, expires_at";

pub(crate) static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO invites (org_id, email, role, digest, created_by, created_by_key_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {INVITE_COLUMNS}"
    )
});

pub(crate) static PENDING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {INVITE_COLUMNS} FROM invites \
         WHERE org_id = $1 AND redeemed_at IS NULL ORDER BY id DESC"
    )
});

/// A pending invitation of the organization, with its role and issuer.
pub(crate) static PENDING_ONE: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {INVITE_COLUMNS} FROM invites WHERE org_id = $1 AND id = $2 AND redeemed_at IS NULL")
});

pub(crate) const REVOKE: &str = "DELETE FROM invites WHERE id = $1";

/// Marks the invitation used, if no one did, and returns it; the
/// redemption's decision (expiry included) may still undo it.
pub(crate) static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE invites SET redeemed_at = $2 WHERE digest = $1 AND redeemed_at IS NULL \
         RETURNING {INVITE_COLUMNS}"
    )
});

/// The key `$1` an invitation was issued with, and whether it is blocked in
/// the invitation's organization `$2`.
pub(crate) static ISSUING_KEY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {columns}, EXISTS (SELECT 1 FROM key_blocks b WHERE b.key_id = api_keys.id AND b.org_id = $2) \
         AS blocked FROM api_keys WHERE id = $1",
        columns = crate::rows::KEY_COLUMNS
    )
});

/// The organization of the invitation whose code has the digest `$1`.
pub(crate) const ORG_OF_CODE: &str = "SELECT org_id FROM invites WHERE digest = $1";

pub(crate) const REDEEMED_BY: &str = "UPDATE invites SET redeemed_by = $2 WHERE id = $1";

pub(crate) const NEW_USER: &str = "INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3)";

pub(crate) const JOIN: &str =
    "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)";

pub(crate) const POLICY: &str =
    "SELECT require_apikey_expiration, max_apikey_expiration_days FROM organizations WHERE id = $1";

/// The facts an invitation is issued and redeemed on, in one read (`$1`
/// organization, `$2` the inviter, `$3` the invitee's address): the
/// inviter's role now, and the account with that address, if any, with its
/// role in the organization.
pub(crate) const PARTIES: &str = "SELECT \
     (SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2) AS inviter, \
     (SELECT id FROM users WHERE email = $3) AS invitee, \
     (SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id \
      WHERE m.org_id = $1 AND u.email = $3) AS invitee_role";

/// The role of `$2` in `$1`, as the acting member's.
pub(crate) const ACTING_ROLE: &str = "SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2";

#[derive(sqlx::FromRow)]
pub(crate) struct InviteRow {
    id: i64,
    org_id: Uuid,
    email: String,
    role: String,
    created_by: Option<Uuid>,
    created_by_key_id: Option<i64>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl TryFrom<InviteRow> for Invite {
    type Error = StoreError;

    fn try_from(row: InviteRow) -> Result<Self, StoreError> {
        Ok(Invite {
            id: row.id,
            org_id: row.org_id,
            email: row.email,
            role: crate::rows::role(&row.role)?,
            created_by: row.created_by,
            created_by_key_id: row.created_by_key_id,
            created_at: row.created_at,
            expires_at: row.expires_at,
        })
    }
}

/// What [`PARTIES`] read.
#[derive(sqlx::FromRow)]
pub(crate) struct Parties {
    inviter: Option<String>,
    invitee: Option<Uuid>,
    invitee_role: Option<String>,
}

impl Parties {
    fn inviter(&self) -> Result<Option<Role>> {
        self.inviter.as_deref().map(crate::rows::role).transpose()
    }

    fn invitee_role(&self) -> Result<Option<Role>> {
        self.invitee_role.as_deref().map(crate::rows::role).transpose()
    }

    /// Whether the inviter may issue `invite` now ([`rules::may_invite`]).
    pub(crate) fn may_issue(&self, invite: &NewInvite) -> Result<()> {
        rules::may_invite(self.inviter()?, invite.role, self.invitee_role()?).map_err(refused)
    }

    /// What redeeming `invite` by `redeemer` at `now` does, given the key
    /// it was issued with, as [`ISSUING_KEY`] read it
    /// ([`rules::may_redeem`]).
    pub(crate) fn redemption(
        &self,
        invite: &Invite,
        issuing_key: Option<&KeyInOrg>,
        now: DateTime<Utc>,
        redeemer: &Redeemer,
    ) -> Result<Redemption> {
        let invitee = match self.invitee {
            Some(user) => Invitee::Existing { user, role: self.invitee_role()? },
            None => Invitee::New,
        };
        let issuing = issuing_key.map(|issuing| IssuingKey {
            expires_at: issuing.key.expires_at,
            enabled: issuing.key.enabled,
            restrained: !issuing.key.principal().may_mint(),
            blocked: issuing.blocked,
        });
        let presented =
            redeemer.presented.map(|key| Presented { user: key.user_id, mode: key.mode, free: key.free });
        let (inviter, open_until) = (self.inviter()?, invite.expires_at);
        rules::may_redeem(inviter, invite.role, open_until, issuing, now, invitee, presented).map_err(refused)
    }
}

/// Whether `actor` (whose role is `actor_role`) may withdraw `invite`,
/// issued by a member whose role is now `issuer_role`.
pub(crate) fn may_withdraw(
    actor: Uuid,
    actor_role: Option<&str>,
    invite: &Invite,
    issuer_role: Option<&str>,
) -> Result<()> {
    let actor_role = actor_role.map(crate::rows::role).transpose()?;
    let issuer_role = issuer_role.map(crate::rows::role).transpose()?;
    rules::may_withdraw_invite(actor, actor_role, invite.created_by, issuer_role).map_err(refused)
}

/// A refusal as the store reports it: an organization the actor is not a
/// member of is not found.
fn refused(refusal: Refusal) -> StoreError {
    match refusal {
        Refusal::Invisible => StoreError::NotFound(Entity::Organization),
        refusal => StoreError::Refused(refusal),
    }
}

/// The first key of a new account, as an invitation issued with
/// `issuing_key` makes it: mode `all`, scoped to the organization, a child
/// of that key, expiring as [`rules::first_key_expiry`] says.
pub(crate) fn first_key(
    material: KeyMaterial,
    user_id: Uuid,
    org_id: Uuid,
    policy: ExpiryPolicy,
    now: DateTime<Utc>,
    issuing_key: &ApiKeyRecord,
) -> NewApiKey {
    NewApiKey {
        material,
        mode: rules::FIRST_KEY_MODE,
        name: KeyName::parse("Invitation key").unwrap_or_else(|_| KeyName::default_name()),
        user_id,
        org_id: Some(org_id),
        limited_to_apps: Vec::new(),
        expires_at: rules::first_key_expiry(policy, now, issuing_key.expires_at).map(crate::truncate),
        created_by_key_id: Some(issuing_key.id),
        limits: KeyLimits::default(),
    }
}

/// The invitations of `rows` still open at `now` ([`rules::invitation_open`]).
pub(crate) fn open_at(rows: Vec<InviteRow>, now: DateTime<Utc>) -> Result<Vec<Invite>> {
    let invites: Vec<Invite> = crate::rows::all(rows)?;
    Ok(invites.into_iter().filter(|invite| rules::invitation_open(invite.expires_at, now)).collect())
}
