-- Signed-in devices (the seed's MobileSession), their refresh tokens, and the
-- token signing key every server on this database shares.

CREATE TABLE server_keys (
    name       TEXT   PRIMARY KEY,
    secret     BYTEA  NOT NULL,
    created_at BIGINT NOT NULL
);

-- One row per sign-in of a user on a device. A revoked session's tokens are dead:
-- sign-out, refresh-token reuse and deactivation revoke it.
CREATE TABLE sessions (
    id                  UUID   PRIMARY KEY,
    tenant              TEXT   NOT NULL,
    user_id             UUID   NOT NULL REFERENCES users (id),
    device_id           UUID   NOT NULL,
    location_id         UUID   NOT NULL,
    created_at          BIGINT NOT NULL,
    last_active         BIGINT NOT NULL,
    sync_status         TEXT   NOT NULL DEFAULT 'online',
    pending_changes     BIGINT NOT NULL DEFAULT 0,
    pending_media_bytes BIGINT NOT NULL DEFAULT 0,
    revoked_at          BIGINT,
    revoked_reason      TEXT
);
CREATE INDEX sessions_user ON sessions (tenant, user_id);
CREATE INDEX sessions_device ON sessions (tenant, device_id);

-- Refresh tokens rotate: each use marks the token used and names its successor.
-- Only SHA-256 hashes are stored. The tokens of one session form its family.
CREATE TABLE refresh_tokens (
    hash       BYTEA  PRIMARY KEY,
    session_id UUID   NOT NULL REFERENCES sessions (id),
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    successor  BYTEA
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
