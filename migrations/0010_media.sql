-- Media (issue 5): resumable uploads, stored media and legal holds.
-- Times are epoch milliseconds; ids are server-made UUIDs, so no client text ever
-- names a file (staging files are named by upload id, blobs by content hash).

-- An upload in progress (or finished: kept so `complete` stays idempotent).
-- The server owns `upload_offset`: it moves only after the bytes are fsynced.
CREATE TABLE media_uploads (
    id            UUID   PRIMARY KEY,
    tenant        TEXT   NOT NULL,
    media_id      UUID   NOT NULL,
    -- photo, video, signature or thumbnail (the device's thumbnail of media_id).
    kind          TEXT   NOT NULL,
    journey_id    UUID   NOT NULL,
    content_type  TEXT   NOT NULL,
    size          BIGINT NOT NULL,
    sha256        TEXT   NOT NULL,
    upload_offset BIGINT NOT NULL,
    -- open, complete or failed.
    status        TEXT   NOT NULL,
    user_id       UUID   NOT NULL,
    device_id     UUID   NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX media_uploads_item ON media_uploads (tenant, media_id, kind);
CREATE INDEX media_uploads_updated ON media_uploads (status, updated_at);

-- A stored media item. The row outlives its bytes: a tombstone (`deleted_at`)
-- keeps them, a purge past retention (`purged_at`) deletes the original only.
CREATE TABLE media (
    tenant       TEXT    NOT NULL,
    media_id     UUID    NOT NULL,
    kind         TEXT    NOT NULL,
    journey_id   UUID    NOT NULL,
    content_type TEXT    NOT NULL,
    sha256       TEXT    NOT NULL,
    size         BIGINT  NOT NULL,
    width        INTEGER,
    height       INTEGER,
    blob_key     TEXT    NOT NULL,
    thumb_key    TEXT,
    thumb_size   BIGINT,
    user_id      UUID    NOT NULL,
    device_id    UUID    NOT NULL,
    created_at   BIGINT  NOT NULL,
    deleted_at   BIGINT,
    deleted_by   UUID,
    purged_at    BIGINT,
    PRIMARY KEY (tenant, media_id, kind)
);
CREATE INDEX media_journey ON media (tenant, journey_id);
CREATE INDEX media_blob ON media (tenant, blob_key);

-- A journey's legal hold: while `hold`, none of its originals is ever purged.
CREATE TABLE journey_holds (
    tenant     TEXT    NOT NULL,
    journey_id UUID    NOT NULL,
    hold       BOOLEAN NOT NULL,
    set_at     BIGINT  NOT NULL,
    set_by     UUID,
    PRIMARY KEY (tenant, journey_id)
);
