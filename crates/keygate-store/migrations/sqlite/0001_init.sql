-- Users, organizations, memberships and API keys.
-- Ids of users and organizations are UUIDs (16-byte blobs); times are RFC 3339 text in UTC.

CREATE TABLE users (
    id         BLOB PRIMARY KEY NOT NULL,
    email      TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
) STRICT;

CREATE TABLE organizations (
    id                         BLOB PRIMARY KEY NOT NULL,
    name                       TEXT NOT NULL,
    require_apikey_expiration  INTEGER NOT NULL DEFAULT 0,
    max_apikey_expiration_days INTEGER,
    created_at                 TEXT NOT NULL,
    updated_at                 TEXT NOT NULL
) STRICT;

CREATE TABLE memberships (
    org_id     BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('read', 'upload', 'write', 'admin', 'super_admin')),
    created_at TEXT NOT NULL,
    PRIMARY KEY (org_id, user_id)
) STRICT;

CREATE INDEX memberships_by_user ON memberships (user_id);

-- AUTOINCREMENT: a deleted key's id is never handed out again.
CREATE TABLE api_keys (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    digest            BLOB NOT NULL UNIQUE,
    preview           TEXT NOT NULL,
    mode              TEXT NOT NULL CHECK (mode IN ('read', 'write', 'upload', 'all')),
    name              TEXT NOT NULL,
    user_id           BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id            BLOB REFERENCES organizations (id) ON DELETE CASCADE,
    limited_to_apps   TEXT NOT NULL DEFAULT '[]',
    expires_at        TEXT,
    last_used_at      TEXT,
    created_by_key_id INTEGER,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
) STRICT;

CREATE INDEX api_keys_by_user ON api_keys (user_id);
CREATE INDEX api_keys_by_org ON api_keys (org_id);
