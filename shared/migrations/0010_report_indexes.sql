-- The organisation report sums its links' all-time counters (link_counters.org_id, filled by the
-- counter since 0005): without this index that sum reads every organisation's links.
CREATE INDEX IF NOT EXISTS link_counters_org_idx ON link_counters (org_id);
