"""The counter: reads click events in batches and counts each exactly once.

Per batch: admit each record (unreadable ones go to the dead-letter topic), one Postgres
transaction that counts and stores the offsets (`store.apply_batch`), then Redis takes the
absolute values Postgres returned, then the offsets are committed to Kafka for lag tools only.

Where to read from is decided by Postgres, never by Kafka: on partition assignment, and after any
failure, a partition is positioned at the first offset of the last batch stored for it. That
batch is read again as duplicates (nothing is counted twice), and its Redis write happens again,
which heals Redis after a crash between the Postgres commit and the Redis write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from services.counter import rebuild, retention, store
from services.counter.dead_letters import DeadLetters
from services.counter.intake import Click, admit
from services.counter.metrics import CounterMetrics
from shared import db
from shared.counts import Counts, CountStore, RedisEmptyError
from shared.errors import DependencyError, EventError
from shared.kafka import require_topics, start_with_retries
from shared.redis_client import redis_client
from shared.service import finish
from shared.settings import Settings

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0
RETRY_S = 1.0
"""Pause after a failed batch before reading it again, seconds."""
COMMIT_TIMEOUT_S = 10.0
"""Longest wait for the advisory Kafka offset commit, seconds."""
REDIS_CHECK_S = 5.0
"""How often an idle counter checks that Redis still holds its counters, seconds."""
SPLIT_MIN_CLICKS = 500
"""A smaller batch is counted in one statement: splitting it would cost more than it saves."""
MAINTENANCE_S = 3600.0
"""Interval of the partition maintenance (create ahead, drop expired), seconds."""


class EarlierBatchFailed(Exception):
    """The batch read before this one failed: this one's offsets must not be stored."""


RETRIABLE = (
    EarlierBatchFailed,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # A connection whose server went away mid-statement can fail its reset on release ("cannot
    # switch to state 15; another operation is in progress"); the pool closes that connection.
    asyncpg.InternalClientError,
    OSError,
    RedisError,
    RedisEmptyError,
    KafkaError,
    DependencyError,
    TimeoutError,
)


class Counter:
    """Consumer-group member that keeps click counters in Postgres and Redis.

    `start()` connects everything and starts the loop; `stop()` finishes the batch in hand,
    commits it and closes everything (idempotent).
    """

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = CounterMetrics.create(self.registry)
        self._stack = AsyncExitStack()
        self._task: asyncio.Task[None] | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._committing: asyncio.Task[None] | None = None
        self._batch_lock = asyncio.Lock()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._last_batch: asyncio.Task[None] | None = None
        self._partitions_lock = asyncio.Lock()
        self._pool: asyncpg.Pool | None = None
        self._counts: CountStore | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._dead_letters: DeadLetters | None = None
        self._stopping = asyncio.Event()
        self._needs_seek: set[TopicPartition] = set()
        self._replay_until: dict[int, int] = {}
        self._positions: dict[int, int] = {}
        self._known_days: set[date] = set()
        self._redis_checked = 0.0
        self.running = False

    async def start(self) -> None:
        s = self.settings
        try:
            self._pool = await self._stack.enter_async_context(
                db.pool(s, max_size=s.counter_statements + 2, server_settings=store.PLANNER)
            )
            redis = await self._stack.enter_async_context(redis_client(s))
            self._counts = CountStore(redis)
            dlq = AIOKafkaProducer(
                bootstrap_servers=s.kafka_bootstrap_servers, acks="all", enable_idempotence=True
            )
            await start_with_retries(dlq.start, "DLQ producer", s.kafka_bootstrap_servers)
            self._stack.push_async_callback(dlq.stop)
            await require_topics(dlq, [s.clicks_topic, s.dlq_topic], s.kafka_bootstrap_servers)
            self._dead_letters = DeadLetters(dlq, s.dlq_topic, self.metrics.dead_lettered)
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=s.kafka_bootstrap_servers,
                group_id=s.counter_group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                session_timeout_ms=s.counter_session_timeout_ms,
                heartbeat_interval_ms=max(100, s.counter_session_timeout_ms // 4),
                group_instance_id=s.counter_instance_id,
            )
            self._consumer.subscribe([s.clicks_topic], listener=_SeekToStored(self))
            await start_with_retries(self._consumer.start, "consumer", s.kafka_bootstrap_servers)
            self._stack.push_async_callback(self._consumer.stop)
        except BaseException:
            await self._stack.aclose()
            raise
        self.running = True
        self._task = asyncio.create_task(self._run(), name="counter-loop")
        self._maintenance = asyncio.create_task(self._maintain(), name="counter-maintenance")

    @property
    def alive(self) -> bool:
        """True while the consume loop runs."""
        return self.running and self._task is not None and not self._task.done()

    async def dependencies_ok(self) -> dict[str, bool]:
        """Whether Postgres and Redis answer right now (one second each)."""
        assert self._pool and self._counts
        found = {"postgres": False, "redis": False}
        with suppress(*RETRIABLE):
            found["postgres"] = await asyncio.wait_for(self._pool.fetchval("SELECT 1"), 1) == 1
        with suppress(*RETRIABLE):
            found["redis"] = await asyncio.wait_for(self._counts.ping(), 1)
        return found

    async def stop(self) -> None:
        """Finish and commit the batch in hand, then close everything; safe to call twice."""
        self._stopping.set()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        if self._task is not None:
            await finish(self._task, STOP_TIMEOUT_S)
            self._task = None
        self.running = False
        await self._stack.aclose()

    async def _run(self) -> None:
        assert self._consumer is not None
        ahead: asyncio.Task[_Read] | None = None
        previous: asyncio.Task[None] | None = None
        try:
            while not self._stopping.is_set():
                try:
                    await self._seek_pending()
                    read = await (ahead or self._read())
                    ahead = None
                    if read.records:
                        # read and admit the next batch while Postgres stores this one
                        ahead = asyncio.create_task(self._read(), name="counter-read-ahead")
                        batch = await self._begin(read)
                        if previous is not None:
                            # two batches in flight at most: this one's statements run while
                            # the one before finishes (offsets, Redis), so Postgres never idles
                            await previous
                        previous = batch
                        if previous is not None and self.settings.counter_batches_in_flight < 2:
                            await previous  # one batch at a time: counted to the end now
                            previous = None
                    else:
                        if previous is not None:
                            await previous
                            previous = None
                        await self._check_redis()
                    self._update_lag()
                except RETRIABLE as exc:
                    # What Postgres committed stays; the rest is read again from stored offsets.
                    await _drop(ahead)
                    ahead = previous = None
                    await self._settle()
                    self._last_batch = None
                    self.metrics.batch_failures.inc()
                    log.error("batch failed, reading it again", extra={"error": repr(exc)})
                    self._needs_seek |= self._consumer.assignment()
                    self._known_days.clear()
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), RETRY_S)
        except Exception:
            # the loop ends (/readyz says "stopped"): say why, or nothing would
            log.exception("counter loop stopped by an unexpected error")
            raise
        finally:
            await _drop(ahead)  # read ahead but not counted: read again after a restart
            await self._settle()  # the batches in flight finish and store their offsets
            if self._committing is not None:
                # the last batch's offsets reach Kafka before the consumer stops
                await asyncio.wait({self._committing})

    async def _settle(self) -> None:
        """Wait until no batch is in flight (none starts meanwhile: the loop is not reading, or
        the rebalance listener holds the batch lock); their failures are the loop's to report."""
        running = {task for task in self._in_flight if not task.done()}
        if running:
            await asyncio.wait(running)

    async def _read(self) -> _Read:
        """The next batch, each record admitted (a `Click`) or refused with its reason."""
        batches = await self._fetch_batch()
        read = _Read(batches, {}, {})
        limit = self.settings.event_max_bytes
        now = datetime.now(UTC)
        for tp, records in batches.items():
            clicks: list[Click] = []
            refused: list[tuple[ConsumerRecord, str]] = []
            for record in records:
                try:
                    clicks.append(admit(record.value, max_bytes=limit, now=now))
                except EventError as exc:
                    refused.append((record, str(exc)))
            read.clicks[tp], read.refused[tp] = clicks, refused
        return read

    async def _fetch_batch(self) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Up to `counter_batch_max_records` records, waiting at most `counter_batch_wait_ms` to
        fill the batch: `getmany` alone returns whatever one fetch brought, often a few hundred
        records, and each batch costs one transaction."""
        assert self._consumer is not None
        s = self.settings
        deadline = time.monotonic() + s.counter_batch_wait_ms / 1000
        merged: dict[TopicPartition, list[ConsumerRecord]] = {}
        count = 0
        while count < s.counter_batch_max_records and not self._stopping.is_set():
            left_ms = int((deadline - time.monotonic()) * 1000)
            got = await self._consumer.getmany(
                timeout_ms=max(0, left_ms), max_records=s.counter_batch_max_records - count
            )
            for tp, records in got.items():
                merged.setdefault(tp, []).extend(records)
                count += len(records)
            if left_ms <= 0:
                break
        return merged

    async def _begin(self, read: _Read) -> asyncio.Task[None] | None:
        """Start counting `read` (the records of partitions still ours); the task ends when its
        offsets are stored, after those of the batch started before it."""
        assert self._consumer is not None
        async with self._batch_lock:
            assigned = self._consumer.assignment()
            clicks: list[Click] = []
            offsets: dict[int, tuple[int, int]] = {}
            rejected: list[tuple[ConsumerRecord, str]] = []
            for tp, records in read.records.items():
                if tp not in assigned or tp in self._needs_seek or not records:
                    continue  # revoked, or read from a position we are about to correct
                clicks += read.clicks[tp]
                already_dead = self._replay_until.get(tp.partition, -1)
                # a record below it was dead-lettered before a crash: do not send it twice
                rejected += [(r, why) for r, why in read.refused[tp] if r.offset >= already_dead]
                # min and max: a rebalance while the batch filled may have re-sought it
                offsets[tp.partition] = (
                    min(r.offset for r in records),
                    max(r.offset for r in records) + 1,
                )
                self.metrics.consumed.inc(len(records))
            if not offsets:
                return None
            size = sum(len(r) for r in read.records.values())
            task = asyncio.create_task(
                self._process(clicks, offsets, rejected, size, after=self._last_batch),
                name="counter-batch",
            )
            self._in_flight.add(task)
            task.add_done_callback(_batch_done)
            task.add_done_callback(self._in_flight.discard)
            self._last_batch = task
            return task

    async def _process(
        self,
        clicks: list[Click],
        offsets: dict[int, tuple[int, int]],
        rejected: list[tuple[ConsumerRecord, str]],
        size: int,
        *,
        after: asyncio.Task[None] | None,
    ) -> None:
        assert self._pool and self._counts and self._dead_letters
        started = time.perf_counter()
        await self._dead_letters.send(rejected)
        await self._ensure_partitions({c.day for c in clicks})
        result = await self._count(clicks, offsets, after)
        self._positions.update({p: o[1] for p, o in offsets.items()})
        await self._write_redis(result.counts)
        self._commit_in_background(offsets)
        self.metrics.batch_size.observe(size)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        if result.counted:
            age = (datetime.now(UTC) - max(c.occurred for c in clicks)).total_seconds()
            self.metrics.click_to_count_seconds.observe(max(0.0, age))

    async def _count(
        self,
        clicks: list[Click],
        offsets: dict[int, tuple[int, int]],
        after: asyncio.Task[None] | None,
    ) -> store.BatchResult:
        """Count the batch and store its offsets in Postgres, never before the batch `after`
        (read before it) has stored its own.

        A big batch is split by campaign into `counter_statements` statements that run at once
        on their own connections (no two write the same row, so neither waits for the other),
        and the offsets are stored after all of them committed, and after `after` ended well.
        Still exactly once: each statement counts its events and records their ids in one
        transaction, so after a crash (or a failure of `after`) between the statements and the
        offsets, the batch is read again and what was already counted is a duplicate.
        """
        assert self._pool is not None
        group, topic = self.settings.counter_group, self.settings.clicks_topic
        ways = self.settings.counter_statements if len(clicks) >= SPLIT_MIN_CLICKS else 1
        shares = store.split_by_campaign(clicks, ways) if ways > 1 else [clicks]
        if after is not None and after.done():
            _raise_if_failed(after)
            after = None
        if len(shares) < 2 and after is None:
            async with self._pool.acquire() as conn:
                result = await store.apply_batch(
                    conn, group=group, topic=topic, clicks=clicks, offsets=offsets
                )
            self._tally(result)
            return result

        async def count_share(share: list[Click]) -> store.BatchResult:
            assert self._pool is not None
            async with self._pool.acquire() as conn:
                return await store.apply_batch(
                    conn, group=group, topic=topic, clicks=share, offsets={}
                )

        done = await asyncio.gather(*map(count_share, shares), return_exceptions=True)
        results = [r for r in done if isinstance(r, store.BatchResult)]
        for result in results:
            self._tally(result)  # committed: counted now, whatever happens to the offsets
        failed = [r for r in done if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
        if after is not None:
            await asyncio.wait({after})
            _raise_if_failed(after)
        async with self._pool.acquire() as conn:
            await store.store_offsets(conn, group=group, topic=topic, offsets=offsets)
        return store.BatchResult(
            counts=[c for r in results for c in r.counts],
            counted=sum(r.counted for r in results),
            duplicates=sum(r.duplicates for r in results),
        )

    def _tally(self, result: store.BatchResult) -> None:
        self.metrics.counted.inc(result.counted)
        self.metrics.duplicates.inc(result.duplicates)

    async def _ensure_partitions(self, days: set[date]) -> None:
        assert self._pool is not None
        if days <= self._known_days:
            return
        async with self._partitions_lock:  # two batches in flight: one creates, the other waits
            missing = days - self._known_days
            if missing:
                async with self._pool.acquire() as conn:
                    await retention.ensure_partitions(conn, missing)
                self._known_days |= missing

    async def _write_redis(self, counts: list[Counts]) -> None:
        assert self._pool and self._counts
        try:
            await self._counts.raise_to(counts)
        except RedisEmptyError:
            log.warning("redis has lost its counters: rebuilding them from postgres")
            self.metrics.redis_rebuilds.inc()
            await rebuild.rebuild(self._pool, self._counts)
            await self._counts.raise_to(counts)
        self._redis_checked = time.monotonic()

    async def _check_redis(self) -> None:
        """While idle, rebuild Redis if it lost its counters (checked every `REDIS_CHECK_S`)."""
        assert self._pool and self._counts
        now = time.monotonic()
        if now - self._redis_checked < REDIS_CHECK_S:
            return
        self._redis_checked = now
        if not await self._counts.is_complete():
            log.warning("redis has lost its counters: rebuilding them from postgres")
            self.metrics.redis_rebuilds.inc()
            await rebuild.rebuild(self._pool, self._counts)

    def _commit_in_background(self, offsets: dict[int, tuple[int, int]]) -> None:
        """Commit `offsets` to Kafka without holding up the next batch: the commit is advisory
        (lag tools read it), a round trip to the broker, and Postgres already has the offsets.
        Commits still land in order: each waits for the one before it."""
        self._committing = asyncio.create_task(
            self._commit_after(self._committing, offsets), name="counter-kafka-commit"
        )

    async def _commit_after(
        self, previous: asyncio.Task[None] | None, offsets: dict[int, tuple[int, int]]
    ) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        await self._commit_to_kafka(offsets)

    async def _commit_to_kafka(self, offsets: dict[int, tuple[int, int]]) -> None:
        assert self._consumer is not None
        topic = self.settings.clicks_topic
        try:
            await asyncio.wait_for(
                self._consumer.commit({TopicPartition(topic, p): o[1] for p, o in offsets.items()}),
                COMMIT_TIMEOUT_S,
            )
        except (KafkaError, TimeoutError) as exc:
            # Advisory only (lag tools read it): the counts and offsets are safe in Postgres.
            log.warning("kafka offset commit failed", extra={"error": repr(exc)})

    def _update_lag(self) -> None:
        assert self._consumer is not None
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            at = self._positions.get(tp.partition)
            if end is not None and at is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, end - at))

    async def _seek_pending(self) -> None:
        if self._needs_seek:
            await self.seek_to_stored(set(self._needs_seek))

    async def seek_to_stored(self, partitions: set[TopicPartition]) -> None:
        """Position each partition at the first offset of the last batch stored for it."""
        assert self._pool and self._consumer
        assigned = self._consumer.assignment()
        stored = await store.resume_points(
            self._pool, self.settings.counter_group, self.settings.clicks_topic
        )
        for tp in partitions:
            self._needs_seek.discard(tp)
            if tp not in assigned:
                continue
            point = stored.get(tp.partition)
            if point is None:
                # Nothing counted from it yet: start from the beginning (dedup makes it safe).
                await self._consumer.seek_to_beginning(tp)
                self._replay_until[tp.partition] = -1
                continue
            self._consumer.seek(tp, point.replay_from)
            self._replay_until[tp.partition] = point.next_offset
            self._positions[tp.partition] = point.next_offset

    async def _maintain(self) -> None:
        assert self._pool is not None
        while True:
            try:
                async with self._pool.acquire() as conn:
                    changed = await retention.maintain(
                        conn,
                        keep_days=self.settings.dedup_retention_days,
                        today=datetime.now(UTC).date(),
                    )
                if changed:
                    log.info("partitions maintained", extra={"created_or_dropped": changed})
            except RETRIABLE as exc:
                log.warning("partition maintenance failed", extra={"error": repr(exc)})
            await asyncio.sleep(MAINTENANCE_S)


@dataclass(frozen=True, slots=True)
class _Read:
    """A batch read from Kafka, per partition: the records, and each one admitted or refused."""

    records: dict[TopicPartition, list[ConsumerRecord]]
    clicks: dict[TopicPartition, list[Click]]
    refused: dict[TopicPartition, list[tuple[ConsumerRecord, str]]]


def _raise_if_failed(earlier: asyncio.Task[None]) -> None:
    """Fail with `EarlierBatchFailed` if the (ended) batch read before this one did not store its
    offsets: this one's must not be stored past them."""
    if earlier.cancelled() or earlier.exception() is not None:
        raise EarlierBatchFailed


def _batch_done(task: asyncio.Task[None]) -> None:
    """Mark a batch's failure seen: the loop reports the first failure it awaits, and a batch
    that started after it fails with it (`EarlierBatchFailed`) without being awaited."""
    if not task.cancelled():
        task.exception()


async def _drop(task: asyncio.Task[_Read] | None) -> None:
    """Cancel a read-ahead whose records will not be counted."""
    if task is not None:
        task.cancel()
        with suppress(asyncio.CancelledError, *RETRIABLE):
            await task


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    """Finishes the batch in hand before partitions move; positions new ones from Postgres."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._counter._batch_lock:  # no batch starts meanwhile
            await self._counter._settle()  # the batches in flight store their offsets first
            for tp in revoked:
                self._counter._positions.pop(tp.partition, None)
                with suppress(KeyError):
                    self._counter.metrics.lag.remove(tp.topic, str(tp.partition))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._counter._needs_seek |= assigned
        try:
            await self._counter.seek_to_stored(set(assigned))
        except RETRIABLE as exc:
            # The loop seeks them before it counts anything from them.
            log.warning("cannot read stored offsets yet", extra={"error": repr(exc)})
