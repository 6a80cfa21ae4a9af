-- Which key created which: a leaked key reported through /apikey/revoke is
-- revoked with every key it created, transitively.
CREATE INDEX api_keys_by_creator ON api_keys (created_by_key_id);
