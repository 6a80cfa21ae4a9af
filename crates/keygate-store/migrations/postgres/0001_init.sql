-- Users, organizations, memberships and API keys.

CREATE TABLE users (
    id         UUID PRIMARY KEY,
    email      TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE organizations (
    id                         UUID PRIMARY KEY,
    name                       TEXT NOT NULL,
    require_apikey_expiration  BOOLEAN NOT NULL DEFAULT FALSE,
    max_apikey_expiration_days INTEGER,
    created_at                 TIMESTAMPTZ NOT NULL,
    updated_at                 TIMESTAMPTZ NOT NULL
);

CREATE TABLE memberships (
    org_id     UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('read', 'upload', 'write', 'admin', 'super_admin')),
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

CREATE INDEX memberships_by_user ON memberships (user_id);

-- An identity column never hands out a deleted key's id again.
CREATE TABLE api_keys (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest            BYTEA NOT NULL UNIQUE,
    preview           TEXT NOT NULL,
    mode              TEXT NOT NULL CHECK (mode IN ('read', 'write', 'upload', 'all')),
    name              TEXT NOT NULL,
    user_id           UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id            UUID REFERENCES organizations (id) ON DELETE CASCADE,
    -- A JSON array of app ids, as on SQLite, so both backends share their SQL.
    limited_to_apps   TEXT NOT NULL DEFAULT '[]',
    expires_at        TIMESTAMPTZ,
    last_used_at      TIMESTAMPTZ,
    created_by_key_id BIGINT,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);

CREATE INDEX api_keys_by_user ON api_keys (user_id);
CREATE INDEX api_keys_by_org ON api_keys (org_id);
