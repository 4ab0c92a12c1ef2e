"""The counter: a consumer-group member that reads click events in batches and counts each
exactly once, in Postgres (the truth) and Redis (a copy for fast reads).

Its parts, by role: `pipeline` (the batches, two in flight), `positions` (where each partition
is read from, decided by the offsets stored in Postgres), `rebuild` (Redis written, and rebuilt
when it lost its counters), `retention` (the partitions of the event ids and of the per-person
data, created ahead and dropped when expired, every hour). Its loop is a
`shared.consume.ConsumerLoop`.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack, suppress
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from prometheus_client import CollectorRegistry

from services.counter import retention, store
from services.counter.dead_letters import DeadLetters
from services.counter.metrics import CounterMetrics
from services.counter.pipeline import Parts, Pipeline
from services.counter.positions import Positions
from services.counter.rebuild import Healer
from shared import db
from shared.consume import ConsumerLoop
from shared.counts import CountStore
from shared.erasure import prune_tombstones
from shared.errors import ClicktrackError, retriable
from shared.kafka import dead_letter_producer, start_with_retries
from shared.redis_client import redis_client
from shared.service import cancel
from shared.settings import Settings

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0
MAINTENANCE_S = 3600.0
"""Interval of the partition maintenance (create ahead, move the visitor epoch, drop expired:
`retention.maintain`), seconds."""


class Counter:
    """Consumer-group member that keeps click counters in Postgres and Redis.

    `start()` connects everything and starts the loop; `stop()` finishes the batches in hand,
    stores and commits their offsets and closes everything (idempotent).
    """

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = CounterMetrics.create(self.registry)
        self._stack = AsyncExitStack()
        self._loop: ConsumerLoop | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._dependencies: tuple[asyncpg.Pool, CountStore] | None = None

    async def start(self) -> None:
        s = self.settings
        try:
            pool = await self._stack.enter_async_context(
                db.pool(
                    s.postgres, max_size=s.counter.statements + 3, server_settings=store.PLANNER
                )
            )
            counts = CountStore(await self._stack.enter_async_context(redis_client(s.redis)))
            dlq = await dead_letter_producer(
                self._stack, s.kafka, "DLQ producer", [s.kafka.clicks_topic, s.kafka.dlq_topic]
            )
            consumer = AIOKafkaConsumer(
                bootstrap_servers=s.kafka.bootstrap_servers,
                group_id=s.counter.group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                session_timeout_ms=s.counter.session_timeout_ms,
                heartbeat_interval_ms=max(100, s.counter.session_timeout_ms // 4),
                group_instance_id=s.counter.instance_id,
            )
            parts = Parts(
                pool=pool,
                consumer=consumer,
                dead_letters=DeadLetters(dlq, s.kafka.dlq_topic, self.metrics.dead_lettered),
                healer=Healer(pool, counts, self.metrics.redis_rebuilds),
                positions=Positions(consumer, pool, s, self.metrics.lag, self.metrics.offset_gaps),
            )
            stopping = asyncio.Event()  # the pipeline stops filling a batch when the loop stops
            pipeline = Pipeline(parts, s, self.metrics, stopping)
            loop = ConsumerLoop(
                pipeline.step,
                pipeline.recover,
                drain=pipeline.drain,
                name="counter-loop",
                stopping=stopping,
                stop_timeout_s=STOP_TIMEOUT_S,
            )
            consumer.subscribe(
                [s.kafka.clicks_topic], listener=_SeekToStored(parts.positions, pipeline)
            )
            await start_with_retries(consumer.start, "consumer", s.kafka.bootstrap_servers)
            self._stack.push_async_callback(consumer.stop)
        except BaseException:
            await self._stack.aclose()
            raise
        self._dependencies = pool, counts
        self._loop = loop
        loop.start()
        self._maintenance = asyncio.create_task(self._maintain(pool), name="counter-maintenance")

    @property
    def alive(self) -> bool:
        """True while the consume loop runs."""
        return self._loop is not None and self._loop.alive

    async def dependencies_ok(self) -> dict[str, bool]:
        """Whether Postgres and Redis answer right now (one second each)."""
        found = {"postgres": False, "redis": False}
        if self._dependencies is None:
            return found
        pool, counts = self._dependencies
        with suppress(ClicktrackError, TimeoutError):
            with db.errors("Postgres did not answer"):
                found["postgres"] = await asyncio.wait_for(pool.fetchval("SELECT 1"), 1) == 1
        with suppress(ClicktrackError, TimeoutError):
            found["redis"] = await asyncio.wait_for(counts.ping(), 1)
        return found

    async def stop(self) -> None:
        """Finish and commit the batches in hand, then close everything; safe to call twice."""
        if self._maintenance is not None:
            await cancel(self._maintenance)
            self._maintenance = None
        if self._loop is not None:
            await self._loop.stop()
        await self._stack.aclose()

    async def _maintain(self, pool: asyncpg.Pool) -> None:
        while True:
            try:
                with db.errors("Postgres did not answer: partitions are maintained next time"):
                    async with pool.acquire() as conn:
                        keep_days = self.settings.counter.dedup_retention_days
                        changed = await retention.maintain(
                            conn,
                            keep_days=keep_days,
                            visitor_days=self.settings.counter.visitor_retention_days,
                            today=datetime.now(UTC).date(),
                        )
                        # an erasure's old pseudonym: no longer on the topic, so no longer here
                        await prune_tombstones(conn, timedelta(days=keep_days))
                if changed:
                    log.info("partitions maintained", extra={"created_or_dropped": changed})
            except Exception as exc:
                if not retriable(exc):
                    raise
                log.warning("partition maintenance failed", extra={"error": repr(exc)})
            await asyncio.sleep(MAINTENANCE_S)


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    """Finishes the batches in hand before partitions move; positions new ones from Postgres."""

    def __init__(self, positions: Positions, pipeline: Pipeline) -> None:
        self._positions = positions
        self._pipeline = pipeline

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._pipeline.batch_lock:  # no batch starts meanwhile
            await self._pipeline.settle()  # the batches in flight store their offsets first
            self._positions.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._positions.needs_seek |= assigned
        try:
            await self._positions.seek_to_stored(set(assigned))
        except ClicktrackError as exc:
            # The loop seeks them before it counts anything from them.
            log.warning("cannot read stored offsets yet", extra={"error": repr(exc)})
