//! Users, organizations and memberships. Every change of a membership locks
//! its organization's row first, then reads the roles involved and lets
//! [`keygate_core::rules`] decide, so concurrent changes on any replica see
//! each other; an organization always keeps a `super_admin`.

use async_trait::async_trait;
use keygate_core::{Email, OrgName, Role};
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use super::{OrgLock, PostgresStore, keys, lock_org, stakes, user_for_email};
use crate::decisions::{
    HOLDINGS, Holdings, acting_in_org, may_create_organization_now as may_create_now, still_administers,
};
use crate::error::write_error;
use crate::event::{AuditLog, Event, log_instance};
use crate::membership::USER_BY_EMAIL;
use crate::params::BindModel;
use crate::rows::{MemberRow, MembershipRow, ORG_COLUMNS, select};
use crate::{
    Actor, AuditAction, AuthChange, Enroll, Enrollee, Enrollment, Entity, Member, Membership, OrgChanges,
    OrgStore, Organization, Result, StoreError,
};
use keygate_core::rules;

#[async_trait]
impl OrgStore for PostgresStore {
    async fn has_users(&self) -> Result<bool> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users)").fetch_one(&self.pool).await?)
    }

    async fn enroll(&self, enrollee: Enrollee) -> Result<Enrollment> {
        let operator = &Actor::OPERATOR;
        let mut tx = self.pool.begin().await?;
        let (org_id, user_id, changes) = match enrollee.enroll {
            Enroll::NewOrganization { ref name } => {
                let user_id = user_for_email(&mut tx, &enrollee.email).await?;
                (insert_org(&mut tx, name, user_id, operator).await?.id, user_id, None)
            }
            Enroll::Member { org_id, role } => {
                let user_id = set_role(&mut tx, org_id, &enrollee.email, role, operator).await?;
                (org_id, user_id, Some(AuthChange::Member { org_id, user_id }))
            }
        };
        // Unscoped, so audited in every organization of its owner, which by
        // now includes this one.
        let key = keys::insert(&mut tx, &enrollee.cli_key(user_id), operator).await?;
        self.changes.commit(tx, changes).await?;
        Ok(Enrollment { user_id, org_id, key })
    }

    async fn organization(&self, id: Uuid) -> Result<Option<Organization>> {
        let sql = format!("SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1");
        Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?)
    }

    async fn create_organization(&self, name: &OrgName, owner: Uuid, actor: &Actor) -> Result<Organization> {
        let mut tx = self.pool.begin().await?;
        may_create_now(&mut crate::sql::Db::Postgres(&mut *tx), actor).await?;
        let org = insert_org(&mut tx, name, owner, actor).await?;
        tx.commit().await?;
        Ok(org)
    }

    async fn update_organization(
        &self,
        id: Uuid,
        changes: OrgChanges,
        actor: &Actor,
    ) -> Result<Option<Organization>> {
        let sql = format!(
            "UPDATE organizations SET name = COALESCE($2, name), \
             require_apikey_expiration = COALESCE($3, require_apikey_expiration), \
             max_apikey_expiration_days = CASE WHEN $4 THEN $5 ELSE max_apikey_expiration_days END, \
             updated_at = $6, ratelimits = COALESCE($7, ratelimits) WHERE id = $1 RETURNING {ORG_COLUMNS}"
        );
        let mut tx = self.pool.begin().await?;
        match lock_org(&mut tx, id, OrgLock::Exclusive).await {
            Err(StoreError::NotFound(Entity::Organization)) => return Ok(None),
            locked => locked?,
        }
        if let Some(acting) =
            acting_in_org(&mut crate::sql::Db::Postgres(&mut *tx), id, actor, crate::now()).await?
        {
            let shared_limits = changes.ratelimits.is_some();
            rules::may_update_organization(&acting.caller, acting.role, id, shared_limits)
                .map_err(StoreError::Refused)?;
        }
        let org: Option<Organization> =
            sqlx::query_as(&sql).bind(id).bind_org_changes(&changes).fetch_optional(&mut *tx).await?;
        let Some(org) = org else {
            return Ok(None);
        };
        Postgres::log(&mut tx, id, Event::new(AuditAction::OrganizationUpdate, id, actor)).await?;
        // The limits its keys share are read with each key.
        let limits_changed = changes.ratelimits.is_some().then_some(AuthChange::Organization { org_id: id });
        self.changes.commit(tx, limits_changed).await?;
        Ok(Some(org))
    }

    async fn delete_organization(&self, id: Uuid, actor: &Actor) -> Result<Option<Vec<String>>> {
        let mut tx = self.pool.begin().await?;
        // The organization's row (which keeps out new apps, see create_app),
        // then its apps' rows (which keeps out new bundles), so that every
        // blob key is returned.
        match lock_org(&mut tx, id, OrgLock::Exclusive).await {
            Err(StoreError::NotFound(Entity::Organization)) => return Ok(None),
            locked => locked?,
        }
        if let Some(acting) =
            acting_in_org(&mut crate::sql::Db::Postgres(&mut *tx), id, actor, crate::now()).await?
        {
            rules::may_delete_organization(&acting.caller, acting.role, id).map_err(StoreError::Refused)?;
        }
        sqlx::query("SELECT app_id FROM apps WHERE org_id = $1 ORDER BY app_id FOR UPDATE")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let holdings: Holdings = sqlx::query_as(HOLDINGS).bind(id).fetch_one(&mut *tx).await?;
        let event = Event::new(AuditAction::OrganizationDelete, id, actor);
        log_instance::<Postgres>(&mut tx, event, Some(holdings.detail())).await?;
        // Apps, memberships, scoped keys and the organization's audit log
        // go by ON DELETE CASCADE; the instance's log keeps the deletion.
        let blobs: Vec<String> = sqlx::query_scalar(
            "WITH blobs AS ( \
                 DELETE FROM bundles WHERE app_id IN (SELECT app_id FROM apps WHERE org_id = $1) \
                 RETURNING blob_key \
             ), organization AS (DELETE FROM organizations WHERE id = $1) \
             SELECT blob_key FROM blobs",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        self.changes.commit(tx, [AuthChange::Organization { org_id: id }]).await?;
        Ok(Some(blobs))
    }

    async fn role(&self, org_id: Uuid, user_id: Uuid) -> Result<Option<Role>> {
        super::role_of(&mut *self.pool.acquire().await?, org_id, user_id).await
    }

    async fn memberships(&self, user_id: Uuid) -> Result<Vec<Membership>> {
        let sql = "SELECT o.id, o.name, o.require_apikey_expiration, o.max_apikey_expiration_days, \
                   o.created_at, o.updated_at, o.ratelimits, m.role FROM memberships m \
                   JOIN organizations o ON o.id = m.org_id WHERE m.user_id = $1 ORDER BY o.created_at, o.id";
        select::<MembershipRow, _, _>(&self.pool, sql, user_id).await
    }

    async fn members(&self, org_id: Uuid) -> Result<Vec<Member>> {
        let sql = "SELECT u.id AS user_id, u.email, m.role FROM memberships m \
                   JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY m.created_at, u.email";
        select::<MemberRow, _, _>(&self.pool, sql, org_id).await
    }

    async fn set_member(&self, org_id: Uuid, email: &Email, role: Role, actor: &Actor) -> Result<Member> {
        let mut tx = self.pool.begin().await?;
        let user_id = set_role(&mut tx, org_id, email, role, actor).await?;
        self.changes.commit(tx, [AuthChange::Member { org_id, user_id }]).await?;
        Ok(Member { user_id, email: email.as_str().to_owned(), role })
    }

    async fn remove_member(&self, org_id: Uuid, user_id: Uuid, actor: &Actor) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        lock_org(&mut tx, org_id, OrgLock::Exclusive).await?;
        still_administers(&mut crate::sql::Db::Postgres(&mut *tx), org_id, actor).await?;
        if stakes(&mut tx, org_id, user_id, actor.user_id).await?.allow(user_id, None, actor)?.is_none() {
            return Ok(false);
        }
        // The membership and the keys the member holds scoped to it, at once.
        sqlx::query(
            "WITH scoped_keys AS (DELETE FROM api_keys WHERE org_id = $1 AND user_id = $2) \
             DELETE FROM memberships WHERE org_id = $1 AND user_id = $2",
        )
        .bind(org_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        Postgres::log(&mut tx, org_id, Event::new(AuditAction::MemberRemove, user_id, actor)).await?;
        self.changes.commit(tx, [AuthChange::Member { org_id, user_id }]).await?;
        Ok(true)
    }
}

/// A new organization with `owner` as its `super_admin`, in one statement,
/// and its `organization.create` event.
async fn insert_org(
    conn: &mut PgConnection,
    name: &OrgName,
    owner: Uuid,
    actor: &Actor,
) -> Result<Organization> {
    let sql = format!(
        "WITH organization AS ( \
             INSERT INTO organizations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             RETURNING * \
         ), owner AS ( \
             INSERT INTO memberships (org_id, user_id, role, created_at) \
             SELECT id, $4, $5, created_at FROM organization \
         ) SELECT {ORG_COLUMNS} FROM organization"
    );
    let org: Organization = sqlx::query_as(&sql)
        .bind(Uuid::now_v7())
        .bind(name.as_str())
        .bind(crate::now())
        .bind(owner)
        .bind(keygate_core::rules::CREATOR_ROLE.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| write_error(e, Entity::User, Entity::Organization))?;
    Postgres::log(conn, org.id, Event::new(AuditAction::OrganizationCreate, org.id, actor)).await?;
    Ok(org)
}

/// Gives the user with `email` the `role` in `org_id`, if the membership
/// rules allow `actor` to, with its `member.set` event; returns the user.
/// Only the operator adds a user who is not a member (created if the email
/// is new). The organization is locked before the user is written, as in
/// every change of memberships, so that no two wait for each other.
async fn set_role(
    conn: &mut PgConnection,
    org_id: Uuid,
    email: &Email,
    role: Role,
    actor: &Actor,
) -> Result<Uuid> {
    lock_org(&mut *conn, org_id, OrgLock::Exclusive).await?;
    let user_id = match actor.user_id {
        None => user_for_email(&mut *conn, email).await?,
        // No such user is no member: the rules refuse it as one.
        Some(_) => sqlx::query_scalar(USER_BY_EMAIL)
            .bind(email.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or_else(Uuid::nil),
    };
    still_administers(&mut crate::sql::Db::Postgres(&mut *conn), org_id, actor).await?;
    stakes(&mut *conn, org_id, user_id, actor.user_id).await?.allow(user_id, Some(role), actor)?;
    sqlx::query(
        "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
    )
    .bind(org_id)
    .bind(user_id)
    .bind(role.as_str())
    .bind(crate::now())
    .execute(&mut *conn)
    .await?;
    Postgres::log(conn, org_id, Event::new(AuditAction::MemberSet, user_id, actor)).await?;
    Ok(user_id)
}
