-- Fieldsync server schema, step 21 (PostgreSQL): the push path's rows go in
-- without a foreign-key check per row (docs/benchmarks.md, "The push path,
-- tenth round").
--
-- Every read-scope row and every facts row is written by the push that
-- writes its record, in the same transaction and after it, or names a
-- record the push has just read; records are never deleted (a deleted record
-- is a tombstone, `records.deleted`). The checks could not fail, and each
-- cost PostgreSQL a trigger and a lookup of `records` per row: more than
-- half of the time it took to insert a scope row (3 per new record) and a
-- sixth of a seeding push's write. SQLite keeps its checks (it drops a
-- constraint only by rebuilding the table).
ALTER TABLE record_scope DROP CONSTRAINT record_scope_record_id_fkey;
ALTER TABLE record_facts DROP CONSTRAINT record_facts_record_id_fkey;
