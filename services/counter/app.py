"""The counter's small HTTP server: `/healthz`, `/readyz` and `/metrics`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.counter.counter import Counter
from shared.service import LOOP_ALIVE
from shared.settings import Settings

COUNTER = web.AppKey("counter", Counter)


def create_app(settings: Settings) -> web.Application:
    """An app whose lifetime is the counter's: started at startup, drained and stopped at exit."""
    app = web.Application()
    counter = app[COUNTER] = Counter(settings)
    app.cleanup_ctx.append(_run_counter)
    app[LOOP_ALIVE] = lambda: counter.alive
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def _run_counter(app: web.Application) -> AsyncIterator[None]:
    await app[COUNTER].start()
    try:
        yield
    finally:
        await app[COUNTER].stop()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 while the loop runs and Postgres and Redis answer; 503 naming what is wrong."""
    counter = request.app[COUNTER]
    if not counter.alive:
        return web.json_response({"status": "stopped"}, status=503)
    deps = await counter.dependencies_ok()
    ok = all(deps.values())
    return web.json_response(
        {"status": "ok" if ok else "degraded", **deps}, status=200 if ok else 503
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[COUNTER].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
