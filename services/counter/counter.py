"""The counter: reads click events in batches and counts each exactly once.

Per batch: decode (unreadable records go to the dead-letter topic), one Postgres transaction that
counts and stores the offsets (`store.apply_batch`), then Redis takes the absolute values Postgres
returned, then the offsets are committed to Kafka for lag tools. On partition assignment the
consumer seeks to the offsets stored in Postgres, never to Kafka's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as Metric
from redis.exceptions import RedisError

from services.counter import store
from shared import db, events
from shared.counts import CountStore
from shared.errors import DependencyError, EventError
from shared.kafka import start_with_retries
from shared.redis_client import redis_client
from shared.settings import Settings

log = logging.getLogger(__name__)

BATCH_MAX_RECORDS = 2000
BATCH_WAIT_MS = 200
STOP_TIMEOUT_S = 30.0
RETRIABLE = (asyncpg.PostgresError, OSError, RedisError, KafkaError, DependencyError)


@dataclass
class CounterMetrics:
    consumed: Metric
    counted: Metric
    duplicates: Metric
    dead_lettered: Metric
    batch_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> CounterMetrics:
        return cls(
            consumed=Metric("clicktrack_events_consumed", "Records read", registry=registry),
            counted=Metric("clicktrack_events_counted", "New events counted", registry=registry),
            duplicates=Metric(
                "clicktrack_events_duplicate", "Redelivered events dropped", registry=registry
            ),
            dead_lettered=Metric(
                "clicktrack_events_dead_lettered", "Records sent to the DLQ", registry=registry
            ),
            batch_seconds=Histogram(
                "clicktrack_batch_seconds", "Time to count one batch", registry=registry
            ),
        )


class Counter:
    """Consumer-group member that keeps link counters in Postgres and Redis.

    `start()` connects everything and starts the loop; `stop()` finishes the batch in hand,
    commits it and closes everything (idempotent).
    """

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = CounterMetrics.create(self.registry)
        self._stack = AsyncExitStack()
        self._task: asyncio.Task[None] | None = None
        self._batch_lock = asyncio.Lock()
        self._pool: asyncpg.Pool | None = None
        self._counts: CountStore | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq: AIOKafkaProducer | None = None
        self.running = False
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        s = self.settings
        try:
            self._pool = await self._stack.enter_async_context(db.pool(s, max_size=4))
            redis = await self._stack.enter_async_context(redis_client(s))
            self._counts = CountStore(redis)
            self._dlq = AIOKafkaProducer(
                bootstrap_servers=s.kafka_bootstrap_servers, acks="all", enable_idempotence=True
            )
            await start_with_retries(self._dlq.start, "DLQ producer", s.kafka_bootstrap_servers)
            self._stack.push_async_callback(self._dlq.stop)
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=s.kafka_bootstrap_servers,
                group_id=s.counter_group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
            )
            self._consumer.subscribe([s.clicks_topic], listener=_SeekToStored(self))
            await start_with_retries(self._consumer.start, "consumer", s.kafka_bootstrap_servers)
            self._stack.push_async_callback(self._consumer.stop)
        except BaseException:
            await self._stack.aclose()
            raise
        self.running = True
        self._task = asyncio.create_task(self._run(), name="counter-loop")

    @property
    def alive(self) -> bool:
        """True while the consume loop runs."""
        return self.running and self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._stopping.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_TIMEOUT_S)
            except TimeoutError:
                self._task.cancel()
                with suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        self.running = False
        await self._stack.aclose()

    async def _run(self) -> None:
        assert self._consumer is not None
        while not self._stopping.is_set():
            batches = await self._consumer.getmany(
                timeout_ms=BATCH_WAIT_MS, max_records=BATCH_MAX_RECORDS
            )
            if not batches:
                continue
            try:
                await self._process(batches)
            except RETRIABLE as exc:
                # Nothing of the batch was stored: read it again from the stored offsets.
                log.error("batch failed, retrying", extra={"error": repr(exc)})
                await asyncio.sleep(1)
                await self.seek_to_stored(self._consumer.assignment())

    async def _process(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        assert self._pool and self._counts and self._consumer
        started = time.perf_counter()
        async with self._batch_lock:
            assigned = self._consumer.assignment()
            good: list[events.ClickEvent] = []
            next_offsets: dict[int, int] = {}
            for tp, records in batches.items():
                if tp not in assigned:
                    continue  # revoked while we waited for the lock: the new owner reads it
                for record in records:
                    try:
                        good.append(events.decode(record.value))
                    except EventError as exc:
                        await self._dead_letter(record, str(exc))
                next_offsets[tp.partition] = records[-1].offset + 1
                self.metrics.consumed.inc(len(records))
            if not next_offsets:
                return
            async with self._pool.acquire() as conn:
                result = await store.apply_batch(
                    conn,
                    group=self.settings.counter_group,
                    topic=self.settings.clicks_topic,
                    events=good,
                    next_offsets=next_offsets,
                )
            self.metrics.counted.inc(result.counted)
            self.metrics.duplicates.inc(result.duplicates)
            await self._counts.raise_to(result.counts)
            topic = self.settings.clicks_topic
            await self._consumer.commit(
                {TopicPartition(topic, p): o for p, o in next_offsets.items()}
            )
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def _dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        assert self._dlq is not None
        headers = [
            ("reason", reason.encode()),
            ("source_topic", record.topic.encode()),
            ("source_partition", str(record.partition).encode()),
            ("source_offset", str(record.offset).encode()),
        ]
        await self._dlq.send_and_wait(
            self.settings.dlq_topic, value=record.value, key=record.key, headers=headers
        )
        self.metrics.dead_lettered.inc()
        log.warning(
            "record dead-lettered",
            extra={"partition": record.partition, "offset": record.offset, "reason": reason},
        )

    async def seek_to_stored(self, partitions: set[TopicPartition]) -> None:
        """Position each assigned partition at the offset stored with the counts."""
        assert self._pool and self._consumer
        stored = await store.stored_offsets(
            self._pool, self.settings.counter_group, self.settings.clicks_topic
        )
        for tp in partitions:
            if tp.partition in stored:
                self._consumer.seek(tp, stored[tp.partition])
            else:
                # Nothing counted from it yet: start from the beginning (dedup makes it safe).
                await self._consumer.seek_to_beginning(tp)


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, counter: Counter) -> None:
        self._counter = counter

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Wait for the batch in hand to commit before the partitions move on.
        async with self._counter._batch_lock:
            pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._counter.seek_to_stored(assigned)
