-- A counter every change to what authentication returns moves, in the
-- change's own transaction, so that a server caching verified keys learns
-- of changes made by other processes (`keygate user add`) and of nothing
-- else: usage and audit writes leave it alone.
CREATE TABLE auth_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO auth_epoch (id, value) VALUES (1, 0);
