-- The embedded store's schema: the same tables as the Postgres schema in
-- /migrations, in SQLite's types (UUIDs are 16-byte blobs).

CREATE TABLE change_log (
    tenant      TEXT    NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq > 0),
    journey_id  BLOB    NOT NULL,
    hash        BLOB    NOT NULL,
    actor       BLOB    NOT NULL,
    device_id   BLOB    NOT NULL,
    bytes       BLOB    NOT NULL,
    received_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    folded      INTEGER NOT NULL DEFAULT 0 CHECK (folded IN (0, 1)),
    PRIMARY KEY (tenant, seq),
    UNIQUE (tenant, hash)
) STRICT;

CREATE INDEX change_log_journey_unfolded ON change_log (tenant, journey_id, seq) WHERE folded = 0;

CREATE TABLE log_heads (
    tenant TEXT    NOT NULL PRIMARY KEY,
    head   INTEGER NOT NULL DEFAULT 0 CHECK (head >= 0)
) STRICT;

CREATE TABLE journey_snapshots (
    tenant     TEXT NOT NULL,
    journey_id BLOB NOT NULL,
    snapshot   BLOB NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (tenant, journey_id)
) STRICT;
