"""The redirector's Prometheus metrics, made once per app on its own registry.

Label values used on the hot path are bound once here (`.labels()` costs a dict lookup and a
lock per call).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
OUTCOMES = ("redirected", "fallback", "gone", "not_found", "malformed", "unavailable")
LAYERS = ("memory", "redis", "postgres")


class RedirectorMetrics:
    """Counters and histograms of one redirector process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "clicktrack_http_requests",
            "HTTP requests by status code",
            ["status"],
            registry=registry,
        )
        self.latency = Histogram(
            "clicktrack_http_request_seconds",
            "Time from request to response, seconds",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        redirects = Counter(
            "clicktrack_redirects",
            "Requests for short codes by outcome",
            ["outcome"],
            registry=registry,
        )
        self.outcome = {name: redirects.labels(name) for name in OUTCOMES}
        hits = Counter(
            "clicktrack_resolve_hits",
            "Codes resolved, by the layer that knew them (memory, redis, postgres)",
            ["layer"],
            registry=registry,
        )
        self.hits = {name: hits.labels(name) for name in LAYERS}
        misses = Counter(
            "clicktrack_resolve_misses",
            "Lookups a layer could not answer and passed on (memory, redis)",
            ["layer"],
            registry=registry,
        )
        self.misses = {name: misses.labels(name) for name in LAYERS[:2]}
        self.negative_hits = Counter(
            "clicktrack_resolve_negative_hits",
            "Unknown codes answered from the negative cache without asking Postgres",
            registry=registry,
        )
        self.postgres_lookups = Counter(
            "clicktrack_resolve_postgres_lookups",
            "Queries sent to Postgres to resolve a code",
            registry=registry,
        )
        self.dependency_errors = Counter(
            "clicktrack_resolve_dependency_errors",
            "Redis or Postgres failures or timeouts while resolving",
            ["dependency"],
            registry=registry,
        )
        self.invalidations = Counter(
            "clicktrack_cache_invalidations",
            "Link-change messages received over Redis pub/sub",
            registry=registry,
        )
        self.bots = Counter(
            "clicktrack_bot_clicks",
            "Redirects flagged as bots, by signal",
            ["signal"],
            registry=registry,
        )
        # Publishing (the sink): the queue-depth and spool gauges are set by the publisher.
        self.sent = Counter(
            "clicktrack_events_sent", "Click events acknowledged by Kafka", registry=registry
        )
        self.spooled = Counter(
            "clicktrack_events_spooled", "Click events written to the disk spool", registry=registry
        )
        self.replayed = Counter(
            "clicktrack_events_replayed",
            "Spooled click events acknowledged by Kafka on replay",
            registry=registry,
        )
        self.dropped = Counter(
            "clicktrack_events_dropped",
            "Click events lost: the spool was full or unwritable (should stay 0)",
            registry=registry,
        )
        self.producer_errors = Counter(
            "clicktrack_producer_errors",
            "Batches Kafka did not acknowledge in time (their events were spooled)",
            registry=registry,
        )
