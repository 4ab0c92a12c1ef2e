"""One Postgres statement per batch (or per share of one): the exactly-once heart of the counter.

The statement runs in a transaction of its own, after `visitor_epoch()` (which month's partition
of the all-time visitor tables it writes, under a lock that an epoch switch waits for: migration
0090). In it we insert the batch's event ids (a conflict
means the event was counted before), insert visitor rows for the new human events (a row inserted
is a unique click: per link, per campaign, per link and day, per campaign and day), record who
was seen on which link in which quarter hour (`quarter_visitors`: the uniques of any period) and
each recipient's clicks (`recipient_clicks`), add the new clicks to the counters of every
dimension (quarter hours with taps after expiry and bots by reason apart: docs/counting.md), and
move the stored offsets forward. Either all of it
commits or none of it does, so a crash at any point leaves counts and offsets in agreement.

A visitor's all-time row (link_visitors, campaign_visitors) keeps the day it was first seen, so a
new visitor is new that day without a daily_visitors row: the daily row is only written for a
known visitor on another day (migration 0013). Unique-index inserts are most of the statement's
cost, and most clicks come from new visitors: this saves two of the five inserts of such a click.

The batch travels once, as one array per column, and Postgres does the tallying: the rows each
step inserted (`RETURNING`) feed the next step inside the statement, so no visitor row comes back
to Python. Every insert reads its rows in one sorted order, so two counters writing the same keys
at once wait for each other instead of deadlocking. The statement returns the new absolute values
of every Redis counter the batch touched, redelivered events included (with a zero delta), so a
batch read again after a crash writes Redis again.

A big batch may be counted as several shares at once (`split_by_campaign`: no two write the same
row), without the offsets, which `offsets.store` stores once all shares committed: every event
is counted in the transaction that records its id, so a batch read again counts only the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from services.counter import offsets as stored_offsets
from services.counter.intake import Click
from shared import events
from shared.counts import Counts


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch changed: the new absolute Redis counters it touched, and tallies."""

    counts: list[Counts]
    counted: int
    duplicates: int


_ADD_COUNTS = (
    "total_clicks = c.total_clicks + EXCLUDED.total_clicks,"
    " unique_clicks = c.unique_clicks + EXCLUDED.unique_clicks,"
    " bot_clicks = c.bot_clicks + EXCLUDED.bot_clicks,"
    " updated_at = now()"
)
"""The SET list of every counter upsert: the batch's deltas added to the stored values."""

PLANNER = {"jit": "off", "plan_cache_mode": "force_custom_plan", "enable_mergejoin": "off"}
"""Planner settings of the counter's connections, each measured on the counting statement:
- no JIT: its cost estimate grows faster than the batch; past about 5,000 records it passes
  jit_above_cost, and at 10,000 compiling took 2.1 s of a 2.3 s statement, for a plan run once;
- a plan made for each batch's arrays: after five runs Postgres may switch to a generic plan,
  made without the arrays' sizes, which ran the statement ten times slower;
- no merge joins: its joins pair a few thousand rows of CTEs whose sizes the planner cannot know;
  hashing them beats sorting them (5-10% of the statement)."""

_BOT_KIND_COLUMNS = [f"bots_{kind}" for kind in events.BOT_KINDS]
"""quarter_counters' columns of bot hits by the kind of their reason (`events.BOT_KINDS`)."""
_BOT_TALLIES = ",\n           ".join(
    f"count(*) FILTER (WHERE fresh AND bot_kind = '{kind}') AS bots_{kind}"
    for kind in events.BOT_KINDS
)


def _added(*columns: str) -> str:
    """SQL of an upsert's SET list that adds each new count to the stored one (the row `c`)."""
    return ",\n        ".join(f"{c} = c.{c} + EXCLUDED.{c}" for c in columns)


def _visitors(scope: str, *, where: str = "") -> str:
    """The three steps that find the batch's human visitors of one scope (`link`, `campaign`):

    - `{scope}_pairs`: each visitor once, with the first and last day the batch saw it on, and,
      unless it has a row of the current epoch ($13), its first day from a row of an earlier
      epoch (`earlier`; NULL: none, it is new), looked for only when an earlier epoch holds rows
      of the scope at all (`visitor_scope_epochs`, migration 0091);
    - `new_{scope}_visitors`: the rows of the current epoch inserted (a new unique, or a known
      visitor's first row in this epoch, carrying its first day: migration 0090);
    - `{scope}_state`: each visitor of the batch, new or known, with its first day on the scope:
      this batch's earliest for a new visitor, the stored one for a known visitor ('-infinity'
      for a row from before 0013, whose days only daily_visitors knows). A known row this
      statement cannot see was committed by a concurrent batch after the statement began:
      visitor_first_day() reads it with a fresh snapshot (it runs only then). Rows of earlier
      epochs are never written any more, so the statement's snapshot has them all.
    """
    key = f"{scope}_id"
    table = f"{scope}_visitors"
    match = f"v.{key} = p.{key} AND v.visitor_id = p.visitor"
    return f"""{scope}_pairs AS MATERIALIZED (
    SELECT p.*,
           CASE WHEN EXISTS (SELECT 1 FROM visitor_scope_epochs e WHERE e.scope = '{scope[0]}'
                             AND e.scope_id = p.{key} AND e.epoch < $13::date)
           THEN CASE WHEN NOT EXISTS (SELECT 1 FROM {table} v
                                      WHERE {match} AND v.epoch = $13::date)
                THEN (SELECT min(coalesce(v.first_day, '-infinity')) FROM {table} v
                      WHERE {match} AND v.epoch < $13::date)
                END
           END AS earlier
    FROM (SELECT {key}, visitor, min(day) AS first_day, max(day) AS last_day
          FROM humans {where} GROUP BY 1, 2) p
),
new_{scope}_visitors AS (
    INSERT INTO {table} (epoch, {key}, visitor_id, first_day)
    SELECT $13::date, {key}, visitor, coalesce(earlier, first_day) FROM {scope}_pairs ORDER BY 2, 3
    ON CONFLICT DO NOTHING
    RETURNING {key}, visitor_id
),
{scope}_state AS MATERIALIZED (
    SELECT p.{key} AS scope_id, p.visitor, p.last_day > p.first_day AS spread,
           n.{key} IS NOT NULL AND p.earlier IS NULL AS new,
           CASE WHEN n.{key} IS NOT NULL THEN coalesce(p.earlier, p.first_day)
           ELSE coalesce(p.earlier,
                         (SELECT coalesce(v.first_day, '-infinity') FROM {table} v
                          WHERE {match} AND v.epoch = $13::date),
                         visitor_first_day('{scope[0]}', p.{key}, p.visitor))
           END AS first_day
    FROM {scope}_pairs p
    LEFT JOIN new_{scope}_visitors n ON n.{key} = p.{key} AND n.visitor_id = p.visitor
)"""


_COLUMNS = Click._fields.index("day")
"""The columns of a batch sent to Postgres: the fields of `Click` before `day`."""

# $1..$12: the batch's distinct events, one array per column (`Click`'s first twelve), in the
# order read; a click's quarter hour, UTC day and month come from its time. $13: the epoch of the
# visitor rows (`visitor_epoch()`). $14, $15: consumer group and topic; $16..$18: partition, next
# offset, first offset of the batch.
# Returns one row per Redis counter touched (scope 'link' or 'campaign', id, day or NULL for all
# time, absolute total, unique, bots), and one row with a NULL scope whose id is the number of
# events counted for the first time.
COUNT_BATCH = f"""
WITH batch AS (
    SELECT event_id, date '1970-01-01' + (at_ms / 86400000)::int AS day,
           to_timestamp(at_ms / 900000 * 900) AS quarter,
           to_timestamp(at_ms / 1000.0) AS occurred, link_id, campaign_id, org_id, kind,
           channel, visitor, is_bot, expired, bot_kind, recipient, n
    FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],
                $6::text[], $7::text[], $8::text[], $9::bool[], $10::bool[], $11::text[],
                $12::text[])
        WITH ORDINALITY
        AS b(event_id, at_ms, link_id, campaign_id, org_id, kind, channel, visitor, is_bot,
             expired, bot_kind, recipient, n)
),
new_events AS (
    INSERT INTO processed_events (event_day, event_id)
    SELECT day, event_id FROM batch ORDER BY day, event_id
    ON CONFLICT DO NOTHING
    RETURNING event_id
),
marked AS MATERIALIZED (
    -- every event of the batch, and whether it is counted now (false: a redelivery)
    SELECT b.*, e.event_id IS NOT NULL AS fresh
    FROM batch b LEFT JOIN new_events e USING (event_id)
),
humans AS MATERIALIZED (
    -- human clicks on live links: taps after expiry are counted apart, bots by reason
    SELECT * FROM marked WHERE fresh AND NOT is_bot AND NOT expired
),
{_visitors("link")},
{_visitors("campaign", where="WHERE campaign_id IS NOT NULL")},
new_daily_visitors AS (
    -- a visitor seen on a day other than its first day on the scope takes a daily row (new
    -- that day if inserted); only a known visitor, or one the batch saw on several days, can be
    INSERT INTO daily_visitors (day, scope, scope_id, visitor_id)
    SELECT h.day, 'l'::"char", h.link_id, h.visitor
    FROM humans h JOIN link_state s ON s.scope_id = h.link_id AND s.visitor = h.visitor
    WHERE (NOT s.new OR s.spread) AND h.day <> s.first_day
    UNION
    SELECT h.day, 'c', h.campaign_id, h.visitor
    FROM humans h JOIN campaign_state s ON s.scope_id = h.campaign_id AND s.visitor = h.visitor
    WHERE (NOT s.new OR s.spread) AND h.day <> s.first_day
    ORDER BY 1, 2, 3, 4
    ON CONFLICT DO NOTHING
    RETURNING day, scope, scope_id
),
daily_uniques AS (
    -- a new visitor is new on its first day; on another day, when its daily row was inserted
    SELECT scope, scope_id, day, count(*) AS n
    FROM (
        SELECT 'link' AS scope, scope_id, first_day AS day FROM link_state WHERE new
        UNION ALL
        SELECT 'campaign', scope_id, first_day FROM campaign_state WHERE new
        UNION ALL
        SELECT CASE scope WHEN 'l' THEN 'link' ELSE 'campaign' END, scope_id, day
        FROM new_daily_visitors
    ) u
    GROUP BY 1, 2, 3
),
scope_epochs AS (
    -- the scopes with visitor rows in this epoch (migration 0091)
    INSERT INTO visitor_scope_epochs (scope, scope_id, epoch)
    SELECT 'l'::"char", scope_id, $13::date FROM link_state
    UNION
    SELECT 'c', scope_id, $13::date FROM campaign_state
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING
),
quarter_visits AS (
    -- who was seen on which link in which quarter hour: the uniques of any period
    INSERT INTO quarter_visitors (link_id, quarter, visitor_id, channel, org_id, campaign_id,
                                  campaign_kind)
    SELECT link_id, quarter, visitor, min(channel), min(org_id), min(campaign_id), min(kind)
    FROM humans
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
),
per_recipient AS (
    INSERT INTO recipient_clicks AS c (link_id, recipient_id, month, campaign_id, clicks,
                                       bot_clicks, after_expiry, first_click, last_click)
    SELECT link_id, recipient, date_trunc('month', day::timestamp)::date, min(campaign_id),
           count(*) FILTER (WHERE NOT is_bot AND NOT expired),
           count(*) FILTER (WHERE is_bot),
           count(*) FILTER (WHERE expired AND NOT is_bot),
           min(occurred) FILTER (WHERE NOT is_bot AND NOT expired),
           max(occurred) FILTER (WHERE NOT is_bot AND NOT expired)
    FROM marked
    WHERE fresh AND recipient IS NOT NULL
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (link_id, recipient_id, month) DO UPDATE
    SET {_added("clicks", "bot_clicks", "after_expiry")},
        first_click = least(c.first_click, EXCLUDED.first_click),
        last_click = greatest(c.last_click, EXCLUDED.last_click)
),
tallies AS MATERIALIZED (
    -- the batch's events per link, quarter, channel and campaign, tallied once for the four
    -- counter tables below (a few hundred rows where the batch has thousands); a key whose events
    -- are all redeliveries stays, with nothing to add, so that its values are returned again
    SELECT link_id, quarter, channel, campaign_id, min(day) AS day, min(org_id) AS org_id,
           min(org_id) FILTER (WHERE fresh) AS fresh_org_id,
           min(kind) FILTER (WHERE fresh) AS fresh_kind,
           count(*) FILTER (WHERE fresh AND NOT is_bot AND NOT expired) AS humans,
           count(*) FILTER (WHERE fresh AND is_bot) AS bots,
           count(*) FILTER (WHERE fresh AND NOT is_bot AND expired) AS after_expiry,
           {_BOT_TALLIES},
           bool_or(fresh) AS fresh
    FROM marked
    GROUP BY 1, 2, 3, 4
),
quarters AS (
    INSERT INTO quarter_counters AS c (link_id, quarter, channel, org_id, campaign_id,
                                       campaign_kind, total_clicks, bot_clicks, after_expiry,
                                       {", ".join(_BOT_KIND_COLUMNS)})
    SELECT t.link_id, t.quarter, t.channel, min(t.fresh_org_id), min(t.campaign_id),
           min(t.fresh_kind), sum(t.humans), sum(t.bots), sum(t.after_expiry),
           {", ".join(f"sum(t.{c})" for c in _BOT_KIND_COLUMNS)}
    FROM tallies t
    WHERE t.fresh
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (link_id, quarter, channel) DO UPDATE
    SET {_added("total_clicks", "bot_clicks", "after_expiry", *_BOT_KIND_COLUMNS)},
        updated_at = now()
),
links AS (
    INSERT INTO link_counters AS c (link_id, org_id, campaign_id, total_clicks, unique_clicks,
                                    bot_clicks)
    SELECT t.link_id, min(t.org_id), min(t.campaign_id), sum(t.humans), coalesce(min(u.n), 0),
           sum(t.bots)
    FROM tallies t
    LEFT JOIN (SELECT scope_id AS link_id, count(*) AS n FROM link_state WHERE new GROUP BY 1) u
        USING (link_id)
    GROUP BY 1
    ORDER BY 1
    ON CONFLICT (link_id) DO UPDATE
    SET {_ADD_COUNTS},
        org_id = coalesce(c.org_id, EXCLUDED.org_id),
        campaign_id = coalesce(c.campaign_id, EXCLUDED.campaign_id)
    RETURNING 'link' AS scope, link_id AS scope_id, NULL::date AS day, total_clicks,
              unique_clicks, bot_clicks
),
campaigns AS (
    INSERT INTO campaign_counters AS c (campaign_id, org_id, total_clicks, unique_clicks,
                                        bot_clicks)
    SELECT t.campaign_id, min(t.org_id), sum(t.humans), coalesce(min(u.n), 0), sum(t.bots)
    FROM tallies t
    LEFT JOIN (SELECT scope_id AS campaign_id, count(*) AS n FROM campaign_state WHERE new
               GROUP BY 1) u USING (campaign_id)
    WHERE t.campaign_id IS NOT NULL
    GROUP BY 1
    ORDER BY 1
    ON CONFLICT (campaign_id) DO UPDATE
    SET {_ADD_COUNTS}
    RETURNING 'campaign' AS scope, campaign_id AS scope_id, NULL::date AS day, total_clicks,
              unique_clicks, bot_clicks
),
days AS (
    INSERT INTO daily_counters AS c (scope, scope_id, day, total_clicks, unique_clicks,
                                     bot_clicks)
    SELECT k.scope, k.scope_id, k.day, sum(k.humans), coalesce(min(u.n), 0), sum(k.bots)
    FROM (
        SELECT 'link' AS scope, link_id AS scope_id, day, humans, bots FROM tallies
        UNION ALL
        SELECT 'campaign', campaign_id, day, humans, bots FROM tallies
        WHERE campaign_id IS NOT NULL
    ) k
    LEFT JOIN daily_uniques u USING (scope, scope_id, day)
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (scope, scope_id, day) DO UPDATE
    SET {_ADD_COUNTS}
    RETURNING scope, scope_id, day, total_clicks, unique_clicks, bot_clicks
),
stored_offsets AS ({stored_offsets.upsert(_COLUMNS + 2)})
SELECT * FROM links
UNION ALL SELECT * FROM campaigns
UNION ALL SELECT * FROM days
UNION ALL SELECT NULL, count(*), NULL, 0, 0, 0 FROM new_events
"""


async def apply_batch(
    conn: asyncpg.Connection,
    *,
    group: str,
    topic: str,
    clicks: list[Click],
    offsets: dict[int, tuple[int, int]],
) -> BatchResult:
    """Count `clicks` (some may be redeliveries) and store `offsets`, in one statement.

    `offsets`: partition -> (first offset of this batch, next offset to read). The partitions of
    the clicks' days and months must exist (`retention.ensure_partitions`).
    """
    distinct = list({c.event_id: c for c in clicks}.values())
    columns = list(zip(*distinct, strict=True))[:_COLUMNS] if distinct else [()] * _COLUMNS
    async with conn.transaction():
        # its own statement, so that the counting statement's snapshot is taken after the lock
        epoch = await conn.fetchval("SELECT visitor_epoch()")
        rows = await conn.fetch(
            COUNT_BATCH, *columns, epoch, group, topic, *stored_offsets.columns(offsets)
        )
    counted = 0
    counts: list[Counts] = []
    for scope, scope_id, day, total, unique, bots in rows:
        if scope is None:
            counted = scope_id
        else:
            counts.append(Counts(scope, scope_id, total, unique, bots, day))
    return BatchResult(counts=counts, counted=counted, duplicates=len(clicks) - counted)


def split_by_campaign(clicks: list[Click], ways: int) -> list[list[Click]]:
    """The batch in up to `ways` non-empty shares that write no common row: a campaign's clicks
    (so its links, visitors and counters) go to one share, a link without a campaign by link id.
    Copies of one event share its campaign, so deduplication stays within a share."""
    shares: list[list[Click]] = [[] for _ in range(ways)]
    for click in clicks:
        key = click.campaign_id if click.campaign_id is not None else -click.link_id
        shares[key % ways].append(click)
    return [share for share in shares if share]
