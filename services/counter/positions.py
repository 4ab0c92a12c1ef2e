"""Where the counter reads each partition from, and what it tells Kafka and Prometheus of it.

Postgres decides, never Kafka: on partition assignment, and after any failure, a partition is
positioned at the first offset of the last batch stored for it (`offsets.resume_points`). That
batch is read again as duplicates (nothing is counted twice), and its Redis write happens again,
which heals Redis after a crash between the Postgres commit and the Redis write.

A batch is counted only if it starts where the batches before it on the partition ended, or
before (`follows`): records skipped between two batches would otherwise be passed by the stored
offsets without ever being counted. A gap is logged and counted (`clicktrack_offset_gaps`), the
partition is sought again from Postgres, and a gap found again in the same place after that
seek is taken as real (records the log no longer holds: retention, transaction markers).

The offsets are also committed to Kafka, in order and in the background, for lag tools only.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Counter, Gauge

from services.counter.offsets import resume_points
from shared import db, kafka
from shared.errors import DependencyError
from shared.settings import Settings

log = logging.getLogger(__name__)

COMMIT_TIMEOUT_S = 10.0
"""Longest wait for the advisory Kafka offset commit, seconds."""

Offsets = dict[int, tuple[int, int]]
"""partition -> (first offset of a batch, offset after its last record)."""


class Positions:
    """The read positions of one counter's consumer, sought from the offsets in Postgres."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        pool: asyncpg.Pool,
        settings: Settings,
        lag: Gauge,
        gaps: Counter,
    ) -> None:
        self._consumer = consumer
        self._pool = pool
        self._group, self._topic = settings.counter.group, settings.kafka.clicks_topic
        self._servers = settings.kafka.bootstrap_servers
        self._lag = lag
        self._gap_count = gaps
        self.needs_seek: set[TopicPartition] = set()
        """Partitions to position before anything read from them counts."""
        self.replay_until: dict[int, int] = {}
        """partition -> the offset after the last batch stored: a record below it that is
        refused was dead-lettered before, and is not sent twice."""
        self._next: dict[int, int] = {}
        self._read_to: dict[int, int] = {}
        """partition -> where the next batch must start, at the latest: the first offset after
        the last batch taken, or the first not yet counted when the partition was sought."""
        self._gaps: dict[int, tuple[int, int]] = {}
        """partition -> (expected, found) of the last gap, until a batch follows on."""
        self._committing: asyncio.Task[None] | None = None

    def seek_all_again(self) -> None:
        """After a failure: every assigned partition is sought again before it counts."""
        self.needs_seek |= self._consumer.assignment()

    async def seek_pending(self) -> None:
        if self.needs_seek:
            await self.seek_to_stored(set(self.needs_seek))

    async def seek_to_stored(self, partitions: set[TopicPartition]) -> None:
        """Position each partition at the first offset of the last batch stored for it."""
        assigned = self._consumer.assignment()
        with db.errors("Postgres did not answer: the stored offsets are read again"):
            stored = await resume_points(self._pool, self._group, self._topic)
        with kafka.errors("seeking to the stored offsets", self._servers):
            for tp in partitions:
                self.needs_seek.discard(tp)
                if tp not in assigned:
                    continue
                point = stored.get(tp.partition)
                if point is None:
                    # Nothing counted from it yet: start from the beginning (dedup makes it safe).
                    await self._consumer.seek_to_beginning(tp)
                    self.replay_until[tp.partition] = -1
                    self._read_to.pop(tp.partition, None)  # the log's first offset, unknown
                    continue
                self._consumer.seek(tp, point.replay_from)
                self.replay_until[tp.partition] = point.next_offset
                self._next[tp.partition] = point.next_offset
                self._read_to[tp.partition] = point.next_offset  # the first not yet counted

    def follows(self, tp: TopicPartition, first: int, end: int) -> bool:
        """Whether a batch holding offsets `first` to `end - 1` of `tp` may be counted: it starts
        where the batches taken before it ended, or before (what it repeats is a duplicate). If
        not, the partition is sought again before anything more of it counts."""
        expected = self._read_to.get(tp.partition, first)
        if first > expected:
            where = {"partition": tp.partition, "expected": expected, "first": first}
            if self._gaps.get(tp.partition) != (expected, first):
                self._gaps[tp.partition] = (expected, first)
                self.needs_seek.add(tp)
                self._gap_count.inc()
                log.error(
                    "offset gap: batch starts after the records expected next; seeking again",
                    extra=where,
                )
                return False
            # Sought once already and the same gap is back: the log no longer holds those records
            # (retention or a truncated log); count what it does hold.
            log.error(
                "offset gap found again after seeking: the log does not hold these records",
                extra=where,
            )
        self._gaps.pop(tp.partition, None)
        self._read_to[tp.partition] = max(end, self._read_to.get(tp.partition, end))
        return True

    def stored(self, offsets: Offsets) -> None:
        """A batch stored `offsets` in Postgres: note where each partition stands, and commit
        them to Kafka without holding up the next batch (advisory: lag tools read it, a round
        trip to the broker). Commits still land in order: each waits for the one before it."""
        self._next.update({p: o[1] for p, o in offsets.items()})
        self._committing = asyncio.create_task(
            self._commit_after(self._committing, offsets), name="counter-kafka-commit"
        )

    async def committed(self) -> None:
        """Wait until the last batch's offsets reached Kafka (or failed to)."""
        if self._committing is not None:
            await asyncio.wait({self._committing})

    def revoked(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._next.pop(tp.partition, None)
            self._read_to.pop(tp.partition, None)
            with suppress(KeyError):
                self._lag.remove(tp.topic, str(tp.partition))

    def update_lag(self) -> None:
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            at = self._next.get(tp.partition)
            if end is not None and at is not None:
                self._lag.labels(tp.topic, str(tp.partition)).set(max(0, end - at))

    async def _commit_after(self, previous: asyncio.Task[None] | None, offsets: Offsets) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        commit = {TopicPartition(self._topic, p): o[1] for p, o in offsets.items()}
        try:
            with kafka.errors("committing offsets", self._servers):
                await asyncio.wait_for(self._consumer.commit(commit), COMMIT_TIMEOUT_S)
        except (DependencyError, TimeoutError) as exc:
            # Advisory only (lag tools read it): the counts and offsets are safe in Postgres.
            log.warning("kafka offset commit failed", extra={"error": repr(exc)})
