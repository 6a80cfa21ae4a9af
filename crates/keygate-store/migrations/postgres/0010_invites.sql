-- Invitations to an organization: a code shown once (only its SHA-256 is
-- kept), single use, expiring. Redeeming one creates the user if new, adds
-- the membership and issues a first key.
CREATE TABLE invites (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('read', 'upload', 'write', 'admin', 'super_admin')),
    digest      BYTEA NOT NULL UNIQUE,
    created_by  UUID,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    redeemed_at TIMESTAMPTZ,
    redeemed_by UUID
);

CREATE INDEX invites_by_org ON invites (org_id);
