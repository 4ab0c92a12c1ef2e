"""What every Clicktrack process shares: running an aiohttp app, the small HTTP face of a worker
(`/healthz`, `/readyz`, `/metrics`), and the batch loop of a Kafka consumer.

The counter, the webhook relay and the lag exporter serve their apps with these; the counter
has a consume loop of its own (`Counter._run`: two batches in flight, offsets in Postgres).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import suppress
from typing import Any, Protocol

import uvloop
from aiohttp import web
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from shared.logs import setup_logging

log = logging.getLogger(__name__)

Batches = dict[TopicPartition, list[ConsumerRecord]]

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
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    return context


async def finish(loop: asyncio.Task[None], timeout_s: float) -> None:
    """Let a consume loop told to stop end by itself for up to `timeout_s`, then cancel it. Its
    own error is not raised again: it logged why it stopped, and its owner still closes all."""
    try:
        await asyncio.wait_for(asyncio.shield(loop), timeout_s)
    except TimeoutError:
        loop.cancel()
        with suppress(asyncio.CancelledError):
            await loop
    except Exception:
        pass


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
    """An app whose lifetime is the worker's, serving `/healthz`, `/readyz` (503 once the worker
    stopped, or while one of its `dependencies` does not answer, naming each) and `/metrics`
    (the worker's registry)."""
    app = web.Application()

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        await worker.start()
        try:
            yield
        finally:
            await worker.stop()

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        if not worker.alive:
            return web.json_response({"status": "stopped"}, status=503)
        found = await dependencies() if dependencies is not None else {}
        ok = all(found.values())
        return web.json_response(
            {"status": "ok" if ok else "degraded", **found}, status=200 if ok else 503
        )

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(worker.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.cleanup_ctx.append(lifetime)
    app[LOOP_ALIVE] = lambda: worker.alive
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


class ConsumerLoop:
    """Feeds a consumer's batches to `process` until stopped.

    A batch that fails with one of `retriable` is logged, and after a second `rewind()` puts the
    consumer back where the last good batch ended, so it is read again. `stop()` lets the batch
    in hand finish for up to `stop_timeout_s`, then cancels it (idempotent).
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        process: Callable[[Batches], Awaitable[None]],
        rewind: Callable[[], Awaitable[None]],
        *,
        retriable: tuple[type[BaseException], ...],
        name: str,
        max_records: int,
        wait_ms: int = 200,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self._consumer = consumer
        self._process = process
        self._rewind = rewind
        self._retriable = retriable
        self._name = name
        self._max_records = max_records
        self._wait_ms = wait_ms
        self._stop_timeout_s = stop_timeout_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    @property
    def alive(self) -> bool:
        """True while the loop runs."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping.set()
        await finish(self._task, self._stop_timeout_s)
        self._task = None

    async def _run(self) -> None:
        try:
            await self._loop()
        except Exception:
            # the loop ends (/readyz says "stopped", `run_app` ends the process): say why
            log.exception("consume loop stopped by an unexpected error", extra={"loop": self._name})
            raise

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            batches: Any = await self._consumer.getmany(
                timeout_ms=self._wait_ms, max_records=self._max_records
            )
            if not batches:
                continue
            try:
                await self._process(batches)
            except self._retriable as exc:
                log.error("batch failed, retrying", extra={"loop": self._name, "error": repr(exc)})
                await asyncio.sleep(1)
                await self._rewind()
