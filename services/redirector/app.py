"""One redirector process: its resources, its click sink, and its HTTP server.

The server is aiohttp's low-level `web.Server` with one dispatch function instead of a
`web.Application`: the redirect path is the whole product, and the application layer (router,
middleware chain, signals) was a large share of a redirect's CPU time for four fixed routes
(docs/redirector.md, The benchmark).
The dispatch below is that router and that middleware, written out:

    GET|HEAD /{code}          the redirect (`RedirectHandler`)
    GET|HEAD /{header}/{code} the same, with the campaign's DLT header in the path
    GET|HEAD /healthz         alive
    GET|HEAD /readyz          503 while Kafka does not take the click log

A code is served only on a known host (`Hosts`: the global SHORT_DOMAIN, or a short domain of
an organisation, which serves that organisation's codes only); any other host is a 404 decided
in memory.

`/metrics` (Prometheus text) is served on its own address (`REDIRECTOR_METRICS_HOST` and
`_PORT`, 127.0.0.1:8090 by default), not on the public port: the counts are for operators.

Any other method is 405 with `Allow: GET,HEAD`; a path with more segments, or a first segment
that cannot be a DLT header, is 404; every error
is the JSON body of `error_response`, and an unexpected exception is logged and answered 500
without details.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from contextlib import AsyncExitStack, suppress

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.redirector.handler import RedirectHandler, error_response
from services.redirector.hosts import Hosts
from services.redirector.invalidation import LinkChanges
from services.redirector.metrics import LocalCounter, RedirectorMetrics
from services.redirector.minted import MintedCodes
from services.redirector.misses import Misses
from services.redirector.publisher import Publisher
from services.redirector.resolve import Resolver
from shared import db
from shared.probes import Probes, Readiness
from shared.redis_client import redis_client
from shared.settings import Settings

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 2048
"""Bytes of the request line (method, path, version); longer ones are refused with 400."""
MAX_HEADER_FIELD = 4096
"""Bytes of one header field; a longer one is refused with 400."""
MAX_HEADERS = 64
SUBSCRIBE_WAIT_S = 1.0
"""Time start-up waits for the link-change subscription (Redis may be down: then it goes on)."""
SHUTDOWN_TIMEOUT_S = 10.0
"""Time in-flight requests get to finish at stop, before the click sink drains."""

_ALLOWED = frozenset({"GET", "HEAD"})
_HEADER = re.compile(r"[A-Z0-9]{6}")
"""A DLT header (sender id) as it stands in a short link's path."""


class Redirector:
    """A redirector: `await start(host, port)`, then `await stop()` (drains the click sink).

    `url` is its base URL once started, `metrics_url` the base URL of its `/metrics`;
    `metrics`, `resolver` and `publisher` are its parts.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = RedirectorMetrics(CollectorRegistry())
        self.url = ""
        self.metrics_url = ""
        self._stack = AsyncExitStack()
        self._runners: list[web.ServerRunner] = []
        self._resolver: Resolver | None = None
        self._publisher: Publisher | None = None
        self._handler: RedirectHandler | None = None
        self._hosts: Hosts | None = None
        self._by_status: dict[int, LocalCounter] = {}
        self._probes = Probes(self.metrics.registry, self._ready)

    @property
    def resolver(self) -> Resolver:
        assert self._resolver is not None, "start() first"
        return self._resolver

    @property
    def publisher(self) -> Publisher:
        assert self._publisher is not None, "start() first"
        return self._publisher

    async def start(
        self, host: str, port: int, *, reuse_port: bool = False, metrics_port: int | None = None
    ) -> None:
        """Connect Postgres and Redis, start the click sink, then listen on `host:port`, and
        serve `/metrics` on `metrics_port` (default: the settings').

        Port 0 picks a free one (see `url` and `metrics_url`). Raises if Postgres cannot be
        reached; Redis may be down (it is a cache: Postgres answers, and the link-change
        subscription keeps trying).
        """
        settings, metrics, stack = self.settings, self.metrics, self._stack
        try:
            # Lookups only read: a release need not reset the session (a round trip each).
            pool = await stack.enter_async_context(
                db.pool(settings.postgres, reset=db.keep_session)
            )
            # Redis is a cache here: the redirector starts without it, and Postgres answers.
            redis = await stack.enter_async_context(redis_client(settings.redis, required=False))
            minted = MintedCodes(pool, settings.postgres, synced=metrics.filter_syncs.inc)
            minted.start()
            stack.push_async_callback(minted.stop)
            resolver = Resolver(settings, pool, redis, metrics, minted=minted)
            stack.push_async_callback(resolver.close)
            hosts = Hosts(
                settings.links.short_domain, pool, metrics, settings.redirector.local_cache_ttl_s
            )
            await hosts.start()
            stack.push_async_callback(hosts.stop)
            publisher = Publisher(settings, metrics)
            await publisher.start()
            stack.push_async_callback(publisher.stop)
            changes = LinkChanges(redis, resolver, metrics, hosts)
            changes.start()
            stack.push_async_callback(changes.stop)
            # Subscribed before the first request: the (re)subscription clears the link memory,
            # and a first answer must not race it. Redis down: start without it.
            with suppress(TimeoutError):
                async with asyncio.timeout(SUBSCRIBE_WAIT_S):
                    await changes.subscribed.wait()
            missed = Misses(redis)
            missed.start()
            stack.push_async_callback(missed.stop)
            self._resolver, self._publisher, self._hosts = resolver, publisher, hosts
            self._handler = RedirectHandler(settings, resolver, publisher, metrics, missed)
            server = web.Server(
                self._dispatch,
                access_log=None,
                max_line_size=MAX_REQUEST_LINE,
                max_field_size=MAX_HEADER_FIELD,
                max_headers=MAX_HEADERS,
            )
            self.url = await self._listen(server, host, port, reuse_port)
            self.metrics_url = await self._listen(
                web.Server(self._metrics_page, access_log=None),
                settings.redirector.metrics_host,
                settings.redirector.metrics_port if metrics_port is None else metrics_port,
                False,
            )
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish, drain the sink, close. Idempotent."""
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()
        await self._stack.aclose()

    async def _listen(self, server: web.Server, host: str, port: int, reuse_port: bool) -> str:
        runner = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
        bound = runner.addresses[0]
        return f"http://{bound[0]}:{bound[1]}"

    async def _metrics_page(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path != "/metrics":
            return error_response(404, "not_found", "Not Found")
        return await self._probes.metrics(request)

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await self._route(request)
        except Exception:
            # Logged with its trace for us; the client learns nothing about the internals.
            log.exception("request failed", extra={"path": request.path[:200]})
            response = error_response(500, "internal", "internal error")
        status = response.status
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = self.metrics.requests.labels(str(status))
        counter.inc()
        self.metrics.latency.observe(time.perf_counter() - started)
        return response

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method not in _ALLOWED:
            response = error_response(405, "method_not_allowed", "Method Not Allowed")
            response.headers["Allow"] = "GET,HEAD"
            return response
        path = request.path
        if path == "/healthz":
            return await self._probes.healthz(request)
        if path == "/readyz":
            return await self._probes.readyz(request)
        assert self._handler is not None and self._hosts is not None
        scope = self._hosts.scope(request.headers.get("Host"))
        if scope is None:
            self.metrics.outcome["unknown_host"].inc()
            return error_response(404, "not_found", "Not Found")
        code = path[1:]
        if "/" not in code:
            if not code:
                return error_response(404, "not_found", "Not Found")
            return await self._handler(request, code, None, scope)
        header, _, code = code.partition("/")
        if not code or "/" in code or not _HEADER.fullmatch(header):
            return error_response(404, "not_found", "Not Found")
        return await self._handler(request, code, header, scope)

    async def _ready(self) -> Readiness:
        publisher = self.publisher
        if publisher.healthy:
            return "ok", {"sink": "ok"}
        return "degraded", {
            "sink": "not_shipping",
            "unshipped_bytes": publisher.log.unshipped_bytes,
        }
