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
