-- What happened to the instance itself, outliving what it records: users
-- created, organizations deleted (with what they held). Nothing refers to
-- it, so no cascade reaches it.
CREATE TABLE instance_events (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            TIMESTAMPTZ NOT NULL,
    action        TEXT NOT NULL,
    actor_user_id UUID,
    actor_key_id  BIGINT,
    target_type   TEXT NOT NULL,
    target_id     TEXT NOT NULL,
    ip            TEXT,
    detail        TEXT
);
