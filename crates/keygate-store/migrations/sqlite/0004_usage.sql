-- Requests per key and day, and how many of them were denied.
CREATE TABLE key_usage (
    key_id   INTEGER NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    day      TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    denied   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day)
) STRICT;
