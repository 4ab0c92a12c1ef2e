"""Per-organisation caps on the API's heavy requests: CSV exports and lists, batch rendering,
minting in bulk, resends and bulk erasures (each can hold a pool connection for seconds).

The rate limits bound how often a caller asks; this bounds how much of one API process an
organisation's slow work holds at once: past `API_ORG_CONCURRENCY` running, its next one is
answered 429 with Retry-After while other organisations' go on. The count is per process (an
export runs in the process that answers it); N processes allow N times the cap.

Reports, charts and the pages of the recipient lists are short but each holds a pool
connection while it counts: an organisation runs at most `API_ORG_READS` of them at once
(`auth.one_turn`); the next ones wait their turn (a dashboard's parallel requests queue, not fail),
at most `TURN_WAIT_S`, then 429. So one organisation's burst of reports cannot take the pool
(`POSTGRES_POOL_MAX`) from the others.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from services.api.errors import TooBusyError

TURN_WAIT_S = 10.0
"""How long a report may wait for its organisation's turn before a 429."""


class OrgGate:
    """At most `limit` heavy requests of one organisation running at once in this process."""

    def __init__(self, limit: int, reads: int = 4, wait_s: float = TURN_WAIT_S) -> None:
        self.limit = limit
        self.reads = reads
        self._wait_s = wait_s
        self._running: Counter[int] = Counter()
        self._turns: dict[int, asyncio.Semaphore] = {}
        self._in_turn: Counter[int] = Counter()  # running or waiting, per organisation

    def running(self, org_id: int) -> int:
        """How many of the organisation's heavy requests run now."""
        return self._running[org_id]

    @contextmanager
    def enter(self, org_id: int) -> Iterator[None]:
        """Run one heavy request of `org_id` inside, or raise `TooBusyError`."""
        if self._running[org_id] >= self.limit:
            raise TooBusyError(
                f"{self.limit} heavy requests of this organisation (CSV exports, batch renders,"
                " minting, resends, bulk erasures) are running (API_ORG_CONCURRENCY); retry when"
                " one has finished"
            )
        self._running[org_id] += 1
        try:
            yield
        finally:
            self._running[org_id] -= 1
            if not self._running[org_id]:
                del self._running[org_id]

    @asynccontextmanager
    async def turn(self, org_id: int) -> AsyncIterator[None]:
        """Run one report read of `org_id` inside once fewer than `reads` of its own run (FIFO);
        `TooBusyError` after waiting `wait_s`."""
        turns = self._turns.get(org_id)
        if turns is None:
            turns = self._turns[org_id] = asyncio.Semaphore(self.reads)
        self._in_turn[org_id] += 1
        try:
            try:
                async with asyncio.timeout(self._wait_s):
                    await turns.acquire()
            except TimeoutError:
                raise TooBusyError(
                    f"{self.reads} reports of this organisation are running and more wait"
                    " (API_ORG_READS); retry when one has finished"
                ) from None
            try:
                yield
            finally:
                turns.release()
        finally:
            self._in_turn[org_id] -= 1
            if not self._in_turn[org_id]:
                del self._in_turn[org_id], self._turns[org_id]
