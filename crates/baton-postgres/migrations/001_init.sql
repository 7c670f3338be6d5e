-- baton's state store and warehouse bookkeeping on PostgreSQL.
-- Timestamps are microseconds since the Unix epoch (BIGINT), as in the SQLite backend.
CREATE TABLE documents (
    gate TEXT NOT NULL, partition TEXT NOT NULL, version BIGINT NOT NULL,
    completed_count INTEGER NOT NULL, triggered BOOLEAN NOT NULL, body TEXT NOT NULL,
    updated_at BIGINT NOT NULL, PRIMARY KEY (gate, partition));
CREATE TABLE leases (
    processor TEXT NOT NULL, partition TEXT NOT NULL, holder TEXT NOT NULL, token BIGINT NOT NULL,
    renewed_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, released BOOLEAN NOT NULL,
    follow_up BOOLEAN NOT NULL DEFAULT FALSE, PRIMARY KEY (processor, partition));
CREATE TABLE fences (
    processor TEXT NOT NULL, partition TEXT NOT NULL, newest_token BIGINT NOT NULL,
    PRIMARY KEY (processor, partition));
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, processor TEXT NOT NULL, partition TEXT NOT NULL, holder TEXT NOT NULL,
    token BIGINT NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT, status TEXT NOT NULL,
    rows_written BIGINT NOT NULL, duplicates_dropped BIGINT NOT NULL, error TEXT, seq BIGSERIAL);
CREATE INDEX runs_partition ON runs (partition);
CREATE INDEX runs_finished ON runs (finished_at);
CREATE TABLE requests (
    processor TEXT NOT NULL, partition TEXT NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL,
    since BIGINT NOT NULL, PRIMARY KEY (processor, partition));
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY, topic TEXT NOT NULL, message_id TEXT NOT NULL, kind TEXT NOT NULL,
    partition TEXT NOT NULL, payload TEXT NOT NULL, created_at BIGINT NOT NULL, published_at BIGINT,
    claimed_until BIGINT NOT NULL DEFAULT 0);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_partition ON outbox (kind, partition);
CREATE TABLE dead_letters (
    id BIGSERIAL PRIMARY KEY, topic TEXT NOT NULL, message_id TEXT, payload TEXT NOT NULL,
    reason TEXT NOT NULL, recorded_at BIGINT NOT NULL);
CREATE TABLE landings (
    job TEXT NOT NULL, partition TEXT NOT NULL, landed_at BIGINT NOT NULL, PRIMARY KEY (job, partition));
