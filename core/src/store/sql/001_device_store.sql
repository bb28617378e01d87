-- Version 1: journey documents, the outbox, the journey list and the GPS buffer.
-- Never edit a released migration: add a new file and a line in migrations.rs.

-- Device-wide settings (device id, …).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- Every automerge actor id this store has written with: a fresh one per open,
-- because a reused actor id on two copies of a document forks its history.
CREATE TABLE actors (
    actor     BLOB PRIMARY KEY,
    opened_at INTEGER NOT NULL
) STRICT;

-- Locations the device knows; a location's timezone decides which day is "today".
CREATE TABLE locations (
    id        TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    timezone  TEXT NOT NULL
) STRICT;

-- One row per journey document. `snapshot` is the last compaction (NULL until the
-- first); the document is the snapshot plus every row of doc_changes.
CREATE TABLE documents (
    journey_id   TEXT PRIMARY KEY,
    snapshot     BLOB,
    compacted_at INTEGER
) STRICT;

-- Changes not yet folded into the snapshot: local ones and those received.
-- Rows are deleted only in the same transaction that writes a snapshot containing them.
CREATE TABLE doc_changes (
    journey_id TEXT NOT NULL REFERENCES documents (journey_id),
    hash       BLOB NOT NULL,
    bytes      BLOB NOT NULL,
    PRIMARY KEY (journey_id, hash)
) STRICT;

-- Local changes no server has acknowledged yet, in commit order, with their author.
-- A row leaves only when a server acknowledges that the change is durable there.
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    journey_id TEXT NOT NULL REFERENCES documents (journey_id),
    hash       BLOB NOT NULL UNIQUE,
    bytes      BLOB NOT NULL,
    user_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX outbox_by_journey ON outbox (journey_id);

-- The journey list, kept in step with each document so listing a day never loads one.
CREATE TABLE journey_summary (
    journey_id      TEXT PRIMARY KEY REFERENCES documents (journey_id),
    client_id       TEXT NOT NULL,
    location_id     TEXT NOT NULL,
    local_date      TEXT NOT NULL,
    stage           TEXT NOT NULL,
    truck_number    TEXT,
    crew            TEXT NOT NULL,
    entry_count     INTEGER NOT NULL,
    photo_count     INTEGER NOT NULL,
    signature_count INTEGER NOT NULL,
    note_count      INTEGER NOT NULL,
    gps_point_count INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX journey_summary_by_day ON journey_summary (location_id, local_date);

-- GPS fixes recorded but not yet folded into a batch in their journey's document,
-- with who recorded them: the batch is committed in that user's name, whoever is
-- signed in when it is folded.
CREATE TABLE gps_pending (
    id         INTEGER PRIMARY KEY,
    journey_id TEXT NOT NULL REFERENCES documents (journey_id),
    user_id    TEXT NOT NULL,
    role       TEXT NOT NULL,
    point      BLOB NOT NULL
) STRICT;
CREATE INDEX gps_pending_by_journey ON gps_pending (journey_id, user_id);
