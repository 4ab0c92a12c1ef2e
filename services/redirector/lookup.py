"""Code lookups past memory, gathered per event-loop turn: one Redis `MGET` for all the codes
that missed memory in the same turn, one more for their links not in memory, and at most one
Postgres query (`WHERE code = ANY($1)`) for the codes Redis did not have.

Why gathered: under load many requests miss memory in the same turn (every first tap of an SMS
link is a miss), and a round trip costs far more CPU than the keys in it (docs/redirector.md,
Fresh codes). Nothing is written on the request path: what Postgres returned is written back to
Redis by a background task, so the 302 never waits for a cache write.

Postgres is bounded: at most `max_inflight` lookups at once (the rest wait their turn within the
request's budget), each waiting at most the budget for a pooled connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from services.redirector.cache import TtlLru
from services.redirector.metrics import RedirectorMetrics
from services.redirector.resolution import CodeEntry, LinkEntry, link_of
from shared import db, redis_client
from shared.errors import DependencyError, QueryError
from shared.link_cache import NEGATIVE, code_entry, code_key, link_key
from shared.service import cancel

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 1.0
Found = tuple[CodeEntry, LinkEntry] | None
"""What a code is bound to, or None when it does not exist (or its link is gone)."""

_LINK_COLUMNS = """
       l.org_id, l.campaign_id, l.destination, l.disabled, l.expires_at, l.fallback_url,
       cp.kind AS campaign_kind, coalesce(cp.channel, 'sms') AS channel,
       o.link_tracking_enabled AS tracking, cp.dlt_header AS header
"""
BY_CODES = f"""
SELECT c.code, c.link_id, c.recipient_id, l.id, {_LINK_COLUMNS}
FROM codes c
JOIN links l ON l.id = c.link_id
JOIN orgs o ON o.id = l.org_id
LEFT JOIN campaigns cp ON cp.id = l.campaign_id
WHERE c.code = ANY($1::text[])
"""
BY_LINKS = f"""
SELECT l.id, {_LINK_COLUMNS}
FROM links l
JOIN orgs o ON o.id = l.org_id
LEFT JOIN campaigns cp ON cp.id = l.campaign_id
WHERE l.id = ANY($1::bigint[])
"""


class Lookups:
    """Resolves codes that missed memory, a loop turn's worth at a time (`find`)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        metrics: RedirectorMetrics,
        *,
        codes: TtlLru[str, tuple[int, str | None]],
        links: TtlLru[int, LinkEntry],
        unknown: TtlLru[str, bool],
        redis_ttl_s: int,
        negative_ttl_s: int,
        budget_s: float,
        max_inflight: int,
    ) -> None:
        self._pool, self._redis, self._m = pool, redis, metrics
        self._codes, self._links, self._unknown = codes, links, unknown
        self._redis_ttl_s, self._negative_ttl_s = redis_ttl_s, negative_ttl_s
        self._query_s = max(budget_s * 4, 1.0)
        """Longest wait for a query slot, and longest query: past the visitors' budget, so a
        slow Postgres still fills the cache for the next ones."""
        self._slots = asyncio.Semaphore(max_inflight)
        self._pg_queue: dict[str, asyncio.Future[Found]] = {}  # codes waiting for a query slot
        self._waiting: dict[str, asyncio.Future[Found]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def find(self, code: str) -> asyncio.Future[Found]:
        """A future of what `code` is bound to, looked up with the other codes of this turn."""
        waiting = self._waiting.get(code)
        if waiting is not None:
            return waiting
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._flush)  # after every request this turn has woken up
        waiting = self._waiting[code] = loop.create_future()
        waiting.add_done_callback(_retrieve)
        return waiting

    async def link(self, link_id: int) -> LinkEntry | None:
        """One link, from Redis or else Postgres (for the background refresh of a link)."""
        found = await self._links_from_redis([link_id])
        if link_id in found:
            return found[link_id]
        return (await self._links_from_postgres([link_id])).get(link_id)

    async def close(self) -> None:
        """Let the lookups and cache writes still running finish (at most `CLOSE_WAIT_S`),
        then cancel what is left."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_WAIT_S)
        await asyncio.gather(*(cancel(task) for task in list(self._tasks)))

    # -- one turn's batch --------------------------------------------------------------------

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, {}
        self._spawn(self._resolve(batch))

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, batch: dict[str, asyncio.Future[Found]]) -> None:
        try:
            found = await self._find(batch)
        except BaseException as exc:
            for future in batch.values():
                if not future.done():
                    future.set_exception(
                        exc if isinstance(exc, Exception) else DependencyError("lookup stopped")
                    )
            if not isinstance(exc, Exception):
                raise
            return
        for code, future in batch.items():
            if not future.done():
                future.set_result(found.get(code))

    async def _find(self, batch: dict[str, asyncio.Future[Found]]) -> dict[str, Found]:
        codes = list(batch)
        result: dict[str, Found] = {}
        entries: dict[str, CodeEntry] = {}
        missing: list[str] = []
        raws = await self._mget([code_key(code) for code in codes])
        for code, raw in zip(codes, raws, strict=True):
            if raw == NEGATIVE:
                self._m.negative_hits.inc()
                self._unknown.put(code, True)
                result[code] = None
                continue
            entry = _code_entry(raw) if raw is not None else None
            if entry is None:
                missing.append(code)
            else:
                entries[code] = entry
        if entries:
            wanted = {e.link_id for e in entries.values() if self._links.get(e.link_id) is None}
            links = await self._links_from_redis(list(wanted)) if wanted else {}
            if wanted - links.keys():
                links.update(await self._links_from_postgres(list(wanted - links.keys())))
            for code, entry in entries.items():
                link = self._links.get(entry.link_id) or links.get(entry.link_id)
                if link is not None:
                    self._m.hits["redis"].inc()
                    self._remember(code, entry, link)
                result[code] = None if link is None else (entry, link)
        if missing:
            for code, value in result.items():  # answered now: they need not wait for Postgres
                if not batch[code].done():
                    batch[code].set_result(value)
            self._m.misses["redis"].inc(len(missing))
            result.update(await self._codes_from_postgres(missing))
        return result

    def _remember(self, code: str, entry: CodeEntry, link: LinkEntry) -> None:
        self._codes.put(code, (entry.link_id, entry.recipient_id))  # a plain tuple: see Resolver
        self._links.put(entry.link_id, link)

    # -- Redis -----------------------------------------------------------------------------

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        try:
            values = await redis_client.get_many(self._redis, keys)
        except DependencyError as exc:
            self._m.dependency_errors.labels("redis").inc()
            log.warning("redis cache unavailable, asking postgres", extra={"error": repr(exc)})
            return [None] * len(keys)
        return values

    async def _links_from_redis(self, link_ids: list[int]) -> dict[int, LinkEntry]:
        found: dict[int, LinkEntry] = {}
        for link_id, raw in zip(
            link_ids, await self._mget([link_key(i) for i in link_ids]), strict=True
        ):
            if raw is not None:
                try:
                    found[link_id] = LinkEntry(**orjson.loads(raw))
                except (orjson.JSONDecodeError, TypeError):
                    pass  # unreadable: Postgres answers and the write-back replaces it
        return found

    def _store(self, values: dict[str, bytes], ttl_s: int) -> None:
        """Write to Redis in the background: the answer never waits for a cache write."""

        async def write() -> None:
            try:
                await redis_client.set_all(self._redis, values, ttl_s)
            except DependencyError as exc:
                self._m.dependency_errors.labels("redis").inc()
                log.warning("redis cache write failed", extra={"error": repr(exc)})

        self._spawn(write())

    # -- Postgres --------------------------------------------------------------------------

    async def _links_from_postgres(self, link_ids: list[int]) -> dict[int, LinkEntry]:
        async with self._slot():
            rows = await self._query(BY_LINKS, link_ids)
        links = {row["id"]: link_of(row) for row in rows}
        if links:
            self._store(
                {link_key(i): orjson.dumps(asdict(link)) for i, link in links.items()},
                self._redis_ttl_s,
            )
        return links

    async def _codes_from_postgres(self, codes: list[str]) -> dict[str, Found]:
        """Queue `codes` for Postgres; whoever gets a query slot takes every code queued by
        then (a group lookup: the more lookups wait, the fewer queries they cost)."""
        loop = asyncio.get_running_loop()
        mine: dict[str, asyncio.Future[Found]] = {}
        for code in codes:
            future = self._pg_queue.get(code)
            if future is None:
                future = self._pg_queue[code] = loop.create_future()
            mine[code] = future
        async with self._slot():
            if self._pg_queue and not all(f.done() for f in mine.values()):
                batch, self._pg_queue = self._pg_queue, {}
                try:
                    found = await self._query_codes(list(batch))
                except BaseException as exc:
                    failure = exc if isinstance(exc, Exception) else DependencyError("stopped")
                    for future in batch.values():
                        if not future.done():
                            future.add_done_callback(_retrieve)
                            future.set_exception(failure)
                    raise
                for code, future in batch.items():
                    if not future.done():
                        future.set_result(found.get(code))
        return {code: await future for code, future in mine.items()}

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One of the `max_inflight` Postgres query slots, waited for at most the query time."""
        try:
            async with asyncio.timeout(self._query_s):
                await self._slots.acquire()
        except TimeoutError:
            self._m.dependency_errors.labels("postgres").inc()
            raise DependencyError("Postgres lookups are queued past their budget") from None
        try:
            yield
        finally:
            self._slots.release()

    async def _query_codes(self, codes: list[str]) -> dict[str, Found]:
        rows = await self._query(BY_CODES, codes)
        found: dict[str, Found] = dict.fromkeys(codes)
        cache: dict[str, bytes] = {}
        for row in rows:
            self._m.hits["postgres"].inc()
            entry, link = CodeEntry(row["link_id"], row["recipient_id"]), link_of(row)
            found[row["code"]] = (entry, link)
            self._remember(row["code"], entry, link)
            cache[code_key(row["code"])] = code_entry(entry.link_id, entry.recipient_id)
            cache[link_key(entry.link_id)] = orjson.dumps(asdict(link))
        unknown = [code for code, value in found.items() if value is None]
        for code in unknown:
            self._unknown.put(code, True)
        if cache:
            self._store(cache, self._redis_ttl_s)
        if unknown:
            self._store(dict.fromkeys(map(code_key, unknown), NEGATIVE), self._negative_ttl_s)
        return found

    async def _query(self, sql: str, keys: list[Any]) -> list[Any]:
        self._m.postgres_lookups.inc()
        try:
            with db.errors("Postgres did not answer a lookup: the visitor gets a 503"):
                async with asyncio.timeout(self._query_s):
                    async with self._pool.acquire() as conn:
                        rows: list[Any] = await conn.fetch(sql, keys)
                        return rows
        except TimeoutError as exc:
            self._m.dependency_errors.labels("postgres").inc()
            raise DependencyError("a Postgres lookup took longer than its time") from exc
        except DependencyError:
            self._m.dependency_errors.labels("postgres").inc()
            raise
        except QueryError as exc:
            self._m.dependency_errors.labels("postgres").inc()
            raise DependencyError(f"Postgres lookup failed: {exc}") from exc


def _code_entry(raw: bytes) -> CodeEntry | None:
    try:
        data = orjson.loads(raw)
        return CodeEntry(int(data["link_id"]), data["recipient_id"])
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
        return None  # an entry we cannot read is a miss; Postgres overwrites it


def _retrieve(future: asyncio.Future[Found]) -> None:
    # A visitor that gave up (budget) never reads the exception: read it here, so asyncio does
    # not log "exception was never retrieved" for an outcome already counted and logged.
    if not future.cancelled():
        future.exception()
