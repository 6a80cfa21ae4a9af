//! Invitations, as both backends keep them: the statements (each backend
//! runs them in its own transaction), the row, and what a redemption
//! issues. A code is single use because redeeming marks the row in the
//! same statement that finds it (`UPDATE … WHERE redeemed_at IS NULL …
//! RETURNING`): of two redemptions at once, one finds nothing.

use chrono::{DateTime, Duration, Utc};
use keygate_core::rules::ExpiryPolicy;
use keygate_core::{KeyName, Mode, Role};
use uuid::Uuid;

use crate::{Invite, KeyLimits, KeyMaterial, NewApiKey, StoreError};

pub(crate) const INSERT: &str = "INSERT INTO invites (org_id, email, role, digest, created_by, created_at, expires_at) \
     SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM organizations WHERE id = $1) \
     RETURNING id, org_id, email, role, created_by, created_at, expires_at";

pub(crate) const PENDING: &str = "SELECT id, org_id, email, role, created_by, created_at, expires_at FROM invites \
     WHERE org_id = $1 AND redeemed_at IS NULL AND expires_at > $2 ORDER BY id DESC";

pub(crate) const REVOKE: &str =
    "DELETE FROM invites WHERE org_id = $1 AND id = $2 AND redeemed_at IS NULL RETURNING id";

/// Marks the invitation used, if it still may be, and returns it.
pub(crate) const CLAIM: &str = "UPDATE invites SET redeemed_at = $2 \
     WHERE digest = $1 AND redeemed_at IS NULL AND expires_at > $2 \
     RETURNING id, org_id, email, role, created_by, created_at, expires_at";

pub(crate) const REDEEMED_BY: &str = "UPDATE invites SET redeemed_by = $2 WHERE id = $1";

/// Adds the membership unless the user is a member already.
pub(crate) const JOIN: &str = "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (org_id, user_id) DO NOTHING";

pub(crate) const ROLE_AND_POLICY: &str = "SELECT m.role, o.require_apikey_expiration, o.max_apikey_expiration_days \
     FROM memberships m JOIN organizations o ON o.id = m.org_id WHERE m.org_id = $1 AND m.user_id = $2";

#[derive(sqlx::FromRow)]
pub(crate) struct InviteRow {
    id: i64,
    org_id: Uuid,
    email: String,
    role: String,
    created_by: Option<Uuid>,
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
            created_at: row.created_at,
            expires_at: row.expires_at,
        })
    }
}

/// How long an invitation's first key lives when the organization requires
/// keys to expire but sets no maximum.
pub const REQUIRED_EXPIRY_DAYS: i64 = 90;

/// The first key of a member with `role`, as an invitation issues it: the
/// most the role allows (an admin's is `all`), scoped to the organization,
/// expiring as late as its policy lets it, if it requires expiry.
pub(crate) fn first_key(
    material: KeyMaterial,
    user_id: Uuid,
    org_id: Uuid,
    role: Role,
    policy: ExpiryPolicy,
    now: DateTime<Utc>,
) -> NewApiKey {
    let mode = match role {
        Role::Read => Mode::Read,
        Role::Upload => Mode::Upload,
        Role::Write => Mode::Write,
        Role::Admin | Role::SuperAdmin => Mode::All,
    };
    let days = match (policy.require_expiration, policy.max_days) {
        (_, Some(max)) => Some(i64::from(max)),
        (true, None) => Some(REQUIRED_EXPIRY_DAYS),
        (false, None) => None,
    };
    NewApiKey {
        material,
        mode,
        name: KeyName::parse("Invitation key").unwrap_or_else(|_| KeyName::default_name()),
        user_id,
        org_id: Some(org_id),
        limited_to_apps: Vec::new(),
        expires_at: days.map(|days| crate::truncate(now + Duration::days(days))),
        created_by_key_id: None,
        limits: KeyLimits::default(),
    }
}
