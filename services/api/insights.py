"""What the reports read: live all-time totals from Redis, series and breakdowns from Postgres.

Counts, everywhere: `total` (human clicks), `unique` and `bots` (link previews and scanners,
never in the other two). In live totals `unique` is the scope's distinct human visitors. In a
series or a breakdown (read from `hourly_counters`) `unique` counts the visitors a link met for
the first time in that bucket or group: summed over all time it equals the link's unique count,
and for a campaign the sum over its links (a visitor who taps two links counts on each).

Redis is only a copy (see `shared.counts`): when it lacks the completeness marker, has no copy of
a scope, or does not answer, the totals come from Postgres, and `source` says which was read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from services.api.window import Window
from shared.counts import MARKER_KEY, counter_key
from shared.errors import DependencyError
from shared.redis_client import errors as redis_errors

log = logging.getLogger(__name__)

SCOPE_COLUMNS = {"link": "link_id", "campaign": "campaign_id", "org": "org_id"}
"""Report scope -> its column in hourly_counters."""
GROUP_COLUMNS = {
    "channel": "channel",
    "kind": "coalesce(campaign_kind, 'none')",
    "link": "link_id",
    "campaign": "campaign_id",
}
"""Breakdown -> the hourly_counters expression it groups by."""
_TOTALS_TABLES = {
    "link": ("link_counters", "link_id"),
    "campaign": ("campaign_counters", "campaign_id"),
}


@dataclass(frozen=True, slots=True)
class Tally:
    """Human clicks, unique visitors and bot hits."""

    total: int = 0
    unique: int = 0
    bots: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.total + other.total, self.unique + other.unique, self.bots + other.bots)

    def as_dict(self) -> dict[str, int]:
        return {"total": self.total, "unique": self.unique, "bots": self.bots}


async def live_totals(
    redis: aioredis.Redis, pool: asyncpg.Pool, scope: str, ids: list[int]
) -> tuple[dict[int, Tally], str]:
    """All-time totals of links or campaigns (`scope`), and where they were read (`redis` or
    `postgres`). Ids without counts get zeros."""
    if not ids:
        return {}, "redis"
    found: dict[int, Tally] = {}
    source = "redis"
    try:
        with redis_errors("reading totals"):
            async with redis.pipeline(transaction=False) as pipe:
                pipe.exists(MARKER_KEY)
                for i in ids:
                    pipe.hgetall(counter_key(scope, i))
                marker, *hashes = await pipe.execute()
        if marker:
            found = {i: _tally(h) for i, h in zip(ids, hashes, strict=True) if h}
        else:
            source = "postgres"
    except DependencyError as exc:
        log.warning("redis unavailable for totals", extra={"error": repr(exc)})
        source = "postgres"
    missing = [i for i in ids if i not in found]
    if missing:
        table, column = _TOTALS_TABLES[scope]
        rows = await pool.fetch(
            f"SELECT {column}, total_clicks, unique_clicks, bot_clicks FROM {table}"
            f" WHERE {column} = ANY($1::bigint[])",
            missing,
        )
        found.update({r[0]: Tally(r[1], r[2], r[3]) for r in rows})
        if len(missing) == len(ids):
            source = "postgres"
    return {i: found.get(i, Tally()) for i in ids}, source


def _tally(raw: dict[Any, Any]) -> Tally:
    values = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
    return Tally(values.get("total", 0), values.get("unique", 0), values.get("bots", 0))


async def org_totals(pool: asyncpg.Pool, org_id: int) -> Tally:
    """All-time totals of every link of the organisation (Postgres); `unique` sums per link."""
    row = await pool.fetchrow(
        "SELECT coalesce(sum(total_clicks), 0)::bigint, coalesce(sum(unique_clicks), 0)::bigint,"
        " coalesce(sum(bot_clicks), 0)::bigint FROM link_counters WHERE org_id = $1",
        org_id,
    )
    return Tally(row[0], row[1], row[2])


_BUCKET = (
    "CASE WHEN $4 = 'hour' THEN hour"
    " ELSE date_trunc('day', hour AT TIME ZONE $5) AT TIME ZONE $5 END"
)


async def series(
    pool: asyncpg.Pool, scope: str, scope_id: int, window: Window
) -> list[tuple[datetime, Tally]]:
    """One (bucket start, counts) per bucket of the window, empty buckets as zeros, in order."""
    rows = await pool.fetch(
        f"SELECT {_BUCKET} AS b, sum(total_clicks)::bigint, sum(unique_clicks)::bigint,"
        " sum(bot_clicks)::bigint FROM hourly_counters"
        f" WHERE {SCOPE_COLUMNS[scope]} = $1 AND hour >= $2 AND hour < $3 GROUP BY b",
        scope_id,
        window.start,
        window.end,
        window.bucket,
        window.tz,
    )
    found = {r[0]: Tally(r[1], r[2], r[3]) for r in rows}
    filled = {start: found.pop(start, Tally()) for start in window.bucket_starts()}
    filled.update(found)  # a bucket our calendar did not foresee still counts (odd DST rules)
    return sorted(filled.items())


async def breakdown(
    pool: asyncpg.Pool, scope: str, scope_id: int, window: Window, by: str, *, limit: int = 1000
) -> list[tuple[Any, Tally]]:
    """Counts in the window grouped `by` channel, kind, link or campaign; biggest first."""
    rows = await pool.fetch(
        f"SELECT {GROUP_COLUMNS[by]} AS g, sum(total_clicks)::bigint,"
        " sum(unique_clicks)::bigint, sum(bot_clicks)::bigint FROM hourly_counters"
        f" WHERE {SCOPE_COLUMNS[scope]} = $1 AND hour >= $2 AND hour < $3"
        " GROUP BY g ORDER BY 2 DESC, 4 DESC, g LIMIT $4",
        scope_id,
        window.start,
        window.end,
        limit,
    )
    return [(r[0], Tally(r[1], r[2], r[3])) for r in rows]


async def campaigns_in_window(
    pool: asyncpg.Pool, campaign_ids: list[int], window: Window
) -> dict[int, Tally]:
    """The window's counts of each campaign (zeros for those without clicks)."""
    rows = await pool.fetch(
        "SELECT campaign_id, sum(total_clicks)::bigint, sum(unique_clicks)::bigint,"
        " sum(bot_clicks)::bigint FROM hourly_counters"
        " WHERE campaign_id = ANY($1::bigint[]) AND hour >= $2 AND hour < $3"
        " GROUP BY campaign_id",
        campaign_ids,
        window.start,
        window.end,
    )
    found = {r[0]: Tally(r[1], r[2], r[3]) for r in rows}
    return {i: found.get(i, Tally()) for i in campaign_ids}


async def campaigns_after_creation(
    pool: asyncpg.Pool, campaign_ids: list[int], hours: int
) -> dict[int, Tally]:
    """Each campaign's counts in its first `hours` UTC hours, from the hour it was created: the
    same stretch after each send, so an original and its resends compare fairly."""
    rows = await pool.fetch(
        "SELECT h.campaign_id, sum(h.total_clicks)::bigint, sum(h.unique_clicks)::bigint,"
        " sum(h.bot_clicks)::bigint FROM hourly_counters h JOIN campaigns c ON c.id = h.campaign_id"
        " WHERE h.campaign_id = ANY($1::bigint[]) AND h.hour >= date_trunc('hour', c.created_at)"
        " AND h.hour < date_trunc('hour', c.created_at) + make_interval(hours => $2)"
        " GROUP BY h.campaign_id",
        campaign_ids,
        hours,
    )
    found = {r[0]: Tally(r[1], r[2], r[3]) for r in rows}
    return {i: found.get(i, Tally()) for i in campaign_ids}


def summed(rows: list[tuple[Any, Tally]]) -> Tally:
    """The sum of the counts of `rows`."""
    total = Tally()
    for _, tally in rows:
        total += tally
    return total
