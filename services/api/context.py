"""What the API's handlers share, as typed application keys."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from services.api.freshness import EndOffsets
from services.api.insights import UniqueCache
from services.api.org_gate import OrgGate
from shared.metrics import counters
from shared.recipients import RecipientKeys, RecipientVault
from shared.settings import Settings


@dataclass(frozen=True, slots=True)
class Metrics:
    """The API's Prometheus metrics."""

    registry: CollectorRegistry
    requests: Counter
    """Requests by method, route template and status."""
    codes_minted: Counter
    """Short codes created (bulk recipients and rendering)."""
    rate_limit_unavailable: Counter
    """Requests let through unlimited because Redis did not answer the rate limiter."""

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        count = counters(registry)
        return cls(
            registry=registry,
            requests=count(
                "api_requests",
                "API requests by method, route and status",
                "method",
                "route",
                "status",
            ),
            codes_minted=count("api_codes_minted", "Short codes minted by the API"),
            rate_limit_unavailable=count(
                "api_rate_limit_unavailable",
                "Requests let through unlimited because Redis did not answer the rate limiter",
            ),
        )


SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
METRICS = web.AppKey("metrics", Metrics)
REDIS = web.AppKey("redis", aioredis.Redis)
"""Counter copies for live totals; optional (reports fall back to Postgres without it)."""
GATE = web.AppKey("org_gate", OrgGate)
"""Per-organisation cap on CSV exports and batch renders running at once."""


@dataclass
class MetricsSite:
    """Where the API's `/metrics` listens, apart from the public port; `url` once started."""

    url: str = ""


METRICS_SITE = web.AppKey("metrics_site", MetricsSite)
END_OFFSETS = web.AppKey("end_offsets", EndOffsets)
"""Kafka end offsets of the clicks topic, for the counter's lag in reports."""
UNIQUES = web.AppKey("uniques", UniqueCache)
"""Distinct-visitor counts already made, under the version of their rows (exact hits only)."""


def recipient_vault(request: web.Request, org_id: int) -> RecipientVault:
    """The recipients' keys of organisation `org_id` (derived from `RECIPIENT_KEY`)."""
    return RecipientKeys(request.app[SETTINGS].api.recipient_key).vault(org_id)
