"""Waiting for a shared lookup with a deadline, without a timer per request.

Every miss of the resolver waits at most the same budget (`RESOLVE_BUDGET_MS`) for a lookup that
other visitors may share. `asyncio.timeout` around `asyncio.shield` did that with a timer, a
timeout context and a second future per request: on fresh codes, where every request waits for
a lookup, that was 12 to 15 % of the time the event loop held the GIL (docs/redirector.md).

Here a request gets one future, fed by the lookup, and a place in a queue. The budget is the
same for all, so deadlines come in the order requests arrive: a deque holds them, and one timer,
set for the oldest, fails the waiters whose time is up and is set again for the next.
"""

from __future__ import annotations

import asyncio
from collections import deque
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")
_EARLY_S = 0.001


class Deadlines:
    """Waiters that give up after `budget_s`: `wait(shared)` is a future of `shared`'s outcome
    that fails with `TimeoutError` at the budget. Cancelling it (a visitor gone) leaves `shared`
    running for the others."""

    def __init__(self, budget_s: float) -> None:
        self._budget_s = budget_s
        self._queue: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def wait(self, shared: asyncio.Future[T]) -> asyncio.Future[T]:
        loop = shared.get_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        shared.add_done_callback(partial(_pass_on, waiter))
        deadline = loop.time() + self._budget_s
        self._queue.append((deadline, waiter))
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire, loop)
        return waiter

    def close(self) -> None:
        """Stop the timer (the waiters left are their visitors' to cancel)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()

    def __len__(self) -> int:
        return len(self._queue)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        # The loop runs a timer up to its clock's resolution early: a millisecond's tolerance.
        now, queue = loop.time() + _EARLY_S, self._queue
        while queue and (queue[0][0] <= now or queue[0][1].done()):
            waiter = queue.popleft()[1]
            if not waiter.done():
                waiter.set_exception(TimeoutError())
        self._timer = loop.call_at(queue[0][0], self._expire, loop) if queue else None


def _pass_on(waiter: asyncio.Future[T], shared: asyncio.Future[T]) -> None:
    if waiter.done():
        return  # its visitor left, or its time was up
    if shared.cancelled():
        waiter.cancel()
    elif (exc := shared.exception()) is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(shared.result())
