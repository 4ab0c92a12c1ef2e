"""The one shape of a Kafka consume loop: step until told to stop, recover from what may pass,
end on anything else.

The relay's step reads a batch and posts it; the counter's reads one and counts it while the
one before it finishes (`services.counter.pipeline`). Either way the loop around them is this.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress

from shared.errors import retriable
from shared.service import finish

log = logging.getLogger(__name__)

RETRY_S = 1.0
"""Pause after a failed step before the next one, seconds."""


class ConsumerLoop:
    """Runs `step()` (read what comes next and handle it) until stopped.

    A step that fails with a retriable error (`shared.errors.retriable`) is logged, `recover(exc)`
    puts the consumer back where the last good batch ended, and the next step comes `retry_s`
    later (at once when told to stop). Any other error ends the loop, logged: `alive` turns false
    and `shared.service.run_app` ends the process (exit status 70), so the group hands its
    partitions to a live member. `drain()` runs when the loop ends, whichever way.

    `stop()` lets the step in hand finish for up to `stop_timeout_s`, then cancels it
    (idempotent).
    """

    def __init__(
        self,
        step: Callable[[], Awaitable[None]],
        recover: Callable[[BaseException], Awaitable[None]],
        *,
        name: str,
        drain: Callable[[], Awaitable[None]] | None = None,
        stopping: asyncio.Event | None = None,
        retry_s: float = RETRY_S,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self._step = step
        self._recover = recover
        self._drain = drain
        self._name = name
        self._retry_s = retry_s
        self._stop_timeout_s = stop_timeout_s
        self.stopping = stopping or asyncio.Event()
        """Set by `stop()`; a step that waits (to fill a batch, say) may watch it."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    @property
    def alive(self) -> bool:
        """True while the loop runs."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Let the step in hand finish (up to `stop_timeout_s`), then end; safe to call twice."""
        self.stopping.set()
        if self._task is not None:
            await finish(self._task, self._stop_timeout_s)
            self._task = None

    async def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    await self._step()
                except Exception as exc:
                    if not retriable(exc):
                        raise
                    log.error(
                        "batch failed, reading it again",
                        extra={
                            "loop": self._name,
                            "error": repr(exc),
                            "cause": repr(exc.__cause__),
                        },
                    )
                    await self._recover(exc)
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), self._retry_s)
        except Exception:
            # the loop ends (/readyz says "stopped", `run_app` ends the process): say why
            log.exception("consume loop stopped by an unexpected error", extra={"loop": self._name})
            raise
        finally:
            if self._drain is not None:
                await self._drain()
