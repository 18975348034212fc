-- Fieldsync server schema, step 10 (PostgreSQL): an upload belongs to the device
-- that started it (issue #16).
--
-- Before this step an upload was one row per file per organisation, and
-- knowing a file's SHA-256 was enough to join someone else's upload, learn
-- the file's size, or have a complete file attached to one's own record and
-- download it. Now:
--
-- - `attachments` holds complete files only (verified against their hash).
-- - `attachment_uploads` is an upload session: one per file and device. Its
--   chunks (`attachment_upload_chunks`, and in the blob store under the
--   device's own prefix) are its own; another device's chunks never mix in.
-- - `attachment_upload_records` lists the records the session's device
--   attached the file to; they are linked (`attachment_records`) only when
--   the session's own chunks assemble into the verified file: a record is
--   linked to a file only by a device that proved it holds the bytes, or by a
--   caller who can already read a record that has it.
--
-- Uploads in progress at the upgrade are dropped: devices declare them again
-- and upload from the first chunk (their old parts are removed with the file
-- prefix by a later cleanup, or stay as unreferenced objects).
DELETE FROM attachments WHERE state <> 'complete';
DROP TABLE attachment_chunks;
DROP INDEX attachments_uploading;

CREATE TABLE attachment_uploads (
    org_id       UUID NOT NULL REFERENCES organisations (id),
    sha256       TEXT NOT NULL,
    device_id    UUID NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('photo', 'signature', 'document')),
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    chunk_size   BIGINT NOT NULL,
    created_by   UUID NOT NULL,
    created_at   BIGINT NOT NULL,
    touched_at   BIGINT NOT NULL,
    PRIMARY KEY (org_id, sha256, device_id)
);
CREATE INDEX attachment_uploads_touched ON attachment_uploads (touched_at);

CREATE TABLE attachment_upload_chunks (
    org_id    UUID NOT NULL,
    sha256    TEXT NOT NULL,
    device_id UUID NOT NULL,
    idx       BIGINT NOT NULL,
    size      BIGINT NOT NULL,
    stored_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, sha256, device_id, idx),
    FOREIGN KEY (org_id, sha256, device_id)
        REFERENCES attachment_uploads (org_id, sha256, device_id) ON DELETE CASCADE
);

CREATE TABLE attachment_upload_records (
    org_id    UUID NOT NULL,
    sha256    TEXT NOT NULL,
    device_id UUID NOT NULL,
    record_id UUID NOT NULL REFERENCES records (id),
    linked_by UUID NOT NULL,
    PRIMARY KEY (org_id, sha256, device_id, record_id),
    FOREIGN KEY (org_id, sha256, device_id)
        REFERENCES attachment_uploads (org_id, sha256, device_id) ON DELETE CASCADE
);
