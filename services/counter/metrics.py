"""The counter's Prometheus metrics, in a registry of its own (one per `Counter`)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as Metric

_BATCH_SIZES = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class CounterMetrics:
    consumed: Metric
    counted: Metric
    duplicates: Metric
    dead_lettered: Metric
    batch_failures: Metric
    redis_rebuilds: Metric
    offset_gaps: Metric
    batch_size: Histogram
    batch_seconds: Histogram
    click_to_count_seconds: Histogram
    lag: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> CounterMetrics:
        return cls(
            consumed=Metric("clicktrack_events_consumed", "Records read", registry=registry),
            counted=Metric("clicktrack_events_counted", "New events counted", registry=registry),
            duplicates=Metric(
                "clicktrack_events_duplicate",
                "Events read again (redelivered, or re-read after a crash) and not counted",
                registry=registry,
            ),
            dead_lettered=Metric(
                "clicktrack_events_dead_lettered", "Records sent to the DLQ", registry=registry
            ),
            batch_failures=Metric(
                "clicktrack_batch_failures",
                "Batches that failed on Kafka, Postgres or Redis and were read again",
                registry=registry,
            ),
            redis_rebuilds=Metric(
                "clicktrack_redis_rebuilds",
                "Times Redis was found empty and rebuilt from Postgres",
                registry=registry,
            ),
            offset_gaps=Metric(
                "clicktrack_offset_gaps",
                "Batches that started after the records expected next (sought again)",
                registry=registry,
            ),
            batch_size=Histogram(
                "clicktrack_batch_records",
                "Records per batch",
                buckets=_BATCH_SIZES,
                registry=registry,
            ),
            batch_seconds=Histogram(
                "clicktrack_batch_seconds",
                "Time to count one batch (decode, Postgres, Redis), seconds",
                buckets=_SECONDS,
                registry=registry,
            ),
            click_to_count_seconds=Histogram(
                "clicktrack_click_to_count_seconds",
                "From a batch's newest click (occurred_at) to its counts in Redis, seconds",
                buckets=_SECONDS,
                registry=registry,
            ),
            lag=Gauge(
                "clicktrack_consumer_lag",
                "Records behind the partition's end (high-water mark minus position)",
                ["topic", "partition"],
                registry=registry,
            ),
        )
