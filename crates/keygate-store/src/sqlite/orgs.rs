//! Users, organizations and memberships. A membership changes only under
//! its organization's lock, as [`keygate_core::rules`] allow against the
//! roles as they stand: an acting member must administer the organization
//! and stay within their own role, and every organization keeps a
//! `super_admin`. Enrollment is the operator's, all or nothing.

use async_trait::async_trait;
use keygate_core::{Email, Mode, OrgName, Role};
use sqlx::sqlite::SqliteConnection;
use uuid::Uuid;

use super::{SqliteStore, apply_role, audit, check_membership_change, insert_membership, user_for_email};
use crate::error::{Entity, write_error};
use crate::rows::{self, MemberRow, MembershipRow, OrgRow, org_columns};
use crate::{
    Actor, AuditAction, AuthChange, Enroll, Enrollee, Enrollment, Member, Membership, NewApiKey, OrgChanges,
    OrgStore, Organization, Result, StoreError,
};

#[async_trait]
impl OrgStore for SqliteStore {
    async fn has_users(&self) -> Result<bool> {
        let any: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM users LIMIT 1").fetch_optional(&self.reader).await?;
        Ok(any.is_some())
    }

    async fn enroll(&self, enrollee: Enrollee) -> Result<Enrollment> {
        let operator = &Actor::OPERATOR;
        let mut tx = self.begin().await?;
        let user_id = user_for_email(&mut tx, &enrollee.email).await?;
        let (org_id, changes) = match enrollee.enroll {
            Enroll::NewOrganization { name } => {
                let org = insert_org(&mut tx, &name, user_id).await?;
                audit::record(
                    &mut tx,
                    org.id,
                    AuditAction::OrganizationCreate,
                    operator,
                    &org.id.to_string(),
                )
                .await?;
                (org.id, None)
            }
            Enroll::Member { org_id, role } => {
                apply_role(&mut tx, org_id, user_id, role, operator).await?;
                audit::record(&mut tx, org_id, AuditAction::MemberSet, operator, &user_id.to_string())
                    .await?;
                (org_id, Some(AuthChange::Member { org_id, user_id }))
            }
        };
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
        let key = super::keys::insert_key(&mut tx, key).await?;
        // After the membership exists: the unscoped key is audited in every
        // organization of its owner, this one included.
        audit::record_key(&mut tx, &key, AuditAction::ApiKeyCreate, operator).await?;
        self.commit(tx, changes).await?;
        Ok(Enrollment { user_id, org_id, key })
    }

    async fn organization(&self, id: Uuid) -> Result<Option<Organization>> {
        let row: Option<OrgRow> =
            sqlx::query_as(concat!("SELECT ", org_columns!(), " FROM organizations WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map(Into::into))
    }

    async fn create_organization(&self, name: &OrgName, owner: Uuid, actor: &Actor) -> Result<Organization> {
        let mut tx = self.begin().await?;
        let org = insert_org(&mut tx, name, owner).await.map_err(|e| match e {
            StoreError::Database(e) => write_error(e, Entity::User, Entity::Organization),
            e => e,
        })?;
        audit::record(&mut tx, org.id, AuditAction::OrganizationCreate, actor, &org.id.to_string()).await?;
        self.commit(tx, []).await?;
        Ok(org)
    }

    async fn update_organization(
        &self,
        id: Uuid,
        changes: OrgChanges,
        actor: &Actor,
    ) -> Result<Option<Organization>> {
        let mut tx = self.begin().await?;
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
        audit::record(&mut tx, id, AuditAction::OrganizationUpdate, actor, &id.to_string()).await?;
        self.commit(tx, []).await?;
        Ok(Some(org))
    }

    async fn delete_organization(&self, id: Uuid) -> Result<Option<Vec<String>>> {
        let mut tx = self.begin().await?;
        let blobs: Vec<String> = sqlx::query_scalar(
            "DELETE FROM bundles WHERE app_id IN (SELECT app_id FROM apps WHERE org_id = $1) RETURNING blob_key",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        // Apps, memberships, scoped keys and the audit log go by ON DELETE CASCADE.
        let deleted =
            sqlx::query("DELETE FROM organizations WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if deleted.rows_affected() == 0 {
            return Ok(None);
        }
        self.commit(tx, [AuthChange::Organization { org_id: id }]).await?;
        Ok(Some(blobs))
    }

    async fn role(&self, org_id: Uuid, user_id: Uuid) -> Result<Option<Role>> {
        let mut conn = self.reader.acquire().await?;
        super::role_of(&mut conn, org_id, user_id).await
    }

    async fn memberships(&self, user_id: Uuid) -> Result<Vec<Membership>> {
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT o.id, o.name, o.require_apikey_expiration, o.max_apikey_expiration_days, \
             o.created_at, o.updated_at, m.role FROM memberships m \
             JOIN organizations o ON o.id = m.org_id WHERE m.user_id = $1 ORDER BY o.created_at, o.id",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?;
        rows::all(rows)
    }

    async fn members(&self, org_id: Uuid) -> Result<Vec<Member>> {
        let rows: Vec<MemberRow> = sqlx::query_as(
            "SELECT u.id AS user_id, u.email, m.role FROM memberships m \
             JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY m.created_at, u.email",
        )
        .bind(org_id)
        .fetch_all(&self.reader)
        .await?;
        rows::all(rows)
    }

    async fn set_member(&self, org_id: Uuid, email: &Email, role: Role, actor: &Actor) -> Result<Member> {
        let mut tx = self.begin().await?;
        let user_id = user_for_email(&mut tx, email).await?;
        apply_role(&mut tx, org_id, user_id, role, actor).await?;
        audit::record(&mut tx, org_id, AuditAction::MemberSet, actor, &user_id.to_string()).await?;
        self.commit(tx, [AuthChange::Member { org_id, user_id }]).await?;
        Ok(Member { user_id, email: email.as_str().to_owned(), role })
    }

    async fn remove_member(&self, org_id: Uuid, user_id: Uuid, actor: &Actor) -> Result<bool> {
        let mut tx = self.begin().await?;
        if check_membership_change(&mut tx, org_id, user_id, None, actor).await?.is_none() {
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
        audit::record(&mut tx, org_id, AuditAction::MemberRemove, actor, &user_id.to_string()).await?;
        self.commit(tx, [AuthChange::Member { org_id, user_id }]).await?;
        Ok(true)
    }
}

/// A new organization with `owner` as its `super_admin`.
async fn insert_org(conn: &mut SqliteConnection, name: &OrgName, owner: Uuid) -> Result<Organization> {
    let row: OrgRow = sqlx::query_as(concat!(
        "INSERT INTO organizations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING ",
        org_columns!()
    ))
    .bind(Uuid::now_v7())
    .bind(name.as_str())
    .bind(crate::now())
    .fetch_one(&mut *conn)
    .await?;
    let org = Organization::from(row);
    insert_membership(&mut *conn, org.id, owner, Role::SuperAdmin).await?;
    Ok(org)
}
