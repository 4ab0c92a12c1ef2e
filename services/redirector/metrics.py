"""The redirector's Prometheus metrics, made once per process on its own registry.

The four metrics every redirect touches (requests by status, latency, outcome, memory hits) are
plain numbers owned by the event loop, exported through a collector at scrape time: a
prometheus-client counter takes a lock on every increment, a cost the redirect path shows
(docs/redirector.md, The benchmark). The rest are ordinary prometheus-client metrics.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from shared.metrics import counters

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
OUTCOMES = (
    "redirected",
    "fallback",
    "gone",
    "not_found",
    "malformed",
    "unavailable",
    "unknown_host",
    "wrong_domain",
    "wrong_header",
    "tracking_off",
)
"""`unknown_host`: a Host that is neither SHORT_DOMAIN nor an organisation's short domain;
`wrong_domain`: a code asked for on another organisation's domain; `wrong_header`: a DLT header
in the path that is not the campaign's; `tracking_off`: the organisation's tracking is off (the
link's fallback, else 404, and no click event)."""
LAYERS = ("memory", "redis", "postgres")


class LocalCounter:
    """A counter owned by one event loop: `inc` is an addition, without a lock."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class LocalHistogram:
    """A histogram owned by one event loop (`le` buckets as Prometheus defines them)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class LabelledCounter:
    """Local counters by one label, created on first use (`labels(value).inc()`)."""

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.children: dict[str, LocalCounter] = {}

    def labels(self, value: str) -> LocalCounter:
        child = self.children.get(value)
        if child is None:
            child = self.children[value] = LocalCounter()
        return child

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, child in sorted(self.children.items()):
            family.add_metric([value], child.value)
        return family


class _LocalCollector(Collector):
    def __init__(self, counters: list[LabelledCounter], latency: LocalHistogram) -> None:
        self._counters = counters
        self._latency = latency

    def collect(self) -> Iterator[Metric]:
        yield from (counter.family() for counter in self._counters)
        latency, cumulative, buckets = self._latency, 0, []
        for bound, count in zip((*latency.bounds, float("inf")), latency.counts, strict=True):
            cumulative += count
            le = floatToGoString(bound)  # type: ignore[no-untyped-call]
            buckets.append((le, float(cumulative)))
        yield HistogramMetricFamily(
            "clicktrack_http_request_seconds",
            "Time from request to response, seconds",
            buckets=buckets,
            sum_value=latency.sum,
        )


class RedirectorMetrics:
    """Counters and histograms of one redirector process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = LabelledCounter(
            "clicktrack_http_requests", "HTTP requests by status code", "status"
        )
        self.latency = LocalHistogram(LATENCY_BUCKETS_S)
        redirects = LabelledCounter(
            "clicktrack_redirects", "Requests for short codes by outcome", "outcome"
        )
        self.outcome = {name: redirects.labels(name) for name in OUTCOMES}
        hits = LabelledCounter(
            "clicktrack_resolve_hits",
            "Codes resolved, by the layer that knew them (memory, redis, postgres)",
            "layer",
        )
        self.hits = {name: hits.labels(name) for name in LAYERS}
        registry.register(_LocalCollector([self.requests, redirects, hits], self.latency))
        count = counters(registry)
        misses = count("resolve_misses", "Lookups a layer passed on (memory, redis)", "layer")
        self.misses = {name: misses.labels(name) for name in LAYERS[:2]}
        self.negative_hits = count("resolve_negative_hits", "Unknown codes the negative cache knew")
        self.filtered = count(
            "resolve_filtered", "Codes the filter of minted codes refused, without a lookup"
        )
        self.heard_late = count(
            "resolve_heard_late",
            "Codes the filter of minted codes learned only by a sync: tapped as they were minted",
        )
        self.filter_syncs = count(
            "minted_filter_syncs",
            "Queries on the minted-code filter's listening connection, each settling the misses"
            " before it",
        )
        self.postgres_lookups = count("resolve_postgres_lookups", "Postgres queries for a code")
        self.dependency_errors = count(
            "resolve_dependency_errors", "Redis or Postgres failures or timeouts", "dependency"
        )
        self.invalidations = count("cache_invalidations", "Link changes heard on Redis pub/sub")
        self.domain_reloads = count("domain_reloads", "Loads of the short-domain table")
        self.bots = count("bot_clicks", "Redirects flagged as bots, by signal", "signal")
        # Publishing (the sink): the log's gauges are set by the publisher.
        self.logged = count("events_logged", "Click events written to the local click log")
        self.log_writes = count(
            "click_log_writes", "Writes to the click log (one per event-loop turn with clicks)"
        )
        self.sent = count("events_sent", "Click events acknowledged by Kafka (a resend counts)")
        self.dropped = count("events_dropped", "Click events lost: click log full or unwritable")
        self.producer_errors = count("producer_errors", "Batches not acknowledged in time")
