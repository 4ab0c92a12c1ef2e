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

CREATE OR REPLACE FUNCTION pg_temp.month_partitions(parent text, months date[], bound text, storage text)
    RETURNS void LANGUAGE plpgsql AS $$
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

-- quarter_visitors: the same rows, one partition per month of quarters.
ALTER TABLE quarter_visitors RENAME TO quarter_visitors_0090;
ALTER INDEX quarter_visitors_pkey RENAME TO quarter_visitors_0090_pkey;
DROP INDEX quarter_visitors_campaign_idx;
DROP INDEX quarter_visitors_org_idx;
CREATE TABLE quarter_visitors (
    link_id       bigint      NOT NULL,
    quarter       timestamptz NOT NULL,
    visitor_id    text        COLLATE "C" NOT NULL,
    channel       text        NOT NULL,
    org_id        bigint      NOT NULL,
    campaign_id   bigint,
    campaign_kind text,
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
    link_id      bigint      NOT NULL,
    recipient_id text        NOT NULL,
    month        date        NOT NULL,
    campaign_id  bigint,
    clicks       bigint      NOT NULL DEFAULT 0,
    bot_clicks   bigint      NOT NULL DEFAULT 0,
    after_expiry bigint      NOT NULL DEFAULT 0,
    first_click  timestamptz,
    last_click   timestamptz,
    PRIMARY KEY (link_id, recipient_id, month)
) PARTITION BY RANGE (month);
CREATE INDEX recipient_clicks_campaign_idx ON recipient_clicks (campaign_id, recipient_id);
CREATE TEMPORARY TABLE recipient_months ON COMMIT DROP AS
SELECT r.*, date_trunc('month', coalesce(r.last_click, now()) AT TIME ZONE 'UTC')::date AS m
FROM recipient_clicks_0090 r;
SELECT pg_temp.month_partitions('recipient_clicks', pg_temp.months_with(ARRAY(
    SELECT DISTINCT m FROM recipient_months)), 'date', 'WITH (fillfactor = 70)');
INSERT INTO recipient_clicks (link_id, recipient_id, month, campaign_id, clicks, bot_clicks,
                              after_expiry, first_click, last_click)
SELECT link_id, recipient_id, m, campaign_id, clicks, bot_clicks, after_expiry, first_click,
       last_click
FROM recipient_months;
DROP TABLE recipient_clicks_0090;

-- link_visitors and campaign_visitors: a row stored before goes to the epoch of the visitor's
-- last human click on the scope (quarter_visitors knows it), or of its first_seen.
ALTER TABLE link_visitors RENAME TO link_visitors_0090;
ALTER INDEX link_visitors_pkey RENAME TO link_visitors_0090_pkey;
CREATE TABLE link_visitors (
    epoch      date        NOT NULL,
    link_id    bigint      NOT NULL,
    visitor_id text        COLLATE "C" NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    first_day  date,
    PRIMARY KEY (link_id, visitor_id, epoch)
) PARTITION BY RANGE (epoch);
CREATE TEMPORARY TABLE link_epochs ON COMMIT DROP AS
SELECT o.link_id, o.visitor_id, o.first_seen, o.first_day,
       date_trunc('month', greatest(o.first_seen, q.last) AT TIME ZONE 'UTC')::date AS epoch
FROM link_visitors_0090 o
LEFT JOIN (SELECT link_id, visitor_id, max(quarter) AS last FROM quarter_visitors GROUP BY 1, 2) q
    USING (link_id, visitor_id);
SELECT pg_temp.month_partitions('link_visitors', pg_temp.months_with(ARRAY(
    SELECT DISTINCT epoch FROM link_epochs)), 'date', '');
INSERT INTO link_visitors (epoch, link_id, visitor_id, first_seen, first_day)
SELECT epoch, link_id, visitor_id, first_seen, first_day FROM link_epochs;
DROP TABLE link_visitors_0090;

ALTER TABLE campaign_visitors RENAME TO campaign_visitors_0090;
ALTER INDEX campaign_visitors_pkey RENAME TO campaign_visitors_0090_pkey;
CREATE TABLE campaign_visitors (
    epoch       date        NOT NULL,
    campaign_id bigint      NOT NULL,
    visitor_id  text        COLLATE "C" NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    first_day   date,
    PRIMARY KEY (campaign_id, visitor_id, epoch)
) PARTITION BY RANGE (epoch);
CREATE TEMPORARY TABLE campaign_epochs ON COMMIT DROP AS
SELECT o.campaign_id, o.visitor_id, o.first_seen, o.first_day,
       date_trunc('month', greatest(o.first_seen, q.last) AT TIME ZONE 'UTC')::date AS epoch
FROM campaign_visitors_0090 o
LEFT JOIN (SELECT campaign_id, visitor_id, max(quarter) AS last FROM quarter_visitors
           WHERE campaign_id IS NOT NULL GROUP BY 1, 2) q
    USING (campaign_id, visitor_id);
SELECT pg_temp.month_partitions('campaign_visitors', pg_temp.months_with(ARRAY(
    SELECT DISTINCT epoch FROM campaign_epochs)), 'date', '');
INSERT INTO campaign_visitors (epoch, campaign_id, visitor_id, first_seen, first_day)
SELECT epoch, campaign_id, visitor_id, first_seen, first_day FROM campaign_epochs;
DROP TABLE campaign_visitors_0090;

-- The epoch is at least the newest month a row was placed in.
UPDATE visitor_epoch SET month = greatest(month, (SELECT max(epoch) FROM link_visitors),
                                                 (SELECT max(epoch) FROM campaign_visitors));

-- A visitor row the counting statement conflicted with but cannot see (a concurrent batch
-- committed it after the statement began): its first day, from a fresh snapshot. A visitor may now
-- have a row in several epochs, all with its first day; '-infinity' stands for a row from before
-- migration 0013.
CREATE OR REPLACE FUNCTION visitor_first_day(scope "char", scope_id bigint, visitor text)
    RETURNS date LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    found date;
    n bigint;
BEGIN
    IF scope = 'l' THEN
        SELECT min(coalesce(v.first_day, '-infinity')), count(*) INTO found, n FROM link_visitors v
        WHERE v.link_id = scope_id AND v.visitor_id = visitor;
    ELSE
        SELECT min(coalesce(v.first_day, '-infinity')), count(*) INTO found, n
        FROM campaign_visitors v
        WHERE v.campaign_id = scope_id AND v.visitor_id = visitor;
    END IF;
    IF n = 0 THEN
        RAISE EXCEPTION 'visitor row of % % not found; count the batch again', scope, scope_id
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN found;
END
$$;
