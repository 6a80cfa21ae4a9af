//! Whether a membership may change, decided by [`keygate_core::rules`] on
//! the roles a backend read under the organization's lock.

use keygate_core::Role;
use keygate_core::rules::{self, Refusal};
use uuid::Uuid;

use crate::rows::role;
use crate::sql::{Db, sql};
use crate::{Actor, Entity, Result, StoreError};

/// The user with the email `$1`, if any.
pub(crate) const USER_BY_EMAIL: &str = "SELECT id FROM users WHERE email = $1";

/// What a change of one member's role is decided on, as one read returns it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Stakes {
    /// The member's role now; `None` when not a member.
    current: Option<String>,
    /// The acting member's role; `None` for a non-member (or no acting member).
    acting: Option<String>,
    /// How many `super_admin`s the organization has.
    super_admins: i64,
}

impl Stakes {
    /// The member's role now.
    pub(crate) fn current(&self) -> Result<Option<Role>> {
        self.current.as_deref().map(role).transpose()
    }

    /// Decides whether `actor` may move `member` from their current role
    /// to `new` (`None`: removal), returning the current role. An acting
    /// member is bound by [`rules::may_change_membership`] (and a non-member
    /// finds no organization); everyone by [`rules::keeps_a_super_admin`].
    pub(crate) fn allow(&self, member: Uuid, new: Option<Role>, actor: &Actor) -> Result<Option<Role>> {
        let current = self.current()?;
        if let Some(acting) = actor.user_id {
            let acting_role = self.acting.as_deref().map(role).transpose()?;
            match rules::may_change_membership(acting, acting_role, member, current, new) {
                Ok(()) => {}
                // Nobody to remove: nothing happens.
                Err(Refusal::NotAMember) if new.is_none() => return Ok(None),
                Err(Refusal::Invisible) => return Err(StoreError::NotFound(Entity::Organization)),
                Err(refusal) => return Err(StoreError::Refused(refusal)),
            }
        }
        rules::keeps_a_super_admin(current, new, self.super_admins)?;
        Ok(current)
    }
}

/// The user with this email, created if new (the operator's doing, kept in
/// the instance's log as `user.create`). Insert-or-nothing, then read in a
/// statement of its own: of two changes naming one new email at once, the
/// second waits for the first's insert and then reads its user.
pub(crate) async fn user_for_email(db: &mut Db<'_>, email: &keygate_core::Email) -> Result<Uuid> {
    let created: Option<Uuid> = sql(
        "INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(email.as_str())
    .bind(crate::now())
    .scalar(db)
    .await?;
    if let Some(id) = created {
        let event = crate::event::Event::new(crate::AuditAction::UserCreate, id, &Actor::OPERATOR);
        crate::event::log_instance(db, event, None).await?;
        return Ok(id);
    }
    let existing: Option<Uuid> = sql(USER_BY_EMAIL).bind(email.as_str()).scalar(db).await?;
    existing.ok_or(StoreError::NotFound(Entity::User))
}

/// What a change of `user_id`'s membership in `org_id` by `acting` is
/// decided on, in one read. Read after the caller took
/// [`RowLock::Exclusive`](crate::backend::RowLock::Exclusive) on the
/// organization, so that it sees every change committed before.
pub(crate) async fn stakes(
    db: &mut Db<'_>,
    org_id: Uuid,
    user_id: Uuid,
    acting: Option<Uuid>,
) -> Result<Stakes> {
    let stakes: Option<Stakes> =
        sql("SELECT (SELECT role FROM memberships WHERE org_id = o.id AND user_id = $2) AS current, \
         (SELECT role FROM memberships WHERE org_id = o.id AND user_id = $3) AS acting, \
         (SELECT COUNT(*) FROM memberships WHERE org_id = o.id AND role = $4) AS super_admins \
         FROM organizations o WHERE o.id = $1")
        .bind(org_id)
        .bind(user_id)
        .bind(acting)
        .bind(Role::SuperAdmin.as_str())
        .fetch_optional(db)
        .await?;
    stakes.ok_or(StoreError::NotFound(Entity::Organization))
}
