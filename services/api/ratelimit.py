"""Per-caller rate limits of the API: a token bucket per credential, or per client address.

A caller is identified by a hash of its bearer credential (never the credential itself), or by
its address when it sends none, so one key cannot starve another. Guessing keys is slowed apart:
every 401 spends a token of the client address's failure bucket, and an address whose failure
bucket is empty gets 429 whatever it sends. The buckets live in this process: with N API
processes a caller gets up to N times the rate (SECURITY.md says so). The table of buckets is
bounded; the least recently seen go first.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from services.api.errors import Handler, error_response

MAX_CALLERS = 100_000
"""Buckets kept at once; beyond that the least recently seen caller starts afresh."""
EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
AUTH_FAILURES_PER_S = 0.2
"""Sustained rate of refused credentials one address may send (one per 5 s)."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`rate` requests per second per caller, with bursts of up to `burst`."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def wait(self, caller: str) -> float:
        """Seconds until `caller` has a token (0.0: it has one now); spends nothing."""
        bucket = self._buckets.get(caller)
        if bucket is None:
            return 0.0
        tokens = min(self.burst, bucket.tokens + (self._clock() - bucket.updated) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self, caller: str) -> float:
        """Spend one token of `caller`: 0.0 when allowed, else the seconds until the next one."""
        now = self._clock()
        bucket = self._buckets.pop(caller, None)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        self._buckets[caller] = bucket
        if len(self._buckets) > MAX_CALLERS:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def caller_id(request: web.Request) -> str:
    """A stable, non-secret name for who is calling."""
    header = request.headers.get("Authorization", "")
    if header:
        return "key:" + hashlib.sha256(header.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return f"addr:{request.remote}"


def middleware(limiter: RateLimiter, failures: RateLimiter) -> Middleware:
    """An aiohttp middleware answering 429 with Retry-After once a caller is over its rate
    (`limiter`), or its address over its refused credentials (`failures`)."""

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in EXEMPT:
            return await handler(request)
        address = f"addr:{request.remote}"
        wait = failures.wait(address)
        if wait > 0:
            return _too_many(wait, "too many refused credentials from this address")
        wait = limiter.take(caller_id(request))
        if wait > 0:
            return _too_many(
                wait,
                f"more than {limiter.rate:g} requests per second (bursts of {limiter.burst})"
                " from this caller",
            )
        response = await handler(request)
        if response.status == 401:
            failures.take(address)
        return response

    return rate_limit


def _too_many(wait: float, why: str) -> web.Response:
    response = error_response(429, "rate_limited", f"{why}; retry in {math.ceil(wait)} s")
    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response
