-- The counter's tables by dimension (link, campaign, channel, hour, day; human apart from bot),
-- and event ids partitioned by day so that retention drops whole partitions.
--
-- Read by the reports API:
--   hourly_counters   one row per (link, UTC hour, channel): clicks, new visitors, bot hits
--   daily_counters    one row per (link or campaign, UTC day): clicks, that day's uniques, bots
--   link_counters     all-time per link (from 0001), campaign_counters all-time per campaign
-- "unique" is always "distinct human visitors" of the scope (all time, or that day); an hourly
-- row's unique_clicks counts the link's visitors whose first counted click fell in that hour
-- (the earliest hour of the batch that first met them), so the hours of a link
-- sum to its all-time unique count.

-- Event ids, partitioned by the UTC day the click happened (occurred_at). A redelivered event
-- carries the same occurred_at, so it lands in the same partition and conflicts there. The
-- partitions are created ahead of time and dropped after the retention window by the counter
-- (services/counter/retention.py); never DELETE from it.
ALTER TABLE processed_events RENAME TO processed_events_0001;
CREATE TABLE processed_events (
    event_day    date        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_day, event_id)
) PARTITION BY RANGE (event_day);

-- Who was seen on which day, for the daily uniques; scope 'l' is a link, 'c' a campaign.
-- Partitioned and pruned like processed_events.
CREATE TABLE daily_visitors (
    day        date   NOT NULL,
    scope      "char" NOT NULL CHECK (scope IN ('l', 'c')),
    scope_id   bigint NOT NULL,
    visitor_id text   COLLATE "C" NOT NULL,
    PRIMARY KEY (day, scope, scope_id, visitor_id)
) PARTITION BY RANGE (day);

-- Ids already counted before this migration keep deduplicating: each goes to the partition of
-- the UTC day it was processed on (the closest to its event day we know).
DO $$
DECLARE
    d date;
BEGIN
    FOR d IN
        SELECT DISTINCT (processed_at AT TIME ZONE 'UTC')::date FROM processed_events_0001
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF processed_events FOR VALUES FROM (%L) TO (%L)',
            'processed_events_p' || to_char(d, 'YYYYMMDD'), d, d + 1
        );
    END LOOP;
END
$$;
INSERT INTO processed_events (event_day, event_id, processed_at)
SELECT (processed_at AT TIME ZONE 'UTC')::date, event_id, processed_at FROM processed_events_0001;
DROP TABLE processed_events_0001;

-- Distinct human visitors per campaign, all time: a row inserted is a campaign unique click.
CREATE TABLE campaign_visitors (
    campaign_id bigint      NOT NULL,
    visitor_id  text        COLLATE "C" NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, visitor_id)
);

CREATE TABLE campaign_counters (
    campaign_id   bigint      PRIMARY KEY,
    org_id        bigint      NOT NULL,
    total_clicks  bigint      NOT NULL DEFAULT 0,
    unique_clicks bigint      NOT NULL DEFAULT 0,
    bot_clicks    bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaign_counters_org_idx ON campaign_counters (org_id);

CREATE TABLE daily_counters (
    scope         text        NOT NULL CHECK (scope IN ('link', 'campaign')),
    scope_id      bigint      NOT NULL,
    day           date        NOT NULL,
    total_clicks  bigint      NOT NULL DEFAULT 0,
    unique_clicks bigint      NOT NULL DEFAULT 0,
    bot_clicks    bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, scope_id, day)
);
CREATE INDEX daily_counters_day_idx ON daily_counters (day);

CREATE TABLE hourly_counters (
    link_id       bigint      NOT NULL,
    hour          timestamptz NOT NULL,
    channel       text        NOT NULL,
    org_id        bigint      NOT NULL,
    campaign_id   bigint,
    campaign_kind text,
    total_clicks  bigint      NOT NULL DEFAULT 0,
    unique_clicks bigint      NOT NULL DEFAULT 0,
    bot_clicks    bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (link_id, hour, channel)
);
CREATE INDEX hourly_counters_campaign_idx ON hourly_counters (campaign_id, hour);
CREATE INDEX hourly_counters_org_idx ON hourly_counters (org_id, hour);

-- Visitor ids are opaque: byte order ("C") makes their index entries cheaper to compare than
-- the database's linguistic collation, and every click inserts a few of them.
ALTER TABLE link_visitors ALTER COLUMN visitor_id TYPE text COLLATE "C";

ALTER TABLE link_counters ADD COLUMN org_id bigint, ADD COLUMN campaign_id bigint;

-- The first offset of the last batch stored per partition: after a crash the counter re-reads
-- from there, so the batch whose Redis write may not have happened is written again.
ALTER TABLE consumer_offsets ADD COLUMN replay_from bigint;
