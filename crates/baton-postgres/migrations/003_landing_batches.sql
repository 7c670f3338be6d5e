-- Every landing batch counts: the latest batch's time and how many batches have landed.
ALTER TABLE landings ADD COLUMN latest_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE landings ADD COLUMN batches INTEGER NOT NULL DEFAULT 1;
UPDATE landings SET latest_at = landed_at;
