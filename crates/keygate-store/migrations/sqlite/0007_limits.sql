-- Limits on what a key may spend (see keygate_core::limits):
-- - enabled: a disabled key is refused without being deleted;
-- - ratelimits: a JSON array of {name, limit, duration_ms};
-- - credits_remaining: the balance no replica holds in lease (NULL: unlimited),
--   credits_refill its refill as JSON {amount, interval, day}, credits_period the
--   start (ms since the epoch) of the refill period the balance belongs to, and
--   credits_generation a counter bumped whenever the credits are set, so that a
--   lease taken before is never handed back into the new balance.
ALTER TABLE api_keys ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1;
ALTER TABLE api_keys ADD COLUMN ratelimits TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_keys ADD COLUMN credits_remaining INTEGER;
ALTER TABLE api_keys ADD COLUMN credits_refill TEXT;
ALTER TABLE api_keys ADD COLUMN credits_period INTEGER;
ALTER TABLE api_keys ADD COLUMN credits_generation INTEGER NOT NULL DEFAULT 0;
-- A limit shared by every key scoped to the organization.
ALTER TABLE organizations ADD COLUMN ratelimits TEXT NOT NULL DEFAULT '[]';
-- Consumed credits and refusals per key and day.
ALTER TABLE key_usage ADD COLUMN credits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE key_usage ADD COLUMN rate_limited INTEGER NOT NULL DEFAULT 0;
ALTER TABLE key_usage ADD COLUMN usage_exceeded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE key_usage ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
