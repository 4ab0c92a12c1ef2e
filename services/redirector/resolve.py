"""Code -> where to send the visitor: process memory, then Redis, then Postgres.

Layers, each answering what it can and passing the rest on:

1. the code's shape (alphabet, length): an impossible code is refused before any lookup;
2. process memory (`TtlLru`): codes, links, and recently unknown codes (the negative cache,
   kept apart so a flood of random codes cannot push live ones out); then the filter of
   minted codes (`MintedCodes`): a code it does not know was never minted, a 404 at once;
3. Redis (`shared.link_cache`): shared by every redirector process, holds negative entries too;
4. Postgres, the truth; what it returns repopulates Redis and memory.

The misses of one event-loop turn are looked up together (`Lookups`: one Redis MGET, at most
one Postgres query), concurrent misses for one code share one lookup, and a miss gets
`RESOLVE_BUDGET_MS` in all before the visitor gets a 503 instead of a hang. Redis trouble is
not fatal: Postgres answers.
A link change reaches memory through Redis pub/sub (`LinkChanges`) or, at worst, the TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import asyncpg
import redis.asyncio as aioredis

from services.redirector.cache import TtlLru
from services.redirector.deadlines import Deadlines
from services.redirector.lookup import Found, Lookups
from services.redirector.metrics import RedirectorMetrics
from services.redirector.minted import MintedCodes
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
)
from shared.errors import DependencyError
from shared.service import cancel
from shared.settings import Settings

log = logging.getLogger(__name__)

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
        minted: MintedCodes | None = None,
    ) -> None:
        self._m = metrics
        self.minted = minted
        self._clock = clock
        self._shape = code_shape(
            settings.redirector.code_min_length, settings.redirector.code_max_length
        )
        self._budget_s = settings.redirector.resolve_budget_ms / 1000
        self._deadlines = Deadlines(self._budget_s)
        # A code's entry is kept as a plain (link id, recipient) tuple, not a CodeEntry: the
        # collector stops tracking tuples of ints and strings, so the full collections that a
        # growing cache triggers do not walk every code (docs/redirector.md, Fresh codes).
        self.codes: TtlLru[str, tuple[int, str | None]] = TtlLru(
            settings.redirector.local_cache_size, settings.redirector.local_code_ttl_s
        )
        self.links: TtlLru[int, LinkEntry] = TtlLru(
            settings.redirector.local_cache_size, settings.redirector.local_cache_ttl_s
        )
        self.unknown: TtlLru[str, bool] = TtlLru(
            max(settings.redirector.local_cache_size // 4, 1),
            settings.redirector.negative_cache_ttl_s,
        )
        self._lookups = Lookups(
            pool,
            redis,
            metrics,
            codes=self.codes,
            links=self.links,
            unknown=self.unknown,
            redis_ttl_s=settings.redirector.redis_cache_ttl_s,
            negative_ttl_s=settings.redirector.negative_cache_ttl_s,
            budget_s=self._budget_s,
            max_inflight=settings.redirector.postgres_max_lookups,
        )
        self._inflight: dict[str, asyncio.Future[Found]] = {}
        self._refreshing: dict[int, asyncio.Task[None]] = {}
        self._forgotten = 0
        """Counts `forget_link` calls: a reload that overlapped one must not store its value."""

    async def resolve(self, code: str) -> Resolution:
        """The outcome for `code`. Raises `DependencyError` when the budget runs out."""
        if not self._shape.fullmatch(code):
            return _MALFORMED
        known = self.codes.get(code)
        if known is not None:
            cached = self.links.get_stale(known[0])
            if cached is not None:
                link, fresh = cached
                if not fresh:
                    self._refresh_link(known[0])
                self._m.hits["memory"].inc()
                return self._decide(CodeEntry(*known), link)
        elif self.unknown.get(code):
            self._m.negative_hits.inc()
            return _NOT_FOUND
        elif (minted := self.minted) is not None and minted.current and code not in minted:
            await minted.settle()  # a code minted a moment ago may not have been heard yet
            if code in minted:
                self._m.heard_late.inc()
            elif minted.current:
                self._m.filtered.inc()
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

    def forget_code(self, code: str) -> None:
        """Drop a code from memory (its recipient was erased: the next tap reads it again)."""
        self._forgotten += 1
        self.codes.discard(code)
        self.unknown.discard(code)

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
                link = await self._lookups.link(link_id)
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
        """Cancel the background link reloads and lookups and wait for them to end."""
        await asyncio.gather(*(cancel(task) for task in list(self._refreshing.values())))
        await self._lookups.close()
        self._deadlines.close()

    def _decide(self, entry: CodeEntry, link: LinkEntry) -> Resolution:
        if link.disabled:
            return Resolution(NOT_FOUND, None, entry, link)  # with its link: a miss "disabled"
        if not link.tracking:
            return Resolution(UNTRACKED, link.fallback_url, entry, link)
        if link.expires_at is not None and self._clock() >= link.expires_at:
            if link.fallback_url:
                return Resolution(FALLBACK, link.fallback_url, entry, link)
            return Resolution(GONE, None, entry, link)
        return Resolution(REDIRECT, link.destination, entry, link)

    async def _load_once(self, code: str) -> Found:
        pending = self._inflight.get(code)
        if pending is None:
            pending = self._lookups.find(code)
            self._inflight[code] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(code, None))
        try:
            # A visitor who gives up must not cancel the lookup others wait for.
            return await self._deadlines.wait(pending)
        except TimeoutError:
            self._m.dependency_errors.labels("budget").inc()
            raise DependencyError(
                f"resolving a code took over {self._budget_s * 1000:.0f} ms"
            ) from None
