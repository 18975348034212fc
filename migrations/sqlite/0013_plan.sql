-- Planned visits by start time across organisations: the server's periodic
-- pass that marks visits nobody started as missed reads them oldest first.
CREATE INDEX records_kind_status_start ON records (kind, status, start_ms);
