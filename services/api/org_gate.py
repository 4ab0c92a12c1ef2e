"""Per-organisation caps on the API's heavy requests: CSV exports and lists, batch rendering,
minting in bulk, resends and bulk erasures (each can hold a pool connection for seconds).

The rate limits bound how often a caller asks; this bounds how much of one API process an
organisation's slow work holds at once: past `API_ORG_CONCURRENCY` running, its next one is
answered 429 with Retry-After while other organisations' go on. The count is per process (an
export runs in the process that answers it); N processes allow N times the cap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from services.api.errors import TooBusyError


class OrgGate:
    """At most `limit` heavy requests of one organisation running at once in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running: Counter[int] = Counter()

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
