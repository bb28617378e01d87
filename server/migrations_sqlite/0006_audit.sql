-- As /migrations/0007_audit.sql, in SQLite's types (UUIDs are 16-byte blobs).
CREATE TABLE audit_log (
    tenant           TEXT    NOT NULL,
    seq              INTEGER NOT NULL CHECK (seq > 0),
    location_id      BLOB,
    user_id          BLOB,
    device_id        BLOB,
    action           TEXT    NOT NULL,
    entity           TEXT    NOT NULL,
    entity_id        TEXT    NOT NULL,
    diff             TEXT    NOT NULL,
    server_time      INTEGER NOT NULL,
    device_time      INTEGER,
    prev_hash        BLOB    NOT NULL,
    entity_prev_hash BLOB    NOT NULL,
    hash             BLOB    NOT NULL,
    PRIMARY KEY (tenant, seq)
) STRICT;

CREATE INDEX audit_log_entity ON audit_log (tenant, entity, entity_id, seq);

ALTER TABLE log_heads ADD COLUMN audit_seq INTEGER NOT NULL DEFAULT 0 CHECK (audit_seq >= 0);
ALTER TABLE log_heads ADD COLUMN audit_hash BLOB;
