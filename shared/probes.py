"""The small HTTP face every Clicktrack process shows its operators: `/healthz`, `/readyz` and
`/metrics`, built by one class so that each process answers them the same way.

    GET|HEAD /healthz  200 {"status": "ok"} while the process serves
    GET|HEAD /readyz   200 {"status": "ok", ...} when the process can do its work, else 503 with
                       the status it gave ("degraded", "stopped", "stale") and what it names
    GET|HEAD /metrics  the process's Prometheus registry, as text
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Readiness = tuple[str, dict[str, object]]
"""What a process says of itself: a status (`"ok"` answers 200, any other 503) and the details
that go into the body beside it (each dependency and how it is, say)."""


class Probes:
    """The three probe handlers of a process whose metrics are in `registry` and whose readiness
    `ready()` tells. They take a `web.BaseRequest`, so the redirector's low-level server can
    dispatch to them as well as an application's router (`add_routes`)."""

    def __init__(
        self, registry: CollectorRegistry, ready: Callable[[], Awaitable[Readiness]]
    ) -> None:
        self.registry = registry
        self._ready = ready

    async def healthz(self, request: web.BaseRequest) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.BaseRequest) -> web.Response:
        status, details = await self._ready()
        return web.json_response(
            {"status": status, **details}, status=200 if status == "ok" else 503
        )

    async def metrics(self, request: web.BaseRequest) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def add_routes(self, router: web.UrlDispatcher, *, metrics: bool = True) -> None:
        """Route `/healthz`, `/readyz` and (unless served apart: `metrics=False`) `/metrics`
        (GET and HEAD) to these handlers."""
        router.add_get("/healthz", self.healthz)
        router.add_get("/readyz", self.readyz)
        if metrics:
            router.add_get("/metrics", self.metrics)
