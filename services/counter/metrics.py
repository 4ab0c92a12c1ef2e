"""The counter's Prometheus metrics, in a registry of its own (one per `Counter`)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as Metric

from shared.metrics import counters

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
        count = counters(registry)
        return cls(
            consumed=count("events_consumed", "Records read"),
            counted=count("events_counted", "New events counted"),
            duplicates=count(
                "events_duplicate",
                "Events read again (redelivered, or re-read after a crash) and not counted",
            ),
            dead_lettered=count("events_dead_lettered", "Records sent to the DLQ"),
            batch_failures=count(
                "batch_failures",
                "Batches that failed on Kafka, Postgres or Redis and were read again",
            ),
            redis_rebuilds=count(
                "redis_rebuilds", "Times Redis was found empty and rebuilt from Postgres"
            ),
            offset_gaps=count(
                "offset_gaps",
                "Batches that started after the records expected next (sought again)",
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
