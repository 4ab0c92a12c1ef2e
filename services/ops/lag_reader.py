"""Reads what lag is made of from Kafka: groups and their committed offsets (ListGroups,
DescribeGroups, OffsetFetch), log-end offsets (`shared.kafka.end_offsets`), and the timestamp of
the record at a position (one small fetch, cached: an offset's timestamp never changes).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.ops.groups import describe_groups
from shared.kafka import end_offsets, errors, start_with_retries

TIMESTAMP_FETCH_S = 3.0
_TIMESTAMP_CACHE_MAX = 50_000
_LIVE_STATES = frozenset({"Stable", "PreparingRebalance", "CompletingRebalance"})


@dataclass(frozen=True, slots=True)
class Polled:
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
            consumer = self._new_consumer()
            await start_with_retries(consumer.start, "lag consumer", self._servers, retries=3)
            self._stack.push_async_callback(consumer.stop)
        except BaseException:
            await self._stack.aclose()
            raise
        self._admin, self._consumer = admin, consumer
        return self

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self._servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a committed offset already deleted: oldest kept
            max_partition_fetch_bytes=64 * 1024,
            fetch_max_wait_ms=100,
        )

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def groups(self, wanted: Iterable[str] = ()) -> list[Polled]:
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
                polled.append(Polled(name, group.state, members, committed))
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
        # A consumer for this fetch only: one that kept its assignment would, once a topic of it
        # is deleted (benchmarks and tests delete theirs), ask the broker for metadata in a busy
        # loop (half a core, measured with py-spy); and `assign([])` on aiokafka 0.14 can hang
        # its `stop()`.
        consumer = self._new_consumer()
        await start_with_retries(consumer.start, "lag consumer", self._servers, retries=3)
        try:
            consumer.assign(list(missing))
            for tp, offset in missing.items():
                consumer.seek(tp, offset)
            await self._first_records(consumer, missing, ends, found, timeout_s)
        finally:
            consumer.pause(*consumer.assignment())
            await consumer.stop()
        # Nothing there (only transaction markers, or deleted): do not wait on it every poll.
        self._no_record.update(
            (tp.topic, tp.partition, o, ends.get(tp, -1))
            for tp, o in missing.items()
            if tp not in found
        )
        return found

    async def _first_records(
        self,
        consumer: AIOKafkaConsumer,
        missing: dict[TopicPartition, int],
        ends: dict[TopicPartition, int],
        found: dict[TopicPartition, int],
        timeout_s: float,
    ) -> None:
        deadline = time.monotonic() + timeout_s
        empty: set[TopicPartition] = set()
        wanted = len(found) + len(missing)
        with errors("reading records", self._servers):
            while len(found) + len(empty) < wanted and time.monotonic() < deadline:
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

    def _remember(self, tp: TopicPartition, offset: int, timestamp: int) -> None:
        if len(self._timestamps) >= _TIMESTAMP_CACHE_MAX:
            self._timestamps.clear()  # rare; a cold cache only costs one fetch per partition
            self._no_record.clear()
        self._timestamps[(tp.topic, tp.partition, offset)] = timestamp
