"""The links API's aiohttp application, built by `create_app(settings)`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import redis.asyncio as aioredis
from aiohttp import web

from services.api import dashboard, ratelimit
from services.api.context import (
    END_OFFSETS,
    GATE,
    METRICS,
    METRICS_SITE,
    POOL,
    REDIS,
    SETTINGS,
    UNIQUES,
    Metrics,
    MetricsSite,
)
from services.api.dlt import short_link_length, tag_limits
from services.api.errors import Handler, dumps, json_errors, route_of
from services.api.freshness import EndOffsets
from services.api.insights import UniqueCache
from services.api.openapi import document
from services.api.operations import OPERATIONS
from services.api.org_gate import OrgGate
from services.api.ratelimit import Limits
from shared import db
from shared.client_address import ClientAddress
from shared.errors import SettingsError
from shared.probes import Probes, Readiness
from shared.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
"""Largest request body, bytes: room for 100,000 recipient ids."""
READY_TIMEOUT_S = 2.0


def create_app(settings: Settings) -> web.Application:
    """The API: everything under `/v1/` (documented at `/v1/openapi.json`), plus `/healthz`,
    `/readyz` and `/metrics`. Refuses settings whose short links cannot fit a DLT slot."""
    length = short_link_length(settings.links.short_domain, settings.links.code_length)
    if length > settings.api.dlt_var_limit:
        raise SettingsError(
            f"short links would take {length} characters"
            f" (SHORT_DOMAIN {settings.links.short_domain!r}"
            f" + '/' + CODE_LENGTH {settings.links.code_length}), more than DLT_VAR_LIMIT"
            f" {settings.api.dlt_var_limit}: use a shorter domain or shorter codes"
        )
    tag_limits(settings.api.dlt_tag_limits, settings.api.dlt_var_limit)  # names real tags
    limits = Limits(
        rate=settings.api.rate_per_s,
        burst=settings.api.rate_burst,
        failures_burst=settings.api.auth_failures_burst,
    )
    limit = ratelimit.middleware(
        limits,
        ClientAddress(settings.api.trusted_proxies),
        ratelimit.key_prefix(settings.postgres.schema),
    )
    app = web.Application(
        client_max_size=MAX_BODY, middlewares=[count_requests, limit, json_errors]
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics.create()
    app[GATE] = OrgGate(settings.api.org_concurrency, reads=settings.api.org_reads)
    app[METRICS_SITE] = MetricsSite()
    app[UNIQUES] = UniqueCache()

    async def ready() -> Readiness:
        return await readiness(app)

    probes = Probes(app[METRICS].registry, ready)
    probes.add_routes(app.router, metrics=False)  # /metrics: on its own address, not public
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(_metrics_listener(probes))
    app.router.add_get("/v1/openapi.json", openapi)
    for op in OPERATIONS:  # the document's operations are the routes served: one list of both
        if op.method == "get":
            app.router.add_get(op.route, op.handler)  # and HEAD, as aiohttp does for a GET
        else:
            app.router.add_route(op.method.upper(), op.route, op.handler)
    dashboard.add_routes(app.router)
    return app


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # Redis and Kafka are optional for the API: reports fall back to Postgres and an unknown lag.
    redis = aioredis.Redis.from_url(
        settings.redis.url.reveal(),
        socket_timeout=settings.api.redis_budget_ms / 1000,
        socket_connect_timeout=settings.api.redis_budget_ms / 1000,
    )
    ends = EndOffsets(settings)
    async with db.pool(settings.postgres) as pool:
        app[POOL] = pool
        app[REDIS] = redis
        app[END_OFFSETS] = ends
        try:
            yield
        finally:
            await ends.close()
            await redis.aclose()


def _metrics_listener(probes: Probes) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context serving `/metrics` on `API_METRICS_HOST:API_METRICS_PORT` (as the
    redirector does), so that operational counts are not readable from the internet."""

    async def listen(app: web.Application) -> AsyncIterator[None]:
        metrics_app = web.Application()
        metrics_app.router.add_get("/metrics", probes.metrics)
        runner = web.AppRunner(metrics_app, access_log=None)
        await runner.setup()
        settings = app[SETTINGS].api
        try:
            await web.TCPSite(runner, settings.metrics_host, settings.metrics_port).start()
            host, port = runner.addresses[0][:2]
            app[METRICS_SITE].url = f"http://{host}:{port}"
            yield
        finally:
            await runner.cleanup()

    return listen


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and log every answered request by method, route template and status (never its
    headers: they carry credentials)."""
    route = route_of(request)
    status = 500
    started = time.perf_counter()
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        request.app[METRICS].requests.labels(request.method, route, str(status)).inc()
        log.info(
            "request",
            extra={
                "method": request.method,
                "route": route,
                "status": status,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )


async def readiness(app: web.Application) -> Readiness:
    """Ready when Postgres answers within 2 s and every shipped migration is applied."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            rows = await app[POOL].fetch("SELECT version FROM schema_migrations")
    except Exception as exc:  # any failure (refused, timed out, pool closed) means not ready
        log.warning("not ready: postgres check failed", extra={"error": repr(exc)})
        return "degraded", {"postgres": "failing"}
    missing = sorted({v for v, _ in db.migration_files()} - {r["version"] for r in rows})
    if missing:
        return "degraded", {
            "postgres": "ok",
            "schema": f"missing {', '.join(missing)}: run clicktrack migrate",
        }
    return "ok", {"postgres": "ok", "schema": "ok"}


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document(), dumps=dumps)
