-- Fieldsync server schema, step 7 (SQLite): upkeep of attachments.
--
-- `touched_at` is the last time an upload moved (declared again, a chunk
-- stored): an upload that has not moved for the configured time is abandoned
-- and removed with its chunks. Rows from before this step count from
-- `created_at`. `thumbnail` is NULL until a photo's thumbnail was made, then
-- `ready` (stored next to the original in the blob store) or `unavailable`
-- (the photo could not be decoded; nobody tries again).
ALTER TABLE attachments ADD COLUMN touched_at INTEGER;
ALTER TABLE attachments ADD COLUMN thumbnail TEXT CHECK (thumbnail IN ('ready', 'unavailable'));
CREATE INDEX attachments_uploading ON attachments (state, created_at);
