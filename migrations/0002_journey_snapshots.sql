-- The latest compacted document of a journey; the log rows it contains are
-- marked `change_log.folded` in the same transaction.
CREATE TABLE journey_snapshots (
    tenant     TEXT        NOT NULL,
    journey_id UUID        NOT NULL,
    snapshot   BYTEA       NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, journey_id)
);

-- Saved automerge documents are compressed already.
ALTER TABLE journey_snapshots ALTER COLUMN snapshot SET STORAGE EXTERNAL;
