//! Users, organizations and memberships. Every change of a membership locks
//! its organization's row first, then reads the roles involved and lets
//! [`keygate_core::rules`] decide, so concurrent changes on any replica see
//! each other; an organization always keeps a `super_admin`.

use async_trait::async_trait;
use keygate_core::{Email, Mode, OrgName, Role};
use uuid::Uuid;

use super::{PostgresStore, audit};
use crate::error::write_error;
use crate::rows::{MemberRow, MembershipRow, OrgRow, all, org_columns};
use crate::{
    Actor, AuditAction, AuthChange, Enroll, Enrollee, Enrollment, Entity, Member, Membership, NewApiKey,
    OrgChanges, OrgStore, Organization, Result, StoreError,
};

#[async_trait]
impl OrgStore for PostgresStore {
    async fn has_users(&self) -> Result<bool> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users)").fetch_one(&self.pool).await?)
    }

    async fn enroll(&self, enrollee: Enrollee) -> Result<Enrollment> {
        let actor = &Actor::OPERATOR;
        let mut tx = self.pool.begin().await?;
        let (org_id, user_id, changes) = match enrollee.enroll {
            Enroll::NewOrganization { name } => {
                let user_id = super::user_for_email(&mut tx, &enrollee.email).await?;
                let org = super::insert_org(&mut tx, &name, user_id).await?;
                let target = org.id.to_string();
                audit::record(&mut tx, org.id, AuditAction::OrganizationCreate, &target, actor).await?;
                (org.id, user_id, vec![])
            }
            Enroll::Member { org_id, role } => {
                super::lock_org(&mut tx, org_id).await?;
                let user_id = super::user_for_email(&mut tx, &enrollee.email).await?;
                let current = super::role_of(&mut tx, org_id, user_id).await?;
                super::check_membership_change(&mut tx, org_id, current, Some(role), actor).await?;
                super::upsert_membership(&mut tx, org_id, user_id, role).await?;
                let target = user_id.to_string();
                audit::record(&mut tx, org_id, AuditAction::MemberSet, &target, actor).await?;
                (org_id, user_id, vec![AuthChange::Member { org_id, user_id }])
            }
        };
        // Unscoped, so audited in every organization of its owner, which by
        // now includes this one.
        let key = NewApiKey {
            material: enrollee.key,
            mode: Mode::All,
            name: enrollee.key_name,
            user_id,
            org_id: None,
            limited_to_apps: Vec::new(),
            expires_at: None,
            created_by_key_id: None,
        };
        let key = super::insert_key(&mut tx, key, actor).await?;
        tx.commit().await?;
        self.changes.announce(changes);
        Ok(Enrollment { user_id, org_id, key })
    }

    async fn organization(&self, id: Uuid) -> Result<Option<Organization>> {
        let row: Option<OrgRow> =
            sqlx::query_as(concat!("SELECT ", org_columns!(), " FROM organizations WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(Organization::from))
    }

    async fn create_organization(&self, name: &OrgName, owner: Uuid, actor: &Actor) -> Result<Organization> {
        let mut tx = self.pool.begin().await?;
        let org = super::insert_org(&mut tx, name, owner)
            .await
            .map_err(|e| write_error(e, Entity::User, Entity::Organization))?;
        audit::record(&mut tx, org.id, AuditAction::OrganizationCreate, &org.id.to_string(), actor).await?;
        tx.commit().await?;
        Ok(org)
    }

    async fn update_organization(
        &self,
        id: Uuid,
        changes: OrgChanges,
        actor: &Actor,
    ) -> Result<Option<Organization>> {
        let mut tx = self.pool.begin().await?;
        let row: Option<OrgRow> = sqlx::query_as(concat!(
            "UPDATE organizations SET name = COALESCE($2, name), \
             require_apikey_expiration = COALESCE($3, require_apikey_expiration), \
             max_apikey_expiration_days = CASE WHEN $4 THEN $5 ELSE max_apikey_expiration_days END, \
             updated_at = $6 WHERE id = $1 RETURNING ",
            org_columns!()
        ))
        .bind(id)
        .bind(changes.name.as_ref().map(|n| n.as_str()))
        .bind(changes.require_apikey_expiration)
        .bind(changes.max_apikey_expiration_days.is_some())
        .bind(changes.max_apikey_expiration_days.flatten())
        .bind(crate::now())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(org) = row.map(Organization::from) else {
            return Ok(None);
        };
        audit::record(&mut tx, org.id, AuditAction::OrganizationUpdate, &org.id.to_string(), actor).await?;
        tx.commit().await?;
        Ok(Some(org))
    }

    async fn delete_organization(&self, id: Uuid) -> Result<Option<Vec<String>>> {
        let mut tx = self.pool.begin().await?;
        // The organization's row (which keeps out new apps, see create_app),
        // then its apps' rows (which keeps out new bundles), so that every
        // blob key is returned.
        match super::lock_org(&mut tx, id).await {
            Err(StoreError::NotFound(Entity::Organization)) => return Ok(None),
            locked => locked?,
        }
        sqlx::query("SELECT app_id FROM apps WHERE org_id = $1 ORDER BY app_id FOR UPDATE")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let blobs: Vec<String> = sqlx::query_scalar(
            "DELETE FROM bundles WHERE app_id IN (SELECT app_id FROM apps WHERE org_id = $1) RETURNING blob_key",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        // Apps, memberships, scoped keys and the audit log go by ON DELETE
        // CASCADE; so no event is written.
        sqlx::query("DELETE FROM organizations WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        self.changes.announce([AuthChange::Organization { org_id: id }]);
        Ok(Some(blobs))
    }

    async fn role(&self, org_id: Uuid, user_id: Uuid) -> Result<Option<Role>> {
        let mut conn = self.pool.acquire().await?;
        super::role_of(&mut conn, org_id, user_id).await
    }

    async fn memberships(&self, user_id: Uuid) -> Result<Vec<Membership>> {
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT o.id, o.name, o.require_apikey_expiration, o.max_apikey_expiration_days, \
             o.created_at, o.updated_at, m.role FROM memberships m \
             JOIN organizations o ON o.id = m.org_id WHERE m.user_id = $1 ORDER BY o.created_at, o.id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn members(&self, org_id: Uuid) -> Result<Vec<Member>> {
        let rows: Vec<MemberRow> = sqlx::query_as(
            "SELECT u.id AS user_id, u.email, m.role FROM memberships m \
             JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY m.created_at, u.email",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn set_member(&self, org_id: Uuid, email: &Email, role: Role, actor: &Actor) -> Result<Member> {
        let mut tx = self.pool.begin().await?;
        super::lock_org(&mut tx, org_id).await?;
        let user_id = super::user_for_email(&mut tx, email).await?;
        let current = super::role_of(&mut tx, org_id, user_id).await?;
        super::check_membership_change(&mut tx, org_id, current, Some(role), actor).await?;
        super::upsert_membership(&mut tx, org_id, user_id, role).await?;
        audit::record(&mut tx, org_id, AuditAction::MemberSet, &user_id.to_string(), actor).await?;
        tx.commit().await?;
        self.changes.announce([AuthChange::Member { org_id, user_id }]);
        Ok(Member { user_id, email: email.as_str().to_owned(), role })
    }

    async fn remove_member(&self, org_id: Uuid, user_id: Uuid, actor: &Actor) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        super::lock_org(&mut tx, org_id).await?;
        let current = super::role_of(&mut tx, org_id, user_id).await?;
        super::check_membership_change(&mut tx, org_id, current, None, actor).await?;
        if current.is_none() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM api_keys WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        audit::record(&mut tx, org_id, AuditAction::MemberRemove, &user_id.to_string(), actor).await?;
        tx.commit().await?;
        self.changes.announce([AuthChange::Member { org_id, user_id }]);
        Ok(true)
    }
}
