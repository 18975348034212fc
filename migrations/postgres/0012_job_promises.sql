-- Fieldsync server schema, step 12 (PostgreSQL): the promised arrival window and
-- the first arrival of service jobs in the dashboard's facts (broken promises:
-- a first arrival outside the window agreed with the customer, docs/kpis.md).
--
-- The jobs' fact rows are dropped so that the server, when it starts, fills
-- them again from the documents with the new columns (the same filling that
-- gave older records their rows when the table was made).
ALTER TABLE record_facts ADD COLUMN window_start_ms BIGINT;
ALTER TABLE record_facts ADD COLUMN first_arrived_ms BIGINT;
DELETE FROM record_facts WHERE kind = 'service_job';
