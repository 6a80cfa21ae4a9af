-- Requests per key and day, and how many of them were denied.
CREATE TABLE key_usage (
    key_id   BIGINT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    day      DATE NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    denied   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day)
);
