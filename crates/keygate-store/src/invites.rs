//! Invitations, as both backends keep them: the statements (each backend
//! runs them in its own transaction, under the organization's lock), the
//! facts each write decides on, and what a redemption makes. The decisions
//! are [`keygate_core::rules::may_invite`], [`rules::may_redeem`] and
//! [`rules::may_withdraw_invite`], taken over facts read in the write's own
//! transaction.
//!
//! A code is single use because redeeming marks the row in the same
//! statement that finds it (`UPDATE … WHERE redeemed_at IS NULL …
//! RETURNING`): of two redemptions at once, one finds nothing. A redemption
//! that a rule refuses rolls back whole, that mark included.

use chrono::{DateTime, Utc};
use std::sync::LazyLock;

use keygate_core::rules::{self, ExpiryPolicy, Invitee, IssuingKey, Presented, Redemption, Refusal};
use keygate_core::{KeyName, Role};
use uuid::Uuid;

use crate::{
    ApiKeyRecord, Entity, Invite, KeyInOrg, KeyLimits, KeyMaterial, NewApiKey, NewInvite, Redeemer, Result,
    StoreError,
};

/// The columns an invitation is read from.
const INVITE_COLUMNS: &str = "id, org_id, email, role, created_by, created_by_key_id, created_at, expires_at";

pub(crate) static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO invites (org_id, email, role, digest, created_by, created_by_key_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {INVITE_COLUMNS}"
    )
});

pub(crate) static PENDING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {INVITE_COLUMNS} FROM invites \
         WHERE org_id = $1 AND redeemed_at IS NULL ORDER BY id DESC"
    )
});

/// A pending invitation of the organization, with its role and issuer.
pub(crate) static PENDING_ONE: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {INVITE_COLUMNS} FROM invites WHERE org_id = $1 AND id = $2 AND redeemed_at IS NULL")
});

pub(crate) const REVOKE: &str = "DELETE FROM invites WHERE id = $1";

/// Marks the invitation used, if no one did, and returns it; the
/// redemption's decision (expiry included) may still undo it.
pub(crate) static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE invites SET redeemed_at = $2 WHERE digest = $1 AND redeemed_at IS NULL \
         RETURNING {INVITE_COLUMNS}"
    )
});

/// The key `$1` an invitation was issued with, and whether it is blocked in
/// the invitation's organization `$2`.
pub(crate) static ISSUING_KEY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {columns}, EXISTS (SELECT 1 FROM key_blocks b WHERE b.key_id = api_keys.id AND b.org_id = $2) \
         AS blocked FROM api_keys WHERE id = $1",
        columns = crate::rows::KEY_COLUMNS
    )
});

/// The organization of the invitation whose code has the digest `$1`.
pub(crate) const ORG_OF_CODE: &str = "SELECT org_id FROM invites WHERE digest = $1";

pub(crate) const REDEEMED_BY: &str = "UPDATE invites SET redeemed_by = $2 WHERE id = $1";

pub(crate) const NEW_USER: &str = "INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3)";

pub(crate) const JOIN: &str =
    "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)";

pub(crate) const POLICY: &str =
    "SELECT require_apikey_expiration, max_apikey_expiration_days FROM organizations WHERE id = $1";

/// The facts an invitation is issued and redeemed on, in one read (`$1`
/// organization, `$2` the inviter, `$3` the invitee's address): the
/// inviter's role now, and the account with that address, if any, with its
/// role in the organization.
pub(crate) const PARTIES: &str = "SELECT \
     (SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2) AS inviter, \
     (SELECT id FROM users WHERE email = $3) AS invitee, \
     (SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id \
      WHERE m.org_id = $1 AND u.email = $3) AS invitee_role";

/// The role of `$2` in `$1`, as the acting member's.
pub(crate) const ACTING_ROLE: &str = "SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2";

#[derive(sqlx::FromRow)]
pub(crate) struct InviteRow {
    id: i64,
    org_id: Uuid,
    email: String,
    role: String,
    created_by: Option<Uuid>,
    created_by_key_id: Option<i64>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl TryFrom<InviteRow> for Invite {
    type Error = StoreError;

    fn try_from(row: InviteRow) -> Result<Self, StoreError> {
        Ok(Invite {
            id: row.id,
            org_id: row.org_id,
            email: row.email,
            role: crate::rows::role(&row.role)?,
            created_by: row.created_by,
            created_by_key_id: row.created_by_key_id,
            created_at: row.created_at,
            expires_at: row.expires_at,
        })
    }
}

/// What [`PARTIES`] read.
#[derive(sqlx::FromRow)]
pub(crate) struct Parties {
    inviter: Option<String>,
    invitee: Option<Uuid>,
    invitee_role: Option<String>,
}

impl Parties {
    fn inviter(&self) -> Result<Option<Role>> {
        self.inviter.as_deref().map(crate::rows::role).transpose()
    }

    fn invitee_role(&self) -> Result<Option<Role>> {
        self.invitee_role.as_deref().map(crate::rows::role).transpose()
    }

    /// Whether the inviter may issue `invite` now ([`rules::may_invite`]).
    pub(crate) fn may_issue(&self, invite: &NewInvite) -> Result<()> {
        rules::may_invite(self.inviter()?, invite.role, self.invitee_role()?).map_err(refused)
    }

    /// What redeeming `invite` by `redeemer` at `now` does, given the key
    /// it was issued with, as [`ISSUING_KEY`] read it
    /// ([`rules::may_redeem`]).
    pub(crate) fn redemption(
        &self,
        invite: &Invite,
        issuing_key: Option<&KeyInOrg>,
        now: DateTime<Utc>,
        redeemer: &Redeemer,
    ) -> Result<Redemption> {
        let invitee = match self.invitee {
            Some(user) => Invitee::Existing { user, role: self.invitee_role()? },
            None => Invitee::New,
        };
        let issuing = issuing_key.map(|issuing| IssuingKey {
            expires_at: issuing.key.expires_at,
            enabled: issuing.key.enabled,
            restrained: !issuing.key.principal().may_mint(),
            blocked: issuing.blocked,
        });
        let presented =
            redeemer.presented.map(|key| Presented { user: key.user_id, mode: key.mode, free: key.free });
        let (inviter, open_until) = (self.inviter()?, invite.expires_at);
        rules::may_redeem(inviter, invite.role, open_until, issuing, now, invitee, presented).map_err(refused)
    }
}

/// Whether `actor` (whose role is `actor_role`) may withdraw `invite`,
/// issued by a member whose role is now `issuer_role`.
pub(crate) fn may_withdraw(
    actor: Uuid,
    actor_role: Option<&str>,
    invite: &Invite,
    issuer_role: Option<&str>,
) -> Result<()> {
    let actor_role = actor_role.map(crate::rows::role).transpose()?;
    let issuer_role = issuer_role.map(crate::rows::role).transpose()?;
    rules::may_withdraw_invite(actor, actor_role, invite.created_by, issuer_role).map_err(refused)
}

/// A refusal as the store reports it: an organization the actor is not a
/// member of is not found.
fn refused(refusal: Refusal) -> StoreError {
    match refusal {
        Refusal::Invisible => StoreError::NotFound(Entity::Organization),
        refusal => StoreError::Refused(refusal),
    }
}

/// The first key of a new account, as an invitation issued with
/// `issuing_key` makes it: mode `all`, scoped to the organization, a child
/// of that key, expiring as [`rules::first_key_expiry`] says.
pub(crate) fn first_key(
    material: KeyMaterial,
    user_id: Uuid,
    org_id: Uuid,
    policy: ExpiryPolicy,
    now: DateTime<Utc>,
    issuing_key: &ApiKeyRecord,
) -> NewApiKey {
    NewApiKey {
        material,
        mode: rules::FIRST_KEY_MODE,
        name: KeyName::parse("Invitation key").unwrap_or_else(|_| KeyName::default_name()),
        user_id,
        org_id: Some(org_id),
        limited_to_apps: Vec::new(),
        expires_at: rules::first_key_expiry(policy, now, issuing_key.expires_at).map(crate::truncate),
        created_by_key_id: Some(issuing_key.id),
        limits: KeyLimits::default(),
    }
}

/// The invitations of `rows` still open at `now` ([`rules::invitation_open`]).
pub(crate) fn open_at(rows: Vec<InviteRow>, now: DateTime<Utc>) -> Result<Vec<Invite>> {
    let invites: Vec<Invite> = crate::rows::all(rows)?;
    Ok(invites.into_iter().filter(|invite| rules::invitation_open(invite.expires_at, now)).collect())
}
