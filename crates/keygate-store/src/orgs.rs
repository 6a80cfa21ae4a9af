//! Users, organizations and memberships. Every change of a membership or an
//! organization first holds the organization ([`RowLock::Exclusive`]), then
//! reads the roles involved and lets [`keygate_core::rules`] decide, so
//! that concurrent changes on any replica see each other; an organization
//! always keeps a `super_admin`. Enrollment is the operator's, all or
//! nothing.

use async_trait::async_trait;
use keygate_core::{Email, OrgName, Role, rules};
use uuid::Uuid;

use crate::backend::{Backend, RowLock, lock_org};
use crate::decisions::{HOLDINGS, Holdings, acting_in_org, may_create_organization_now, still_administers};
use crate::error::write_error;
use crate::event::{Event, log, log_instance};
use crate::membership::{USER_BY_EMAIL, stakes, user_for_email};
use crate::rows::{MemberRow, MembershipRow, ORG_COLUMNS, all, ratelimits_json};
use crate::sql::{Db, sql};
use crate::{
    Actor, AuditAction, AuthChange, Enroll, Enrollee, Enrollment, Entity, Member, Membership, OrgChanges,
    OrgStore, Organization, Result, StoreError,
};

#[async_trait]
impl<B: Backend> OrgStore for B {
    async fn has_users(&self) -> Result<bool> {
        let any: Option<Uuid> = sql("SELECT id FROM users LIMIT 1").scalar(&mut self.reads()).await?;
        Ok(any.is_some())
    }

    async fn enroll(&self, enrollee: Enrollee) -> Result<Enrollment> {
        let operator = &Actor::OPERATOR;
        self.transact(move |mut db| {
            Box::pin(async move {
                let confirmed = enrollee.existing_account;
                let (org_id, user_id, changes) = match enrollee.enroll {
                    Enroll::NewOrganization { ref name } => {
                        let existing: Option<Uuid> =
                            sql(USER_BY_EMAIL).bind(enrollee.email.as_str()).scalar(&mut db).await?;
                        rules::may_enroll(existing.is_some(), false, confirmed)?;
                        let user_id = user_for_email(&mut db, &enrollee.email).await?;
                        let org_id = insert_org(&mut db, name, user_id, operator).await?.id;
                        (org_id, user_id, vec![AuthChange::Member { org_id, user_id }])
                    }
                    Enroll::Member { org_id, role } => {
                        let user_id =
                            set_role(&mut db, org_id, &enrollee.email, role, operator, confirmed).await?;
                        (org_id, user_id, vec![AuthChange::Member { org_id, user_id }])
                    }
                };
                // After the membership exists: the unscoped key is audited in
                // every organization of its owner, this one included.
                let key = crate::keys::insert(&mut db, &enrollee.cli_key(user_id), operator).await?;
                Ok((Enrollment { user_id, org_id, key }, changes))
            })
        })
        .await
    }

    async fn organization(&self, id: Uuid) -> Result<Option<Organization>> {
        let text = format!("SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1");
        Ok(sql(&text).bind(id).fetch_optional(&mut self.reads()).await?)
    }

    async fn create_organization(&self, name: &OrgName, owner: Uuid, actor: &Actor) -> Result<Organization> {
        let (name, actor) = (name.clone(), *actor);
        self.transact(move |mut db| {
            Box::pin(async move {
                may_create_organization_now(&mut db, &actor).await?;
                let org = insert_org(&mut db, &name, owner, &actor).await?;
                // The creator's cached unscoped keys know where they may act.
                let change = AuthChange::Member { org_id: org.id, user_id: owner };
                Ok((org, vec![change]))
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
        let actor = *actor;
        self.transact(move |mut db| {
            Box::pin(async move {
                if !lock_existing_org(&mut db, id).await? {
                    return Ok((None, vec![]));
                }
                if let Some(acting) = acting_in_org(&mut db, id, &actor, crate::now()).await? {
                    let shared_limits = changes.ratelimits.is_some();
                    rules::may_update_organization(&acting.caller, acting.role, id, shared_limits)
                        .map_err(StoreError::Refused)?;
                }
                let text = format!(
                    "UPDATE organizations SET name = COALESCE($2, name), \
                     require_apikey_expiration = COALESCE($3, require_apikey_expiration), \
                     max_apikey_expiration_days = CASE WHEN $4 THEN $5 ELSE max_apikey_expiration_days END, \
                     updated_at = $6, ratelimits = COALESCE($7, ratelimits) WHERE id = $1 RETURNING {ORG_COLUMNS}"
                );
                let org: Option<Organization> = sql(&text)
                    .bind(id)
                    .bind(changes.name.as_ref().map(|name| name.as_str()))
                    .bind(changes.require_apikey_expiration)
                    .bind(changes.max_apikey_expiration_days.is_some())
                    .bind(changes.max_apikey_expiration_days.flatten())
                    .bind(crate::now())
                    .bind(changes.ratelimits.as_deref().map(ratelimits_json))
                    .fetch_optional(&mut db)
                    .await?;
                let Some(org) = org else { return Ok((None, vec![])) };
                log(&mut db, id, Event::new(AuditAction::OrganizationUpdate, id, &actor)).await?;
                // The limits its keys share are read with each key.
                let limits_changed = changes.ratelimits.is_some().then_some(AuthChange::Organization { org_id: id });
                Ok((Some(org), limits_changed.into_iter().collect()))
            })
        })
        .await
    }

    async fn delete_organization(&self, id: Uuid, actor: &Actor) -> Result<Option<Vec<String>>> {
        let actor = *actor;
        self.transact(move |mut db| {
            Box::pin(async move {
                // The organization's row (which keeps out new apps, see
                // create_app), then its apps' rows (which keeps out new
                // bundles), so that every blob key is returned.
                if !lock_existing_org(&mut db, id).await? {
                    return Ok((None, vec![]));
                }
                if let Some(acting) = acting_in_org(&mut db, id, &actor, crate::now()).await? {
                    rules::may_delete_organization(&acting.caller, acting.role, id).map_err(StoreError::Refused)?;
                }
                let apps = format!(
                    "SELECT app_id FROM apps WHERE org_id = $1 ORDER BY app_id{}",
                    db.locking(RowLock::Update)
                );
                sql(&apps).bind(id).execute(&mut db).await?;
                let holdings: Holdings = sql(HOLDINGS).bind(id).fetch_one(&mut db).await?;
                let event = Event::new(AuditAction::OrganizationDelete, id, &actor);
                log_instance(&mut db, event, Some(holdings.detail())).await?;
                let blobs: Vec<(String,)> = sql(
                    "DELETE FROM bundles WHERE app_id IN (SELECT app_id FROM apps WHERE org_id = $1) RETURNING blob_key",
                )
                .bind(id)
                .fetch_all(&mut db)
                .await?;
                // Apps, memberships, scoped keys and the organization's audit
                // log go by ON DELETE CASCADE; the instance's log keeps the
                // deletion.
                sql("DELETE FROM organizations WHERE id = $1").bind(id).execute(&mut db).await?;
                let blobs = blobs.into_iter().map(|(blob,)| blob).collect();
                Ok((Some(blobs), vec![AuthChange::Organization { org_id: id }]))
            })
        })
        .await
    }

    async fn role(&self, org_id: Uuid, user_id: Uuid) -> Result<Option<Role>> {
        let role: Option<String> = sql("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .scalar(&mut self.reads())
            .await?;
        role.as_deref().map(crate::rows::role).transpose()
    }

    async fn memberships(&self, user_id: Uuid) -> Result<Vec<Membership>> {
        let rows: Vec<MembershipRow> =
            sql("SELECT o.id, o.name, o.require_apikey_expiration, o.max_apikey_expiration_days, \
             o.created_at, o.updated_at, o.ratelimits, m.role FROM memberships m \
             JOIN organizations o ON o.id = m.org_id WHERE m.user_id = $1 ORDER BY o.created_at, o.id")
            .bind(user_id)
            .fetch_all(&mut self.reads())
            .await?;
        all(rows)
    }

    async fn members(&self, org_id: Uuid) -> Result<Vec<Member>> {
        let rows: Vec<MemberRow> = sql("SELECT u.id AS user_id, u.email, m.role FROM memberships m \
             JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY m.created_at, u.email")
        .bind(org_id)
        .fetch_all(&mut self.reads())
        .await?;
        all(rows)
    }

    async fn set_member(&self, org_id: Uuid, email: &Email, role: Role, actor: &Actor) -> Result<Member> {
        let (email, actor) = (email.clone(), *actor);
        self.transact(move |mut db| {
            Box::pin(async move {
                let user_id = set_role(&mut db, org_id, &email, role, &actor, false).await?;
                let member = Member { user_id, email: email.as_str().to_owned(), role };
                Ok((member, vec![AuthChange::Member { org_id, user_id }]))
            })
        })
        .await
    }

    async fn remove_member(&self, org_id: Uuid, user_id: Uuid, actor: &Actor) -> Result<bool> {
        let actor = *actor;
        self.transact(move |mut db| {
            Box::pin(async move {
                lock_org(&mut db, org_id, RowLock::Exclusive).await?;
                still_administers(&mut db, org_id, &actor).await?;
                if stakes(&mut db, org_id, user_id, actor.user_id)
                    .await?
                    .allow(user_id, None, &actor)?
                    .is_none()
                {
                    return Ok((false, vec![]));
                }
                // The membership and the keys the member holds scoped to it.
                for statement in [
                    "DELETE FROM memberships WHERE org_id = $1 AND user_id = $2",
                    "DELETE FROM api_keys WHERE org_id = $1 AND user_id = $2",
                ] {
                    sql(statement).bind(org_id).bind(user_id).execute(&mut db).await?;
                }
                log(&mut db, org_id, Event::new(AuditAction::MemberRemove, user_id, &actor)).await?;
                Ok((true, vec![AuthChange::Member { org_id, user_id }]))
            })
        })
        .await
    }
}

/// Holds the organization for a change of it ([`RowLock::Exclusive`]);
/// `false` when there is none.
async fn lock_existing_org(db: &mut Db<'_>, id: Uuid) -> Result<bool> {
    match lock_org(db, id, RowLock::Exclusive).await {
        Err(StoreError::NotFound(Entity::Organization)) => Ok(false),
        locked => locked.map(|()| true),
    }
}

/// A new organization with `owner` as its `super_admin`, and its
/// `organization.create` event.
async fn insert_org(db: &mut Db<'_>, name: &OrgName, owner: Uuid, actor: &Actor) -> Result<Organization> {
    let text = format!(
        "INSERT INTO organizations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3) \
         RETURNING {ORG_COLUMNS}"
    );
    let org: Organization =
        sql(&text).bind(Uuid::now_v7()).bind(name.as_str()).bind(crate::now()).fetch_one(db).await?;
    upsert_membership(db, org.id, owner, rules::CREATOR_ROLE).await.map_err(|e| match e {
        StoreError::Database(e) => write_error(e, Entity::User, Entity::Organization),
        e => e,
    })?;
    log(db, org.id, Event::new(AuditAction::OrganizationCreate, org.id, actor)).await?;
    Ok(org)
}

/// Gives the user with `email` the `role` in `org_id`, if the membership
/// rules allow `actor` to, with its `member.set` event; returns the user.
/// Only the operator adds a user who is not a member (created if the email
/// is new). The organization is held before the user is written, as in
/// every change of memberships, so that no two wait for each other.
/// `confirmed`: the operator vouches that an existing account with `email`
/// is that person's ([`rules::may_enroll`]).
async fn set_role(
    db: &mut Db<'_>,
    org_id: Uuid,
    email: &Email,
    role: Role,
    actor: &Actor,
    confirmed: bool,
) -> Result<Uuid> {
    lock_org(db, org_id, RowLock::Exclusive).await?;
    let user_id = match actor.user_id {
        None => {
            let existing: Option<Uuid> = sql(USER_BY_EMAIL).bind(email.as_str()).scalar(db).await?;
            let member_here = match existing {
                Some(user) => {
                    let role: Option<String> =
                        sql("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                            .bind(org_id)
                            .bind(user)
                            .scalar(db)
                            .await?;
                    role.is_some()
                }
                None => false,
            };
            rules::may_enroll(existing.is_some(), member_here, confirmed)?;
            user_for_email(db, email).await?
        }
        // No such user is no member: the rules refuse it as one.
        Some(_) => sql(USER_BY_EMAIL).bind(email.as_str()).scalar(db).await?.unwrap_or_else(Uuid::nil),
    };
    still_administers(db, org_id, actor).await?;
    stakes(db, org_id, user_id, actor.user_id).await?.allow(user_id, Some(role), actor)?;
    upsert_membership(db, org_id, user_id, role).await?;
    log(db, org_id, Event::new(AuditAction::MemberSet, user_id, actor)).await?;
    Ok(user_id)
}

/// Gives `user_id` the `role` in `org_id`, adding the membership if needed.
async fn upsert_membership(db: &mut Db<'_>, org_id: Uuid, user_id: Uuid, role: Role) -> Result<()> {
    sql("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role")
    .bind(org_id)
    .bind(user_id)
    .bind(role.as_str())
    .bind(crate::now())
    .execute(db)
    .await?;
    Ok(())
}
