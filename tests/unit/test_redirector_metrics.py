"""The redirector's lock-free hot-path metrics are exported as ordinary Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.redirector.metrics import RedirectorMetrics


def test_local_counters_and_histogram_are_exported_with_prometheus_names() -> None:
    m = RedirectorMetrics(CollectorRegistry())
    m.requests.labels("302").inc()
    m.requests.labels("302").inc()
    m.requests.labels("404").inc()
    m.outcome["redirected"].inc()
    m.hits["memory"].inc(3)
    for seconds in (0.0005, 0.003, 0.003, 7.0):  # a bound itself falls in its own bucket
        m.latency.observe(seconds)

    def sample(name: str, **labels: str) -> float | None:
        return m.registry.get_sample_value(name, labels)

    assert sample("clicktrack_http_requests_total", status="302") == 2
    assert sample("clicktrack_http_requests_total", status="404") == 1
    assert sample("clicktrack_redirects_total", outcome="redirected") == 1
    assert sample("clicktrack_redirects_total", outcome="gone") == 0
    assert sample("clicktrack_resolve_hits_total", layer="memory") == 3
    assert sample("clicktrack_http_request_seconds_bucket", le="0.0005") == 1
    assert sample("clicktrack_http_request_seconds_bucket", le="0.001") == 1
    assert sample("clicktrack_http_request_seconds_bucket", le="0.005") == 3
    assert sample("clicktrack_http_request_seconds_bucket", le="2.5") == 3
    assert sample("clicktrack_http_request_seconds_bucket", le="+Inf") == 4
    assert sample("clicktrack_http_request_seconds_count") == 4
    assert sample("clicktrack_http_request_seconds_sum") == 0.0005 + 0.003 + 0.003 + 7.0
