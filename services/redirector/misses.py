"""The redirector's tally of misses (`shared.misses`): a dictionary increment on the 404 path,
sent to Redis once a second by a background task, never on the way to an answer.

Only known hosts reach the tally (a code on an unknown host is refused before: `Hosts`), so
its size is bounded by domains x reasons x days, whatever a scanner sends. While Redis is down
the tally is kept and sent with the next batch; past `MAX_FIELDS` entries the oldest are
dropped, so a long outage costs memory that stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from contextlib import suppress
from datetime import UTC, date, datetime

import redis.asyncio as aioredis

from shared import misses
from shared.errors import DependencyError
from shared.hostnames import hostname
from shared.service import cancel

log = logging.getLogger(__name__)

FLUSH_S = 1.0
"""How often the tally goes to Redis, seconds."""
STOP_FLUSH_S = 2.0
"""Longest `stop` waits for Redis to take the last tally, seconds."""
MAX_FIELDS = 10_000
"""Entries (day, domain, reason) kept while Redis does not take them."""


class Misses:
    """`count(host, reason)` on a miss; `start()` sends the tally every `FLUSH_S` seconds and
    `await stop()` (idempotent) sends what is left, once."""

    def __init__(self, redis: aioredis.Redis, flush_s: float = FLUSH_S) -> None:
        self._redis = redis
        self._flush_s = flush_s
        self._tally: Counter[tuple[date, str, str]] = Counter()
        self._day = date.min
        self._day_ends = 0.0
        self._task: asyncio.Task[None] | None = None

    def count(self, host: str | None, reason: str) -> None:
        """One miss on `host` (a `Host` header) for `reason` (one of `misses.REASONS`)."""
        now = time.time()
        if now >= self._day_ends:
            self._day = datetime.fromtimestamp(now, UTC).date()
            self._day_ends = (now // 86_400 + 1) * 86_400
        self._tally[(self._day, hostname(host or ""), reason)] += 1

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="misses")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel(task)
            with suppress(TimeoutError):  # Redis down at shutdown: those misses are lost
                async with asyncio.timeout(STOP_FLUSH_S):
                    await self.flush()

    async def flush(self) -> None:
        """Send the tally to Redis; kept for the next time if Redis fails."""
        if not self._tally:
            return
        sending, self._tally = self._tally, Counter()
        try:
            await misses.add(self._redis, sending)
        except DependencyError as exc:
            log.warning("misses not counted yet", extra={"error": str(exc)})
            sending.update(self._tally)
            self._tally = Counter(dict(list(sending.items())[-MAX_FIELDS:]))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            await self.flush()
