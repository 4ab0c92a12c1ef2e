"""`GET|HEAD /{code}` and `/{header}/{code}`: resolve, answer at once, hand the click event to
the publisher."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import lru_cache

from aiohttp import web
from uuid_utils import uuid7

from services.redirector.bots import BotDetector
from services.redirector.hosts import ANY_ORG
from services.redirector.metrics import RedirectorMetrics
from services.redirector.misses import Misses
from services.redirector.publisher import Publisher
from services.redirector.resolution import (
    FALLBACK,
    GONE,
    MALFORMED,
    REDIRECT,
    UNTRACKED,
    Resolution,
)
from services.redirector.resolve import Resolver
from services.redirector.security import clip, safe_location
from services.redirector.visitors import COOKIE_MAX_AGE_S, COOKIE_NAME, VisitorKeys, visitor_id
from shared import events
from shared.client_address import ClientAddress
from shared.errors import DependencyError
from shared.settings import Settings

log = logging.getLogger(__name__)

_NO_STORE = {"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"}
_OUTCOME_OF_MISS = {"unknown": "not_found", "disabled": "not_found"}
"""The `clicktrack_redirects` outcome of a miss whose reason is not an outcome of its own."""
truncate_ip = lru_cache(maxsize=65_536)(events.truncate_ip)


class IsoClock:
    """`events.utc_now_iso()` for the hot path: the same text (`2026-11-26T19:25:28.123Z`), with
    the date and time formatted once per second instead of once per click, which a profile
    under load showed to matter (docs/redirector.md, The benchmark)."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self, at: float | None = None) -> str:
        """The time `at` (Unix seconds, default now) in UTC with milliseconds."""
        t = time.time() if at is None else at
        second = int(t)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((t - second) * 1000):03d}Z"


def error_response(status: int, code: str, detail: str) -> web.Response:
    """The JSON error body every endpoint uses: `{"error": code, "detail": message}`."""
    return web.json_response({"error": code, "detail": detail}, status=status, headers=_NO_STORE)


class RedirectHandler:
    """The redirect endpoint, with its collaborators passed in."""

    def __init__(
        self,
        settings: Settings,
        resolver: Resolver,
        publisher: Publisher,
        metrics: RedirectorMetrics,
        misses: Misses | None = None,
    ) -> None:
        self._resolver = resolver
        self._misses = misses
        self._publisher = publisher
        self._m = metrics
        self._bots = BotDetector(settings.redirector.bot_cidrs)
        self._client = ClientAddress(settings.redirector.trusted_proxies)
        self._proxied = bool(settings.redirector.trusted_proxies)
        self._keys = VisitorKeys(
            settings.redirector.visitor_hash_key.reveal().encode(),
            settings.redirector.visitor_hash_key_previous.reveal().encode(),
        )
        self._https_links = settings.links.short_base_url.startswith("https://")
        self._clock = IsoClock()

    async def __call__(
        self, request: web.BaseRequest, code: str, header: str | None, scope: int
    ) -> web.StreamResponse:
        """The answer for `code` asked for under DLT `header` (None: a path without one) on a
        host that serves organisation `scope` (`ANY_ORG`: the global short domain)."""
        try:
            found = await self._resolver.resolve(code)
        except DependencyError as exc:
            self._m.outcome["unavailable"].inc()
            log.error("cannot resolve code", extra={"error": str(exc)})
            response = error_response(503, "unavailable", "try again in a moment")
            response.headers["Retry-After"] = "1"
            return response
        outcome = found.outcome
        link = found.link
        if link is not None:
            if scope != ANY_ORG and link.org_id != scope:
                return self._missed(request, "wrong_domain")
            if header is not None and header != link.header:
                return self._missed(request, "wrong_header")
        if outcome == REDIRECT or outcome == FALLBACK:
            assert found.location is not None
            if not safe_location(found.location):
                log.error("refused an unsafe stored location", extra={"code": code})
                self._m.outcome["not_found"].inc()
                return error_response(404, "not_found", "unknown link")
            response = web.Response(status=302, headers=_NO_STORE)
            response.headers["Location"] = found.location
            self._m.outcome["redirected" if outcome == REDIRECT else "fallback"].inc()
        elif outcome == GONE:
            self._m.outcome["gone"].inc()
            response = error_response(410, "gone", "this link has expired")
        elif outcome == UNTRACKED:
            # Tracking is off: no click event; the link's fallback if it has one, else 404.
            self._m.outcome["tracking_off"].inc()
            if found.location is None or not safe_location(found.location):
                return error_response(404, "not_found", "unknown link")
            response = web.Response(status=302, headers=_NO_STORE)
            response.headers["Location"] = found.location
            return response
        elif outcome == MALFORMED:
            return self._missed(request, "malformed")
        else:
            return self._missed(request, "unknown" if link is None else "disabled")
        await self._record(request, code, found, response)  # in the click log before the 302
        return response

    def _missed(self, request: web.BaseRequest, reason: str) -> web.Response:
        """A 404 for a code that leads nowhere, counted for operators (`shared.misses`)."""
        self._m.outcome[_OUTCOME_OF_MISS.get(reason, reason)].inc()
        if self._misses is not None:
            self._misses.count(request.headers.get("Host"), reason)
        return error_response(404, "not_found", "unknown link")

    def _record(
        self, request: web.BaseRequest, code: str, found: Resolution, response: web.Response
    ) -> asyncio.Future[None]:
        # The hottest function of the project: positional calls, no intermediate objects.
        entry, link = found.code, found.link
        assert entry is not None and link is not None
        headers = request.headers
        user_agent = clip(headers.get("User-Agent"))
        referer = clip(headers.get("Referer"))
        peer = request.remote
        ip = self._client.of(peer, headers.getall("X-Forwarded-For", ())) if self._proxied else peer
        bot = self._bots.reason(request.method, user_agent, referer, ip)
        if bot is not None:
            self._m.bots.labels(bot.split(":", 1)[0]).inc()
        recipient = entry.recipient_id
        new_cookie = None
        if recipient:
            vid = "r:" + recipient  # the strongest identity; no cookie needed (or parsed)
        else:
            vid, new_cookie = visitor_id(
                recipient_id=None,
                cookie=request.cookies.get(COOKIE_NAME),
                ip=ip,
                user_agent=user_agent,
                keys=self._keys,
            )
        written = self._publisher.publish(
            code.encode(),
            events.encode(
                events.ClickEvent(  # positional, in field order: 8x cheaper than keywords
                    str(uuid7()),
                    self._clock.now(),
                    code,
                    entry.link_id,
                    link.org_id,
                    link.channel,
                    vid,
                    bot is not None,
                    link.campaign_id,
                    link.campaign_kind,
                    recipient,
                    user_agent,
                    truncate_ip(ip),
                    referer,
                    bot,
                    found.outcome,
                )
            ),
        )
        if new_cookie is not None and bot is None:
            response.set_cookie(
                COOKIE_NAME,
                new_cookie,
                max_age=COOKIE_MAX_AGE_S,
                httponly=True,
                samesite="Lax",
                secure=self._over_https(request, peer),
            )
        return written

    def _over_https(self, request: web.BaseRequest, peer: str | None) -> bool:
        """Whether the visitor's request came over HTTPS: our links are https, or this
        connection is TLS, or a trusted proxy says so in `X-Forwarded-Proto`."""
        if self._https_links or request.scheme == "https":
            return True
        forwarded = request.headers.get("X-Forwarded-Proto", "")
        return self._proxied and self._client.trusts(peer) and forwarded.lower() == "https"
