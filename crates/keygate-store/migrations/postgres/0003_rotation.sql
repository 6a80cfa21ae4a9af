-- Rotation with a grace period: the previous secret keeps working until
-- previous_expires_at.
ALTER TABLE api_keys ADD COLUMN previous_digest BYTEA;
ALTER TABLE api_keys ADD COLUMN previous_expires_at TIMESTAMPTZ;
CREATE UNIQUE INDEX api_keys_by_previous_digest ON api_keys (previous_digest);
