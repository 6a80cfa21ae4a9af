-- Apps and their bundles: what key modes govern.

CREATE TABLE apps (
    app_id     TEXT PRIMARY KEY NOT NULL,
    org_id     BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

CREATE INDEX apps_by_org ON apps (org_id);

-- The bytes live in the blob store under blob_key; the row is written only
-- once the blob is complete, so a listed bundle is never half written.
CREATE TABLE bundles (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id     TEXT NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
    version    TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    size       INTEGER NOT NULL,
    blob_key   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (app_id, version)
) STRICT;
