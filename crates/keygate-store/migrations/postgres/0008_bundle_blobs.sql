-- Bundle bytes kept in the database, so that every replica serves every
-- bundle without shared storage. A blob is written in chunks, each its own
-- committed row, before the bundle row that names it; chunks no bundle
-- names (an upload that failed, or a crash between the two) are removed at
-- start once older than an hour.
CREATE TABLE bundle_blob_chunks (
    blob_key   TEXT NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq >= 0),
    bytes      BYTEA NOT NULL,
    written_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (blob_key, seq)
);

CREATE INDEX bundles_blob_key ON bundles (blob_key);
