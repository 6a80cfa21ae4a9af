//! Whether a membership may change, decided by [`keygate_core::rules`] on
//! the roles a backend read under the organization's lock.

use keygate_core::Role;
use keygate_core::rules::{self, Refusal};
use uuid::Uuid;

use crate::rows::role;
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
pub(crate) async fn user_for_email<'c, DB>(
    conn: &'c mut DB::Connection,
    email: &keygate_core::Email,
) -> Result<Uuid>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> Uuid: crate::params::Param<'q, DB> + sqlx::Decode<'q, DB>,
    for<'q> Option<Uuid>: crate::params::Param<'q, DB>,
    for<'q> &'q str: crate::params::Param<'q, DB>,
    for<'q> chrono::DateTime<chrono::Utc>: crate::params::Param<'q, DB>,
    for<'q> Option<i64>: crate::params::Param<'q, DB>,
    for<'q> String: crate::params::Param<'q, DB>,
    for<'q> Option<String>: crate::params::Param<'q, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let id = Uuid::now_v7();
    let created: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING RETURNING id",
    )
    .bind(id)
    .bind(email.as_str())
    .bind(crate::now())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = created {
        let event = crate::event::Event::new(crate::AuditAction::UserCreate, id, &Actor::OPERATOR);
        crate::event::log_instance::<DB>(&mut *conn, event, None).await?;
        return Ok(id);
    }
    Ok(sqlx::query_scalar(USER_BY_EMAIL).bind(email.as_str()).fetch_one(&mut *conn).await?)
}
