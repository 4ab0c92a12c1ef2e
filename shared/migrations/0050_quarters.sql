-- Counts an organisation can read in its own time zone, exactly (docs/counting.md says why).
--
-- 1. Each organisation has a time zone (an IANA name; operators set it): its reports' default.
-- 2. The counters per (link, UTC hour, channel) become counters per (link, UTC quarter hour,
--    channel): every real UTC offset is a whole number of quarter hours (India +05:30, Nepal
--    +05:45, Newfoundland -03:30, Chatham +12:45) and so is every DST shift, so every local hour
--    and day of every zone is a whole number of quarters and is summed from them exactly.
--    The table is renamed rather than copied: its rows, indexes, fillfactor and CHECKs stay
--    (the CHECKs keep their old names, which tests/unit/test_campaign_checks.py reads from 0014);
--    an hourly row becomes the row of its hour's first quarter.
-- 3. Taps on an expired link (its fallback or a 410) are counted apart, in after_expiry, never
--    as human clicks; bot hits are kept by reason besides their sum.
-- 4. Uniques are distinct visitors of the period, whatever the period: they cannot be summed
--    from buckets, so quarter_visitors keeps who was seen on which link in which quarter, and a
--    report counts the distinct visitors of its rows. The old unique_clicks column (visitors a
--    link met for the first time in that hour) meant something else and goes.
-- 5. Per recipient (who clicked, who did not): recipient_clicks, one row per (link, recipient).

ALTER TABLE orgs ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';

ALTER TABLE hourly_counters RENAME TO quarter_counters;
ALTER TABLE quarter_counters RENAME COLUMN hour TO quarter;
ALTER TABLE quarter_counters DROP COLUMN unique_clicks;
ALTER TABLE quarter_counters
    ADD COLUMN after_expiry    bigint NOT NULL DEFAULT 0,
    ADD COLUMN bots_user_agent bigint NOT NULL DEFAULT 0,
    ADD COLUMN bots_referrer   bigint NOT NULL DEFAULT 0,
    ADD COLUMN bots_network    bigint NOT NULL DEFAULT 0,
    ADD COLUMN bots_head       bigint NOT NULL DEFAULT 0;
ALTER INDEX hourly_counters_pkey RENAME TO quarter_counters_pkey;
ALTER INDEX hourly_counters_campaign_idx RENAME TO quarter_counters_campaign_idx;
ALTER INDEX hourly_counters_org_idx RENAME TO quarter_counters_org_idx;

-- Human visitors on live links, per (link, UTC quarter hour); a report's unique count is the
-- number of distinct visitor_id among the rows of its scope and period.
CREATE TABLE quarter_visitors (
    link_id       bigint      NOT NULL,
    quarter       timestamptz NOT NULL,
    visitor_id    text        COLLATE "C" NOT NULL,
    channel       text        NOT NULL,
    org_id        bigint      NOT NULL,
    campaign_id   bigint,
    campaign_kind text,
    PRIMARY KEY (link_id, quarter, visitor_id)
);
CREATE INDEX quarter_visitors_campaign_idx ON quarter_visitors (campaign_id, quarter);
CREATE INDEX quarter_visitors_org_idx ON quarter_visitors (org_id, quarter);

-- Visitors counted before this migration: only their first day on a link (or the day a known
-- visitor came back) was kept, not their quarters; each becomes one row at the quarter it was
-- first stored in, or at the UTC midnight of a later day it was seen on. Approximate for those
-- old clicks (and said so in docs/counting.md); exact for every click counted from now on.
INSERT INTO quarter_visitors (link_id, quarter, visitor_id, channel, org_id, campaign_id,
                              campaign_kind)
SELECT v.link_id, to_timestamp(floor(extract(epoch FROM v.first_seen) / 900) * 900),
       v.visitor_id, coalesce(c.channel, 'sms'), l.org_id, l.campaign_id, c.kind
FROM link_visitors v
JOIN links l ON l.id = v.link_id
LEFT JOIN campaigns c ON c.id = l.campaign_id
UNION
SELECT d.scope_id, d.day::timestamp AT TIME ZONE 'UTC', d.visitor_id,
       coalesce(c.channel, 'sms'), l.org_id, l.campaign_id, c.kind
FROM daily_visitors d
JOIN links l ON l.id = d.scope_id
LEFT JOIN campaigns c ON c.id = l.campaign_id
WHERE d.scope = 'l'
ON CONFLICT DO NOTHING;

-- One row per (link, recipient) that got a tap: human clicks on the live link, bot hits, taps
-- after expiry, and the first and last human click. A campaign's clickers are its links' rows
-- grouped by recipient (index by campaign); its non-clickers are the recipients of its codes
-- without a row with clicks > 0. recipient_id keeps the collation of codes.recipient_id, so that
-- both indexes list recipients in one order (the lists are pages in that order).
CREATE TABLE recipient_clicks (
    link_id      bigint      NOT NULL,
    recipient_id text        NOT NULL,
    campaign_id  bigint,
    clicks       bigint      NOT NULL DEFAULT 0,
    bot_clicks   bigint      NOT NULL DEFAULT 0,
    after_expiry bigint      NOT NULL DEFAULT 0,
    first_click  timestamptz,
    last_click   timestamptz,
    PRIMARY KEY (link_id, recipient_id)
) WITH (fillfactor = 70);
CREATE INDEX recipient_clicks_campaign_idx ON recipient_clicks (campaign_id, recipient_id);
