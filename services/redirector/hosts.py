"""Which codes a request's host may serve: the short domains, held in memory.

Each brand whitelists its own short domain on DLT, so a code is asked for on its organisation's
domain (`s.brand.in/7383936D89`) or on the global `SHORT_DOMAIN`, which serves every code (links
sent before an organisation had a domain of its own keep working). A code asked for on another
organisation's domain is not found; a host that is neither is a 404 decided here, in memory,
without touching Redis or Postgres.

The whole table (`short_domains`, a few rows per organisation) is loaded at start, again when
an operator changes it (the `domains` message on Redis pub/sub, `shared.link_cache`), and every
`LOCAL_CACHE_TTL_S` seconds in case such a message was missed. The answer per `Host` header is
memoised, so the hot path pays one dictionary lookup.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from services.redirector.metrics import RedirectorMetrics
from shared import db
from shared.errors import DependencyError, QueryError
from shared.hostnames import hostname
from shared.service import cancel

log = logging.getLogger(__name__)

ANY_ORG = 0
"""The scope of the global short domain: codes of every organisation."""
MEMO_SIZE = 4096
"""Distinct `Host` headers remembered; the memo is emptied when full (random hosts cannot
grow it without bound)."""


class Hosts:
    """The short domains: `scope(host)` is the organisation a host serves (`ANY_ORG` for the
    global domain) or None for an unknown host. `await start()` loads the table and keeps it
    fresh; `await stop()` (idempotent)."""

    def __init__(
        self,
        global_domain: str,
        pool: asyncpg.Pool,
        metrics: RedirectorMetrics,
        refresh_s: float,
    ) -> None:
        self._global = hostname(global_domain)
        self._pool = pool
        self._m = metrics
        self._refresh_s = max(refresh_s, 1.0)
        self._orgs: dict[str, int] = {}
        self._memo: dict[str | None, int | None] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def scope(self, host: str | None) -> int | None:
        """The organisation whose codes `host` (a `Host` header) serves, `ANY_ORG`, or None."""
        try:
            return self._memo[host]
        except KeyError:
            pass
        name = None if host is None else hostname(host)
        found = ANY_ORG if name == self._global else self._orgs.get(name or "")
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[host] = found
        return found

    async def start(self) -> None:
        """Load the table (raises `DependencyError` if Postgres cannot), then keep it fresh."""
        await self.load()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="short-domains")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel(self._task)
            self._task = None

    def reload_soon(self) -> None:
        """Reload the table now, in the background (an operator changed it)."""
        self._wake.set()

    async def load(self) -> None:
        """Read the table from Postgres and start answering from it."""
        with db.errors("Postgres did not answer the short-domain query"):
            rows = await self._pool.fetch("SELECT domain, org_id FROM short_domains")
        self.use({r["domain"]: r["org_id"] for r in rows})
        self._m.domain_reloads.inc()

    def use(self, table: dict[str, int]) -> None:
        """Answer from `table` (domain -> organisation id) from now on."""
        self._orgs = table
        self._memo = {}

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._refresh_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.load()
            except (DependencyError, QueryError) as exc:
                # Keep answering from the table we have; the next round tries again.
                log.warning("short-domain reload failed", extra={"error": str(exc)})
