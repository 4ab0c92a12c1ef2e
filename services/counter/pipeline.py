"""The counter's batch pipeline: read a batch, count it in Postgres, write Redis, two at a time.

Per batch: admit each record (unreadable ones go to the dead-letter topic), count and store the
offsets in Postgres (`store.apply_batch`), then Redis takes the absolute values Postgres
returned, then the offsets are committed to Kafka for lag tools only (`Positions.stored`).

Two batches are in flight: while one stores its offsets and writes Redis, the next one's
statements already run, so Postgres does not wait for the counter's Python side (about a quarter
faster in `bench/counter`; `docs/operations.md` has the figures). The rules that keep it exactly
once: a batch's offsets are stored only after the batch before it stored its own
(`EarlierBatchFailed` otherwise), and after a failure both are read again from the stored
offsets, where what was counted comes back as duplicates.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from services.counter import offsets as stored_offsets
from services.counter import retention, store
from services.counter.dead_letters import DeadLetters
from services.counter.intake import Click
from services.counter.metrics import CounterMetrics
from services.counter.owners import LinkOwners
from services.counter.positions import Offsets, Positions
from services.counter.reader import Read, Reader
from services.counter.rebuild import Healer
from services.counter.tombstones import Tombstones
from shared import db, kafka
from shared.errors import EarlierBatchFailed
from shared.service import cancel
from shared.settings import Settings

BATCHES_IN_FLIGHT = 2
"""Batches counted at once: one storing its offsets and writing Redis, the next counting."""
SPLIT_MIN_CLICKS = 500
"""A smaller batch is counted in one statement: splitting it would cost more than it saves."""
POSTGRES_FAILED = "Postgres did not answer: the batch is read again from the stored offsets"


@dataclass(frozen=True, slots=True)
class Parts:
    """What a started counter works with, built by `Counter.start()`."""

    pool: asyncpg.Pool
    consumer: AIOKafkaConsumer
    dead_letters: DeadLetters
    healer: Healer
    positions: Positions


class Pipeline:
    """Counts batches, two in flight; `step`, `recover` and `drain` make its consume loop."""

    def __init__(
        self, parts: Parts, settings: Settings, metrics: CounterMetrics, stopping: asyncio.Event
    ) -> None:
        self._parts = parts
        self._settings = settings
        self._metrics = metrics
        self._servers = settings.kafka.bootstrap_servers
        self.batch_lock = asyncio.Lock()
        """Held while a batch starts; the rebalance listener holds it to let none start."""
        self._reader = Reader(parts.consumer, settings, stopping, LinkOwners(parts.pool))
        self._in_flight: set[asyncio.Task[None]] = set()
        self._last_batch: asyncio.Task[None] | None = None
        self._ahead: asyncio.Task[Read] | None = None
        self._previous: asyncio.Task[None] | None = None
        self._partitions_lock = asyncio.Lock()
        self._known_days: set[date] = set()
        self._tombstones = Tombstones()

    async def step(self) -> None:
        """Read the next batch (or the one read ahead) and start counting it; wait for the batch
        before it, so that two are in flight at most. While idle, see that Redis is whole."""
        positions = self._parts.positions
        await positions.seek_pending()
        ahead, self._ahead = self._ahead, None
        read = await (ahead or self._reader.read())
        if read.records:
            # read and admit the next batch while Postgres stores this one
            self._ahead = asyncio.create_task(self._reader.read(), name="counter-read-ahead")
            batch = await self._begin(read)
            previous, self._previous = self._previous, batch
            if previous is not None:
                # this one's statements run while the one before finishes (offsets, Redis)
                await previous
        else:
            previous, self._previous = self._previous, None
            if previous is not None:
                await previous
            await self._parts.healer.check()
        positions.update_lag()

    async def recover(self, failure: BaseException) -> None:
        """After a failed step: what Postgres committed stays; the rest is read again from the
        stored offsets (the batches in flight end first)."""
        await self._drop_ahead()
        self._previous = None
        await self.settle()
        self._last_batch = None
        self._metrics.batch_failures.inc()
        self._parts.positions.seek_all_again()
        self._known_days.clear()

    async def drain(self) -> None:
        """When the loop ends: the batches in flight finish and store their offsets (what was
        read ahead is read again after a restart), and the last offsets reach Kafka."""
        await self._drop_ahead()
        await self.settle()
        await self._parts.positions.committed()

    async def settle(self) -> None:
        """Wait until no batch is in flight (none starts meanwhile: the loop is not reading, or
        the rebalance listener holds the batch lock); their failures are the loop's to report."""
        running = {task for task in self._in_flight if not task.done()}
        if running:
            await asyncio.wait(running)

    async def _drop_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            await cancel(ahead)

    async def _begin(self, read: Read) -> asyncio.Task[None] | None:
        """Start counting `read` (the records of partitions still ours); the task ends when its
        offsets are stored, after those of the batch started before it."""
        positions = self._parts.positions
        async with self.batch_lock:
            assigned = self._parts.consumer.assignment()
            clicks: list[Click] = []
            offsets: Offsets = {}
            rejected: list[tuple[ConsumerRecord, str]] = []
            for tp, records in read.records.items():
                if tp not in assigned or tp in positions.needs_seek or not records:
                    continue  # revoked, or read from a position we are about to correct
                # min and max: a rebalance while the batch filled may have re-sought it
                first, end = min(r.offset for r in records), max(r.offset for r in records) + 1
                if not positions.follows(tp, first, end):
                    continue  # records were skipped before it: read again from Postgres's
                clicks += read.clicks[tp]
                already_dead = positions.replay_until.get(tp.partition, -1)
                # a record below it was dead-lettered before a crash: do not send it twice
                rejected += [(r, why) for r, why in read.refused[tp] if r.offset >= already_dead]
                offsets[tp.partition] = (first, end)
                self._metrics.consumed.inc(len(records))
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
        offsets: Offsets,
        rejected: list[tuple[ConsumerRecord, str]],
        size: int,
        *,
        after: asyncio.Task[None] | None,
    ) -> None:
        started = time.perf_counter()
        with kafka.errors("dead-lettering refused records", self._servers):
            await self._parts.dead_letters.send(rejected)
        await self._ensure_partitions({c.day for c in clicks})
        result = await self._count(clicks, offsets, after)
        await self._parts.healer.write(result.counts)
        self._parts.positions.stored(offsets)
        self._metrics.batch_size.observe(size)
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        if result.counted:
            age = (datetime.now(UTC) - max(c.occurred for c in clicks)).total_seconds()
            self._metrics.click_to_count_seconds.observe(max(0.0, age))

    async def _count(
        self, clicks: list[Click], offsets: Offsets, after: asyncio.Task[None] | None
    ) -> store.BatchResult:
        """Count the batch and store its offsets in Postgres, never before the batch `after`
        (read before it) has stored its own.

        A big batch is split by campaign into `COUNTER_STATEMENTS` statements that run at once
        on their own connections (no two write the same row, so neither waits for the other),
        and the offsets are stored after all of them committed, and after `after` ended well.
        Still exactly once: each statement counts its events and records their ids in one
        transaction, so after a crash (or a failure of `after`) between the statements and the
        offsets, the batch is read again and what was already counted is a duplicate.
        """
        pool = self._parts.pool
        group, topic = self._settings.counter.group, self._settings.kafka.clicks_topic
        ways = self._settings.counter.statements if len(clicks) >= SPLIT_MIN_CLICKS else 1
        shares = store.split_by_campaign(clicks, ways) if ways > 1 else [clicks]
        if after is not None and after.done():
            _raise_if_failed(after)
            after = None
        if len(shares) < 2 and after is None:
            with db.errors(POSTGRES_FAILED):
                async with pool.acquire() as conn, conn.transaction():
                    kept = await self._tombstones.apply(conn, clicks)
                    result = await store.apply_batch(
                        conn, group=group, topic=topic, clicks=kept, offsets=offsets
                    )
            self._tally(result)
            return result

        async def count_share(share: list[Click]) -> store.BatchResult:
            with db.errors(POSTGRES_FAILED):
                async with pool.acquire() as conn, conn.transaction():
                    kept = await self._tombstones.apply(conn, share)
                    return await store.apply_batch(
                        conn, group=group, topic=topic, clicks=kept, offsets={}
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
        with db.errors(POSTGRES_FAILED):
            async with pool.acquire() as conn:
                await stored_offsets.store(conn, group=group, topic=topic, offsets=offsets)
        return store.BatchResult(
            counts=[c for r in results for c in r.counts],
            counted=sum(r.counted for r in results),
            duplicates=sum(r.duplicates for r in results),
        )

    def _tally(self, result: store.BatchResult) -> None:
        self._metrics.counted.inc(result.counted)
        self._metrics.duplicates.inc(result.duplicates)

    async def _ensure_partitions(self, days: set[date]) -> None:
        if days <= self._known_days:
            return
        async with self._partitions_lock:  # two batches in flight: one creates, the other waits
            missing = days - self._known_days
            if missing:
                with db.errors(POSTGRES_FAILED):
                    async with self._parts.pool.acquire() as conn:
                        await retention.ensure_partitions(conn, missing)
                self._known_days |= missing


def _raise_if_failed(earlier: asyncio.Task[None]) -> None:
    """Fail with `EarlierBatchFailed` if the (ended) batch read before this one did not store its
    offsets: this one's must not be stored past them."""
    if earlier.cancelled() or earlier.exception() is not None:
        raise EarlierBatchFailed("the batch before this one failed: both are read again")


def _batch_done(task: asyncio.Task[None]) -> None:
    """Mark a batch's failure seen: the loop reports the first failure it awaits, and a batch
    that started after it fails with it (`EarlierBatchFailed`) without being awaited."""
    if not task.cancelled():
        task.exception()
