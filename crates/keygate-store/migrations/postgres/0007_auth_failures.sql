-- Failed authentications of the last few minutes, shared by every replica
-- so that the throttle counts an address's failures wherever they landed.
-- Rows older than the throttle's window are deleted by the replicas.
CREATE TABLE auth_failures (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client  TEXT NOT NULL,
    at      TIMESTAMPTZ NOT NULL,
    replica UUID NOT NULL
);

CREATE INDEX auth_failures_by_time ON auth_failures (at);
