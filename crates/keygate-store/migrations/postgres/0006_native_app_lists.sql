-- A key's apps as a native array instead of a JSON array in TEXT, moving
-- what is there in order. ALTER ... USING allows no subquery, so: a new
-- column, filled from the old one, which then goes.
ALTER TABLE api_keys ADD COLUMN limited_to_apps_array TEXT[] NOT NULL DEFAULT '{}';

UPDATE api_keys
SET limited_to_apps_array = ARRAY(
    SELECT app.id
    FROM jsonb_array_elements_text(limited_to_apps::jsonb) WITH ORDINALITY AS app (id, position)
    ORDER BY app.position
)
WHERE limited_to_apps::jsonb <> '[]'::jsonb;

ALTER TABLE api_keys DROP COLUMN limited_to_apps;
ALTER TABLE api_keys RENAME COLUMN limited_to_apps_array TO limited_to_apps;
