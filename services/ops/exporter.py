"""The lag exporter: `/metrics` with consumer lag under kafka-lag-exporter's metric names.

A background task polls every group (or `LAG_GROUPS`) each `LAG_POLL_MS` and keeps the last
result; a scrape renders it, so Prometheus never waits on Kafka. Metrics, all with a
`cluster_name` label:

    kafka_consumergroup_group_offset{group,topic,partition}       committed offset
    kafka_consumergroup_group_lag{group,topic,partition}          records behind
    kafka_consumergroup_group_lag_seconds{group,topic,partition}  age of the oldest unread record
    kafka_consumergroup_group_max_lag{group}                      worst partition, records
    kafka_consumergroup_group_max_lag_seconds{group}              worst partition, seconds
    kafka_consumergroup_group_sum_lag{group}                      all partitions, records
    kafka_consumergroup_group_topic_sum_lag{group,topic}          all partitions of a topic
    kafka_partition_latest_offset{topic,partition}                log-end offset
    kafka_consumergroup_poll_time_ms                              duration of the last poll
    clicktrack_consumergroup_status{group,status}                 1 for the Burrow status now
    clicktrack_consumergroup_members{group}                       live members of the group
    clicktrack_lag_poll_errors_total                              polls that failed
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.ops.lag import GroupLag, LagMonitor
from services.ops.lag_reader import LagReader
from services.ops.lag_status import Status
from shared.errors import ClicktrackError
from shared.kafka import errors
from shared.metrics import counters
from shared.probes import Probes, Readiness
from shared.service import background
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class LagState:
    """The exporter's latest view of the cluster, written by the poller, read by scrapes."""

    groups: list[GroupLag] = field(default_factory=list)
    polled_at: float | None = None
    """Wall-clock time of the last successful poll, seconds since the epoch."""
    poll_ms: float = 0.0


SETTINGS = web.AppKey("settings", Settings)
STATE = web.AppKey("lag_state", LagState)
POLL_ERRORS = web.AppKey("poll_errors", Counter)


def create_app(settings: Settings) -> web.Application:
    """The exporter: `/metrics`, `/healthz`, `/readyz` (a poll succeeded lately), `/lag` (JSON)."""
    app = web.Application()
    state = LagState()
    registry = CollectorRegistry()
    registry.register(LagCollector(state, settings.lag.cluster_name))
    app[SETTINGS] = settings
    app[STATE] = state
    app[POLL_ERRORS] = counters(registry)("lag_poll_errors", "Lag polls that failed")
    app.cleanup_ctx.append(background(_connect_and_poll, "lag-poller"))

    async def ready() -> Readiness:
        return readiness(state, settings)

    Probes(registry, ready).add_routes(app.router)
    app.router.add_get("/lag", lag_json)
    return app


async def _connect_and_poll(app: web.Application) -> None:
    """Poll for ever; while Kafka cannot be reached (at start, or after the client gave up),
    count a failed poll and try again each `LAG_POLL_MS`: the exporter is up and says it is not
    ready (`/readyz` 503), which is when its alerts matter most."""
    settings = app[SETTINGS]
    while True:
        try:
            with errors("polling lag", settings.kafka.bootstrap_servers):
                async with LagReader(settings.kafka.bootstrap_servers) as reader:
                    monitor = LagMonitor(
                        reader, window=settings.lag.window_samples, groups=settings.lag.groups
                    )
                    await _poll_forever(app, monitor)
        except ClicktrackError as exc:
            app[POLL_ERRORS].inc()
            log.warning("lag exporter cannot reach kafka", extra={"error": str(exc)})
            await asyncio.sleep(settings.lag.poll_ms / 1000)


async def _poll_forever(app: web.Application, monitor: LagMonitor) -> None:
    settings, state = app[SETTINGS], app[STATE]
    while True:
        started = time.perf_counter()
        try:
            state.groups = await monitor.poll()
            state.polled_at = time.time()
            state.poll_ms = (time.perf_counter() - started) * 1000
        except ClicktrackError as exc:
            app[POLL_ERRORS].inc()
            log.warning("lag poll failed", extra={"error": str(exc)})
        await asyncio.sleep(settings.lag.poll_ms / 1000)


class LagCollector(Collector):
    """Renders a `LagState` as Prometheus metrics at scrape time."""

    def __init__(self, state: LagState, cluster: str) -> None:
        self._state = state
        self._cluster = cluster

    def collect(self) -> Iterator[Metric]:
        c = self._cluster
        part = ["cluster_name", "group", "topic", "partition"]
        offset = GaugeMetricFamily(
            "kafka_consumergroup_group_offset",
            "Committed offset of a group on a partition",
            labels=part,
        )
        lag = GaugeMetricFamily(
            "kafka_consumergroup_group_lag", "Records a group is behind on a partition", labels=part
        )
        lag_s = GaugeMetricFamily(
            "kafka_consumergroup_group_lag_seconds",
            "Age of the oldest record a group has not consumed, seconds",
            labels=part,
        )
        grp = ["cluster_name", "group"]
        max_lag = GaugeMetricFamily(
            "kafka_consumergroup_group_max_lag", "Largest partition lag of a group", labels=grp
        )
        max_lag_s = GaugeMetricFamily(
            "kafka_consumergroup_group_max_lag_seconds",
            "Largest partition lag of a group, seconds",
            labels=grp,
        )
        sum_lag = GaugeMetricFamily(
            "kafka_consumergroup_group_sum_lag", "Sum of a group's partition lags", labels=grp
        )
        topic_sum = GaugeMetricFamily(
            "kafka_consumergroup_group_topic_sum_lag",
            "Sum of a group's partition lags on one topic",
            labels=["cluster_name", "group", "topic"],
        )
        latest = GaugeMetricFamily(
            "kafka_partition_latest_offset",
            "Log-end offset of a partition",
            labels=["cluster_name", "topic", "partition"],
        )
        status = GaugeMetricFamily(
            "clicktrack_consumergroup_status",
            "1 for the group's Burrow-style status (OK, WARN, REWIND, STALL, STOP), 0 otherwise",
            labels=["cluster_name", "group", "status"],
        )
        members = GaugeMetricFamily(
            "clicktrack_consumergroup_members", "Live members of a group", labels=grp
        )
        latest_seen: set[tuple[str, int]] = set()
        for g in self._state.groups:
            topics: dict[str, int] = {}
            for p in g.partitions:
                labels = [c, g.group, p.topic, str(p.partition)]
                offset.add_metric(labels, p.committed)
                lag.add_metric(labels, p.lag)
                if p.lag_seconds is not None:
                    lag_s.add_metric(labels, p.lag_seconds)
                topics[p.topic] = topics.get(p.topic, 0) + p.lag
                if (p.topic, p.partition) not in latest_seen:
                    latest_seen.add((p.topic, p.partition))
                    latest.add_metric([c, p.topic, str(p.partition)], p.end)
            max_lag.add_metric([c, g.group], g.max_lag)
            max_lag_s.add_metric([c, g.group], g.max_lag_seconds)
            sum_lag.add_metric([c, g.group], g.sum_lag)
            if g.members is not None:
                members.add_metric([c, g.group], g.members)
            for topic, total in sorted(topics.items()):
                topic_sum.add_metric([c, g.group, topic], total)
            for s in Status:
                status.add_metric([c, g.group, s.value], 1.0 if g.status is s else 0.0)
        poll = GaugeMetricFamily(
            "kafka_consumergroup_poll_time_ms",
            "Duration of the last lag poll",
            labels=["cluster_name"],
        )
        poll.add_metric([c], self._state.poll_ms)
        yield from (offset, lag, lag_s, max_lag, max_lag_s, sum_lag, topic_sum, latest)
        yield from (status, members, poll)


def readiness(state: LagState, settings: Settings) -> Readiness:
    """Ready once a poll succeeded, and as long as the last success is at most 3 polls old."""
    fresh = state.polled_at is not None and (
        time.time() - state.polled_at <= 3 * settings.lag.poll_ms / 1000 + 30
    )
    return ("ok" if fresh else "stale"), {"groups": len(state.groups)}


async def lag_json(request: web.Request) -> web.Response:
    """The last poll as JSON, the same shape as `clicktrack lag --json`."""
    return web.json_response([g.to_json() for g in request.app[STATE].groups])
