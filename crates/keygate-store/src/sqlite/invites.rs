//! Invitations on SQLite: each write a job of the writer, audited in it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keygate_core::Email;
use sqlx::Sqlite;
use uuid::Uuid;

use super::SqliteStore;
use crate::event::{AuditLog, Event};
use crate::invites::{
    CLAIM, INSERT, InviteRow, JOIN, PENDING, REDEEMED_BY, REVOKE, ROLE_AND_POLICY, first_key,
};
use crate::model::expiry_policy;
use crate::{
    Actor, AuditAction, AuthChange, Entity, Invite, InviteStore, KeyMaterial, NewInvite, Redeemed, Result,
    StoreError, rows,
};

#[async_trait]
impl InviteStore for SqliteStore {
    async fn create_invite(&self, invite: NewInvite, actor: &Actor) -> Result<Invite> {
        let actor = *actor;
        self.write(move |conn| {
            Box::pin(async move {
                let row: Option<InviteRow> = sqlx::query_as(INSERT)
                    .bind(invite.org_id)
                    .bind(invite.email.as_str())
                    .bind(invite.role.as_str())
                    .bind(&invite.digest[..])
                    .bind(actor.user_id)
                    .bind(crate::now())
                    .bind(invite.expires_at)
                    .fetch_optional(&mut *conn)
                    .await?;
                let invite = Invite::try_from(row.ok_or(StoreError::NotFound(Entity::Organization))?)?;
                Sqlite::log(conn, invite.org_id, Event::new(AuditAction::InviteCreate, invite.id, &actor))
                    .await?;
                Ok((invite, vec![]))
            })
        })
        .await
    }

    async fn pending_invites(&self, org_id: Uuid, now: DateTime<Utc>) -> Result<Vec<Invite>> {
        let rows =
            sqlx::query_as::<_, InviteRow>(PENDING).bind(org_id).bind(now).fetch_all(&self.reader).await?;
        rows::all(rows)
    }

    async fn revoke_invite(&self, org_id: Uuid, id: i64, actor: &Actor) -> Result<bool> {
        let actor = *actor;
        self.write(move |conn| {
            Box::pin(async move {
                let gone: Option<i64> =
                    sqlx::query_scalar(REVOKE).bind(org_id).bind(id).fetch_optional(&mut *conn).await?;
                if gone.is_some() {
                    Sqlite::log(conn, org_id, Event::new(AuditAction::InviteRevoke, id, &actor)).await?;
                }
                Ok((gone.is_some(), vec![]))
            })
        })
        .await
    }

    async fn redeem_invite(
        &self,
        digest: &[u8; 32],
        now: DateTime<Utc>,
        key: KeyMaterial,
    ) -> Result<Option<Redeemed>> {
        let digest = *digest;
        self.write(move |conn| {
            Box::pin(async move {
                let claimed: Option<InviteRow> =
                    sqlx::query_as(CLAIM).bind(&digest[..]).bind(now).fetch_optional(&mut *conn).await?;
                let Some(invite) = claimed.map(Invite::try_from).transpose()? else {
                    return Ok((None, vec![]));
                };
                let email = Email::parse(&invite.email)
                    .map_err(|_| StoreError::Corrupt(format!("invites.email of invite {}", invite.id)))?;
                let user_id = super::user_for_email(conn, &email).await?;
                sqlx::query(REDEEMED_BY).bind(invite.id).bind(user_id).execute(&mut *conn).await?;
                sqlx::query(JOIN)
                    .bind(invite.org_id)
                    .bind(user_id)
                    .bind(invite.role.as_str())
                    .bind(crate::now())
                    .execute(&mut *conn)
                    .await?;
                let (role, require, max_days): (String, bool, Option<i32>) = sqlx::query_as(ROLE_AND_POLICY)
                    .bind(invite.org_id)
                    .bind(user_id)
                    .fetch_one(&mut *conn)
                    .await?;
                let role = rows::role(&role)?;
                let redeemer = Actor { user_id: Some(user_id), key_id: None, ip: None };
                Sqlite::log(conn, invite.org_id, Event::new(AuditAction::InviteRedeem, invite.id, &redeemer))
                    .await?;
                let new = first_key(key, user_id, invite.org_id, role, expiry_policy(require, max_days), now);
                let key = super::keys::insert(conn, &new, &redeemer).await?;
                let redeemed = Redeemed { invite_id: invite.id, user_id, org_id: invite.org_id, role, key };
                Ok((Some(redeemed), vec![AuthChange::Member { org_id: invite.org_id, user_id }]))
            })
        })
        .await
    }
}
