-- Version 4: the media upload queue as capture and the uploader use it. Replaces
-- version 2's media_queue, which nothing ever wrote.

DROP TABLE media_queue;

-- One row per file to upload: a photo's original and its thumbnail are two rows,
-- a signature's PNG one, a video's file one. A row exists only once its file is
-- complete, fsynced and renamed into the media directory (`media::files`), and is
-- written in the same transaction as the journey change that records its MediaRef.
-- `path` is the file's name inside the media directory (app containers move).
-- `change_hash` is that change: the item waits while the change is still in the
-- outbox, so the server always holds the entry before the bytes.
-- Order (`media::queue`): lane (0 signatures, 1 thumbnails, 2 originals), then size
-- for originals (smallest first), then capture order.
CREATE TABLE media_queue (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    media_id        TEXT    NOT NULL,
    journey_id      TEXT    NOT NULL REFERENCES documents (journey_id),
    kind            TEXT    NOT NULL CHECK (kind IN ('photo', 'video', 'signature', 'thumbnail')),
    lane            INTEGER NOT NULL,
    content_type    TEXT    NOT NULL,
    path            TEXT    NOT NULL UNIQUE,
    sha256          TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    change_hash     BLOB,
    state           TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (state IN ('pending', 'done', 'set_aside')),
    wifi_only       INTEGER NOT NULL DEFAULT 0 CHECK (wifi_only IN (0, 1)),
    uploaded_bytes  INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    done_at         INTEGER
) STRICT;
CREATE INDEX media_queue_next ON media_queue (state, lane, size, seq);
CREATE INDEX media_queue_by_journey ON media_queue (journey_id, state);
