-- Fieldsync server schema, step 4 (PostgreSQL): signing-key rotation and the
-- download window of dated records.
--
-- A retired signing key no longer verifies tokens; the newest key not retired
-- signs. Keys are never deleted, so the audit of who held which key stays.
ALTER TABLE signing_keys ADD COLUMN retired_at BIGINT;

-- A record's date for the download window (ms since the epoch): its planned or
-- scheduled start, else its parent's, else when the server first stored it.
-- `anchor_seq` is the log position at which the anchor last changed, so a pull
-- can tell a record rescheduled into the window from one the device holds.
ALTER TABLE records ADD COLUMN anchor_ms BIGINT;
ALTER TABLE records ADD COLUMN anchor_seq BIGINT NOT NULL DEFAULT 0;
UPDATE records SET anchor_ms = COALESCE(start_ms, created_at * 1000), anchor_seq = created_seq;
CREATE INDEX records_anchor ON records (org_id, kind, anchor_ms);
