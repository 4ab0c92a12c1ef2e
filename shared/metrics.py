"""Declaring Prometheus metrics: every Clicktrack metric is named `clicktrack_<name>` and lives on
its process's own registry (exported by `shared.probes`)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter

PREFIX = "clicktrack_"


def counters(registry: CollectorRegistry) -> Callable[..., Counter]:
    """A function declaring counters on `registry`: `count("events_sent", "help", "label", ...)`
    is the counter `clicktrack_events_sent` (exported as `..._total`) with those labels."""

    def count(name: str, documentation: str, *labels: str) -> Counter:
        return Counter(PREFIX + name, documentation, labels, registry=registry)

    return count
