-- Version 2: what the sync engine and the media queue keep between runs.

-- Per server: the change-log cursor and the outcome of the last attempt.
CREATE TABLE sync_peers (
    peer         TEXT PRIMARY KEY,
    cursor       INTEGER NOT NULL DEFAULT 0,
    last_success INTEGER,
    last_error   TEXT
) STRICT;

-- Per server and journey: the heads both sides are known to share (automerge repair).
CREATE TABLE sync_state (
    peer         TEXT NOT NULL,
    journey_id   TEXT NOT NULL,
    shared_heads BLOB NOT NULL,
    PRIMARY KEY (peer, journey_id)
) STRICT;

-- Photos, videos and signatures waiting to upload. `lane` orders the queue
-- (signatures, then metadata and thumbnails, then originals smallest first).
CREATE TABLE media_queue (
    id             TEXT PRIMARY KEY,
    journey_id     TEXT NOT NULL REFERENCES documents (journey_id),
    kind           TEXT NOT NULL,
    lane           INTEGER NOT NULL,
    path           TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    size           INTEGER NOT NULL,
    state          TEXT NOT NULL DEFAULT 'pending',
    wifi_only      INTEGER NOT NULL DEFAULT 0,
    uploaded_bytes INTEGER NOT NULL DEFAULT 0,
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    created_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX media_queue_order ON media_queue (state, lane, size);
