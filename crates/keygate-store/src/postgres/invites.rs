//! Invitations on PostgreSQL: each write one transaction that first locks
//! its organization ([`OrgLock::Exclusive`], as membership changes do), so
//! that the roles it decides on stay as read until it commits.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keygate_core::rules::Redemption;
use sqlx::Postgres;
use uuid::Uuid;

use super::{OrgLock, PostgresStore, lock_org};
use crate::event::{AuditLog, Event};
use crate::invites::{
    ACTING_ROLE, CLAIM, INSERT, ISSUING_KEY, InviteRow, JOIN, NEW_USER, ORG_OF_CODE, PARTIES, PENDING,
    PENDING_ONE, POLICY, Parties, REDEEMED_BY, REVOKE, first_key, may_withdraw,
};
use crate::key_blocks::KeyInOrgRow;
use crate::model::expiry_policy;
use crate::{
    Actor, AuditAction, AuthChange, Entity, Invite, InviteStore, KeyInOrg, NewInvite, Redeemed, Redeemer,
    Result, StoreError, rows,
};

#[async_trait]
impl InviteStore for PostgresStore {
    async fn create_invite(&self, invite: NewInvite, actor: &Actor) -> Result<Invite> {
        let mut tx = self.pool.begin().await?;
        lock_org(&mut tx, invite.org_id, OrgLock::Exclusive).await?;
        crate::decisions::still_administers(&mut crate::sql::Db::Postgres(&mut *tx), invite.org_id, actor)
            .await?;
        let parties: Parties = sqlx::query_as(PARTIES)
            .bind(invite.org_id)
            .bind(actor.user_id)
            .bind(invite.email.as_str())
            .fetch_one(&mut *tx)
            .await?;
        parties.may_issue(&invite)?;
        let row: InviteRow = sqlx::query_as(INSERT.as_str())
            .bind(invite.org_id)
            .bind(invite.email.as_str())
            .bind(invite.role.as_str())
            .bind(&invite.digest[..])
            .bind(actor.user_id)
            .bind(actor.key_id)
            .bind(crate::now())
            .bind(invite.expires_at)
            .fetch_one(&mut *tx)
            .await?;
        let invite = Invite::try_from(row)?;
        Postgres::log(&mut tx, invite.org_id, Event::new(AuditAction::InviteCreate, invite.id, actor))
            .await?;
        tx.commit().await?;
        Ok(invite)
    }

    async fn pending_invites(&self, org_id: Uuid, now: DateTime<Utc>) -> Result<Vec<Invite>> {
        let rows =
            sqlx::query_as::<_, InviteRow>(PENDING.as_str()).bind(org_id).fetch_all(&self.pool).await?;
        crate::invites::open_at(rows, now)
    }

    async fn revoke_invite(&self, org_id: Uuid, id: i64, actor: &Actor) -> Result<bool> {
        let acting = actor.user_id.ok_or(StoreError::NotFound(Entity::Organization))?;
        let mut tx = self.pool.begin().await?;
        lock_org(&mut tx, org_id, OrgLock::Exclusive).await?;
        let role: Option<String> =
            sqlx::query_scalar(ACTING_ROLE).bind(org_id).bind(acting).fetch_optional(&mut *tx).await?;
        let found: Option<InviteRow> =
            sqlx::query_as(PENDING_ONE.as_str()).bind(org_id).bind(id).fetch_optional(&mut *tx).await?;
        let Some(invite) = found.map(Invite::try_from).transpose()? else {
            return Ok(false);
        };
        let issuer_role: Option<String> = sqlx::query_scalar(ACTING_ROLE)
            .bind(org_id)
            .bind(invite.created_by)
            .fetch_optional(&mut *tx)
            .await?;
        may_withdraw(acting, role.as_deref(), &invite, issuer_role.as_deref())?;
        sqlx::query(REVOKE).bind(id).execute(&mut *tx).await?;
        Postgres::log(&mut tx, org_id, Event::new(AuditAction::InviteRevoke, id, actor)).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn redeem_invite(
        &self,
        digest: &[u8; 32],
        now: DateTime<Utc>,
        mut redeemer: Redeemer,
    ) -> Result<Option<Redeemed>> {
        let mut tx = self.pool.begin().await?;
        // The organization first, then the invitation, as every other
        // write of invitations and memberships locks them.
        let org: Option<Uuid> =
            sqlx::query_scalar(ORG_OF_CODE).bind(&digest[..]).fetch_optional(&mut *tx).await?;
        let Some(org_id) = org else {
            return Ok(None);
        };
        lock_org(&mut tx, org_id, OrgLock::Exclusive).await?;
        let claimed: Option<InviteRow> =
            sqlx::query_as(CLAIM.as_str()).bind(&digest[..]).bind(now).fetch_optional(&mut *tx).await?;
        let Some(invite) = claimed.map(Invite::try_from).transpose()? else {
            return Ok(None);
        };
        let parties: Parties = sqlx::query_as(PARTIES)
            .bind(org_id)
            .bind(invite.created_by)
            .bind(invite.email.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let issuing_key: Option<KeyInOrg> = match invite.created_by_key_id {
            Some(key_id) => rows::one::<KeyInOrgRow, _>(
                sqlx::query_as(&format!("{} FOR SHARE", ISSUING_KEY.as_str()))
                    .bind(key_id)
                    .bind(org_id)
                    .fetch_optional(&mut *tx)
                    .await?,
            )?,
            None => None,
        };
        // The presented key as it stands now, not as authentication saw it.
        if let Some(presented) = redeemer.presented.as_mut() {
            presented.free =
                crate::decisions::presented_is_free(&mut crate::sql::Db::Postgres(&mut *tx), presented)
                    .await?;
        }
        let redemption = parties.redemption(&invite, issuing_key.as_ref(), now, &redeemer)?;
        let user_id = match redemption {
            Redemption::Join { user } => user,
            Redemption::NewAccount => {
                let user_id = Uuid::now_v7();
                sqlx::query(NEW_USER)
                    .bind(user_id)
                    .bind(invite.email.as_str())
                    .bind(crate::now())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| crate::error::write_error(e, Entity::User, Entity::User))?;
                let created = Event::new(
                    AuditAction::UserCreate,
                    user_id,
                    &Actor { ip: redeemer.ip, ..Actor::OPERATOR },
                );
                crate::event::log_instance::<Postgres>(&mut *tx, created, None).await?;
                user_id
            }
        };
        sqlx::query(REDEEMED_BY).bind(invite.id).bind(user_id).execute(&mut *tx).await?;
        sqlx::query(JOIN)
            .bind(org_id)
            .bind(user_id)
            .bind(invite.role.as_str())
            .bind(crate::now())
            .execute(&mut *tx)
            .await?;
        let redeemer_actor = Actor {
            user_id: Some(user_id),
            key_id: redeemer.presented.map(|key| key.key_id),
            ip: redeemer.ip,
            presented: None,
        };
        Postgres::log(&mut tx, org_id, Event::new(AuditAction::InviteRedeem, invite.id, &redeemer_actor))
            .await?;
        let key = match redemption {
            Redemption::Join { .. } => None,
            Redemption::NewAccount => {
                let (require, max_days): (bool, Option<i32>) =
                    sqlx::query_as(POLICY).bind(org_id).fetch_one(&mut *tx).await?;
                // Only reached when the issuing key stands.
                let issuing = issuing_key.as_ref().ok_or(StoreError::NotFound(Entity::ApiKey))?;
                let policy = expiry_policy(require, max_days);
                let new = first_key(redeemer.first_key, user_id, org_id, policy, now, &issuing.key);
                Some(super::keys::insert(&mut tx, &new, &redeemer_actor).await?)
            }
        };
        self.changes.commit(tx, [AuthChange::Member { org_id, user_id }]).await?;
        Ok(Some(Redeemed { invite_id: invite.id, user_id, org_id, role: invite.role, key }))
    }
}
