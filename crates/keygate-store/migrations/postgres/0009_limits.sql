-- Limits on what a key may spend (see keygate_core::limits):
-- - enabled: a disabled key is refused without being deleted;
-- - ratelimits: a JSON array of {name, limit, duration_ms};
-- - credits_remaining: the balance no replica holds in lease (NULL: unlimited),
--   credits_refill its refill as JSON {amount, interval, day}, credits_period the
--   start (ms since the epoch) of the refill period the balance belongs to, and
--   credits_generation a counter bumped whenever the credits are set, so that a
--   lease taken before is never handed back into the new balance.
ALTER TABLE api_keys ADD COLUMN enabled BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE api_keys ADD COLUMN ratelimits TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_keys ADD COLUMN credits_remaining BIGINT;
ALTER TABLE api_keys ADD COLUMN credits_refill TEXT;
ALTER TABLE api_keys ADD COLUMN credits_period BIGINT;
ALTER TABLE api_keys ADD COLUMN credits_generation BIGINT NOT NULL DEFAULT 0;
-- A limit shared by every key scoped to the organization.
ALTER TABLE organizations ADD COLUMN ratelimits TEXT NOT NULL DEFAULT '[]';
-- Consumed credits and refusals per key and day.
ALTER TABLE key_usage ADD COLUMN credits BIGINT NOT NULL DEFAULT 0;
ALTER TABLE key_usage ADD COLUMN rate_limited BIGINT NOT NULL DEFAULT 0;
ALTER TABLE key_usage ADD COLUMN usage_exceeded BIGINT NOT NULL DEFAULT 0;
ALTER TABLE key_usage ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0;
-- Rate-limit windows shared by replicas: how much of the current window of
-- each limit has been leased. Unlogged: losing it in a crash only forgets
-- what one window spent.
CREATE UNLOGGED TABLE rate_windows (
    subject      TEXT NOT NULL,
    name         TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    used         BIGINT NOT NULL,
    PRIMARY KEY (subject, name)
);
