"""A filter of every minted code, in process memory: a code it does not know is refused with
a 404 without any network call, so a flood of random codes costs no Redis or Postgres work.

A Bloom filter (rbloom): no false negatives, false positives at `FALSE_POSITIVES` (a random code
that passes goes the normal way: Redis, then Postgres, then the negative caches). It listens on
the Postgres channel `ct_codes_minted`, where every statement that inserts codes announces them
when it commits (migration 0071, whichever path minted them), then builds itself from the codes
table; after any loss of the listening connection it listens again and rebuilds. A look every
`CATCH_UP_S` at the codes created since the last one is a safety net. Until a build has
finished, or while the listener is down, it is not `current` and the resolver looks every code
up as before.

A code minted a moment ago can be tapped before its announcement has reached this process (the
minting transaction has committed, the sender has the link, the notification is still on its
way). So a miss is not answered at once: `settle()` sends a query down the listening
connection, and Postgres delivers every notification committed before it ahead of its answer
(postgres.c sends pending notifies before ReadyForQuery); only a code still unknown then is a
404. The syncs are shared: one query at a time, at most one every `SYNC_INTERVAL_S`, answers
every miss that arrived before it was sent, so a flood of random codes costs at most
1 / `SYNC_INTERVAL_S` trivial queries a second and never a lookup.

Memory: about 1.8 bytes per code at 0.1% false positives (10 million codes: 18 MB a process).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from rbloom import Bloom

from shared import db
from shared.errors import DependencyError, QueryError
from shared.service import cancel
from shared.settings import PostgresSettings

log = logging.getLogger(__name__)

FALSE_POSITIVES = 0.001
MIN_CAPACITY = 1_000_000
CATCH_UP_S = 60.0
CATCH_UP_MARGIN = timedelta(seconds=120)
"""How far back each catch-up looks past the last one: a code's created_at is its minting
transaction's start, which may commit a while later."""
_FETCH = 50_000
CHANNEL = "ct_codes_minted"
"""The Postgres notification channel of new codes (migration 0071)."""
SYNC_INTERVAL_S = 0.02
"""The least time between two syncs of the listening connection (a miss waits at most this long
for its sync to be sent)."""
SYNC_TIMEOUT_S = 0.25
"""How long a sync may take; past it the filter answers as it stands."""


class MintedCodes:
    """The filter; `start()` builds it and keeps it current, `stop()` (idempotent)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        postgres: PostgresSettings,
        *,
        catch_up_s: float = CATCH_UP_S,
        synced: Callable[[], object] = lambda: None,
    ) -> None:
        self._pool = pool
        self._postgres = postgres
        self._listener: asyncpg.Connection | None = None
        self._catch_up_s = catch_up_s
        self._bloom = Bloom(MIN_CAPACITY, FALSE_POSITIVES)
        self._capacity = MIN_CAPACITY
        self._count = 0
        self._since: datetime | None = None
        self._building: list[str] | None = None  # codes announced while a build runs
        self._subscribed = False
        self._built = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._settling: list[asyncio.Future[None]] = []  # misses waiting for the next sync
        self._syncer: asyncio.Task[None] | None = None
        self.builds = 0
        self.syncs = 0
        self._synced = synced  # told of each sync (a metric)

    @property
    def current(self) -> bool:
        """True when the filter knows every minted code (a miss is then a sure 404)."""
        return self._built and self._subscribed

    def __contains__(self, code: str) -> bool:
        return code in self._bloom

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="minted-codes")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel(self._task)
            self._task = None
        if self._syncer is not None:
            await cancel(self._syncer)
        if self._listener is not None:
            await self._listener.close()
            self._listener = None

    async def settle(self) -> None:
        """Return once every code whose minting committed before this call has been heard (or
        once the sync has failed or timed out: the filter then answers as it stands)."""
        waiter = asyncio.get_running_loop().create_future()
        self._settling.append(waiter)
        if self._syncer is None:
            self._syncer = asyncio.create_task(self._sync(), name="minted-codes-sync")
        await waiter

    async def _sync(self) -> None:
        waiting: list[asyncio.Future[None]] = []
        try:
            while self._settling:
                # Only the misses that came before the query is sent may be answered by it.
                waiting, self._settling = self._settling, []
                listener = self._listener
                if listener is not None:
                    try:
                        with db.errors("Postgres did not answer the filter's sync"):
                            await listener.execute("SELECT 1", timeout=SYNC_TIMEOUT_S)
                        self.syncs += 1
                        self._synced()
                    except (DependencyError, QueryError, TimeoutError, OSError) as exc:
                        log.debug("filter of minted codes not synced", extra={"error": str(exc)})
                # The notifications delivered before the answer ran first (call_soon order).
                _release(waiting)
                await asyncio.sleep(SYNC_INTERVAL_S)
        finally:
            _release(waiting)
            _release(self._settling)
            self._settling = []
            self._syncer = None

    def announced(self, codes: Iterable[str]) -> None:
        """Codes minted elsewhere, as announced on the `ct_codes_minted` channel."""
        codes = list(codes)
        self._add(codes)
        if self._building is not None:
            self._building.extend(codes)

    def _heard(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        self.announced(str(payload).split())

    def _lost(self, conn: Any) -> None:
        self._subscribed = False  # announcements may be lost: not sure until rebuilt
        self._wake.set()

    async def _listen(self) -> None:
        """(Re)connect the listening connection; the filter must then be rebuilt."""
        if self._listener is not None:
            self._listener.terminate()
        with db.errors("Postgres did not take the filter's listener"):
            conn = await asyncpg.connect(self._postgres.dsn.reveal(), timeout=10)
            try:
                await conn.add_listener(CHANNEL, self._heard)
            except BaseException:
                conn.terminate()
                raise
        conn.add_termination_listener(self._lost)
        self._listener = conn
        self._subscribed = True
        self._built = False

    def _add(self, codes: list[str]) -> None:
        self._bloom.update(codes)
        self._count = int(self._bloom.approx_items)  # codes announced again are not counted twice
        if self._count > self._capacity and self._built:
            self._built = False  # too full for its false-positive rate: build a bigger one
            self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                if not self._subscribed:
                    await self._listen()
                    await self._build()
                    continue
                try:
                    async with asyncio.timeout(self._catch_up_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                if self._wake.is_set() or not self._built:
                    self._wake.clear()
                    if self._subscribed:
                        await self._build()
                else:
                    await self._catch_up()
            except (DependencyError, QueryError, TimeoutError, OSError) as exc:
                log.warning("filter of minted codes not updated", extra={"error": str(exc)})
                await asyncio.sleep(1.0)

    async def _build(self) -> None:
        started = time.monotonic()
        self._building = []
        try:
            with db.errors("Postgres did not answer the filter's build"):
                async with self._pool.acquire() as conn, conn.transaction(readonly=True):
                    since = await conn.fetchval("SELECT now()")
                    estimate = await conn.fetchval(
                        "SELECT greatest(reltuples, 0)::bigint FROM pg_class"
                        " WHERE oid = 'codes'::regclass"
                    )
                    capacity = max(MIN_CAPACITY, int(estimate) * 2, self._count * 2)
                    bloom, count, chunk = Bloom(capacity, FALSE_POSITIVES), 0, []
                    async for row in conn.cursor("SELECT code FROM codes", prefetch=_FETCH):
                        chunk.append(row[0])
                        if len(chunk) == _FETCH:
                            bloom.update(chunk)
                            count, chunk = count + len(chunk), []
                    bloom.update(chunk)
                    count += len(chunk)
            bloom.update(self._building)
        finally:
            self._building = None
        self._bloom, self._capacity, self._count = bloom, capacity, int(bloom.approx_items)
        self._since = since - CATCH_UP_MARGIN
        self._built = True
        self.builds += 1
        log.info(
            "filter of minted codes built",
            extra={"codes": count, "seconds": round(time.monotonic() - started, 2)},
        )

    async def _catch_up(self) -> None:
        if self._since is None:
            return
        with db.errors("Postgres did not answer the filter's catch-up"):
            async with self._pool.acquire() as conn:
                now = await conn.fetchval("SELECT now()")
                rows = await conn.fetch("SELECT code FROM codes WHERE created_at > $1", self._since)
        self._add([row[0] for row in rows])
        self._since = now - CATCH_UP_MARGIN


def _release(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
