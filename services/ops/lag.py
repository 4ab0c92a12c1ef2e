"""Consumer lag of any group on the cluster, read through Kafka's admin and fetch APIs.

Per poll: list the groups (ListGroups), their state and live members (DescribeGroups), their
committed offsets (OffsetFetch), the log-end offsets of those partitions (ListOffsets), and for
each lagging partition the timestamp of the oldest unconsumed record, i.e. the record at the
committed offset (one small fetch; an offset's timestamp never changes, so it is cached).
These calls work against our Kafka 4.1.1 broker with aiokafka 0.14 (the integration tests run
them), all but aiokafka's own DescribeGroups, which misreads v3 responses: `groups.py` pins v2.

`lag_reader.LagReader` makes those calls; `LagMonitor` adds each poll to a `LagHistory` and
judges every group Burrow-style.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import TopicPartition

from services.ops.lag_reader import LagReader, Polled
from services.ops.lag_status import LagHistory, PartitionKey, Sample, Status, worst


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
            Polled(
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
        self, polled: list[Polled], ends: dict[TopicPartition, int]
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
