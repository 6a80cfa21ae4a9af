-- What happened in an organization, by whom, from where.
CREATE TABLE audit_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id        BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    at            TEXT NOT NULL,
    action        TEXT NOT NULL,
    actor_user_id BLOB,
    actor_key_id  INTEGER,
    target_type   TEXT NOT NULL,
    target_id     TEXT NOT NULL,
    ip            TEXT
) STRICT;

CREATE INDEX audit_events_by_org ON audit_events (org_id, id);
