-- Optimistic concurrency for compaction: a snapshot is replaced only by a
-- compaction that read the generation it replaces, so two servers compacting the
-- same journey can never put back an older snapshot over folded changes.
ALTER TABLE journey_snapshots ADD COLUMN generation BIGINT NOT NULL DEFAULT 1 CHECK (generation > 0);
