-- An organization's admins stop a member's unscoped key from acting in it,
-- without touching what it may do elsewhere.
CREATE TABLE key_blocks (
    key_id     BIGINT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    org_id     UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (key_id, org_id)
);
