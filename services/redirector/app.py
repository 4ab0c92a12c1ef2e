"""The redirector's aiohttp application, built by `create_app(settings)`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from services.redirector.publisher import Publisher
from services.redirector.resolve import Resolver
from services.redirector.visitors import COOKIE_MAX_AGE_S, COOKIE_NAME, visitor_id
from shared import db, events
from shared.redis_client import redis_client
from shared.settings import Settings

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
RESOLVER = web.AppKey("resolver", Resolver)
PUBLISHER = web.AppKey("publisher", Publisher)
REGISTRY = web.AppKey("registry", CollectorRegistry)
REDIRECTS = web.AppKey("redirects", Counter)

_HEADER_MAX = 512


def create_app(settings: Settings) -> web.Application:
    """The redirector: `GET|HEAD /{code}`, plus `/healthz`, `/readyz` and `/metrics`."""
    app = web.Application(client_max_size=1024)
    registry = CollectorRegistry()
    app[SETTINGS] = settings
    app[REGISTRY] = registry
    app[REDIRECTS] = Counter(
        "clicktrack_redirects",
        "Requests for short codes by outcome",
        ["outcome"],
        registry=registry,
    )
    app.cleanup_ctx.append(_resources)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get(r"/{code}", redirect)  # add_get also answers HEAD
    return app


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with db.pool(settings) as pool, redis_client(settings) as redis:
        publisher = Publisher(settings, app[REGISTRY])
        await publisher.start()
        app[RESOLVER] = Resolver(pool, redis)
        app[PUBLISHER] = publisher
        try:
            yield
        finally:
            await publisher.stop()


async def redirect(request: web.Request) -> web.Response:
    app = request.app
    code = request.match_info["code"]
    target = await app[RESOLVER].resolve(code)
    if target is None or not _safe_location(target.destination):
        app[REDIRECTS].labels("not_found").inc()
        raise web.HTTPNotFound(text="unknown link\n")
    user_agent = _header(request, "User-Agent")
    vid, new_cookie = visitor_id(
        recipient_id=target.recipient_id,
        cookie=request.cookies.get(COOKIE_NAME),
        ip=request.remote,
        user_agent=user_agent,
        key=app[SETTINGS].visitor_hash_key.reveal().encode(),
    )
    is_head = request.method == "HEAD"
    event = events.ClickEvent(
        event_id=events.new_event_id(),
        occurred_at=events.utc_now_iso(),
        code=code,
        link_id=target.link_id,
        org_id=target.org_id,
        campaign_id=target.campaign_id,
        campaign_kind=target.campaign_kind,
        channel=target.channel,
        recipient_id=target.recipient_id,
        visitor_id=vid,
        user_agent=user_agent,
        ip=events.truncate_ip(request.remote),
        referer=_header(request, "Referer"),
        is_bot=is_head,
        bot_reason="head" if is_head else None,
    )
    app[PUBLISHER].publish(code.encode(), events.encode(event))
    app[REDIRECTS].labels("redirected").inc()
    response = web.Response(
        status=302,
        headers={
            "Location": target.destination,
            "Cache-Control": "private, no-store",
            "Referrer-Policy": "no-referrer",
        },
    )
    if new_cookie is not None:
        response.set_cookie(
            COOKIE_NAME,
            new_cookie,
            max_age=COOKIE_MAX_AGE_S,
            httponly=True,
            samesite="Lax",
            secure=app[SETTINGS].short_base_url.startswith("https://"),
        )
    return response


def _header(request: web.Request, name: str) -> str | None:
    value = request.headers.get(name)
    return value[:_HEADER_MAX] if value else None


def _safe_location(url: str) -> bool:
    # Destinations are validated when created; this refuses a stored value that could split the
    # response or leave http(s) anyway.
    return url.startswith(("http://", "https://")) and not any(ord(ch) < 0x21 for ch in url)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    sink_ok = request.app[PUBLISHER].healthy
    body = {"status": "ok" if sink_ok else "degraded", "sink": "ok" if sink_ok else "failing"}
    return web.json_response(body, status=200 if sink_ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
