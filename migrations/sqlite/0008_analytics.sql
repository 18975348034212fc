-- Fieldsync server schema, step 8 (SQLite): the managers' figures, the fleet's
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
    record_id        TEXT PRIMARY KEY REFERENCES records (id) ON DELETE CASCADE,
    org_id           TEXT NOT NULL,
    kind             TEXT NOT NULL,
    owner_id         TEXT,
    team_id          TEXT,
    status           TEXT,
    deleted          INTEGER NOT NULL DEFAULT 0,
    day              TEXT,
    account_id       TEXT,
    visit_id         TEXT,
    planned          INTEGER,
    planned_start_ms INTEGER,
    check_in_ms      INTEGER,
    check_out_ms     INTEGER,
    check_in_verdict TEXT,
    outcome          TEXT,
    currency         TEXT,
    net_minor        INTEGER,
    total_minor      INTEGER,
    created_ms       INTEGER,
    completed_ms     INTEGER,
    sla_due_ms       INTEGER,
    window_end_ms    INTEGER,
    first_time_fix   INTEGER
);
CREATE INDEX record_facts_day ON record_facts (org_id, kind, day);
CREATE INDEX record_facts_visit ON record_facts (visit_id);

-- Per device: its last sync (server time, Unix seconds) and the figures it
-- reported with it (docs/protocol.md, "Device health"). Devices that predate
-- the figures have only `last_sync_at`.
CREATE TABLE device_health (
    device_id                TEXT PRIMARY KEY REFERENCES devices (id),
    org_id                   TEXT NOT NULL,
    user_id                  TEXT NOT NULL,
    last_sync_at             INTEGER NOT NULL,
    reported_at              INTEGER,
    unsynced_changes         INTEGER NOT NULL DEFAULT 0,
    oldest_unsynced_ms       INTEGER,
    pending_attachment_bytes INTEGER NOT NULL DEFAULT 0,
    app_version              TEXT
);
CREATE INDEX device_health_org ON device_health (org_id, last_sync_at);

-- Semantic clashes the merge kept for a manager: a record whose status holds
-- concurrent values (a job completed offline while cancelled in the office).
-- One row per record; a resolution (written through the push path) closes it,
-- a later clash on the same record opens it again. The evidence (both values,
-- who wrote them, the status history) is read from the record itself.
CREATE TABLE conflicts (
    record_id    TEXT PRIMARY KEY REFERENCES records (id) ON DELETE CASCADE,
    org_id       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    path         TEXT NOT NULL,
    detected_at  INTEGER NOT NULL,
    detected_seq INTEGER NOT NULL,
    user_id      TEXT,
    device_id    TEXT,
    resolved_at  INTEGER,
    resolved_by  TEXT,
    resolution   TEXT
);
CREATE INDEX conflicts_org ON conflicts (org_id, resolved_at);
