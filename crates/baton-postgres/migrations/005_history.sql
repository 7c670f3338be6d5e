-- The timeline's histories: every landing batch and every completion receipt, the newest few
-- hundred per date (the engine trims them in the transaction that adds one).
CREATE TABLE landing_batches (
    partition TEXT NOT NULL, job TEXT NOT NULL, batch INTEGER NOT NULL, landed_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL, PRIMARY KEY (partition, job, batch));
CREATE TABLE completion_receipts (
    id BIGSERIAL PRIMARY KEY, partition TEXT NOT NULL, gate TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX completion_receipts_date ON completion_receipts (partition, gate, id);
