-- Which earlier epochs hold visitor rows of a link or a campaign (docs/retention.md, Epochs).
--
-- A visitor new in the current epoch is looked for in the earlier ones (0090), and a look into
-- each kept epoch's partition costs an index probe: with 13 earlier months, a batch of 5,000
-- new visitors took 0.32-0.39 s (the fastest of 10) against 0.15-0.16 s before 0090
-- (docs/retention.md, Cost). Most links and campaigns of SMS sends are clicked in one or two
-- months, so the counter now reads here first whether an earlier epoch has rows of the scope
-- (usually not) and looks into the earlier partitions only then.
--
-- One row per (scope, scope id, epoch): link and campaign ids and months, no person. The
-- counter adds the current epoch's rows in the transaction that writes visitor rows there;
-- `retention.prune` deletes the rows of the epochs it drops (a small table, not partitioned, so
-- that a scope's epochs are one index probe).
CREATE TABLE visitor_scope_epochs (
    scope    "char" NOT NULL CHECK (scope IN ('l', 'c')),
    scope_id bigint NOT NULL,
    epoch    date   NOT NULL,
    PRIMARY KEY (scope, scope_id, epoch)
);
INSERT INTO visitor_scope_epochs (scope, scope_id, epoch)
SELECT DISTINCT 'l'::"char", link_id, epoch FROM link_visitors
UNION
SELECT DISTINCT 'c'::"char", campaign_id, epoch FROM campaign_visitors;
