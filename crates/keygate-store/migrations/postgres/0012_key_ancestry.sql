-- Every ancestor of every key: the key that created it, that key's creator,
-- and so on. A key deleted in between leaves its descendants' rows, so that
-- revoking a leaked key still reaches everything it made, however far down.
-- Invitations record the key they were issued with: an invitation is a
-- credential that key made, and the account's first key is its child.
CREATE TABLE key_ancestry (
    ancestor_id   BIGINT NOT NULL,
    descendant_id BIGINT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    PRIMARY KEY (ancestor_id, descendant_id)
);

CREATE INDEX key_ancestry_by_descendant ON key_ancestry (descendant_id);

WITH RECURSIVE chain (ancestor_id, descendant_id) AS (
    SELECT created_by_key_id, id FROM api_keys WHERE created_by_key_id IS NOT NULL
    UNION
    SELECT k.created_by_key_id, chain.descendant_id FROM chain
    JOIN api_keys k ON k.id = chain.ancestor_id WHERE k.created_by_key_id IS NOT NULL
)
INSERT INTO key_ancestry (ancestor_id, descendant_id) SELECT ancestor_id, descendant_id FROM chain;

-- Recorded with the key, in the statement that inserts it.
CREATE FUNCTION record_key_ancestry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO key_ancestry (ancestor_id, descendant_id)
    SELECT NEW.created_by_key_id, NEW.id
    UNION
    SELECT ancestor_id, NEW.id FROM key_ancestry WHERE descendant_id = NEW.created_by_key_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER key_ancestry_on_insert AFTER INSERT ON api_keys
FOR EACH ROW WHEN (NEW.created_by_key_id IS NOT NULL) EXECUTE FUNCTION record_key_ancestry();

ALTER TABLE invites ADD COLUMN created_by_key_id BIGINT;
