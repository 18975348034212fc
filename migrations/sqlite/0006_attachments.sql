-- Fieldsync server schema, step 6 (SQLite): attachments (photos, signatures,
-- documents) uploaded in chunks, resumably.
--
-- An attachment is named by its SHA-256 (64 lowercase hex digits) within an
-- organisation: the same file declared twice in one organisation is stored once.
-- `record_id` is the record it was first declared for; `attachment_records`
-- lists every record it is attached to, and reading any of them allows the
-- download. The bytes live in the blob store (files under the data directory),
-- never in the database. `state` is `uploading` until the chunks were assembled
-- and the whole file's hash checked, then `complete`.
CREATE TABLE attachments (
    org_id         TEXT NOT NULL REFERENCES organisations (id),
    sha256         TEXT NOT NULL,
    record_id      TEXT NOT NULL REFERENCES records (id),
    kind           TEXT NOT NULL CHECK (kind IN ('photo', 'signature', 'document')),
    content_type   TEXT NOT NULL,
    size           INTEGER NOT NULL,
    chunk_size     INTEGER NOT NULL,
    uploaded_bytes INTEGER NOT NULL DEFAULT 0,
    state          TEXT NOT NULL DEFAULT 'uploading' CHECK (state IN ('uploading', 'complete')),
    created_by     TEXT NOT NULL,
    device_id      TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    completed_at   INTEGER,
    PRIMARY KEY (org_id, sha256)
);
CREATE INDEX attachments_record ON attachments (record_id);

-- Which records an attachment is attached to (the first one included).
CREATE TABLE attachment_records (
    org_id    TEXT NOT NULL,
    sha256    TEXT NOT NULL,
    record_id TEXT NOT NULL REFERENCES records (id),
    linked_by TEXT NOT NULL,
    linked_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, sha256, record_id),
    FOREIGN KEY (org_id, sha256) REFERENCES attachments (org_id, sha256) ON DELETE CASCADE
);
CREATE INDEX attachment_records_record ON attachment_records (record_id);

-- The chunks of an upload in progress that the blob store holds, each checked
-- against the hash its sender gave. Emptied when the upload completes or fails.
CREATE TABLE attachment_chunks (
    org_id    TEXT NOT NULL,
    sha256    TEXT NOT NULL,
    idx       INTEGER NOT NULL,
    size      INTEGER NOT NULL,
    stored_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, sha256, idx),
    FOREIGN KEY (org_id, sha256) REFERENCES attachments (org_id, sha256) ON DELETE CASCADE
);
