"""What every Clicktrack process shares: running an aiohttp app, the app of a worker (its
lifetime, and `shared.probes` for `/healthz`, `/readyz`, `/metrics`), and the one way to stop a
background task (`cancel`, and `finish` for a loop that may end by itself first).

The counter, the webhook relay and the lag exporter serve their apps with these; their consume
loops are `shared.consume.ConsumerLoop`s.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Protocol

import uvloop
from aiohttp import web
from prometheus_client import CollectorRegistry

from shared.logs import setup_logging
from shared.probes import Probes, Readiness

log = logging.getLogger(__name__)

CANCEL_TIMEOUT_S = 5.0
"""Longest `cancel` waits for a cancelled task to end, seconds."""

LOOP_ALIVE: web.AppKey[Callable[[], bool]] = web.AppKey("loop_alive")
"""Set by a worker's app: whether its loop still runs. `run_app` ends the process when it stops."""

WATCH_S = 1.0
"""How often `run_app` looks at a worker's loop."""

LOOP_DIED_EXIT_STATUS = 70
"""The process's exit status when its worker's loop stopped by itself (EX_SOFTWARE)."""


def run_app(app: web.Application, host: str, port: int, log_level: str) -> None:
    """Serve `app` on uvloop until SIGINT/SIGTERM, with JSON logs; 30 s to drain at shutdown.

    If the app runs a worker (`LOOP_ALIVE`) and its loop stops by itself, the process shuts down
    and exits with `LOOP_DIED_EXIT_STATUS`: a live process with a dead loop would keep its Kafka
    partitions and count nothing from them, and only its `/readyz` would say so. Exiting lets the
    group hand them to a live member and the process supervisor start a new one.
    """
    setup_logging(log_level)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    died: list[bool] = []
    if LOOP_ALIVE in app:
        app.cleanup_ctx.append(_watch(app[LOOP_ALIVE], died))
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        print=None,
        shutdown_timeout=30,
        loop=loop,
    )
    if died:
        sys.exit(LOOP_DIED_EXIT_STATUS)


def _watch(
    alive: Callable[[], bool], died: list[bool]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context (after the worker's: it starts once the worker runs, and ends before the
    worker stops) that shuts the process down, as SIGTERM does, once the loop stopped."""

    async def watch(app: web.Application) -> None:
        while alive():  # noqa: ASYNC110 (a worker's `alive` is a property, not an event)
            await asyncio.sleep(WATCH_S)
        log.critical("the worker's loop stopped: shutting the process down to be restarted")
        died.append(True)
        signal.raise_signal(signal.SIGTERM)

    return background(watch, "loop-watch")


def background(
    run: Callable[[web.Application], Coroutine[Any, Any, None]], name: str
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that runs `run(app)` as a task while the app runs, cancelled at exit."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run(app), name=name)
        try:
            yield
        finally:
            await cancel(task)

    return context


async def cancel(
    task: asyncio.Task[Any], timeout_s: float = CANCEL_TIMEOUT_S, *, once: bool = False
) -> None:
    """Cancel `task` and wait until it ends, at most `timeout_s`; never raises its error.

    The cancellation is repeated every half second while waiting: on Python 3.11 a cancel that
    lands as an inner `asyncio.timeout` fires can be swallowed, and a single `await task` would
    then hang. `once`: cancel a single time, for a task whose clean-up (its `finally`) must run
    to its end. A task that failed (rather than being cancelled), or outlives the wait, is logged.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    task.cancel()
    while not task.done():
        await asyncio.wait({task}, timeout=min(0.5, max(deadline - loop.time(), 0.0)))
        if loop.time() >= deadline:
            break
        if not once:
            task.cancel()
    if not task.done():
        log.error("background task did not stop", extra={"task": task.get_name()})
    elif not task.cancelled() and task.exception() is not None:
        log.error(
            "background task failed", extra={"task": task.get_name()}, exc_info=task.exception()
        )


async def finish(task: asyncio.Task[Any], timeout_s: float) -> None:
    """Let a task told to stop (a consume loop) end by itself for up to `timeout_s`, then
    `cancel` it. Its own error is not raised again: it logged why it stopped, and its owner
    still closes all."""
    await asyncio.wait({task}, timeout=timeout_s)
    if not task.done():
        await cancel(task, timeout_s, once=True)
    elif not task.cancelled():
        task.exception()  # seen: reported by the loop itself


class Worker(Protocol):
    """A background worker with a lifetime and metrics (a consumer, a relay, ...)."""

    registry: CollectorRegistry

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    @property
    def alive(self) -> bool: ...


def worker_app(
    worker: Worker,
    dependencies: Callable[[], Awaitable[dict[str, bool]]] | None = None,
) -> web.Application:
    """An app whose lifetime is the worker's, serving `shared.probes`: `/readyz` is 503 once the
    worker stopped, or while one of its `dependencies` does not answer (naming each); `/metrics`
    is the worker's registry."""
    app = web.Application()

    async def ready() -> Readiness:
        if not worker.alive:
            return "stopped", {}
        found = await dependencies() if dependencies is not None else {}
        return ("ok" if all(found.values()) else "degraded"), dict(found)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        await worker.start()
        try:
            yield
        finally:
            await worker.stop()

    app.cleanup_ctx.append(lifetime)
    app[LOOP_ALIVE] = lambda: worker.alive
    Probes(worker.registry, ready).add_routes(app.router)
    return app
