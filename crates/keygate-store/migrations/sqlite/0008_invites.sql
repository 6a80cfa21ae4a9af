-- Invitations to an organization: a code shown once (only its SHA-256 is
-- kept), single use, expiring. Redeeming one creates the user if new, adds
-- the membership and issues a first key.
CREATE TABLE invites (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('read', 'upload', 'write', 'admin', 'super_admin')),
    digest      BLOB NOT NULL UNIQUE,
    created_by  BLOB,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    redeemed_at TEXT,
    redeemed_by BLOB
) STRICT;

CREATE INDEX invites_by_org ON invites (org_id);
