-- Operational records: alert incidents and instance heartbeats, written with compare-and-set.
CREATE TABLE ops_records (
    key TEXT PRIMARY KEY, version BIGINT NOT NULL, body TEXT NOT NULL, updated_at BIGINT NOT NULL);
