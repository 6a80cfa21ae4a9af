//! Users, organizations and memberships. A membership changes only inside
//! the write transaction, as [`keygate_core::rules`] allow against the
//! roles as they stand: an acting member must administer the organization
//! and stay within their own role, and every organization keeps a
//! `super_admin`. Enrollment is the operator's, all or nothing.

use async_trait::async_trait;
use keygate_core::{Email, OrgName, Role};
use sqlx::Sqlite;
use sqlx::sqlite::SqliteConnection;
use uuid::Uuid;

use super::{SqliteStore, keys, stakes, user_for_email};
use crate::decisions::{
    HOLDINGS, Holdings, acting_in_org, may_create_organization_now as may_create_now, still_administers,
};
use crate::error::{Entity, write_error};
use crate::event::{AuditLog, Event, log_instance};
use crate::membership::USER_BY_EMAIL;
use crate::params::BindModel;
use crate::rows::{self, MemberRow, MembershipRow, ORG_COLUMNS, select};
use crate::{
    Actor, AuditAction, AuthChange, Enroll, Enrollee, Enrollment, Member, Membership, OrgChanges, OrgStore,
    Organization, Result, StoreError,
};
use keygate_core::rules;

#[async_trait]
impl OrgStore for SqliteStore {
    async fn has_users(&self) -> Result<bool> {
        let any: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM users LIMIT 1").fetch_optional(&self.reader).await?;
        Ok(any.is_some())
    }

    async fn enroll(&self, enrollee: Enrollee) -> Result<Enrollment> {
        let operator = &Actor::OPERATOR;
        self.write(move |conn| {
            Box::pin(async move {
                let user_id = user_for_email(conn, &enrollee.email).await?;
                let (org_id, changes) = match enrollee.enroll {
                    Enroll::NewOrganization { ref name } => {
                        (insert_org(conn, name, user_id, operator).await?.id, vec![])
                    }
                    Enroll::Member { org_id, role } => {
                        set_role(conn, org_id, user_id, role, operator).await?;
                        (org_id, vec![AuthChange::Member { org_id, user_id }])
                    }
                };
                // After the membership exists: the unscoped key is audited in
                // every organization of its owner, this one included.
                let key = keys::insert(conn, &enrollee.cli_key(user_id), operator).await?;
                Ok((Enrollment { user_id, org_id, key }, changes))
            })
        })
        .await
    }

    async fn organization(&self, id: Uuid) -> Result<Option<Organization>> {
        let sql = format!("SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1");
        Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.reader).await?)
    }

    async fn create_organization(&self, name: &OrgName, owner: Uuid, actor: &Actor) -> Result<Organization> {
        let (name, actor) = (name.clone(), *actor);
        self.write(move |conn| {
            Box::pin(async move {
                may_create_now(&mut crate::sql::Db::Sqlite(&mut *conn), &actor).await?;
                Ok((insert_org(conn, &name, owner, &actor).await?, vec![]))
            })
        })
        .await
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
        let actor = *actor;
        self.write(move |conn| {
            Box::pin(async move {
                let exists: Option<Uuid> = sqlx::query_scalar("SELECT id FROM organizations WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                if exists.is_none() {
                    return Ok((None, vec![]));
                }
                if let Some(acting) =
                    acting_in_org(&mut crate::sql::Db::Sqlite(&mut *conn), id, &actor, crate::now()).await?
                {
                    let shared_limits = changes.ratelimits.is_some();
                    rules::may_update_organization(&acting.caller, acting.role, id, shared_limits)
                        .map_err(StoreError::Refused)?;
                }
                let org: Option<Organization> = sqlx::query_as(&sql)
                    .bind(id)
                    .bind_org_changes(&changes)
                    .fetch_optional(&mut *conn)
                    .await?;
                if org.is_some() {
                    Sqlite::log(conn, id, Event::new(AuditAction::OrganizationUpdate, id, &actor)).await?;
                }
                // The limits its keys share are read with each key.
                let limits_changed = org.is_some() && changes.ratelimits.is_some();
                Ok((
                    org,
                    limits_changed.then_some(AuthChange::Organization { org_id: id }).into_iter().collect(),
                ))
            })
        })
        .await
    }

    async fn delete_organization(&self, id: Uuid, actor: &Actor) -> Result<Option<Vec<String>>> {
        let actor = *actor;
        self.write(move |conn| {
            Box::pin(async move {
                let holdings: Option<Holdings> =
                    sqlx::query_as(HOLDINGS).bind(id).fetch_optional(&mut *conn).await?;
                let Some(holdings) = holdings else { return Ok((None, vec![])) };
                if let Some(acting) =
                    acting_in_org(&mut crate::sql::Db::Sqlite(&mut *conn), id, &actor, crate::now()).await?
                {
                    rules::may_delete_organization(&acting.caller, acting.role, id)
                        .map_err(StoreError::Refused)?;
                }
                let event = Event::new(AuditAction::OrganizationDelete, id, &actor);
                log_instance::<Sqlite>(conn, event, Some(holdings.detail())).await?;
                let blobs: Vec<String> = sqlx::query_scalar(
                    "DELETE FROM bundles WHERE app_id IN (SELECT app_id FROM apps WHERE org_id = $1) \
                     RETURNING blob_key",
                )
                .bind(id)
                .fetch_all(&mut *conn)
                .await?;
                // Apps, memberships, scoped keys and the organization's
                // audit log go by ON DELETE CASCADE; the instance's log keeps
                // the deletion.
                let deleted = sqlx::query("DELETE FROM organizations WHERE id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                if deleted.rows_affected() == 0 {
                    return Ok((None, vec![]));
                }
                Ok((Some(blobs), vec![AuthChange::Organization { org_id: id }]))
            })
        })
        .await
    }

    async fn role(&self, org_id: Uuid, user_id: Uuid) -> Result<Option<Role>> {
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                .bind(org_id)
                .bind(user_id)
                .fetch_optional(&self.reader)
                .await?;
        role.as_deref().map(rows::role).transpose()
    }

    async fn memberships(&self, user_id: Uuid) -> Result<Vec<Membership>> {
        let sql = "SELECT o.id, o.name, o.require_apikey_expiration, o.max_apikey_expiration_days, \
                   o.created_at, o.updated_at, o.ratelimits, m.role FROM memberships m \
                   JOIN organizations o ON o.id = m.org_id WHERE m.user_id = $1 ORDER BY o.created_at, o.id";
        select::<MembershipRow, _, _>(&self.reader, sql, user_id).await
    }

    async fn members(&self, org_id: Uuid) -> Result<Vec<Member>> {
        let sql = "SELECT u.id AS user_id, u.email, m.role FROM memberships m \
                   JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY m.created_at, u.email";
        select::<MemberRow, _, _>(&self.reader, sql, org_id).await
    }

    async fn set_member(&self, org_id: Uuid, email: &Email, role: Role, actor: &Actor) -> Result<Member> {
        let (email, actor) = (email.clone(), *actor);
        self.write(move |conn| {
            Box::pin(async move {
                let user_id = match actor.user_id {
                    None => user_for_email(conn, &email).await?,
                    // No such user is no member: the rules refuse it as one.
                    Some(_) => sqlx::query_scalar(USER_BY_EMAIL)
                        .bind(email.as_str())
                        .fetch_optional(&mut *conn)
                        .await?
                        .unwrap_or_else(Uuid::nil),
                };
                set_role(conn, org_id, user_id, role, &actor).await?;
                let member = Member { user_id, email: email.as_str().to_owned(), role };
                Ok((member, vec![AuthChange::Member { org_id, user_id }]))
            })
        })
        .await
    }

    async fn remove_member(&self, org_id: Uuid, user_id: Uuid, actor: &Actor) -> Result<bool> {
        let actor = *actor;
        self.write(move |conn| {
            Box::pin(async move {
                still_administers(&mut crate::sql::Db::Sqlite(&mut *conn), org_id, &actor).await?;
                if stakes(conn, org_id, user_id, actor.user_id).await?.allow(user_id, None, &actor)?.is_none()
                {
                    return Ok((false, vec![]));
                }
                for statement in [
                    "DELETE FROM memberships WHERE org_id = $1 AND user_id = $2",
                    "DELETE FROM api_keys WHERE org_id = $1 AND user_id = $2",
                ] {
                    sqlx::query(statement).bind(org_id).bind(user_id).execute(&mut *conn).await?;
                }
                Sqlite::log(conn, org_id, Event::new(AuditAction::MemberRemove, user_id, &actor)).await?;
                Ok((true, vec![AuthChange::Member { org_id, user_id }]))
            })
        })
        .await
    }
}

/// A new organization with `owner` as its `super_admin`, and its
/// `organization.create` event.
async fn insert_org(
    conn: &mut SqliteConnection,
    name: &OrgName,
    owner: Uuid,
    actor: &Actor,
) -> Result<Organization> {
    let sql = format!(
        "INSERT INTO organizations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3) \
         RETURNING {ORG_COLUMNS}"
    );
    let org: Organization = sqlx::query_as(&sql)
        .bind(Uuid::now_v7())
        .bind(name.as_str())
        .bind(crate::now())
        .fetch_one(&mut *conn)
        .await?;
    upsert_membership(&mut *conn, org.id, owner, keygate_core::rules::CREATOR_ROLE).await.map_err(
        |e| match e {
            StoreError::Database(e) => write_error(e, Entity::User, Entity::Organization),
            e => e,
        },
    )?;
    Sqlite::log(conn, org.id, Event::new(AuditAction::OrganizationCreate, org.id, actor)).await?;
    Ok(org)
}

/// Gives `user_id` the `role` in `org_id`, if the membership rules allow
/// `actor` to, with its `member.set` event.
async fn set_role(
    conn: &mut SqliteConnection,
    org_id: Uuid,
    user_id: Uuid,
    role: Role,
    actor: &Actor,
) -> Result<()> {
    still_administers(&mut crate::sql::Db::Sqlite(&mut *conn), org_id, actor).await?;
    stakes(&mut *conn, org_id, user_id, actor.user_id).await?.allow(user_id, Some(role), actor)?;
    upsert_membership(&mut *conn, org_id, user_id, role).await?;
    Sqlite::log(conn, org_id, Event::new(AuditAction::MemberSet, user_id, actor)).await
}

/// Gives `user_id` the `role` in `org_id`, adding the membership if needed.
async fn upsert_membership(
    conn: &mut SqliteConnection,
    org_id: Uuid,
    user_id: Uuid,
    role: Role,
) -> Result<()> {
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
    Ok(())
}
