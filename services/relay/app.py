"""The relay's small HTTP server: `/healthz`, `/readyz` and `/metrics`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.relay.relay import Relay
from shared.settings import Settings

RELAY = web.AppKey("relay", Relay)


def create_app(settings: Settings) -> web.Application:
    """An app whose lifetime is the relay's: started at startup, drained and stopped at exit."""
    app = web.Application()
    app[RELAY] = Relay(settings)
    app.cleanup_ctx.append(_run_relay)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def _run_relay(app: web.Application) -> AsyncIterator[None]:
    await app[RELAY].start()
    try:
        yield
    finally:
        await app[RELAY].stop()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    running = request.app[RELAY].alive
    return web.json_response(
        {"status": "ok" if running else "stopped"}, status=200 if running else 503
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[RELAY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
