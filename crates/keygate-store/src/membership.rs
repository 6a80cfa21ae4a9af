//! Whether a membership may change, decided by [`keygate_core::rules`] on
//! the roles a backend read under the organization's lock.

use keygate_core::Role;
use keygate_core::rules::{self, Refusal};

use crate::rows::role;
use crate::{Actor, Entity, Result, StoreError};

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

    /// Decides whether `actor` may move the member from their current role
    /// to `new` (`None`: removal), returning the current role. An acting
    /// member is bound by [`rules::may_change_membership`] (and a non-member
    /// finds no organization); everyone by [`rules::keeps_a_super_admin`].
    pub(crate) fn allow(&self, new: Option<Role>, actor: &Actor) -> Result<Option<Role>> {
        let current = self.current()?;
        if actor.user_id.is_some() {
            let acting = self.acting.as_deref().map(role).transpose()?;
            rules::may_change_membership(acting, current, new).map_err(|refusal| match refusal {
                Refusal::Invisible => StoreError::NotFound(Entity::Organization),
                refusal => StoreError::Refused(refusal),
            })?;
        }
        rules::keeps_a_super_admin(current, new, self.super_admins)?;
        Ok(current)
    }
}
