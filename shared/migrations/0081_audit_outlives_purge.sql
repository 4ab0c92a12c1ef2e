-- The operators' audit trail outlives the organisations it names: purging an organisation
-- (shared/erasure.py) deletes all of its data, but the record of what operators did for it,
-- the purge included, stays. Its org_id becomes a plain number.
ALTER TABLE operator_audit DROP CONSTRAINT IF EXISTS operator_audit_org_id_fkey;
