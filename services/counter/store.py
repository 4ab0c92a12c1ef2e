"""One Postgres transaction per batch: the exactly-once heart of the counter.

In a single transaction we insert the batch's event ids (a conflict means the event was counted
before), insert visitor rows for the new human events (a row inserted is a unique click: per link,
per campaign, per link and day, per campaign and day), add the new clicks to the counters of every
dimension, and move the stored offsets forward. Either all of it commits or none of it does, so a
crash at any point leaves counts and offsets in agreement.

The counters each statement touches are upserted in one sorted order, so two counters writing the
same links at once wait for each other instead of deadlocking. The statements return the new
absolute values of every Redis counter the batch touched, redelivered events included (with a zero
delta), so a batch read again after a crash writes Redis again.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import asyncpg

from services.counter.intake import Click
from shared.counts import Counts


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch changed: the new absolute Redis counters it touched, and tallies."""

    counts: list[Counts]
    counted: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class _Delta:
    total: int = 0
    unique: int = 0
    bots: int = 0
    attrs: tuple[int | str | None, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where to read a partition from after assignment or a crash."""

    replay_from: int
    """First offset of the last batch stored: re-read so that its Redis write happens again."""
    next_offset: int
    """First offset not yet counted."""


async def apply_batch(
    conn: asyncpg.Connection,
    *,
    group: str,
    topic: str,
    clicks: list[Click],
    offsets: dict[int, tuple[int, int]],
) -> BatchResult:
    """Count `clicks` (some may be redeliveries) and store `offsets`.

    `offsets`: partition -> (first offset of this batch, next offset to read).
    """
    async with conn.transaction():
        fresh = await _new_events(conn, clicks)
        counts = await _add_counts(conn, fresh, clicks) if clicks else []
        if offsets:
            parts = sorted(offsets)
            await conn.execute(
                """
                INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, replay_from)
                SELECT $1, $2, p, o, f FROM unnest($3::int[], $4::bigint[], $5::bigint[])
                    AS t(p, o, f)
                ON CONFLICT (group_id, topic, partition) DO UPDATE
                SET replay_from = CASE
                        WHEN EXCLUDED.next_offset > consumer_offsets.next_offset
                        THEN EXCLUDED.replay_from ELSE consumer_offsets.replay_from END,
                    next_offset = greatest(consumer_offsets.next_offset, EXCLUDED.next_offset),
                    updated_at = now()
                """,
                group,
                topic,
                parts,
                [offsets[p][1] for p in parts],
                [offsets[p][0] for p in parts],
            )
    return BatchResult(counts=counts, counted=len(fresh), duplicates=len(clicks) - len(fresh))


async def stored_offsets(
    conn: asyncpg.Connection | asyncpg.Pool, group: str, topic: str
) -> dict[int, int]:
    """partition -> next offset to read, as committed with the counts."""
    return {p: r.next_offset for p, r in (await resume_points(conn, group, topic)).items()}


async def resume_points(
    conn: asyncpg.Connection | asyncpg.Pool, group: str, topic: str
) -> dict[int, ResumePoint]:
    """partition -> where to resume reading it, as committed with the counts."""
    rows = await conn.fetch(
        "SELECT partition, next_offset, coalesce(replay_from, next_offset) AS replay_from"
        " FROM consumer_offsets WHERE group_id = $1 AND topic = $2",
        group,
        topic,
    )
    return {r["partition"]: ResumePoint(r["replay_from"], r["next_offset"]) for r in rows}


async def _new_events(conn: asyncpg.Connection, clicks: list[Click]) -> list[Click]:
    by_id: dict[str, Click] = {}
    for c in clicks:
        by_id.setdefault(c.event_id, c)
    if not by_id:
        return []
    ordered = sorted(by_id.values(), key=lambda c: (c.day, c.event_id))
    # ids travel as text: cheaper to encode than UUID objects, and Postgres parses them once
    inserted = await conn.fetch(
        "INSERT INTO processed_events (event_day, event_id)"
        " SELECT d, i::uuid FROM unnest($1::date[], $2::text[]) AS t(d, i)"
        " ON CONFLICT DO NOTHING RETURNING event_id::text",
        [c.day for c in ordered],
        [c.event_id for c in ordered],
    )
    return [by_id[r["event_id"]] for r in inserted]


async def _insert_new(
    conn: asyncpg.Connection, sql: str, rows: set[tuple[object, ...]]
) -> set[tuple[object, ...]]:
    """Insert `rows` with `sql` (ON CONFLICT DO NOTHING RETURNING them); returns those inserted."""
    if not rows:
        return set()
    ordered = sorted(rows)
    columns = [list(col) for col in zip(*ordered, strict=True)]
    return {tuple(r) for r in await conn.fetch(sql, *columns)}


_LINK_VISITORS = (
    "INSERT INTO link_visitors (link_id, visitor_id)"
    " SELECT * FROM unnest($1::bigint[], $2::text[])"
    " ON CONFLICT DO NOTHING RETURNING link_id, visitor_id"
)
_CAMPAIGN_VISITORS = (
    "INSERT INTO campaign_visitors (campaign_id, visitor_id)"
    " SELECT * FROM unnest($1::bigint[], $2::text[])"
    " ON CONFLICT DO NOTHING RETURNING campaign_id, visitor_id"
)
_DAILY_VISITORS = (
    "INSERT INTO daily_visitors (day, scope, scope_id, visitor_id)"
    ' SELECT d, s::"char", i, v FROM unnest($1::date[], $2::text[], $3::bigint[], $4::text[])'
    " AS t(d, s, i, v)"
    " ON CONFLICT DO NOTHING RETURNING day, scope::text, scope_id, visitor_id"
)


async def _add_counts(
    conn: asyncpg.Connection, fresh: list[Click], touched: list[Click]
) -> list[Counts]:
    humans = [c for c in fresh if not c.event.is_bot]
    bots = [c for c in fresh if c.event.is_bot]
    new_link = await _insert_new(
        conn, _LINK_VISITORS, {(c.event.link_id, c.visitor) for c in humans}
    )
    new_campaign = await _insert_new(
        conn,
        _CAMPAIGN_VISITORS,
        {(c.event.campaign_id, c.visitor) for c in humans if c.event.campaign_id},
    )
    daily: set[tuple[object, ...]] = {(c.day, "l", c.event.link_id, c.visitor) for c in humans}
    daily |= {(c.day, "c", c.event.campaign_id, c.visitor) for c in humans if c.event.campaign_id}
    new_daily = await _insert_new(conn, _DAILY_VISITORS, daily)

    # Tallies in C (collections.Counter) rather than a Python loop per click: this is hot.
    def hour_of(c: Click) -> tuple[int, datetime, str]:
        return (c.event.link_id, c.hour, c.event.channel)

    def days_of(clicks: list[Click]) -> Tally[tuple[str, int, date]]:
        found = Tally(("link", c.event.link_id, c.day) for c in clicks)
        found.update(
            ("campaign", c.event.campaign_id, c.day) for c in clicks if c.event.campaign_id
        )
        return found

    # a new visitor counts in the hour of its first click in the batch
    first: dict[tuple[object, ...], tuple[int, datetime, str]] = {}
    for c in sorted(humans, key=lambda c: c.hour):
        pair = (c.event.link_id, c.visitor)
        if pair in new_link and pair not in first:
            first[pair] = hour_of(c)
    hourly = _deltas(
        {hour_of(c): (c.event.org_id, c.event.campaign_id, c.event.campaign_kind) for c in fresh},
        Tally(map(hour_of, humans)),
        Tally(first.values()),
        Tally(map(hour_of, bots)),
    )
    # every counter a redelivered event touches is returned too, with a zero delta
    links = _deltas(
        {c.event.link_id: (c.event.org_id, c.event.campaign_id) for c in touched},
        Tally(c.event.link_id for c in humans),
        Tally(link for link, _ in new_link),
        Tally(c.event.link_id for c in bots),
    )
    campaigns = _deltas(
        {c.event.campaign_id: (c.event.org_id,) for c in touched if c.event.campaign_id},
        Tally(c.event.campaign_id for c in humans),
        Tally(campaign for campaign, _ in new_campaign),
        Tally(c.event.campaign_id for c in bots),
    )
    days = _deltas(
        dict.fromkeys(days_of(touched), ()),
        days_of(humans),
        Tally(("link" if s == "l" else "campaign", i, d) for d, s, i, _ in new_daily),
        days_of(bots),
    )
    await _upsert_hourly(conn, hourly)
    counts = await _upsert_links(conn, links)
    counts += await _upsert_campaigns(conn, campaigns)
    counts += await _upsert_days(conn, days)
    return counts


def _deltas(
    attrs: Mapping[Any, tuple[int | str | None, ...]],
    total: Mapping[Any, int],
    unique: Mapping[Any, int],
    bots: Mapping[Any, int],
) -> dict[Any, _Delta]:
    """One delta per key of `attrs` (a Counter answers 0 for a key it lacks)."""
    return {k: _Delta(total[k], unique[k], bots[k], a) for k, a in attrs.items()}


async def _upsert_hourly(
    conn: asyncpg.Connection, hourly: dict[tuple[int, datetime, str], _Delta]
) -> None:
    if not hourly:
        return
    keys = sorted(hourly)
    rows = [(*k, *hourly[k].attrs, hourly[k].total, hourly[k].unique, hourly[k].bots) for k in keys]
    await conn.execute(
        """
        INSERT INTO hourly_counters AS c (link_id, hour, channel, org_id, campaign_id,
                                          campaign_kind, total_clicks, unique_clicks, bot_clicks)
        SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::bigint[],
                             $5::bigint[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[])
        ON CONFLICT (link_id, hour, channel) DO UPDATE
        SET total_clicks = c.total_clicks + EXCLUDED.total_clicks,
            unique_clicks = c.unique_clicks + EXCLUDED.unique_clicks,
            bot_clicks = c.bot_clicks + EXCLUDED.bot_clicks,
            updated_at = now()
        """,
        *[list(col) for col in zip(*rows, strict=True)],
    )


async def _upsert_links(conn: asyncpg.Connection, links: dict[int, _Delta]) -> list[Counts]:
    if not links:
        return []
    ids = sorted(links)
    rows = await conn.fetch(
        """
        INSERT INTO link_counters AS c (link_id, org_id, campaign_id, total_clicks,
                                        unique_clicks, bot_clicks)
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                             $5::bigint[], $6::bigint[])
        ON CONFLICT (link_id) DO UPDATE
        SET total_clicks = c.total_clicks + EXCLUDED.total_clicks,
            unique_clicks = c.unique_clicks + EXCLUDED.unique_clicks,
            bot_clicks = c.bot_clicks + EXCLUDED.bot_clicks,
            org_id = coalesce(c.org_id, EXCLUDED.org_id),
            campaign_id = coalesce(c.campaign_id, EXCLUDED.campaign_id),
            updated_at = now()
        RETURNING link_id, total_clicks, unique_clicks, bot_clicks
        """,
        ids,
        [links[i].attrs[0] for i in ids],
        [links[i].attrs[1] for i in ids],
        [links[i].total for i in ids],
        [links[i].unique for i in ids],
        [links[i].bots for i in ids],
    )
    return [Counts("link", r[0], r[1], r[2], r[3]) for r in rows]


async def _upsert_campaigns(conn: asyncpg.Connection, campaigns: dict[int, _Delta]) -> list[Counts]:
    if not campaigns:
        return []
    ids = sorted(campaigns)
    rows = await conn.fetch(
        """
        INSERT INTO campaign_counters AS c (campaign_id, org_id, total_clicks, unique_clicks,
                                            bot_clicks)
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
        ON CONFLICT (campaign_id) DO UPDATE
        SET total_clicks = c.total_clicks + EXCLUDED.total_clicks,
            unique_clicks = c.unique_clicks + EXCLUDED.unique_clicks,
            bot_clicks = c.bot_clicks + EXCLUDED.bot_clicks,
            updated_at = now()
        RETURNING campaign_id, total_clicks, unique_clicks, bot_clicks
        """,
        ids,
        [campaigns[i].attrs[0] for i in ids],
        [campaigns[i].total for i in ids],
        [campaigns[i].unique for i in ids],
        [campaigns[i].bots for i in ids],
    )
    return [Counts("campaign", r[0], r[1], r[2], r[3]) for r in rows]


async def _upsert_days(
    conn: asyncpg.Connection, days: dict[tuple[str, int, date], _Delta]
) -> list[Counts]:
    if not days:
        return []
    keys = sorted(days)
    rows = await conn.fetch(
        """
        INSERT INTO daily_counters AS c (scope, scope_id, day, total_clicks, unique_clicks,
                                         bot_clicks)
        SELECT * FROM unnest($1::text[], $2::bigint[], $3::date[], $4::bigint[], $5::bigint[],
                             $6::bigint[])
        ON CONFLICT (scope, scope_id, day) DO UPDATE
        SET total_clicks = c.total_clicks + EXCLUDED.total_clicks,
            unique_clicks = c.unique_clicks + EXCLUDED.unique_clicks,
            bot_clicks = c.bot_clicks + EXCLUDED.bot_clicks,
            updated_at = now()
        RETURNING scope, scope_id, day, total_clicks, unique_clicks, bot_clicks
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [days[k].total for k in keys],
        [days[k].unique for k in keys],
        [days[k].bots for k in keys],
    )
    return [Counts(r[0], r[1], r[3], r[4], r[5], r[2]) for r in rows]
