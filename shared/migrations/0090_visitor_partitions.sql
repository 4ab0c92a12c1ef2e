-- Per-person data kept for VISITOR_RETENTION_DAYS only, and removed in whole partitions, never
-- row by row (issue 18, part 3; docs/retention.md). The tables that hold a visitor id or a
-- recipient id are partitioned by UTC month; `retention.maintain` (the counter, every hour, and
-- `clicktrack retention run`) creates the months ahead and drops a month once all of it is older
-- than the period. The counters (quarter_counters, daily_counters, link_counters,
-- campaign_counters) hold no person and are never touched: aggregate counts stay.
--
--   quarter_visitors   by `quarter` (the click's quarter hour): who was seen where and when
--   recipient_clicks   by `month` (new: the UTC month of the clicks a row adds up): one row per
--                      (link, recipient, month) instead of per (link, recipient)
--   link_visitors,     by `epoch` (new): the month the row was written in. A visitor of a link or
--   campaign_visitors  campaign is known while it has a row in any kept month; the counter writes
--                      rows of the current epoch only, and a known visitor seen in a new epoch
--                      gets a row there too (carrying its first day), so a visitor who clicked
--                      within the period is never counted as new again.
-- (daily_visitors and processed_events already drop days after DEDUP_RETENTION_DAYS.)
--
-- The epoch, not the click's month, decides where an all-time visitor row goes, because uniqueness
-- across partitions cannot be a constraint: a partitioned table's unique keys must include its
-- partition key. All counting transactions of one epoch write one partition, where ON CONFLICT
-- decides exactly as before; the epoch only changes under a lock that waits for the counting
-- transactions in flight (visitor_epoch(), below), so every later batch sees all they wrote.
--
-- No table keeps a raw user agent or referrer: they are on the topic only (its retention); the
-- counter keeps the kind of a bot's reason as counts (quarter_counters.bots_*), and
-- tests/integration/test_retention.py fails if a column for either appears.

CREATE OR REPLACE FUNCTION pg_temp.month_partitions(
    parent text, months date[], bound text, storage text
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    m date;
BEGIN
    FOREACH m IN ARRAY months LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L) %s',
            parent || '_m' || to_char(m, 'YYYYMM'), parent,
            CASE bound WHEN 'date' THEN m::text ELSE (m::timestamp AT TIME ZONE 'UTC')::text END,
            CASE bound WHEN 'date' THEN (m + interval '1 month')::date::text
                 ELSE ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC')::text END,
            storage
        );
    END LOOP;
END
$$;

-- this month and the next, besides the months of the rows already stored
CREATE OR REPLACE FUNCTION pg_temp.months_with(found date[]) RETURNS date[] LANGUAGE sql AS $$
    SELECT array_agg(DISTINCT m ORDER BY m) FROM (
        SELECT unnest(found) AS m
        UNION SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date
        UNION SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month')::date
    ) s WHERE m IS NOT NULL
$$;

-- The counter's epoch for link_visitors and campaign_visitors: the first day of a UTC month.
CREATE TABLE visitor_epoch (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    month date    NOT NULL CHECK (extract(day FROM month) = 1)
);
INSERT INTO visitor_epoch (month) VALUES (date_trunc('month', now() AT TIME ZONE 'UTC')::date);

-- Called first in each counting transaction, as a statement of its own (so the counting statement
-- after it takes its snapshot once the lock is held): the epoch to write. SHARE lets counting
-- transactions run together and waits for a switch of epoch (an UPDATE, ROW EXCLUSIVE), which in
-- turn waits for every counting transaction in flight.
CREATE FUNCTION visitor_epoch() RETURNS date LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    LOCK TABLE visitor_epoch IN SHARE MODE;
    RETURN (SELECT month FROM visitor_epoch);
END
$$;

-- quarter_visitors: the same rows, one partition per month of quarters. Each table is made LIKE
-- the one it replaces, so that it keeps every column (and its collation) as it stands.
ALTER TABLE quarter_visitors RENAME TO quarter_visitors_0090;
ALTER INDEX quarter_visitors_pkey RENAME TO quarter_visitors_0090_pkey;
DROP INDEX quarter_visitors_campaign_idx;
DROP INDEX quarter_visitors_org_idx;
CREATE TABLE quarter_visitors (
    LIKE quarter_visitors_0090 INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (link_id, quarter, visitor_id)
) PARTITION BY RANGE (quarter);
CREATE INDEX quarter_visitors_campaign_idx ON quarter_visitors (campaign_id, quarter);
CREATE INDEX quarter_visitors_org_idx ON quarter_visitors (org_id, quarter);
SELECT pg_temp.month_partitions('quarter_visitors', pg_temp.months_with(ARRAY(
    SELECT DISTINCT date_trunc('month', quarter AT TIME ZONE 'UTC')::date
    FROM quarter_visitors_0090)), 'timestamptz', '');
INSERT INTO quarter_visitors SELECT * FROM quarter_visitors_0090;
DROP TABLE quarter_visitors_0090;

-- recipient_clicks: a row per month of clicks. A row stored before is placed in the month of its
-- last human click (or, with none, of this migration): it is kept for the period after that.
ALTER TABLE recipient_clicks RENAME TO recipient_clicks_0090;
ALTER INDEX recipient_clicks_pkey RENAME TO recipient_clicks_0090_pkey;
DROP INDEX recipient_clicks_campaign_idx;
CREATE TABLE recipient_clicks (
    LIKE recipient_clicks_0090 INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    month date NOT NULL,
    PRIMARY KEY (link_id, recipient_id, month)
) PARTITION BY RANGE (month);
CREATE INDEX recipient_clicks_campaign_idx ON recipient_clicks (campaign_id, recipient_id);
CREATE TEMPORARY TABLE recipient_months ON COMMIT DROP AS
SELECT r.*, date_trunc('month', coalesce(r.last_click, now()) AT TIME ZONE 'UTC')::date AS month
FROM recipient_clicks_0090 r;
SELECT pg_temp.month_partitions('recipient_clicks', pg_temp.months_with(ARRAY(
    SELECT DISTINCT month FROM recipient_months)), 'date', 'WITH (fillfactor = 70)');
INSERT INTO recipient_clicks SELECT * FROM recipient_months;
DROP TABLE recipient_clicks_0090;

-- link_visitors and campaign_visitors, by epoch: a row stored before goes to the epoch of the
-- visitor's last human click on the scope (quarter_visitors knows it), or of its first_seen.
DO $$
DECLARE
    scope text;
BEGIN
    FOREACH scope IN ARRAY ARRAY['link', 'campaign'] LOOP
        EXECUTE format($sql$
            ALTER TABLE %1$I RENAME TO %2$I;
            ALTER INDEX %3$I RENAME TO %4$I;
            CREATE TABLE %1$I (
                LIKE %2$I INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                epoch date NOT NULL,
                PRIMARY KEY (%5$I, visitor_id, epoch)
            ) PARTITION BY RANGE (epoch);
            CREATE TEMPORARY TABLE visitor_epochs ON COMMIT DROP AS
            SELECT o.*, date_trunc('month', greatest(o.first_seen, q.last) AT TIME ZONE 'UTC')::date
                   AS epoch
            FROM %2$I o
            LEFT JOIN (SELECT %5$I, visitor_id, max(quarter) AS last FROM quarter_visitors
                       WHERE %5$I IS NOT NULL GROUP BY 1, 2) q USING (%5$I, visitor_id);
            SELECT pg_temp.month_partitions(%1$L, pg_temp.months_with(ARRAY(
                SELECT DISTINCT epoch FROM visitor_epochs)), 'date', '');
            INSERT INTO %1$I SELECT * FROM visitor_epochs;
            DROP TABLE visitor_epochs;
            DROP TABLE %2$I;
        $sql$, scope || '_visitors', scope || '_visitors_0090', scope || '_visitors_pkey',
            scope || '_visitors_0090_pkey', scope || '_id');
    END LOOP;
END
$$;

-- The epoch is at least the newest month a row was placed in.
UPDATE visitor_epoch SET month = greatest(month, (SELECT max(epoch) FROM link_visitors),
                                                 (SELECT max(epoch) FROM campaign_visitors));

-- visitor_first_day() (0013) stays as it is: a visitor may now have a row in several epochs, and
-- each carries the same first day (the counter copies it into the new epoch's row), so any one of
-- them answers.
