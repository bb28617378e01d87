-- Who has signed in on this device, with the tokens to sync as them. One row per
-- user: on a shared device each user's work syncs under its own credentials.
-- The tokens stay in the app's private storage (this file); a platform keystore
-- can wrap the file's key where the OS offers one.
CREATE TABLE accounts (
    user_id       TEXT    PRIMARY KEY,
    client_id     TEXT    NOT NULL,
    location_id   TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    email         TEXT    NOT NULL,
    session_id    TEXT    NOT NULL,
    access_token  TEXT    NOT NULL,
    refresh_token TEXT    NOT NULL,
    permissions   TEXT    NOT NULL DEFAULT '[]',
    signed_in_at  INTEGER NOT NULL,
    -- Set when the server refused these credentials: sign in again.
    needs_sign_in INTEGER NOT NULL DEFAULT 0 CHECK (needs_sign_in IN (0, 1))
) STRICT;

-- Local changes the server refused, kept visible with its reason (never silently
-- dropped). The journey itself went back to the changes the server accepted.
CREATE TABLE rejected_changes (
    hash        BLOB    PRIMARY KEY,
    journey_id  TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    bytes       BLOB    NOT NULL,
    rejected_at INTEGER NOT NULL
) STRICT;
CREATE INDEX rejected_changes_by_journey ON rejected_changes (journey_id, rejected_at);
