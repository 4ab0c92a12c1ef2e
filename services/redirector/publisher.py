"""Hands click events to Kafka without making the visitor wait.

`publish()` only puts the event in a bounded in-memory queue; a background task drains the queue
in batches into an idempotent aiokafka producer. The queue is the seam where the no-loss spool
goes (issue: redirector): today an event that finds the queue full, or whose send fails after the
producer's own retries, is counted in metrics and logged.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.kafka import start_with_retries
from shared.settings import Settings

log = logging.getLogger(__name__)

BATCH_MAX = 500
SEND_TIMEOUT_S = 30.0


class Publisher:
    """A bounded queue of (key, value) records and the task that sends them to one topic."""

    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        self._settings = settings
        self._topic = settings.clicks_topic
        self._queue: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue(settings.publish_queue_size)
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self.healthy = False
        self._published = Counter(
            "clicktrack_events_published", "Click events acknowledged by Kafka", registry=registry
        )
        self._failed = Counter(
            "clicktrack_events_publish_failed",
            "Click events Kafka did not acknowledge",
            registry=registry,
        )
        self._dropped = Counter(
            "clicktrack_events_dropped_queue_full",
            "Click events that found the publish queue full",
            registry=registry,
        )
        Gauge(
            "clicktrack_publish_queue_depth", "Events waiting to be sent", registry=registry
        ).set_function(self._queue.qsize)

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            compression_type="gzip",
            request_timeout_ms=15_000,
        )
        await start_with_retries(
            producer.start, "click producer", self._settings.kafka_bootstrap_servers
        )
        self._producer = producer
        self.healthy = True
        self._task = asyncio.create_task(self._run(), name="click-publisher")

    def publish(self, key: bytes, value: bytes) -> bool:
        """Queue one record; never waits. False when the queue is full (the event is not sent)."""
        try:
            self._queue.put_nowait((key, value))
        except asyncio.QueueFull:
            self._dropped.inc()
            log.error("publish queue full, click event dropped", extra={"key": key.decode()})
            return False
        return True

    async def stop(self) -> None:
        """Send what is queued, flush the producer and close it. Safe to call twice."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._producer is not None:
            await self._producer.stop()  # flushes what the accumulator holds
            self._producer = None
        self.healthy = False

    async def _run(self) -> None:
        assert self._producer is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH_MAX and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._send(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _send(self, batch: list[tuple[bytes, bytes]]) -> None:
        assert self._producer is not None
        try:
            futures = [
                await self._producer.send(self._topic, value=value, key=key) for key, value in batch
            ]
            results = await asyncio.wait_for(
                asyncio.gather(*futures, return_exceptions=True), SEND_TIMEOUT_S
            )
        except (KafkaError, TimeoutError) as exc:
            self.healthy = False
            self._failed.inc(len(batch))
            log.error(
                "click events not published", extra={"events": len(batch), "error": repr(exc)}
            )
            return
        failed = sum(isinstance(r, BaseException) for r in results)
        self._published.inc(len(batch) - failed)
        if failed:
            self.healthy = False
            self._failed.inc(failed)
            log.error("click events not published", extra={"events": failed})
        else:
            self.healthy = True
