"""The counter's guard against counting past skipped records (`Positions.follows`): a batch is
counted only if it starts where the batches taken before it ended, or before."""

from __future__ import annotations

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.counter.positions import Positions
from shared.settings import Settings


def positions() -> tuple[Positions, CollectorRegistry]:
    registry = CollectorRegistry()
    lag = Gauge("lag", "lag", ["topic", "partition"], registry=registry)
    gaps = Counter("gaps", "gaps", registry=registry)
    # Neither the consumer nor the pool is used by `follows`.
    return Positions(None, None, Settings(), lag, gaps), registry  # type: ignore[arg-type]


TP = TopicPartition("clicks.v1", 3)
OTHER = TopicPartition("clicks.v1", 4)


def gaps(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("gaps_total") or 0.0


def test_batches_that_follow_on_or_overlap_are_counted() -> None:
    p, registry = positions()
    assert p.follows(TP, 0, 100)  # nothing expected yet: the first batch starts anywhere
    assert p.follows(TP, 100, 250)  # follows on
    assert p.follows(TP, 200, 300)  # overlaps: what it repeats is a duplicate
    assert p.follows(OTHER, 7, 9)  # partitions are apart
    assert (gaps(registry), p.needs_seek) == (0.0, set())


def test_a_batch_after_skipped_records_is_refused_and_the_partition_sought_again() -> None:
    p, registry = positions()
    assert p.follows(TP, 0, 100)
    assert not p.follows(TP, 150, 200)  # 100..149 were never taken
    assert (gaps(registry), p.needs_seek) == (1.0, {TP})
    assert p.follows(OTHER, 0, 10)  # another partition of the same batch still counts


def test_the_same_gap_after_seeking_again_is_taken_as_real() -> None:
    """Records the log no longer holds (retention) would otherwise be sought for ever."""
    p, registry = positions()
    assert p.follows(TP, 0, 100)
    assert not p.follows(TP, 150, 200)
    p.needs_seek.clear()  # the seek happened; the log starts at 150 now
    assert p.follows(TP, 150, 200)
    assert p.follows(TP, 200, 260)
    assert not p.follows(TP, 300, 310)  # a new gap elsewhere is refused again
    assert gaps(registry) == 2.0


def test_a_revoked_partition_expects_nothing() -> None:
    p, _ = positions()
    assert p.follows(TP, 0, 100)
    p.revoked({TP})
    assert p.follows(TP, 5_000, 5_100)  # assigned again, sought from Postgres
