//! Blocks of members' unscoped keys, as both backends keep them: the
//! statements, each run by the backend in its own transaction. A block
//! only ever narrows: the key's role in that one organization reads as no
//! membership, so every decision there refuses it, and nothing changes
//! elsewhere.

use crate::rows::KeyRow;

/// The role, unless the key is blocked there.
pub(crate) const ROLE_OF_KEY: &str = "SELECT m.role FROM memberships m WHERE m.org_id = $1 AND m.user_id = $2 \
     AND NOT EXISTS (SELECT 1 FROM key_blocks b WHERE b.org_id = $1 AND b.key_id = $3)";

/// Whether the key is an unscoped key of a member (`$1` key, `$2` organization).
pub(crate) const BLOCKABLE: &str = "SELECT k.id FROM api_keys k WHERE k.id = $1 AND k.org_id IS NULL \
     AND EXISTS (SELECT 1 FROM memberships m WHERE m.org_id = $2 AND m.user_id = k.user_id)";

pub(crate) const BLOCK: &str = "INSERT INTO key_blocks (key_id, org_id, created_at) VALUES ($1, $2, $3) \
     ON CONFLICT (key_id, org_id) DO NOTHING RETURNING key_id";

pub(crate) const UNBLOCK: &str = "DELETE FROM key_blocks WHERE key_id = $1 AND org_id = $2 RETURNING key_id";

/// Keys scoped to `$1`, and the unscoped keys of its members, with whether
/// each is blocked there.
pub(crate) fn keys_acting_in() -> String {
    format!(
        "SELECT {columns}, EXISTS (SELECT 1 FROM key_blocks b WHERE b.key_id = api_keys.id AND b.org_id = $1) \
         AS blocked FROM api_keys WHERE org_id = $1 \
         OR (org_id IS NULL AND user_id IN (SELECT user_id FROM memberships WHERE org_id = $1)) ORDER BY id",
        columns = crate::rows::KEY_COLUMNS
    )
}

#[derive(sqlx::FromRow)]
pub(crate) struct KeyInOrgRow {
    #[sqlx(flatten)]
    key: KeyRow,
    blocked: bool,
}

impl TryFrom<KeyInOrgRow> for crate::KeyInOrg {
    type Error = crate::StoreError;

    fn try_from(row: KeyInOrgRow) -> Result<Self, Self::Error> {
        Ok(crate::KeyInOrg { key: row.key.try_into()?, blocked: row.blocked })
    }
}
