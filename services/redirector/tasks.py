"""Stopping background tasks reliably."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[None], seconds: float = 5.0) -> None:
    """Cancel `task` and wait until it ends, at most `seconds`.

    The cancellation is repeated while waiting: on Python 3.11 a cancel that lands as an inner
    `asyncio.timeout` fires can be swallowed, and a single `await task` would then hang.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.5, max(deadline - loop.time(), 0.0)))
        if loop.time() >= deadline:
            break
    if not task.done():
        log.error("background task did not stop", extra={"task": task.get_name()})
    elif not task.cancelled() and task.exception() is not None:
        log.error(
            "background task failed", extra={"task": task.get_name()}, exc_info=task.exception()
        )
