-- Apps and their bundles: what key modes govern.

CREATE TABLE apps (
    app_id     TEXT PRIMARY KEY,
    org_id     UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX apps_by_org ON apps (org_id);

-- The bytes live in the blob store under blob_key; the row is written only
-- once the blob is complete, so a listed bundle is never half written.
CREATE TABLE bundles (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
    version    TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    size       BIGINT NOT NULL,
    blob_key   TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (app_id, version)
);
