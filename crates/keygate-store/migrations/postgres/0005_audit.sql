-- What happened in an organization, by whom, from where.
CREATE TABLE audit_events (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id        UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    at            TIMESTAMPTZ NOT NULL,
    action        TEXT NOT NULL,
    actor_user_id UUID,
    actor_key_id  BIGINT,
    target_type   TEXT NOT NULL,
    target_id     TEXT NOT NULL,
    ip            TEXT
);

CREATE INDEX audit_events_by_org ON audit_events (org_id, id);
