-- As /migrations/0006 (portable SQL).
-- Pushed changes the server did not accept, kept with the reason: rejected by the
-- write checks, or held for review because the journey was already audited. A
-- rejected change is never silently dropped; a reviewer can read it here.
CREATE TABLE quarantine (
    tenant      TEXT   NOT NULL,
    hash        BYTEA  NOT NULL,
    journey_id  UUID   NOT NULL,
    kind        TEXT   NOT NULL CHECK (kind IN ('rejected', 'after_audit')),
    reason      TEXT   NOT NULL,
    user_id     UUID   NOT NULL,
    device_id   UUID   NOT NULL,
    bytes       BYTEA  NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, hash)
);
CREATE INDEX quarantine_journey ON quarantine (tenant, journey_id, received_at);
