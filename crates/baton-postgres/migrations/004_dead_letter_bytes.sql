-- Dead letters keep their payload's bytes (BYTEA: a payload need not be UTF-8), and have a
-- state: open, replayed or retired, with when and the operator's note.
ALTER TABLE dead_letters ALTER COLUMN payload TYPE BYTEA USING convert_to(payload, 'UTF8');
ALTER TABLE dead_letters ADD COLUMN state TEXT NOT NULL DEFAULT 'open';
ALTER TABLE dead_letters ADD COLUMN settled_at BIGINT;
ALTER TABLE dead_letters ADD COLUMN note TEXT;
CREATE INDEX dead_letters_state ON dead_letters (state, id);
