-- What happened to the instance itself, outliving what it records: users
-- created, organizations deleted (with what they held). Nothing refers to
-- it, so no cascade reaches it.
CREATE TABLE instance_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            TEXT NOT NULL,
    action        TEXT NOT NULL,
    actor_user_id BLOB,
    actor_key_id  INTEGER,
    target_type   TEXT NOT NULL,
    target_id     TEXT NOT NULL,
    ip            TEXT,
    detail        TEXT
) STRICT;
