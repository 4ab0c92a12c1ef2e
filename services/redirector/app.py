"""The redirector's aiohttp application, built by `create_app(settings)`."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from services.redirector.handler import RedirectHandler, error_response
from services.redirector.invalidation import LinkChanges
from services.redirector.metrics import RedirectorMetrics
from services.redirector.publisher import Publisher
from services.redirector.resolve import Resolver
from shared import db
from shared.redis_client import redis_client
from shared.settings import Settings

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", RedirectorMetrics)
RESOLVER = web.AppKey("resolver", Resolver)
PUBLISHER = web.AppKey("publisher", Publisher)
LINK_CHANGES = web.AppKey("link_changes", LinkChanges)
HANDLER = web.AppKey("handler", RedirectHandler)

MAX_REQUEST_LINE = 2048
"""Bytes of the request line (method, path, version); longer ones are refused with 400."""
MAX_HEADER_FIELD = 4096
"""Bytes of one header field; a longer one is refused with 400."""
MAX_HEADERS = 64

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(settings: Settings) -> web.Application:
    """The redirector: `GET|HEAD /{code}`, plus `/healthz`, `/readyz` and `/metrics`."""
    metrics = RedirectorMetrics(CollectorRegistry())
    app = web.Application(
        client_max_size=1024,
        middlewares=[_observed(metrics)],  # type: ignore[list-item]  # a plain function suffices
        handler_args={
            "max_line_size": MAX_REQUEST_LINE,
            "max_field_size": MAX_HEADER_FIELD,
            "max_headers": MAX_HEADERS,
        },
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app.cleanup_ctx.append(_resources)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get(r"/{code}", redirect)  # add_get also answers HEAD; nothing else is routed
    return app


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings, metrics = app[SETTINGS], app[METRICS]
    async with db.pool(settings) as pool, redis_client(settings) as redis:
        resolver = Resolver(settings, pool, redis, metrics)
        publisher = Publisher(settings, metrics)
        changes = LinkChanges(redis, resolver, metrics)
        await publisher.start()
        try:
            changes.start()
            app[RESOLVER] = resolver
            app[PUBLISHER] = publisher
            app[LINK_CHANGES] = changes
            app[HANDLER] = RedirectHandler(settings, resolver, publisher, metrics)
            yield
        finally:
            await changes.stop()
            await publisher.stop()


def _observed(
    metrics: RedirectorMetrics,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    by_status: dict[int, object] = {}

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Times every request, counts it by status, and turns every error into JSON."""
        started = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = error_response(exc.status, _error_code(exc.status), exc.reason)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
        except Exception:
            # Logged with its trace for us; the client learns nothing about the internals.
            log.exception("request failed", extra={"path": request.path[:200]})
            response = error_response(500, "internal", "internal error")
        status = response.status
        counter = by_status.get(status)
        if counter is None:
            counter = by_status[status] = metrics.requests.labels(str(status))
        counter.inc()  # type: ignore[attr-defined]
        metrics.latency.observe(time.perf_counter() - started)
        return response

    return observe


def _error_code(status: int) -> str:
    return {
        400: "bad_request",
        404: "not_found",
        405: "method_not_allowed",
        413: "too_large",
        414: "uri_too_long",
        431: "headers_too_large",
    }.get(status, "error")


async def redirect(request: web.Request) -> web.StreamResponse:
    return await request.app[HANDLER](request)


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers. Load balancers should check this one."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """503 while the click sink spools to disk (redirects still work; this is for alerting)."""
    publisher = request.app[PUBLISHER]
    if publisher.healthy:
        return web.json_response({"status": "ok", "sink": "ok"})
    body = {
        "status": "degraded",
        "sink": "spooling",
        "spool_bytes": publisher.spool.size_bytes,
    }
    return web.json_response(body, status=503)


async def metrics_page(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
