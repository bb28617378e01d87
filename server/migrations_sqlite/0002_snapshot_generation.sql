-- As /migrations/0003: compaction replaces a snapshot only at the generation it read.
ALTER TABLE journey_snapshots ADD COLUMN generation INTEGER NOT NULL DEFAULT 1 CHECK (generation > 0);
