"""Code -> where to send the visitor: process memory, then Redis, then Postgres.

Layers, each answering what it can and passing the rest on:

1. the code's shape (alphabet, length): an impossible code is refused before any lookup;
2. process memory (`TtlLru`): codes, links, and recently unknown codes (the negative cache,
   kept apart so a flood of random codes cannot push live ones out);
3. Redis (`shared.link_cache`): shared by every redirector process, holds negative entries too;
4. Postgres, the truth; what it returns repopulates Redis and memory.

Concurrent misses for one code share one lookup, and a miss gets `RESOLVE_BUDGET_MS` in all
before the visitor gets a 503 instead of a hang. Redis trouble is not fatal: Postgres answers.
A link change reaches memory through Redis pub/sub (`LinkChanges`) or, at worst, the TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from services.redirector.cache import TtlLru
from services.redirector.metrics import RedirectorMetrics
from services.redirector.resolution import (
    FALLBACK,
    GONE,
    MALFORMED,
    NOT_FOUND,
    REDIRECT,
    UNTRACKED,
    CodeEntry,
    LinkEntry,
    Resolution,
    code_shape,
    link_of,
)
from shared import db, redis_client
from shared.errors import DependencyError, QueryError
from shared.link_cache import NEGATIVE, code_key, link_key
from shared.service import cancel
from shared.settings import Settings

log = logging.getLogger(__name__)

_LINK_COLUMNS = """
       l.org_id, l.campaign_id, l.destination, l.disabled, l.expires_at, l.fallback_url,
       cp.kind AS campaign_kind, coalesce(cp.channel, 'sms') AS channel,
       o.link_tracking_enabled AS tracking, cp.dlt_header AS header
"""
_BY_CODE = f"""
SELECT c.link_id, c.recipient_id, {_LINK_COLUMNS}
FROM codes c
JOIN links l ON l.id = c.link_id
JOIN orgs o ON o.id = l.org_id
LEFT JOIN campaigns cp ON cp.id = l.campaign_id
WHERE c.code = $1
"""
_BY_LINK = f"""
SELECT {_LINK_COLUMNS}
FROM links l
JOIN orgs o ON o.id = l.org_id
LEFT JOIN campaigns cp ON cp.id = l.campaign_id
WHERE l.id = $1
"""


_MALFORMED = Resolution(MALFORMED)
_NOT_FOUND = Resolution(NOT_FOUND)


class Resolver:
    """Resolves short codes through the layers above; `clock` gives Unix time in seconds."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        metrics: RedirectorMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._m = metrics
        self._clock = clock
        self._shape = code_shape(
            settings.redirector.code_min_length, settings.redirector.code_max_length
        )
        self._budget_s = settings.redirector.resolve_budget_ms / 1000
        self._redis_ttl_s = settings.redirector.redis_cache_ttl_s
        self._negative_ttl_s = settings.redirector.negative_cache_ttl_s
        self.codes: TtlLru[str, CodeEntry] = TtlLru(
            settings.redirector.local_cache_size, settings.redirector.local_code_ttl_s
        )
        self.links: TtlLru[int, LinkEntry] = TtlLru(
            settings.redirector.local_cache_size, settings.redirector.local_cache_ttl_s
        )
        self.unknown: TtlLru[str, bool] = TtlLru(
            max(settings.redirector.local_cache_size // 4, 1),
            settings.redirector.negative_cache_ttl_s,
        )
        self._inflight: dict[str, asyncio.Future[tuple[CodeEntry, LinkEntry] | None]] = {}
        self._refreshing: dict[int, asyncio.Task[None]] = {}
        self._forgotten = 0
        """Counts `forget_link` calls: a reload that overlapped one must not store its value."""

    async def resolve(self, code: str) -> Resolution:
        """The outcome for `code`. Raises `DependencyError` when the budget runs out."""
        if not self._shape.fullmatch(code):
            return _MALFORMED
        entry = self.codes.get(code)
        if entry is not None:
            cached = self.links.get_stale(entry.link_id)
            if cached is not None:
                link, fresh = cached
                if not fresh:
                    self._refresh_link(entry.link_id)
                self._m.hits["memory"].inc()
                return self._decide(entry, link)
        elif self.unknown.get(code):
            self._m.negative_hits.inc()
            return _NOT_FOUND
        self._m.misses["memory"].inc()
        found = await self._load_once(code)
        return _NOT_FOUND if found is None else self._decide(*found)

    def forget_link(self, link_id: int) -> None:
        """Drop a changed link from memory (its codes stay: they never move)."""
        self._forgotten += 1
        self.links.discard(link_id)

    def forget_org(self, org_id: int) -> None:
        """Drop every link of an organisation from memory (its tracking was switched)."""
        self._forgotten += 1
        self.links.discard_where(lambda link: link.org_id == org_id)

    def forget_links(self) -> None:
        """Drop every link from memory (pub/sub messages may have been missed)."""
        self._forgotten += 1
        self.links.clear()

    def _refresh_link(self, link_id: int) -> None:
        """Reload an expired link in the background; its last value is served meanwhile."""
        if link_id not in self._refreshing:
            task = asyncio.create_task(self._reload_link(link_id), name=f"link-refresh-{link_id}")
            self._refreshing[link_id] = task
            task.add_done_callback(lambda _: self._refreshing.pop(link_id, None))

    async def _reload_link(self, link_id: int) -> None:
        generation = self._forgotten
        try:
            async with asyncio.timeout(max(self._budget_s * 4, 1.0)):
                link = await self._link_from_redis(link_id) or await self._link_from_postgres(
                    link_id
                )
        except (DependencyError, TimeoutError) as exc:
            # Keep serving the last value; the next request after this one tries again.
            log.warning("link refresh failed", extra={"link_id": link_id, "error": str(exc)})
            return
        if generation != self._forgotten:
            return  # a change arrived meanwhile: what we read may be older than it
        if link is None:
            self.links.discard(link_id)  # deleted: the next request looks it up in full
        else:
            self.links.put(link_id, link)

    async def close(self) -> None:
        """Cancel the background link reloads and wait for them to end."""
        await asyncio.gather(*(cancel(task) for task in list(self._refreshing.values())))

    def _decide(self, entry: CodeEntry, link: LinkEntry) -> Resolution:
        if link.disabled:
            return _NOT_FOUND
        if not link.tracking:
            return Resolution(UNTRACKED, link.fallback_url, entry, link)
        if link.expires_at is not None and self._clock() >= link.expires_at:
            if link.fallback_url:
                return Resolution(FALLBACK, link.fallback_url, entry, link)
            return Resolution(GONE, None, entry, link)
        return Resolution(REDIRECT, link.destination, entry, link)

    async def _load_once(self, code: str) -> tuple[CodeEntry, LinkEntry] | None:
        pending = self._inflight.get(code)
        if pending is None:
            pending = asyncio.ensure_future(self._load(code))
            self._inflight[code] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(code, None))
        try:
            async with asyncio.timeout(self._budget_s):
                # shield: a visitor who gives up must not cancel the lookup others wait for.
                return await asyncio.shield(pending)
        except TimeoutError:
            self._m.dependency_errors.labels("budget").inc()
            raise DependencyError(
                f"resolving a code took over {self._budget_s * 1000:.0f} ms"
            ) from None

    async def _load(self, code: str) -> tuple[CodeEntry, LinkEntry] | None:
        entry, negative = await self._code_from_redis(code)
        if negative:
            self._m.negative_hits.inc()
            self.unknown.put(code, True)
            return None
        if entry is not None:
            link = self.links.get(entry.link_id) or await self._link_from_redis(entry.link_id)
            if link is None:
                link = await self._link_from_postgres(entry.link_id)
                if link is None:
                    return None
            self._m.hits["redis"].inc()
            self.codes.put(code, entry)
            self.links.put(entry.link_id, link)
            return entry, link
        self._m.misses["redis"].inc()
        return await self._code_from_postgres(code)

    async def _code_from_redis(self, code: str) -> tuple[CodeEntry | None, bool]:
        try:
            raw = await redis_client.get(self._redis, code_key(code))
        except DependencyError as exc:
            self._redis_failed(exc)
            return None, False
        if raw is None:
            return None, False
        if raw == NEGATIVE:
            return None, True
        try:
            data = orjson.loads(raw)
            return CodeEntry(int(data["link_id"]), data["recipient_id"]), False
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            return None, False  # an entry we cannot read is a miss; Postgres overwrites it

    async def _link_from_redis(self, link_id: int) -> LinkEntry | None:
        try:
            raw = await redis_client.get(self._redis, link_key(link_id))
        except DependencyError as exc:
            self._redis_failed(exc)
            return None
        if raw is None:
            return None
        try:
            return LinkEntry(**orjson.loads(raw))
        except (orjson.JSONDecodeError, TypeError):
            return None

    async def _link_from_postgres(self, link_id: int) -> LinkEntry | None:
        row = await self._query(_BY_LINK, link_id)
        if row is None:
            return None
        link = link_of(row)
        await self._store({link_key(link_id): orjson.dumps(asdict(link))}, self._redis_ttl_s)
        return link

    async def _code_from_postgres(self, code: str) -> tuple[CodeEntry, LinkEntry] | None:
        row = await self._query(_BY_CODE, code)
        if row is None:
            self.unknown.put(code, True)
            await self._store({code_key(code): NEGATIVE}, self._negative_ttl_s)
            return None
        self._m.hits["postgres"].inc()
        entry = CodeEntry(row["link_id"], row["recipient_id"])
        link = link_of(row)
        await self._store(
            {
                code_key(code): orjson.dumps(asdict(entry)),
                link_key(entry.link_id): orjson.dumps(asdict(link)),
            },
            self._redis_ttl_s,
        )
        self.codes.put(code, entry)
        self.links.put(entry.link_id, link)
        return entry, link

    async def _query(self, sql: str, arg: object) -> Any:
        self._m.postgres_lookups.inc()
        try:
            with db.errors("Postgres did not answer a lookup: the visitor gets a 503"):
                return await self._pool.fetchrow(sql, arg, timeout=max(self._budget_s * 4, 1.0))
        except DependencyError:
            self._m.dependency_errors.labels("postgres").inc()
            raise
        except QueryError as exc:
            self._m.dependency_errors.labels("postgres").inc()
            raise DependencyError(f"Postgres lookup failed: {exc}") from exc

    async def _store(self, values: dict[str, bytes], ttl_s: int) -> None:
        # A failed cache write costs a later lookup, never this answer.
        try:
            await redis_client.set_all(self._redis, values, ttl_s)
        except DependencyError as exc:
            self._redis_failed(exc)

    def _redis_failed(self, exc: BaseException) -> None:
        self._m.dependency_errors.labels("redis").inc()
        log.warning("redis cache unavailable, asking postgres", extra={"error": repr(exc)})
