"""The dashboard: one static page and its script and style, served by the API.

The page holds no data: its script asks the reports API with the API key the user typed, kept in
the tab's `sessionStorage` and sent as `Authorization: Bearer`, never in a URL. Everything it
needs is served from here (no CDN), under a Content-Security-Policy that allows nothing else.
"""

from __future__ import annotations

import functools
from importlib import resources

from aiohttp import web

_FILES = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/dashboard", page)
    router.add_get(r"/dashboard/campaigns/{campaign_id:\d+}", page)
    router.add_get("/dashboard/static/{name}", static)


@functools.cache
def _read(name: str) -> bytes:
    return (resources.files("services.api") / "static" / name).read_bytes()


async def page(request: web.Request) -> web.Response:
    """The dashboard page (the campaign list, or one campaign: its script reads the path)."""
    return web.Response(
        body=_read("dashboard.html"), content_type="text/html", charset="utf-8", headers=_HEADERS
    )


async def static(request: web.Request) -> web.Response:
    """The page's script and style; any other name is 404."""
    name = request.match_info["name"]
    kind = _FILES.get(name)
    if kind is None:
        raise web.HTTPNotFound(reason=f"no static file {name[:64]!r}")
    return web.Response(body=_read(name), content_type=kind, charset="utf-8", headers=_HEADERS)
