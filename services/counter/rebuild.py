"""Rebuild the Redis counters from Postgres, the truth, and keep them whole (`Healer`).

Used by `clicktrack counters rebuild` and by the counter when it finds Redis empty (no marker key,
see `shared.counts`). Every counter row is read from one consistent snapshot and written through
the set-if-greater script, so counters running at the same time can keep writing: a value never
moves backwards, and a batch committed after the snapshot writes its own values. The marker goes
in last; a writer that found no marker rebuilds too, so every committed batch reaches Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import Counter as Metric

from shared import db
from shared.counts import MARKER_KEY, SCOPES, Counts, CountStore
from shared.errors import RedisEmptyError
from shared.events import utc_now_iso

log = logging.getLogger(__name__)

CHUNK = 1000
"""Counters written per Redis call."""
CHECK_S = 5.0
"""How often an idle counter checks that Redis still holds its counters, seconds."""

_SOURCES: list[tuple[str, Callable[[Any], Counts]]] = [
    (
        "SELECT link_id, total_clicks, unique_clicks, bot_clicks FROM link_counters",
        lambda r: Counts("link", r[0], r[1], r[2], r[3]),
    ),
    (
        "SELECT campaign_id, total_clicks, unique_clicks, bot_clicks FROM campaign_counters",
        lambda r: Counts("campaign", r[0], r[1], r[2], r[3]),
    ),
    (
        "SELECT scope, scope_id, day, total_clicks, unique_clicks, bot_clicks FROM daily_counters",
        lambda r: Counts(r[0], r[1], r[3], r[4], r[5], r[2]),
    ),
]


async def rebuild(pool: asyncpg.Pool, counts: CountStore) -> int:
    """Write every counter Postgres holds into Redis, then set the marker; returns how many."""
    started = utc_now_iso()
    written = 0
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        for query, to_counts in _SOURCES:
            chunk: list[Counts] = []
            async for row in conn.cursor(query, prefetch=CHUNK):
                chunk.append(to_counts(row))
                if len(chunk) == CHUNK:
                    await counts.raise_to(chunk, force=True)
                    written += len(chunk)
                    chunk = []
            await counts.raise_to(chunk, force=True)
            written += len(chunk)
    await counts.mark_complete(started)
    log.info("redis counters rebuilt from postgres", extra={"counters": written})
    return written


class Healer:
    """The counter's writer of Redis: it writes the values Postgres returned and rebuilds Redis
    from Postgres when it finds it emptied, on a write or (`check`) while idle."""

    def __init__(self, pool: asyncpg.Pool, counts: CountStore, rebuilds: Metric) -> None:
        self._pool = pool
        self._counts = counts
        self._rebuilds = rebuilds
        self._checked = 0.0

    async def write(self, counts: list[Counts]) -> None:
        """Raise the counters to `counts`, rebuilding Redis first if it lost them (emptied: on
        this write; restarted with older data: on the next `check`, which runs here too)."""
        try:
            await self._counts.raise_to(counts)
        except RedisEmptyError:
            await self._rebuild()
            await self._counts.raise_to(counts)
            self._checked = time.monotonic()
        await self.check()

    async def check(self) -> None:
        """Rebuild Redis if it lost its counters, or restarted since the marker was set and may
        have lost some (`CountStore.is_complete`); looked at every `CHECK_S` at most."""
        now = time.monotonic()
        if now - self._checked < CHECK_S:
            return
        self._checked = now
        if not await self._counts.is_complete():
            await self._rebuild()

    async def _rebuild(self) -> None:
        log.warning("redis has lost its counters: rebuilding them from postgres")
        self._rebuilds.inc()
        with db.errors("Postgres did not answer the rebuild of Redis: it is tried again"):
            await rebuild(self._pool, self._counts)


async def clear(client: aioredis.Redis) -> int:
    """Delete the marker and every counter key (`ct:link:*`, `ct:campaign:*`; the redirector's
    `ct:code:*` cache stays); returns how many keys were deleted."""
    deleted: int = await client.unlink(MARKER_KEY)
    for scope in SCOPES:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"ct:{scope}:*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                deleted += await client.unlink(*batch)
                batch = []
        if batch:
            deleted += await client.unlink(*batch)
    return deleted
