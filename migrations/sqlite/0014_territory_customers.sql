-- Everyone in a territory reads its customers (accounts and contacts), as they
-- already read its catalogue: the server now grants `r:<territory>` to those
-- records on every write, and this gives the records stored before it the same
-- principal. The grant is dated just past the organisation's last change, like
-- any grant made now: a device's first pull beyond it (after the next change in
-- the organisation) brings these records' whole history, and a device primed
-- later receives them in its priming.
INSERT INTO record_scope (record_id, principal, granted_seq)
SELECT r.id, 'r:' || r.territory_id,
       (SELECT COALESCE(MAX(c.seq), 0) + 1 FROM change_log c WHERE c.org_id = r.org_id)
FROM records r
WHERE r.kind IN ('account', 'contact') AND r.territory_id IS NOT NULL
ON CONFLICT (record_id, principal) DO NOTHING;
