-- The change log: every automerge change devices pushed, per tenant, numbered in
-- commit order. Append-only except for `folded`, which compaction sets once a
-- journey snapshot contains the change (the row stays for cursors).
CREATE TABLE change_log (
    tenant      TEXT        NOT NULL,
    seq         BIGINT      NOT NULL CHECK (seq > 0),
    journey_id  UUID        NOT NULL,
    hash        BYTEA       NOT NULL,
    actor       BYTEA       NOT NULL,
    device_id   UUID        NOT NULL,
    bytes       BYTEA       NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    folded      BOOLEAN     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant, seq),
    UNIQUE (tenant, hash)
);

-- Automerge compresses its own changes: don't let TOAST try again.
ALTER TABLE change_log ALTER COLUMN bytes SET STORAGE EXTERNAL;

-- Loading a journey reads only the changes not yet in its snapshot, in log order.
CREATE INDEX change_log_journey_unfolded ON change_log (tenant, journey_id, seq) WHERE NOT folded;

-- One row per tenant: the highest sequence number handed out. Appends lock this
-- row for their whole transaction, which serializes a tenant's appends so that
-- sequence numbers are assigned in commit order.
CREATE TABLE log_heads (
    tenant TEXT   PRIMARY KEY,
    head   BIGINT NOT NULL DEFAULT 0 CHECK (head >= 0)
);
