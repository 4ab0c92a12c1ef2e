"""What the reports read: live all-time totals from Redis, windows from Postgres' quarter hours.

Counts, everywhere (docs/counting.md): `total` (human clicks on live links), `unique` (the
distinct human visitors of the scope over the period, whatever the scope and the period: a
visitor who taps two links of a campaign is one unique of the campaign), `bots` (link previews
and scanners, never in the other two; `bots_by_reason` splits them) and `after_expiry` (taps on an
expired link: its fallback or a 410, never in `total` or `unique`).

A window's clicks are sums of `quarter_counters` rows (every bucket of every time zone is a whole
number of quarter hours); its uniques count the distinct visitors of its `quarter_visitors` rows.
Buckets are given to Postgres as their UTC start instants (`Window.edges`), and `width_bucket`
puts each quarter in its bucket: the calendar is Python's (zoneinfo), in one place.

Redis is only a copy (see `shared.counts`): when it lacks the completeness marker, has no copy of
a scope, or does not answer, the totals come from Postgres, and `source` says which was read.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from services.api.window import Window
from shared.counts import MARKER_KEY, counter_key
from shared.errors import DependencyError
from shared.events import BOT_KINDS
from shared.redis_client import errors as redis_errors

log = logging.getLogger(__name__)

SCOPE_COLUMNS = {"link": "link_id", "campaign": "campaign_id", "org": "org_id"}
"""Report scope -> its column in quarter_counters and quarter_visitors."""
GROUP_COLUMNS = {
    "channel": "channel",
    "kind": "coalesce(campaign_kind, 'none')",
    "link": "link_id",
    "campaign": "campaign_id",
}
"""Breakdown -> the expression it groups by (the same in both tables)."""
_TOTALS_TABLES = {
    "link": ("link_counters", "link_id"),
    "campaign": ("campaign_counters", "campaign_id"),
}
BOT_COLUMNS = tuple(f"bots_{kind}" for kind in BOT_KINDS)
SUMS = ", ".join(
    f"sum({c})::bigint" for c in ("total_clicks", "bot_clicks", "after_expiry", *BOT_COLUMNS)
)
"""The summed columns of quarter_counters, in `Tally.of_sums`' order."""


@dataclass(frozen=True, slots=True)
class Tally:
    """Human clicks, unique visitors, bot hits (and by the kind of their reason), and taps after
    the link expired."""

    total: int = 0
    unique: int = 0
    bots: int = 0
    after_expiry: int = 0
    by_reason: tuple[int, ...] = field(default=(0,) * len(BOT_KINDS))
    """Bot hits per `BOT_KINDS`; bots without a known reason are the rest (`other`)."""

    @classmethod
    def of_sums(cls, sums: Sequence[Any], unique: int = 0) -> Tally:
        """From the summed quarter_counters columns (`SUMS`), None as zero."""
        total, bots, after, *reasons = (int(v or 0) for v in sums)
        return cls(total, unique, bots, after, tuple(reasons))

    def with_unique(self, unique: int) -> Tally:
        return Tally(self.total, unique, self.bots, self.after_expiry, self.by_reason)

    def as_dict(self) -> dict[str, Any]:
        reasons: dict[str, int] = dict(zip(BOT_KINDS, self.by_reason, strict=True))
        reasons["other"] = self.bots - sum(self.by_reason)
        return {
            "total": self.total,
            "unique": self.unique,
            "bots": self.bots,
            "after_expiry": self.after_expiry,
            "bots_by_reason": reasons,
        }


class UniqueCache:
    """Distinct-visitor counts already made, each kept under the version of the rows it was
    counted from: the sum of every count (clicks, bots, taps after expiry) of the scope's quarter
    rows in the period, read in the same snapshot. Counters only grow, and a visitor row is only
    written in the transaction that counts its click, so an equal sum means the very same rows,
    and any click counted in the period changes it: a hit is exact, never stale.

    Counting distinct visitors is the reports' one costly read (a sort of every visitor row of
    the period: about 0.2 s for 90,000 on the shared test machine), and a dashboard asks for the
    same windows again and again while the counts stand still. Per API process, bounded (LRU)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: OrderedDict[Hashable, tuple[int, Any]] = OrderedDict()

    def get(self, key: Hashable, version: int) -> Any:
        """The value kept for `key` at `version`, or None."""
        found = self._entries.get(key)
        if found is None or found[0] != version:
            return None
        self._entries.move_to_end(key)
        return found[1]

    def put(self, key: Hashable, version: int, value: Any) -> None:
        self._entries[key] = (version, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


def _version(sums: Sequence[Any]) -> int:
    """The version of a period's rows: its clicks, bots and taps after expiry, summed."""
    return sum(int(v or 0) for v in sums[:3])


async def live_totals(
    redis: aioredis.Redis, pool: asyncpg.Pool, scope: str, ids: list[int]
) -> tuple[dict[int, Tally], str]:
    """All-time totals of links or campaigns (`scope`), and where `total`, `unique` and `bots`
    were read (`redis` or `postgres`); taps after expiry and bots by reason come from Postgres'
    quarter hours. Ids without counts get zeros."""
    if not ids:
        return {}, "redis"
    found: dict[int, tuple[int, int, int]] = {}
    source = "redis"
    extras_task = asyncio.ensure_future(_all_time_extras(pool, scope, ids))
    try:
        try:
            with redis_errors("reading totals"):
                async with redis.pipeline(transaction=False) as pipe:
                    pipe.exists(MARKER_KEY)
                    for i in ids:
                        pipe.hgetall(counter_key(scope, i))
                    marker, *hashes = await pipe.execute()
            if marker:
                found = {i: _triple(h) for i, h in zip(ids, hashes, strict=True) if h}
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
            found.update({r[0]: (r[1], r[2], r[3]) for r in rows})
            if len(missing) == len(ids):
                source = "postgres"
        extras = await extras_task
    finally:
        extras_task.cancel()
    out = {}
    for i in ids:
        total, unique, bots = found.get(i, (0, 0, 0))
        after, reasons = extras.get(i, (0, (0,) * len(BOT_KINDS)))
        out[i] = Tally(total, unique, bots, after, reasons)
    return out, source


async def _all_time_extras(
    pool: asyncpg.Pool, scope: str, ids: list[int]
) -> dict[int, tuple[int, tuple[int, ...]]]:
    column = SCOPE_COLUMNS[scope]
    rows = await pool.fetch(
        f"SELECT {column}, sum(after_expiry)::bigint,"
        f" {', '.join(f'sum({c})::bigint' for c in BOT_COLUMNS)}"
        f" FROM quarter_counters WHERE {column} = ANY($1::bigint[]) GROUP BY 1",
        ids,
    )
    return {r[0]: (r[1], tuple(r[2:])) for r in rows}


def _triple(raw: dict[Any, Any]) -> tuple[int, int, int]:
    values = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
    return values.get("total", 0), values.get("unique", 0), values.get("bots", 0)


async def org_totals(pool: asyncpg.Pool, org_id: int, cache: UniqueCache | None = None) -> Tally:
    """All-time totals of the organisation (Postgres); `unique`: its distinct visitors."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        sums = await conn.fetchrow(f"SELECT {SUMS} FROM quarter_counters WHERE org_id = $1", org_id)
        key, version = ("org", org_id), _version(sums)
        unique = cache.get(key, version) if cache else None
        if unique is None:
            unique = await conn.fetchval(
                "SELECT count(DISTINCT visitor_id) FROM quarter_visitors WHERE org_id = $1", org_id
            )
            if cache:
                cache.put(key, version, unique)
    return Tally.of_sums(sums, unique)


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """A scope's counts over a window: in all, per bucket, and per breakdown asked for."""

    in_window: Tally
    series: list[tuple[datetime, Tally]]
    """(bucket start, counts) for every bucket of the window, empty ones as zeros, in order."""
    groups: dict[str, list[tuple[Any, Tally]]]
    """Breakdown name -> (key, counts) for each key with clicks, biggest first."""


async def window_counts(
    pool: asyncpg.Pool,
    scope: str,
    scope_id: int,
    window: Window,
    by: Iterable[str] = (),
    cache: UniqueCache | None = None,
) -> WindowCounts:
    """The counts of a link, campaign or organisation over `window`, in all, per bucket, and
    grouped `by` channel, kind, link or campaign: one pass over each table (grouping sets).

    The clicks are read first (a few hundred quarter rows); the distinct visitors then only for
    the breakdowns with more than one group: the one group of the others (a campaign's one
    channel, its one link) has the window's visitors. Counting distinct visitors is the costly
    part (a sort of the window's visitor rows per grouping), so this saves most of it for the
    usual campaign."""
    by = list(by)
    edges = window.edges()
    n = 1 + len(by)
    inner = ", ".join(
        ["width_bucket(quarter, $4::timestamptz[]) AS b"]
        + [f"{GROUP_COLUMNS[name]} AS g{i}" for i, name in enumerate(by)]
    )
    columns = ", ".join(["b", *(f"g{i}" for i in range(len(by)))])
    where = f"{SCOPE_COLUMNS[scope]} = $1 AND quarter >= $2 AND quarter < $3"
    args = (scope_id, window.start, window.end, edges)

    def grouping_sets(breakdowns: Iterable[int]) -> str:
        return ", ".join(["(b)", "()", *(f"(g{i})" for i in breakdowns)])

    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        counted = await conn.fetch(
            f"SELECT GROUPING({columns}), {columns}, {SUMS} FROM ("
            f"SELECT {inner}, total_clicks, bot_clicks, after_expiry, {', '.join(BOT_COLUMNS)}"
            f" FROM quarter_counters WHERE {where}) q"
            f" GROUP BY GROUPING SETS ({grouping_sets(range(len(by)))})",
            *args,
        )
        sums: dict[tuple[int, Any], Sequence[Any]] = {_set_key(r, n): r[n + 1 :] for r in counted}
        keys_of = [[key for which, key in sums if which == i + 1] for i in range(len(by))]
        several = [i for i, keys in enumerate(keys_of) if len(keys) > 1]
        version = _version(sums.get((-1, None), ()))
        cache_key = ("window", scope, scope_id, window.start, window.end, tuple(edges),
                     tuple(by), tuple(several))  # fmt: skip
        uniques: dict[tuple[int, Any], int] | None = (
            cache.get(cache_key, version) if cache else None
        )
        if uniques is None:
            uniques = await _window_uniques(conn, inner, where, args, several)
            if cache:
                cache.put(cache_key, version, uniques)
    uniques = dict(uniques)
    everyone = uniques.get((-1, None), 0)
    for i, keys in enumerate(keys_of):
        if len(keys) == 1:
            uniques[(i + 1, keys[0])] = everyone
    tallies = {k: Tally.of_sums(v, uniques.get(k, 0)) for k, v in sums.items()}
    series = [(start, tallies.get((0, i + 1), Tally())) for i, start in enumerate(edges)]
    groups = {
        name: sorted(
            ((key, tallies[(i + 1, key)]) for key in keys_of[i]),
            key=lambda kv: (-kv[1].total, -kv[1].bots, str(kv[0])),
        )
        for i, name in enumerate(by)
    }
    return WindowCounts(tallies.get((-1, None), Tally()), series, groups)


async def _window_uniques(
    conn: asyncpg.Connection, inner: str, where: str, args: tuple[Any, ...], several: list[int]
) -> dict[tuple[int, Any], int]:
    """The distinct visitors of the window, of each bucket, and of each group of the breakdowns
    `several`, keyed like `window_counts`' sums."""
    columns = ", ".join(["b", *(f"g{i}" for i in several)])
    sets = ", ".join(["(b)", "()", *(f"(g{i})" for i in several)])
    seen = await conn.fetch(
        f"SELECT GROUPING({columns}), {columns}, count(DISTINCT visitor_id)"
        f" FROM (SELECT {inner}, visitor_id FROM quarter_visitors WHERE {where}) v"
        f" GROUP BY GROUPING SETS ({sets})",
        *args,
    )
    # a row's grouping set: -1 (the window), 0 (buckets), or p for the breakdown several[p - 1]
    position = {-1: -1, 0: 0, **{p + 1: i + 1 for p, i in enumerate(several)}}
    uniques: dict[tuple[int, Any], int] = {}
    for r in seen:
        which, key = _set_key(r, 1 + len(several))
        uniques[(position[which], key)] = r[2 + len(several)]
    return uniques


def _set_key(row: asyncpg.Record, n: int) -> tuple[int, Any]:
    """(which grouping set: -1 for the whole window, 0 for buckets, i for the i-th breakdown;
    its key) of a row of `window_counts`' queries, whose first column is GROUPING(keys)."""
    mask = row[0]
    for i in range(n):
        if not mask & (1 << (n - 1 - i)):
            return i, row[1 + i]
    return -1, None


async def campaigns_between(
    pool: asyncpg.Pool,
    campaign_ids: list[int],
    starts: Sequence[datetime],
    ends: Sequence[datetime],
    cache: UniqueCache | None = None,
) -> dict[int, Tally]:
    """Each campaign's counts over its own period [start, end) (whole quarter hours; zeros for
    those without clicks)."""
    periods = (
        "SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[])"
        " AS p(campaign_id, since, until)"
    )
    period = {i: (a, b) for i, a, b in zip(campaign_ids, starts, ends, strict=True)}
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        counted = await conn.fetch(
            f"SELECT p.campaign_id, {SUMS} FROM ({periods}) p JOIN quarter_counters q"
            " ON q.campaign_id = p.campaign_id AND q.quarter >= p.since AND q.quarter < p.until"
            " GROUP BY 1",
            campaign_ids,
            list(starts),
            list(ends),
        )
        versions = {r[0]: _version(r[1:]) for r in counted}
        uniques: dict[int, int] = {}
        for i, version in versions.items():
            hit = cache.get(("between", i, *period[i]), version) if cache else None
            if hit is not None:
                uniques[i] = hit
        missing = [i for i in versions if i not in uniques]
        if missing:
            seen = await conn.fetch(
                f"SELECT p.campaign_id, count(DISTINCT v.visitor_id) FROM ({periods}) p"
                " JOIN quarter_visitors v ON v.campaign_id = p.campaign_id"
                " AND v.quarter >= p.since AND v.quarter < p.until GROUP BY 1",
                missing,
                [period[i][0] for i in missing],
                [period[i][1] for i in missing],
            )
            found = {r[0]: r[1] for r in seen}
            for i in missing:
                uniques[i] = found.get(i, 0)
                if cache:
                    cache.put(("between", i, *period[i]), versions[i], uniques[i])
    tallies = {r[0]: Tally.of_sums(r[1:], uniques.get(r[0], 0)) for r in counted}
    return {i: tallies.get(i, Tally()) for i in campaign_ids}
