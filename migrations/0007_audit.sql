-- The audit trail: one hash chain per tenant (see crewsync_core::audit). Every
-- accepted or refused change and every admin action is one entry, numbered 1, 2, 3, …
-- in the tenant's chain, linked to the previous entry and to the previous entry
-- about the same entity, and hashed over all of it. Appended under the tenant's
-- `log_heads` row lock, in the same transaction as what it records, so two writers
-- can never both extend the same entry (and `(tenant, seq)` is unique besides).
CREATE TABLE audit_log (
    tenant           TEXT   NOT NULL,
    seq              BIGINT NOT NULL CHECK (seq > 0),
    location_id      UUID,
    user_id          UUID,
    device_id        UUID,
    action           TEXT   NOT NULL,
    entity           TEXT   NOT NULL,
    entity_id        TEXT   NOT NULL,
    -- JSON text, kept as written (JSONB would reformat it); the hash covers its
    -- canonical encoding, not this text.
    diff             TEXT   NOT NULL,
    server_time      BIGINT NOT NULL,
    device_time      BIGINT,
    prev_hash        BYTEA  NOT NULL,
    entity_prev_hash BYTEA  NOT NULL,
    hash             BYTEA  NOT NULL,
    PRIMARY KEY (tenant, seq)
);

-- A journey's trail, and the latest entry about an entity when appending.
CREATE INDEX audit_log_entity ON audit_log (tenant, entity, entity_id, seq);

-- The chain head, moved in the same transaction as the entries: what the server
-- verifies its stored chain against (a deleted tail no longer reaches it).
ALTER TABLE log_heads
    ADD COLUMN audit_seq  BIGINT NOT NULL DEFAULT 0 CHECK (audit_seq >= 0),
    ADD COLUMN audit_hash BYTEA;
