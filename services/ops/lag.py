"""Consumer lag of any group on the cluster, read through Kafka's admin and fetch APIs.

Per poll: list the groups (ListGroups), their state and live members (DescribeGroups), their
committed offsets (OffsetFetch), the log-end offsets of those partitions (ListOffsets), and for
each lagging partition the timestamp of the oldest unconsumed record, i.e. the record at the
committed offset (one small fetch; an offset's timestamp never changes, so it is cached).
These calls work against our Kafka 4.1.1 broker with aiokafka 0.14 (the integration tests run
them), all but aiokafka's own DescribeGroups, which misreads v3 responses: `groups.py` pins v2.

`LagMonitor` adds each poll to a `LagHistory` and judges every group Burrow-style.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.ops.groups import describe_groups
from services.ops.lag_status import LagHistory, PartitionKey, Sample, Status, worst
from shared.kafka import end_offsets, errors, start_with_retries

TIMESTAMP_FETCH_S = 3.0
_TIMESTAMP_CACHE_MAX = 50_000
_LIVE_STATES = frozenset({"Stable", "PreparingRebalance", "CompletingRebalance"})


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """Where one group stands on one partition."""

    topic: str
    partition: int
    committed: int
    """Next offset the group will read."""
    end: int
    """Log-end offset (high watermark)."""
    lag_seconds: float | None
    """Age of the oldest unconsumed record, seconds; 0 without lag; None if it could not be read."""
    status: Status

    @property
    def lag(self) -> int:
        """Records behind, never negative."""
        return max(0, self.end - self.committed)


@dataclass(frozen=True, slots=True)
class GroupLag:
    """One consumer group: its Kafka state, its members, its partitions and its status."""

    group: str
    state: str
    """Kafka's group state: Stable, Empty, PreparingRebalance, Dead, ..."""
    members: int | None
    """Live members; None when the coordinator could not describe the group (then the group is
    never called STOP, for want of evidence that nobody consumes)."""
    partitions: tuple[PartitionLag, ...]
    status: Status

    @property
    def max_lag(self) -> int:
        return max((p.lag for p in self.partitions), default=0)

    @property
    def sum_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def max_lag_seconds(self) -> float:
        return max((p.lag_seconds or 0.0 for p in self.partitions), default=0.0)

    def to_json(self) -> dict[str, object]:
        """The group as a JSON-ready dict (`clicktrack lag --json`, the exporter's `/lag`)."""
        return {
            "group": self.group,
            "state": self.state,
            "members": self.members,
            "status": self.status.value,
            "max_lag": self.max_lag,
            "sum_lag": self.sum_lag,
            "max_lag_seconds": round(self.max_lag_seconds, 3),
            "partitions": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "committed": p.committed,
                    "end": p.end,
                    "lag": p.lag,
                    "lag_seconds": None if p.lag_seconds is None else round(p.lag_seconds, 3),
                    "status": p.status.value,
                }
                for p in self.partitions
            ],
        }


@dataclass(frozen=True, slots=True)
class _Polled:
    group: str
    state: str
    members: int | None
    committed: dict[TopicPartition, int]


class LagReader:
    """Reads committed offsets, log-end offsets and record timestamps (an async context manager)."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._servers = bootstrap_servers
        self._stack = AsyncExitStack()
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._timestamps: dict[tuple[str, int, int], int] = {}
        self._no_record: set[tuple[str, int, int, int]] = set()

    async def __aenter__(self) -> LagReader:
        try:
            admin = AIOKafkaAdminClient(bootstrap_servers=self._servers)
            await start_with_retries(admin.start, "kafka admin client", self._servers, retries=3)
            self._stack.push_async_callback(admin.close)
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._servers,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",  # a committed offset already deleted: oldest kept
                max_partition_fetch_bytes=64 * 1024,
                fetch_max_wait_ms=100,
            )
            await start_with_retries(consumer.start, "lag consumer", self._servers, retries=3)
            self._stack.push_async_callback(consumer.stop)
        except BaseException:
            await self._stack.aclose()
            raise
        self._admin, self._consumer = admin, consumer
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def groups(self, wanted: Iterable[str] = ()) -> list[_Polled]:
        """State, live members and committed offsets of `wanted` (default: every group)."""
        assert self._admin is not None
        with errors("reading groups", self._servers):
            names = sorted(set(wanted)) or sorted(
                g[0] for g in await self._admin.list_consumer_groups()
            )
            if not names:
                return []
            described = await describe_groups(self._admin, names)
            polled = []
            for name in names:
                group = described[name]
                offsets = await self._admin.list_consumer_group_offsets(
                    name, group_coordinator_id=group.coordinator
                )
                committed = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
                members = group.members
                if members is not None and group.state not in _LIVE_STATES:
                    members = 0
                polled.append(_Polled(name, group.state, members, committed))
            return polled

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Log-end offset (high watermark) of each partition of a topic that exists."""
        assert self._consumer is not None
        return await end_offsets(self._consumer, partitions, self._servers)

    async def record_timestamps(
        self,
        positions: dict[TopicPartition, int],
        ends: dict[TopicPartition, int],
        timeout_s: float = TIMESTAMP_FETCH_S,
    ) -> dict[TopicPartition, int]:
        """Timestamp (ms since the epoch) of the first record at or after each position.

        Partitions with no record up to their end offset (`ends`: only transaction markers), or
        whose record did not arrive within `timeout_s`, are left out, and that position is not
        asked about again until the partition's end offset moves.
        """
        assert self._consumer is not None
        found: dict[TopicPartition, int] = {}
        missing: dict[TopicPartition, int] = {}
        for tp, offset in positions.items():
            cached = self._timestamps.get((tp.topic, tp.partition, offset))
            if cached is not None:
                found[tp] = cached
            elif (tp.topic, tp.partition, offset, ends.get(tp, -1)) not in self._no_record:
                missing[tp] = offset
        if not missing:
            return found
        consumer = self._consumer
        consumer.assign(list(missing))
        for tp, offset in missing.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        empty: set[TopicPartition] = set()
        try:
            with errors("reading records", self._servers):
                while len(found) + len(empty) < len(positions) and time.monotonic() < deadline:
                    batches = await consumer.getmany(timeout_ms=100, max_records=len(missing) * 50)
                    for tp, records in batches.items():
                        if tp in found or not records:
                            continue
                        found[tp] = records[0].timestamp
                        self._remember(tp, missing[tp], records[0].timestamp)
                        consumer.pause(tp)
                    for tp in missing.keys() - found.keys() - empty:
                        # Read up to the end without a record: only transaction markers there.
                        if tp in ends and await consumer.position(tp) >= ends[tp]:
                            empty.add(tp)
                            consumer.pause(tp)
        finally:
            # Pause rather than `assign([])`: aiokafka 0.14's fetcher swallows the cancellation
            # of `stop()` if it comes while it is dropping an assignment, and `stop()` then hangs.
            consumer.pause(*consumer.assignment())
        # Nothing there (only transaction markers, or deleted): do not wait on it every poll.
        self._no_record.update(
            (tp.topic, tp.partition, o, ends.get(tp, -1))
            for tp, o in missing.items()
            if tp not in found
        )
        return found

    def _remember(self, tp: TopicPartition, offset: int, timestamp: int) -> None:
        if len(self._timestamps) >= _TIMESTAMP_CACHE_MAX:
            self._timestamps.clear()  # rare; a cold cache only costs one fetch per partition
            self._no_record.clear()
        self._timestamps[(tp.topic, tp.partition, offset)] = timestamp


class LagMonitor:
    """Polls a `LagReader` and keeps a Burrow window per partition.

    `poll()` takes one sample of every group (or only `groups`) and returns them judged.
    """

    def __init__(self, reader: LagReader, *, window: int, groups: Iterable[str] = ()) -> None:
        self.reader = reader
        self.history = LagHistory(window)
        self.groups = tuple(groups)

    async def poll(self) -> list[GroupLag]:
        """One sample of every watched group, each judged on its window."""
        polled = [g for g in await self.reader.groups(self.groups) if g.committed]
        ends = await self.reader.end_offsets(tp for g in polled for tp in g.committed)
        # Offsets a group still holds on a deleted topic are not lag: leave them out.
        polled = [
            _Polled(
                g.group, g.state, g.members, {tp: o for tp, o in g.committed.items() if tp in ends}
            )
            for g in polled
        ]
        polled = [g for g in polled if g.committed]
        now = time.time()
        samples: dict[PartitionKey, Sample] = {}
        for g in polled:
            for tp, committed in g.committed.items():
                end = ends[tp]
                samples[(g.group, tp.topic, tp.partition)] = Sample(now, committed, end)
        self.history.record(samples)
        oldest = await self._oldest_per_group(polled, ends)
        result = []
        for g in polled:
            parts = []
            for tp in sorted(g.committed):
                key = (g.group, tp.topic, tp.partition)
                sample = samples[key]
                age: float | None = 0.0
                if sample.lag > 0:
                    ts = oldest.get((tp, sample.committed))
                    age = max(0.0, now - ts / 1000) if ts is not None else None
                status = self.history.status(key, has_members=g.members != 0)
                parts.append(
                    PartitionLag(tp.topic, tp.partition, sample.committed, sample.end, age, status)
                )
            result.append(
                GroupLag(g.group, g.state, g.members, tuple(parts), worst(p.status for p in parts))
            )
        return result

    async def _oldest_per_group(
        self, polled: list[_Polled], ends: dict[TopicPartition, int]
    ) -> dict[tuple[TopicPartition, int], int]:
        # Groups on the same partition usually sit at different offsets: one fetch per position.
        positions: set[tuple[TopicPartition, int]] = {
            (tp, off) for g in polled for tp, off in g.committed.items() if ends[tp] > off
        }
        found: dict[tuple[TopicPartition, int], int] = {}
        while positions:
            batch: dict[TopicPartition, int] = {}
            for tp, off in sorted(positions, key=lambda p: (p[0], p[1])):
                batch.setdefault(tp, off)
            positions -= set(batch.items())
            got = await self.reader.record_timestamps(batch, ends)
            found.update({(tp, batch[tp]): ts for tp, ts in got.items()})
        return found


async def read_lag(
    bootstrap_servers: str,
    groups: Iterable[str] = (),
    *,
    samples: int = 1,
    interval_s: float = 1.0,
) -> list[GroupLag]:
    """Sample `groups` (default: all) `samples` times, `interval_s` apart; the last judgement."""
    async with LagReader(bootstrap_servers) as reader:
        monitor = LagMonitor(reader, window=samples, groups=groups)
        result = await monitor.poll()
        for _ in range(samples - 1):
            await asyncio.sleep(interval_s)
            result = await monitor.poll()
        return result
