-- Fieldsync server schema, step 8 (PostgreSQL): the managers' figures, the fleet's
-- sync health and the queue of conflicts the merge could not decide.
--
-- `record_facts` is a projection of the figures the team dashboard needs, one
-- row per visit, order and service job, rewritten by every push in the same
-- transaction as the record (and filled for older records at start), so the
-- dashboard never opens documents. Facts and conflicts are derived from their
-- record and go with it (ON DELETE CASCADE). Times are device times (ms since the epoch,
-- UTC); `day` is the UTC date the record counts on (`YYYY-MM-DD`): a visit's
-- planned start (its check-in when ad hoc), an order's submission (its
-- creation while a draft), a job's creation. docs/kpis.md defines each figure.
CREATE TABLE record_facts (
    record_id        UUID PRIMARY KEY REFERENCES records (id) ON DELETE CASCADE,
    org_id           UUID NOT NULL,
    kind             TEXT NOT NULL,
    owner_id         UUID,
    team_id          UUID,
    status           TEXT,
    deleted          BOOLEAN NOT NULL DEFAULT FALSE,
    day              TEXT,
    account_id       UUID,
    visit_id         UUID,
    planned          BOOLEAN,
    planned_start_ms BIGINT,
    check_in_ms      BIGINT,
    check_out_ms     BIGINT,
    check_in_verdict TEXT,
    outcome          TEXT,
    currency         TEXT,
    net_minor        BIGINT,
    total_minor      BIGINT,
    created_ms       BIGINT,
    completed_ms     BIGINT,
    sla_due_ms       BIGINT,
    window_end_ms    BIGINT,
    first_time_fix   BOOLEAN
);
CREATE INDEX record_facts_day ON record_facts (org_id, kind, day);
CREATE INDEX record_facts_visit ON record_facts (visit_id);

-- Per device: its last sync (server time, Unix seconds) and the figures it
-- reported with it (docs/protocol.md, "Device health"). Devices that predate
-- the figures have only `last_sync_at`.
CREATE TABLE device_health (
    device_id                UUID PRIMARY KEY REFERENCES devices (id),
    org_id                   UUID NOT NULL,
    user_id                  UUID NOT NULL,
    last_sync_at             BIGINT NOT NULL,
    reported_at              BIGINT,
    unsynced_changes         BIGINT NOT NULL DEFAULT 0,
    oldest_unsynced_ms       BIGINT,
    pending_attachment_bytes BIGINT NOT NULL DEFAULT 0,
    app_version              TEXT
);
CREATE INDEX device_health_org ON device_health (org_id, last_sync_at);

-- Semantic clashes the merge kept for a manager: a record whose status holds
-- concurrent values (a job completed offline while cancelled in the office).
-- One row per record; a resolution (written through the push path) closes it,
-- a later clash on the same record opens it again. The evidence (both values,
-- who wrote them, the status history) is read from the record itself.
CREATE TABLE conflicts (
    record_id    UUID PRIMARY KEY REFERENCES records (id) ON DELETE CASCADE,
    org_id       UUID NOT NULL,
    kind         TEXT NOT NULL,
    path         TEXT NOT NULL,
    detected_at  BIGINT NOT NULL,
    detected_seq BIGINT NOT NULL,
    user_id      UUID,
    device_id    UUID,
    resolved_at  BIGINT,
    resolved_by  UUID,
    resolution   TEXT
);
CREATE INDEX conflicts_org ON conflicts (org_id, resolved_at);
